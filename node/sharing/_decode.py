"""Strict decoding of the sharing documents (agency requests, bundle manifests, consent receipts) into msgspec Structs.

`decode` converts plain data (decoded JSON) with `msgspec.convert(..., strict=True)`: a bool is never an int, no
number passes for a string, and the Structs refuse unknown keys. A mistake raises `Mismatch`, whose `Problem` says
where (`area.polygon[2][0]`, translated from msgspec's `$.area.polygon[2][0]`), what kind of mistake it is, the words
the declaration gives for what it expects (`words(...)` in an `Annotated[...]`), and the value found there; each
document's module turns it into its own error class and wording. A check a type cannot state (a number inside a
string within range, two fields together) lives in the Struct's `__post_init__` and raises `FieldError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from msgspec import inspect as mi

T = TypeVar("T")
MISSING: Any = object()
"""The value of a Problem whose path holds nothing."""

_SEGMENT = re.compile(r"\.(\w+)|\[(\d+)\]")
_NAMED = re.compile(r"Object (contains unknown|missing required) field `(.*)`$")


def words(expected: str, **constraints: Any) -> msgspec.Meta:
    """A field's constraints (msgspec.Meta's) and the words an error uses for what the field expects."""
    return msgspec.Meta(**constraints, extra={"expected": expected})


def full(pattern: str) -> str:
    """A regex that must match the whole string (msgspec searches; a final newline must not pass either)."""
    return f"^(?:{pattern})\\Z"


class FieldError(ValueError):
    """A `__post_init__` check failed for `key`, a path below the Struct (`lat`, `polygon[2][0]`; "" for itself)."""

    def __init__(self, key: str) -> None:
        """The error names the field; its declared words say what was expected."""
        super().__init__(f"invalid {key or 'value'}")
        self.key = key


@dataclass(frozen=True)
class Problem:
    """Where and how plain data differs from its Struct."""

    path: str
    """The key path, like `area.circle.radius_m` or `polygon[0][1]`; "" for the value itself."""
    kind: str
    """"missing" (a required key is absent), "unknown" (a key the object does not take) or "invalid"."""
    name: str
    """The missing or unknown key ("" for an invalid value)."""
    expected: str
    """The declared words for what the path takes ("" where the declaration gives none)."""
    value: Any
    """The value found at the path (MISSING if there is none)."""
    is_object: bool
    """Whether the path takes an object (a Struct)."""
    keys: tuple[str, ...]
    """The keys the object at the path takes (empty unless it takes an object)."""

    def at(self, base: str) -> str:
        """The path below `base` (a dotted key path), as errors show it."""
        return join(base, self.path)

    def key(self) -> str:
        """The path of the missing or unknown key itself."""
        return join(self.path, self.name)


class Mismatch(ValueError):
    """Plain data does not decode into its Struct; `problem` says where and how."""

    def __init__(self, problem: Problem) -> None:
        """Carry the problem; the message is for logs only (each document words its own errors)."""
        super().__init__(f"{problem.kind} {problem.key() or 'value'}")
        self.problem = problem


def join(path: str, key: str) -> str:
    """`a.b` + `c` or `[0]`: a key path."""
    if not path or not key:
        return path or key
    return path + key if key.startswith("[") else f"{path}.{key}"


def decode(raw: Any, type_: type[T]) -> T:
    """Decode plain data into the Struct `type_` strictly; a mistake raises Mismatch."""
    try:
        return msgspec.convert(raw, type_, strict=True)
    except msgspec.ValidationError as exc:
        raise Mismatch(locate(type_, raw, exc)) from None


def locate(type_: Any, raw: Any, error: msgspec.ValidationError) -> Problem:
    """The Problem a ValidationError raised while decoding `raw` into `type_` describes."""
    text, _, where = str(error).partition(" - at `")
    segments: list[str | int] = [m[1] or int(m[2]) for m in _SEGMENT.finditer(where.rstrip("`"))]
    if isinstance(error.__cause__, FieldError):
        segments += [m[1] or int(m[2]) for m in _SEGMENT.finditer("." + error.__cause__.key)]
    path, info, expected, value = _walk(type_, raw, segments)
    named = _NAMED.match(text)
    kind, name = ("missing" if named[1].startswith("missing") else "unknown", named[2]) if named else ("invalid", "")
    is_object = isinstance(info, mi.StructType)
    keys = tuple(f.encode_name for f in info.fields) if is_object else ()
    return Problem(path, kind, name, expected, value, is_object, keys)


def _walk(type_: Any, raw: Any, segments: list[str | int]) -> tuple[str, Any, str, Any]:
    """Follow a path through the declared types and the data: (path shown, type, its words, value there)."""
    info, expected = _unwrap(mi.type_info(type_))
    path = ""
    for segment in segments:
        if isinstance(segment, str) and isinstance(info, mi.StructType):
            field = next((f for f in info.fields if f.encode_name == segment), None)
            if field is None:
                break
            raw = raw.get(segment, MISSING) if isinstance(raw, dict) else MISSING
            info, expected = _unwrap(field.type)
        elif isinstance(segment, int) and isinstance(info, (mi.ListType, mi.VarTupleType, mi.TupleType)):
            item = info.item_types[segment] if isinstance(info, mi.TupleType) else info.item_type
            raw = raw[segment] if isinstance(raw, (list, tuple)) and segment < len(raw) else MISSING
            info, expected = _unwrap(item)
        else:
            break
        path = join(path, f"[{segment}]" if isinstance(segment, int) else segment)
    return path, info, expected, raw


def _unwrap(info: Any) -> tuple[Any, str]:
    """A type without its metadata and optional None, and the outermost words declared for it."""
    expected = ""
    while True:
        if isinstance(info, mi.Metadata):
            expected = expected or str((info.extra or {}).get("expected", ""))
            info = info.type
        elif isinstance(info, mi.UnionType):
            members = [t for t in info.types if not isinstance(t, mi.NoneType)]
            if len(members) != 1:
                return info, expected
            info = members[0]
        else:
            return info, expected


def short(value: Any) -> str:
    """A value as an error shows it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
