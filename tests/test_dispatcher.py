"""WorkspaceDispatcher and its channels (coder's autostart dispatcher), and the
raw-bytes router against its pure-Python twin."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import operator
import pickle
from collections.abc import AsyncIterator, Iterable, Sequence
from uuid import UUID

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from turnout._core import KeyRouter as RustKeyRouter
from turnout._core import RoundWaker
from turnout.workspace import (
    ChannelClosedError,
    LazyBuildUpdate,
    MalformedMessageError,
    ProvisionerJobStatus,
    PythonKeyRouter,
    WorkspaceBuildUpdate,
    WorkspaceDispatcher,
    WorkspaceTransition,
)
from turnout.workspace._build_update import (
    BUILD_UPDATE_DECODER,
    decode_routed_many,
    decode_routed_update,
)

pytestmark = pytest.mark.timeout(120)

WS = UUID("0b9e6a4c-6f6e-4d1e-9a57-3c2f0d1e2a3b")
BUILD = UUID("9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a")


def update(name: str, number: int = 1, status: str = "running") -> WorkspaceBuildUpdate:
    return WorkspaceBuildUpdate(WS, name, BUILD, "start", status, number)


async def source_of(items: Iterable[object]) -> AsyncIterator[WorkspaceBuildUpdate]:
    for item in items:
        yield item  # type: ignore[misc]


async def batches_of(batches: Iterable[Sequence[bytes]]) -> AsyncIterator[Sequence[bytes]]:
    for batch in batches:
        yield batch


async def drain(dispatcher: WorkspaceDispatcher) -> dict[str, list[WorkspaceBuildUpdate]]:
    """Reads every channel to its end (hangs, up to the timeout, if one never closes)."""
    got: dict[str, list[WorkspaceBuildUpdate]] = {}
    for name, channel in dispatcher.channels.items():
        got[name] = [item async for item in channel]
    return got


async def until(condition: object) -> None:
    """Lets the loop run until ``condition()`` holds (bounded by the test timeout)."""
    assert callable(condition)
    while not condition():
        await asyncio.sleep(0)


# --- channels close when the source ends ---------------------------------------------------------


async def test_source_end_closes_every_channel() -> None:
    dispatcher = WorkspaceDispatcher(["a", "b", "c"])
    task = await dispatcher.start(source_of([update("a", 1), update("a", 2), update("b", 1)]))
    got = await drain(dispatcher)  # would hang if any channel stayed open
    await task
    assert got == {"a": [update("a", 1), update("a", 2)], "b": [update("b", 1)], "c": []}
    assert all(channel.closed for channel in dispatcher.channels.values())
    assert dispatcher.closed
    assert dispatcher.task is task


async def test_raw_source_end_closes_every_channel() -> None:
    dispatcher = WorkspaceDispatcher(["a", "b"])
    batches = [[update("a", 1).to_json()], [], [update("a", 2).to_json(), update("b").to_json()]]
    task = await dispatcher.start_raw(batches_of(batches))
    got = await drain(dispatcher)
    await task
    assert got == {"a": [update("a", 1), update("a", 2)], "b": [update("b")]}


async def test_a_failing_source_still_closes_the_channels() -> None:
    async def failing() -> AsyncIterator[WorkspaceBuildUpdate]:
        yield update("a")
        raise ConnectionError("source lost")

    dispatcher = WorkspaceDispatcher(["a", "b"])
    with pytest.raises(ConnectionError):
        await dispatcher.run(failing())
    assert await drain(dispatcher) == {"a": [update("a")], "b": []}


async def test_cancelling_the_dispatcher_closes_the_channels() -> None:
    never_ends = asyncio.Event()

    async def endless() -> AsyncIterator[WorkspaceBuildUpdate]:
        yield update("a")
        await never_ends.wait()
        yield update("a", 2)

    dispatcher = WorkspaceDispatcher(["a"])
    task = await dispatcher.start(endless())
    await until(lambda: len(dispatcher.channels["a"]) == 1)
    task.cancel()
    assert await drain(dispatcher) == {"a": [update("a")]}


async def test_one_source_at_a_time_and_no_feeding_after_close() -> None:
    dispatcher = WorkspaceDispatcher(["a"])
    gate = asyncio.Event()

    async def waiting() -> AsyncIterator[WorkspaceBuildUpdate]:
        await gate.wait()
        yield update("a")

    task = await dispatcher.start(waiting())
    with pytest.raises(RuntimeError, match="already has a source"):
        await dispatcher.start(source_of([]))
    gate.set()
    await task
    for feed in (
        dispatcher.put(update("a")),
        dispatcher.put_raw([update("a").to_json()]),
        dispatcher.run(source_of([])),
    ):
        with pytest.raises(RuntimeError, match="closed"):
            await feed


# --- unknown and malformed -------------------------------------------------------------------


async def test_unknown_names_and_malformed_items_are_counted() -> None:
    dispatcher = WorkspaceDispatcher(["a"])
    items: list[object] = [update("a"), update("ghost"), update("ghost"), "not an update", None]
    await dispatcher.run(source_of(items))
    stats = dispatcher.stats()
    assert (stats["routed"], stats["unknown"], stats["malformed"]) == (1, 2, 2)


async def test_raw_unknown_and_malformed_are_counted() -> None:
    dispatcher = WorkspaceDispatcher(["a"])
    batch = [
        update("a").to_json(),
        update("ghost").to_json(),
        b"{not json",
        b"[1, 2]",
        b'{"workspace_name": 7}',
        b'{"name": "a"}',
    ]
    await dispatcher.put_raw(batch)
    stats = dispatcher.stats()
    assert (stats["routed"], stats["unknown"], stats["malformed"]) == (1, 1, 4)


async def test_raw_batch_of_non_bytes_routes_nothing() -> None:
    dispatcher = WorkspaceDispatcher(["a"])
    with pytest.raises(TypeError):
        await dispatcher.put_raw([update("a").to_json(), "a string"])  # type: ignore[list-item]
    assert dispatcher.stats()["routed"] == 0


async def test_undecodable_raw_update_is_skipped_and_counted_by_the_channel() -> None:
    dispatcher = WorkspaceDispatcher(["a"])
    # The router only reads workspace_name; the rest is checked when a consumer reads it.
    bad = orjson.dumps({"workspace_name": "a", "job_status": "exploded"})
    await dispatcher.put_raw([bad, update("a", 2).to_json()])
    dispatcher.close()
    assert [u async for u in dispatcher.channels["a"]] == [update("a", 2)]
    assert dispatcher.channels["a"].undecodable == 1
    assert dispatcher.stats()["undecodable"] == 1


# --- overflow ----------------------------------------------------------------------------------


async def test_block_one_full_channel_stalls_all() -> None:
    dispatcher = WorkspaceDispatcher(["a", "b"], buffer=1)
    task = await dispatcher.start(source_of([update("a", 1), update("a", 2), update("b", 1)]))
    await until(lambda: dispatcher.stats()["stalls"] >= 1)
    # "a" is full and unread: the dispatcher waits on it, so "b" gets nothing yet.
    assert len(dispatcher.channels["a"]) == 1
    assert len(dispatcher.channels["b"]) == 0
    assert not task.done()
    assert await dispatcher.channels["a"].get() == update("a", 1)
    got = await drain(dispatcher)
    await task
    assert got == {"a": [update("a", 2)], "b": [update("b", 1)]}
    assert dispatcher.stats()["dropped"] == 0


async def test_raw_block_one_full_channel_stalls_all() -> None:
    dispatcher = WorkspaceDispatcher(["a", "b"], buffer=1)
    batch = [update("a", 1).to_json(), update("a", 2).to_json(), update("b", 1).to_json()]
    feeding = asyncio.ensure_future(dispatcher.put_raw(batch))
    await until(lambda: dispatcher.stats()["stalls"] >= 1)
    assert len(dispatcher.channels["b"]) == 0
    assert dispatcher.channels["a"].get_nowait() == update("a", 1)
    await feeding
    dispatcher.close()
    assert await drain(dispatcher) == {"a": [update("a", 2)], "b": [update("b", 1)]}


@pytest.mark.parametrize("raw", [False, True])
async def test_close_while_stalled_ends_the_feed_instead_of_spinning(raw: bool) -> None:
    dispatcher = WorkspaceDispatcher(["a"], buffer=1)
    updates = [update("a", 1), update("a", 2)]
    if raw:
        feeding = asyncio.ensure_future(dispatcher.put_raw([u.to_json() for u in updates]))
    else:
        feeding = await dispatcher.start(source_of(updates))
    await until(lambda: dispatcher.stats()["stalls"] >= 1)
    dispatcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        await feeding
    assert dispatcher.stats()["routed"] == 1
    assert await drain(dispatcher) == {"a": [update("a", 1)]}


async def test_drop_oldest_channel_counts_drops_and_never_stalls() -> None:
    dispatcher = WorkspaceDispatcher(["a", "b"], buffer=2, channel_overflow={"a": "drop_oldest"})
    assert dispatcher.channels["a"].overflow == "drop_oldest"
    assert dispatcher.channels["b"].overflow == "block"
    await dispatcher.run(source_of([update("a", n) for n in range(1, 6)] + [update("b")]))
    assert dispatcher.channels["a"].dropped == 3
    stats = dispatcher.stats()
    assert (stats["dropped"], stats["stalls"], stats["routed"]) == (3, 0, 6)
    assert await drain(dispatcher) == {"a": [update("a", 4), update("a", 5)], "b": [update("b")]}


async def test_raw_drop_oldest_in_one_batch_and_across_batches() -> None:
    dispatcher = WorkspaceDispatcher(["a"], buffer=3, overflow="drop_oldest")
    await dispatcher.put_raw([update("a", n).to_json() for n in range(1, 3)])  # 2 buffered
    await dispatcher.put_raw([update("a", n).to_json() for n in range(3, 5)])  # 1 dropped
    assert dispatcher.channels["a"].dropped == 1
    await dispatcher.put_raw([update("a", n).to_json() for n in range(5, 10)])  # 5 > buffer
    assert dispatcher.channels["a"].dropped == 1 + 3 + 2
    dispatcher.close()
    numbers = [u.build_number async for u in dispatcher.channels["a"]]
    assert numbers == [7, 8, 9]


# --- consuming ---------------------------------------------------------------------------------


async def test_channel_reads() -> None:
    dispatcher = WorkspaceDispatcher(["a"], buffer=8)
    channel = dispatcher.channels["a"]
    with pytest.raises(asyncio.QueueEmpty):
        channel.get_nowait()
    waiter = asyncio.ensure_future(channel.get_many())
    await asyncio.sleep(0)
    await dispatcher.put_raw([update("a", n).to_json() for n in range(1, 4)])
    assert [u.build_number for u in await waiter] == [1, 2, 3]
    await dispatcher.put(update("a", 4))
    await dispatcher.put(update("a", 5))
    assert [u.build_number for u in await channel.get_many(limit=1)] == [4]
    dispatcher.close()
    assert channel.closed
    assert await channel.get() == update("a", 5)
    assert await channel.get_many() == []
    with pytest.raises(ChannelClosedError):
        await channel.get()
    with pytest.raises(ChannelClosedError):
        channel.get_nowait()
    with pytest.raises(ValueError):
        await channel.get_many(limit=0)


async def test_batches_hand_each_arrival_at_once_until_closed() -> None:
    dispatcher = WorkspaceDispatcher(["a"], buffer=8)
    channel = dispatcher.channels["a"]
    seen: list[list[int]] = []

    async def consume() -> None:
        async for batch in channel.batches(limit=3):
            seen.append([u.build_number for u in batch])

    consumer = asyncio.ensure_future(consume())
    await asyncio.sleep(0)
    await dispatcher.put_raw([update("a", n).to_json() for n in range(1, 5)])
    await asyncio.sleep(0)
    await dispatcher.put_raw([update("a", 5).to_json(), b'{"workspace_name": "a"}'])
    dispatcher.close()
    await consumer
    # A raw message that routes but does not decode is skipped and counted.
    assert seen == [[1, 2, 3], [4], [5]]
    assert channel.undecodable == 1


async def test_a_cancelled_reader_leaves_the_channel_usable() -> None:
    dispatcher = WorkspaceDispatcher(["a"])
    channel = dispatcher.channels["a"]
    reader = asyncio.ensure_future(channel.get())
    await asyncio.sleep(0)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    await dispatcher.put(update("a"))
    assert await channel.get() == update("a")


async def test_a_big_raw_batch_routes_every_message_in_order() -> None:
    names = [f"ws-{i}" for i in range(50)]
    # 50 known names, then 10 messages for an unknown one, over and over.
    messages = [
        update(names[i % 60] if i % 60 < 50 else "ghost", i).to_json() for i in range(5_000)
    ]
    dispatcher = WorkspaceDispatcher(names, buffer=len(messages))
    await dispatcher.put_raw(messages)
    dispatcher.close()
    got = await drain(dispatcher)
    expected: dict[str, list[int]] = {name: [] for name in names}
    for i in range(len(messages)):
        if i % 60 < 50:
            expected[names[i % 60]].append(i)
    assert {name: [u.build_number for u in us] for name, us in got.items()} == expected
    assert dispatcher.stats()["unknown"] == sum(1 for i in range(len(messages)) if i % 60 >= 50)


def test_constructor_checks() -> None:
    dispatcher = WorkspaceDispatcher(["a", "a", "b"])
    assert list(dispatcher.channels) == ["a", "b"]
    assert dispatcher.channels["a"].capacity == 16
    assert dispatcher.stats()["channels"] == 2
    with pytest.raises(TypeError):
        dispatcher.channels["c"] = dispatcher.channels["a"]  # type: ignore[index]
    with pytest.raises(ValueError):
        WorkspaceDispatcher(["a"], buffer=0)
    with pytest.raises(ValueError):
        WorkspaceDispatcher(["a"], overflow="drop_newest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown workspace"):
        WorkspaceDispatcher(["a"], channel_overflow={"b": "drop_oldest"})
    with pytest.raises(TypeError):
        WorkspaceDispatcher(["a", 1])  # type: ignore[list-item]


# --- the raw path and the object path route identically --------------------------------------

NAMES = ["alpha", "beta", "gamma", "δέλτα"]
ROUTABLE = [*NAMES, "ghost", ""]

valid_updates = st.builds(
    WorkspaceBuildUpdate,
    workspace_id=st.uuids(),
    workspace_name=st.sampled_from(ROUTABLE),
    build_id=st.uuids(),
    transition=st.sampled_from(["start", "stop", "delete"]),
    job_status=st.sampled_from(["pending", "running", "succeeded", "canceling", "canceled"]),
    build_number=st.integers(-(2**31), 2**31 - 1),
)
malformed_messages = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"", b"{", b"null", b"[]", b'"alpha"', b'{"workspace_name":null}']),
    st.builds(
        lambda v: orjson.dumps({"workspace_name": v}),
        st.integers(-(2**63), 2**63) | st.lists(st.none()),
    ),
)
message_items = st.lists(
    st.one_of(valid_updates.map(lambda u: u.to_json()), malformed_messages), max_size=60
)


async def route_both_ways(
    messages: list[bytes], cuts: list[int]
) -> tuple[dict[str, list[WorkspaceBuildUpdate]], ...]:
    # Raw path, the messages cut into batches.
    raw = WorkspaceDispatcher(NAMES, buffer=max(1, len(messages)))
    bounds = sorted({0, len(messages), *(c % (len(messages) + 1) for c in cuts)})
    await raw.run_raw(batches_of(messages[a:b] for a, b in itertools.pairwise(bounds)))
    # Object path: what decodes becomes an update, what does not is malformed.
    objects = WorkspaceDispatcher(NAMES, buffer=max(1, len(messages)))
    decoded: list[object] = []
    for message in messages:
        try:
            decoded.append(WorkspaceBuildUpdate.from_json(message))
        except MalformedMessageError:
            decoded.append(message)
    await objects.run(source_of(decoded))
    raw_stats, object_stats = raw.stats(), objects.stats()
    for key in ("routed", "unknown", "malformed"):
        assert raw_stats[key] == object_stats[key], key
    return await drain(raw), await drain(objects)


@given(messages=message_items, cuts=st.lists(st.integers(0, 100), max_size=5))
def test_raw_path_and_object_path_route_identically(messages: list[bytes], cuts: list[int]) -> None:
    raw_routed, object_routed = asyncio.run(route_both_ways(messages, cuts))
    assert raw_routed == object_routed


# --- the Rust router against the pure-Python router ------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
keys = st.sampled_from(["a", "b", "é", "\U0001f680", 'a"b', "a\\b", "", "line\nbreak"])
documents = st.dictionaries(
    st.sampled_from(["workspace_name", "other", "workspace_nam", "Workspace_name"]),
    st.one_of(keys, json_values),
    max_size=4,
)


def spellings(document: dict[str, object]) -> st.SearchStrategy[bytes]:
    """The document as orjson writes it, as stdlib json writes it (\\u escapes, spaces),
    or cut short."""
    compact = orjson.dumps(document)
    escaped = json.dumps(document, ensure_ascii=True, indent=1).encode()
    return st.sampled_from([compact, escaped, compact[: len(compact) // 2], b" " + compact + b"\n"])


router_messages = st.lists(
    st.one_of(documents.flatmap(spellings), st.binary(max_size=24), json_values.map(orjson.dumps)),
    max_size=30,
)


@given(messages=router_messages)
def test_rust_router_matches_the_python_router(messages: list[bytes]) -> None:
    known = ["a", "é", "\U0001f680", 'a"b', "line\nbreak"]
    rust = RustKeyRouter(known).route_batch(messages)
    python = PythonKeyRouter(known).route_batch(messages)
    assert rust == python
    grouped, unknown, malformed = rust
    # Every message once, as the very object given, in batch order within its key.
    assert sum(map(len, grouped.values())) + len(unknown) + len(malformed) == len(messages)
    for group in grouped.values():
        positions = [next(i for i, m in enumerate(messages) if m is x) for x in group]
        assert positions == sorted(positions)


update_messages = st.lists(
    st.one_of(
        st.builds(
            lambda name, number, status: update(name, number, status).to_json(),
            st.sampled_from(["a", "é", "zz"]),
            st.integers(-(2**31), 2**31 - 1),
            st.sampled_from(["running", "succeeded", "bogus"]),
        ),
        st.binary(max_size=24),
    ),
    max_size=30,
)


@given(messages=st.tuples(update_messages, router_messages).map(lambda pair: pair[0] + pair[1]))
def test_route_updates_routes_as_route_batch_and_reads_decode_as_from_json(
    messages: list[bytes],
) -> None:
    router = RustKeyRouter(["a", "é", "\U0001f680"])
    grouped, unknown, malformed = router.route_updates(messages, BUILD_UPDATE_DECODER)
    plain_grouped, plain_unknown, plain_malformed = router.route_batch(messages)
    assert (unknown, malformed) == (plain_unknown, plain_malformed)
    assert list(grouped) == list(plain_grouped)
    for name, items in grouped.items():
        # The very bytes objects: nothing is decoded or made per message when routing.
        assert len(items) == len(plain_grouped[name])
        assert all(map(operator.is_, items, plain_grouped[name]))
        # A channel's read decodes the common shape in Rust, sharing the key object.
        decoded, left = decode_routed_many(items, name)
        assert left == sum(isinstance(item, bytes) for item in decoded)
        for item, message in zip(decoded, items, strict=True):
            if isinstance(item, bytes):
                # Only a message of another shape is left as bytes, the very object.
                assert item is message
                continue
            assert type(item) is LazyBuildUpdate
            assert item.workspace_name is name
            assert_same_update(item, WorkspaceBuildUpdate.from_json(message))


def test_route_updates_needs_a_router_by_workspace_name() -> None:
    with pytest.raises(ValueError, match="workspace_name"):
        RustKeyRouter(["a"], field="name").route_updates([], BUILD_UPDATE_DECODER)


@pytest.mark.parametrize(
    "message",
    [
        b'{"workspace_name":"\\ud800"}',  # a lone surrogate is not a string
        b'{"workspace_name":"a","workspace_name":"b"}',  # the last occurrence counts
        b'{"workspace_name":"b","workspace_name":"a"}',
        b'{"workspace_name":"\\u0061"}',
        b'\xef\xbb\xbf{"workspace_name":"a"}',  # a byte order mark is not JSON
        b'{"workspace_name":"a"} x',
        b'{"workspace_name":"a"}{}',
    ],
)
def test_routers_agree_on_json_corner_cases(message: bytes) -> None:
    assert RustKeyRouter(["a"]).route_batch([message]) == PythonKeyRouter(["a"]).route_batch(
        [message]
    )


def test_python_router_contract() -> None:
    router = PythonKeyRouter(["a", "a", "b"], field="name")
    assert router.field == "name"
    assert len(router) == 2
    message = b'{"name":"a"}'
    grouped, unknown, malformed = router.route_batch(iter([message]))
    assert grouped["a"][0] is message
    assert (unknown, malformed) == ([], [])
    with pytest.raises(TypeError):
        router.route_batch([bytearray(b"{}")])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        PythonKeyRouter([1])  # type: ignore[list-item]


# --- the Rust decoder of routed messages -------------------------------------------------------


def test_routed_updates_decode_as_from_json_does() -> None:
    base = update("ws-é<&>", 7, "succeeded").to_json()
    variants = [
        base,
        base.replace(b'"ws-', b'"\\u0077s-'),  # an escape in the name
        base.replace(b"7}", b"-7}"),
        base.replace(b"7}", b"2147483647}"),
        base.replace(b"7}", b"2147483648}"),  # past int32: refused
        base.replace(b"7}", b"7.0}"),
        base.replace(b'"succeeded"', b'"bogus"'),
        base.replace(b'"succeeded"', b"null"),
        base.replace(b',"build_number":7', b""),
        base + b" ",
        base[:-1] + b',"extra":[1,{"a":2}]}',
        base[:-1] + b',"build_number":8}',  # the last repeat wins
        b"[1]",
        b"not json",
    ]
    uuid_text = str(WS)
    variants.append(base.replace(uuid_text.encode(), uuid_text.upper().encode()))
    variants.append(base.replace(uuid_text.encode(), ("{" + uuid_text + "}").encode()))
    variants.append(base.replace(uuid_text.encode(), uuid_text.replace("-", "").encode()))
    for message in variants:
        try:
            expected: object = WorkspaceBuildUpdate.from_json(message)
        except MalformedMessageError as exc:
            expected = str(exc)
        try:
            got: object = decode_routed_update(message)
        except MalformedMessageError as exc:
            got = str(exc)
        assert got == expected, message
        assert expected == got, message
        if isinstance(got, WorkspaceBuildUpdate):
            assert isinstance(expected, WorkspaceBuildUpdate)
            assert_same_update(got, expected)


def assert_same_update(got: WorkspaceBuildUpdate, expected: WorkspaceBuildUpdate) -> None:
    """``got`` (a lazily decoded update or a plain one) behaves as ``expected`` does."""
    assert type(got) in (WorkspaceBuildUpdate, LazyBuildUpdate)
    for field in dataclasses.fields(WorkspaceBuildUpdate):
        mine, theirs = getattr(got, field.name), getattr(expected, field.name)
        assert (type(mine), mine) == (type(theirs), theirs), field.name
    assert hash(got) == hash(expected)
    assert {got} == {expected}
    assert repr(got) == repr(expected)
    assert got.to_json() == expected.to_json()
    got.validate()
    copied = pickle.loads(pickle.dumps(got))
    assert type(copied) is WorkspaceBuildUpdate
    assert copied == expected
    match got:
        case WorkspaceBuildUpdate(workspace_name=name, build_number=number):
            assert (name, number) == (expected.workspace_name, expected.build_number)
        case _:
            raise AssertionError("no match")


def test_a_lazy_update_differs_from_one_with_another_field() -> None:
    message = update("a", 7, "succeeded").to_json()
    lazy = decode_routed_update(message, "a")
    assert type(lazy) is LazyBuildUpdate
    assert lazy.workspace_name is not None
    plain = WorkspaceBuildUpdate.from_json(message)
    for field, other in [
        ("workspace_id", BUILD),
        ("workspace_name", "b"),
        ("build_id", WS),
        ("transition", WorkspaceTransition.STOP),
        ("job_status", ProvisionerJobStatus.RUNNING),
        ("build_number", 8),
    ]:
        changed = dataclasses.replace(plain, **{field: other})
        assert lazy != changed, field
        assert changed != lazy, field
        assert lazy != decode_routed_update(changed.to_json(), "a"), field
    assert lazy == decode_routed_update(message)
    assert lazy != message


async def test_a_batch_read_mixes_both_decoders_in_order() -> None:
    dispatcher = WorkspaceDispatcher(["a"], buffer=8)
    braced = update("a", 2).to_json().replace(str(WS).encode(), b"{" + str(WS).encode() + b"}")
    await dispatcher.put(update("a", 0))  # an object, buffered as it is
    await dispatcher.put_raw([update("a", 1).to_json(), braced, b'{"workspace_name": "a"}'])
    await dispatcher.put_raw([update("a", 3).to_json()])
    channel = dispatcher.channels["a"]
    assert [u.build_number for u in await channel.get_many(limit=3)] == [0, 1, 2]
    assert [u.build_number for u in await channel.get_many()] == [3]
    assert channel.undecodable == 1


# --- readers woken together -------------------------------------------------------------------


async def test_a_reader_cancelled_before_it_runs_leaves_its_updates_buffered() -> None:
    dispatcher = WorkspaceDispatcher(["a"], buffer=8)
    channel = dispatcher.channels["a"]
    reader = asyncio.ensure_future(channel.get())
    await until(lambda: channel._getters)  # waiting
    await dispatcher.put_raw([update("a", 1).to_json()])  # wakes it ...
    reader.cancel()  # ... and it is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert channel.get_nowait() == update("a", 1)


async def test_a_cancelled_reader_is_not_woken_and_the_next_reader_gets_the_update() -> None:
    dispatcher = WorkspaceDispatcher(["a"], buffer=8)
    channel = dispatcher.channels["a"]
    first = asyncio.ensure_future(anext(aiter(channel.batches())))
    await until(lambda: channel._getters)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert not channel._getters
    second = asyncio.ensure_future(channel.get_many())
    await until(lambda: channel._getters)
    await dispatcher.put_raw([update("a", 1).to_json(), update("a", 2).to_json()])
    assert [u.build_number for u in await second] == [1, 2]


async def test_every_reader_a_batch_wakes_reads_its_share_in_order() -> None:
    names = [f"w{i}" for i in range(50)]
    dispatcher = WorkspaceDispatcher(names, buffer=64)
    got: dict[str, list[int]] = {name: [] for name in names}

    async def read(name: str) -> None:
        async for batch in dispatcher.channels[name].batches():
            got[name] += [u.build_number for u in batch]

    readers = [asyncio.ensure_future(read(name)) for name in names]
    for number in range(1, 4):
        await until(lambda: all(c._getters for c in dispatcher.channels.values()))
        await dispatcher.put_raw([update(name, number).to_json() for name in reversed(names)])
    dispatcher.close()
    await asyncio.gather(*readers)
    assert got == {name: [1, 2, 3] for name in names}


async def test_a_channel_wait_keeps_the_future_protocol() -> None:
    loop = asyncio.get_running_loop()
    waker = RoundWaker()
    wait = waker.wait()
    assert wait.get_loop() is loop
    assert not wait.done()
    with pytest.raises(asyncio.InvalidStateError):
        wait.result()
    called: list[object] = []
    wait.add_done_callback(called.append)
    wait.add_done_callback(print)
    assert wait.remove_done_callback(print) == 1
    waker.wake(waker.wait())  # another wait: one loop callback serves both
    waker.wake(wait)
    waker.wake(wait)  # a second wake does nothing
    assert wait.done() and not wait.cancelled() and wait.result() is None
    await until(lambda: called)
    assert called == [wait]
    late: list[object] = []
    wait.add_done_callback(late.append)  # on a done wait: scheduled at once
    await until(lambda: late)
    assert not wait.cancel()

    cancelled = waker.wait()
    cancelled_seen: list[object] = []
    cancelled.add_done_callback(cancelled_seen.append)
    assert cancelled.cancel("stop")
    assert cancelled.cancelled()
    with pytest.raises(asyncio.CancelledError, match="stop"):
        cancelled.result()
    await until(lambda: cancelled_seen)
    waker.wake(cancelled)  # nothing: it is done


async def test_a_failing_wake_callback_goes_to_the_loop_and_the_others_still_run() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    waker = RoundWaker()
    first, second = waker.wait(), waker.wait()
    ran: list[object] = []

    def fail(_: object) -> None:
        raise RuntimeError("boom")

    first.add_done_callback(fail)
    second.add_done_callback(ran.append)
    waker.wake(first)
    waker.wake(second)
    await until(lambda: ran)
    assert isinstance(reported[0]["exception"], RuntimeError)
    loop.set_exception_handler(None)


def test_a_waker_with_readers_to_wake_refuses_waits_from_another_loop() -> None:
    waker = RoundWaker()

    def wake_one() -> None:
        waker.wake(waker.wait())  # its run is scheduled on this loop, which stops first
        first.stop()

    async def wait_on_another_loop() -> None:
        with pytest.raises(RuntimeError, match="one event loop"):
            waker.wait()

    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        first.call_soon(wake_one)
        first.run_forever()
        second.run_until_complete(wait_on_another_loop())
    finally:
        first.close()
        second.close()
