"""The manager's path with real processes: init, run, discover by mDNS on 127.0.0.1, approve, publish, status."""

import json
import os
import stat
import time
import urllib.request

import pytest

from tests.procs import NodeProcess


def _wait(check, timeout=60.0):  # mDNS on a loaded 2-core machine can take a while
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"condition not met within {timeout} s")


def _state(node, other) -> str | None:
    """The state `node` lists `other` in ("pending", "approved"), None when not listed.

    Only the test's own nodes count: mDNS on 127.0.0.1 also shows any other node running on this machine."""
    for line in node.cli("peer", "list").splitlines():
        if other.id[:16] in line:
            return line.split()[0]
    return None


def _metric(node, sample: str) -> float:
    """One sample of a running node's /metrics, e.g. 'nnode_push_dropped_total' (0 when absent)."""
    with urllib.request.urlopen(node.url + "/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(sample + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def procs(short_tmp):
    started = []

    def factory(name, **kw):
        node = NodeProcess(short_tmp, name, **kw)
        started.append(node)
        return node
    yield factory
    for node in started:
        node.stop()


def test_init_creates_identity(procs):
    node = procs("a")
    data = node.root / "data"
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(data / "node.key").st_mode) == 0o600
    assert (data / "node.db").exists()
    key = (data / "node.key").read_bytes()
    import nacl.signing
    assert nacl.signing.SigningKey(key).verify_key.encode().hex() == node.id
    # A second init keeps the identity.
    assert node.id in node.cli("init") and (data / "node.key").read_bytes() == key


def test_key_readable_by_others_is_refused(procs):
    node = procs("a")
    os.chmod(node.root / "data" / "node.key", 0o644)
    out = node.cli("status", check=False)
    assert out == ""
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-m", "node", "--config", str(node.config), "status"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "accessible to other users" in result.stderr


def test_discover_approve_and_federate(procs):
    a = procs("a", discovery=True).start()
    b = procs("b", discovery=True).start()
    # mDNS on 127.0.0.1: each sees the other, pending until its manager approves.
    _wait(lambda: _state(a, b) and _state(b, a))
    assert _state(a, b) == "pending"
    a.cli("publish", "water main break on Elm St", "--title", "Water")
    # b's manager approves a, so b asks a for its events; a has not approved b: it refuses, and nothing flows.
    b.cli("peer", "approve", a.id[:12])
    _wait(lambda: _metric(a, 'nnode_sync_requests_refused_total{reason="not_approved"}') > 0)
    assert "water main" not in b.cli("events")       # nothing flows before approval
    a.cli("peer", "approve", b.id[:12])
    _wait(lambda: "water main break" in b.cli("events"))
    b.cli("publish", "thanks, crew is here")
    _wait(lambda: "crew is here" in a.cli("events"))
    status = json.loads(a.cli("status", "--json"))
    assert status["running"] and status["db_ok"] and status["events"] == 2
    assert [p["state"] for p in status["peers"] if p["key"] == b.id] == ["approved"]
    text = a.cli("status")
    assert "running" in text and "approved" in text and b.id[:16] in text
    # Removing a peer stops it syncing with us.
    a.cli("peer", "remove", b.id[:12])
    dropped = _metric(b, "nnode_push_dropped_total")
    b.cli("publish", "after removal")
    _wait(lambda: _metric(b, "nnode_push_dropped_total") > dropped)    # b pushed it to a, and a refused it
    assert "after removal" not in a.cli("events")
    # The private key never reaches the logs.
    for node in (a, b):
        secret = (node.root / "data" / "node.key").read_bytes()
        log = node.log.read_bytes()
        assert secret.hex().encode() not in log and secret not in log
        assert b'"msg": "node serving"' in log                 # structured JSON logs


def test_trusted_key_is_approved_on_discovery(procs):
    a = procs("a", discovery=True)
    b = procs("b", discovery=True)
    a.config.write_text(a.config.read_text() + f'trusted_keys = ["{b.id}"]\n')
    a.start()
    b.start()
    _wait(lambda: _state(a, b) == "approved")
    _wait(lambda: _state(b, a) is not None)
    assert _state(b, a) == "pending"     # b does not trust a: its manager decides


def test_status_when_not_running(procs):
    a = procs("a")
    text = a.cli("status")
    assert "not running" in text and a.id in text
    result = a.cli("publish", "x", check=False)
    assert result == ""


