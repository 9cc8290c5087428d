"""Workflow phases: the Phase enum and its table, every PhaseManager method's
success and refusal with Go's texts and reasons, snapshots, and callback order (one thread,
several threads, callbacks that change phases themselves).

The expected table is written out here from the Go coordinator's, not read from the implementation.
Every wait on another thread is bounded, and nothing asserts on how long something took."""

from __future__ import annotations

import itertools
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from turnout.phases import (
    VALID_TRANSITIONS,
    InvalidTransitionError,
    Phase,
    PhaseError,
    PhaseManager,
    PhaseState,
    WorkflowNotFoundError,
)

WAIT = 30.0  # seconds: only ever an upper bound on a join that normally ends at once

P = Phase
GO_TABLE: dict[Phase, set[Phase]] = {
    P.PENDING: {P.PRE_FLIGHT, P.FAILED},
    P.PRE_FLIGHT: {P.PLANNING, P.FAILED},
    P.PLANNING: {P.EXECUTION, P.FAILED},
    P.EXECUTION: {P.PAUSING, P.CANCELLING, P.COMPLETING, P.FAILED},
    P.PAUSING: {P.PAUSED, P.CANCELLING, P.FAILED},
    P.PAUSED: {P.RESUMING, P.CANCELLING, P.FAILED},
    P.RESUMING: {P.EXECUTION, P.CANCELLING, P.FAILED},
    P.CANCELLING: {P.CANCELLED, P.FAILED},
    P.COMPLETING: {P.COMPLETED, P.FAILED},
    P.CANCELLED: set(),
    P.COMPLETED: set(),
    P.FAILED: set(),
}

# A way from pending to each phase, through allowed transitions only.
_TO_EXECUTION = [P.PRE_FLIGHT, P.PLANNING, P.EXECUTION]
PATHS: dict[Phase, list[Phase]] = {
    P.PENDING: [],
    P.PRE_FLIGHT: [P.PRE_FLIGHT],
    P.PLANNING: [P.PRE_FLIGHT, P.PLANNING],
    P.EXECUTION: _TO_EXECUTION,
    P.PAUSING: [*_TO_EXECUTION, P.PAUSING],
    P.PAUSED: [*_TO_EXECUTION, P.PAUSING, P.PAUSED],
    P.RESUMING: [*_TO_EXECUTION, P.PAUSING, P.PAUSED, P.RESUMING],
    P.CANCELLING: [*_TO_EXECUTION, P.CANCELLING],
    P.CANCELLED: [*_TO_EXECUTION, P.CANCELLING, P.CANCELLED],
    P.COMPLETING: [*_TO_EXECUTION, P.COMPLETING],
    P.COMPLETED: [*_TO_EXECUTION, P.COMPLETING, P.COMPLETED],
    P.FAILED: [P.FAILED],
}
NON_TERMINAL = [p for p in Phase if p not in (P.COMPLETED, P.CANCELLED, P.FAILED)]
TERMINAL = [P.COMPLETED, P.CANCELLED, P.FAILED]


def at(phase: Phase, workflow_id: str = "w", pm: PhaseManager | None = None) -> PhaseManager:
    """A manager with ``workflow_id`` brought to ``phase``."""
    pm = PhaseManager() if pm is None else pm
    pm.register_workflow(workflow_id)
    for step in PATHS[phase]:
        pm.transition_to(workflow_id, step, f"to {step}")
    assert pm.get_phase(workflow_id) is phase
    return pm


