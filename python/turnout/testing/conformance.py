"""``turnout conformance``: checks a live NATS deployment's routing against turnout's
subject semantics, delivery by delivery.

A run makes random subscriptions (wildcards and queue groups included) on a few
connections, publishes random literal subjects from another, and compares what each
subscription received with what :class:`turnout.SubjectIndex` says it should: every
plain subscription whose pattern matches gets the message exactly once, every queue group
with a matching member gets it exactly once, on a matching member, and nobody else gets
it. Everything is drawn from one seed (the report names it), so a disagreement can be
replayed.

Where the run knows it has seen everything: after publishing, a sentinel goes to every
subscribing connection on a subject none of the patterns match; NATS keeps one
publisher's order towards one connection, so when a connection has its sentinel it has
every message that was coming to it. The same kind of probe, sent until it arrives, tells
that a connection's subscriptions have reached the server the publisher uses (interest
crosses a cluster's routes asynchronously).

All subjects live under ``turnout-conformance.<nonce>``, so a run neither sees other
traffic nor disturbs it. The run is bounded: a number of subjects and subscriptions, and
an overall timeout after which it stops and reports what it has.
"""

from __future__ import annotations

import asyncio
import math
import random
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import turnout

__all__ = [
    "MAX_SUBJECTS",
    "MAX_SUBSCRIPTIONS",
    "ConformanceReport",
    "Disagreement",
    "command",
    "run",
]

#: Upper bounds of a run (the command refuses more).
MAX_SUBJECTS = 1_000_000
MAX_SUBSCRIPTIONS = 10_000

_ALPHABET = ("a", "b", "c", "d")
_QUEUE_GROUPS = ("q1", "q2", "q3")
_CONNECTIONS = 3
_ROOT = "turnout-conformance"
# How many disagreements the report spells out (all of them are counted).
_SHOWN = 20
# Messages published between two waits for the outbound buffer to drain.
_BATCH = 2000


@dataclass(frozen=True, slots=True)
class Disagreement:
    """One delivery NATS and turnout disagree on."""

    subject: str
    what: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.what}"


