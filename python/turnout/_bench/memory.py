"""Resident memory an index costs per entry, measured in a fresh interpreter.

Measuring in the benchmark's own process undercounts: memory freed by earlier workloads sits
in the allocators' free lists and the new index reuses it without the RSS growing. A child
interpreter starts clean, builds the W4 index with one shared value object (so values cost
nothing and only the index's own structures are counted) and reports its RSS growth.

Run as ``python -m turnout._bench.memory MODULE ENTRIES``; prints one JSON object.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import turnout
from turnout._bench.implementations import Implementation
from turnout._bench.w4_subjects import w4_patterns

_STATM = Path("/proc/self/statm")
_CHILD_TIMEOUT_S = 600


def rss_bytes() -> int | None:
    """This process's resident set size, or None where ``/proc`` is not available."""
    try:
        resident_pages = int(_STATM.read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def index_bytes_per_entry(implementation: Implementation, entries: int) -> float | None:
    """RSS growth per entry of a W4 index of ``entries`` entries, built in a child process.

    None when the platform cannot tell (no ``/proc``) or the child fails.
    """
    if rss_bytes() is None:
        return None
    # The child must import this very turnout, even when it was found through sys.path
    # tweaks (pytest's rootdir, an uninstalled checkout) rather than site-packages.
    package_root = str(Path(turnout.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    completed = subprocess.run(
        [sys.executable, "-m", __name__, implementation.module, str(entries)],
        capture_output=True,
        text=True,
        env=env,
        timeout=_CHILD_TIMEOUT_S,
        check=False,
    )
    if completed.returncode != 0:
        return None
    report = json.loads(completed.stdout)
    delta = report["rss_delta_bytes"]
    return None if delta is None else float(delta) / entries


def _measure_in_this_process(module: str, entries: int) -> dict[str, int | None]:
    make_index = Implementation(name="child", label="child", module=module).factory()
    patterns = w4_patterns(entries)
    shared_value = object()
    index = make_index(0)
    gc.collect()
    before = rss_bytes()
    for pattern in patterns:
        index.insert(pattern, shared_value)
    gc.collect()
    after = rss_bytes()
    delta = None if before is None or after is None else after - before
    return {"entries": len(index), "rss_delta_bytes": delta}


def main(argv: list[str]) -> int:
    module, entries = argv
    print(json.dumps(_measure_in_this_process(module, int(entries))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
