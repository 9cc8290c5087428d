"""Deprecated: moved to :mod:`turnout.testing.nats_server`; this path goes away in the next
release. Importing it warns (``DeprecationWarning``) and hands out the same objects."""

from __future__ import annotations

import warnings

from turnout.testing.nats_server import (
    START_TIMEOUT,
    NatsCluster,
    NatsServer,
    NatsServerNotFoundError,
    free_port,
    nats_server_binary,
    running_cluster,
    running_server,
    wait_jetstream,
)

__all__ = [
    "START_TIMEOUT",
    "NatsCluster",
    "NatsServer",
    "NatsServerNotFoundError",
    "free_port",
    "nats_server_binary",
    "running_cluster",
    "running_server",
    "wait_jetstream",
]

warnings.warn(
    "turnout.nats_server moved to turnout.testing.nats_server; the old path goes away in the "
    "next release",
    DeprecationWarning,
    stacklevel=2,
)
