"""firmware/requirements.lock pins every runtime dependency to one version with hashes, and the image recipes
install from it only: two builds from one commit get the same package set. No network: the file is read as is."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "firmware/requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*\\?$")
HASH = re.compile(r"^\s+--hash=sha256:[0-9a-f]{64}\s*\\?$")


def _pins() -> dict[str, tuple[Version, int]]:
    """name -> (version, number of hashes), refusing any line that is neither a pin, a hash nor a comment."""
    pins: dict[str, tuple[Version, int]] = {}
    current = None
    for number, line in enumerate(LOCK.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if match := PIN.match(line):
            current = canonicalize_name(match.group(1))
            assert current not in pins, f"{LOCK.name}:{number}: {current} pinned twice"
            pins[current] = (Version(match.group(2)), 0)
        elif HASH.match(line) and current is not None:
            version, hashes = pins[current]
            pins[current] = (version, hashes + 1)
        else:
            raise AssertionError(f"{LOCK.name}:{number}: not a pin (name==version) or a sha256 hash: {line!r}")
    return pins


def test_every_runtime_dependency_is_pinned_within_its_range_with_hashes():
    pins = _pins()
    assert all(hashes >= 1 for _, hashes in pins.values()), [n for n, (_, h) in pins.items() if h == 0]
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for line in dependencies:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} (pyproject.toml) is not in {LOCK.name}: run scripts/pin-dependencies"
        version, _ = pins[name]
        assert requirement.specifier.contains(version, prereleases=True), \
            f"{LOCK.name} pins {name}=={version}, outside pyproject.toml's {requirement.specifier}"


def test_the_image_recipes_install_only_the_pinned_set():
    qemu = (REPO / "firmware/image/build-qemu-image").read_text()
    assert "--require-hashes --no-deps" in qemu and "requirements.lock" in qemu and "pip check" in qemu
    wheels = (REPO / "firmware/pi-gen/build-wheels").read_text()
    assert 'split-lock" "$repo/firmware/requirements.lock"' in wheels
    assert '--require-hashes --no-deps -r "$out/binary.lock"' in wheels
    assert '--no-deps --require-hashes -r "$out/source.lock"' in wheels
    stage = (REPO / "firmware/pi-gen/stage-nnode/01-node/00-run.sh").read_text()
    assert "--require-hashes --no-deps" in stage and "pip check" in stage


def test_the_lock_splits_into_wheels_and_the_few_sources_with_every_pin_kept(tmp_path):
    subprocess.run([sys.executable, str(REPO / "firmware/split-lock"), str(LOCK), str(tmp_path)], check=True)
    binary, source = (tmp_path / "binary.lock").read_text(), (tmp_path / "source.lock").read_text()
    assert source.startswith("http-ece==") and "--hash=sha256:" in source
    assert "http-ece==" not in binary and "pywebpush==" in binary
    pins = {line.split("==")[0] for line in LOCK.read_text().splitlines() if "==" in line}
    split = {line.split("==")[0] for line in (binary + source).splitlines() if "==" in line}
    assert split == pins