def test_manager_invites_and_signs_in_from_the_cli(procs):
    import asyncio
    import re

    from tests.people import PASSWORD, browser, call

    node = procs("m").start()
    result = _cli_failure(node, "admin-link")
    assert "no manager yet" in result
    code = re.search(r"Claim code: (\S+)", node.log.read_text()).group(1)

    async def claim_and_join(invite_code: str | None = None) -> dict:
        async with browser() as session:
            if invite_code is None:
                return (await call(session, "POST", node.url + "/setup/claim",
                                   json={"code": code, "password": PASSWORD}))[1]
            return (await call(session, "POST", node.url + "/api/join", json={"code": invite_code}))[1]

    assert asyncio.run(claim_and_join())["role"] == "manager"
    out = node.cli("invite", "--unit", "4B", "--name", "Ada")
    invite_code = re.search(r"code: (\S+)", out).group(1)
    assert re.search(r"link: http://\S+:\d+/join#code=" + re.escape(invite_code), out)
    assert "▀" in out or "█" in out                        # the terminal QR
    joined = asyncio.run(claim_and_join(invite_code))
    assert joined["role"] == "resident" and joined["unit"] == "4B"
    listed = node.cli("residents", "list")
    assert "4B" in listed and "Ada" in listed and "sessions=1" in listed
    node.cli("residents", "revoke", "1")
    assert "revoked" in node.cli("residents", "list")
    link = re.search(r"(http://\S+/login#token=(\S+))", node.cli("admin-link"))

    async def use_link(token: str) -> tuple[int, dict]:
        async with browser() as session:
            return await call(session, "POST", node.url + "/api/login", json={"token": token})

    assert asyncio.run(use_link(link.group(2)))[1]["role"] == "manager"
    assert asyncio.run(use_link(link.group(2)))[0] == 403   # one time only


def _cli_failure(node, *args) -> str:
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-m", "node", "--config", str(node.config), *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    return result.stderr


def test_demo_prints_working_links(short_tmp):
    import asyncio
    import re
    import signal
    import subprocess
    import sys

    from tests.conftest import free_port
    from tests.people import browser, call

    # The demo binds its port itself, so one is chosen first; taken meanwhile on a busy machine, another is tried.
    for _ in range(5):
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "node", "demo", "--port", str(port)], cwd=short_tmp,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("  more:" in line for line in lines):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
        text = "".join(lines)
        if "address already in use" not in text:
            break
        proc.wait(timeout=30)
    try:
        admin = re.search(r"/login#token=(\S+)", text)
        invite = re.search(r"/join#code=(\S+)", text)
        assert admin and invite, text
        assert (short_tmp / "demo-data" / "node.key").exists()
        assert "Courtyard (simulated)" in text
        # It claims itself before serving: no claim code (or its QR) that it would then use up, but its password.
        assert "Claim code" not in text and "not claimed" not in text and "█" not in text, text
        assert re.search(r"manager password: \S{12,}", text), text
        assert "nnode agency-key new" in text and f"agency-client portal --key demo.key --node " \
            f"http://127.0.0.1:{port}`" in text, text
        import threading
        threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the node's log from blocking it

        async def use() -> None:
            url = f"http://127.0.0.1:{port}"
            async with browser() as manager, browser() as resident:
                assert (await call(manager, "POST", url + "/api/login", json={"token": admin.group(1)}))[0] == 200
                status, joined = await call(resident, "POST", url + "/api/join", json={"code": invite.group(1)})
                assert status == 200 and joined["unit"] == "Demo 1A"
                _, alerts = await call(resident, "GET", url + "/api/alerts")
                assert any("water off" in a["cap"]["info"][0]["headline"] for a in alerts["alerts"])
                # The simulated camera is shared with residents, and a motion clip appears within a minute.
                _, cameras = await call(resident, "GET", url + "/api/cameras")
                assert [c["id"] for c in cameras["cameras"]] == ["courtyard"]
                deadline = time.monotonic() + 60
                clips: list = []
                while not clips and time.monotonic() < deadline:
                    await asyncio.sleep(1)
                    clips = (await call(resident, "GET", url + "/api/clips"))[1]["clips"]
                assert clips and clips[0]["camera"] == "courtyard" and clips[0]["duration"] > 3
        asyncio.run(use())
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


@pytest.mark.parametrize("command", ["demo", "run"])
def test_a_busy_port_is_one_line_naming_it_and_the_port_flag(short_tmp, command):
    import socket
    import subprocess
    import sys

    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen(1)
    port = held.getsockname()[1]
    config = short_tmp / "node.toml"
    config.write_text(f'[node]\ndata_dir = "{short_tmp / "data"}"\n[http]\nhost = "127.0.0.1"\nport = {port}\n'
                      '[discovery]\nenabled = false\n')
    args = ["demo", "--port", str(port)] if command == "demo" else ["--config", str(config), "run"]
    try:
        result = subprocess.run([sys.executable, "-m", "node", *args], cwd=short_tmp, capture_output=True,
                                text=True, timeout=120)
    finally:
        held.close()
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 1, output
    assert len(output.splitlines()) == 1, output
    assert f"127.0.0.1:{port}" in output and "address already in use" in output and "--port" in output, output
    assert "Traceback" not in output
    assert not (short_tmp / "demo-data").exists()    # the demo made nothing before finding its port taken
