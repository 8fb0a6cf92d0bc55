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
    """`python -m node run` with its own config file, data folder and port.

    The process binds its port itself, so the port is chosen before (`free_port()`) and may be taken by someone
    else in between on a busy machine: `start()` then picks another port and starts again. Read `url` after
    `start()`."""

    def __init__(self, root: Path, name: str, extra: str = "", discovery: bool = False) -> None:
        self.root = root / name
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = self.root / "config.toml"
        self.log = self.root / "node.log"
        self.config.write_text(
            f'[node]\nname = "{name}"\ndata_dir = "{self.root / "data"}"\n' + self._http() +
            f'[discovery]\nenabled = {"true" if discovery else "false"}\ninterfaces = ["127.0.0.1"]\n'
            f'[sync]\nanti_entropy_interval = 2\n' + extra)
        self.proc: subprocess.Popen | None = None
        out = self.cli("init")
        self.id = out.strip().splitlines()[-1].split()[-1]

    @property
    def url(self) -> str:
        """The node's base URL (on the port it was last started on)."""
        return f"http://127.0.0.1:{self.port}"

    def _http(self) -> str:
        return f'[http]\nhost = "127.0.0.1"\nport = {self.port}\n'

    def cli(self, *args: str, check: bool = True) -> str:
        """Run `nnode ARGS` with this node's config; its standard output."""
        result = subprocess.run([sys.executable, "-m", "node", "--config", str(self.config), *args],
                                capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"nnode {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result.stdout

    def start(self, attempts: int = 5) -> "NodeProcess":
        """Start the node and wait (bounded) until /healthz answers; on 'address already in use', a new port."""
        for _ in range(attempts):
            if self._start_once():
                return self
            old = self._http()
            self.port = free_port()
            text = self.config.read_text()    # a test may have added keys since: change only the port
            assert old in text, f"{self.config}: no [http] section as written"
            self.config.write_text(text.replace(old, self._http()))
        raise AssertionError(f"node found its port taken {attempts} times: {self.log.read_text()[-2000:]}")

    def _start_once(self) -> bool:
        """One start; False when the port was taken before the node could bind it."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        handle = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "node", "--config", str(self.config), "run"],
                                     stdout=handle, stderr=handle, env=os.environ | {"PYTHONUNBUFFERED": "1"})
        handle.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                with open(self.log, "rb") as log:
                    log.seek(offset)
                    text = log.read().decode(errors="replace")
                if "address already in use" in text:
                    return False
                raise AssertionError(f"node exited: {text}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as resp:
                    health = json.load(resp)
                # Another node on the port this one could not bind answers too: only this node's answer counts.
                if health["ok"] and health.get("node") == self.id:
                    return True
            except OSError:
                pass
            time.sleep(0.1)   # polls the conditions above, bounded by the deadline
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
