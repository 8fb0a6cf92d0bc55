"""The JSON bodies safety's routes take (the manager's and an agency's alert, an SOS), declared once: the handlers
decode them with node.http.read_body and node/openapi.py describes them from here.

The alert's own builder (alerts.manager_alert) and the SOS desk keep their checks (a blank event, text trimmed)."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from node.safety.sos import MAX_NOTE
from node.structs import Body, FieldError, Flag, setting

# The CAP 1.2 values the console offers (node/safety/cap.py: CATEGORY, URGENCY, SEVERITY, CERTAINTY; a test
# checks they agree).
Category = Literal["Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport", "Infra",
                   "CBRNE", "Other"]
Urgency = Literal["Immediate", "Expected", "Future", "Past", "Unknown"]
Severity = Literal["Extreme", "Severe", "Moderate", "Minor", "Unknown"]
Certainty = Literal["Observed", "Likely", "Possible", "Unlikely", "Unknown"]

Headline = Annotated[Annotated[str, Meta(max_length=160)] | None, setting(expected="text of at most 160 characters")]
Description = Annotated[Annotated[str, Meta(max_length=4000)] | None,
                        setting(expected="text of at most 4000 characters")]
Instruction = Annotated[Annotated[str, Meta(max_length=2000)] | None,
                        setting(expected="text of at most 2000 characters")]
AreaDesc = Annotated[Annotated[str, Meta(max_length=200)] | None,
                     setting("where it applies (default: the node's name)", expected="text of at most 200 characters")]


class AlertBody(Body, frozen=True):
    """POST /api/alerts and /api/agency/alerts: an alert for the area around the building, published as CAP."""

    event: Annotated[str, setting("what is happening, in a few words", max_length=100,
                                  expected="text of at most 100 characters")]
    headline: Headline = None
    description: Description = None
    instruction: Instruction = None
    category: Category = "Safety"
    urgency: Urgency = "Expected"
    severity: Severity = "Moderate"
    certainty: Certainty = "Likely"
    expires_hours: Annotated[int, setting("how long the alert is in force", ge=1, le=72,
                                          expected="a whole number of hours from 1 to 72")] = 12
    area_desc: AreaDesc = None
    radius_km: Annotated[float, setting("the circle around the building it covers", ge=0.1, le=50,
                                        expected="a number of kilometres from 0.1 to 50")] = 1.0


class SosBody(Body, frozen=True):
    """POST /api/sos: a note for the responders, if the caller has time for one (the body may be left out)."""

    OPTIONAL = True

    note: Annotated[Annotated[str, Meta(max_length=MAX_NOTE)] | None,
                    setting(expected=f"text of at most {MAX_NOTE} characters")] = None


class ResolveBody(Body, frozen=True):
    """POST /api/sos/{id}/resolve: how the call ended, for the record and the caller; the manager may release the
    footage hold at the same time."""

    note: Annotated[str, setting("what happened, for the record", max_length=MAX_NOTE,
                                 expected=f"text of 1 to {MAX_NOTE} characters")]
    release_hold: Flag = False

    def __post_init__(self) -> None:
        if not self.note.strip():
            raise FieldError("note", "note: say how the call was resolved (1 to 500 characters)")
