"""Workspace build updates (coder's ``WorkspaceBuildUpdate``): a build of one workspace moved
to a new job status. Published on ``ALL_WORKSPACE_EVENT_CHANNEL``; the dispatcher routes them
to per-workspace channels by ``workspace_name``."""

from __future__ import annotations

from abc import ABCMeta
from dataclasses import dataclass
from enum import Enum
from typing import Any
from uuid import UUID, SafeUUID

import orjson

from turnout._core import BuildUpdateDecoder, LazyBuildUpdate
from turnout._go_json import go_escape
from turnout._json_object import MalformedMessageError, decode_object, int_field, str_field
from turnout.workspace._uuids import parse_uuid

__all__ = [
    "BUILD_UPDATE_DECODER",
    "LazyBuildUpdate",
    "ProvisionerJobStatus",
    "WorkspaceBuildUpdate",
    "WorkspaceTransition",
    "decode_routed_many",
    "decode_routed_update",
]

_INT32_LIMIT = 1 << 31


class WorkspaceTransition(str, Enum):
    """What the build does to the workspace."""

    START = "start"
    STOP = "stop"
    DELETE = "delete"

    def __str__(self) -> str:
        return self.value


class ProvisionerJobStatus(str, Enum):
    """Where the build's provisioner job is."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    CANCELING = "canceling"
    CANCELED = "canceled"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


_TRANSITIONS: dict[str, WorkspaceTransition] = {t.value: t for t in WorkspaceTransition}
_JOB_STATUSES: dict[str, ProvisionerJobStatus] = {s.value: s for s in ProvisionerJobStatus}


# ABCMeta only so that ``LazyBuildUpdate`` (what a channel hands out for a raw message)
# is a ``WorkspaceBuildUpdate`` to ``isinstance``; an exact instance is checked as fast.
@dataclass(frozen=True, slots=True)
class WorkspaceBuildUpdate(metaclass=ABCMeta):
    """One build update. JSON keys are the field names, in this order.

    Construction is cheap and does not check (the dispatcher builds and routes many of
    these); ``validate()`` does, ``from_json`` always validates, and
    ``publish_workspace_build_update`` validates before publishing. ``transition`` and
    ``job_status`` accept the enum members or their string values (equal to each other).
    """

    workspace_id: UUID
    workspace_name: str
    build_id: UUID
    transition: WorkspaceTransition | str
    job_status: ProvisionerJobStatus | str
    build_number: int

    def validate(self) -> None:
        """Raises ``ValueError`` naming the first field that is of the wrong type or out of
        range (transition, job status, a build number that does not fit Go's int32)."""
        for name in ("workspace_id", "build_id"):
            if not isinstance(getattr(self, name), UUID):
                raise ValueError(f"{name} must be a UUID, not {type(getattr(self, name)).__name__}")
        if not isinstance(self.workspace_name, str):
            raise ValueError(
                f"workspace_name must be a str, not {type(self.workspace_name).__name__}"
            )
        if not isinstance(self.transition, str) or self.transition not in _TRANSITIONS:
            raise ValueError(
                f"transition must be one of {', '.join(_TRANSITIONS)}, not {self.transition!r}"
            )
        if not isinstance(self.job_status, str) or self.job_status not in _JOB_STATUSES:
            raise ValueError(
                f"job_status must be one of {', '.join(_JOB_STATUSES)}, not {self.job_status!r}"
            )
        number = self.build_number
        if isinstance(number, bool) or not isinstance(number, int):
            raise ValueError(f"build_number must be an int, not {type(number).__name__}")
        if not -_INT32_LIMIT <= number < _INT32_LIMIT:
            raise ValueError(f"build_number {number} does not fit a 32-bit integer")

    def to_json(self) -> bytes:
        """The JSON object as Go writes it: keys in field order, UUIDs lowercase and
        hyphenated (orjson's form), ``<``, ``>`` and ``&`` escaped."""
        return go_escape(
            orjson.dumps(
                {
                    "workspace_id": self.workspace_id,
                    "workspace_name": self.workspace_name,
                    "build_id": self.build_id,
                    "transition": self.transition,
                    "job_status": self.job_status,
                    "build_number": self.build_number,
                }
            )
        )

    @classmethod
    def from_json(cls, data: bytes | bytearray | memoryview | str) -> WorkspaceBuildUpdate:
        """Decodes and validates one update. Go always writes all six fields, so each is
        required here: a missing or null field, a wrong type or an unknown transition or
        job status raises ``MalformedMessageError`` (a ``ValueError``)."""
        obj = decode_object(data, "workspace build update")
        transition = str_field(obj, "transition", required=True)
        job_status = str_field(obj, "job_status", required=True)
        try:
            known_transition = _TRANSITIONS[transition]
        except KeyError:
            raise _unknown("transition", transition, _TRANSITIONS) from None
        try:
            known_status = _JOB_STATUSES[job_status]
        except KeyError:
            raise _unknown("job_status", job_status, _JOB_STATUSES) from None
        return cls(
            workspace_id=parse_uuid(_required(obj, "workspace_id"), "workspace_id"),
            workspace_name=str_field(obj, "workspace_name", required=True),
            build_id=parse_uuid(_required(obj, "build_id"), "build_id"),
            transition=known_transition,
            job_status=known_status,
            build_number=int_field(obj, "build_number", bits=32, required=True),
        )


WorkspaceBuildUpdate.register(LazyBuildUpdate)

# The common shape of an update, decoded in Rust to a ``LazyBuildUpdate`` (fields checked,
# their Python objects made when read); ``from_json`` takes every other message, so the
# two accept and refuse the same ones.
BUILD_UPDATE_DECODER = BuildUpdateDecoder(
    WorkspaceBuildUpdate, UUID, SafeUUID.unknown, _TRANSITIONS, _JOB_STATUSES
)
_decoder = BUILD_UPDATE_DECODER
_decode_common = _decoder.decode


# ``decode_routed_many(items, name)``: the items of ``items`` in a new list, the raw
# messages of the common shape decoded in Rust (the others left as they are, for
# ``decode_routed_update``), and how many raw ones are left; ``name`` is the workspace they
# were routed to (its string is shared). The Rust method itself: a channel's read calls it
# with no Python frame in between.
decode_routed_many = _decoder.decode_many


def decode_routed_update(message: bytes, name: str | None = None) -> WorkspaceBuildUpdate:
    """``WorkspaceBuildUpdate.from_json(message)``, with the common shape decoded in Rust:
    what a channel does with a raw message when a consumer reads it."""
    update = _decode_common(message, name)
    if update is None:
        return WorkspaceBuildUpdate.from_json(message)
    return update  # type: ignore[return-value]  # a registered virtual subclass


def _required(obj: dict[str, Any], key: str) -> object:
    value = obj.get(key)
    if value is None:
        raise MalformedMessageError(f"{key}: missing")
    return value


def _unknown(field: str, value: str, known: dict[str, Any]) -> MalformedMessageError:
    return MalformedMessageError(f"{field}: {value[:64]!r} is not one of {', '.join(known)}")
