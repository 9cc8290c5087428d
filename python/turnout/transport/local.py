"""The embedded transport: nothing leaves the process.

A bus on a plain :class:`LocalTransport` (the default) is alone: publishing carries nothing
anywhere. Several buses in one process can be joined through a :class:`LocalNetwork`, which
behaves as NATS does between processes: every other bus interested in a subject receives a
message once, and each queue group receives it once across all the buses. Tests use it to
run several nodes in one process; it is also the model a NATS transport follows.
"""

from __future__ import annotations

import threading

from turnout._core import SubjectIndex
from turnout.events import Event
from turnout.transport import Receive

__all__ = ["LocalNetwork", "LocalTransport"]


class LocalNetwork:
    """Buses of one process, connected through their :class:`LocalTransport` s."""

    def __init__(self) -> None:
        # Values are the member transports: plain entries for plain interest, queue
        # entries for queue-group interest.
        self._interest = SubjectIndex()
        self._handles: dict[tuple[LocalTransport, str, str | None], list[int]] = {}
        self._turns: dict[str, int] = {}
        self._lock = threading.Lock()

    def _add_interest(self, member: LocalTransport, pattern: str, queue: str | None) -> None:
        handle = self._interest.insert(pattern, member, queue)
        with self._lock:
            self._handles.setdefault((member, pattern, queue), []).append(handle)

    def _remove_interest(self, member: LocalTransport, pattern: str, queue: str | None) -> None:
        with self._lock:
            handles = self._handles.get((member, pattern, queue))
            if not handles:
                return
            handle = handles.pop()
            if not handles:
                del self._handles[(member, pattern, queue)]
        self._interest.remove(handle)

    def _leave(self, member: LocalTransport) -> None:
        with self._lock:
            mine = [key for key in self._handles if key[0] is member]
            handles = [handle for key in mine for handle in self._handles.pop(key)]
        for handle in handles:
            self._interest.remove(handle)

    def _carry(
        self, sender: LocalTransport, subject: str, event: Event | None, data: bytes | None
    ) -> None:
        matched = self._interest.match(subject)
        reached: set[int] = set()
        for member in matched.plain:
            # The sender routed its own subscribers; a bus with several matching
            # patterns still gets the message once.
            if member is not sender and id(member) not in reached:
                reached.add(id(member))
                member._deliver(subject, event, data, None)
        if len(matched) == len(matched.plain):
            return
        for group, members in matched.queues.items():
            with self._lock:
                turn = self._turns.get(group, 0)
                self._turns[group] = turn + 1
            members[turn % len(members)]._deliver(subject, event, data, group)


class LocalTransport:
    """The embedded transport; pass a :class:`LocalNetwork` to join other buses."""

    wants_bytes = False  # in one process the event object itself is carried

    def __init__(self, network: LocalNetwork | None = None) -> None:
        self.network = network
        self.remote = network is not None
        self.owns_queue_groups = network is not None
        self._receive: Receive | None = None
        self._closed = False

    def attach(self, receive: Receive) -> None:
        self._receive = receive

    def publish(self, subject: str, event: Event | None, data: bytes | None) -> None:
        if self.network is not None and not self._closed:
            self.network._carry(self, subject, event, data)

    def add_interest(self, pattern: str, queue: str | None) -> None:
        if self.network is not None and not self._closed:
            self.network._add_interest(self, pattern, queue)

    def remove_interest(self, pattern: str, queue: str | None) -> None:
        if self.network is not None and not self._closed:
            self.network._remove_interest(self, pattern, queue)

    def _deliver(
        self, subject: str, event: Event | None, data: bytes | None, queue: str | None
    ) -> None:
        receive = self._receive
        if receive is not None and not self._closed:
            receive(subject, event, data, queue)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.network is not None:
            self.network._leave(self)

    async def aclose(self) -> None:
        self.close()
