"""turnout's pytest plugin, loaded by pytest through the ``pytest11`` entry point once turnout
is installed: fixtures of real servers on loopback, killed after their tests.

- ``nats_server``: one nats-server with JetStream, shared by the session (tests share it,
  so they use their own subjects and streams).
- ``own_nats_server``: a nats-server of one test alone, to kill, restart or fill.
- ``nats_cluster``: three servers with routes and clustered JetStream, of one test alone;
  ``cluster.servers[i].kill()`` and ``.start()`` take a member down and back.
- ``turnout_hub``: ``turnout hub`` on a free port with a fresh bearer token
  (``.url``, ``.watch_url``, ``.token``, ``.headers``).
- ``turnout_bus``: an embedded :class:`turnout.Bus`, closed after the test.

Loading the plugin costs nothing and needs nothing: every import of turnout's optional
parts (nats-py for the cluster's JetStream wait, websockets for the hub, the
``nats-server`` binary) happens inside the fixture that needs it, so a project using only
some fixtures needs only their extras. A user's fixture of the same name takes precedence,
as pytest gives a conftest.py's fixtures priority over a plugin's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from turnout.bus import Bus
    from turnout.testing.hub_process import HubProcess
    from turnout.testing.nats_server import NatsCluster, NatsServer


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One nats-server with JetStream on a free loopback port, shared by the session and
    killed at its end."""
    from turnout.testing.nats_server import running_server

    with running_server(tmp_path_factory.mktemp("nats")) as server:
        yield server


@pytest.fixture
def own_nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A nats-server with JetStream of this test alone (to kill, restart or fill), killed
    after it."""
    from turnout.testing.nats_server import running_server

    with running_server(tmp_path_factory.mktemp("nats-own")) as server:
        yield server


@pytest.fixture
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """Three nats-servers routed to each other with clustered JetStream, of this test
    alone; killed after it. With nats-py installed, JetStream's meta leader is elected
    before the test starts."""
    import importlib.util

    from turnout.testing.nats_server import running_cluster

    with running_cluster(tmp_path_factory.mktemp("nats-cluster")) as cluster:
        if importlib.util.find_spec("nats") is not None:
            asyncio.run(cluster.wait_jetstream())
        yield cluster


@pytest.fixture
def turnout_hub() -> Iterator[HubProcess]:
    """``turnout hub`` on a free loopback port with a fresh bearer token, on the embedded
    bus; killed after the test."""
    from turnout.testing.hub_process import running_hub

    with running_hub() as hub:
        yield hub


@pytest.fixture
def turnout_bus() -> Iterator[Bus]:
    """An embedded bus (node ``"test"``), closed after the test."""
    from turnout.bus import Bus

    bus = Bus("test")
    try:
        yield bus
    finally:
        bus.close(timeout=10.0)
