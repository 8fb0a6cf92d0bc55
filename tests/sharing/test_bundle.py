"""Agency bundles: a real H.264 clip goes in, `nnode verify` gives back the same bytes, and any change is refused.

Every failure is checked for the message an agency would read: what failed and where. A small reader and writer
of the format, written here from docs/bundles.md, checks the document against the code and plays the insider who
holds the content key (the agency itself) trying to alter a bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import av
import nacl.bindings as sodium
import nacl.public
import nacl.signing
import pytest

import node
from node.errors import NodeError
from node.sharing import (
    ConsentError,
    SharingError,
    VerifyError,
    build_bundle,
    load_agency_key,
    sign_consent,
    verify_bundle,
)
from node.sharing.agency_keys import x25519_public
from tests.firmware.tools import need

ROOT = Path(__file__).resolve().parents[2]
CHUNK = 1024  # small chunks, so a clip of a few KiB spans many of them
NODE = nacl.signing.SigningKey(bytes(range(32)))
AGENCY = nacl.signing.SigningKey(bytes(range(1, 33)))
REDACTION = "opencv-haar-faces+plates+privacy-masks v1"
HEADER = 145


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A real 3-second 320x240 H.264 MP4 made by ffmpeg."""
    need("ffmpeg")
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=320x240:rate=15:duration=3", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    "-movflags", "+faststart", str(path)], check=True, timeout=60)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


ORIGINAL_SHA = "0f" * 32  # the original clip the redacted one was made from (only its digest travels)


def consent_for(clip_sha256: str = ORIGINAL_SHA, request_id: str = "req-7", choice: str = "redacted",
                key: nacl.signing.SigningKey = NODE) -> dict:
    return sign_consent(key, request_id=request_id, clip_sha256=clip_sha256, role="manager", subject="mgr-1",
                        choice=choice, at=1_700_000_100)


def build(out: Path, video: Path, **overrides):
    """build_bundle with a plausible set of arguments; a redacted clip unless `overrides` say otherwise."""
    # AGENCY is a bare signing key, as old key files hold: its bundles are sealed to the key converted from it.
    args = dict(video_path=video, consent=consent_for(), node_signing_key=NODE, agency_verify_key=AGENCY.verify_key,
                encryption_key=x25519_public(AGENCY.verify_key),
                request_id="req-7", case_number="2024-001234", camera_id="courtyard", camera_name="Courtyard",
                latitude="40.7128", longitude="-74.0060", clip_start=1_700_000_000.25, clip_end=1_700_000_003.25,
                original_sha256=ORIGINAL_SHA, original_size=123_456, redaction_method=REDACTION, chunk_size=CHUNK)
    return build_bundle(out, **(args | overrides))


@pytest.fixture(scope="module")
def bundle(clip, tmp_path_factory):
    """A bundle of the clip (as the redacted version) for the agency, and its bytes."""
    info = build(tmp_path_factory.mktemp("bundle") / "case.nnbundle", clip)
    return info, info.path.read_bytes()


