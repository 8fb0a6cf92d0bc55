"""Test helpers for the firmware tests, which use Debian tools (installed by the test command)."""

from __future__ import annotations

import os
import shutil

import pytest


def require(ok: bool, what: str) -> None:
    """Skip when `ok` is false, except on CI (CI=true), where a missing tool is a broken setup and fails."""
    if not ok:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{what} (scripts/test installs it)")
        pytest.skip(what)


def need(*tools: str) -> None:
    """require() that each of `tools` is on PATH."""
    missing = [t for t in tools if shutil.which(t) is None]
    require(not missing, f"needs {', '.join(missing)}")
