"""Writing files that survive a crash: synced temporary files renamed into place, and their folders synced.

The camera recorder, clip promotion, resident uploads, redaction and agency bundles all publish files this way: a
file under its final name is always complete.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def fsync_file(path: Path) -> None:
    """Flush a written file's data to the disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def sync_folder(folder: Path) -> None:
    """Flush a folder's entries (renames, unlinks) to the disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(path: Path, data: bytes) -> None:
    """Write `data` to `path` and sync it (the caller renames it into place)."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def publish(*renames: tuple[Path, Path]) -> None:
    """Rename synced temporary files to their final names in order, then sync their folders; if a rename fails,
    the files already renamed are removed again (all or nothing)."""
    done: list[Path] = []
    try:
        for tmp, path in renames:
            os.replace(tmp, path)
            done.append(path)
        for folder in {Path(path).parent for _, path in renames}:
            sync_folder(folder)
    except OSError:
        for path in done:
            Path(path).unlink(missing_ok=True)
        raise


def sha256_file(path: Path) -> tuple[int, str]:
    """(size, sha256 hex) of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def write_private(path: Path, data: bytes) -> None:
    """Write a file readable by its owner alone (0600, where the file system keeps modes), whole or not at all: a
    temporary file beside it, fsynced, renamed over it."""
    temporary = path.with_name(path.name + ".new")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