@dataclass(slots=True)
class ConformanceReport:
    """What a run checked and what disagreed."""

    servers: list[str]
    seed: int
    subjects: int = 0
    subscriptions: int = 0
    queue_members: int = 0
    deliveries_expected: int = 0
    deliveries_seen: int = 0
    disagreements: int = 0
    examples: list[Disagreement] = field(default_factory=list)
    incomplete: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every delivery agreed and the run finished."""
        return self.disagreements == 0 and not self.incomplete

    def add(self, subject: str, what: str) -> None:
        self.disagreements += 1
        if len(self.examples) < _SHOWN:
            self.examples.append(Disagreement(subject, what))

    def render(self) -> str:
        """The report as the command prints it."""
        lines = [
            f"turnout conformance: {', '.join(self.servers)}",
            f"  seed:            {self.seed} (replay with --seed {self.seed})",
            f"  subscriptions:   {self.subscriptions} "
            f"({self.queue_members} in queue groups {', '.join(_QUEUE_GROUPS)})",
            f"  subjects:        {self.subjects} published",
            f"  deliveries:      {self.deliveries_seen} seen, {self.deliveries_expected} expected",
            f"  time:            {self.seconds:.1f} s",
        ]
        if self.incomplete:
            lines.append(f"  INCOMPLETE:      {self.incomplete}")
        if self.disagreements:
            lines.append(f"  DISAGREEMENTS:   {self.disagreements}")
            lines += [f"    {example}" for example in self.examples]
            if self.disagreements > len(self.examples):
                lines.append(f"    ... and {self.disagreements - len(self.examples)} more")
        else:
            lines.append("  disagreements:   none")
        lines.append("agrees" if self.ok else "DISAGREES")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class _Subscription:
    pattern: str
    queue: str | None
    connection: int


def _pattern(rng: random.Random) -> str:
    size = rng.randint(1, 4)
    tokens = ["*" if rng.random() < 0.25 else rng.choice(_ALPHABET) for _ in range(size)]
    if rng.random() < 0.3:
        tokens[-1] = ">"
    return ".".join(tokens)


def _subject(rng: random.Random) -> str:
    return ".".join(rng.choice(_ALPHABET) for _ in range(rng.randint(1, 5)))


def _plan(
    rng: random.Random, subscriptions: int, subjects: int
) -> tuple[list[_Subscription], list[str]]:
    subs = []
    for number in range(subscriptions):
        queue = rng.choice(_QUEUE_GROUPS) if rng.random() < 0.3 else None
        subs.append(_Subscription(_pattern(rng), queue, number % _CONNECTIONS))
    return subs, [_subject(rng) for _ in range(subjects)]


def run(
    servers: Sequence[str],
    *,
    subjects: int = 10_000,
    subscriptions: int = 60,
    seed: int | None = None,
    timeout: float = 60.0,
) -> ConformanceReport:
    """Runs one check against the NATS servers at ``servers`` (subscribers spread over
    them, the publisher on the first) and returns its report. Needs nats-py (the ``nats``
    extra). ``ValueError`` for counts out of bounds; connection failures propagate."""
    if not servers:
        raise ValueError("need at least one server URL")
    if not 1 <= subjects <= MAX_SUBJECTS:
        raise ValueError(f"subjects must be within 1..{MAX_SUBJECTS}, not {subjects}")
    if not 1 <= subscriptions <= MAX_SUBSCRIPTIONS:
        raise ValueError(
            f"subscriptions must be within 1..{MAX_SUBSCRIPTIONS}, not {subscriptions}"
        )
    if not timeout > 0:
        raise ValueError(f"timeout must be positive, not {timeout}")
    chosen = secrets.randbelow(2**32) if seed is None else seed
    report = ConformanceReport(list(servers), chosen)
    plan = _plan(random.Random(chosen), subscriptions, subjects)
    asyncio.run(_check(report, plan, timeout))
    return report


async def _check(
    report: ConformanceReport, plan: tuple[list[_Subscription], list[str]], timeout: float
) -> None:
    import nats  # the nats extra; only this command needs it

    started = time.monotonic()
    subs, subjects = plan
    nonce = secrets.token_hex(4)
    root = f"{_ROOT}.{nonce}"
    servers = report.servers
    deadline = started + timeout

    clients: list[Any] = []
    try:
        for number in range(_CONNECTIONS + 1):  # the last one publishes
            url = servers[number % len(servers)] if number < _CONNECTIONS else servers[0]
            clients.append(await _connect(nats, url, deadline))
        publisher = clients[-1]

        received: list[list[int]] = [[] for _ in subs]
        nats_subs = [
            await clients[sub.connection].subscribe(
                f"{root}.{sub.pattern}", queue=sub.queue or "", cb=_collector(received[number])
            )
            for number, sub in enumerate(subs)
        ]
        probes = _Probes(publisher, f"{_ROOT}-probe.{nonce}")
        for number in range(_CONNECTIONS):
            await clients[number].subscribe(f"{probes.root}.{number}", cb=probes.arrived)
        report.subscriptions = len(subs)
        report.queue_members = sum(1 for s in subs if s.queue is not None)

        if not await probes.until_all_arrive(deadline):
            report.incomplete = "subscriptions did not reach the publisher's server in time"
            return
        for number, subject in enumerate(subjects):
            await publisher.publish(f"{root}.{subject}", str(number).encode())
            if number % _BATCH == _BATCH - 1:
                await publisher.flush(timeout=_seconds_left(deadline))
        report.subjects = len(subjects)
        if not await probes.until_all_arrive(deadline):
            report.incomplete = "not every delivery arrived before the timeout"
            return
        # The sentinel came after every message, but each subscription's callback takes
        # its messages from its own queue: wait until those are empty.
        while any(sub.pending_msgs for sub in nats_subs):
            if time.monotonic() > deadline:
                report.incomplete = "deliveries were still being taken at the timeout"
                return
            await asyncio.sleep(0)
        _compare(report, subs, subjects, received)
    except (asyncio.TimeoutError, nats.errors.TimeoutError):
        report.incomplete = "timed out"
    finally:
        for client in clients:
            await client.close()
        report.seconds = time.monotonic() - started


async def _connect(nats: Any, url: str, deadline: float) -> Any:
    """One connection, tried twice at most: a run across a reconnect would lose messages
    and blame NATS. ``ConnectionError`` when the server cannot be reached in time."""
    errors: list[Exception] = []

    async def keep(error: Exception) -> None:  # else nats-py logs each with a traceback
        errors.append(error)

    connecting = nats.connect(
        servers=[url],
        allow_reconnect=False,
        max_reconnect_attempts=1,
        reconnect_time_wait=0.1,
        connect_timeout=5,
        error_cb=keep,
    )
    try:
        return await asyncio.wait_for(connecting, max(deadline - time.monotonic(), 1))
    except (OSError, asyncio.TimeoutError, nats.errors.Error) as error:
        cause = errors[-1] if errors else error
        raise ConnectionError(f"cannot connect to {url}: {cause}") from error


def _seconds_left(deadline: float) -> int:
    """What nats-py's flush takes as a timeout: whole seconds, at least one."""
    return max(math.ceil(deadline - time.monotonic()), 1)


