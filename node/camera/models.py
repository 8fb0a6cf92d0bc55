"""The JSON bodies the camera routes take (who may watch a camera, the manager's hold on a clip), declared once:
the handlers decode them with node.http.read_body and node/openapi.py describes them from here."""

from __future__ import annotations

from typing import Annotated

from node.structs import Body, Flag, setting


class AccessBody(Body, frozen=True):
    """PUT /api/cameras/{camera}/access: who besides the manager may see the camera."""

    residents: Annotated[Flag, setting("every signed-in resident")]
    responders: Annotated[Flag, setting("residents on the SOS on-call list")]


class HoldBody(Body, frozen=True):
    """POST /api/clips/{uid}/hold: why the manager keeps the clip (the body may be left out)."""

    OPTIONAL = True

    note: Annotated[str, setting(max_length=200, expected="a string of at most 200 characters")] = ""
