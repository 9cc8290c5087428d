"""The W4 scale workload's subjects, apart from the workloads module: the memory child
process (``memory.py``) builds an index of them without importing the measurements."""

from __future__ import annotations


def w4_patterns(count: int) -> list[str]:
    """``count`` distinct 4-token literal subjects ``w4.a<x>.b<y>.e<i>``: 100 first-level
    and 100 second-level branches at 1,000,000 entries, 100 leaves under each."""
    return [f"w4.a{(i // 10_000) % 100}.b{(i // 100) % 100}.e{i}" for i in range(count)]
