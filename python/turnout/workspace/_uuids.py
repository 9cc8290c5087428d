"""UUIDs on coder's wire: written lowercase and hyphenated (``str(uuid)``, which is also
how orjson writes a ``UUID``), read in the forms Go's ``github.com/google/uuid`` accepts."""

from __future__ import annotations

import re
from uuid import UUID

from turnout._json_object import MalformedMessageError, type_name

__all__ = ["NIL_UUID", "parse_uuid"]

#: Go's ``uuid.Nil``: what an unset UUID field holds.
NIL_UUID = UUID(int=0)

_HEX = "[0-9a-fA-F]"
_HYPHENATED = f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
# Go's parser takes the 36-character form, 32 bare hex digits, "{...}" and "urn:uuid:...";
# Python's UUID() is laxer (hyphens anywhere; "_" and "+" pass its int() parse), so the
# shape is checked first.
_GO_UUID = re.compile(
    f"(?:{_HYPHENATED}|{_HEX}{{32}}|\\{{{_HYPHENATED}\\}}|(?i:urn:uuid:){_HYPHENATED})\\Z"
)


# A stream of build updates repeats the same few ids (a build's updates share its workspace
# and build ids), and parsing one costs microseconds: parsed ids are kept, boundedly.
_PARSED: dict[str, UUID] = {}
_PARSED_LIMIT = 8192


def parse_uuid(value: object, field: str) -> UUID:
    """The UUID in a decoded JSON value; ``MalformedMessageError`` naming ``field`` when it
    is not a string in one of Go's accepted forms."""
    if not isinstance(value, str):
        raise MalformedMessageError(f"{field}: expected a UUID string, not {type_name(value)}")
    parsed = _PARSED.get(value)
    if parsed is not None:
        return parsed
    if _GO_UUID.match(value) is None:
        raise MalformedMessageError(f"{field}: not a UUID: {value[:64]!r}")
    parsed = UUID(value)
    if len(_PARSED) >= _PARSED_LIMIT:
        _PARSED.clear()
    _PARSED[value] = parsed
    return parsed
