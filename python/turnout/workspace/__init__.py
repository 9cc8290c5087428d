"""Workspaces: coder's workspace pubsub (``coderd/wspubsub``) and its autostart scale test's
dispatcher and results (``scaletest/autostart``), in Python.

- Wire types, JSON-compatible with coder: ``WorkspaceEvent`` (with ``WorkspaceEventKind``),
  ``WorkspaceBuildUpdate`` (with ``WorkspaceTransition`` and ``ProvisionerJobStatus``; a
  channel hands raw messages out as ``LazyBuildUpdate``, one to ``isinstance``), and
  the channel names ``workspace_event_channel(owner_id)`` and
  ``ALL_WORKSPACE_EVENT_CHANNEL``.
- The ``Pubsub`` protocol, in process (``MemoryPubsub``) or over a turnout bus
  (``BusPubsub``), and typed listeners: ``handle_workspace_event``,
  ``handle_workspace_build_update``, ``publish_workspace_build_update``.
- ``WorkspaceDispatcher``: one source of build updates fanned out to a bounded
  ``WorkspaceChannel`` per workspace, with a Rust-routed path for raw JSON batches.
- ``RunResult`` / ``RunResults``: timings of autostart runs, their percentiles, JSON and text
  report.
"""

from __future__ import annotations

from turnout._json_object import MalformedMessageError
from turnout.workspace._build_update import (
    LazyBuildUpdate,
    ProvisionerJobStatus,
    WorkspaceBuildUpdate,
    WorkspaceTransition,
)
from turnout.workspace._bus_pubsub import BusPubsub
from turnout.workspace._channel import (
    CHANNEL_OVERFLOW_POLICIES,
    ChannelOverflow,
    WorkspaceChannel,
)
from turnout.workspace._dispatcher import WorkspaceDispatcher
from turnout.workspace._errors import ChannelClosedError, PubsubClosedError, WorkspaceMessageError
from turnout.workspace._events import (
    ALL_WORKSPACE_EVENT_CHANNEL,
    WorkspaceEvent,
    WorkspaceEventKind,
    workspace_event_channel,
)
from turnout.workspace._handlers import (
    EMPTY_WORKSPACE_BUILD_UPDATE,
    EMPTY_WORKSPACE_EVENT,
    handle_workspace_build_update,
    handle_workspace_event,
    publish_workspace_build_update,
)
from turnout.workspace._pubsub import Cancel, Listener, ListenerWithErr, MemoryPubsub, Pubsub
from turnout.workspace._results import RunResult, RunResults
from turnout.workspace._routing import KeyRouterLike, PythonKeyRouter
from turnout.workspace._uuids import NIL_UUID

__all__ = [
    "ALL_WORKSPACE_EVENT_CHANNEL",
    "CHANNEL_OVERFLOW_POLICIES",
    "EMPTY_WORKSPACE_BUILD_UPDATE",
    "EMPTY_WORKSPACE_EVENT",
    "NIL_UUID",
    "BusPubsub",
    "Cancel",
    "ChannelClosedError",
    "ChannelOverflow",
    "KeyRouterLike",
    "LazyBuildUpdate",
    "Listener",
    "ListenerWithErr",
    "MalformedMessageError",
    "MemoryPubsub",
    "ProvisionerJobStatus",
    "Pubsub",
    "PubsubClosedError",
    "PythonKeyRouter",
    "RunResult",
    "RunResults",
    "WorkspaceBuildUpdate",
    "WorkspaceChannel",
    "WorkspaceDispatcher",
    "WorkspaceEvent",
    "WorkspaceEventKind",
    "WorkspaceMessageError",
    "WorkspaceTransition",
    "handle_workspace_build_update",
    "handle_workspace_event",
    "publish_workspace_build_update",
    "workspace_event_channel",
]
