"""RAUC bundles: built with the development key, refused when altered or signed by anyone else; the system config."""

import configparser
import os
import subprocess
from pathlib import Path

import pytest

from tests.firmware.tools import need

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
SYSTEM_CONF = FIRMWARE / "rootfs/etc/rauc/system.conf"
DEV = FIRMWARE / "rauc/dev-keyring"
BUILD_BUNDLE = FIRMWARE / "rauc/build-bundle"
MAKE_KEYRING = FIRMWARE / "rauc/make-dev-keyring"


@pytest.fixture(autouse=True)
def tools():
    need("rauc", "mksquashfs", "unsquashfs", "mkfs.ext4", "dumpe2fs", "openssl")


def run(*args, check: bool = False) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"{args[0]} failed ({result.returncode}): {result.stdout}{result.stderr}")
    return result


def extract(bundle: Path, out: Path, keyring: Path = DEV / "ca.cert.pem") -> subprocess.CompletedProcess:
    """What the device does before installing: check the signature, then every payload block."""
    return run("rauc", f"--conf={SYSTEM_CONF}", f"--keyring={keyring}", "extract", bundle, out)


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    """A tiny root filesystem image, laid out like the real one where the update hook looks."""
    tree = tmp_path / "tree"
    (tree / "boot/firmware/overlays").mkdir(parents=True)
    (tree / "boot/firmware/kernel8.img").write_bytes(b"kernel")
    (tree / "boot/firmware/bcm2711-rpi-4-b.dtb").write_bytes(b"dtb")
    (tree / "boot/firmware/cmdline.txt").write_text("console=tty1 root=PARTUUID=0-02 rootwait\n")
    # Incompressible, so the bundle's payload passes the 4 KiB minimum of verity bundles.
    (tree / "blob").write_bytes(os.urandom(64 * 1024))
    image = tmp_path / "rootfs.ext4"
    run("mkfs.ext4", "-q", "-F", "-d", tree, image, "8M", check=True)
    return image


def build(rootfs: Path, out: Path, cert: Path = DEV / "signing.cert.pem", key: Path = DEV / "signing.key.pem",
          *options: str) -> Path:
    run(BUILD_BUNDLE, *options, rootfs, cert, key, out, check=True)
    return out


