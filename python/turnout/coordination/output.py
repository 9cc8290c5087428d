"""What either end of the protocol asks its I/O layer to do: the one output shape.

Both ends are driven the same way: the I/O layer hands them what happened (a frame read, a
connection opened or lost, the clock) and gets back an :class:`Output`: frames to ``send``
on the connection the input came from, in order; documents to ``publish`` on the bus (the
hub republishes what services say); and ``events`` for the application (a registration, a
settled request, a refusal). The I/O layer does exactly that and decides nothing itself:
no frame is decoded, no document assembled, outside the protocol.

The client end leaves ``send`` empty: its frames, answers included, leave through
``CoordinatorProtocol.take_outgoing``, the one queue that keeps them in order with what
other threads send meanwhile.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from turnout.protocol import ProtocolError

__all__ = ["MalformedFrame", "Output", "Publication"]

E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class Publication:
    """An event to emit on the bus: its ``event_type`` (the subject without ``events.``)
    and its ``data``."""

    event_type: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Output(Generic[E]):
    """Frames to send back, in order; events to publish on the bus, in order; and what
    the application should hear about."""

    send: list[bytes] = field(default_factory=list)
    publish: list[Publication] = field(default_factory=list)
    events: list[E] = field(default_factory=list)


@dataclass(frozen=True)
class MalformedFrame:
    """A frame that is not a valid message (or a payload of the wrong shape), on either
    end. ``connection`` is the hub's key for the sender (None on the client side)."""

    error: ProtocolError
    connection: Hashable | None = None
