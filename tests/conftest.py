"""Shared fixtures: the two implementations of the subject API, the bus factories, and
Hypothesis profiles. The servers (``nats_server``, ``own_nats_server``, ``nats_cluster``)
come from turnout's own pytest plugin, as they do for its users."""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import ModuleType

import pytest
from bus_factories import EmbeddedBuses, NatsBuses
from hypothesis import settings

import turnout
import turnout.reference

# "ci" keeps the whole suite to about a minute; "long" is for a soak before a release:
#     TURNOUT_HYPOTHESIS_PROFILE=long pytest tests/test_conformance.py
settings.register_profile("ci", max_examples=500, deadline=None, derandomize=False)
settings.register_profile("long", max_examples=10_000, deadline=None, derandomize=False)
settings.load_profile(os.environ.get("TURNOUT_HYPOTHESIS_PROFILE", "ci"))

IMPLEMENTATIONS = {"rust": turnout, "reference": turnout.reference}


@pytest.fixture(params=sorted(IMPLEMENTATIONS), ids=sorted(IMPLEMENTATIONS))
def impl(request: pytest.FixtureRequest) -> ModuleType:
    """The module under test: ``turnout`` (the Rust core) or ``turnout.reference``."""
    return IMPLEMENTATIONS[request.param]


@pytest.fixture(params=["embedded", "nats"])
def make_bus(request: pytest.FixtureRequest) -> Iterator[EmbeddedBuses | NatsBuses]:
    """Makes buses like ``Bus(...)``: embedded, or on NATS with JetStream history."""
    buses: EmbeddedBuses | NatsBuses
    if request.param == "nats":
        buses = NatsBuses(request.getfixturevalue("nats_server"))
    else:
        buses = EmbeddedBuses()
    try:
        yield buses
    finally:
        buses.close_all()


def pytest_report_header() -> str:
    # CI tests installed wheels: the header shows which turnout the run imported.
    return f"turnout {turnout.__version__} from {os.path.dirname(turnout.__file__)}"
