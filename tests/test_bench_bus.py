"""``turnout bench``'s W5 (bus) and W6 (dispatcher) at the quick scale: every implementation
the catalog names measures the same cases, and each run checks its own deliveries."""

from __future__ import annotations

import pytest

from turnout._bench.catalog import WORKLOADS
from turnout._bench.workloads import QUICK

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("key", ["W5", "W6"])
def test_every_implementation_measures_the_same_cases(key: str) -> None:
    workload = WORKLOADS[key]
    cases: dict[str, set[str]] = {}
    steps: list[str] = []
    for implementation in workload.implementations:
        if not implementation.is_available():
            continue
        for row in workload.run(implementation, QUICK, steps.append):
            assert (row.workload, row.implementation) == (key, implementation.name)
            assert row.ops_per_s > 0 and row.ns_per_op > 0, row
            cases.setdefault(row.case, set()).add(row.implementation)
    assert cases and all(case in steps for case in cases)
    turnout_cases = {case for case, names in cases.items() if "rust" in names}
    assert turnout_cases == set(cases)  # no case without turnout's figure
    paired = {case for case, names in cases.items() if workload.baseline in names}
    assert paired == set(cases)  # and none without the baseline's
