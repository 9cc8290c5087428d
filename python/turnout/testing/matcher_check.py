"""``check_matcher``: property tests of a subject-matching function against NATS semantics.

The reference is :func:`turnout.reference.subject_matches`, the pure-Python statement of
the rules (``*`` is exactly one token, a final ``>`` one token or more, everything else
literal). The function is tried on pairs known to match, pairs known not to, and free
draws of subjects (``*`` and ``>`` tokens included, taken literally) and patterns; Hypothesis
shrinks the first disagreement to the smallest it can, and that pair is what the
``AssertionError`` names. Only valid subjects and patterns are given: how a matcher treats
malformed input is its own business.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from turnout import reference
from turnout.testing.strategies import (
    DEFAULT_ALPHABET,
    matching_pairs,
    non_matching_pairs,
    patterns,
    subjects,
)

__all__ = ["check_matcher"]


def check_matcher(
    matches: Callable[[str, str], object],
    *,
    max_examples: int = 2000,
    alphabet: Sequence[str] = DEFAULT_ALPHABET,
    max_tokens: int = 5,
    seed: int | None = None,
) -> None:
    """Checks ``matches(subject, pattern) -> bool`` against NATS subject matching on up to
    ``max_examples`` pairs of up to ``max_tokens`` tokens of ``alphabet``; raises
    ``AssertionError`` naming the smallest disagreement found. ``seed`` makes the run
    repeatable."""
    pairs = st.one_of(
        matching_pairs(alphabet=alphabet, max_tokens=max_tokens),
        non_matching_pairs(alphabet=alphabet, max_tokens=max_tokens),
        st.tuples(
            subjects(alphabet=alphabet, max_tokens=max_tokens),
            patterns(alphabet=alphabet, max_tokens=max_tokens),
        ),
    )

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        report_multiple_bugs=False,
        # No explain phase: it re-runs the shrunk example many times to annotate it.
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    )
    @given(pairs)
    def agrees(pair: tuple[str, str]) -> None:
        subject, pattern = pair
        want = reference.subject_matches(subject, pattern)
        got = matches(subject, pattern)
        assert bool(got) == want, (
            f"matches({subject!r}, {pattern!r}) returned {got!r}; NATS says {want}"
        )

    if seed is not None:
        agrees = hypothesis_seed(seed)(agrees)
    agrees()
