"""The tryboot backend against a fake boot partition: each step of an update, and a power cut after each one."""

import json
import os
import re
import resource
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.firmware.tools import need
from tests.procs import NodeProcess

ROOTFS = Path(__file__).resolve().parents[2] / "firmware/rootfs"
BACKEND = ROOTFS / "usr/lib/nnode/rauc-tryboot-backend"
MARK_GOOD = ROOTFS / "usr/lib/nnode/mark-good"
DEV_CA = ROOTFS.parent / "rauc/dev-keyring/ca.cert.pem"

# The VideoCore mailbox is hardware; this stand-in keeps the reboot flags in a file that a power cut deletes.
VCMAILBOX = """#!/bin/sh
flags="$(dirname "$0")/../reboot-flags"
[ "$1" = 0x00038064 ] && echo "$4" > "$flags"
value="$(cat "$flags" 2>/dev/null || echo 0)"
printf '0x0000001c 0x80000000 %s 0x00000004 0x80000004 0x%08x 0x00000000\\n' "$1" "$value"
"""


def new_root(path: Path, version: str) -> Path:
    """A root filesystem tree as RAUC mounts it for the bundle hook: the Pi's OS files under /boot/firmware."""
    firmware = path / "boot/firmware"
    (firmware / "overlays").mkdir(parents=True)
    (firmware / "kernel8.img").write_text(f"kernel {version}")
    (firmware / "bcm2711-rpi-4-b.dtb").write_text(f"dtb {version}")
    (firmware / "overlays/README").write_text("overlays")
    (firmware / "overlays/disable-bt.dtbo").write_text("dtbo")
    (firmware / "start4.elf").write_text("shared firmware blob")
    (firmware / "cmdline.txt").write_text("console=serial0,115200 console=tty1 root=PARTUUID=1234-02 rootwait\n")
    return path


class Pi:
    """A boot partition folder, the firmware's rules for reading it, and its volatile tryboot flag."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.boot = root / "boot"
        self.flags = root / "reboot-flags"
        self.proc_cmdline = root / "cmdline"
        (root / "bin").mkdir(parents=True)
        vcmailbox = root / "bin/vcmailbox"
        vcmailbox.write_text(VCMAILBOX)
        vcmailbox.chmod(0o755)
        self.env = os.environ | {"NNODE_BOOT_DIR": str(self.boot), "NNODE_PROC_CMDLINE": str(self.proc_cmdline),
                                 "NNODE_VCMAILBOX": str(vcmailbox)}
        self.kernel = ""
        # The factory image, as the image recipe lays it down. common.txt ends inside a [pi4] section.
        self.boot.mkdir()
        (self.boot / "common.txt").write_text("arm_64bit=1\n[pi4]\narm_boost=1\n")
        self.backend("install-boot-files", "A", new_root(root / "factory", "1"), "/dev/mmcblk0p2")
        self.backend("init", "A")

    def backend(self, *args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        result = subprocess.run([str(BACKEND), *map(str, args)], env=self.env, capture_output=True, text=True,
                                timeout=30, **kwargs)
        if check and result.returncode != 0:
            raise AssertionError(f"backend {' '.join(map(str, args))} failed: {result.stderr}")
        return result

    def power_on(self) -> str:
        """Boot as the firmware does, and return the slot whose root filesystem the kernel mounts."""
        tryboot = self.flags.exists() and self.flags.read_text().strip() == "1"
        self.flags.unlink(missing_ok=True)  # cleared before the OS starts, so a failed trial is not repeated
        prefix, section = "", "all"
        for line in (self.boot / ("tryboot.txt" if tryboot else "config.txt")).read_text().splitlines():
            if line.startswith("["):
                section = line.strip("[]")
            elif line.startswith("os_prefix=") and section == "all":
                prefix = line.split("=", 1)[1]
        folder = self.boot / prefix
        if not (folder / "kernel8.img").exists() or not list(folder.glob("*.dtb")):
            folder = self.boot  # the firmware ignores a prefix that holds no kernel and device tree
        cmdline = (folder / "cmdline.txt").read_text()
        self.proc_cmdline.write_text(cmdline)
        self.kernel = (folder / "kernel8.img").read_text()
        return re.search(r"rauc\.slot=(\S+)", cmdline).group(1)

    def reboot(self) -> str:
        """A soft reboot: the tryboot flag survives it."""
        return self.power_on()

    def power_cut(self) -> str:
        self.flags.unlink(missing_ok=True)
        return self.power_on()

    def rauc_view(self) -> dict[str, str]:
        """What RAUC reads back: the slot the next boot starts and each slot's state."""
        return {"primary": self.backend("get-primary").stdout.strip(),
                "A": self.backend("get-state", "A").stdout.strip(),
                "B": self.backend("get-state", "B").stdout.strip()}


