"""Shared fixtures: the two implementations of the subject API, and Hypothesis profiles."""

from __future__ import annotations

import os
from types import ModuleType

import pytest
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
