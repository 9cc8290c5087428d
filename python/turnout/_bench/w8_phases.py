"""W8, phases: 1,000,000 phase transitions over 100,000 workflows.

Untimed, every workflow is registered and brought to ``execution``. Timed, the workflows go
round the pause loop (execution → pausing → paused → resuming → execution → ...) one round
after another, one transition per workflow per round, 10 rounds. Two cases:

- ``transition_to, one call each``: one call per transition, the calls driven by ``map`` in
  C so the loop itself costs next to nothing. ``rust`` is ``PhaseManager.transition_to``;
  ``reference`` is the baseline one writes without turnout, a dict of per-workflow state
  objects checked against ``VALID_TRANSITIONS``, stamped with ``time.time_ns()`` as the
  Rust table stamps its changes; ``transitions`` is the ``transitions`` library (a
  benches-only dependency), one model per workflow on one machine. Building its machine
  costs about 0.2 ms per workflow, so it runs on 10,000 workflows (1,000 in quick mode);
  its rate is comparable, its size is not.
- ``transition_many, one call a round``: ``rust`` is ``PhaseManager.transition_many`` (the
  GIL released for the table work); ``reference`` is the same baseline's loop over the
  batch, with the same per-item outcome list.

Every run checks where the workflows ended, so a broken implementation cannot post a time.
``turnout bench --workload W8`` runs it (through :func:`run`); ``TURNOUT_BENCH_QUICK=1``
selects the small scale of ``python -m turnout._bench.w8_phases``, which prints the figures
with the targets (single ≤ 0.5 µs, batch ≥ 5,000,000 transitions/s).
"""

from __future__ import annotations

import functools
import importlib.util
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from turnout._bench.implementations import Implementation
from turnout._bench.rates import CaseTable, Figure, Prepared, best_of, quick_mode, render, run_cases
from turnout._bench.report import ResultRow
from turnout._bench.workloads import Scale, StepReporter
from turnout.phases import VALID_TRANSITIONS, Phase, PhaseError, PhaseManager

__all__ = [
    "BATCH",
    "CASES",
    "FULL",
    "QUICK",
    "SINGLE",
    "W8Scale",
    "cases",
    "main",
    "prepare_python",
    "prepare_python_batch",
    "prepare_rust_batch",
    "prepare_rust_single",
    "prepare_transitions",
    "run",
    "run_all",
    "transitions_available",
    "workflows_of",
]

SINGLE = "transition_to, one call each"
BATCH = "transition_many, one call a round"
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

    def transition_many(self, items: list[tuple[str, Phase, str]]) -> list[PhaseError | None]:
        """Like ``PhaseManager.transition_many``: per item, None or the refusal."""
        outcomes: list[PhaseError | None] = []
        transition = self.transition_to
        for workflow_id, phase, reason in items:
            try:
                transition(workflow_id, phase, reason)
            except PhaseError as exc:
                outcomes.append(exc)
            else:
                outcomes.append(None)
        return outcomes

    def transition_to(self, workflow_id: str, phase: Phase, reason: str) -> None:
        state = self.states.get(workflow_id)
        if state is None:
            raise PhaseError(f"workflow not found: {workflow_id}")
        if phase not in VALID_TRANSITIONS[state.phase]:
            raise PhaseError(
                f"invalid transition from {state.phase} to {phase} for workflow {workflow_id}"
            )
        state.previous = state.phase
        state.phase = phase
        state.reason = reason
        state.changed_at = time.time_ns()


def _python_executing(ids: list[str]) -> _PythonPhases:
    table = _PythonPhases()
    for workflow_id in ids:
        table.register(workflow_id)
        for phase in _TO_EXECUTION:
            table.transition_to(workflow_id, phase, "")
    return table


def _python_phases(table: _PythonPhases) -> Callable[[], dict[str, Any]]:
    return lambda: {w: s.phase for w, s in table.states.items()}


def prepare_python(scale: W8Scale) -> Prepared:
    ids = _ids(scale.workflows)
    table = _python_executing(ids)
    reasons = [""] * len(ids)
    columns = [(ids, [phase] * len(ids), reasons) for phase in _round_phases(scale.rounds)]

    def run() -> int:
        for workflow_ids, phases, why in columns:
            deque(map(table.transition_to, workflow_ids, phases, why), maxlen=0)
        return scale.transitions

    return Prepared(run, _checker(_python_phases(table), scale.rounds, "python"))


def prepare_python_batch(scale: W8Scale) -> Prepared:
    ids = _ids(scale.workflows)
    table = _python_executing(ids)
    batches = [[(w, phase, "") for w in ids] for phase in _round_phases(scale.rounds)]

    def run() -> int:
        for batch in batches:
            table.transition_many(batch)
        return scale.transitions

    return Prepared(run, _checker(_python_phases(table), scale.rounds, "python batch"))


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


CASES: dict[str, dict[str, Callable[[W8Scale], Prepared]]] = {
    SINGLE: {
        "rust": prepare_rust_single,
        "reference": prepare_python,
        "transitions": prepare_transitions,
    },
    BATCH: {"rust": prepare_rust_batch, "reference": prepare_python_batch},
}
"""Case -> implementation (``turnout bench``'s names) -> what prepares one run."""


def cases(scale: W8Scale) -> CaseTable:
    """:data:`CASES` at ``scale`` (``transitions`` only if installed)."""
    return {
        case: {
            name: functools.partial(prepare, scale)
            for name, prepare in prepares.items()
            if name != "transitions" or transitions_available()
        }
        for case, prepares in CASES.items()
    }


def workflows_of(scale: W8Scale, implementation: str) -> int:
    """How many workflows ``implementation`` runs on (fewer for the slow library)."""
    if implementation == "transitions":
        return scale.transitions_library_workflows
    return scale.workflows


def run(implementation: Implementation, scale: Scale, step: StepReporter) -> list[ResultRow]:
    """``turnout bench``'s W8 rows for one implementation."""
    w8 = QUICK if scale.name == "quick" else FULL
    return run_cases(
        "W8",
        cases(w8),
        implementation.name,
        scale,
        step,
        lambda case, name: {"workflows": float(workflows_of(w8, name))},
    )


def run_all(scale: W8Scale, repeats: int = 3) -> list[Figure]:
    """Every case and implementation, best of ``repeats``."""
    return [
        best_of(case, name, prepare, repeats)
        for case, prepares in cases(scale).items()
        for name, prepare in prepares.items()
    ]


def main() -> None:
    scale = QUICK if quick_mode() else FULL
    figures = run_all(scale, repeats=1 if quick_mode() else 3)
    print(
        f"W8 phases, {scale.name}: {scale.transitions:,} transitions "
        f"over {scale.workflows:,} workflows"
    )
    print(render(figures, baseline="reference"))
    if not transitions_available():
        print("transitions library not installed: pip install 'turnout[bench]'")
    rust = {f.case: f for f in figures if f.implementation == "rust"}
    print(
        f"targets: single {rust[SINGLE].ns_per_op:.0f} ns (<= {SINGLE_TARGET_NS:.0f}), "
        f"batch {rust[BATCH].ops_per_s:,.0f}/s (>= {BATCH_TARGET_PER_S:,.0f})"
    )


if __name__ == "__main__":
    main()
