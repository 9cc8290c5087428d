"""Which NATS subscriptions carry a bus's interest, and which copy of a message counts.

Pure logic: no connection, no event loop. The I/O layer asks what to subscribe and
unsubscribe, does it, and reports back the subscription ids NATS gave; it hands every
received message's ``(sid, subject, data)`` to :meth:`PlainInterest.passes` and
:meth:`QueueInterest.group` to learn whether to pass it on. This keeps the rules below
testable without a server.

Sharing. Local subscriptions are the bus's (its Rust index routes each message to its
handlers); NATS only sees interest. One NATS subscription serves every local pattern it
covers (``is_subset``): a hundred handlers on ``events.>``, ``events.tool.*`` and
``events.*.installed`` are one NATS subscription. Patterns added together are laid out
together: only those no other one covers get a NATS subscription.

Handover. A broader pattern added later takes over the NATS subscriptions inside it: the
new one is subscribed and confirmed, the old ones unsubscribed and their removal
confirmed; in between a message may come on both, and its first copy is passed on, the
other dropped, paired by subject and payload (:class:`Handover`; core NATS messages carry
no identity, but copies are byte-identical).

Overlap. Where NATS subscriptions overlap without one covering the other, each delivers
its own copy; only the copy on the oldest matching subscription is passed on, the others
are dropped before decoding and counted as ``duplicates``. A NATS subscription whose local
interest is gone stays while a newer overlapping one exists (it may be the one whose copy
counts), so which copy counts never changes for a subject someone listens to.

Queue interest is one NATS queue subscription per distinct (pattern, group),
reference-counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from turnout._core import SubjectIndex, is_subset, subjects_collide

__all__ = ["Handover", "PlainInterest", "QueueInterest"]

# Subjects whose counting copy is remembered (cleared when full).
_CANONICAL_CACHE_LIMIT = 4096


@dataclass(eq=False)
class _PlainSub:
    """A NATS subscription of plain interest and the local patterns it serves."""

    pattern: str
    sid: int
    index_handle: int
    served: set[str] = field(default_factory=set)


@dataclass(eq=False)
class Handover:
    """Old NATS subscriptions being replaced by a new, broader one. From before the new
    one exists until the server has dropped the old ones, a message on a subject an old
    one delivered may come on both: its first copy is passed on, the other dropped, paired
    by subject and payload (copies are identical; a count per payload keeps identical
    messages apart)."""

    old: frozenset[int]
    new: int = -1
    from_old: Counter[tuple[str, bytes]] = field(default_factory=Counter)
    from_new: Counter[tuple[str, bytes]] = field(default_factory=Counter)

    def first_copy(self, sid: int, canonical: int, subject: str, data: bytes) -> bool:
        """Whether this copy (on ``sid``, of a message ``canonical`` delivers) is the
        first of its message."""
        if sid == canonical:
            mine, other = self.from_old, self.from_new
        elif sid == self.new:
            mine, other = self.from_new, self.from_old
        else:
            return False  # a third overlapping subscription: never the counting copy
        key = (subject, data)
        if _take_one(other, key):
            return False
        mine[key] += 1
        return True


def _take_one(owed: Counter[tuple[str, bytes]], key: tuple[str, bytes]) -> bool:
    """Takes one of ``key`` from ``owed`` (a copy already counted on the other side);
    False when none is owed."""
    waiting = owed.get(key, 0)
    if not waiting:
        return False
    if waiting == 1:
        del owed[key]
    else:
        owed[key] = waiting - 1
    return True


class PlainInterest:
    """Plain (not queue-group) interest: local patterns, reference-counted, and the NATS
    subscriptions serving them (see the module docstring).

    Adding patterns is a conversation with the I/O layer::

        for pattern in interest.add(patterns):      # the NATS subscriptions to make
            replaced = interest.replaceable(pattern)  # what the new one takes over
            interest.begin_handover(replaced)         # when not empty
            sid = <subscribe pattern>
            interest.subscribed(pattern, sid)
            if replaced: <confirm; unsubscribe replaced; confirm>; interest.end_handover()
        interest.serve()
        for sid in interest.idle(): <unsubscribe sid>
    """

    def __init__(self) -> None:
        self._refs: dict[str, int] = {}  # local pattern -> local subscriptions
        self._serving: dict[str, _PlainSub] = {}  # local pattern -> the NATS sub serving it
        self._subs: dict[int, _PlainSub] = {}  # sid -> NATS subscription
        self._index = SubjectIndex(1024)  # patterns of self._subs, values sids
        # subject -> the sid whose copy counts, while NATS subscriptions overlap
        self._canonical: dict[str, int] = {}
        self._handover: Handover | None = None
        # After a handover: the new subscription's copies still owed for old copies that
        # were passed on (see end_handover), until forget_late_copies.
        self._late: tuple[int, Counter[tuple[str, bytes]]] | None = None
        self._fresh: list[str] = []
        self.duplicates = 0
        self.handovers = 0

    def __len__(self) -> int:
        """Distinct local patterns."""
        return len(self._refs)

    @property
    def subscriptions(self) -> int:
        """NATS subscriptions of plain interest."""
        return len(self._subs)

    def owns(self, sid: int) -> bool:
        return sid in self._subs

    # -- adding ---------------------------------------------------------------------

    def add(self, patterns: list[str]) -> list[str]:
        """Counts one local subscription per pattern; returns the patterns that need a NATS
        subscription of their own: new ones no existing subscription covers and no other
        new one covers (equal patterns are counted once)."""
        fresh: list[str] = []
        for pattern in patterns:
            refs = self._refs.get(pattern, 0)
            self._refs[pattern] = refs + 1
            if not refs:
                fresh.append(pattern)
        self._fresh = fresh
        subs = self._subs.values()
        return [
            p
            for p in fresh
            if not any(is_subset(p, s.pattern) for s in subs)
            and not any(q != p and is_subset(p, q) for q in fresh)
        ]

    def replaceable(self, pattern: str) -> frozenset[int]:
        """The NATS subscriptions a new one on ``pattern`` can take over: inside it, and
        overlapped by no newer subscription that stays (whose copies count otherwise)."""
        chosen = {sub.sid: sub for sub in self._subs.values() if is_subset(sub.pattern, pattern)}
        changed = True
        while changed:
            changed = False
            for sid, sub in list(chosen.items()):
                staying = (s for s in self._subs.values() if s.sid > sid and s.sid not in chosen)
                if any(subjects_collide(sub.pattern, s.pattern) for s in staying):
                    del chosen[sid]
                    changed = True
        return frozenset(chosen)

    def begin_handover(self, replaced: frozenset[int]) -> None:
        """Before subscribing the one that takes ``replaced`` over: their copies from now
        on are paired with the new one's."""
        self._handover = Handover(replaced)

    def subscribed(self, pattern: str, sid: int) -> None:
        """NATS subscription ``sid`` on ``pattern`` exists; during a handover it serves
        what the replaced ones served from now on."""
        serving = _PlainSub(pattern, sid, self._index.insert(pattern, sid))
        self._subs[sid] = serving
        self._canonical.clear()
        handover = self._handover
        if handover is None:
            return
        handover.new = sid
        for old_sid in handover.old:
            old = self._subs[old_sid]
            for served in old.served:
                self._serving[served] = serving
            serving.served |= old.served
            old.served.clear()

    def cancel_handover(self) -> None:
        """The new subscription could not be made: the old ones stay as they are."""
        self._handover = None

    def end_handover(self) -> None:
        """The replaced subscriptions are gone from the server (their removal confirmed, or
        the connection lost): no copy on them can follow. A copy on the new one still can:
        the server queues a message's copies one subscription at a time, and the PONG that
        confirmed the removal may fall between them. Such late copies of messages already
        passed on are dropped until :meth:`forget_late_copies`."""
        handover, self._handover = self._handover, None
        if handover is None:
            return
        for sid in handover.old:
            self._drop(sid)
        self.handovers += len(handover.old)
        if handover.from_old and handover.new in self._subs:
            self._late = (handover.new, handover.from_old)

    def forget_late_copies(self) -> None:
        """Every copy the server queued before the handover ended has arrived (a later
        PONG): the new subscription's copies all pass again."""
        self._late = None

    def serve(self) -> None:
        """Assigns the patterns of the last :meth:`add` to the NATS subscriptions covering
        them (one whose subscription failed stays unserved, as logged by the I/O layer)."""
        for pattern in self._fresh:
            for sub in self._subs.values():
                if is_subset(pattern, sub.pattern):
                    sub.served.add(pattern)
                    self._serving[pattern] = sub
                    break
        self._fresh = []

    # -- removing -------------------------------------------------------------------

    def remove(self, pattern: str) -> list[int]:
        """Counts one local subscription on ``pattern`` gone; returns the NATS
        subscriptions to unsubscribe."""
        refs = self._refs.get(pattern, 0)
        if refs > 1:
            self._refs[pattern] = refs - 1
            return []
        if not refs:
            return []
        del self._refs[pattern]
        serving = self._serving.pop(pattern, None)
        if serving is not None:
            serving.served.discard(pattern)
        return self.idle()

    def idle(self) -> list[int]:
        """Forgets and returns the NATS subscriptions that serve nothing, newest first, as
        long as no newer subscription overlaps them (see the module docstring)."""
        gone: list[int] = []
        for sub in sorted(self._subs.values(), key=lambda s: s.sid, reverse=True):
            if sub.served:
                continue
            newer = (s for s in self._subs.values() if s.sid > sub.sid)
            if any(subjects_collide(sub.pattern, s.pattern) for s in newer):
                continue
            self._drop(sub.sid)
            gone.append(sub.sid)
        return gone

    def _drop(self, sid: int) -> None:
        sub = self._subs.pop(sid)
        self._index.remove(sub.index_handle)
        self._canonical.clear()

    # -- receiving ------------------------------------------------------------------

    def passes_all(self) -> bool:
        """Whether every copy passes for now (one NATS subscription, no handover), so a
        run of messages needs no :meth:`passes` per message. Holds until the I/O layer
        next changes the interest."""
        return len(self._subs) <= 1 and self._handover is None and self._late is None

    def passes(self, sid: int, subject: str, data: bytes) -> bool:
        """Whether this copy of a message (on one of this interest's subscriptions) is the
        one passed on; the others are counted as ``duplicates``."""
        late = self._late
        if late is not None and late[0] == sid and _take_one(late[1], (subject, data)):
            self.duplicates += 1
            return False
        handover = self._handover
        if len(self._subs) <= 1 and handover is None:
            return True
        canonical = self._canonical.get(subject)
        if canonical is None:
            canonical = min(self._index.match(subject).plain, default=sid)
            if len(self._canonical) >= _CANONICAL_CACHE_LIMIT:
                self._canonical.clear()
            self._canonical[subject] = canonical
        if handover is not None and canonical in handover.old:
            if handover.first_copy(sid, canonical, subject, data):
                return True
        elif canonical == sid:
            return True
        self.duplicates += 1
        return False


