"""``turnout bench``'s W12 (``history_since``) at the quick scale: both implementations
measure both cases, each in its own process checking its answers against the events'
numbers."""

from __future__ import annotations

import pytest

from turnout import Bus
from turnout._bench import w12_history
from turnout._bench.catalog import WORKLOADS
from turnout._bench.workloads import QUICK, WorkloadError

pytestmark = pytest.mark.timeout(120)


def test_both_implementations_measure_both_cases() -> None:
    workload = WORKLOADS["W12"]
    steps: list[str] = []
    rows = [row for i in workload.implementations for row in workload.run(i, QUICK, steps.append)]
    measured = {(row.implementation, row.case) for row in rows}
    assert measured == {(i, c) for i in w12_history.IMPLEMENTATIONS for c in w12_history.CASES}
    assert all(row.ops_per_s > 0 and row.extra["events"] == 10_000 for row in rows)
    assert steps == ["round 1: rust", "round 1: reference"]


def test_a_wrong_answer_posts_no_time(monkeypatch: pytest.MonkeyPatch) -> None:
    small = w12_history.W12Scale("small", 1_000, {c: 1 for c in w12_history.CASES}, rounds=1)
    assert set(w12_history.query_run("rust", small)) == set(w12_history.CASES)
    monkeypatch.setattr(Bus, "history_since", lambda *args, **kwargs: [])
    with pytest.raises(WorkloadError, match="W12 oldest first, limit 50 \\(rust\\)"):
        w12_history.query_run("rust", small)
