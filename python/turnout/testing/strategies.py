"""Hypothesis strategies for NATS subjects, mesh events and coordination messages
(installed with the ``testing`` extra: ``pip install 'turnout[testing]'``).

Subjects and patterns are drawn from a tiny token alphabet (``a``, ``b``, ``c`` unless told
otherwise) so that wildcards really hit and patterns really overlap: with a large
alphabet almost no random subject matches a random pattern and a property test checks
nothing. Every strategy shrinks toward small, readable values: fewer tokens, the first
token of the alphabet, no wildcard, no fraction of a second, UTC, the first message type.

- :func:`literal_subjects`: what a publisher sends (no wildcard tokens).
- :func:`subjects`: what a matcher is given, ``*`` and ``>`` tokens included (taken
  literally there); :func:`malformed_subjects`: strings breaking one rule or another.
- :func:`patterns`: valid subscription patterns, with controls for depth, alphabet and how
  often ``*`` and ``>`` appear.
- :func:`matching_pairs` and :func:`non_matching_pairs`: ``(subject, pattern)`` tuples.
- :func:`go_times`: timestamps as Go writes them (0 to 9 fraction digits, ``Z`` or an
  offset, the zero time); :func:`events`: mesh event envelopes carrying such timestamps.
- :func:`json_values`: JSON as Go reads it back unchanged.
- :func:`ws_messages`: coordination messages of every type with valid payloads.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from hypothesis import strategies as st

from turnout import events as mesh
from turnout import reference
from turnout._wire import is_zero_time, parse_time
from turnout.events import Event
from turnout.logs import LogEntry, LogLevel
from turnout.phases import Phase
from turnout.protocol import (
    CancelPayload,
    CheckpointPayload,
    ErrorPayload,
    LogBatchPayload,
    MessageType,
    PausePayload,
    Payload,
    PhaseChangedPayload,
    ProgressPayload,
    RegisteredPayload,
    RegisterPayload,
    ResumePayload,
    StatusPayload,
    StatusResponsePayload,
    WorkflowCreatedPayload,
    WSMessage,
)

__all__ = [
    "DEFAULT_ALPHABET",
    "events",
    "go_times",
    "json_values",
    "literal_subjects",
    "malformed_subjects",
    "matching_pairs",
    "non_matching_pairs",
    "patterns",
    "subjects",
    "ws_messages",
]

#: The tokens subjects and patterns are made of unless told otherwise.
DEFAULT_ALPHABET: tuple[str, ...] = ("a", "b", "c")

Tokens = Sequence[str] | st.SearchStrategy[str]


def _tokens(alphabet: Tokens) -> st.SearchStrategy[str]:
    if isinstance(alphabet, st.SearchStrategy):
        return alphabet
    alphabet = tuple(alphabet)
    if not alphabet:
        raise ValueError("the alphabet needs at least one token")
    for token in alphabet:
        if not reference.is_valid_literal(token) or "." in token:
            raise ValueError(f"{token!r} is not a literal token")
    return st.sampled_from(alphabet)


def _check_depth(min_tokens: int, max_tokens: int) -> None:
    if not 1 <= min_tokens <= max_tokens:
        raise ValueError(f"need 1 <= min_tokens <= max_tokens, not {min_tokens}, {max_tokens}")


def _share(fraction: float, name: str) -> int:
    """A fraction as a threshold out of 100 (draws of 0..99 shrink to 0: "no")."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"{name} must be within [0, 1], not {fraction}")
    return round(fraction * 100)


_PERCENT = st.integers(0, 99)


def literal_subjects(
    *, alphabet: Tokens = DEFAULT_ALPHABET, min_tokens: int = 1, max_tokens: int = 5
) -> st.SearchStrategy[str]:
    """Valid literal subjects (what a publisher sends): ``min_tokens`` to ``max_tokens``
    tokens of ``alphabet`` (a sequence of tokens, or a strategy of them)."""
    _check_depth(min_tokens, max_tokens)
    return st.lists(_tokens(alphabet), min_size=min_tokens, max_size=max_tokens).map(".".join)


def subjects(
    *, alphabet: Tokens = DEFAULT_ALPHABET, min_tokens: int = 1, max_tokens: int = 5
) -> st.SearchStrategy[str]:
    """Well-formed subjects as a matcher receives them: tokens of ``alphabet`` and, now and
    then, ``*`` and ``>`` tokens, which a subject carries literally (``a.*`` is matched by
    ``a.*`` and ``a.>``, not by ``a.b``)."""
    _check_depth(min_tokens, max_tokens)
    token = st.one_of(_tokens(alphabet), st.sampled_from(["*", ">"]))
    return st.one_of(
        literal_subjects(alphabet=alphabet, min_tokens=min_tokens, max_tokens=max_tokens),
        st.lists(token, min_size=min_tokens, max_size=max_tokens).map(".".join),
    )


