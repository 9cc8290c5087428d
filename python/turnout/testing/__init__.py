"""Tools for testing event routing against NATS subject semantics.

- :mod:`turnout.testing.strategies`: Hypothesis strategies for subjects, patterns, events
  and coordination messages (the ``testing`` extra).
- :func:`check_matcher` and :func:`check_index`: property tests of a matcher function or
  of a subscription index against the reference semantics, raising ``AssertionError`` with
  the smallest counterexample found.
- :mod:`turnout.testing.nats_server`: real nats-server processes on loopback.
- :mod:`turnout.testing.pytest_plugin`: pytest fixtures of servers, a hub and a bus,
  registered automatically.

Hypothesis is imported when a name needing it is first used, so the pytest plugin (which
imports this package) costs nothing to projects without the extra.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from turnout.testing.index_check import check_index
    from turnout.testing.matcher_check import check_matcher

__all__ = ["check_index", "check_matcher"]

_LAZY = {
    "check_index": "turnout.testing.index_check",
    "check_matcher": "turnout.testing.matcher_check",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'turnout.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
