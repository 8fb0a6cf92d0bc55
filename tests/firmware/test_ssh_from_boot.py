"""SSH stays off until a manager puts a public key on the boot partition; then key logins only."""

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.firmware.tools import need

SCRIPT = Path(__file__).resolve().parents[2] / "firmware/rootfs/usr/lib/nnode/ssh-from-boot"


@pytest.fixture
def device(tmp_path):
    need("ssh-keygen")
    boot, home, sshd = tmp_path / "boot", tmp_path / "home", tmp_path / "sshd_config.d"
    boot.mkdir()
    calls = tmp_path / "systemctl.calls"
    systemctl = tmp_path / "systemctl"
    systemctl.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    systemctl.chmod(0o755)
    env = os.environ | {"NNODE_BOOT_DIR": str(boot), "NNODE_ADMIN_HOME": str(home),
                        "NNODE_SSHD_CONF_DIR": str(sshd), "NNODE_SYSTEMCTL": str(systemctl)}

    def run():
        return subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    return boot, home, sshd, calls, run


def _public_key(tmp_path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    return (tmp_path / "k.pub").read_text()


def test_nothing_on_the_card_means_ssh_stays_off(device):
    boot, home, sshd, calls, run = device
    assert run().returncode == 0
    assert not calls.exists() and not home.exists()


def test_a_public_key_turns_on_key_only_ssh(device, tmp_path):
    boot, home, sshd, calls, run = device
    key = _public_key(tmp_path)
    (boot / "nnode-ssh.pub").write_text(key.replace("\n", "\r\n"))      # written on Windows, say
    result = run()
    assert result.returncode == 0, result.stderr
    assert (home / ".ssh/authorized_keys").read_text() == key
    assert stat.S_IMODE(os.stat(home / ".ssh/authorized_keys").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(home / ".ssh").st_mode) == 0o700
    conf = (sshd / "10-nnode.conf").read_text()
    assert "PasswordAuthentication no" in conf and "PermitRootLogin no" in conf
    assert calls.read_text().splitlines() == ["enable ssh.service", "start --no-block ssh.service"]
    assert (boot / "nnode-ssh.pub.installed").exists() and not (boot / "nnode-ssh.pub").exists()
    # And nnode-ssh.off turns it off again.
    (boot / "nnode-ssh.off").write_text("")
    assert run().returncode == 0
    assert not (home / ".ssh/authorized_keys").exists()
    assert calls.read_text().splitlines()[-2:] == ["disable ssh.service", "stop --no-block ssh.service"]


def test_anything_but_a_public_key_is_refused(device, tmp_path):
    boot, home, sshd, calls, run = device
    _public_key(tmp_path)
    (boot / "nnode-ssh.pub").write_text((tmp_path / "k").read_text())     # the private key, by mistake
    result = run()
    assert result.returncode == 1 and "not an OpenSSH public key" in result.stderr
    assert not calls.exists() and not (home / ".ssh").exists()
    assert (boot / "nnode-ssh.pub.refused").exists()
