"""A mailbox's producer reads its size without the lock (the fast path of ``put_run``):
read while the consumer takes the next run, that size counts the run twice. Here that
interleaving is made to happen, deterministically, at the one point it can: between the
producer's read of what was taken and its read of the run being read. The slow path then
recomputes under the lock and must count exactly: no negative drop, no negative
overfill, no more items than were put."""

from __future__ import annotations

import operator
from collections.abc import Callable

from turnout.bus._mailbox import Mailbox, Overflow


class ConsumerTakesMidRead(Mailbox[int]):
    """A mailbox whose next unlocked size read is interrupted by the consumer taking the
    next run (``_next_run``), as another thread could, between its two reads."""

    def __init__(self, maxsize: int, overflow: Overflow) -> None:
        super().__init__(maxsize, overflow)
        self.between_reads: Callable[[], object] | None = None

    def _size(self) -> int:
        # Mailbox._size's two reads, in its order, with the consumer in between.
        queued = self._put - self._dropped_queued - self._taken
        step, self.between_reads = self.between_reads, None
        if step is not None:
            step()
        return max(queued + operator.length_hint(self._current), 0)


def racing_put(mailbox: ConsumerTakesMidRead, queued: list[int], put: list[int]) -> None:
    """Queues ``queued``, then puts ``put`` while the consumer takes ``queued``."""
    mailbox.put_run(queued)
    mailbox.between_reads = mailbox._next_run
    mailbox.put_run(put)
    assert mailbox.between_reads is None, "the interleaving did not happen"


def drained(mailbox: Mailbox[int]) -> list[int]:
    items = []
    while True:
        try:
            items.append(mailbox.get_nowait())
        except IndexError:
            return items


def test_the_interleaving_counts_the_run_being_taken_twice() -> None:
    # The premise: read this way, 6 queued items look like 12, and 1 more does not fit.
    mailbox = ConsumerTakesMidRead(10, "drop_newest")
    mailbox.put_run([0, 1, 2, 3, 4, 5])
    mailbox.between_reads = mailbox._next_run
    assert mailbox._size() == 12
    assert mailbox._size() == 6  # exact once nothing moves


def test_drop_newest_drops_nothing_when_the_run_fits_after_all() -> None:
    mailbox = ConsumerTakesMidRead(10, "drop_newest")
    racing_put(mailbox, [0, 1, 2, 3, 4, 5], [6])
    assert mailbox.dropped == 0  # was -3: room for 4 counted against a run of 1
    assert len(mailbox) == 7
    assert drained(mailbox) == [0, 1, 2, 3, 4, 5, 6]
    assert len(mailbox) == 0


def test_drop_newest_still_drops_what_does_not_fit() -> None:
    mailbox = ConsumerTakesMidRead(10, "drop_newest")
    racing_put(mailbox, [0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11])
    assert mailbox.dropped == 2
    assert drained(mailbox) == list(range(10))


def test_an_unblocked_block_mailbox_overfills_by_nothing_when_the_run_fits() -> None:
    # An unblocked "block" mailbox (a closing bus; or a producer on an event loop's
    # thread) buffers everything and counts what went beyond maxsize.
    mailbox = ConsumerTakesMidRead(10, "block")
    mailbox.unblock()
    racing_put(mailbox, [0, 1, 2, 3, 4, 5], [6])
    assert mailbox.overfilled == 0  # was -3
    assert drained(mailbox) == list(range(7))


def test_an_unblocked_block_mailbox_counts_its_real_overfill() -> None:
    mailbox = ConsumerTakesMidRead(10, "block")
    mailbox.unblock()
    racing_put(mailbox, [0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11])
    assert mailbox.overfilled == 2
    assert drained(mailbox) == list(range(12))
