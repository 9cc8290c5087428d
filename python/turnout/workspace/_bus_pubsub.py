"""coder's ``Pubsub`` over a turnout ``Bus``, so workspace events travel wherever the bus
does (in process, or across machines over NATS).

Channel names are used as literal subjects: ``workspace_updates:all`` and
``workspace_owner:<uuid>`` are single subject tokens (``:`` and ``-`` are ordinary token
characters). A channel name that is not a valid literal subject (empty, with whitespace, or
a ``*``/``>`` token that would subscribe to other channels too) is refused with
``InvalidSubjectError``. Messages are carried as the raw bytes given to ``publish``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Literal, Protocol

from turnout._core import validate_subject
from turnout.workspace._errors import PubsubClosedError
from turnout.workspace._pubsub import Cancel, Listener, ListenerWithErr

__all__ = ["BusPubsub", "RawMessage", "RawSubscribingBus"]


class RawMessage(Protocol):
    """What a raw bus handler receives."""

    @property
    def subject(self) -> str: ...

    @property
    def data(self) -> bytes: ...


class _Subscription(Protocol):
    def unsubscribe(self) -> None: ...


class RawSubscribingBus(Protocol):
    """The part of ``turnout.Bus`` the adapter uses: raw subscriptions and raw publishes."""

    def subscribe(
        self,
        pattern: str,
        handler: Callable[[RawMessage], object],
        queue: str | None = None,
        *,
        raw: Literal[True],
    ) -> _Subscription: ...

    def publish(self, subject: str, data: bytes) -> object: ...


class BusPubsub:
    """A ``Pubsub`` whose channels are subjects of ``bus``.

    Listeners are called the way the bus calls raw handlers (in order, per subscription);
    a bus never reports lost messages to a raw handler, so listeners "with err" always get
    ``None``. The bus is not owned: ``close()`` ends the subscriptions made through this
    adapter and refuses further use of it, and leaves the bus open.
    """

    def __init__(self, bus: RawSubscribingBus) -> None:
        self._bus = bus
        self._lock = threading.Lock()
        self._subscriptions: dict[int, _Subscription] = {}
        self._next_key = 0
        self._closed = False

    def subscribe(self, event: str, listener: Listener) -> Cancel:
        def handler(message: RawMessage) -> None:
            listener(message.data)

        return self._subscribe(event, handler)

    def subscribe_with_err(self, event: str, listener: ListenerWithErr) -> Cancel:
        def handler(message: RawMessage) -> None:
            listener(message.data, None)

        return self._subscribe(event, handler)

    def publish(self, event: str, message: bytes) -> None:
        if self._closed:
            raise PubsubClosedError("publish on a closed pubsub")
        # The bus itself refuses a subject that is not a valid literal.
        self._bus.publish(event, message if isinstance(message, bytes) else bytes(message))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            subscriptions, self._subscriptions = self._subscriptions, {}
        for subscription in subscriptions.values():
            subscription.unsubscribe()

    def _subscribe(self, event: str, handler: Callable[[RawMessage], None]) -> Cancel:
        validate_subject(event, literal=True)
        with self._lock:
            if self._closed:
                raise PubsubClosedError("subscribe on a closed pubsub")
            key = self._next_key
            self._next_key += 1
        subscription = self._bus.subscribe(event, handler, raw=True)
        with self._lock:
            if self._closed:  # closed while subscribing: do not leak the subscription
                subscription.unsubscribe()
                raise PubsubClosedError("subscribe on a closed pubsub")
            self._subscriptions[key] = subscription

        def cancel() -> None:
            with self._lock:
                owned = self._subscriptions.pop(key, None)
            if owned is not None:
                owned.unsubscribe()

        return cancel
