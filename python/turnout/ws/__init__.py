"""Coordination over WebSocket (extra ``turnout[ws]``, on the ``websockets`` library).

- :class:`Coordinator`: a service's client (:mod:`turnout.ws.client`).
- :class:`Hub`: the server services connect to, republishing on a :class:`~turnout.Bus`
  serving watchers (:mod:`turnout.ws.hub`, :mod:`turnout.ws.watchers`) and a control
  surface (:mod:`turnout.ws.http`); its subjects are in
  :mod:`turnout.coordination.subjects`.

Both only move frames: what to answer is decided by the sans-I/O state machines of
:mod:`turnout.coordination`.
"""

import importlib.util

# Without the extra, say which command installs it instead of a bare ModuleNotFoundError.
if importlib.util.find_spec("websockets") is None:
    raise ImportError("turnout.ws needs websockets: pip install 'turnout[ws]'", name="websockets")

from turnout.coordination import CoordinatorConfig, RequestOutcome, RequestSettled
from turnout.coordination.subjects import (
    coordination_pattern,
    coordination_subject,
    subject_token,
)
from turnout.ws.client import Coordinator, HubRefusedError
from turnout.ws.hub import CONTROL_PATH, COORDINATION_PATH, WATCH_PATH, Hub

__all__ = [
    "CONTROL_PATH",
    "COORDINATION_PATH",
    "WATCH_PATH",
    "Coordinator",
    "CoordinatorConfig",
    "Hub",
    "HubRefusedError",
    "RequestOutcome",
    "RequestSettled",
    "coordination_pattern",
    "coordination_subject",
    "subject_token",
]
