"""The NATS transport's interest rules (sharing, handover, overlap, queue groups), driven
the way the I/O layer drives them, without a server."""

from __future__ import annotations

from itertools import count

from turnout.transport.nats._interest import Handover, PlainInterest, QueueInterest


class Driver:
    """Plays the I/O layer: subscribes what the interest asks for, with increasing sids,
    and keeps the set of NATS subscriptions the server would have."""

    def __init__(self) -> None:
        self.interest = PlainInterest()
        self.sids = count(1)
        self.server: dict[int, str] = {}

    def add(self, *patterns: str) -> None:
        interest = self.interest
        for pattern in interest.add(list(patterns)):
            replaced = interest.replaceable(pattern)
            if replaced:
                interest.begin_handover(replaced)
            sid = next(self.sids)
            self.server[sid] = pattern
            interest.subscribed(pattern, sid)
            if replaced:
                for old in replaced:
                    del self.server[old]
                interest.end_handover()
        interest.serve()
        for sid in interest.idle():
            del self.server[sid]

    def remove(self, pattern: str) -> None:
        for sid in self.interest.remove(pattern):
            del self.server[sid]


def test_patterns_added_together_share_the_broadest_subscription() -> None:
    driver = Driver()
    driver.add("events.tool.*", "events.>", "events.*.installed", "events.>")
    assert driver.server == {1: "events.>"}
    assert len(driver.interest) == 3
    driver.add("events.tool.installed")  # covered: no new NATS subscription
    assert driver.server == {1: "events.>"}


def test_a_broader_pattern_takes_over_the_subscriptions_inside_it() -> None:
    driver = Driver()
    driver.add("events.tool.*")
    driver.add("events.*.installed")
    driver.add("events.>")
    assert driver.server == {3: "events.>"}
    assert driver.interest.handovers == 2
    # Every narrower pattern is now served by the broad one: removing the broad one's own
    # interest keeps it, removing all of them retires it.
    driver.remove("events.>")
    assert driver.server == {3: "events.>"}
    driver.remove("events.tool.*")
    driver.remove("events.*.installed")
    assert driver.server == {}
    assert len(driver.interest) == 0


def test_during_a_handover_each_message_passes_once() -> None:
    interest = PlainInterest()
    assert interest.add(["events.tool.*"]) == ["events.tool.*"]
    interest.subscribed("events.tool.*", 1)
    interest.serve()
    assert interest.add(["events.>"]) == ["events.>"]
    assert interest.replaceable("events.>") == {1}
    interest.begin_handover(frozenset({1}))
    assert interest.passes(1, "events.tool.a", b"x")  # before the new one exists
    interest.subscribed("events.>", 2)
    copies = [
        (2, "events.tool.a", b"x"),  # the new one's copy of the message above
        (2, "events.tool.b", b"y"),  # the new one first this time
        (1, "events.tool.b", b"y"),
        (2, "events.other", b"z"),  # only the new one covers it
    ]
    assert [interest.passes(*copy) for copy in copies] == [False, True, False, True]
    assert interest.duplicates == 2
    interest.end_handover()
    interest.serve()
    assert interest.subscriptions == 1
    assert interest.passes(2, "events.tool.a", b"x")


def test_a_copy_on_the_new_subscription_just_after_the_handover_ends_is_dropped() -> None:
    # The server queues a message's two copies one at a time; the PONG confirming the old
    # subscription's removal can come between them.
    interest = PlainInterest()
    interest.add(["events.tool.*"])
    interest.subscribed("events.tool.*", 1)
    interest.serve()
    interest.add(["events.>"])
    interest.begin_handover(interest.replaceable("events.>"))
    interest.subscribed("events.>", 2)
    assert interest.passes(1, "events.tool.a", b"x")  # the old copy, then the PONG
    interest.end_handover()
    interest.serve()
    assert not interest.passes_all()  # a late copy is still owed
    assert not interest.passes(2, "events.tool.a", b"x")  # ... and dropped
    assert interest.passes(2, "events.tool.a", b"y")  # a new message passes
    assert interest.duplicates == 1
    interest.forget_late_copies()
    assert interest.passes_all()
    assert interest.passes(2, "events.tool.a", b"x")  # the same bytes sent again


