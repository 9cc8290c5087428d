"""``check_index``: a Hypothesis state machine driving a subscription index and the
reference index with the same inserts, removes and matches, queue groups included.

The index under test is made by ``factory()`` and must offer what
:class:`turnout.SubjectIndex` offers:

- ``insert(pattern, value, queue=None)`` returning a handle;
- ``remove(handle)`` returning True, or False for a handle already removed;
- ``match(subject)`` returning an object with ``plain`` (the values of the matched entries
  in no queue group) and ``queues`` (queue group -> the values of its matched members),
  or a ``(plain, queues)`` pair.

Order within a result is free (compared as multisets), and choosing one member of a queue
group is the caller's job: an index reports every member. On the first disagreement the
steps are shrunk to the shortest sequence that still shows it, which the ``AssertionError``
and Hypothesis's report give.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    rule,
    run_state_machine_as_test,
)

from turnout import reference
from turnout.testing.strategies import DEFAULT_ALPHABET, matching_pairs, patterns, subjects

__all__ = ["check_index"]

Contents = tuple[list[Any], dict[str, list[Any]]]

QUEUE_GROUPS = (None, "q1", "q2")


def _contents(result: Any) -> Contents:
    """A match result as sorted plain values and sorted members per non-empty group."""
    if hasattr(result, "plain") and hasattr(result, "queues"):
        plain, queues = result.plain, result.queues
    else:
        plain, queues = result
    groups: Mapping[str, Iterable[Any]] = queues
    return sorted(plain), {g: sorted(m) for g, m in groups.items() if list(m)}


def check_index(
    factory: Callable[[], Any],
    *,
    max_examples: int = 200,
    steps: int = 50,
    alphabet: tuple[str, ...] = DEFAULT_ALPHABET,
) -> None:
    """Runs up to ``max_examples`` sequences of up to ``steps`` inserts, removes and
    matches on ``factory()`` and on the reference index; raises ``AssertionError`` at the
    first result that differs, after shrinking the sequence."""

    class IndexAgrees(RuleBasedStateMachine):
        handles = Bundle("handles")

        def __init__(self) -> None:
            super().__init__()
            self.tested = factory()
            self.reference = reference.SubjectIndex()
            self.values = itertools.count()
            self.removed: list[tuple[Any, Any]] = []

        @rule(
            target=handles,
            pattern=patterns(alphabet=alphabet, max_tokens=4),
            queue=st.sampled_from(QUEUE_GROUPS),
        )
        def insert(self, pattern: str, queue: str | None) -> tuple[Any, Any]:
            value = next(self.values)
            return (
                self.tested.insert(pattern, value, queue=queue),
                self.reference.insert(pattern, value, queue=queue),
            )

        @rule(handle=consumes(handles))
        def remove(self, handle: tuple[Any, Any]) -> None:
            tested, ref = handle
            assert self.reference.remove(ref) is True
            assert self.tested.remove(tested) is True, "remove(a live handle) must be True"
            self.removed.append(handle)

        @rule(data=st.data())
        def remove_again(self, data: st.DataObject) -> None:
            if self.removed:
                tested, _ = data.draw(st.sampled_from(self.removed))
                assert self.tested.remove(tested) is False, "removing twice must be False"

        @rule(subject=subjects(alphabet=alphabet, max_tokens=4))
        def match(self, subject: str) -> None:
            self._compare(subject)

        @rule(
            pair=matching_pairs(alphabet=alphabet, max_tokens=4),
            queue=st.sampled_from(QUEUE_GROUPS),
        )
        def insert_and_match(self, pair: tuple[str, str], queue: str | None) -> None:
            """An insert followed by a subject it matches, so results are rarely empty."""
            subject, pattern = pair
            value = next(self.values)
            self.tested.insert(pattern, value, queue=queue)
            self.reference.insert(pattern, value, queue=queue)
            self._compare(subject)

        def _compare(self, subject: str) -> None:
            want = _contents(self.reference.match(subject))
            got = _contents(self.tested.match(subject))
            assert got == want, f"match({subject!r}) gave {got}; NATS semantics give {want}"

    # Hypothesis types this function from 6.169 on; the floor (6.168) leaves it untyped.
    run_state_machine_as_test(  # type: ignore[no-untyped-call,unused-ignore]
        IndexAgrees,
        settings=settings(
            max_examples=max_examples,
            stateful_step_count=steps,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            report_multiple_bugs=False,
            # No explain phase: it re-runs the shrunk example many times to annotate it.
            phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
        ),
    )
