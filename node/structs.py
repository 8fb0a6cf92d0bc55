"""Strict msgspec Structs: the one way node/ declares and validates data, with errors naming the key path.

A `Strict` Struct is frozen and refuses unknown keys. Its fields carry their constraints, help text and how an error
describes them in `Annotated[..., setting(...)]`; `convert` decodes plain data (a TOML table, a JSON body) into it with
`msgspec.convert(..., strict=True)`, so a bool is never an int. Checks a type cannot state (two fields together, a
number inside a string) live in `__post_init__` and raise `FieldError` naming the key. `convert` turns msgspec's
`$.a.b[0]` errors into one line: `a.b[0]: expected <what>, got <value> (<type>)`.
"""

from __future__ import annotations

import functools
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, ClassVar, NoReturn, TypeVar, cast, get_type_hints

import msgspec
from msgspec import inspect as mi

T = TypeVar("T")
_MISSING: Any = object()


class Strict(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Base of every validated Struct: immutable, unknown keys refused."""

    LABEL: ClassVar[str | None] = None
    """A field whose value errors show after the item's index, like `cameras.devices[0] (lobby).url`."""


class Body(Strict, frozen=True):
    """A JSON request body: unknown keys refused unless a body says otherwise (`forbid_unknown_fields=False`)."""

    OPTIONAL: ClassVar[bool] = False
    """Whether a request may leave the body out; it then reads as {}."""
    MAX_BYTES: ClassVar[int] = 64 * 1024
    """The largest body read (413 beyond it, refused before it is all read)."""


class FieldError(ValueError):
    """A `__post_init__` check failed for `key` (a dotted path below the Struct, or "" for the value itself)."""

    def __init__(self, key: str, message: str | None = None) -> None:
        """Without a message the error says what the field expects (its `expected`) and what it got."""
        super().__init__(message or f"invalid {key or 'value'}")
        self.key = key
        self.message = message


def full(pattern: str) -> str:
    """A regex that must match the whole string (msgspec searches; a final newline must not pass either)."""
    return f"^(?:{pattern})\\Z"


def setting(help: str = "", *, ge: float | None = None, le: float | None = None, max_length: int | None = None,
            pattern: str | None = None, expected: str | None = None, unit: str = "") -> msgspec.Meta:
    """A field's constraints, help text, what an error says it expects, and the unit shown after a range."""
    extra = {k: v for k, v in (("expected", expected), ("unit", unit)) if v}
    given: dict[str, Any] = {"ge": ge, "le": le, "max_length": max_length, "pattern": None if pattern is None else full(pattern),
             "description": help or None, "extra": extra or None}
    return msgspec.Meta(**{k: v for k, v in given.items() if v is not None})


Flag = Annotated[bool, setting(expected="true or false")]
DECIMAL = r"-?\d+(\.\d+)?"
HTTP_URL = r"https?://[^\s/]+(/\S*)?"
NodeKey = Annotated[str, setting(pattern="[0-9a-f]{64}", expected="a node key (64 lowercase hex digits)")]
HttpUrl = Annotated[str, setting(pattern=HTTP_URL, expected="an http:// or https:// URL")]
Latitude = Annotated[str, setting(pattern=f"({DECIMAL})?", expected='a decimal string in degrees between -90 and 90, '
                                  'like "40.7128", or ""')]
Longitude = Annotated[str, setting(pattern=f"({DECIMAL})?", expected='a decimal string in degrees between -180 and '
                                   '180, like "-74.0060", or ""')]


def degrees_ok(value: str, limit: int) -> bool:
    """Whether a Latitude/Longitude string (already matching its pattern) lies within +-limit; "" is fine."""
    try:
        return value == "" or abs(Decimal(value)) <= limit
    except InvalidOperation:
        return False


def describe(value: Any) -> str:
    """A value as an error shows it: its repr, cut short, and its type."""
    return f"{repr(value)[:60]} ({type(value).__name__})"


def convert(raw: Any, type_: type[T], *, where: str, error: type[Exception], base: str = "") -> T:
    """Decode plain data into `type_` strictly; a mistake raises `error("<where>: <base.key path>: <what>")`."""
    try:
        return msgspec.convert(raw, type_, strict=True, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        fail(error, where, base, explain(type_, raw, exc))


def fail(error: type[Exception], where: str, base: str, explained: tuple[str, str]) -> NoReturn:
    """Raise `error` with one line: where, the key path below `base` and the message."""
    path, message = join(base, explained[0]), explained[1]
    raise error(f"{where}: {path}: {message}" if path else f"{where}: {message}") from None


def join(path: str, key: str) -> str:
    """`a.b` + `c` or `[0]`: a dotted key path."""
    if not path or not key:
        return path or key
    return path + key if key.startswith("[") else f"{path}.{key}"


def check_numbers(obj: msgspec.Struct, prefix: str, error: type[Exception]) -> None:
    """Check a directly built Struct's numbers and booleans against its fields' types and ranges (decoding does so
    already; a constructor call does not)."""
    for name, kind, low, high in _numeric_fields(type(obj)):
        value = getattr(obj, name)
        if kind == "bool":
            if not isinstance(value, bool):
                raise error(f"{prefix}.{name} must be true or false, got {value!r}")
            continue
        ok = isinstance(value, int if kind == "int" else (int, float)) and not isinstance(value, bool)
        if not ok or (low is not None and value < low) or (high is not None and value > high):
            what = "an integer" if kind == "int" else "a number"
            raise error(f"{prefix}.{name} must be {what} within {low}..{high}, got {value!r}")


@functools.cache
def _numeric_fields(cls: type) -> list[tuple[str, str, Any, Any]]:
    fields: list[tuple[str, str, Any, Any]] = []
    for field in struct_info(cls).fields:
        info, _ = _unwrap(field.type)
        if isinstance(info, mi.BoolType):
            fields.append((field.name, "bool", None, None))
        elif isinstance(info, (mi.IntType, mi.FloatType)):
            fields.append((field.name, "int" if isinstance(info, mi.IntType) else "float", info.ge, info.le))
    return fields


def struct_info(cls: type) -> mi.StructType:
    """msgspec's description of a Struct class: its fields with their types, constraints and defaults."""
    return cast(mi.StructType, mi.type_info(cls))


def _dec_hook(type_: type, obj: Any) -> Any:
    """msgspec's hook for types it has no decoder of its own for: a Path from a string.

    Raising NotImplementedError for any other type is msgspec's protocol for "not mine" (it then reports the type
    as unsupported); the config declares no other such type."""
    if type_ is Path:
        if isinstance(obj, (str, Path)):
            return Path(obj)
        raise FieldError("")
    raise NotImplementedError(type_)


_SEGMENT = re.compile(r"\.(\w+)|\[(\d+)\]|\[\.\.\.\]")


def _segments(path: str) -> list[str | int | None]:
    """`$.a[0].b` as ["a", 0, "b"]; a dict value (`[...]`) is None."""
    return [m[1] if m[1] else int(m[2]) if m[2] else None for m in _SEGMENT.finditer(path)]


def explain(root: Any, raw: Any, error: Exception) -> tuple[str, str]:
    """(key path, message) for a msgspec ValidationError or a FieldError raised while building `root` from `raw`."""
    text, path = str(error), "$"
    cause: BaseException | None = error
    if isinstance(error, msgspec.ValidationError):
        text, cause = str(error), error.__cause__
        if " - at `$" in text:
            text, _, path = text.rpartition(" - at `")
            path = path.rstrip("`")
    segments = _segments(path)
    if isinstance(cause, FieldError) and cause.key:
        segments += _segments("." + cause.key)
    shown, info, extra, value = _walk(root, raw, segments)
    if isinstance(cause, FieldError) and cause.message:
        return shown, cause.message
    if cause is not None and not isinstance(cause, FieldError):
        return shown, str(cause)
    named = re.match(r"Object (contains unknown|missing required) field `(.*)`$", text)
    if named and "expected" not in extra:
        if named[1] == "missing required":
            return shown, f"missing required key {named[2]!r}"
        known = [f.encode_name for f in info.fields] if isinstance(info, mi.StructType) else []
        return join(shown, named[2]), f"unknown key (expected one of: {', '.join(known)})"
    mismatch = cause is None and re.match(r"Expected `[^`]*`, got `", text) is not None
    got = "" if value is _MISSING else f", got {describe(value)}"
    return shown, f"expected {_expected(info, extra, ranged=not mismatch)}{got}"


def _walk(root: Any, raw: Any, segments: list[str | int | None]) -> tuple[str, Any, dict[str, Any], Any]:
    """Follow a path through the types and the raw data; stop at a field that describes itself as a whole."""
    info, extra = _unwrap(mi.type_info(root))
    shown = ""
    for index, segment in enumerate(segments):
        if "expected" in extra:
            break
        if isinstance(segment, str) and isinstance(info, mi.StructType):
            field = next((f for f in info.fields if f.encode_name == segment), None)
            if field is None:
                break
            shown = join(shown, segment)
            raw = raw.get(segment, _MISSING) if isinstance(raw, dict) else _MISSING
            info, extra = _unwrap(field.type)
        elif isinstance(segment, int) and isinstance(info, (mi.ListType, mi.VarTupleType)):
            shown += f"[{segment}]"
            raw = raw[segment] if isinstance(raw, (list, tuple)) and segment < len(raw) else _MISSING
            info, extra = _unwrap(info.item_type)
            following = segments[index + 1] if index + 1 < len(segments) else None
            shown += _label(info, raw, following)
        else:
            break
    return shown, info, extra, raw


def _label(info: Any, raw: Any, following: Any) -> str:
    """` (lobby)` after a list item whose Struct names a LABEL field holding a valid value."""
    label = getattr(info.cls, "LABEL", None) if isinstance(info, mi.StructType) else None
    if not label or following == label or not isinstance(raw, dict) or label not in raw:
        return ""
    try:
        msgspec.convert(raw[label], get_type_hints(info.cls, include_extras=True)[label], strict=True)
    except msgspec.ValidationError:
        return ""
    return f" ({raw[label]})"


def _unwrap(info: Any) -> tuple[Any, dict[str, Any]]:
    if isinstance(info, mi.Metadata):
        return info.type, dict(info.extra or {})
    return info, {}


def _expected(info: Any, extra: dict[str, Any], *, ranged: bool) -> str:
    """What a value of this type is, in words: "an integer", "a number >= 1 and <= 10 (seconds)", "one of ..."."""
    if "expected" in extra:
        return str(extra["expected"])
    if isinstance(info, (mi.IntType, mi.FloatType)):
        bounds = [f"{op} {v}" for op, v in ((">=", info.ge), ("<=", info.le)) if v is not None]
        if ranged and bounds:
            unit = f" ({extra['unit']})" if extra.get("unit") else ""
            return "a number " + " and ".join(bounds) + unit
        return "an integer" if isinstance(info, mi.IntType) else "a number"
    if isinstance(info, mi.StrType):
        return f"a string of at most {info.max_length} characters" if info.max_length else "a string"
    if isinstance(info, mi.LiteralType):
        return "one of " + ", ".join(repr(v) for v in info.values)
    names = {mi.BoolType: "a boolean (true or false)", mi.ListType: "a list", mi.VarTupleType: "a list",
             mi.StructType: "a table", mi.DictType: "a table", mi.CustomType: "a string"}
    return next((name for kind, name in names.items() if isinstance(info, kind)), "a valid value")
