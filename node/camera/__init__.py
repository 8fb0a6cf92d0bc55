"""Cameras: recording, motion detection and clips (DESIGN section 7)."""
