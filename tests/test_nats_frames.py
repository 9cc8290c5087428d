"""The NATS frame reader in front of nats-py's parser: runs of routed messages, other
frames whole, bounded buffers (no server needed)."""

from __future__ import annotations

import pytest

from turnout._core import NatsFrames

STREAM = (
    b"INFO {}\r\nMSG events.a 1 2\r\nhi\r\nMSG events.b 1 r.1 0\r\n\r\n"
    b"PING\r\nMSG events.c 9 1\r\nx\r\nHMSG events.d 1 12 13\r\nNATS/1.0\r\n\r\ny\r\n"
)


def test_routed_messages_come_in_runs_and_other_frames_whole() -> None:
    frames = NatsFrames()
    frames.route(1)
    assert frames.feed(STREAM) == [
        b"INFO {}\r\n",
        [(1, "events.a", b"hi"), (1, "events.b", b"")],
        b"PING\r\n",
        b"MSG events.c 9 1\r\nx\r\n",  # sid 9 is not routed: nats-py parses it
        [(1, "events.d", b"y")],  # headers skipped
    ]


def test_a_frame_split_across_reads_waits_for_the_rest() -> None:
    frames = NatsFrames()
    frames.route(1)
    got = []
    for at in range(0, len(STREAM), 7):
        got += frames.feed(STREAM[at : at + 7])
    assert frames.pending == 0
    flat = [m for item in got if isinstance(item, list) for m in item]
    assert [m[1] for m in flat] == ["events.a", "events.b", "events.d"]
    frames.feed(b"MSG events.a 1 5\r\nhe")
    assert frames.pending > 0
    frames.reset()  # a new connection
    assert frames.pending == 0
    assert frames.feed(b"PONG\r\n") == [b"PONG\r\n"]


@pytest.mark.parametrize(
    "stream",
    [
        b"MSG a 1 99\r\n",  # over max_payload
        b"MSG a 1 -3\r\n",
        b"MSG a 1 2\r\nxyz\r\n",  # the payload does not end where its size says
        b"x" * 5000,  # no line end within the control line limit
    ],
)
def test_a_stream_that_cannot_be_read_is_a_value_error(stream: bytes) -> None:
    frames = NatsFrames(max_payload=16)
    frames.route(1)
    with pytest.raises(ValueError):
        frames.feed(stream)
    assert frames.pending == 0
