"""The claim code reaches the boot partition: claim-file copies the node's file there whole, and removes the copy
once the node has removed its own (claimed)."""

import os
import stat
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "firmware/rootfs/usr/lib/nnode/claim-file"


def test_the_copy_follows_the_nodes_file(tmp_path):
    source, boot = tmp_path / "claim-code.txt", tmp_path / "boot"
    boot.mkdir()
    target = boot / "nnode-claim.txt"
    env = os.environ | {"NNODE_CLAIM_SOURCE": str(source), "NNODE_CLAIM_TARGET": str(target)}

    def run():
        result = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr

    run()                                   # nothing yet: nothing written
    assert list(boot.iterdir()) == []
    for code in ("AAAA-BBBB-CCCC", "DDDD-EEEE-FFFF"):    # the first code, then its renewal
        source.write_text(f"Claim code: {code}\n")
        run()
        assert target.read_text() == f"Claim code: {code}\n"
        assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
        assert sorted(p.name for p in boot.iterdir()) == ["nnode-claim.txt"]
    source.unlink()                         # claimed
    run()
    assert list(boot.iterdir()) == []
