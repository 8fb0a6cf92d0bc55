"""SSH stays off until a manager puts a public key on the boot partition; then key logins only, with the keys on
the data partition so that an update keeps them."""

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
    boot, ssh = tmp_path / "boot", tmp_path / "data/ssh"
    boot.mkdir()
    calls = tmp_path / "systemctl.calls"
    systemctl = tmp_path / "systemctl"
    systemctl.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    systemctl.chmod(0o755)
    env = os.environ | {"NNODE_BOOT_DIR": str(boot), "NNODE_SSH_DIR": str(ssh), "NNODE_SYSTEMCTL": str(systemctl)}

    def run():
        return subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    return boot, ssh, calls, run


def _public_key(tmp_path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    return (tmp_path / "k.pub").read_text()


def test_nothing_on_the_card_means_ssh_stays_off(device):
    boot, ssh, calls, run = device
    assert run().returncode == 0
    assert not calls.exists() and not ssh.exists()


def test_a_public_key_turns_on_key_only_ssh(device, tmp_path):
    boot, ssh, calls, run = device
    key = _public_key(tmp_path)
    (boot / "nnode-ssh.pub").write_text(key.replace("\n", "\r\n"))      # written on Windows, say
    result = run()
    assert result.returncode == 0, result.stderr
    keys = ssh / "authorized_keys/nnadmin"
    assert keys.read_text() == key
    # Root's files in root's folders, none writable by another user: what sshd's StrictModes asks of each.
    assert stat.S_IMODE(os.stat(keys).st_mode) == 0o644
    for folder in (ssh, ssh / "authorized_keys"):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o755
    # The device's own host keys, made once on the data partition and kept on the next run (an update's boot).
    host = {t: (ssh / f"ssh_host_{t}_key").read_bytes() for t in ("ed25519", "rsa")}
    for t in host:
        assert stat.S_IMODE(os.stat(ssh / f"ssh_host_{t}_key").st_mode) == 0o600
        subprocess.run(["ssh-keygen", "-l", "-f", str(ssh / f"ssh_host_{t}_key.pub")], check=True,
                       capture_output=True)
    assert calls.read_text().splitlines() == ["start --no-block ssh.service"]
    assert (boot / "nnode-ssh.pub.installed").exists() and not (boot / "nnode-ssh.pub").exists()
    (boot / "nnode-ssh.pub").write_text(key)
    assert run().returncode == 0
    assert {t: (ssh / f"ssh_host_{t}_key").read_bytes() for t in host} == host
    # And nnode-ssh.off turns it off again.
    (boot / "nnode-ssh.off").write_text("")
    assert run().returncode == 0
    assert not keys.exists()
    assert calls.read_text().splitlines()[-1:] == ["stop --no-block ssh.service"]


def test_sshd_reads_its_keys_from_the_data_partition():
    """The image's sshd settings (in the root slot, the same in every release) point at the data partition, and
    sshd starts only once an authorized key is there."""
    rootfs = SCRIPT.parents[3]
    conf = (rootfs / "etc/ssh/sshd_config.d/10-nnode.conf").read_text()
    assert "AuthorizedKeysFile /var/lib/nnode-data/ssh/authorized_keys/%u" in conf
    assert "HostKey /var/lib/nnode-data/ssh/ssh_host_ed25519_key" in conf
    assert "PasswordAuthentication no" in conf and "PermitRootLogin no" in conf
    dropin = (rootfs / "etc/systemd/system/ssh.service.d/nnode.conf").read_text()
    assert "ConditionPathExists=/var/lib/nnode-data/ssh/authorized_keys/nnadmin" in dropin


def test_anything_but_a_public_key_is_refused(device, tmp_path):
    boot, ssh, calls, run = device
    _public_key(tmp_path)
    (boot / "nnode-ssh.pub").write_text((tmp_path / "k").read_text())     # the private key, by mistake
    result = run()
    assert result.returncode == 1 and "not an OpenSSH public key" in result.stderr
    assert not calls.exists() and not (ssh / "authorized_keys").exists()
    assert (boot / "nnode-ssh.pub.refused").exists()
