"""The event kinds sync's own tests use: a small registry of their own, so that sync is tested without node/."""

from __future__ import annotations

from typing import Any

from sync import KindRegistry, require_fields

NOTICE = "notice"
NOTICE_MAX_TTL = 90 * 86_400


def validate_notice(body: Any) -> None:
    """A notice: an object with a non-empty 'text' and an optional 'title'."""
    require_fields(body, {"text": str}, {"title": str})
    if not body["text"].strip():
        raise ValueError("field 'text' must hold at least one character")


def build_test_registry() -> KindRegistry:
    """A registry of the tombstone (always there) and the test notice, which lives at most 90 days."""
    registry = KindRegistry()
    registry.register(NOTICE, validate_notice, max_ttl=NOTICE_MAX_TTL)
    return registry