@pytest.fixture
def unraisable(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """What callbacks raised (the manager reports them through sys.unraisablehook)."""
    seen: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    yield seen


# --- Phase and VALID_TRANSITIONS --------------------------------------------------------------


def test_phase_values_and_lookup_by_wire_value() -> None:
    assert [p.value for p in Phase] == [
        "pending",
        "pre-flight",
        "planning",
        "execution",
        "pausing",
        "paused",
        "resuming",
        "cancelling",
        "cancelled",
        "completing",
        "completed",
        "failed",
    ]
    assert Phase("pre-flight") is Phase.PRE_FLIGHT
    assert str(Phase.PRE_FLIGHT) == "pre-flight"
    assert Phase.PAUSED == "paused"  # a str enum
    with pytest.raises(ValueError):
        Phase("PreFlight")


def test_valid_transitions_is_the_spec_table_and_read_only() -> None:
    assert {p: set(to) for p, to in VALID_TRANSITIONS.items()} == GO_TABLE
    with pytest.raises(TypeError):
        VALID_TRANSITIONS[P.PENDING] = frozenset()  # type: ignore[index]


def test_predicates_are_properties_with_the_spec_sets() -> None:
    terminal = {P.COMPLETED, P.CANCELLED, P.FAILED}
    active = {
        P.PRE_FLIGHT,
        P.PLANNING,
        P.EXECUTION,
        P.PAUSING,
        P.RESUMING,
        P.CANCELLING,
        P.COMPLETING,
    }
    for p in Phase:
        assert p.is_terminal is (p in terminal), p
        assert p.is_active is (p in active), p
        assert p.is_pausable is (p is P.EXECUTION), p
        assert p.is_resumable is (p is P.PAUSED), p


@pytest.mark.parametrize("source", list(Phase))
def test_can_transition_to_over_the_whole_table(source: Phase) -> None:
    for target in Phase:
        expected = target in GO_TABLE[source]
        assert source.can_transition_to(target) is expected, (source, target)
        assert source.can_transition_to(target.value) is expected  # by wire value too


@pytest.mark.parametrize("source", list(Phase))
def test_transition_to_over_the_whole_table(source: Phase) -> None:
    """All 144 pairs on a real manager: allowed ones move and record, others are refused
    with Go's text and change nothing."""
    for target in Phase:
        pm = at(source)
        before = pm.get_state("w")
        assert before is not None
        if target in GO_TABLE[source]:
            pm.transition_to("w", target, "why")
            after = pm.get_state("w")
            assert after is not None
            assert (after.phase, after.previous_phase, after.reason) == (target, source, "why")
        else:
            with pytest.raises(InvalidTransitionError) as refused:
                pm.transition_to("w", target, "why")
            assert str(refused.value) == (
                f"invalid transition from {source.value} to {target.value} for workflow w"
            )
            assert pm.get_state("w") == before


@pytest.mark.parametrize("source", list(Phase))
def test_transition_many_over_the_whole_table(source: Phase) -> None:
    pm = PhaseManager()
    for target in Phase:
        at(source, f"w-{target.value}", pm)
    outcomes = pm.transition_many([(f"w-{t.value}", t, "batch") for t in Phase])
    for target, outcome in zip(Phase, outcomes, strict=True):
        if target in GO_TABLE[source]:
            assert outcome is None
            assert pm.get_phase(f"w-{target.value}") is target
        else:
            assert isinstance(outcome, InvalidTransitionError)
            assert str(outcome) == (
                f"invalid transition from {source.value} to {target.value} "
                f"for workflow w-{target.value}"
            )
            assert pm.get_phase(f"w-{target.value}") is source


def test_phases_are_accepted_as_wire_values_and_unknown_ones_refused() -> None:
    pm = at(P.PENDING)
    pm.transition_to("w", "pre-flight")
    assert pm.get_phase("w") is P.PRE_FLIGHT
    assert pm.transition_many([("w", "planning", "")]) == [None]
    with pytest.raises(ValueError, match="unknown phase"):
        pm.transition_to("w", "Execution")
    with pytest.raises(TypeError):
        pm.transition_to("w", 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="reason"):
        pm.transition_many([("w", P.EXECUTION, None)])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="workflow_id"):
        pm.transition_many([(7, P.EXECUTION, "")])  # type: ignore[list-item]
    assert pm.get_phase("w") is P.PLANNING, "a refused batch applies nothing"


