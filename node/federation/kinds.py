"""The event kinds this node accepts, registered with the sync layer."""

from __future__ import annotations

from typing import Any

from node.federation.areas import alert_areas, request_areas, sos_areas
from node.safety.alerts import ALERT, MAX_TTL, validate_alert
from node.safety.reports import REPORT, REPORT_TTL, validate_report_event
from node.safety.sos import SOS, SOS_EVENT_TTL, validate_sos_event
from node.sharing import events as sharing
from sync import KindRegistry, require_fields

NOTICE = "notice"
NOTICE_MAX_CHARS = 2000


def validate_notice(body: Any) -> None:
    """A notice: a manager's short message to the neighborhood."""
    require_fields(body, {"text": str}, {"title": str})
    if not body["text"].strip() or len(body["text"]) > NOTICE_MAX_CHARS:
        raise ValueError(f"field 'text' must hold 1 to {NOTICE_MAX_CHARS} characters")
    if len(body.get("title", "")) > 200:
        raise ValueError("field 'title' must hold at most 200 characters")


def build_registry() -> KindRegistry:
    """The registry of every kind this node accepts."""
    registry = KindRegistry()
    registry.register(NOTICE, validate_notice, max_ttl=90 * 86_400)
    registry.register(ALERT, validate_alert, max_ttl=MAX_TTL, areas=alert_areas)
    registry.register(REPORT, validate_report_event, max_ttl=REPORT_TTL)
    registry.register(SOS, validate_sos_event, max_ttl=SOS_EVENT_TTL, areas=sos_areas)
    registry.register(sharing.REQUEST_KIND, sharing.validate_request_event, max_ttl=sharing.REQUEST_TTL,
                      areas=request_areas)
    registry.register(sharing.DISCLOSURE_KIND, sharing.validate_disclosure, max_ttl=sharing.DISCLOSURE_TTL)
    registry.register(sharing.AUDIT_HEAD_KIND, sharing.validate_audit_head, max_ttl=sharing.AUDIT_HEAD_TTL)
    return registry