@pytest.fixture
def pi(tmp_path: Path) -> Pi:
    device = Pi(tmp_path / "pi")
    assert device.power_on() == "A"
    return device


def install_steps(pi: Pi, target: str, root: Path) -> list:
    """What `rauc install` asks of the backend, in RAUC's order, then the reboot and nnode-mark-good."""
    device = {"A": "/dev/mmcblk0p2", "B": "/dev/mmcblk0p3"}[target]
    return [
        lambda: pi.backend("set-state", target, "bad"),  # before RAUC writes the slot
        lambda: pi.backend("install-boot-files", target, root, device),  # the bundle's post-install hook
        lambda: pi.backend("set-primary", target),  # after a complete write
        pi.reboot,
        lambda: pi.backend("set-state", target, "good"),  # `rauc status mark-good` from the healthy trial
    ]


FACTORY = ("A", {"primary": "A", "A": "good", "B": "bad"})
# After a power cut following step n of install_steps: which slot boots, and what RAUC reads back then.
AFTER_POWER_CUT = [
    FACTORY,  # nothing done yet
    FACTORY,  # target marked bad
    FACTORY,  # new kernel in slot-B/, which nothing selects
    FACTORY,  # trial armed, but the flag does not outlive the power: never tried, and B reads bad
    FACTORY,  # trial running, not yet marked good: the old slot comes back, B reads bad
    ("B", {"primary": "B", "A": "good", "B": "good"}),  # committed
]


@pytest.mark.parametrize("done", range(len(AFTER_POWER_CUT)))
def test_power_cut_after_each_step_of_an_update(pi, tmp_path, done):
    for step in install_steps(pi, "B", new_root(tmp_path / "new", "2"))[:done]:
        step()
    slot, view = AFTER_POWER_CUT[done]
    assert pi.power_cut() == slot
    assert pi.kernel == {"A": "kernel 1", "B": "kernel 2"}[slot]
    assert pi.rauc_view() == view
    assert pi.power_cut() == slot  # and it stays there


def test_an_update_without_interruptions_and_the_next_one_back(pi, tmp_path):
    steps = install_steps(pi, "B", new_root(tmp_path / "v2", "2"))
    for step in steps[:3]:
        step()
    assert pi.rauc_view() == {"primary": "B", "A": "good", "B": "good"}  # armed: the next boot tries B
    assert pi.reboot() == "B" and pi.kernel == "kernel 2"
    # In the trial, the committed slot is what any further reboot would start.
    assert pi.rauc_view() == {"primary": "A", "A": "good", "B": "good"}
    assert pi.backend("get-current").stdout.strip() == "B"
    steps[4]()
    assert pi.rauc_view() == {"primary": "B", "A": "good", "B": "good"}
    assert pi.reboot() == "B"

    for step in install_steps(pi, "A", new_root(tmp_path / "v3", "3")):
        step()
    assert pi.power_cut() == "A" and pi.kernel == "kernel 3"


