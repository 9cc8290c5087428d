"""The bus's public names are importable from ``turnout``, and importing
``turnout`` alone does not load the bus (its modules load when a name is first used)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import turnout

# The bus's public names and types, by defining module.
EXPECTED = (
    ("turnout.bus", "Bus BusClosedError Message Stream Subscription"),
    ("turnout.events", "Event EventDecodeError EventEncodeError"),
    ("turnout.history", "FileHistory History HistoryFormatError HistoryLockedError MemoryHistory"),
)
CASES = [(name, module) for module, names in EXPECTED for name in names.split()]


@pytest.mark.parametrize(("name", "module"), CASES)
def test_name_is_the_modules_own(name: str, module: str) -> None:
    assert getattr(turnout, name) is getattr(importlib.import_module(module), name)
    assert name in turnout.__all__
    assert name in dir(turnout)


def test_from_import_and_a_working_bus() -> None:
    from turnout import Bus, Event, MemoryHistory

    got: list[Event] = []
    with Bus("n1", history=MemoryHistory(max_msgs=5)) as bus:
        bus.subscribe("events.>", got.append)
        bus.emit(Event("tool.started", data={"tool": "x"}))
        assert [e.node for e in got] == ["n1"]
        assert len(bus.history("events.>")) == 1


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Buss'"):
        turnout.Buss  # noqa: B018 - the access is the test


def test_import_turnout_loads_no_bus() -> None:
    code = (
        "import sys, turnout\n"
        "heavy = [m for m in ('asyncio', 'turnout.bus', 'turnout.history') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
        "turnout.Bus\n"
        "print('turnout.bus' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split("\n")
    assert out[0] == ""
    assert out[1] == "True"


def test_dir_lists_the_public_names_only() -> None:
    turnout.Bus  # noqa: B018 - loads turnout.bus, which must not show up either
    assert dir(turnout) == sorted(turnout.__all__)
    assert not {"TYPE_CHECKING", "annotations", "importlib", "bus"} & set(dir(turnout))


@pytest.mark.parametrize(
    ("module", "missing", "message"),
    [
        ("turnout.nats", "nats", "turnout.nats needs nats-py: pip install 'turnout[nats]'"),
        ("turnout.ws", "websockets", "turnout.ws needs websockets: pip install 'turnout[ws]'"),
    ],
)
def test_a_missing_extra_names_the_command_that_installs_it(
    module: str, missing: str, message: str
) -> None:
    # A None entry in sys.modules is how Python marks a module as not importable.
    code = (
        f"import sys\nsys.modules[{missing!r}] = None\n"
        f"try:\n    import {module}\nexcept ImportError as error:\n"
        "    print(type(error).__name__, error, sep=': ')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert out == f"ImportError: {message}"
