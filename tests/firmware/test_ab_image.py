"""make-ab-image turns a pi-gen style card image into boot + root A + root B + data, without loop devices."""

import json
import subprocess
from pathlib import Path

import pytest

from tests.firmware.tools import need

SCRIPT = Path(__file__).resolve().parents[2] / "firmware" / "pi-gen" / "make-ab-image"
TOOLS = ("sfdisk", "mkfs.vfat", "mcopy", "mkfs.ext4", "resize2fs", "e2fsck", "debugfs")


@pytest.fixture
def tools():
    need(*TOOLS)


def _run(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=120, **kw)


def _pi_gen_like_image(tmp: Path) -> Path:
    """A tiny stand-in for pi-gen's export: a FAT boot partition and an ext4 root with an fstab."""
    boot = tmp / "boot.img"
    _run("truncate", "-s", "32M", str(boot))
    _run("mkfs.vfat", "-n", "bootfs", str(boot))
    (tmp / "config.txt").write_text("include common.txt\nos_prefix=slot-A/\n")
    _run("mcopy", "-i", str(boot), str(tmp / "config.txt"), "::config.txt")
    tree = tmp / "rootfs"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/fstab").write_text("PARTUUID=1234abcd-02 / ext4 defaults 0 1\n")
    root = tmp / "root.img"
    _run("truncate", "-s", "64M", str(root))
    _run("mkfs.ext4", "-q", "-d", str(tree), "-L", "rootfs", str(root))
    image = tmp / "pi-gen.img"
    _run("truncate", "-s", str((8192 + 65536 + 131072 + 2048) * 512), str(image))
    subprocess.run(["sfdisk", "--quiet", str(image)], input="label: dos\nlabel-id: 0x1234abcd\nunit: sectors\n\n"
                   "start=8192, size=65536, type=c\nstart=73728, size=131072, type=83\n", text=True, check=True)
    _run("dd", f"if={boot}", f"of={image}", "bs=512", "seek=8192", "conv=notrunc", "status=none")
    _run("dd", f"if={root}", f"of={image}", "bs=512", "seek=73728", "conv=notrunc", "status=none")
    return image


def _partition(image: Path, part: dict, into: Path) -> Path:
    _run("dd", f"if={image}", f"of={into}", "bs=512", f"skip={part['start']}", f"count={part['size']}",
         "status=none")
    return into


def test_ab_layout(tools, tmp_path):
    source = _pi_gen_like_image(tmp_path)
    output = tmp_path / "card.img"
    _run(str(SCRIPT), "--slot-size", "128M", "--data-size", "32M", str(source), str(output))
    table = json.loads(_run("sfdisk", "--json", str(output)).stdout)["partitiontable"]
    assert table["id"] == "0x1234abcd"                # PARTUUIDs in pi-gen's fstab still name boot and slot A
    parts = table["partitions"]
    assert [p["type"] for p in parts] == ["c", "83", "83", "83"]
    assert parts[1]["size"] == parts[2]["size"] == 128 * 2048
    assert parts[3]["size"] == 32 * 2048
    assert all(p["start"] + p["size"] <= q["start"] for p, q in zip(parts, parts[1:]))   # no overlap
    # Boot files kept; both slots hold the same root filesystem; the data partition is labelled for fstab.
    boot = _partition(output, parts[0], tmp_path / "p1")
    assert "os_prefix=slot-A/" in _run("mtype", "-i", str(boot), "::config.txt").stdout
    a = _partition(output, parts[1], tmp_path / "p2")
    b = _partition(output, parts[2], tmp_path / "p3")
    assert a.read_bytes() == b.read_bytes()
    assert "PARTUUID=1234abcd-02" in _run("debugfs", "-R", "cat /etc/fstab", str(a)).stdout
    data = _partition(output, parts[3], tmp_path / "p4")
    assert "Filesystem volume name:   nnode-data" in _run("dumpe2fs", "-h", str(data)).stdout
    # Its folders: node/ (bind-mounted at /var/lib/nnode) private, ssh/ root's and not writable by others.
    for folder, mode in (("/node", "0700"), ("/ssh", "0755"), ("/ssh/authorized_keys", "0755")):
        stat = _run("debugfs", "-R", f"stat {folder}", str(data)).stdout
        assert f"Mode:  {mode}" in stat and "User:     0" in stat, (folder, stat)
    _run("e2fsck", "-fn", str(a))
    _run("e2fsck", "-fn", str(data))


def test_refuses_an_image_that_is_not_pi_gens(tools, tmp_path):
    odd = tmp_path / "odd.img"
    _run("truncate", "-s", "16M", str(odd))
    subprocess.run(["sfdisk", "--quiet", str(odd)], input="label: dos\n\nstart=2048, type=83\n", text=True,
                   check=True)
    result = subprocess.run([str(SCRIPT), str(odd), str(tmp_path / "out.img")], capture_output=True, text=True)
    assert result.returncode != 0 and "expected 2 partitions" in result.stderr
