"""Start-up does not load OpenCV or NumPy: they come with the first camera or upload (bench/startup.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from node.camera import manager, record

ROOT = Path(__file__).resolve().parent.parent.parent


def test_the_app_and_its_routes_load_without_opencv_or_numpy() -> None:
    probe = "import sys, node.app, node.cli, node.routes; print(sorted({'cv2', 'numpy'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_managers_segment_length_is_the_recorders() -> None:
    assert manager.SEGMENT_SECONDS == record.SEGMENT_SECONDS
