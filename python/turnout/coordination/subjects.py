"""The subjects the hub republishes coordination traffic on (no I/O here).

Every message a registered service sends is emitted on the hub's :class:`~turnout.Bus` as
an :class:`~turnout.Event` of type ``coordination.<kind>.<service>.<workflow>``, so its
subject is::

    events.coordination.<kind>.<service>.<workflow>

- ``<kind>``: the message type (``register``, ``phase_changed``, ``progress``, ``log``,
  ``log_batch``, ...), or ``disconnected`` when a service's connection ends.
- ``<service>``: the service id, as a subject token (below).
- ``<workflow>``: the message's workflow id (its ``workflow_id``, else the payload's), as a
  subject token; ``_`` when it has none.

Ids become tokens reversibly: ASCII letters, digits, ``-`` and ``_`` stay as they are,
every other byte of the UTF-8 text (``.``, ``*``, ``>``, ``%``, spaces, non-ASCII...)
becomes ``%XX``; the empty id is ``_`` (and the id ``_`` is ``%5F``). A token whose
escaped form passes :data:`MAX_TOKEN_LENGTH` characters is cut and ends in ``~`` and 16
hex digits of a hash of the whole id, so hostile ids cannot make subjects unbounded and
different ids still get different tokens. :func:`coordination_pattern` builds patterns::

    coordination_pattern(kind="phase_changed")          # events.coordination.phase_changed.*.*
    coordination_pattern(workflow_id="wf.1")            # events.coordination.*.*.wf%2E1
"""

from __future__ import annotations

import hashlib

from turnout.events import SUBJECT_PREFIX

__all__ = [
    "COORDINATION_PREFIX",
    "DISCONNECTED",
    "MAX_TOKEN_LENGTH",
    "NO_WORKFLOW",
    "coordination_event_type",
    "coordination_pattern",
    "coordination_subject",
    "subject_token",
]

#: The first token of every coordination event type.
COORDINATION_PREFIX = "coordination"
#: The kind of the event emitted when a service's connection ends.
DISCONNECTED = "disconnected"
#: The token of an empty id.
NO_WORKFLOW = "_"
#: The longest token an id becomes (longer escaped forms are cut and hashed).
MAX_TOKEN_LENGTH = 128

_KEPT = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_ESCAPES = [chr(b) if b in _KEPT else f"%{b:02X}" for b in range(256)]
_HASH_DIGITS = 16
_CUT = MAX_TOKEN_LENGTH - 1 - _HASH_DIGITS


def subject_token(text: str) -> str:
    """``text`` (an id) as one valid, wildcard-free subject token (see the module
    docstring); different ids give different tokens."""
    if not text:
        return NO_WORKFLOW
    if text == NO_WORKFLOW:
        return "%5F"
    if text.isascii() and text.replace("-", "").replace("_", "").isalnum():
        escaped = text
    else:
        escaped = "".join(_ESCAPES[b] for b in text.encode("utf-8", "surrogatepass"))
    if len(escaped) <= MAX_TOKEN_LENGTH:
        return escaped
    cut = escaped[:_CUT]
    # Never end inside a %XX escape.
    tail = cut.rfind("%", len(cut) - 2)
    if tail != -1:
        cut = cut[:tail]
    digest = hashlib.blake2b(
        text.encode("utf-8", "surrogatepass"), digest_size=_HASH_DIGITS // 2
    ).hexdigest()
    return f"{cut}~{digest}"


def coordination_event_type(kind: str, service_id: str, workflow_id: str = "") -> str:
    """The event type the hub emits for ``kind`` from ``service_id`` about ``workflow_id``."""
    return f"{COORDINATION_PREFIX}.{kind}.{subject_token(service_id)}.{subject_token(workflow_id)}"


def coordination_subject(kind: str, service_id: str, workflow_id: str = "") -> str:
    """The bus subject of :func:`coordination_event_type`."""
    return SUBJECT_PREFIX + coordination_event_type(kind, service_id, workflow_id)


def coordination_pattern(
    kind: str | None = None, service_id: str | None = None, workflow_id: str | None = None
) -> str:
    """A subject pattern for coordination events; each part left None matches any."""
    parts = [
        "*" if kind is None else kind,
        "*" if service_id is None else subject_token(service_id),
        "*" if workflow_id is None else subject_token(workflow_id),
    ]
    return f"{SUBJECT_PREFIX}{COORDINATION_PREFIX}.{'.'.join(parts)}"