class QueueInterest:
    """Queue-group interest: one NATS queue subscription per (pattern, group), counted."""

    def __init__(self) -> None:
        self._refs: dict[tuple[str, str], int] = {}
        self._sids: dict[tuple[str, str], int] = {}
        self._groups: dict[int, str] = {}  # sid -> queue group

    def __len__(self) -> int:
        return len(self._refs)

    def add(self, pattern: str, group: str) -> bool:
        """Counts one local member; True when it needs a NATS queue subscription."""
        key = (pattern, group)
        refs = self._refs.get(key, 0)
        self._refs[key] = refs + 1
        return not refs

    def subscribed(self, pattern: str, group: str, sid: int) -> None:
        self._sids[(pattern, group)] = sid
        self._groups[sid] = group

    def failed(self, pattern: str, group: str) -> None:
        """Its NATS subscription could not be made: the member is not counted."""
        self.remove(pattern, group)

    def remove(self, pattern: str, group: str) -> int | None:
        """Counts one local member gone; returns the NATS subscription to unsubscribe
        when it was the last."""
        key = (pattern, group)
        refs = self._refs.get(key, 0)
        if refs > 1:
            self._refs[key] = refs - 1
            return None
        if not refs:
            return None
        del self._refs[key]
        sid = self._sids.pop(key, None)
        if sid is not None:
            del self._groups[sid]
        return sid

    def group(self, sid: int) -> str | None:
        """The queue group of NATS subscription ``sid``, None when it is not one of these."""
        return self._groups.get(sid)
