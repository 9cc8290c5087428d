"""The subject index implementations a benchmark can measure.

Both the Rust core (``turnout``) and the pure-Python twin (``turnout.reference``) expose a
``SubjectIndex`` with the same API; the measurements only rely on the structural protocol
below, so they run unchanged on either.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast


class MatchResultLike(Protocol):
    """What a match returns: the matched values, plain and per queue group."""

    @property
    def plain(self) -> Sequence[Any]: ...

    @property
    def queues(self) -> Mapping[str, Sequence[Any]]: ...

    def __len__(self) -> int: ...


class SubjectIndexLike(Protocol):
    """The part of the ``SubjectIndex`` API the workloads exercise."""

    def insert(self, pattern: str, value: Any, queue: str | None = None) -> int: ...

    def remove(self, handle: int) -> bool: ...

    def match(self, subject: str) -> MatchResultLike: ...

    def match_many(self, subjects: Iterable[str]) -> Sequence[MatchResultLike]: ...

    def stats(self) -> Mapping[str, int | float]: ...

    def __len__(self) -> int: ...


IndexFactory = Callable[[int], SubjectIndexLike]
"""Makes an empty index with the given match-cache size (0 disables the cache)."""


@dataclass(frozen=True)
class Implementation:
    """One implementation of the subject index, named as reports show it."""

    name: str
    """Short name used in results and JSON: ``"rust"`` or ``"reference"``."""
    label: str
    """Column heading in the table."""
    module: str
    """The module providing ``SubjectIndex``, or what a system workload needs imported."""
    needs: Callable[[], bool] | None = None
    """Anything else it needs beside ``module``, checked by :meth:`is_available`."""

    def factory(self) -> IndexFactory:
        """Imports the module and returns a maker of empty indexes.

        Raises ``ImportError`` when the module is unavailable.
        """
        index_class = importlib.import_module(self.module).SubjectIndex

        def make(cache_size: int) -> SubjectIndexLike:
            return cast(SubjectIndexLike, index_class(cache_size=cache_size))

        return make

    def is_available(self) -> bool:
        """Whether the module imports (the reference may be missing from a stripped install)."""
        try:
            importlib.import_module(self.module)
        except ImportError:
            return False
        return self.needs is None or self.needs()


RUST = Implementation(name="rust", label="turnout (Rust)", module="turnout")
REFERENCE = Implementation(name="reference", label="reference (Python)", module="turnout.reference")

ALL_IMPLEMENTATIONS: tuple[Implementation, ...] = (RUST, REFERENCE)
"""The two subject indexes, measured by W1-W4."""

# What the system workloads (W5-W10) put turnout beside. Every workload names its baseline
# "reference" so the speedup column reads the same everywhere; third-party baselines keep
# their own names. ``module`` is what must import for the implementation to be measured.
PLAIN_PYTHON = Implementation(name="reference", label="plain Python", module="turnout")
BLINKER = Implementation(name="blinker", label="blinker", module="blinker")
PYEE = Implementation(name="pyee", label="pyee", module="pyee")
TRANSITIONS = Implementation(name="transitions", label="transitions", module="transitions")
QUEUE_HANDLER = Implementation(
    name="queuehandler", label="logging QueueHandler", module="logging.handlers"
)


def _nats_server_found() -> bool:
    from turnout.nats_server import NatsServerNotFoundError, nats_server_binary

    try:
        nats_server_binary()
    except NatsServerNotFoundError:
        return False
    return True


TURNOUT_NATS = Implementation(
    name="rust", label="turnout on NATS", module="nats", needs=_nats_server_found
)
NATS_PY = Implementation(
    name="nats-py", label="plain nats-py", module="nats", needs=_nats_server_found
)
TURNOUT_HUB = Implementation(name="rust", label="turnout Hub", module="websockets")
PLAIN_WEBSOCKETS = Implementation(name="reference", label="plain websockets", module="websockets")
