"""JetStream acknowledgements of a transport's persisted publishes.

Each persisted publish gets a number; it is sent with a reply subject on this transport's
acknowledgement inbox (``<inbox>.<number>``) and a ``Nats-Msg-Id`` header made from the
inbox and the number, so JetStream stores a message sent again only once. What is not
acknowledged is sent again after a reconnect (it may have died with the old connection),
after ``ack_wait`` seconds of connected time, or shortly after a "no responders" answer
(a cluster electing the stream's leader), for up to five ``ack_wait`` periods; then it
counts as ``ack_timeouts``. JetStream's refusals count as ``ack_errors``. Live subscribers
that got the first copy get the second too (at least once, around a failure).

Everything here runs on the I/O loop; sending goes through the ``send`` coroutine the
transport hands over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["Acks", "Unacked"]

logger = logging.getLogger("turnout.nats")

# A JetStream publish is sent again after a reconnect, a lost ack or a "no responders"
# answer, until this many ``ack_wait`` periods (of connected time) have passed; then it
# counts as not acknowledged.
_ATTEMPTS = 5
# JetStream's answer to a copy of a message it is still storing.
_DUPLICATE_IN_PROCESS = 10158
# How soon a publish answered "no responders" (the stream has no leader) is sent again.
_RETRY_SECONDS = 0.25


@dataclass(eq=False)
class Unacked:
    """A JetStream publish waiting for its acknowledgement."""

    subject: str
    data: bytes
    due: float
    give_up_at: float


Send = Callable[[str, bytes, str, str], Coroutine[Any, Any, None]]


class _Waiter:
    """A flush waiting for acknowledgements up to a publish number."""

    __slots__ = ("future", "upto")

    def __init__(self, upto: int, future: asyncio.Future[None]) -> None:
        self.upto = upto
        self.future = future


class Acks:
    """The publishes awaiting acknowledgement, their resending and the flushes waiting
    for them (see the module docstring)."""

    def __init__(self, inbox: str, ack_wait: float, send: Send) -> None:
        self.inbox = inbox
        self.ack_wait = ack_wait
        self._give_up_after = ack_wait * _ATTEMPTS
        self._send = send
        self._msg_id_prefix = inbox.rsplit(".", 1)[-1] + "-"
        self._next = 0
        self._awaiting: dict[int, Unacked] = {}  # publish number -> its message
        self._waiters: list[_Waiter] = []
        self.acked = 0
        self.errors = 0
        self.timeouts = 0

    def __len__(self) -> int:
        """Publishes awaiting acknowledgement."""
        return len(self._awaiting)

    async def publish(self, subject: str, data: bytes) -> None:
        """Sends a persisted publish and awaits its acknowledgement."""
        number = self._next
        self._next = number + 1
        now = time.monotonic()
        unacked = Unacked(subject, data, now + self.ack_wait, now + self._give_up_after)
        self._awaiting[number] = unacked
        await self._publish(number, unacked)

    async def _publish(self, number: int, unacked: Unacked) -> None:
        await self._send(
            unacked.subject,
            unacked.data,
            f"{self.inbox}.{number}",
            f"{self._msg_id_prefix}{number}",
        )

    def on_ack(self, subject: str, data: bytes) -> None:
        """A message on the acknowledgement inbox."""
        try:
            number = int(subject.rsplit(".", 1)[1])
        except (IndexError, ValueError):
            return
        unacked = self._awaiting.get(number)
        if unacked is None:
            return  # a second ack of a message sent again, or one given up on
        try:
            reply = orjson.loads(data) if data else None
        except orjson.JSONDecodeError:
            reply = None
        error = reply.get("error") if isinstance(reply, dict) else None
        if isinstance(reply, dict) and error is None and "seq" in reply:
            del self._awaiting[number]
            self.acked += 1
        elif isinstance(error, dict) and error.get("err_code") == _DUPLICATE_IN_PROCESS:
            return  # a copy sent again while the first is being stored: its ack follows
        elif error is not None:
            del self._awaiting[number]  # refused for good (no such stream, too large...)
            self.errors += 1
            logger.error("JetStream refused a publish on %s: %r", unacked.subject, error)
        else:
            # No JSON: a "no responders" status while the stream has no leader (a
            # cluster electing one). Sent again by the sweeper shortly.
            unacked.due = time.monotonic() + _RETRY_SECONDS
            return
        self._wake()

    async def resend_all(self) -> None:
        """After a reconnect: what was not acknowledged may have died with the old
        connection, so it is sent again (JetStream drops the copies it already has)."""
        now = time.monotonic()
        for number, unacked in sorted(self._awaiting.items()):
            unacked.due = now + self.ack_wait
            unacked.give_up_at = now + self._give_up_after
            try:
                await self._publish(number, unacked)
            except Exception as exc:
                logger.warning("sending an unacknowledged publish again failed: %r", exc)
                return  # disconnected again: the next reconnect tries again

    async def sweep(self, connected: Callable[[], bool]) -> None:
        """Runs until cancelled: sends again what is due, gives up on what is too old."""
        while True:
            await asyncio.sleep(min(_RETRY_SECONDS, self.ack_wait / 4))
            if not self._awaiting or not connected():
                continue
            now = time.monotonic()
            late = [(n, u) for n, u in self._awaiting.items() if u.due <= now]
            given_up = 0
            for number, unacked in late:
                if unacked.give_up_at <= now:
                    del self._awaiting[number]
                    given_up += 1
                    continue
                unacked.due = now + self.ack_wait
                try:
                    await self._publish(number, unacked)
                except Exception as exc:
                    logger.warning("sending an unacknowledged publish again failed: %r", exc)
                    break
            if given_up:
                self.timeouts += given_up
                logger.error(
                    "%d JetStream publishes were not acknowledged within %.1f s",
                    given_up,
                    self._give_up_after,
                )
                self._wake()

    async def settled(self) -> None:
        """Waits until every publish made before is acknowledged, refused or given up on."""
        upto = self._next
        if any(number < upto for number in self._awaiting):
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(_Waiter(upto, future))
            await future

    def _wake(self) -> None:
        if not self._waiters:
            return
        oldest = min(self._awaiting, default=self._next)
        still = []
        for waiter in self._waiters:
            if waiter.upto <= oldest:
                if not waiter.future.done():
                    waiter.future.set_result(None)
            else:
                still.append(waiter)
        self._waiters = still