# --- the helpers: success paths, reasons, error texts -----------------------------------------


def state_of(pm: PhaseManager, workflow_id: str = "w") -> PhaseState:
    state = pm.get_state(workflow_id)
    assert state is not None
    return state


def test_pause_and_complete_pause() -> None:
    pm = at(P.EXECUTION)
    pm.pause("w", "operator asked")
    s = state_of(pm)
    assert (s.phase, s.previous_phase, s.reason) == (P.PAUSING, P.EXECUTION, "operator asked")
    pm.complete_pause("w", "cp-7")
    s = state_of(pm)
    assert (s.phase, s.previous_phase, s.checkpoint_id) == (P.PAUSED, P.PAUSING, "cp-7")


def test_resume_and_complete_resume_set_go_reasons() -> None:
    pm = at(P.PAUSED)
    pm.create_checkpoint("w", "cp-old", "before")
    pm.resume("w")
    s = state_of(pm)
    assert (s.phase, s.reason, s.checkpoint_id) == (P.RESUMING, "resume requested", "cp-old")
    pm.complete_resume("w")
    s = state_of(pm)
    assert (s.phase, s.previous_phase, s.reason) == (P.EXECUTION, P.RESUMING, "resumed")

    pm = at(P.PAUSED)
    pm.resume("w", from_checkpoint="cp-9")
    assert state_of(pm).checkpoint_id == "cp-9"


@pytest.mark.parametrize("source", [P.EXECUTION, P.PAUSING, P.PAUSED, P.RESUMING])
def test_cancel_and_complete_cancellation(source: Phase) -> None:
    pm = at(source)
    pm.cancel("w", "user cancelled")
    s = state_of(pm)
    assert (s.phase, s.previous_phase, s.reason) == (P.CANCELLING, source, "user cancelled")
    pm.complete_cancellation("w")
    s = state_of(pm)
    assert (s.phase, s.previous_phase, s.reason) == (P.CANCELLED, P.CANCELLING, "cancelled")


@pytest.mark.parametrize("source", TERMINAL)
def test_cancel_and_fail_are_refused_in_a_terminal_phase(source: Phase) -> None:
    pm = at(source)
    for method in (pm.cancel, pm.fail):
        with pytest.raises(PhaseError) as refused:
            method("w", "late")
        assert str(refused.value) == f"workflow w is already in terminal state {source.value}"
        assert not isinstance(refused.value, InvalidTransitionError)
    assert state_of(pm).phase is source


def test_complete_goes_through_completing_with_both_reasons() -> None:
    pm = at(P.EXECUTION)
    seen: list[tuple[Phase, Phase | None, str]] = []
    pm.on_phase_changed(lambda s: seen.append((s.phase, s.previous_phase, s.reason)))
    pm.complete("w")
    assert seen == [
        (P.COMPLETING, P.EXECUTION, "completing"),
        (P.COMPLETED, P.COMPLETING, "completed successfully"),
    ]
    s = state_of(pm)
    assert (s.phase, s.previous_phase, s.reason) == (
        P.COMPLETED,
        P.COMPLETING,
        "completed successfully",
    )


# (helper, the one phase it works from, Go's text when called from any other phase)
GUARDED = [
    ("pause", P.EXECUTION, "workflow w cannot be paused from phase {}"),
    ("complete_pause", P.PAUSING, "workflow w is not pausing (current: {})"),
    ("resume", P.PAUSED, "workflow w cannot be resumed from phase {}"),
]


@pytest.mark.parametrize(("helper", "allowed", "text"), GUARDED, ids=[g[0] for g in GUARDED])
def test_guarded_helpers_refuse_every_other_phase(helper: str, allowed: Phase, text: str) -> None:
    for source in Phase:
        if source is allowed:
            continue
        pm = at(source)
        before = state_of(pm)
        with pytest.raises(PhaseError) as refused:
            getattr(pm, helper)("w", "cp-or-reason")
        assert str(refused.value) == text.format(source.value)
        assert not isinstance(refused.value, InvalidTransitionError)
        assert state_of(pm) == before, "a refusal records nothing (checkpoint included)"


