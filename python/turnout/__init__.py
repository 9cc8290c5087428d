"""turnout: high-throughput event routing for Python, with a Rust core.

The subject rules and the subject index live in Rust (``turnout._core``); this package is
the public face. ``turnout.reference`` is a pure-Python twin of the same API.

The event bus, its events and history stores are importable from here too; their modules
load on first use, so ``import turnout`` stays cheap (the bus brings in asyncio).
"""

from __future__ import annotations

import importlib

from turnout._core import (
    MAX_SUBJECT_LENGTH,
    MAX_TOKENS,
    MatchResult,
    SubjectIndex,
    __version__,
    is_subset,
    is_valid_literal,
    is_valid_subject,
    subject_matches,
    subjects_collide,
    tokens,
    validate_subject,
)
from turnout._errors import InvalidSubjectError

# What typing.TYPE_CHECKING is, without importing typing (and re) at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from turnout.bus import Bus, BusClosedError, Message, Stream, Subscription
    from turnout.events import Event, EventDecodeError, EventEncodeError
    from turnout.history import (
        FileHistory,
        History,
        HistoryFormatError,
        HistoryLockedError,
        MemoryHistory,
    )

# Public name -> the module defining it, imported when the name is first used.
_LAZY = {
    "Bus": "turnout.bus",
    "BusClosedError": "turnout.bus",
    "Message": "turnout.bus",
    "Stream": "turnout.bus",
    "Subscription": "turnout.bus",
    "Event": "turnout.events",
    "EventDecodeError": "turnout.events",
    "EventEncodeError": "turnout.events",
    "FileHistory": "turnout.history",
    "History": "turnout.history",
    "HistoryFormatError": "turnout.history",
    "HistoryLockedError": "turnout.history",
    "MemoryHistory": "turnout.history",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'turnout' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    # The public names only: not the helpers of this module (TYPE_CHECKING, importlib...)
    # nor the submodules that happen to be loaded.
    return sorted(__all__)


__all__ = [
    "MAX_SUBJECT_LENGTH",
    "MAX_TOKENS",
    "Bus",
    "BusClosedError",
    "Event",
    "EventDecodeError",
    "EventEncodeError",
    "FileHistory",
    "History",
    "HistoryFormatError",
    "HistoryLockedError",
    "InvalidSubjectError",
    "MatchResult",
    "MemoryHistory",
    "Message",
    "Stream",
    "SubjectIndex",
    "Subscription",
    "__version__",
    "is_subset",
    "is_valid_literal",
    "is_valid_subject",
    "subject_matches",
    "subjects_collide",
    "tokens",
    "validate_subject",
]