def test_every_copy_passes_only_with_one_subscription_and_no_handover() -> None:
    interest = PlainInterest()
    assert interest.passes_all()  # nothing subscribed yet
    interest.add(["events.tool.*"])
    interest.subscribed("events.tool.*", 1)
    interest.serve()
    assert interest.passes_all()
    interest.add(["events.>"])
    interest.begin_handover(interest.replaceable("events.>"))
    assert not interest.passes_all()  # copies on both are paired now
    interest.subscribed("events.>", 2)
    interest.end_handover()
    interest.serve()
    interest.idle()
    assert interest.subscriptions == 1 and interest.passes_all()
    interest.add(["other.*"])  # overlaps nothing, but is a second subscription
    interest.subscribed("other.*", 3)
    interest.serve()
    assert not interest.passes_all()


def test_overlapping_subscriptions_pass_the_oldest_copy_only() -> None:
    driver = Driver()
    driver.add("events.*.x")
    driver.add("events.tool.*")  # overlaps without covering: a subscription of its own
    assert driver.server == {1: "events.*.x", 2: "events.tool.*"}
    passes = driver.interest.passes
    assert passes(1, "events.tool.x", b"m")
    assert not passes(2, "events.tool.x", b"m")
    assert passes(2, "events.tool.y", b"n")  # only the newer one covers it
    assert driver.interest.duplicates == 1
    # The older one's interest goes, but it stays while the newer overlapping one does:
    # which copy counts for events.tool.x never changes.
    driver.remove("events.*.x")
    assert driver.server == {1: "events.*.x", 2: "events.tool.*"}
    assert not passes(2, "events.tool.x", b"m")
    driver.remove("events.tool.*")
    assert driver.server == {}


def test_a_subscription_overlapped_by_a_newer_one_is_not_taken_over() -> None:
    driver = Driver()
    driver.add("events.a.*")
    driver.add("events.*.x")
    # events.a.> covers events.a.* only, which events.*.x (newer, staying) overlaps: taking
    # it over would change which copy of events.a.x counts.
    assert driver.interest.replaceable("events.a.>") == frozenset()
    driver.add("events.a.>")
    assert driver.server == {1: "events.a.*", 2: "events.*.x", 3: "events.a.>"}
    assert driver.interest.handovers == 0


def test_a_failed_subscription_leaves_the_old_ones_serving() -> None:
    interest = PlainInterest()
    interest.add(["events.tool.*"])
    interest.subscribed("events.tool.*", 1)
    interest.serve()
    interest.add(["events.>"])
    interest.begin_handover(interest.replaceable("events.>"))
    interest.cancel_handover()  # subscribing failed
    interest.serve()
    assert interest.subscriptions == 1
    assert interest.remove("events.>") == []  # never served: nothing to retire
    assert interest.remove("events.tool.*") == [1]


def test_local_subscriptions_are_counted() -> None:
    driver = Driver()
    driver.add("events.>")
    driver.add("events.>")
    driver.remove("events.>")
    assert driver.server == {1: "events.>"}
    driver.remove("events.>")
    driver.remove("events.>")  # one too many: ignored
    assert driver.server == {}


def test_queue_interest_is_one_subscription_per_pattern_and_group() -> None:
    queues = QueueInterest()
    assert queues.add("events.>", "a")
    queues.subscribed("events.>", "a", 7)
    assert not queues.add("events.>", "a")
    assert queues.add("events.>", "b")
    queues.failed("events.>", "b")
    assert len(queues) == 1
    assert queues.group(7) == "a"
    assert queues.remove("events.>", "a") is None
    assert queues.remove("events.>", "a") == 7
    assert queues.group(7) is None
    assert queues.remove("events.>", "a") is None


def test_a_handover_passes_the_first_copy_of_each_message_on() -> None:
    old, new, other = 1, 2, 3
    handover = Handover(frozenset({old}), new)
    first = [
        handover.first_copy(sid, old, "events.x", data)
        for sid, data in [
            (old, b"a"),  # only the old subscription had it
            (old, b"b"),
            (new, b"b"),  # its second copy
            (new, b"c"),  # the new one first this time
            (other, b"c"),  # a third subscription's copy never counts
            (old, b"c"),
            (old, b"d"),  # two messages with the same bytes, copies interleaved
            (old, b"d"),
            (new, b"d"),
            (new, b"d"),
            (new, b"e"),  # only the new one had it
        ]
    ]
    assert first == [True, True, False, True, False, False, True, True, False, False, True]
