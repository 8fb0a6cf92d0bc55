"""The registry of event kinds: the sync layer carries only kinds that something registered."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._area import Circle
from ._errors import InvalidBody, UnknownKind

KIND_PATTERN = re.compile(r"[a-z][a-z0-9_.-]{0,63}\Z")
HEX64 = re.compile(r"[0-9a-f]{64}\Z")
DAY = 86_400
DEFAULT_MAX_TTL = 400 * DAY
TOMBSTONE = "tombstone"

BodyValidator = Callable[[Any], None]
# The places a (valid) body is about, or None for everywhere: a node with an area of interest keeps and forwards an
# event only if one of them touches that area (DESIGN section 9).
AreaReader = Callable[[Any], "tuple[Circle, ...] | None"]


@dataclass(frozen=True, slots=True)
class KindSpec:
    """How events of one kind are checked: a body validator, the longest lifetime allowed and where it applies."""

    name: str
    validate: BodyValidator
    max_ttl: int = DEFAULT_MAX_TTL
    areas: AreaReader | None = None


class KindRegistry:
    """Kinds known to this node; events of any other kind are refused."""

    def __init__(self) -> None:
        self._kinds: dict[str, KindSpec] = {}
        self.register(TOMBSTONE, validate_tombstone, max_ttl=10 * 365 * DAY)

    def register(self, name: str, validate: BodyValidator, *, max_ttl: int = DEFAULT_MAX_TTL,
                 areas: AreaReader | None = None) -> None:
        """Register a kind; `validate(body)` raises ValueError naming what is wrong; `areas(body)` (of a valid
        body) gives the circles it is about, None for everywhere; without it the kind concerns everywhere."""
        if not KIND_PATTERN.match(name):
            raise ValueError(f"kind {name!r} must match {KIND_PATTERN.pattern}")
        if name in self._kinds:
            raise ValueError(f"kind {name!r} is already registered")
        self._kinds[name] = KindSpec(name, validate, max_ttl, areas)

    def areas(self, name: str, body: Any) -> tuple[Circle, ...] | None:
        """Where an event of kind `name` with this (validated) body applies; None for everywhere."""
        spec = self._kinds.get(name)
        if spec is None or spec.areas is None or body is None:
            return None
        return spec.areas(body)

    def get(self, name: str) -> KindSpec:
        """The spec of a registered kind, or UnknownKind."""
        try:
            return self._kinds[name]
        except KeyError:
            raise UnknownKind(f"kind {name!r} is not one this node accepts "
                              f"(known: {', '.join(sorted(self._kinds))})") from None

    def check_body(self, name: str, body: Any) -> None:
        """Run the kind's validator, translating its ValueError into InvalidBody."""
        try:
            self.get(name).validate(body)
        except ValueError as exc:
            raise InvalidBody(f"body of {name!r} event: {exc}") from exc

    def __contains__(self, name: str) -> bool:
        return name in self._kinds

    def names(self) -> list[str]:
        """Registered kind names, sorted."""
        return sorted(self._kinds)


def require_fields(body: Any, required: dict[str, type], optional: dict[str, type] | None = None
                   ) -> dict[str, Any]:
    """Check that `body` is an object with exactly these typed fields; return it."""
    optional = optional or {}
    if type(body) is not dict:
        raise ValueError("must be an object")
    unknown = set(body) - set(required) - set(optional)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}")
    for name in required:
        if name not in body:
            raise ValueError(f"missing field {name!r}")
    for name, value in body.items():
        kind = required.get(name) or optional[name]
        if type(value) is not kind:
            raise ValueError(f"field {name!r} must be {kind.__name__}, got {type(value).__name__}")
    return body


def validate_tombstone(body: Any) -> None:
    """A tombstone names the id of one earlier event by the same author."""
    require_fields(body, {"target": str})
    if not HEX64.match(body["target"]):
        raise ValueError("field 'target' must be an event id (64 lowercase hex digits)")
