"""Typed payload dataclasses to and from the map a Go ``WSMessage`` carries.

The when-v3 coordinator sets a payload by marshalling a struct and unmarshalling the JSON
into a ``map[string]interface{}``, and reads one back the other way (``PayloadToStruct``).
So a payload is the struct's JSON: fields tagged ``omitempty`` are absent when zero, a nil
slice is ``null``, and (once written) the keys are sorted. Reading follows
``encoding/json``: a missing or ``null`` key leaves the zero value, keys match without
regard to case (the last match in the object wins, as in Go), unknown keys are ignored, and
a value of the wrong JSON type is an error.

A payload class is a frozen dataclass whose fields carry their Go tag as metadata
(:func:`json_tag`); the field's annotation picks the conversion:

==========================  ==============================================================
annotation                  on the wire
==========================  ==============================================================
``str``, ``bool``           a string, a boolean
``int``                     a number without a fraction (Go reads ``3.0`` as 3, not 3.5)
``float``                   a number
``tuple[str, ...]``         an array of strings; empty is written ``null`` (a nil slice)
``dict[str, Any] | None``   an object, as given
``datetime | None``         an RFC 3339 string (unset is Go's zero time)
``E | str``                 a string; an ``E`` member when the value is one (E: str enum)
``tuple[P, ...]``           an array of objects, each a payload class ``P``
==========================  ==============================================================
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol, TypeVar

from turnout._json_object import type_name as json_type_name
from turnout._wire import ZERO_TIME, format_time, parse_time

__all__ = ["GoPayload", "Payload", "ProtocolError", "json_tag", "json_type_name"]


class ProtocolError(ValueError):
    """A coordination message or payload that is malformed: not JSON, not an object, a
    required field missing, a field of the wrong type, a bad timestamp."""

    __module__ = "turnout.protocol"


class Payload(Protocol):
    """What :meth:`turnout.protocol.WSMessage.with_payload` and
    :meth:`turnout.protocol.WSMessage.payload_as` work with."""

    def to_payload(self) -> dict[str, Any]: ...

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Any: ...


_METADATA_KEY = "go_json"


@dataclasses.dataclass(frozen=True)
class _Tag:
    key: str
    omitempty: bool


def json_tag(tag: str) -> dict[str, Any]:
    """Field metadata holding a Go JSON tag, written as in Go: ``json_tag("reason,omitempty")``
    (use as ``field(default="", metadata=json_tag(...))``)."""
    key, _, options = tag.partition(",")
    return {_METADATA_KEY: _Tag(key, "omitempty" in options.split(","))}


Encode = Callable[[Any], Any]
Decode = Callable[[str, Any], Any]


@dataclasses.dataclass(frozen=True)
class _Member:
    attr: str
    key: str
    omitempty: bool
    encode: Encode
    decode: Decode
    zero: Any


class _Codec:
    """The conversions of one payload class, built once from its fields."""

    def __init__(self, cls: type[Any]) -> None:
        hints = typing.get_type_hints(cls)
        members = []
        for f in dataclasses.fields(cls):
            tag = f.metadata.get(_METADATA_KEY)
            if not isinstance(tag, _Tag):
                raise TypeError(f"{cls.__name__}.{f.name} has no Go JSON tag")
            encode, decode, zero = _conversions(hints[f.name])
            members.append(_Member(f.name, tag.key, tag.omitempty, encode, decode, zero))
        self._cls = cls
        self._members = tuple(members)
        self._keys = frozenset(m.key for m in members)

    def to_map(self, obj: object) -> dict[str, Any]:
        """The payload map, keys in the struct's order (sorted when written)."""
        out: dict[str, Any] = {}
        for m in self._members:
            value = getattr(obj, m.attr)
            if m.omitempty and not value:
                continue
            out[m.key] = m.encode(value)
        return out

    def from_map(self, payload: Mapping[str, Any]) -> Any:
        """An instance read from a payload map (``ProtocolError`` on a wrong type)."""
        if not isinstance(payload, Mapping):
            raise ProtocolError(f"payload: expected an object, not {json_type_name(payload)}")
        if not payload.keys() <= self._keys:
            payload = self._folded(payload)
        values = {}
        for m in self._members:
            raw = payload.get(m.key)
            values[m.attr] = m.zero if raw is None else m.decode(m.key, raw)
        return self._cls(**values)

    def _folded(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        # encoding/json matches keys case-insensitively, and a later key overwrites an
        # earlier one; unknown keys are dropped.
        folded: dict[str, Any] = {}
        for key, value in payload.items():
            if not isinstance(key, str):
                continue
            lowered = key.lower()
            if lowered in self._keys:
                folded[lowered] = value
        return folded


_CODECS: dict[type[Any], _Codec] = {}


def _codec_of(cls: type[Any]) -> _Codec:
    codec = _CODECS.get(cls)
    if codec is None:  # two threads may both build it: the same result either way
        codec = _CODECS[cls] = _Codec(cls)
    return codec


T = TypeVar("T", bound="GoPayload")


class GoPayload:
    """Base of the payload dataclasses: ``to_payload`` / ``from_payload`` from the fields'
    Go tags (the conversions are worked out on first use, once per class)."""

    __slots__ = ()

    def to_payload(self) -> dict[str, Any]:
        """The payload map Go would hold (``omitempty`` fields left out when zero)."""
        return _codec_of(type(self)).to_map(self)

    @classmethod
    def from_payload(cls: type[T], payload: Mapping[str, Any]) -> T:
        """Reads a payload map as Go's ``PayloadToStruct`` does; ``ProtocolError`` when a
        value has the wrong type."""
        instance: T = _codec_of(cls).from_map(payload)
        return instance


# --- conversions by annotation -----------------------------------------------------------


def _conversions(hint: Any) -> tuple[Encode, Decode, Any]:
    """(encode, decode, zero value) for a field annotated ``hint``."""
    if hint is str:
        return _same, _read_str, ""
    if hint is bool:
        return _same, _read_bool, False
    if hint is int:
        return _same, _read_int, 0
    if hint is float:
        return _same, _read_float, 0.0
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        others = [a for a in args if a is not type(None)]
        if others == [datetime]:
            return _write_time, _read_time, ZERO_TIME
        if len(others) == 2 and str in others:
            (choice,) = [a for a in others if a is not str]
            if isinstance(choice, type) and issubclass(choice, enum.Enum):
                return _write_enum, _enum_reader(choice), ""
        if len(others) == 1 and typing.get_origin(others[0]) is dict:
            return _same, _read_object, None
    if hint is datetime:
        return _write_time, _read_time, ZERO_TIME
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = args[0]
        if item is str:
            return _write_strings, _read_strings, ()
        if hasattr(item, "from_payload"):
            return _write_payloads, _payloads_reader(item), ()
    raise TypeError(f"no Go JSON conversion for {hint!r}")


def _same(value: Any) -> Any:
    return value


def _wrong(key: str, expected: str, value: object) -> ProtocolError:
    return ProtocolError(f"{key}: expected {expected}, not {json_type_name(value)}")


def _read_str(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _wrong(key, "a string", value)
    return value


def _read_bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _wrong(key, "a boolean", value)
    return value


def _read_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _wrong(key, "a number", value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ProtocolError(f"{key}: {value!r} is not an integer")
        value = int(value)
    number: int = value
    if not -(2**63) <= number < 2**63:
        raise ProtocolError(f"{key}: {number} does not fit a 64-bit integer")
    return number


def _read_float(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _wrong(key, "a number", value)
    return float(value)


def _read_object(key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _wrong(key, "an object", value)
    return value


def _write_time(value: datetime | None) -> str:
    return format_time(ZERO_TIME if value is None else value)


def _read_time(key: str, value: Any) -> datetime:
    if not isinstance(value, str):
        raise _wrong(key, "an RFC 3339 string", value)
    try:
        return parse_time(value)
    except ValueError as exc:
        raise ProtocolError(f"{key}: {exc}") from None


def _write_enum(value: Any) -> str:
    return value.value if isinstance(value, enum.Enum) else str(value)


def _enum_reader(choice: type[enum.Enum]) -> Decode:
    members = {m.value: m for m in choice}

    def read(key: str, value: Any) -> Any:
        return members.get(_read_str(key, value), value)

    return read


def _write_strings(value: tuple[str, ...]) -> list[str] | None:
    return list(value) if value else None  # a nil slice: Go writes null


def _read_strings(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _wrong(key, "an array of strings", value)
    return tuple(value)


def _write_payloads(value: tuple[Any, ...]) -> list[dict[str, Any]] | None:
    return [item.to_payload() for item in value] if value else None


def _payloads_reader(item: Any) -> Decode:
    def read(key: str, value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise _wrong(key, "an array", value)
        try:
            return tuple(item.from_payload(v) for v in value)
        except ProtocolError as exc:
            raise ProtocolError(f"{key}: {exc}") from None

    return read
