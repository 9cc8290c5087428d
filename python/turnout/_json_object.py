"""Reading the fields of a JSON object the way Go's ``encoding/json`` fills a struct.

Go leaves a field at its zero value when the key is missing or ``null``, and fails when the
value has the wrong JSON type or does not fit the Go integer type. The wire types ported
from Go (``turnout.workspace``, ``turnout.execution``) decode with these helpers so they
accept exactly what a Go service sends and reject the rest with one typed exception.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["MalformedMessageError", "decode_object", "int_field", "str_field", "type_name"]


class MalformedMessageError(ValueError):
    """Bytes that do not decode to the expected wire message: not JSON, not an object, a
    required field missing, a field of the wrong type, an integer out of range."""


def decode_object(data: bytes | bytearray | memoryview | str, what: str) -> dict[str, Any]:
    """``data`` parsed as a JSON object; ``what`` names the message in errors."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise MalformedMessageError(f"{what}: invalid JSON: {exc}") from exc
    except TypeError as exc:  # not bytes-like nor str
        raise MalformedMessageError(
            f"{what}: expected JSON bytes, not {type(data).__name__}"
        ) from exc
    if not isinstance(value, dict):
        raise MalformedMessageError(f"{what}: expected a JSON object, not {type_name(value)}")
    return value


def str_field(obj: dict[str, Any], key: str, *, required: bool = False) -> str:
    """The string at ``key``; ``""`` when missing or null unless ``required``."""
    value = obj.get(key)
    if value is None:
        if required:
            raise MalformedMessageError(f"{key}: missing")
        return ""
    if not isinstance(value, str):
        raise MalformedMessageError(f"{key}: expected a string, not {type_name(value)}")
    return value


def int_field(obj: dict[str, Any], key: str, *, bits: int = 64, required: bool = False) -> int:
    """The integer at ``key``, which must fit a signed Go integer of ``bits`` bits; 0 when
    missing or null unless ``required``. Like Go, a number with a fraction or exponent
    (``3.0``) is not an integer."""
    value = obj.get(key)
    if value is None:
        if required:
            raise MalformedMessageError(f"{key}: missing")
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedMessageError(f"{key}: expected an integer, not {type_name(value)}")
    limit = 1 << (bits - 1)
    if not -limit <= value < limit:
        raise MalformedMessageError(f"{key}: {value} does not fit a {bits}-bit integer")
    return value


def type_name(value: object) -> str:
    """The JSON type of a decoded value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
