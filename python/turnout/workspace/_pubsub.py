"""coder's pubsub: named channels carrying opaque byte messages, and its in-process form.

A listener is called with each message published on the channel it subscribed to; a
listener "with err" is also told when the pubsub could not deliver (``message`` is then
empty and ``err`` says why). ``subscribe`` returns the function that cancels the
subscription.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from turnout.workspace._errors import PubsubClosedError

__all__ = ["Cancel", "Listener", "ListenerWithErr", "MemoryPubsub", "Pubsub"]

Listener = Callable[[bytes], None]
"""Called with each message of a channel."""
ListenerWithErr = Callable[[bytes, Exception | None], None]
"""Called with each message and None, or with ``b""`` and the delivery error."""
Cancel = Callable[[], None]
"""Ends a subscription; idempotent."""

_log = logging.getLogger("turnout.workspace")


class Pubsub(Protocol):
    """What coder's ``pubsub.Pubsub`` offers."""

    def subscribe(self, event: str, listener: Listener) -> Cancel: ...

    def subscribe_with_err(self, event: str, listener: ListenerWithErr) -> Cancel: ...

    def publish(self, event: str, message: bytes) -> None: ...

    def close(self) -> None: ...


@dataclass(eq=False)
class _Subscription:
    event: str
    deliver: ListenerWithErr
    active: bool = field(default=True)


class MemoryPubsub:
    """An in-process ``Pubsub``: ``publish`` calls the channel's listeners in the
    publishing thread, in the order they subscribed, before it returns.

    Thread-safe. No lock is held while a listener runs, so a listener may publish, subscribe
    or cancel (itself or others) from inside its callback without deadlocking (coder's
    in-memory pubsub deadlocks there). A listener subscribed during a publish first hears
    the next message; one cancelled during a publish hears nothing more, not even the rest
    of that publish. A listener that raises is logged and counted (``listener_errors``) and
    stops neither the other listeners nor the publisher.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._channels: dict[str, dict[int, _Subscription]] = {}
        self._ids = itertools.count()
        self._closed = False
        self._listener_errors = 0

    @property
    def listener_errors(self) -> int:
        """How many times a listener raised."""
        return self._listener_errors

    def subscribe(self, event: str, listener: Listener) -> Cancel:
        """Calls ``listener(message)`` for each message published on ``event``."""

        def deliver(message: bytes, err: Exception | None) -> None:
            # Plain listeners are not told about delivery errors, as in coder.
            if err is None:
                listener(message)

        return self._add(event, deliver)

    def subscribe_with_err(self, event: str, listener: ListenerWithErr) -> Cancel:
        """Calls ``listener(message, None)`` for each message published on ``event``. The
        in-memory pubsub never loses a message, so it never passes an error."""
        return self._add(event, listener)

    def publish(self, event: str, message: bytes) -> None:
        """Delivers ``message`` to every current listener of ``event``."""
        if not isinstance(message, bytes):
            message = bytes(message)
        with self._lock:
            if self._closed:
                raise PubsubClosedError("publish on a closed pubsub")
            subscriptions = list(self._channels.get(event, {}).values())
        for subscription in subscriptions:
            if not subscription.active:  # cancelled by an earlier listener of this publish
                continue
            try:
                subscription.deliver(message, None)
            except Exception:
                with self._lock:
                    self._listener_errors += 1
                _log.exception("pubsub listener on %r raised", event)

    def close(self) -> None:
        """Ends every subscription; later publishes and subscribes raise
        ``PubsubClosedError``. Idempotent."""
        with self._lock:
            self._closed = True
            channels, self._channels = self._channels, {}
        for subscriptions in channels.values():
            for subscription in subscriptions.values():
                subscription.active = False

    def _add(self, event: str, deliver: ListenerWithErr) -> Cancel:
        if not isinstance(event, str):
            raise TypeError(f"event must be a str, not {type(event).__name__}")
        subscription = _Subscription(event, deliver)
        key = next(self._ids)
        with self._lock:
            if self._closed:
                raise PubsubClosedError("subscribe on a closed pubsub")
            self._channels.setdefault(event, {})[key] = subscription

        def cancel() -> None:
            with self._lock:
                subscription.active = False
                subscriptions = self._channels.get(event)
                if subscriptions is not None:
                    subscriptions.pop(key, None)
                    if not subscriptions:
                        del self._channels[event]

        return cancel
