"""The seam between a :class:`turnout.Bus` and what carries its messages between processes.

The bus does all local routing itself, through its one Rust ``SubjectIndex``: handlers,
streams and queue groups of the process are its index's values. A transport only carries
``(subject, event, bytes)`` to other processes and hands the bus what arrives from them:

- the bus calls :meth:`Transport.attach` once with its receiving function;
- for every message published on the bus, :meth:`Transport.publish` (only when ``remote``);
  the bus passes the JSON bytes whenever ``wants_bytes`` is true, serialised once;
- :meth:`Transport.add_interest` / :meth:`Transport.remove_interest` follow the bus's
  subscriptions, so a transport subscribes remotely only to what someone here wants;
- what arrives from elsewhere goes to ``receive(subject, event, data, queue)``, exactly once
  per message for plain interest, from any thread;
- a transport that reads messages in runs may also have ``attach_runs(receive_run)``: the
  bus then calls it once with a function taking a whole run of plain-interest messages,
  ``receive_run([(sid, subject, data), ...])`` (the first element is the transport's own,
  unused), delivered as one (each mailbox gets the run in one put);
- ``owns_queue_groups``: when true, the transport (like NATS) picks the one member of a
  queue group across all processes. The bus then routes its own publishes to plain
  subscriptions only, and the transport delivers queue-group messages back through
  ``receive(..., queue=group)``, which the bus hands to one member of that local group.
  When false, the bus picks queue-group members itself, per process.

:class:`turnout.transport.local.LocalTransport` is the embedded default.
"""

from __future__ import annotations

from typing import Protocol

from turnout.events import Event

__all__ = ["Receive", "Transport"]


class Receive(Protocol):
    """The bus's entry point for messages arriving from other processes: an ``event``
    already decoded, or only its JSON ``data`` (at least one of the two)."""

    def __call__(
        self,
        subject: str,
        event: Event | None,
        data: bytes | None,
        queue: str | None = None,
    ) -> None: ...


class Transport(Protocol):
    """What a bus needs from a transport (see the module docstring)."""

    #: Whether anything published here leaves this bus at all.
    remote: bool
    #: Whether :meth:`publish` needs the JSON bytes of events.
    wants_bytes: bool
    #: Whether queue groups span processes, with the transport picking the member.
    owns_queue_groups: bool

    def attach(self, receive: Receive) -> None:
        """Called once by the bus before any other method."""
        ...

    def publish(self, subject: str, event: Event | None, data: bytes | None) -> None:
        """Carries one message published on this bus to the other processes, in order."""
        ...

    def add_interest(self, pattern: str, queue: str | None) -> None:
        """A local subscription on ``pattern`` (in queue group ``queue``) was added."""
        ...

    def remove_interest(self, pattern: str, queue: str | None) -> None:
        """A local subscription added with the same arguments was removed."""
        ...

    def close(self) -> None:
        """Stops carrying messages; called once by the bus's ``close``."""
        ...

    async def aclose(self) -> None:
        """Like :meth:`close`, waiting for what is in flight to be sent."""
        ...