def test_a_trial_marked_bad_reboots_into_the_old_slot(pi, tmp_path):
    for step in install_steps(pi, "B", new_root(tmp_path / "new", "2"))[:4]:
        step()
    pi.backend("set-state", "B", "bad")  # `rauc status mark-bad` from an unhealthy trial
    assert pi.rauc_view() == {"primary": "A", "A": "good", "B": "bad"}
    assert pi.reboot() == "A"
    assert pi.rauc_view() == {"primary": "A", "A": "good", "B": "bad"}


def test_the_committed_slot_is_never_marked_bad_or_overwritten(pi, tmp_path):
    for step in install_steps(pi, "B", new_root(tmp_path / "new", "2"))[:4]:
        step()
    before = {p.name: p.read_bytes() for p in pi.boot.glob("*.txt")}
    # From inside the trial, RAUC would pick A (not booted) as the next target: that must fail, not destroy A.
    result = pi.backend("set-state", "A", "bad", check=False)
    assert result.returncode == 1 and "committed" in result.stderr
    result = pi.backend("install-boot-files", "A", new_root(tmp_path / "other", "3"), "/dev/mmcblk0p2", check=False)
    assert result.returncode == 1
    assert {p.name: p.read_bytes() for p in pi.boot.glob("*.txt")} == before
    assert pi.power_cut() == "A" and pi.kernel == "kernel 1"


def test_a_power_cut_between_the_two_writes_of_a_commit_boots_the_new_slot(pi, tmp_path):
    steps = install_steps(pi, "B", new_root(tmp_path / "new", "2"))
    for step in steps[:4]:
        step()
    old_tryboot = (pi.boot / "tryboot.txt").read_bytes()
    steps[4]()
    # The disk as it was after config.txt was replaced and before tryboot.txt was.
    (pi.boot / "tryboot.txt").write_bytes(old_tryboot)
    assert pi.power_cut() == "B"
    # Both files name B, so A's state is unknown and reads bad: nothing will try it until it is reinstalled.
    assert pi.rauc_view() == {"primary": "B", "A": "bad", "B": "good"}
    for step in install_steps(pi, "A", new_root(tmp_path / "v3", "3")):
        step()
    assert pi.power_cut() == "A" and pi.kernel == "kernel 3"


def limit_file_size(size: int):
    """Writes past size bytes fail, so the backend dies halfway through writing its file."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def test_a_write_torn_by_a_crash_leaves_the_old_file_in_use(pi, tmp_path):
    steps = install_steps(pi, "B", new_root(tmp_path / "new", "2"))
    steps[0]()
    steps[1]()
    result = pi.backend("set-primary", "B", check=False, preexec_fn=limit_file_size(40))
    assert result.returncode == 1
    torn = pi.boot / "tryboot.txt.tmp"
    assert 0 < torn.stat().st_size <= 40  # a temp file cut short, as a crash mid-write leaves it
    assert pi.rauc_view() == FACTORY[1]
    assert pi.reboot() == "A"

    # RAUC reports the failed install; the next attempt writes over the leftover and goes ahead.
    steps[2]()
    assert not torn.exists()
    assert pi.reboot() == "B"
    result = pi.backend("set-state", "B", "good", check=False, preexec_fn=limit_file_size(40))
    assert result.returncode == 1
    assert (pi.boot / "config.txt.tmp").exists()
    assert pi.power_cut() == "A" and pi.kernel == "kernel 1"
    assert pi.rauc_view() == FACTORY[1]


def test_boot_files_come_from_the_new_root_filesystem(pi, tmp_path):
    root = new_root(tmp_path / "new", "2")
    (pi.boot / "slot-B").mkdir()
    (pi.boot / "slot-B/stale.dtb").write_text("from an older install")
    pi.backend("install-boot-files", "B", root, "/dev/mmcblk0p3")
    slot = pi.boot / "slot-B"
    assert sorted(p.name for p in slot.iterdir()) == ["bcm2711-rpi-4-b.dtb", "cmdline.txt", "kernel8.img",
                                                       "overlays"]
    assert (slot / "overlays/README").exists()  # without it the firmware would load the shared overlays
    assert (slot / "cmdline.txt").read_text() == \
        "console=serial0,115200 console=tty1 rootwait root=/dev/mmcblk0p3 rauc.slot=B\n"
    assert sorted(p.name for p in pi.boot.iterdir() if p.name.startswith("slot-")) == ["slot-A", "slot-B"]

    (root / "boot/firmware/kernel8.img").unlink()
    result = pi.backend("install-boot-files", "B", root, "/dev/mmcblk0p3", check=False)
    assert result.returncode == 1 and "no kernel" in result.stderr


# RAUC itself, as a service on a private D-Bus, asking the backend: what `rauc status` shows on the device.

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:tmpdir=/tmp</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/>
  </policy>
</busconfig>
"""