# (helper, the phase it moves to): Go's helpers that are the table's move, so refused with
# the table's text wherever the table forbids that move.
TABLE_MOVES = [
    ("complete_resume", P.EXECUTION),
    ("cancel", P.CANCELLING),
    ("complete_cancellation", P.CANCELLED),
    ("complete", P.COMPLETING),
]


@pytest.mark.parametrize(("helper", "target"), TABLE_MOVES, ids=[m[0] for m in TABLE_MOVES])
def test_table_helpers_refuse_where_the_table_forbids_their_move(
    helper: str, target: Phase
) -> None:
    """``cancel`` from a terminal phase has its own text (tested above); from pending it is
    the table's refusal, as in Go. ``complete_resume`` from planning is allowed, as in Go."""
    refusing = [
        p for p in Phase if target not in GO_TABLE[p] and not (helper == "cancel" and p in TERMINAL)
    ]
    assert refusing
    for source in refusing:
        pm = at(source)
        seen: list[PhaseState] = []
        pm.on_phase_changed(seen.append)
        before = state_of(pm)
        args = ("w", "reason") if helper == "cancel" else ("w",)
        with pytest.raises(InvalidTransitionError) as refused:
            getattr(pm, helper)(*args)
        assert str(refused.value) == (
            f"invalid transition from {source.value} to {target.value} for workflow w"
        )
        assert state_of(pm) == before
        assert seen == []


@pytest.mark.parametrize("source", NON_TERMINAL)
def test_fail_from_every_phase_that_is_not_terminal(source: Phase) -> None:
    pm = at(source)
    pm.fail("w", "disk full")
    s = state_of(pm)
    assert (s.phase, s.previous_phase, s.reason) == (P.FAILED, source, "disk full")


def test_unknown_workflows_are_refused_by_every_method() -> None:
    pm = PhaseManager()
    calls = [
        lambda: pm.transition_to("ghost", P.PRE_FLIGHT, ""),
        lambda: pm.pause("ghost", ""),
        lambda: pm.complete_pause("ghost", "cp"),
        lambda: pm.resume("ghost", ""),
        lambda: pm.complete_resume("ghost"),
        lambda: pm.cancel("ghost", ""),
        lambda: pm.complete_cancellation("ghost"),
        lambda: pm.complete("ghost"),
        lambda: pm.fail("ghost", ""),
        lambda: pm.create_checkpoint("ghost", "cp", "", None),
        lambda: pm.set_progress("ghost", 0.5, "step"),
    ]
    for call in calls:
        with pytest.raises(WorkflowNotFoundError) as refused:
            call()
        assert str(refused.value) == "workflow not found: ghost"
        assert isinstance(refused.value, PhaseError) and isinstance(refused.value, ValueError)
    (outcome,) = pm.transition_many([("ghost", P.FAILED, "")])
    assert isinstance(outcome, WorkflowNotFoundError)
    assert str(outcome) == "workflow not found: ghost"
    assert pm.get_phase("ghost") is None and pm.get_state("ghost") is None
    assert len(pm) == 0


def test_checkpoints_and_progress() -> None:
    pm = at(P.EXECUTION)
    calls: list[tuple[str, str, Any]] = []
    pm.on_checkpoint(lambda wid, cid, state: calls.append((wid, cid, state)))
    payload = {"step": 3}
    pm.create_checkpoint("w", "cp-1", "periodic", payload)
    pm.create_checkpoint("w", "cp-2")
    assert calls == [("w", "cp-1", payload), ("w", "cp-2", None)]
    assert calls[0][2] is payload, "the caller's state object, not a copy"
    assert state_of(pm).checkpoint_id == "cp-2"
    pm.set_progress("w", 0.25, "downloading")
    pm.set_progress("w", 0.5)
    s = state_of(pm)
    assert (s.progress, s.current_action, s.phase) == (0.5, "", P.EXECUTION)