def _collector(into: list[int]) -> Any:
    """A callback appending each message's number; it has no ``await``, so a message
    leaves its subscription's queue and is recorded in one step."""

    async def collect(message: Any) -> None:
        into.append(int(message.data))

    return collect


class _Probes:
    """Sentinels to every subscribing connection, on subjects no pattern matches. Each
    round has its own payload, so a late copy of an earlier round proves nothing."""

    def __init__(self, publisher: Any, root: str) -> None:
        self.publisher = publisher
        self.root = root
        self.round = 0
        self.seen = [asyncio.Event() for _ in range(_CONNECTIONS)]

    async def arrived(self, message: Any) -> None:
        number = int(message.subject.rsplit(".", 1)[1])
        if message.data == str(self.round).encode():
            self.seen[number].set()

    async def until_all_arrive(self, deadline: float) -> bool:
        """Sends this round's sentinels until each connection has one: then whatever
        the publisher sent before has reached them, and their subscriptions have reached
        the publisher's server. False when the deadline comes first."""
        self.round += 1
        for event in self.seen:
            event.clear()
        wait = 0.01
        while True:
            for number, event in enumerate(self.seen):
                if not event.is_set():
                    await self.publisher.publish(f"{self.root}.{number}", str(self.round).encode())
            await self.publisher.flush(timeout=_seconds_left(deadline))
            waiting = [asyncio.ensure_future(e.wait()) for e in self.seen if not e.is_set()]
            remaining = deadline - time.monotonic()
            if not waiting or remaining <= 0:
                for task in waiting:
                    task.cancel()
                return not waiting
            _, pending = await asyncio.wait(waiting, timeout=min(wait, remaining))
            for task in pending:
                task.cancel()
            wait = min(wait * 2, 0.5)  # a cluster forms routes in milliseconds to seconds


def _compare(
    report: ConformanceReport,
    subs: list[_Subscription],
    subjects: list[str],
    received: list[list[int]],
) -> None:
    index = turnout.SubjectIndex(cache_size=4096)
    for number, sub in enumerate(subs):
        index.insert(sub.pattern, number, queue=sub.queue)
    # got[message number] -> subscription numbers that received it
    got: list[list[int]] = [[] for _ in range(report.subjects)]
    for number, messages in enumerate(received):
        for message in messages:
            if 0 <= message < len(got):
                got[message].append(number)
            report.deliveries_seen += 1
    for number in range(report.subjects):
        subject = subjects[number]
        expected = index.match(subject)
        plain = set(expected.plain)
        report.deliveries_expected += len(plain) + len(expected.queues)
        seen = got[number]
        for sub_number in sorted(set(seen)):
            sub = subs[sub_number]
            times = seen.count(sub_number)
            if sub.queue is None:
                if sub_number not in plain:
                    report.add(subject, f"delivered to {sub.pattern!r}, which does not match")
                elif times > 1:
                    report.add(subject, f"delivered {times} times to {sub.pattern!r}")
            elif sub_number not in expected.queues.get(sub.queue, ()):
                report.add(
                    subject,
                    f"delivered to {sub.pattern!r} (queue {sub.queue}), which does not match",
                )
        for sub_number in sorted(plain - set(seen)):
            report.add(subject, f"not delivered to {subs[sub_number].pattern!r}")
        for group, members in expected.queues.items():
            times = sum(1 for s in seen if subs[s].queue == group)
            if times != 1:
                patterns = sorted({subs[m].pattern for m in members})
                report.add(
                    subject,
                    f"queue group {group} ({', '.join(map(repr, patterns))}) got it "
                    f"{times} times, not once",
                )


def command(
    servers: Sequence[str],
    *,
    subjects: int,
    subscriptions: int,
    seed: int | None,
    timeout: float,
    out: TextIO = sys.stdout,
) -> int:
    """``turnout conformance``: runs the check, prints the report to ``out``; the exit
    status is 0 when NATS agrees, 1 when it disagrees or the run did not finish, 2 when
    it could not run (no nats-py, bad arguments, no server)."""
    try:
        import nats  # noqa: F401 (the nats extra)
    except ImportError as error:
        print(
            f"turnout conformance: needs the nats extra: pip install 'turnout[nats]' ({error})",
            file=sys.stderr,
        )
        return 2
    try:
        report = run(
            servers, subjects=subjects, subscriptions=subscriptions, seed=seed, timeout=timeout
        )
    except ValueError as error:
        print(f"turnout conformance: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # ConnectionError included: a server that cannot be reached
        print(f"turnout conformance: {error}", file=sys.stderr)
        return 2
    out.write(report.render())
    out.flush()
    return 0 if report.ok else 1
