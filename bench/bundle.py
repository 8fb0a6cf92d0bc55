"""Benchmark: throughput and peak memory of building an agency bundle, versus encrypting the same bytes raw.

The input is one file of --size MB (default 500) of random bytes: a camera's H.264 is as incompressible, and the
cost of hashing and encrypting does not depend on content; it is written once and stays in the page cache, so both
sides read it from memory. Each run is a fresh process (so its peak RSS, ru_maxrss, is its own) that streams the
file from disk to disk and fsyncs the result:

- bundle: `build_bundle` (sha256 of the clip, XChaCha20-Poly1305 secretstream in 64 KiB chunks, sha256 of the
  bundle file, manifest and signatures, temporary name and rename);
- raw: the reference, sha256 of the bytes plus secretstream encryption with the same chunk size and length
  prefixes, and nothing else;
- verify: `verify_bundle` of the bundle (reported, not part of the ratio).

Runs alternate bundle, raw, verify; prints each run, the medians (throughput in MB/s of input, 1 MB = 10**6
bytes; peak RSS in MiB), `bundle_peak_mb=<the bundling process's peak RSS in MB>` (target: at most 100) and last
`bundle_ratio=<bundle throughput / raw throughput>` (target: at least 0.5).

    python bench/bundle.py [--size 500] [--runs 3] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHUNK = 64 * 1024
SEED_NODE = bytes(range(32))
SEED_AGENCY = bytes(range(1, 33))


def child_bundle(source: Path, out: Path) -> None:
    """Build a bundle of `source` into `out`."""
    import nacl.public
    import nacl.signing

    from node.sharing import build_bundle, sign_consent

    node, agency = nacl.signing.SigningKey(SEED_NODE), nacl.signing.SigningKey(SEED_AGENCY)
    consent = sign_consent(node, request_id="bench", clip_sha256="ab" * 32, role="manager", subject="bench")
    build_bundle(out, video_path=source, consent=consent, node_signing_key=node, agency_verify_key=agency.verify_key,
                 encryption_key=nacl.public.PrivateKey(SEED_AGENCY).public_key, request_id="bench", case_number="BENCH-1", camera_id="bench", camera_name="Bench",
                 latitude="40.7128", longitude="-74.0060", clip_start=0, clip_end=60, original_sha256="ab" * 32,
                 original_size=1, redaction_method="bench", chunk_size=CHUNK)


def child_raw(source: Path, out: Path) -> None:
    """The reference: sha256 plus secretstream encryption of `source` into `out`, same chunks, nothing else."""
    import nacl.bindings as sodium

    key = sodium.crypto_secretstream_xchacha20poly1305_keygen()
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    push = sodium.crypto_secretstream_xchacha20poly1305_push
    digest = hashlib.sha256()
    with open(source, "rb", buffering=0) as src, open(out, "wb") as dst:
        dst.write(sodium.crypto_secretstream_xchacha20poly1305_init_push(state, key))
        while data := src.read(CHUNK):
            digest.update(data)
            sealed = push(state, data)
            dst.write(struct.pack(">I", len(sealed)))
            dst.write(sealed)
        sealed = push(state, b"", None, sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL)
        dst.write(struct.pack(">I", len(sealed)))
        dst.write(sealed)
        dst.flush()
        os.fsync(dst.fileno())
    digest.hexdigest()


def child_verify(source: Path, out: Path) -> None:
    """Verify the bundle `source` into the folder `out`."""
    import nacl.signing

    from node.sharing import verify_bundle

    verify_bundle(source, nacl.signing.SigningKey(SEED_AGENCY), out)


CHILDREN = {"bundle": child_bundle, "raw": child_raw, "verify": child_verify}


def child(mode: str, source: str, out: str) -> None:
    """Run one measured job in this process; print its seconds and peak RSS as JSON."""
    if mode != "raw":
        import node.sharing  # noqa: F401  (imports are not part of the timed work)
    start = time.perf_counter()
    CHILDREN[mode](Path(source), Path(out))
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def measure(mode: str, source: Path, out: Path) -> dict:
    """One job in a fresh process."""
    run = subprocess.run([sys.executable, __file__, "--child", mode, str(source), str(out)], capture_output=True,
                         text=True, check=False)
    if run.returncode:
        raise SystemExit(f"{mode} failed: {run.stderr}")
    return json.loads(run.stdout)


def make_input(path: Path, size: int) -> None:
    """`size` bytes of random data (1 MiB of os.urandom, varied per block so nothing repeats at chunk level)."""
    block = bytearray(os.urandom(1 << 20))
    with open(path, "wb") as handle:
        written = 0
        while written < size:
            block[:8] = written.to_bytes(8, "little")
            handle.write(block[:min(len(block), size - written)])
            written += len(block)


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=500, help="input size in MB (10**6 bytes)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", default=None, help="folder for the files (default: a temporary one)")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "SOURCE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    size = args.size * 10**6
    folder = Path(tempfile.mkdtemp(prefix="nnbench-bundle-", dir=args.dir))
    try:
        source = folder / "clip.bin"
        make_input(source, size)
        print(f"input: {args.size} MB of random bytes, {CHUNK // 1024} KiB chunks, in the page cache; "
              f"output fsynced; {os.cpu_count()} CPUs")
        results: dict[str, list[dict]] = {"bundle": [], "raw": [], "verify": []}
        for n in range(1, args.runs + 1):
            bundle, raw, verified = folder / "clip.nnbundle", folder / "clip.raw", folder / "verified"
            results["bundle"].append(measure("bundle", source, bundle))
            results["raw"].append(measure("raw", source, raw))
            results["verify"].append(measure("verify", bundle, verified))
            print(f"run {n}: " + "; ".join(
                f"{mode} {r[-1]['seconds']:.2f} s ({size / r[-1]['seconds'] / 1e6:.0f} MB/s, "
                f"peak RSS {r[-1]['maxrss'] / 2**20:.0f} MiB)" for mode, r in results.items()), flush=True)
            bundle.unlink()
            raw.unlink()
            shutil.rmtree(verified)
        rate = {mode: size / statistics.median(r["seconds"] for r in runs) / 1e6 for mode, runs in results.items()}
        peak = {mode: max(r["maxrss"] for r in runs) / 2**20 for mode, runs in results.items()}
        print(f"medians: bundle {rate['bundle']:.0f} MB/s, raw {rate['raw']:.0f} MB/s, "
              f"verify {rate['verify']:.0f} MB/s; peak RSS bundle {peak['bundle']:.0f} MiB, raw {peak['raw']:.0f} MiB, verify {peak['verify']:.0f} MiB")
        print(f"bundle_peak_mb={max(r['maxrss'] for r in results['bundle']) / 1e6:.1f}")
        print(f"bundle_ratio={rate['bundle'] / rate['raw']:.2f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