def nnode(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m node ...` with a config path that does not exist: verify must not read any config."""
    env = os.environ | {"NNODE_CONFIG": str(cwd / "no-such-config.toml"), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "node", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def key_file(folder: Path, key: nacl.signing.SigningKey, raw: bool = False) -> Path:
    path = folder / ("agency.raw" if raw else "agency.key")
    path.write_bytes(key.encode() if raw else (key.encode().hex() + "\n").encode())
    return path


def chunk_offsets(data: bytes) -> list[int]:
    """Where each chunk (its length field) starts, walking the length fields after the header."""
    offsets, at = [], HEADER
    while at < len(data):
        offsets.append(at)
        at += 4 + struct.unpack(">I", data[at:at + 4])[0]
    return offsets


def refused(tmp_path: Path, data: bytes, key: nacl.signing.SigningKey = AGENCY, **kwargs) -> str:
    """Verify `data` as a bundle; it must fail, leaving no output folder; the message."""
    path = tmp_path / "altered.nnbundle"
    path.write_bytes(data)
    out = tmp_path / "out"
    with pytest.raises(VerifyError) as caught:
        verify_bundle(path, key, out, **kwargs)
    assert not out.exists(), "a failed verification left files behind"
    return str(caught.value)


# -- the happy path ---------------------------------------------------------------------------------------------

def test_cli_verifies_offline_and_gives_back_the_same_playable_clip(clip, bundle, tmp_path):
    info, _ = bundle
    key = key_file(tmp_path, AGENCY)
    run = nnode("verify", info.path, "--key", key, "--out", tmp_path / "evidence",
                "--node-key", NODE.verify_key.encode().hex(), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "VERIFIED" in run.stdout
    assert NODE.verify_key.encode().hex() in run.stdout and "(the expected node key, given on the command line)" in run.stdout
    assert "case number 2024-001234" in run.stdout and "manager mgr-1 chose the redacted clip" in run.stdout
    assert REDACTION in run.stdout
    evidence = tmp_path / "evidence"
    assert sorted(p.name for p in evidence.iterdir()) == ["clip.mp4", "manifest.json", "manifest.sig", "report.txt"]
    assert (evidence / "clip.mp4").read_bytes() == clip.read_bytes()
    assert (evidence / "report.txt").read_text() == run.stdout
    with av.open(str(evidence / "clip.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert sum(1 for _ in container.decode(stream)) == 45
    # manifest.json holds the signed bytes, so anyone can check the signature again with the node key alone.
    manifest = (evidence / "manifest.json").read_bytes()
    signature = bytes.fromhex((evidence / "manifest.sig").read_text().strip())
    NODE.verify_key.verify(b"nnode-bundle-manifest-v1:" + manifest, signature)
    assert json.loads(manifest)["delivered"]["sha256"] == sha256(clip)


def test_default_output_folder_and_raw_key_file(bundle, tmp_path):
    info, data = bundle
    (tmp_path / "case.nnbundle").write_bytes(data)
    run = nnode("verify", "case.nnbundle", "--key", key_file(tmp_path, AGENCY, raw=True), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "case.verified" / "clip.mp4").exists()
    assert "not compared: no --node-key given" in run.stdout


def test_the_manifest_records_what_was_shared_and_why(clip, bundle, tmp_path):
    info, data = bundle
    assert info.size == len(data) and info.sha256 == hashlib.sha256(data).hexdigest()
    result = verify_bundle(info.path, AGENCY, tmp_path / "out", expected_node_key=NODE.verify_key)
    m = result.manifest
    assert m == info.manifest
    assert m["format"] == 1 and len(m["bundle_id"]) == 32
    assert m["node_key"] == NODE.verify_key.encode().hex() and m["agency_key"] == AGENCY.verify_key.encode().hex()
    assert m["request"] == {"id": "req-7", "case_number": "2024-001234"}
    assert m["camera"] == {"id": "courtyard", "name": "Courtyard", "latitude": "40.7128", "longitude": "-74.0060"}
    assert m["clip"] == {"start": "2023-11-14T22:13:20.250Z", "end": "2023-11-14T22:13:23.250Z",
                         "original": {"sha256": ORIGINAL_SHA, "size": 123_456}}
    assert m["delivered"] == {"kind": "redacted", "sha256": sha256(clip), "size": clip.stat().st_size,
                              "media_type": "video/mp4", "redaction": REDACTION}
    assert m["consent"] == consent_for() and m["consent"]["at"] == "2023-11-14T22:15:00.000Z"
    assert m["software"] == f"nnode {node.__version__}"
    assert result.chunks == len(chunk_offsets(data)) > 10
    assert result.bundle_sha256 == info.sha256 and result.clip.read_bytes() == clip.read_bytes()


def test_the_original_is_delivered_only_as_itself(clip, tmp_path):
    original = consent_for(sha256(clip), choice="original")
    info = build(tmp_path / "original.nnbundle", clip, consent=original, original_sha256=sha256(clip),
                 original_size=clip.stat().st_size, redaction_method=None)
    result = verify_bundle(info.path, AGENCY, tmp_path / "out")
    assert result.manifest["delivered"]["kind"] == "original" and result.manifest["delivered"]["redaction"] is None
    assert "the owner chose to share the original" in result.report
    # Consent to share the original does not let another file go out in its name.
    other = tmp_path / "other.mp4"
    other.write_bytes(clip.read_bytes() + b"\0")
    with pytest.raises(SharingError, match="the consent chose the original, but the video file is not the original"):
        build(tmp_path / "wrong.nnbundle", other, consent=original, original_sha256=sha256(clip),
              original_size=clip.stat().st_size, redaction_method=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["original.nnbundle", "other.mp4", "out"]


# -- consent ----------------------------------------------------------------------------------------------------

def test_no_bundle_without_matching_signed_consent(clip, tmp_path):
    stranger = nacl.signing.SigningKey.generate()
    forged = consent_for(key=stranger) | {"node_key": NODE.verify_key.encode().hex()}
    altered = consent_for(choice="redacted") | {"choice": "original"}
    cases = {
        "there is no consent record": None,
        "the consent is for clip sha256 " + "aa" * 32: consent_for("aa" * 32),
        "the consent is for request 'req-8', not 'req-7'": consent_for(request_id="req-8"),
        "signature does not verify with the node key (forged or altered)": forged,
        "signature does not verify": altered,
        f"the consent receipt is from node key {stranger.verify_key.encode().hex()}": consent_for(key=stranger),
        "consent receipt field by.role must be": consent_for() | {"by": {"role": "police", "id": "x"}},
        "consent receipt field sig is missing": {k: v for k, v in consent_for().items() if k != "sig"},
    }
    for message, consent in cases.items():
        with pytest.raises(ConsentError) as caught:
            build(tmp_path / "b.nnbundle", clip, consent=consent)
        assert str(caught.value).startswith("refusing to build a bundle: ")
        assert message in str(caught.value)
        assert isinstance(caught.value, NodeError) and caught.value.status == 403
        assert list(tmp_path.iterdir()) == []


def test_bad_arguments_are_refused_before_anything_is_written(clip, tmp_path):
    cases = {
        "field camera.latitude must be a decimal string": {"latitude": 40.7128},
        "field camera.longitude must be a decimal string from -180 to 180": {"longitude": "-190.5"},
        "a redacted clip must name its redaction method": {"redaction_method": None},
        "field clip.original.size must be a positive integer, not 0": {"original_size": 0},
        "the clip ends (2023-11-14T22:13:19.000Z) before it starts": {"clip_end": 1_699_999_999},
        "field request.case_number must be a non-empty string": {"case_number": ""},
        "field delivered.media_type must be": {"media_type": "video/avi"},
        "the agency key must be 64 hex digits": {"agency_verify_key": "beef"},
    }
    for message, overrides in cases.items():
        with pytest.raises(SharingError) as caught:
            build(tmp_path / "b.nnbundle", clip, **overrides)
        assert message in str(caught.value)
    with pytest.raises(ConsentError, match="field clip_sha256 must be 64 lowercase hex digits, not 'XY'"):
        consent_for("XY")
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(SharingError, match="the video file is empty"):
        build(tmp_path / "b.nnbundle", empty)
    build(tmp_path / "b.nnbundle", clip)
    with pytest.raises(SharingError, match="already exists; refusing to replace a bundle"):
        build(tmp_path / "b.nnbundle", clip)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.nnbundle", "empty.mp4"]


# -- tampering --------------------------------------------------------------------------------------------------

def test_a_flipped_byte_anywhere_is_refused_and_located(bundle, tmp_path):
    _, data = bundle
    chunks = chunk_offsets(data)
    last = len(chunks) - 1

    def flipped(at: int) -> str:
        altered = bytearray(data)
        altered[at] ^= 0x01
        return refused(tmp_path, bytes(altered))

    assert "not a bundle" in flipped(0)
    assert "unsupported bundle format version 0" in flipped(8)
    assert "agency key field (bytes 9-40) was altered" in flipped(9)
    assert "agency key field (bytes 9-40) was altered" in flipped(40)
    assert "sealed content key (bytes 41-120) does not open" in flipped(41)
    assert "sealed content key (bytes 41-120) does not open" in flipped(120)
    assert flipped(121) == f"chunk 0 (at byte {HEADER}) fails authentication (altered or corrupt)"  # stream header
    assert flipped(144) == f"chunk 0 (at byte {HEADER}) fails authentication (altered or corrupt)"
    assert flipped(HEADER + 3) == f"chunk 0 (at byte {HEADER}) fails authentication (altered or corrupt)"
    assert "chunk 0 (at byte 145): its length field is altered or corrupt" in flipped(HEADER)
    assert flipped(HEADER + 10) == f"chunk 0 (at byte {HEADER}) fails authentication (altered or corrupt)"
    middle = len(chunks) // 2
    assert flipped(chunks[middle] + 100) == f"chunk {middle} (at byte {chunks[middle]}) fails authentication " \
                                             "(altered or corrupt)"
    assert flipped(chunks[last] + 20) == f"chunk {last} (at byte {chunks[last]}) fails authentication " \
                                         "(altered or corrupt)"
    assert flipped(len(data) - 1) == f"chunk {last} (at byte {chunks[last]}) fails authentication (altered or corrupt)"
    # And a sweep over the whole file: every position is refused with a message that says where.
    for at in range(0, len(data), len(data) // 400 + 1):
        message = flipped(at)
        assert any(words in message for words in ("not a bundle", "version", "bytes 9-40", "bytes 41-120",
                                                  "fails authentication", "length field", "the file ends inside")), \
            (at, message)


def test_truncated_or_extended_bundles_are_refused(bundle, tmp_path):
    _, data = bundle
    chunks = chunk_offsets(data)
    last = len(chunks) - 1
    assert refused(tmp_path, b"") == "not a bundle: the file does not start with NNBUNDLE"
    assert refused(tmp_path, data[:100]) == "truncated: the file ends inside its 145-byte header"
    assert refused(tmp_path, data[:HEADER]) == "truncated: the file ends after its header"
    assert refused(tmp_path, data[:chunks[last]]) == \
        f"truncated: the file ends after chunk {last - 1} without its final chunk"
    assert refused(tmp_path, data[:chunks[5]]) == "truncated: the file ends after chunk 4 without its final chunk"
    assert refused(tmp_path, data[:chunks[5] + 2]) == \
        f"truncated: the file ends inside chunk 5's length field (at byte {chunks[5]})"
    assert refused(tmp_path, data[:-1]) == \
        f"chunk {last} (at byte {chunks[last]}): the file ends inside this chunk " \
        "(truncated, or its length field altered)"
    assert refused(tmp_path, data + b"\0") == \
        f"1 extra byte after the final chunk (chunk {last}, which ends at byte {len(data)}): appended or altered"
    assert refused(tmp_path, data + data).startswith(f"{len(data)} extra bytes after the final chunk")
    # Chunks cannot be dropped, repeated or reordered: each is bound to its place in the stream.
    assert refused(tmp_path, data[:chunks[3]] + data[chunks[4]:]) == \
        f"chunk 3 (at byte {chunks[3]}) fails authentication (altered or corrupt)"
    assert refused(tmp_path, data[:chunks[4]] + data[chunks[3]:]) == \
        f"chunk 4 (at byte {chunks[4]}) fails authentication (altered or corrupt)"


def test_wrong_agency_key_is_named(bundle, tmp_path):
    info, data = bundle
    other = nacl.signing.SigningKey.generate()
    message = refused(tmp_path, data, key=other)
    assert message == (f"wrong key: this bundle was not made for this agency key (it is for agency key "
                       f"{AGENCY.verify_key.encode().hex()}; this key is {other.verify_key.encode().hex()})")
    run = nnode("verify", info.path, "--key", key_file(tmp_path, other), "--out", tmp_path / "o", cwd=tmp_path)
    assert run.returncode == 3 and run.stdout == ""
    assert run.stderr.splitlines() == [f"nnode verify: FAILED: {message}"]
    assert not (tmp_path / "o").exists()


def test_a_bundle_from_another_node_is_refused_when_the_node_key_is_given(bundle, tmp_path):
    info, data = bundle
    expected = nacl.signing.SigningKey.generate().verify_key.encode().hex()
    message = refused(tmp_path, data, expected_node_key=expected)
    assert message == f"signed by node key {NODE.verify_key.encode().hex()}, not the expected node key {expected}"
    run = nnode("verify", info.path, "--key", key_file(tmp_path, AGENCY), "--node-key", expected, cwd=tmp_path)
    assert run.returncode == 3 and run.stderr.splitlines() == [f"nnode verify: FAILED: {message}"]
    run = nnode("verify", info.path, "--key", key_file(tmp_path, AGENCY), "--node-key", "xyz", cwd=tmp_path)
    assert run.returncode == 2 and "expected node key must be 64 hex digits" in run.stderr


# An independent reader and writer of the format, from docs/bundles.md, as the agency (who holds the content key)
# would write one to alter a bundle it received.

def open_bundle(data: bytes, key: nacl.signing.SigningKey) -> tuple[bytes, dict, bytes, bytes]:
    """(video, manifest, manifest bytes, signature) of a bundle."""
    assert data[:9] == b"NNBUNDLE\x01"
    x25519 = sodium.crypto_sign_ed25519_sk_to_curve25519(key.encode() + key.verify_key.encode())
    content_key = nacl.public.SealedBox(nacl.public.PrivateKey(x25519)).decrypt(data[41:121])
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, data[121:145], content_key)
    video, at, ad = b"", HEADER, data[:HEADER]
    while True:
        (length,) = struct.unpack(">I", data[at:at + 4])
        plain, tag = sodium.crypto_secretstream_xchacha20poly1305_pull(state, data[at + 4:at + 4 + length], ad)
        at, ad = at + 4 + length, None
        if tag == sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL:
            break
        video += plain
    (size,) = struct.unpack(">I", plain[:4])
    body = plain[4:4 + size]
    return video, json.loads(body), body, plain[4 + size:]


def seal_bundle(video: bytes, body: bytes, signature: bytes, agency: nacl.signing.VerifyKey) -> bytes:
    """A bundle of these parts for `agency`, written as docs/bundles.md describes."""
    content_key = sodium.crypto_secretstream_xchacha20poly1305_keygen()
    x25519 = sodium.crypto_sign_ed25519_pk_to_curve25519(agency.encode())
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    header = (b"NNBUNDLE\x01" + agency.encode() + nacl.public.SealedBox(nacl.public.PublicKey(x25519)).encrypt(
        content_key) + sodium.crypto_secretstream_xchacha20poly1305_init_push(state, content_key))
    out, ad = [header], header
    for at in range(0, len(video), 4096):
        sealed = sodium.crypto_secretstream_xchacha20poly1305_push(state, video[at:at + 4096], ad)
        out += [struct.pack(">I", len(sealed)), sealed]
        ad = None
    final = sodium.crypto_secretstream_xchacha20poly1305_push(
        state, struct.pack(">I", len(body)) + body + signature, ad,
        sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL)
    return b"".join(out + [struct.pack(">I", len(final)), final])


def canonical(value: dict) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def test_the_documented_format_round_trips(clip, bundle, tmp_path):
    _, data = bundle
    video, manifest, body, signature = open_bundle(data, AGENCY)
    assert video == clip.read_bytes() and canonical(manifest) == body
    resealed = tmp_path / "resealed.nnbundle"
    resealed.write_bytes(seal_bundle(video, body, signature, AGENCY.verify_key))
    assert verify_bundle(resealed, AGENCY, tmp_path / "out").clip.read_bytes() == clip.read_bytes()


def test_whoever_holds_the_content_key_still_cannot_alter_the_bundle(bundle, tmp_path):
    _, data = bundle
    video, manifest, body, signature = open_bundle(data, AGENCY)
    another = nacl.signing.SigningKey.generate()

    def reseal(video=video, body=body, signature=signature, to=AGENCY.verify_key, key=AGENCY):
        return refused(tmp_path, seal_bundle(video, body, signature, to), key=key)

    assert reseal(body=canonical(manifest | {"request": {"id": "req-7", "case_number": "2024-999999"}})) == (
        f"the manifest's signature does not verify with the node key it names ({NODE.verify_key.encode().hex()}): "
        "forged or altered")
    assert reseal(body=body.replace(b'"name":"Courtyard"', b'"name": "Courtyard"')).startswith(
        "the manifest is not canonical JSON")
    changed = video[:-1] + b"\0"
    assert reseal(video=changed) == (f"the video's sha256 is {hashlib.sha256(changed).hexdigest()}, "
                                     f"the manifest says {manifest['delivered']['sha256']}")
    assert reseal(video=video + b"\0") == f"the video is {len(video) + 1} bytes, the manifest says {len(video)}"
    # A manifest signed by another key (naming itself) is well signed, but not by the node the agency expects.
    forged = canonical(manifest | {"node_key": another.verify_key.encode().hex()})
    forged_sig = another.sign(b"nnode-bundle-manifest-v1:" + forged).signature
    assert reseal(body=forged, signature=forged_sig) == (
        f"consent: the consent receipt is from node key {NODE.verify_key.encode().hex()}, not "
        f"{another.verify_key.encode().hex()}")
    assert refused(tmp_path, seal_bundle(video, forged, forged_sig, AGENCY.verify_key),
                   expected_node_key=NODE.verify_key) == (f"signed by node key {another.verify_key.encode().hex()}, "
                                                          f"not the expected node key {NODE.verify_key.encode().hex()}")
    # Forwarded by the agency to someone else: the node disclosed it to the first agency only.
    message = reseal(to=another.verify_key, key=another)
    assert message.startswith(f"the manifest says the clip was disclosed to agency key "
                              f"{AGENCY.verify_key.encode().hex()}, not this key")


# -- keys and files ---------------------------------------------------------------------------------------------

def test_agency_key_tool(tmp_path):
    run = nnode("agency-key", "new", "mine.key", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    path = tmp_path / "mine.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    public = run.stdout.splitlines()[-1]
    keys = load_agency_key(path)
    assert public == keys.verify_key.encode().hex() and not keys.legacy
    # Two keys: the encryption key is not the one converted from the signing key.
    assert keys.encryption_key != x25519_public(keys.verify_key).encode().hex()
    shown = nnode("agency-key", "public", "mine.key", cwd=tmp_path)
    assert shown.stdout.strip() == public and "encryption key (named in each request" in shown.stderr
    assert keys.encryption_key in shown.stderr
    again = nnode("agency-key", "new", "mine.key", cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr
    (tmp_path / "bad.key").write_text("not a key\n")
    with pytest.raises(SharingError, match="bad.key: not an agency key file"):
        load_agency_key(tmp_path / "bad.key")
    (tmp_path / "half.key").write_text(f"signing {'ab' * 32}\n")
    with pytest.raises(SharingError, match="half.key: an agency key file holds a 'signing' and an 'encryption' line "
                                           r"\(found signing\)"):
        load_agency_key(tmp_path / "half.key")


def test_verify_needs_an_empty_output_folder_and_a_readable_bundle(bundle, tmp_path):
    info, _ = bundle
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "clip.mp4").write_bytes(b"older evidence")
    with pytest.raises(SharingError, match="not an empty folder") as caught:
        verify_bundle(info.path, AGENCY, tmp_path / "out")
    assert not isinstance(caught.value, VerifyError)
    assert (tmp_path / "out" / "clip.mp4").read_bytes() == b"older evidence"
    run = nnode("verify", tmp_path / "missing.nnbundle", "--key", key_file(tmp_path, AGENCY), cwd=tmp_path)
    assert run.returncode == 2 and "cannot read the bundle" in run.stderr


# -- constant memory --------------------------------------------------------------------------------------------

MEMORY_SCRIPT = textwrap.dedent("""
    import os, resource, sys, nacl.public, nacl.signing
    from pathlib import Path
    from node.sharing import build_bundle, sign_consent, verify_bundle
    from node.sharing.agency_keys import AgencyKey

    folder, size = Path(sys.argv[1]), int(sys.argv[2])
    node = nacl.signing.SigningKey.generate()
    agency = AgencyKey(nacl.signing.SigningKey.generate(), nacl.public.PrivateKey.generate())

    def run(video, name):
        consent = sign_consent(node, request_id="r", clip_sha256="ab" * 32, role="manager", subject="m")
        info = build_bundle(folder / (name + ".nnbundle"), video_path=video, consent=consent, node_signing_key=node,
                            agency_verify_key=agency.verify_key, encryption_key=agency.encryption_key,
                            request_id="r", case_number="c", camera_id="cam",
                            camera_name="Cam", latitude="1", longitude="2", clip_start=0, clip_end=1,
                            original_sha256="ab" * 32, original_size=1, redaction_method="m")
        result = verify_bundle(info.path, agency, folder / (name + ".out"))
        assert result.clip.stat().st_size == os.path.getsize(video)
        os.remove(info.path)
        os.remove(result.clip)

    small = folder / "small.mp4"
    small.write_bytes(os.urandom(300_000))
    run(small, "small")  # everything imported and warmed up
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    big = folder / "big.mp4"
    with open(big, "wb") as handle:
        handle.truncate(size)  # sparse: the disk holds only the bundle and the verified copy
    run(big, "big")
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
""")


def test_build_and_verify_run_in_constant_memory(tmp_path):
    size = 200_000_000
    run = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path), str(size)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    growth = int(run.stdout.strip())
    assert growth < 50_000_000, f"peak memory grew by {growth / 1e6:.1f} MB for a {size / 1e6:.0f} MB clip"
