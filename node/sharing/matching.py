"""Which requests and clips meet: where the building and its cameras stand, and what a matching clip looks like.

A camera without its own coordinates stands at the building's; uploads are placed at the building too. A clip
matches a request when its camera stands inside the request's area and its time overlaps the window.
"""

from __future__ import annotations

from typing import Any

from node.camera.clips import UPLOAD_CAMERA, ClipRow
from node.sharing.geometry import Area
from node.sharing.requests import FootageRequest


class Places:
    """The building's and its cameras' places, from the config."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.cameras = {c.id: c for c in config.cameras.devices}

    def location(self, camera: str) -> tuple[str, str] | None:
        """The camera's (lat, lon) as decimal strings, else the building's; None if neither is set."""
        config = self.cameras.get(camera)
        lat, lon = (config.latitude, config.longitude) if config and config.latitude else \
            (self.config.node.latitude, self.config.node.longitude)
        return (lat, lon) if lat else None

    def covers(self, area: Area, camera: str) -> bool:
        """True if the camera (or the building, for uploads) stands inside the area."""
        place = self.location(camera)
        return place is not None and area.contains(float(place[0]), float(place[1]))

    def touches(self, area: Area) -> bool:
        """True if the area covers the building or one of its cameras."""
        return any(self.covers(area, c) for c in (*self.cameras, UPLOAD_CAMERA))

    def matches(self, request: FootageRequest, clip: ClipRow) -> bool:
        """A clip matches when its camera is inside the area and its time overlaps the window."""
        return clip.start < request.end and clip.end > request.start and self.covers(request.area, clip.camera)

    def camera_name(self, clip: ClipRow) -> str:
        """The name owners and agencies see for the clip's camera."""
        return self.camera_name_of(clip.camera)

    def camera_name_of(self, camera: str) -> str:
        """The name owners and agencies see for a camera (by its id)."""
        if camera == UPLOAD_CAMERA:
            return "Resident upload"
        config = self.cameras.get(camera)
        return config.name if config and config.name else camera

    def clip_view(self, clip: ClipRow) -> dict[str, Any]:
        """A matching clip as the owners' pages show it."""
        return {"uid": clip.uid, "camera": clip.camera, "camera_name": self.camera_name(clip),
                "start": clip.start, "end": clip.end, "duration": clip.duration,
                "thumbnail": f"/api/clips/{clip.uid}/thumbnail", "video": f"/api/clips/{clip.uid}/video"}

    def retention_over(self, clip: ClipRow, now: float) -> bool:
        """Whether retention would already have purged the clip, had nothing held it."""
        if clip.is_upload:
            return bool(clip.created + self.config.cameras.upload_retention_days * 86400 <= now)
        config = self.cameras.get(clip.camera)
        return bool(clip.end + (config.retention_days if config else 7) * 86400 <= now)