#: Strings breaking one subject rule or another, and a few that only look odd but are fine.
_ODD = [
    "",
    ".",
    "a..b",
    ".a",
    "a.",
    "a b",
    "a\tb",
    "a\0",
    "\ud800",
    "a.>.b",
    ">.a",
    "a*",
    ">>",
]


def malformed_subjects() -> st.SearchStrategy[str]:
    """Strings breaking the subject rules (empty tokens, whitespace, NUL, lone surrogates,
    ``>`` before the end...), mixed with some odd but valid ones (``a*``, ``>>``)."""
    return st.one_of(
        st.sampled_from(_ODD),
        st.text(alphabet=st.sampled_from(["a", "b", ".", "*", ">", " ", "\0", "é", "\ud800"])),
    )


def patterns(
    *,
    alphabet: Tokens = DEFAULT_ALPHABET,
    min_tokens: int = 1,
    max_tokens: int = 5,
    star: float = 0.25,
    full_wildcard: float = 0.3,
) -> st.SearchStrategy[str]:
    """Valid subscription patterns of ``min_tokens`` to ``max_tokens`` tokens: each token is
    ``*`` with probability about ``star``, else one of ``alphabet``; the pattern ends with
    ``>`` with probability about ``full_wildcard``. Shrinks toward literal tokens."""
    _check_depth(min_tokens, max_tokens)
    star_from = 100 - _share(star, "star")
    tail_from = 100 - _share(full_wildcard, "full_wildcard")
    literal = _tokens(alphabet)

    @st.composite
    def draw_pattern(draw: st.DrawFn) -> str:
        size = draw(st.integers(min_tokens, max_tokens))
        tail = draw(_PERCENT) >= tail_from
        body = [
            "*" if draw(_PERCENT) >= star_from else draw(literal) for _ in range(size - int(tail))
        ]
        return ".".join([*body, ">"] if tail else body)

    return draw_pattern()


def matching_pairs(
    *,
    alphabet: Tokens = DEFAULT_ALPHABET,
    min_tokens: int = 1,
    max_tokens: int = 5,
    star: float = 0.3,
    full_wildcard: float = 0.3,
) -> st.SearchStrategy[tuple[str, str]]:
    """``(subject, pattern)`` where the pattern matches the literal subject: drawn as a
    subject whose tokens are then generalised (some to ``*``, a tail of one or more to
    ``>``), so it shrinks to a subject matching itself."""
    literal = literal_subjects(alphabet=alphabet, min_tokens=min_tokens, max_tokens=max_tokens)
    star_from = 100 - _share(star, "star")
    tail_from = 100 - _share(full_wildcard, "full_wildcard")

    @st.composite
    def draw_pair(draw: st.DrawFn) -> tuple[str, str]:
        subject = draw(literal)
        tokens = subject.split(".")
        if draw(_PERCENT) >= tail_from:
            keep = draw(st.integers(0, len(tokens) - 1))  # `>` stands for one token or more
            tokens = [*tokens[:keep], ">"]
        pattern = [t if t == ">" or draw(_PERCENT) < star_from else "*" for t in tokens]
        return subject, ".".join(pattern)

    return draw_pair()


def non_matching_pairs(
    *,
    alphabet: Tokens = DEFAULT_ALPHABET,
    min_tokens: int = 1,
    max_tokens: int = 5,
    star: float = 0.25,
    full_wildcard: float = 0.3,
) -> st.SearchStrategy[tuple[str, str]]:
    """``(subject, pattern)`` where the valid pattern does not match the literal subject."""
    return st.tuples(
        literal_subjects(alphabet=alphabet, min_tokens=min_tokens, max_tokens=max_tokens),
        patterns(
            alphabet=alphabet,
            min_tokens=min_tokens,
            max_tokens=max_tokens,
            star=star,
            full_wildcard=full_wildcard,
        ),
    ).filter(lambda pair: not reference.subject_matches(*pair))


# -- times, JSON, events ------------------------------------------------------------------

_ZERO_TEXT = "0001-01-01T00:00:00Z"
_MAX_OFFSET_MINUTES = 23 * 60 + 59


