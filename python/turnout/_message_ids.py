"""Message ids for the coordination protocol: ``msg-<12 of [a-z0-9]>-<number>``.

The 12 characters are drawn at random once per process and the number counts up from 1, so
ids are unique within a process without a lock (``next`` on an ``itertools.count`` is atomic
under the GIL) and, with 36**12 possible prefixes, across the services on one hub. A forked
child draws a new prefix: parent and child would otherwise hand out the same ids.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import string

__all__ = ["MESSAGE_ID_PATTERN", "new_message_id"]

#: What an id made here looks like (ids from other peers are any non-empty string).
MESSAGE_ID_PATTERN = re.compile(r"msg-[a-z0-9]{12}-[0-9]+")

_ALPHABET = string.ascii_lowercase + string.digits


def _random_prefix() -> str:
    return "msg-" + "".join(secrets.choice(_ALPHABET) for _ in range(12)) + "-"


_prefix = _random_prefix()
_counter = itertools.count(1)


def new_message_id() -> str:
    """A fresh id, unique in this process."""
    return _prefix + str(next(_counter))


def _reseed_after_fork() -> None:
    global _prefix, _counter
    _prefix = _random_prefix()
    _counter = itertools.count(1)


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_reseed_after_fork)
