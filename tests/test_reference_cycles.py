"""Objects of the Rust extension that hold Python objects take part in garbage collection:
a cycle through one of them (a handler that refers back to its bus, a callback that
refers back to its manager) is collected once nothing else refers to it."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from typing import Any

from turnout import Bus, Event, SubjectIndex
from turnout._core import HistoryRing
from turnout.phases import PhaseManager


class Holder:
    """Something a Rust object holds that refers back to it."""

    def __init__(self) -> None:
        self.owner: Any = None
        self.calls = 0

    def __call__(self, *args: object) -> None:
        self.calls += 1

    def clock(self) -> int:
        return 0


def collected(make: Callable[[], weakref.ref[Any]]) -> bool:
    """Whether what `make` builds (and drops) is gone after one full collection."""
    ref = make()
    gc.collect()
    return ref() is None


def test_a_bus_dropped_without_close_is_collected() -> None:
    def make() -> weakref.ref[Any]:
        bus = Bus()
        handler = Holder()
        handler.owner = bus
        bus.subscribe("events.>", handler)
        bus.emit(Event("ping"))
        assert handler.calls == 1
        return weakref.ref(handler)

    assert collected(make)


def test_a_bus_whose_bound_method_handler_refers_back_is_collected() -> None:
    class Service:
        def __init__(self) -> None:
            self.bus = Bus()
            self.bus.subscribe("events.>", self.on_event)
            self.bus.subscribe("events.>", self.on_event, queue="workers")

        def on_event(self, event: Event) -> None:
            pass

    assert collected(lambda: weakref.ref(Service()))


def test_an_index_value_that_refers_back_to_the_index_is_collected() -> None:
    def make() -> weakref.ref[Any]:
        index = SubjectIndex()
        value = Holder()
        value.owner = index
        index.insert("a.*", value)
        index.insert("a.>", value, queue="q")
        assert len(index.match("a.b")) == 2
        assert len(index.match_many(["a.b", "a.c"])[1]) == 2
        return weakref.ref(value)

    assert collected(make)


def test_an_index_holding_itself_is_collected() -> None:
    def make() -> weakref.ref[Any]:
        index = SubjectIndex()
        value = Holder()
        index.insert("a", [index, value])
        return weakref.ref(value)

    assert collected(make)


def test_a_match_result_keeps_what_it_matched_intact() -> None:
    # The index is in a cycle, the result outlives it: the values the result hands out
    # must still be whole objects, not ones the collector has emptied.
    index = SubjectIndex()
    value = Holder()
    value.owner = index
    index.insert("a", value)
    results = [index.match("a"), index.match_many(["a"])[0]]
    ref = weakref.ref(value)
    del index, value
    gc.collect()
    for result in results:
        (found,) = result.plain
        assert isinstance(found.owner, SubjectIndex)
        assert found.calls == 0
    del found, result, results
    gc.collect()
    assert ref() is None


def test_an_event_whose_data_refers_back_to_it_is_collected() -> None:
    def make() -> weakref.ref[Any]:
        holder = Holder()
        holder.owner = Event("ping", data={"holder": holder})
        return weakref.ref(holder)

    assert collected(make)


def test_an_emitted_event_is_tracked_exactly_when_it_could_be_on_a_cycle() -> None:
    kept: list[Event] = []
    with Bus() as bus:
        bus.subscribe("events.>", kept.append)
        bus.emit(Event("plain", data={"n": 1}))
        holder = Holder()
        bus.emit(Event("nested", data={"holder": holder}))
    plain, nested = kept
    # Nothing a plain event holds is tracked: the collector need not walk it.
    assert not gc.is_tracked(plain)
    assert gc.is_tracked(nested)
    holder.owner = nested
    ref = weakref.ref(holder)
    del bus, kept, plain, nested, holder  # the bus's history holds them too
    gc.collect()
    assert ref() is None


def test_a_history_ring_whose_records_or_clock_refer_back_is_collected() -> None:
    def make_records() -> weakref.ref[Any]:
        holder = Holder()
        ring = HistoryRing(0, 0, None)
        ring.append("events.ping", Event("ping", data={"holder": holder}), 1)
        holder.owner = ring
        return weakref.ref(holder)

    def make_clock() -> weakref.ref[Any]:
        holder = Holder()
        holder.owner = HistoryRing(0, 0, holder.clock)
        return weakref.ref(holder)

    assert collected(make_records)
    assert collected(make_clock)


def test_a_phase_manager_whose_callbacks_refer_back_is_collected() -> None:
    def make() -> weakref.ref[Any]:
        holder = Holder()
        manager = PhaseManager()
        holder.owner = manager
        manager.on_phase_changed(holder)
        manager.on_checkpoint(holder)
        manager.register_workflow("w")
        return weakref.ref(holder)

    assert collected(make)


class WorkspaceName(str):
    """A ``str`` subclass: its instances have attributes, so they can refer back."""

    update: Any = None


def test_a_build_update_named_by_a_str_subclass_that_refers_back_is_collected() -> None:
    # A build update decoded in Rust is left untracked by the collector: it must hold no
    # object that could lead back to it, so a routed name of a ``str`` subclass is copied
    # to a plain ``str`` rather than shared.
    from uuid import UUID

    from turnout.workspace import WorkspaceBuildUpdate
    from turnout.workspace._build_update import decode_routed_many, decode_routed_update

    uuid = UUID("0b9e6a4c-6f6e-4d1e-9a57-3c2f0d1e2a3b")
    message = WorkspaceBuildUpdate(uuid, "ws-1", uuid, "start", "running", 1).to_json()

    def decoded_one() -> weakref.ref[Any]:
        name = WorkspaceName("ws-1")
        name.update = decode_routed_update(message, name)
        assert type(name.update.workspace_name) is str
        assert name.update.workspace_name == name
        return weakref.ref(name)

    def decoded_in_a_batch() -> weakref.ref[Any]:
        name = WorkspaceName("ws-1")
        (name.update,), left = decode_routed_many([message], name)
        assert left == 0 and type(name.update.workspace_name) is str
        return weakref.ref(name)

    assert collected(decoded_one)
    assert collected(decoded_in_a_batch)
