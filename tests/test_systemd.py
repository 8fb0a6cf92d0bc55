"""sd_notify: a node run as systemd would run it says READY=1 once it serves, then pings its watchdog."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

from tests.procs import NodeProcess


def _receive(sock, deadline, done=lambda messages: False):
    messages = []
    while time.monotonic() < deadline and not done(messages):
        try:
            messages.append(sock.recv(4096).decode())
        except socket.timeout:
            continue
    return messages


def test_ready_after_serving_then_watchdog_pings_then_stopping(short_tmp):
    node = NodeProcess(short_tmp, "s")
    path = str(short_tmp / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(0.2)
        env = os.environ | {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}
        proc = subprocess.Popen([sys.executable, "-m", "node", "--config", str(node.config), "run"], env=env,
                                stderr=subprocess.DEVNULL)
        try:
            first = None
            deadline = time.monotonic() + 30
            while first is None and time.monotonic() < deadline:
                try:
                    first = sock.recv(4096).decode()
                except socket.timeout:
                    assert proc.poll() is None, "node exited"
            assert first and first.startswith("READY=1"), first
            # READY came after the port was listening: /healthz answers now.
            with urllib.request.urlopen(node.url + "/healthz", timeout=5) as resp:
                assert resp.status == 200
            pings = _receive(sock, time.monotonic() + 10, lambda m: m.count("WATCHDOG=1") >= 3)
            assert sum(m == "WATCHDOG=1" for m in pings) >= 3
            # A stopped (stalled) process sends no pings: systemd would restart it after WatchdogSec.
            proc.send_signal(19)  # SIGSTOP
            while True:  # drain what was already queued
                try:
                    sock.recv(4096)
                except socket.timeout:
                    break
            assert _receive(sock, time.monotonic() + 1) == []
            proc.send_signal(18)  # SIGCONT
            proc.terminate()
            tail = _receive(sock, time.monotonic() + 10, lambda m: any(x.startswith("STOPPING=1") for x in m))
            assert any(m.startswith("STOPPING=1") for m in tail)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
