"""Workflow phases: the when-v3 coordinator's phase table and manager.

The table and every workflow's state live in Rust (:class:`PhaseManager`); this module
adds the :class:`Phase` enum and the read-only :data:`VALID_TRANSITIONS`, both taken from
the Rust table so the rules are stated once.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType

from turnout import _core
from turnout._core import PhaseManager, PhaseState, phase_successors
from turnout._errors import InvalidTransitionError, PhaseError, WorkflowNotFoundError

__all__ = [
    "VALID_TRANSITIONS",
    "InvalidTransitionError",
    "Phase",
    "PhaseError",
    "PhaseManager",
    "PhaseState",
    "WorkflowNotFoundError",
]


class Phase(str, Enum):
    """A workflow's phase; the value is the wire form (``Phase("pre-flight")``)."""

    PENDING = "pending"
    PRE_FLIGHT = "pre-flight"
    PLANNING = "planning"
    EXECUTION = "execution"
    PAUSING = "pausing"
    PAUSED = "paused"
    RESUMING = "resuming"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    COMPLETING = "completing"
    COMPLETED = "completed"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        """Completed, cancelled or failed: no transition leads out."""
        return self in _TERMINAL

    @property
    def is_active(self) -> bool:
        """Running work: neither waiting (pending, paused) nor finished."""
        return self in _ACTIVE

    @property
    def is_pausable(self) -> bool:
        return self is Phase.EXECUTION

    @property
    def is_resumable(self) -> bool:
        return self is Phase.PAUSED

    def can_transition_to(self, target: Phase | str) -> bool:
        return Phase(target) in VALID_TRANSITIONS[self]


# The Rust phase table hands out these very members: the enum is given to it once, here.
_core._register_phase(Phase)

_TERMINAL = frozenset({Phase.COMPLETED, Phase.CANCELLED, Phase.FAILED})
_ACTIVE = frozenset(Phase) - _TERMINAL - {Phase.PENDING, Phase.PAUSED}

#: From each phase, the phases it may move to (terminal phases: none).
VALID_TRANSITIONS: Mapping[Phase, frozenset[Phase]] = MappingProxyType(
    {p: frozenset(Phase(s) for s in phase_successors(p)) for p in Phase}
)