@pytest.fixture
def rauc_service(tmp_path: Path):
    """Start `rauc service` with our system.conf (slots and keyring moved into tmp_path) for a given Pi."""
    need("rauc", "dbus-daemon")
    procs: list[subprocess.Popen] = []

    def start(pi: Pi, booted: str) -> dict[str, str]:
        conf = (ROOTFS / "etc/rauc/system.conf").read_text()
        for old, new in [("/dev/mmcblk0p2", tmp_path / "slot0"), ("/dev/mmcblk0p3", tmp_path / "slot1"),
                         ("/usr/lib/nnode/rauc-tryboot-backend", BACKEND), ("/etc/rauc/keyring.pem", DEV_CA),
                         ("statusfile=per-slot", f"data-directory={tmp_path / 'rauc-data'}")]:
            assert old in conf
            conf = conf.replace(old, str(new))
        (tmp_path / "system.conf").write_text(conf)
        (tmp_path / "rauc-data").mkdir()
        (tmp_path / "bus.conf").write_text(BUS_CONFIG)
        bus = subprocess.Popen(["dbus-daemon", f"--config-file={tmp_path / 'bus.conf'}", "--nofork",
                                "--print-address=1"], stdout=subprocess.PIPE, text=True)
        procs.append(bus)
        env = pi.env | {"DBUS_SYSTEM_BUS_ADDRESS": bus.stdout.readline().strip()}
        with open(tmp_path / "rauc.log", "ab") as log:
            procs.append(subprocess.Popen(["rauc", f"--conf={tmp_path / 'system.conf'}", "service",
                                           f"--override-boot-slot={booted}"], env=env, stdout=log, stderr=log))
        deadline = time.monotonic() + 20
        while subprocess.run(["rauc", "status"], env=env, capture_output=True, timeout=30).returncode != 0:
            assert time.monotonic() < deadline, (tmp_path / "rauc.log").read_text()
            time.sleep(0.1)
        return env

    yield start
    for proc in reversed(procs):
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()


def rauc_status(env: dict[str, str]) -> dict[str, str]:
    status = json.loads(subprocess.run(["rauc", "status", "--output-format=json"], env=env, check=True,
                                       capture_output=True, text=True).stdout)
    slots = {name: slot for entry in status["slots"] for name, slot in entry.items()}
    return {"booted": status["booted"], "primary": slots[status["boot_primary"]]["bootname"],
            **{slot["bootname"]: slot["boot_status"] for slot in slots.values()}}


def in_trial(pi: Pi, tmp_path: Path) -> None:
    for step in install_steps(pi, "B", new_root(tmp_path / "new", "2"))[:4]:
        step()


def test_rauc_reads_the_backend_through_an_update(pi, tmp_path, rauc_service):
    in_trial(pi, tmp_path)
    env = rauc_service(pi, booted="B")
    assert rauc_status(env) == {"booted": "B", "primary": "A", "A": "good", "B": "good"}
    subprocess.run(["rauc", "status", "mark-good"], env=env, check=True, capture_output=True)
    assert rauc_status(env) == {"booted": "B", "primary": "B", "A": "good", "B": "good"}
    assert pi.power_cut() == "B"