@st.composite
def go_times(draw: st.DrawFn, *, zero: bool = True) -> str:
    """RFC 3339 timestamps exactly as Go's ``time.Time`` marshals them: 0 to 9 fraction
    digits (trailing zeros trimmed), ``Z`` or a ``±hh:mm`` offset, and (unless ``zero`` is
    False) Go's zero time ``0001-01-01T00:00:00Z``."""
    # The zero time one draw in ten, and the simplest value a draw shrinks to.
    if zero and draw(st.integers(0, 9)) == 0:
        return _ZERO_TEXT
    moment = draw(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
    text = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    digits = draw(st.integers(0, 9))
    fraction = f"{draw(st.integers(0, 10**digits - 1)):0{digits}d}".rstrip("0") if digits else ""
    if fraction:
        text += "." + fraction
    offset = draw(st.integers(-_MAX_OFFSET_MINUTES, _MAX_OFFSET_MINUTES))
    if offset == 0:
        return text + "Z"
    sign = "-" if offset < 0 else "+"
    hours, minutes = divmod(abs(offset), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


# Text UTF-8 can carry (no lone surrogates).
_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
_NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=8)


def json_values(*, max_leaves: int = 8) -> st.SearchStrategy[Any]:
    """JSON values Go decodes and writes back unchanged: integers within float64's exact
    range, finite floats but not ``-0.0`` (Go writes ``-0``, read back as the integer 0),
    text without lone surrogates, lists and objects."""
    leaf = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**53), max_value=2**53),
        st.floats(allow_nan=False, allow_infinity=False).filter(
            lambda f: f != 0 or math.copysign(1.0, f) > 0
        ),
        _TEXT,
    )
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(_TEXT, inner, max_size=3)
        ),
        max_leaves=max_leaves,
    )


def _objects() -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(_TEXT, json_values(), max_size=4)


def _maybe_objects() -> st.SearchStrategy[dict[str, Any] | None]:
    return st.one_of(st.none(), _objects())


@functools.cache
def _constructed(nodes: st.SearchStrategy[str]) -> st.SearchStrategy[Event]:
    """Events made by jb-mesh's constructors with valid arguments (built once per
    ``nodes``: making strategies is much dearer than drawing from them)."""
    topics = literal_subjects(alphabet=_NAME, max_tokens=3)
    objects = _maybe_objects()
    return st.one_of(
        st.builds(mesh.tool_installed, nodes, _NAME, _TEXT),
        st.builds(mesh.tool_configured, nodes, _NAME, objects),
        st.builds(mesh.tool_started, nodes, _NAME),
        st.builds(mesh.tool_stopped, nodes, _NAME, _TEXT),
        st.builds(mesh.tool_crashed, nodes, _NAME, _TEXT, st.integers(0, 1000)),
        st.builds(mesh.tool_removed, nodes, _NAME),
        st.builds(mesh.node_joined, nodes, objects),
        st.builds(mesh.node_left, nodes, _TEXT),
        st.builds(mesh.node_health, nodes, _TEXT, objects),
        st.builds(mesh.user_event, nodes, topics, objects),
    )


def _timestamp(text: str) -> datetime | None:
    """The event timestamp a Go time text reads as (None: the zero time, unset)."""
    value = parse_time(text)
    return None if is_zero_time(value) else value


_DEFAULT_NODES = st.one_of(st.just(""), _NAME)


def events(*, nodes: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[Event]:
    """jb-mesh event envelopes: every constructor's type with its payload shape, user
    events with any JSON object, timestamps as Go writes them (None: the zero time).
    ``nodes`` draws the node names (default: short lowercase names, or empty)."""
    made = _constructed(_DEFAULT_NODES if nodes is None else nodes)
    return st.builds(
        lambda event, stamp: Event(event.type, event.node, _timestamp(stamp), event.data),
        made,
        go_times(),
    )


# -- coordination messages ----------------------------------------------------------------

_IDS = st.builds(
    lambda prefix, number: f"msg-{prefix}-{number}",
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=12, max_size=12),
    st.integers(1, 10**6),
)
_PHASES = st.sampled_from(list(Phase))
# Not -0.0: the protocol reads documents with orjson, which reads Go's ``-0`` as the
# integer 0, so a float field written as -0.0 comes back as 0.0 (Go keeps the sign).
_FLOATS = st.floats(allow_nan=False, allow_infinity=False).filter(
    lambda f: f != 0 or math.copysign(1.0, f) > 0
)
_COUNTS = st.integers(-(2**53), 2**53)


