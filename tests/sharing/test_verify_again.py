"""`nnode verify` can be run again at any later time: into a fresh subfolder when the folder is not empty, or with
--force into the same folder, replacing only the files it writes; a bundle built with an id names it in its
manifest, so every surface prints the same bundle id."""

from __future__ import annotations

import re

import pytest

from node.sharing import SharingError, verify_bundle
from tests.sharing.test_bundle import AGENCY, CHUNK, build, bundle, clip, key_file, nnode  # noqa: F401 (fixtures)


def test_a_second_run_goes_into_a_fresh_subfolder_and_leaves_the_first_alone(bundle, tmp_path):  # noqa: F811
    info, data = bundle
    (tmp_path / "case.nnbundle").write_bytes(data)
    key = key_file(tmp_path, AGENCY)
    first = nnode("verify", "case.nnbundle", "--key", key, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    done = tmp_path / "case.verified"
    before = {p.name: p.read_bytes() for p in done.iterdir()}

    again = nnode("verify", "case.nnbundle", "--key", key, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    (run,) = [p for p in done.iterdir() if p.is_dir()]
    assert re.fullmatch(r"run-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ", run.name), run.name
    assert f"writing into case.verified/{run.name}" in again.stderr and "--force" in again.stderr
    assert sorted(p.name for p in run.iterdir()) == ["clip.mp4", "manifest.json", "manifest.sig", "report.txt"]
    assert (run / "clip.mp4").read_bytes() == before["clip.mp4"]
    assert {p.name: p.read_bytes() for p in done.iterdir() if p.is_file()} == before


def test_force_replaces_only_what_verify_writes_and_only_once_every_check_passed(bundle, tmp_path):  # noqa: F811
    info, data = bundle
    out = tmp_path / "evidence"
    out.mkdir()
    (out / "clip.mp4").write_bytes(b"older evidence")
    (out / "notes.txt").write_text("chain of custody: received 3 Dec")
    key = key_file(tmp_path, AGENCY)

    # A tampered bundle: refused, and the folder is as it was.
    bad = bytearray(data)
    bad[-20] ^= 1
    (tmp_path / "bad.nnbundle").write_bytes(bytes(bad))
    run = nnode("verify", tmp_path / "bad.nnbundle", "--key", key, "--out", out, "--force", cwd=tmp_path)
    assert run.returncode == 3 and "FAILED" in run.stderr, run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4", "notes.txt"]
    assert (out / "clip.mp4").read_bytes() == b"older evidence"

    run = nnode("verify", info.path, "--key", key, "--out", out, "--force", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4", "manifest.json", "manifest.sig", "notes.txt",
                                                     "report.txt"]
    assert (out / "clip.mp4").read_bytes() != b"older evidence"
    assert (out / "notes.txt").read_text() == "chain of custody: received 3 Dec"
    with pytest.raises(SharingError, match="or --force to replace"):
        verify_bundle(info.path, AGENCY, out)


def test_the_bundle_id_given_to_build_is_the_one_the_manifest_and_report_name(clip, tmp_path):  # noqa: F811
    info = build(tmp_path / "b.nnbundle", clip, bundle_id="0123456789abcdef0123456789abcdef")
    assert info.manifest["bundle_id"] == "0123456789abcdef0123456789abcdef"
    result = verify_bundle(info.path, AGENCY, tmp_path / "out")
    assert f"bundle id   0123456789abcdef0123456789abcdef, made {info.manifest['created']} by " in result.report
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", info.manifest["created"])
    with pytest.raises(SharingError, match="bundle_id: expected 32 lowercase hex digits"):
        build(tmp_path / "c.nnbundle", clip, bundle_id="../x", chunk_size=CHUNK)
