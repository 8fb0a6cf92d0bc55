"""The event kinds of the sharing flow: agency requests relayed by nodes, disclosure counts, and audit-log heads.

Each is signed by the node that publishes it; an `agency-request` carries the agency-signed request unchanged (and
the agency's credential, if it has one), so every node checks the agency itself against its own registry.
"""

from __future__ import annotations

import re
import time
from typing import Any

from node.sharing.requests import Policy, RequestError, parse_request
from sync import require_fields

REQUEST_KIND = "agency-request"
DISCLOSURE_KIND = "disclosure"
AUDIT_HEAD_KIND = "audit-head"
REQUEST_TTL = 366 * 86400
DISCLOSURE_TTL = 400 * 86400
AUDIT_HEAD_TTL = 10 * 365 * 86400   # heads outlive the log entries they vouch for
# Relaying nodes check form and signature only; each node applies its own policy when it looks at a request.
ANY_POLICY = Policy(min_window_s=0, max_window_s=10**9, max_area_sq_mi=10.0**9, require_case_number=False,
                    max_expiry_days=10**5, max_age_days=10**5)
_HEX = {n: re.compile(f"[0-9a-f]{{{n}}}") for n in (32, 64)}


def validate_request_event(body: Any) -> None:
    """An agency request relayed by a node: {"request": signed request, "credential"?: anchor credential}."""
    require_fields(body, {"request": dict}, {"credential": dict})
    try:
        parse_request(body["request"], now=time.time(), policy=ANY_POLICY)
    except RequestError as exc:
        raise ValueError(f"request: {exc}") from None


def validate_disclosure(body: Any) -> None:
    """How many bundles the publishing node holds for an agency's request (counts only, never declines)."""
    require_fields(body, {"request_id": str, "agency": str, "bundles": int})
    if not _HEX[32].fullmatch(body["request_id"]) or not _HEX[64].fullmatch(body["agency"]):
        raise ValueError("fields 'request_id' and 'agency' must be 32 and 64 lowercase hex digits")
    if not 0 <= body["bundles"] <= 100_000:
        raise ValueError("field 'bundles' must be from 0 to 100000")


def validate_audit_head(body: Any) -> None:
    """The head of the publishing node's audit log: its last entry's seq and hash."""
    require_fields(body, {"seq": int, "hash": str})
    if body["seq"] < 1 or not _HEX[64].fullmatch(body["hash"]):
        raise ValueError("field 'seq' must be at least 1 and 'hash' 64 lowercase hex digits")