def _log_entries() -> st.SearchStrategy[LogEntry]:
    return st.builds(
        LogEntry,
        timestamp=go_times().map(_timestamp),
        level=st.sampled_from(list(LogLevel)),
        message=_TEXT,
        trace_id=_TEXT,
        span_id=_TEXT,
        workflow_id=_TEXT,
        action_id=_TEXT,
        correlation_id=_TEXT,
        fields=_maybe_objects(),
        source_file=_TEXT,
        source_line=st.integers(0, 2**31),
    )


#: Every message type and what its payload is drawn from (None: it carries none).
_PAYLOADS: dict[MessageType, st.SearchStrategy[Payload] | None] = {
    MessageType.REGISTER: st.builds(
        RegisterPayload,
        service_name=_NAME,
        service_id=_TEXT,
        instance_id=_TEXT,
        capabilities=st.lists(_NAME, max_size=3).map(tuple),
        version=_TEXT,
        protocol_version=st.sampled_from(["", "1.0", "1.1", "2.0"]),
        schema_version=st.integers(0, 10),
    ),
    MessageType.WORKFLOW_CREATED: st.builds(
        WorkflowCreatedPayload,
        workflow_id=_TEXT,
        parent_workflow_id=_TEXT,
        root_workflow_id=_TEXT,
        action_id=_TEXT,
        action_type=_TEXT,
    ),
    MessageType.PHASE_CHANGED: st.builds(
        PhaseChangedPayload,
        workflow_id=_TEXT,
        from_phase=_PHASES,
        to_phase=_PHASES,
        checkpoint_id=_TEXT,
        reason=_TEXT,
    ),
    MessageType.CHECKPOINT: st.builds(
        CheckpointPayload,
        workflow_id=_TEXT,
        checkpoint_id=_TEXT,
        reason=_TEXT,
        state=_maybe_objects(),
    ),
    MessageType.ERROR: st.builds(
        ErrorPayload, workflow_id=_TEXT, error=_TEXT, recoverable=st.booleans(), action_id=_TEXT
    ),
    MessageType.STATUS_RESPONSE: st.builds(
        StatusResponsePayload,
        workflow_id=_TEXT,
        phase=_PHASES,
        progress=_FLOATS,
        current_action=_TEXT,
        message=_TEXT,
    ),
    MessageType.PONG: None,
    MessageType.PROGRESS: st.builds(
        ProgressPayload,
        workflow_id=_TEXT,
        action_id=_TEXT,
        percent=_FLOATS,
        stage=_TEXT,
        message=_TEXT,
        current_item=_COUNTS,
        total_items=st.integers(0, 2**31),
    ),
    MessageType.LOG: _log_entries(),
    MessageType.LOG_BATCH: st.builds(
        LogBatchPayload, logs=st.lists(_log_entries(), max_size=3).map(tuple)
    ),
    MessageType.REGISTERED: st.builds(
        RegisteredPayload,
        service_id=_TEXT,
        instance_id=_TEXT,
        message=_TEXT,
        protocol_version=st.sampled_from(["", "1.0", "1.1"]),
        hub_protocol_version=st.sampled_from(["", "1.0", "1.1"]),
    ),
    MessageType.PAUSE: st.builds(PausePayload, workflow_id=_TEXT, reason=_TEXT),
    MessageType.RESUME: st.builds(ResumePayload, workflow_id=_TEXT, from_checkpoint=_TEXT),
    MessageType.CANCEL: st.builds(
        CancelPayload, workflow_id=_TEXT, reason=_TEXT, force=st.booleans()
    ),
    MessageType.STATUS: st.builds(StatusPayload, workflow_id=_TEXT),
    MessageType.PING: None,
}


@st.composite
def ws_messages(draw: st.DrawFn, *, types: Sequence[MessageType | str] | None = None) -> WSMessage:
    """Coordination messages of every type (or of ``types``) with a valid payload for the
    type (none for ``ping`` and ``pong``), an id of the protocol's shape, a workflow id
    (the payload's, when it has one) and a timestamp as Go writes it."""
    chosen = list(MessageType) if types is None else [MessageType(t) for t in types]
    # The fields every type has first: shrinking the type then changes only what follows.
    message_id = draw(_IDS)
    timestamp = parse_time(draw(go_times()))
    kind = draw(st.sampled_from(chosen))
    payloads = _PAYLOADS[kind]
    if payloads is None:
        return WSMessage(message_id, kind, draw(_TEXT), timestamp)
    payload = draw(payloads)
    made = WSMessage.with_payload(kind, payload, id=message_id)
    return WSMessage(made.id, made.type, made.workflow_id, timestamp, made.payload)
