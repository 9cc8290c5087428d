"""Routing raw JSON messages by one top-level string field: the contract the dispatcher's
raw path relies on, and a pure-Python twin of the Rust ``turnout._core.KeyRouter``.

``route_batch(batch)`` returns ``(grouped, unknown, malformed)``: for each key that received
messages, its messages in batch order (the very bytes objects given); then the well-formed
messages whose key is not one of the router's; then the malformed ones (not a JSON object,
the field missing or not a string). A key repeated in the key list counts once. The batch is
checked to hold only ``bytes`` before anything is routed (``TypeError`` otherwise).

The twin is the oracle of the differential tests. It parses with orjson, which agrees with
the Rust scanner on JSON as services write it; the two differ only at the edges of JSON
itself (orjson refuses numbers beyond float range such as ``1e400``, which Go and the Rust
scanner accept, and nests up to 1024 levels where the Rust scanner stops at 128).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import orjson

__all__ = ["KeyRouterLike", "PythonKeyRouter"]

Routed = tuple[dict[str, list[bytes]], list[bytes], list[bytes]]
"""``(grouped by key, unknown key, malformed)``."""


class KeyRouterLike(Protocol):
    """What ``turnout._core.KeyRouter`` and ``PythonKeyRouter`` both offer."""

    @property
    def field(self) -> str: ...

    def __len__(self) -> int: ...

    def route_batch(self, batch: Iterable[bytes]) -> Routed: ...


class PythonKeyRouter:
    """Routes JSON messages to ``keys`` by the string at top-level ``field`` (pure Python)."""

    def __init__(self, keys: Iterable[str], field: str = "workspace_name") -> None:
        known: set[str] = set()
        for key in keys:
            if not isinstance(key, str):
                raise TypeError(f"key must be a str, not {type(key).__name__}")
            known.add(key)
        self._keys = frozenset(known)
        self._field = field

    @property
    def field(self) -> str:
        return self._field

    def __len__(self) -> int:
        return len(self._keys)

    def route_batch(self, batch: Iterable[bytes]) -> Routed:
        messages = list(batch)
        for message in messages:
            if not isinstance(message, bytes):
                raise TypeError(f"messages must be bytes, not {type(message).__name__}")
        grouped: dict[str, list[bytes]] = {}
        unknown: list[bytes] = []
        malformed: list[bytes] = []
        keys, field = self._keys, self._field
        for message in messages:
            try:
                document = orjson.loads(message)
            except orjson.JSONDecodeError:
                malformed.append(message)
                continue
            key = document.get(field) if isinstance(document, dict) else None
            if not isinstance(key, str):
                malformed.append(message)
            elif key in keys:
                grouped.setdefault(key, []).append(message)
            else:
                unknown.append(message)
        return grouped, unknown, malformed
