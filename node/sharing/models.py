"""The JSON bodies the sharing routes take (an owner's consent, the manager's agency registry), declared once: the
handlers decode them with node.http.read_body and node/openapi.py describes them from here.

The registry (agencies.py) and the desk keep their own checks (a usable key, control characters, NFC text); the
agencies' signed request documents are declared in requests.py, not here."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from node.sharing.agencies import MAX_TEXT
from node.structs import Body, setting

TEXT = f"text of at most {MAX_TEXT} characters without control characters"
AgencyKey = Annotated[str, setting("the agency's ed25519 public key, 64 hex digits",
                                   expected="an ed25519 public key as 64 hex digits")]


class ConsentBody(Body, frozen=True):
    """POST /api/requests/{id}/clips/{uid}/consent: share this one clip, blurred or not (the body may be left out)."""

    OPTIONAL = True

    choice: Annotated[Literal["redacted", "original"],
                      setting(expected="'redacted' (faces and plates blurred) or 'original'")] = "redacted"


Seconds = Annotated[float, setting(ge=0, le=2**40, expected="a time in POSIX seconds (UTC)")] | None


class RangeBody(Body, frozen=True):
    """POST /api/requests/{id}/ranges (and .../ranges/preview): share one camera's footage over a range of the
    request's window (all of it by default) as one bundle, blurred or not."""

    camera: Annotated[str, setting(max_length=64, pattern="[A-Za-z0-9_.-]{1,64}",
                                   expected="a camera id (letters, digits, '_', '.', '-')")]
    start: Seconds = None
    end: Seconds = None
    choice: Annotated[Literal["redacted", "original"],
                      setting(expected="'redacted' (faces and plates blurred) or 'original'")] = "redacted"


class AgencyBody(Body, frozen=True):
    """POST /api/agencies (and the control socket's): register an agency by the manager's decision."""

    key: AgencyKey
    name: Annotated[str, setting(max_length=MAX_TEXT, expected=TEXT)]
    jurisdiction: Annotated[str, setting(max_length=MAX_TEXT, expected=TEXT)] = ""
    contact: Annotated[str, setting(max_length=MAX_TEXT, expected=TEXT)] = ""


class CredentialBody(Body, frozen=True):
    """POST /api/agencies/credentials: a credential a trust anchor signed for an agency."""

    credential: Annotated[dict[str, Any], setting(expected="an agency credential (a JSON object)")]


class RevokeBody(Body, frozen=True):
    """POST /api/agencies/{key}/revoke: why the agency is revoked, for the log (the body may be left out)."""

    OPTIONAL = True

    reason: Annotated[str, setting(max_length=MAX_TEXT, expected=TEXT)] = ""
