"""The appliance's systemd units: `systemd-analyze verify` is silent and the exposure score is at most 2.0."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.firmware.tools import need

ROOTFS = Path(__file__).resolve().parents[2] / "firmware" / "rootfs"
UNITS = sorted((ROOTFS / "etc/systemd/system").glob("*.service"))
PATH_UNITS = sorted((ROOTFS / "etc/systemd/system").glob("*.path"))
EXPOSURE_THRESHOLD = 2.0
# systemd-analyze takes the threshold as an integer score out of 100 (2.0 on the 0-10 scale printed = 20).
_THRESHOLD_ARG = int(EXPOSURE_THRESHOLD * 10)


def _tool(name):
    need(name)
    return shutil.which(name)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """The overlay plus systemd's own units and a stand-in for every program the units start."""
    root = tmp_path_factory.mktemp("root")
    shutil.copytree(ROOTFS, root, dirs_exist_ok=True, symlinks=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", dirs_exist_ok=True, symlinks=True)
    for unit in UNITS:
        for command in re.findall(r"^Exec\w+=[-+!@:]*(\S+)", unit.read_text(), re.M):
            stub = root / command.lstrip("/")
            if not stub.exists():
                stub.parent.mkdir(parents=True, exist_ok=True)
                stub.write_text("#!/bin/sh\n")
                stub.chmod(0o755)
    return root


def test_the_units_exist():
    assert {u.name for u in UNITS} >= {"nnode.service", "nnode-firstboot.service", "nnode-hostname.service",
                                       "nnode-claim-file.service"}
    assert {u.name for u in PATH_UNITS} == {"nnode-claim-file.path"}


@pytest.mark.parametrize("unit", UNITS + PATH_UNITS, ids=lambda u: u.name)
def test_systemd_analyze_verify_is_silent(root, unit):
    tool = _tool("systemd-analyze")
    result = subprocess.run([tool, "verify", f"--root={root}", str(root / unit.relative_to(ROOTFS))],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stderr == "", result.stderr


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_exposure_is_at_most_the_threshold(root, unit):
    tool = _tool("systemd-analyze")
    result = subprocess.run([tool, "security", "--offline=true", f"--threshold={_THRESHOLD_ARG}",
                             f"--root={root}", str(root / unit.relative_to(ROOTFS))],
                            capture_output=True, text=True, timeout=120)
    score = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert score, result.stdout + result.stderr
    assert float(score.group(1)) <= EXPOSURE_THRESHOLD
    assert result.returncode == 0, result.stdout[-2000:]


def test_node_service_is_notify_with_a_watchdog():
    text = (ROOTFS / "etc/systemd/system/nnode.service").read_text()
    assert "\nType=notify\n" in text and re.search(r"^WatchdogSec=\d+", text, re.M)
    assert "\nUser=nnode\n" in text and "\nStateDirectory=nnode\n" in text and "\nProtectSystem=strict\n" in text