# --- registration, snapshots, listings ---------------------------------------------------------


def test_register_starts_pending_and_registering_again_replaces() -> None:
    pm = PhaseManager()
    before = datetime.now(timezone.utc)
    first = pm.register_workflow("w", parent_id="p", root_id="r")
    assert (first.workflow_id, first.phase, first.previous_phase) == ("w", P.PENDING, None)
    assert (first.parent_workflow_id, first.root_workflow_id) == ("p", "r")
    assert (first.reason, first.checkpoint_id, first.progress, first.current_action) == (
        "",
        "",
        0.0,
        "",
    )
    assert first.changed_at.tzinfo is not None
    assert first.changed_at >= before - timedelta(seconds=1)
    pm.transition_to("w", P.PRE_FLIGHT, "go")
    again = pm.register_workflow("w")
    assert (again.phase, again.parent_workflow_id) == (P.PENDING, "")
    assert state_of(pm) == again
    assert len(pm) == 1


def test_snapshots_are_immutable_and_do_not_follow_later_changes() -> None:
    pm = at(P.PLANNING)
    snapshot = state_of(pm)
    with pytest.raises(AttributeError):
        snapshot.phase = P.FAILED  # type: ignore[misc]
    pm.transition_to("w", P.EXECUTION, "later")
    assert (snapshot.phase, snapshot.reason) == (P.PLANNING, "to planning")
    assert state_of(pm).changed_at >= snapshot.changed_at
    assert snapshot != state_of(pm)


def test_listings_and_removal() -> None:
    pm = PhaseManager()
    for phase in Phase:
        at(phase, f"w-{phase.value}", pm)
    assert {s.workflow_id for s in pm.all_workflows()} == {f"w-{p.value}" for p in Phase}
    assert {s.phase for s in pm.active_workflows()} == set(NON_TERMINAL)
    pm.remove_workflow("w-execution")
    pm.remove_workflow("never-there")  # harmless
    assert pm.get_state("w-execution") is None
    assert len(pm) == len(Phase) - 1
    with pytest.raises(WorkflowNotFoundError):
        pm.fail("w-execution", "gone")


def test_long_ids_and_reasons_round_trip() -> None:
    """Past the inline size of the Rust table's strings: the same behaviour."""
    long_id = "workflow-" + "x" * 200
    reason = "r" * 500 + " ünïcødé"
    pm = at(P.EXECUTION, long_id)
    pm.pause(long_id, reason)
    s = state_of(pm, long_id)
    assert (s.workflow_id, s.reason) == (long_id, reason)
    with pytest.raises(PhaseError, match=f"workflow {long_id} cannot be paused"):
        pm.pause(long_id, "again")


# --- callbacks: order, snapshots, failures ------------------------------------------------------


def test_callbacks_see_every_change_in_order_with_snapshots() -> None:
    pm = PhaseManager()
    seen: list[PhaseState] = []
    pm.on_phase_changed(seen.append)
    ids = [f"wf-{n}" for n in range(50)]
    expected: list[tuple[str, Phase, Phase | None]] = []
    for workflow_id in ids:
        pm.register_workflow(workflow_id)
    # Many quick changes, interleaved across workflows, single calls and batches mixed.
    for step, phase in enumerate(PATHS[P.COMPLETED]):
        previous = P.PENDING if step == 0 else PATHS[P.COMPLETED][step - 1]
        if step % 2:
            assert pm.transition_many([(w, phase, f"s{step}") for w in ids]) == [None] * len(ids)
        else:
            for workflow_id in ids:
                pm.transition_to(workflow_id, phase, f"s{step}")
        expected += [(w, phase, previous) for w in ids]
    assert [(s.workflow_id, s.phase, s.previous_phase) for s in seen] == expected
    # Each snapshot kept what it was, though the workflows moved on.
    assert {s.reason for s in seen[: len(ids)]} == {"s0"}
    assert all(isinstance(s, PhaseState) for s in seen)


