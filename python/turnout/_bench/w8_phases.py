"""W8, phases (SPEC section 9): 1,000,000 phase transitions over 100,000 workflows.

Untimed, every workflow is registered and brought to ``execution``. Timed, the workflows go
round the pause loop (execution → pausing → paused → resuming → execution → ...) one round
after another, one transition per workflow per round, 10 rounds. Implementations:

- ``rust single``: ``PhaseManager.transition_to``, one call per transition, the calls driven
  by ``map`` in C so the loop itself costs next to nothing.
- ``rust batch``: ``PhaseManager.transition_many``, one call per round (the GIL released
  for the table work).
- ``python``: the baseline one writes without turnout, a dict of per-workflow state
  objects checked against ``VALID_TRANSITIONS``, stamped with ``time.time_ns()`` as the
  Rust table stamps its changes.
- ``transitions``: the ``transitions`` library (a benches-only dependency), one model per
  workflow on one machine. Building its machine costs about 0.2 ms per workflow, so it runs
  on 10,000 workflows (1,000 in quick mode); its rate is comparable, its size is not.

Every run checks where the workflows ended, so a broken implementation cannot post a time.
``TURNOUT_BENCH_QUICK=1`` selects the small scale. ``python -m turnout._bench.w8_phases``
prints the figures with the targets (single ≤ 0.5 µs, batch ≥ 5,000,000 transitions/s).
"""

from __future__ import annotations

import functools
import importlib.util
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from turnout._bench.rates import Figure, Prepared, best_of, quick_mode, render
from turnout.phases import VALID_TRANSITIONS, Phase, PhaseManager

__all__ = [
    "FULL",
    "IMPLEMENTATIONS",
    "QUICK",
    "W8Scale",
    "main",
    "prepare_python",
    "prepare_rust_batch",
    "prepare_rust_single",
    "prepare_transitions",
    "run_all",
    "transitions_available",
]

CASE = "W8 transitions"
SINGLE_TARGET_NS = 500.0
BATCH_TARGET_PER_S = 5_000_000.0

_TO_EXECUTION = (Phase.PRE_FLIGHT, Phase.PLANNING, Phase.EXECUTION)
_LOOP = (Phase.PAUSING, Phase.PAUSED, Phase.RESUMING, Phase.EXECUTION)


@dataclass(frozen=True)
class W8Scale:
    name: str
    workflows: int
    rounds: int
    transitions_library_workflows: int

    @property
    def transitions(self) -> int:
        return self.workflows * self.rounds


QUICK = W8Scale("quick", workflows=10_000, rounds=2, transitions_library_workflows=1_000)
FULL = W8Scale("full", workflows=100_000, rounds=10, transitions_library_workflows=10_000)


def _ids(count: int) -> list[str]:
    return [f"wf-{n:06d}" for n in range(count)]


def _checker(phases: Callable[[], dict[str, Any]], rounds: int, what: str) -> Callable[[], None]:
    """A check that every workflow ended where ``rounds`` rounds of the loop lead."""
    expected = _LOOP[(rounds - 1) % len(_LOOP)]

    def check() -> None:
        wrong = [wid for wid, phase in phases().items() if phase != expected]
        if wrong:
            raise AssertionError(f"{what}: {len(wrong)} workflows not in {expected}: {wrong[0]}")

    return check


def _rust_phases(pm: PhaseManager) -> Callable[[], dict[str, Any]]:
    return lambda: {s.workflow_id: s.phase for s in pm.all_workflows()}


def _executing_manager(ids: list[str]) -> PhaseManager:
    pm = PhaseManager()
    for workflow_id in ids:
        pm.register_workflow(workflow_id)
    for phase in _TO_EXECUTION:
        refused = [e for e in pm.transition_many((w, phase, "") for w in ids) if e is not None]
        if refused:
            raise refused[0]
    return pm


def prepare_rust_single(scale: W8Scale) -> Prepared:
    ids = _ids(scale.workflows)
    pm = _executing_manager(ids)
    reasons = [""] * len(ids)
    columns = [(ids, [phase] * len(ids), reasons) for phase in _round_phases(scale.rounds)]

    def run() -> int:
        transition = pm.transition_to
        for workflow_ids, phases, why in columns:
            deque(map(transition, workflow_ids, phases, why), maxlen=0)
        return scale.transitions

    return Prepared(run, _checker(_rust_phases(pm), scale.rounds, "rust single"))


def prepare_rust_batch(scale: W8Scale) -> Prepared:
    ids = _ids(scale.workflows)
    pm = _executing_manager(ids)
    batches = [[(w, phase, "") for w in ids] for phase in _round_phases(scale.rounds)]

    def run() -> int:
        for batch in batches:
            pm.transition_many(batch)  # refusals would show in the check
        return scale.transitions

    return Prepared(run, _checker(_rust_phases(pm), scale.rounds, "rust batch"))