def test_dev_bundle_extracts_with_the_dev_keyring(rootfs, tmp_path):
    bundle = build(rootfs, tmp_path / "update.raucb", DEV / "signing.cert.pem", DEV / "signing.key.pem",
                   "--version", "1.2.3", "--keyring", DEV / "ca.cert.pem")
    result = extract(bundle, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    assert (out / "rootfs.ext4").read_bytes() == rootfs.read_bytes()
    manifest = configparser.ConfigParser(interpolation=None)
    manifest.read(out / "manifest.raucm")
    assert manifest["update"]["version"] == "1.2.3"
    assert manifest["bundle"]["format"] == "verity"
    assert "post-install" in manifest["image.rootfs"]["hooks"].split(";")
    assert "install-boot-files" in (out / "hook").read_text()


def test_bundle_with_one_payload_byte_flipped_is_rejected(rootfs, tmp_path):
    bundle = build(rootfs, tmp_path / "update.raucb")
    data = bytearray(bundle.read_bytes())
    # Layout: payload (squashfs + verity hash tree), CMS signature, signature size (8 bytes, big endian).
    signed_end = len(data) - 8 - int.from_bytes(data[-8:], "big")
    data[signed_end // 2] ^= 0x01
    tampered = tmp_path / "tampered.raucb"
    tampered.write_bytes(data)

    result = extract(tampered, tmp_path / "out")
    assert result.returncode != 0
    assert "payload is corrupted" in result.stderr
    assert not (tmp_path / "out" / "rootfs.ext4").exists()


def test_bundle_signed_by_another_ca_is_rejected(rootfs, tmp_path):
    other = tmp_path / "other-keyring"
    run(MAKE_KEYRING, other, check=True)
    bundle = build(rootfs, tmp_path / "foreign.raucb", other / "signing.cert.pem", other / "signing.key.pem")

    result = extract(bundle, tmp_path / "out")
    assert result.returncode != 0
    assert "signature verification failed" in result.stderr
    assert not (tmp_path / "out").exists()
    # The bundle itself is sound: its own CA accepts it, so the refusal above is about who signed it.
    assert extract(bundle, tmp_path / "out2", keyring=other / "ca.cert.pem").returncode == 0


def test_a_release_resign_is_accepted_by_the_release_ca_only(rootfs, tmp_path):
    # The release path in docs/updates.md: CI builds with the development key, the offline machine resigns.
    release = tmp_path / "release-keyring"
    run(MAKE_KEYRING, release, check=True)
    dev_bundle = build(rootfs, tmp_path / "dev.raucb")
    run("rauc", f"--conf={SYSTEM_CONF}", f"--keyring={DEV / 'ca.cert.pem'}", "resign",
        f"--signing-keyring={release / 'ca.cert.pem'}", f"--cert={release / 'signing.cert.pem'}",
        f"--key={release / 'signing.key.pem'}", dev_bundle, tmp_path / "release.raucb", check=True)
    assert extract(tmp_path / "release.raucb", tmp_path / "out", keyring=release / "ca.cert.pem").returncode == 0
    assert "signature verification failed" in extract(tmp_path / "release.raucb", tmp_path / "out2").stderr


def test_build_bundle_refuses_an_image_that_is_not_ext4(tmp_path):
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree/file").write_text("x")
    run("mksquashfs", tmp_path / "tree", tmp_path / "rootfs.squashfs", "-quiet", "-noappend", check=True)
    result = run(BUILD_BUNDLE, tmp_path / "rootfs.squashfs", DEV / "signing.cert.pem", DEV / "signing.key.pem",
                 tmp_path / "x.raucb")
    assert result.returncode == 1
    assert "not an ext4 image" in result.stderr
    assert not (tmp_path / "x.raucb").exists()


def test_rauc_loads_the_system_config_and_would_refuse_a_broken_one(tmp_path, rootfs):
    # RAUC refuses unknown keys and values when it loads a config, so extracting with --conf checks the file.
    bundle = build(rootfs, tmp_path / "update.raucb")
    assert extract(bundle, tmp_path / "out").returncode == 0
    broken = tmp_path / "system.conf"
    broken.write_text(SYSTEM_CONF.read_text().replace("bootloader=custom", "bootloader=custom\nbogus=1"))
    result = run("rauc", f"--conf={broken}", f"--keyring={DEV / 'ca.cert.pem'}", "extract", bundle,
                 tmp_path / "out2")
    assert result.returncode != 0
    assert "Invalid key 'bogus'" in result.stderr


def test_system_config_matches_the_bundles_and_the_device():
    conf = configparser.ConfigParser(interpolation=None)
    conf.read(SYSTEM_CONF)
    manifest = configparser.ConfigParser(interpolation=None)
    manifest.read(FIRMWARE / "rauc/manifest.raucm.in")
    assert conf["system"]["compatible"] == manifest["update"]["compatible"] == "neighborhood-node-rpi"
    assert conf["system"]["bootloader"] == "custom"
    assert conf["system"]["bundle-formats"] == "verity"
    assert conf["keyring"]["path"] == "/etc/rauc/keyring.pem"
    backend = FIRMWARE / "rootfs" / conf["handlers"]["bootloader-custom-backend"].lstrip("/")
    assert backend.is_file() and os.access(backend, os.X_OK)
    slots = {s: dict(conf[s]) for s in conf.sections() if s.startswith("slot.")}
    assert slots == {
        "slot.rootfs.0": {"device": "/dev/mmcblk0p2", "type": "ext4", "bootname": "A"},
        "slot.rootfs.1": {"device": "/dev/mmcblk0p3", "type": "ext4", "bootname": "B"},
    }


def test_the_dev_keyring_signs_for_20_years_and_holds_no_ca_key():
    names = sorted(p.name for p in DEV.iterdir())
    assert names == ["README.md", "ca.cert.pem", "signing.cert.pem", "signing.key.pem"]
    # -checkend: still valid 15 years from now, so tests do not start failing on a date.
    result = run("openssl", "x509", "-in", DEV / "signing.cert.pem", "-noout", "-checkend", str(15 * 365 * 86400))
    assert result.returncode == 0, result.stdout
    assert "DEVELOPMENT" in run("openssl", "x509", "-in", DEV / "ca.cert.pem", "-noout", "-subject").stdout