def test_callbacks_run_in_registration_order_and_a_failing_one_stops_nothing(
    unraisable: list[Any],
) -> None:
    pm = at(P.PENDING)
    order: list[str] = []

    def broken(state: PhaseState) -> None:
        order.append("broken")
        raise RuntimeError("callback bug")

    pm.on_phase_changed(lambda s: order.append("first"))
    pm.on_phase_changed(broken)
    pm.on_phase_changed(lambda s: order.append("last"))
    pm.transition_to("w", P.PRE_FLIGHT)
    pm.transition_to("w", P.PLANNING)
    assert order == ["first", "broken", "last"] * 2
    assert pm.get_phase("w") is P.PLANNING
    assert [type(u.exc_value) for u in unraisable] == [RuntimeError, RuntimeError]


def test_a_callback_may_change_phases_and_its_changes_come_after() -> None:
    pm = at(P.EXECUTION)
    seen: list[Phase] = []

    def follow_up(state: PhaseState) -> None:
        seen.append(state.phase)
        if state.phase is P.PAUSING:
            pm.complete_pause(state.workflow_id, "auto")  # re-entrant: no deadlock
            # Delivered after this callback returns, never inside it.
            assert seen[-1] is P.PAUSING

    pm.on_phase_changed(follow_up)
    pm.pause("w", "x")
    assert seen == [P.PAUSING, P.PAUSED]
    assert state_of(pm).checkpoint_id == "auto"


def test_callback_order_holds_under_several_threads() -> None:
    """Four threads change their own workflows as fast as they can (single calls and
    batches); every workflow's changes reach the callback in the order they happened, each
    snapshot continuing from the one before, and none is lost."""
    pm = PhaseManager()
    seen: list[PhaseState] = []
    lock = threading.Lock()

    def record(state: PhaseState) -> None:
        with lock:
            seen.append(state)

    pm.on_phase_changed(record)
    threads_n, per_thread, rounds = 4, 25, 8
    loop = [P.PAUSING, P.PAUSED, P.RESUMING, P.EXECUTION]
    ids = [[f"t{t}-w{n}" for n in range(per_thread)] for t in range(threads_n)]
    for group in ids:
        for workflow_id in group:
            at(P.EXECUTION, workflow_id, pm)
    errors: list[BaseException] = []
    start = threading.Barrier(threads_n)

    def drive(t: int) -> None:
        try:
            start.wait(WAIT)
            for r in range(rounds):
                phase = loop[r % len(loop)]
                if (t + r) % 2:
                    outcomes = pm.transition_many([(w, phase, f"r{r}") for w in ids[t]])
                    assert outcomes == [None] * per_thread
                else:
                    for workflow_id in ids[t]:
                        pm.transition_to(workflow_id, phase, f"r{r}")
        except BaseException as exc:  # reported below, on the test's thread
            errors.append(exc)

    workers = [threading.Thread(target=drive, args=(t,)) for t in range(threads_n)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(WAIT)
    assert not any(w.is_alive() for w in workers)
    assert errors == []
    changes = [s for s in seen if s.reason.startswith("r")]
    assert len(changes) == threads_n * per_thread * rounds
    by_workflow: dict[str, list[PhaseState]] = {}
    for state in changes:
        by_workflow.setdefault(state.workflow_id, []).append(state)
    for history in by_workflow.values():
        assert [s.phase for s in history] == [loop[r % len(loop)] for r in range(rounds)]
        assert [s.reason for s in history] == [f"r{r}" for r in range(rounds)]
        for earlier, later in itertools.pairwise(history):
            assert later.previous_phase is earlier.phase
            assert later.changed_at >= earlier.changed_at