class _State:
    __slots__ = ("changed_at", "phase", "previous", "reason")

    def __init__(self) -> None:
        self.phase = Phase.PENDING
        self.previous: Phase | None = None
        self.reason = ""
        self.changed_at = time.time_ns()


class _PythonPhases:
    """The plain-Python baseline: states in a dict, moves checked against the table."""

    def __init__(self) -> None:
        self.states: dict[str, _State] = {}

    def register(self, workflow_id: str) -> None:
        self.states[workflow_id] = _State()

    def transition_to(self, workflow_id: str, phase: Phase, reason: str) -> None:
        state = self.states.get(workflow_id)
        if state is None:
            raise KeyError(f"workflow not found: {workflow_id}")
        if phase not in VALID_TRANSITIONS[state.phase]:
            raise ValueError(
                f"invalid transition from {state.phase} to {phase} for workflow {workflow_id}"
            )
        state.previous = state.phase
        state.phase = phase
        state.reason = reason
        state.changed_at = time.time_ns()


def prepare_python(scale: W8Scale) -> Prepared:
    ids = _ids(scale.workflows)
    table = _PythonPhases()
    for workflow_id in ids:
        table.register(workflow_id)
        for phase in _TO_EXECUTION:
            table.transition_to(workflow_id, phase, "")
    reasons = [""] * len(ids)
    columns = [(ids, [phase] * len(ids), reasons) for phase in _round_phases(scale.rounds)]

    def run() -> int:
        for workflow_ids, phases, why in columns:
            deque(map(table.transition_to, workflow_ids, phases, why), maxlen=0)
        return scale.transitions

    def phases() -> dict[str, Any]:
        return {w: s.phase for w, s in table.states.items()}

    return Prepared(run, _checker(phases, scale.rounds, "python"))


def transitions_available() -> bool:
    return importlib.util.find_spec("transitions") is not None


def prepare_transitions(scale: W8Scale) -> Prepared:
    """The ``transitions`` library on ``scale.transitions_library_workflows`` workflows."""
    from transitions import Machine  # a benches-only dependency

    class Workflow:
        """A model; the machine adds ``state``, ``trigger`` and one method per move."""

        state: str
        trigger: Callable[[str], bool]

    count = scale.transitions_library_workflows
    models = [Workflow() for _ in range(count)]
    moves = [
        {"trigger": f"to_{to.value}", "source": source.value, "dest": to.value}
        for source, targets in VALID_TRANSITIONS.items()
        for to in targets
    ]
    Machine(
        model=models,
        states=[p.value for p in Phase],
        transitions=moves,
        initial=Phase.PENDING.value,
        auto_transitions=False,
    )
    for model in models:
        for phase in _TO_EXECUTION:
            model.trigger(f"to_{phase.value}")
    rounds = [
        [getattr(m, f"to_{phase.value}") for m in models] for phase in _round_phases(scale.rounds)
    ]

    def run() -> int:
        for triggers in rounds:
            deque(map(_call, triggers), maxlen=0)
        return count * scale.rounds

    def phases() -> dict[str, Any]:
        return {str(n): Phase(m.state) for n, m in enumerate(models)}

    return Prepared(run, _checker(phases, scale.rounds, "transitions"))


def _call(trigger: Callable[[], object]) -> object:
    return trigger()


def _round_phases(rounds: int) -> list[Phase]:
    return [_LOOP[r % len(_LOOP)] for r in range(rounds)]


IMPLEMENTATIONS: dict[str, Callable[[W8Scale], Prepared]] = {
    "rust single": prepare_rust_single,
    "rust batch": prepare_rust_batch,
    "python": prepare_python,
    "transitions": prepare_transitions,
}


def run_all(scale: W8Scale, repeats: int = 3) -> list[Figure]:
    """Every implementation (``transitions`` only if installed), best of ``repeats``."""
    figures = []
    for name, prepare in IMPLEMENTATIONS.items():
        if name == "transitions" and not transitions_available():
            continue
        figures.append(best_of(CASE, name, functools.partial(prepare, scale), repeats))
    return figures


def main() -> None:
    scale = QUICK if quick_mode() else FULL
    figures = run_all(scale, repeats=1 if quick_mode() else 3)
    print(
        f"W8 phases, {scale.name}: {scale.transitions:,} transitions "
        f"over {scale.workflows:,} workflows"
    )
    print(render(figures, baseline="python"))
    if not transitions_available():
        print("transitions library not installed: pip install 'turnout[bench]'")
    by_name = {f.implementation: f for f in figures}
    print(
        f"targets: single {by_name['rust single'].ns_per_op:.0f} ns (<= {SINGLE_TARGET_NS:.0f}), "
        f"batch {by_name['rust batch'].ops_per_s:,.0f}/s (>= {BATCH_TARGET_PER_S:,.0f})"
    )


if __name__ == "__main__":
    main()