@pytest.fixture
def systemctl(tmp_path: Path) -> Path:
    """A systemctl that records what it was asked instead of rebooting this machine."""
    bin_ = tmp_path / "stub-bin"
    bin_.mkdir()
    (bin_ / "systemctl").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "systemctl.calls"}\n')
    (bin_ / "systemctl").chmod(0o755)
    return tmp_path / "systemctl.calls"


def mark_good(env: dict[str, str], config: Path, systemctl: Path, timeout: str = "30") -> subprocess.CompletedProcess:
    """Run nnode-mark-good's program with the health check shortened to timeout seconds."""
    env = env | {"NNODE_CONFIG": str(config), "NNODE_HEALTH_TIMEOUT": timeout, "NNODE_HEALTH_INTERVAL": "0.2",
                 "PATH": f"{systemctl.parent / 'stub-bin'}:{env['PATH']}"}
    return subprocess.run([str(MARK_GOOD)], env=env, capture_output=True, text=True, timeout=60)


def unreachable_node(tmp_path: Path) -> Path:
    """A node config whose port nothing listens on: a node that never came up."""
    config = tmp_path / "dead.toml"
    config.write_text(f'[http]\nhost = "127.0.0.1"\nport = {free_port()}\n')
    return config


def test_mark_good_commits_a_trial_once_the_node_is_healthy(pi, tmp_path, rauc_service, systemctl):
    in_trial(pi, tmp_path)
    env = rauc_service(pi, booted="B")
    node = NodeProcess(tmp_path, "node").start()
    try:
        result = mark_good(env, node.config, systemctl)
    finally:
        node.stop()
    assert result.returncode == 0, result.stderr
    assert "update committed" in result.stderr
    assert not systemctl.exists()
    assert rauc_status(env)["primary"] == "B"
    assert pi.power_cut() == "B" and pi.kernel == "kernel 2"


def test_mark_good_rolls_back_a_trial_that_never_gets_healthy(pi, tmp_path, rauc_service, systemctl):
    in_trial(pi, tmp_path)
    env = rauc_service(pi, booted="B")
    result = mark_good(env, unreachable_node(tmp_path), systemctl, timeout="1")
    assert result.returncode == 1
    assert systemctl.read_text() == "reboot\n"
    assert rauc_status(env) == {"booted": "B", "primary": "A", "A": "good", "B": "bad"}
    assert pi.reboot() == "A" and pi.kernel == "kernel 1"


def test_mark_good_leaves_an_unhealthy_committed_slot_running(pi, tmp_path, rauc_service, systemctl):
    env = rauc_service(pi, booted="A")
    result = mark_good(env, unreachable_node(tmp_path), systemctl, timeout="1")
    assert result.returncode == 1
    assert "nothing to roll back to" in result.stderr
    assert not systemctl.exists()
    assert rauc_status(env) == {"booted": "A", "primary": "A", "A": "good", "B": "bad"}


def test_the_mark_good_unit_passes_systemd_analyze_verify(tmp_path):
    need("systemd-analyze")
    units = Path("/usr/lib/systemd/system")  # systemd-analyze comes with them: the systemd package
    # A root with systemd's own units, ours, and executables at the paths the units name.
    root = tmp_path / "root"
    shutil.copytree(units, root / "usr/lib/systemd/system", symlinks=True)
    shutil.copytree(ROOTFS / "etc/systemd/system", root / "etc/systemd/system")
    for exe in ("usr/lib/nnode/mark-good", "opt/nnode/venv/bin/nnode"):
        (root / exe).parent.mkdir(parents=True, exist_ok=True)
        (root / exe).write_text("#!/bin/sh\n")
        (root / exe).chmod(0o755)

    def verify() -> subprocess.CompletedProcess:
        return subprocess.run(["systemd-analyze", "verify", f"--root={root}", "nnode-mark-good.service"],
                              capture_output=True, text=True, timeout=60)

    result = verify()
    assert (result.returncode, result.stderr) == (0, "")
    # The same check notices a unit that names a missing program, so the pass above means something.
    (root / "usr/lib/nnode/mark-good").unlink()
    assert "mark-good is not executable" in verify().stderr
