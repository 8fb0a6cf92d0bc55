"""Range bundles: several clips of one camera in one bundle, their gaps stated, checked part by part by `nnode
verify`, and joined into one video the agency plays."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import av
import pytest

from node.sharing import ConsentError, RangePart, VerifyError, build_range_bundle, range_digest, verify_bundle
from node.sharing.agency_keys import x25519_public
from node.sharing.manifest import utc_iso
from tests.firmware.tools import need
from tests.sharing.test_bundle import AGENCY, NODE, consent_for, key_file, nnode, sha256

T0 = 1_700_000_000.0
SPANS = [(T0 + 60, T0 + 63), (T0 + 300, T0 + 303), (T0 + 303, T0 + 306), (T0 + 1500, T0 + 1503)]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    """Four real 3-second H.264 clips, as one camera recorded them."""
    need("ffmpeg")
    folder = tmp_path_factory.mktemp("clips")
    paths = []
    for n in range(len(SPANS)):
        path = folder / f"clip{n}.mp4"
        subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                        "testsrc2=size=320x240:rate=10:duration=3", "-vf", f"hue=h={n * 60}", "-c:v", "libx264",
                        "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(path)], check=True, timeout=60)
        paths.append(path)
    return paths


def parts_of(clips: list[Path]) -> list[RangePart]:
    return [RangePart(path, start, end, sha256(path), path.stat().st_size) for path, (start, end) in zip(clips, SPANS)]


def digest(parts: list[RangePart], start: float = T0, end: float = T0 + 1800) -> str:
    return range_digest("yard", utc_iso(start), utc_iso(end),
                        [(utc_iso(p.start), utc_iso(p.end), p.original_sha256, p.original_size) for p in parts])


def build(out: Path, parts: list[RangePart], **overrides):
    args = dict(parts=parts, range_start=T0, range_end=T0 + 1800,
                consent=consent_for(digest(sorted(parts, key=lambda p: p.start)), choice="original"), node_signing_key=NODE,
                agency_verify_key=AGENCY.verify_key, encryption_key=x25519_public(AGENCY.verify_key), request_id="req-7", case_number="2024-001234",
                camera_id="yard", camera_name="Back yard", latitude="40.7128", longitude="-74.0060")
    return build_range_bundle(out, **(args | overrides))


def test_a_range_is_verified_part_by_part_and_plays_as_one_video(clips, tmp_path):
    parts = parts_of(clips)
    info = build(tmp_path / "range.nnbundle", list(reversed(parts)))   # put in time order by the builder
    run = nnode("verify", info.path, "--key", key_file(tmp_path, AGENCY), "--out", tmp_path / "evidence",
                "--node-key", NODE.verify_key.encode().hex(), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    out = tmp_path / "evidence"
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "manifest.sig", "part-001.mp4", "part-002.mp4",
                                                     "part-003.mp4", "part-004.mp4", "range.mp4", "report.txt"]
    for n, clip in enumerate(clips, 1):
        assert (out / f"part-{n:03d}.mp4").read_bytes() == clip.read_bytes()
    manifest = json.loads((out / "manifest.json").read_bytes())
    assert manifest["range"]["gaps"] == [
        {"start": utc_iso(T0), "end": utc_iso(T0 + 60)}, {"start": utc_iso(T0 + 63), "end": utc_iso(T0 + 300)},
        {"start": utc_iso(T0 + 306), "end": utc_iso(T0 + 1500)}, {"start": utc_iso(T0 + 1503), "end": utc_iso(T0 + 1800)}]
    assert manifest["clip"]["original"]["sha256"] == digest(parts)
    assert "4 clips, 4 gaps" in run.stdout and run.stdout.count("(checked)") == 4
    assert f"gap    3  {utc_iso(T0 + 306)} to {utc_iso(T0 + 1500)}: nothing recorded" in run.stdout
    assert "each of the 4 parts matches its sha256 and size" in run.stdout
    with av.open(str(out / "range.mp4")) as container:
        stream = container.streams.video[0]
        frames = [f.time for f in container.decode(stream)]
    assert len(frames) == 4 * 30
    assert frames == sorted(frames) and frames[-1] == pytest.approx(11.9, abs=0.05)
    assert "120 pictures, 12.0 s" in run.stdout


def test_a_consent_for_other_clips_builds_nothing(clips, tmp_path):
    parts = parts_of(clips)
    with pytest.raises(ConsentError, match="consent is for clip sha256"):
        build(tmp_path / "x.nnbundle", parts[:3], consent=consent_for(digest(parts), choice="original"))
    assert not list(tmp_path.iterdir())


def test_an_altered_part_or_gap_is_refused(clips, tmp_path):
    parts = parts_of(clips)
    info = build(tmp_path / "range.nnbundle", parts)
    # A node that lied about a gap could not sign it: the verifier recomputes the gaps from the parts.
    from node.sharing.manifest import read_manifest
    forged = json.loads(json.dumps(info.manifest))
    forged["range"]["gaps"] = forged["range"]["gaps"][1:]
    assert "are not the stretches its parts leave uncovered" in (read_manifest(forged)[1] or "")
    forged = json.loads(json.dumps(info.manifest))
    forged["range"]["parts"][1]["delivered"]["size"] += 1
    assert "the part delivered is not the original clip" in (read_manifest(forged)[1] or "")
    # Verified as it is, it passes; a bundle for another key does not open.
    result = verify_bundle(info.path, AGENCY, tmp_path / "ok")
    assert len(result.parts) == 4 and result.clip.name == "range.mp4"
    with pytest.raises(VerifyError, match="wrong key"):
        verify_bundle(info.path, NODE, tmp_path / "no")
