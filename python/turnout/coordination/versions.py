"""Protocol versions: ``major.minor`` text, and the one both ends of a connection speak.

A service that names no version speaks ``DEFAULT_PROTOCOL_VERSION``, as Go's client
defaults; the hub answers a registration with the lower of the two versions, so an older
service keeps being understood by a newer hub.
"""

from __future__ import annotations

import re

__all__ = [
    "DEFAULT_PROTOCOL_VERSION",
    "HUB_PROTOCOL_VERSION",
    "negotiate_protocol_version",
    "parse_protocol_version",
]

#: What a service speaks when its config names no version (Go's client default).
DEFAULT_PROTOCOL_VERSION = "1.0"
#: What this hub speaks.
HUB_PROTOCOL_VERSION = "1.0"

_VERSION = re.compile(r"(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})")


def parse_protocol_version(text: str) -> tuple[int, int]:
    """``"major.minor"`` as numbers; ``ValueError`` for anything else."""
    m = _VERSION.fullmatch(text)
    if m is None:
        raise ValueError(f"protocol version must be 'major.minor', not {text[:32]!r}")
    return int(m[1]), int(m[2])


def negotiate_protocol_version(service: str, hub: str) -> str:
    """The version both ends speak: the lower ``major.minor`` of the two (an empty service
    version is ``DEFAULT_PROTOCOL_VERSION``). ``ValueError`` for a malformed version."""
    ours = parse_protocol_version(service or DEFAULT_PROTOCOL_VERSION)
    theirs = parse_protocol_version(hub)
    low = min(ours, theirs)
    return f"{low[0]}.{low[1]}"
