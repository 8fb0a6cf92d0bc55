"""Nodes as real `nnode` processes, for tests of the CLI, discovery and crashes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import free_port


class NodeProcess:
    """`python -m node run` with its own config file, data folder and port."""

    def __init__(self, root: Path, name: str, extra: str = "", discovery: bool = False) -> None:
        self.root = root / name
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = self.root / "config.toml"
        self.log = self.root / "node.log"
        self.config.write_text(
            f'[node]\nname = "{name}"\ndata_dir = "{self.root / "data"}"\n'
            f'[http]\nhost = "127.0.0.1"\nport = {self.port}\n'
            f'[discovery]\nenabled = {"true" if discovery else "false"}\ninterfaces = ["127.0.0.1"]\n'
            f'[sync]\nanti_entropy_interval = 2\n' + extra)
        self.proc: subprocess.Popen | None = None
        out = self.cli("init")
        self.id = out.strip().splitlines()[-1].split()[-1]

    def cli(self, *args: str, check: bool = True) -> str:
        result = subprocess.run([sys.executable, "-m", "node", "--config", str(self.config), *args],
                                capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"nnode {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result.stdout

    def start(self) -> "NodeProcess":
        handle = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "node", "--config", str(self.config), "run"],
                                     stdout=handle, stderr=handle, env=os.environ | {"PYTHONUNBUFFERED": "1"})
        handle.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited: {self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as resp:
                    if json.load(resp)["ok"]:
                        return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError("node did not answer /healthz within 30 s")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
