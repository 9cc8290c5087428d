"""Who may do what at a hub: credentials, read from the handshake and checked on each act.

A hub has one :class:`Credentials` table. Each :class:`Credential` is a name, a secret
token (kept only as its SHA-256 digest) and three permission lists:

- ``register``: the service ids it may register as (``"*"``: any, including an id the hub
  makes up for a service that gives none);
- ``watch``: the subject patterns it may follow at ``/v1/watch``; a watcher's pattern must
  lie entirely inside one of them (``events.coordination.progress.>`` inside
  ``events.coordination.>``), decided by the subject engine's :func:`turnout.is_subset`, so
  the check costs nothing per event;
- ``control``: the service ids whose workflows it may command (pause, resume, cancel,
  status; ``"*"``: any).

The file (``turnout hub --auth FILE``) is JSON::

    {"credentials": [
      {"name": "builder", "token_sha256": "<64 hex digits>", "register": ["build-1"],
       "watch": ["events.coordination.*.build-1.>"], "control": []},
      {"name": "ops", "token": "s3cret", "register": [], "watch": [">"], "control": ["*"]}
    ]}

A bad file is refused whole, with a :class:`AuthFileError` naming the entry and the key.
Tokens are compared in constant time: the presented token's digest is compared with every
entry's digest, all of them, with :func:`hmac.compare_digest`.

**The handshake** (:func:`presented_token`): ``Authorization: Bearer <token>`` (the scheme
in any case, RFC 7235), or ``?token=<token>`` in the URL for clients that cannot set
headers (the Go when-v3 client, a browser's ``WebSocket``). Two ``Authorization``
headers, two ``token`` parameters, or a header and a parameter together are refused with
HTTP 400 and the reason: the hub never guesses which one was meant.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from turnout._core import is_subset, validate_subject
from turnout._errors import InvalidSubjectError

__all__ = [
    "ANY",
    "AuthFileError",
    "Credential",
    "Credentials",
    "HandshakeRefusal",
    "presented_token",
]

#: In ``register`` and ``control``: every service id.
ANY = "*"
_KEYS = frozenset({"name", "token", "token_sha256", "register", "watch", "control"})
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")


class AuthFileError(ValueError):
    """The credentials file (or document) is not valid; the message names the entry."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class Credential:
    """One identity and what it may do (see the module docstring)."""

    name: str
    token_sha256: bytes
    register: frozenset[str] = frozenset()
    watch: tuple[str, ...] = ()
    control: frozenset[str] = frozenset()

    def may_register(self, service_id: str) -> bool:
        return ANY in self.register or service_id in self.register

    def may_control(self, service_id: str) -> bool:
        return ANY in self.control or service_id in self.control

    def may_watch(self, pattern: str) -> bool:
        """Whether every subject ``pattern`` matches is inside one of ``watch``."""
        return any(is_subset(pattern, allowed) for allowed in self.watch)

    @classmethod
    def allowed_everything(cls, name: str, token: str) -> Credential:
        """What ``--token`` gives: any service id, every subject, every workflow."""
        return cls(name, _digest(token), frozenset({ANY}), (">",), frozenset({ANY}))


@dataclass(frozen=True)
class HandshakeRefusal:
    """Why a handshake is refused: the HTTP ``status`` and the ``reason`` sent back."""

    status: int
    reason: str
    label: str
    """A short stable name for the refusal's kind, for counters."""


class Credentials:
    """The table of credentials a hub accepts. ``None`` as a hub's table (no token, no
    file) lets everyone do everything; otherwise a handshake needs a known token."""

    def __init__(self, credentials: Iterable[Credential]) -> None:
        self._all = tuple(credentials)
        names = [c.name for c in self._all]
        if len(set(names)) != len(names):
            raise AuthFileError("credential names must be unique")
        if len({c.token_sha256 for c in self._all}) != len(self._all):
            raise AuthFileError("two credentials have the same token")
        if not self._all:
            raise AuthFileError("no credentials: a hub with an empty table admits nobody")

    def __iter__(self) -> Any:
        return iter(self._all)

    def __len__(self) -> int:
        return len(self._all)

    @classmethod
    def from_token(cls, token: str) -> Credentials:
        """One credential, named ``token``, allowed everything."""
        if not token:
            raise AuthFileError("the token must not be empty")
        return cls([Credential.allowed_everything("token", token)])

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Credentials:
        """Reads a credentials file (see the module docstring); :class:`AuthFileError`
        naming the file and the entry when it is not valid."""
        where = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AuthFileError(f"auth file {where}: cannot read it: {exc}") from None
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AuthFileError(f"auth file {where}: not JSON: {exc}") from None
        return cls.from_document(document, where)

    @classmethod
    def from_document(cls, document: object, where: str = "auth") -> Credentials:
        """The table from an already-parsed document (the file's JSON)."""
        if not isinstance(document, dict) or set(document) != {"credentials"}:
            raise AuthFileError(f"{where}: expected an object with one key, 'credentials'")
        entries = document["credentials"]
        if not isinstance(entries, list) or not entries:
            raise AuthFileError(f"{where}: 'credentials' must be a non-empty list")
        credentials: list[Credential] = []
        names: set[str] = set()
        digests: dict[bytes, str] = {}
        for index, entry in enumerate(entries):
            credential = _entry(entry, f"{where}: credentials[{index}]")
            label = f"{where}: credentials[{index}] ({credential.name!r})"
            if credential.name in names:
                raise AuthFileError(f"{label}: the name is used by an earlier entry")
            if credential.token_sha256 in digests:
                raise AuthFileError(f"{label}: same token as {digests[credential.token_sha256]!r}")
            names.add(credential.name)
            digests[credential.token_sha256] = credential.name
            credentials.append(credential)
        return cls(credentials)

    def identify(self, token: str) -> Credential | None:
        """The credential whose token this is, or None. Every entry is compared, each in
        constant time, so the time taken says nothing about which entry came close."""
        digest = _digest(token)
        found = None
        for credential in self._all:
            if hmac.compare_digest(digest, credential.token_sha256):
                found = credential
        return found


def _entry(entry: object, where: str) -> Credential:
    if not isinstance(entry, dict):
        raise AuthFileError(f"{where}: expected an object")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise AuthFileError(f"{where}: 'name' must be a non-empty string")
    where = f"{where} ({name!r})"
    unknown = set(entry) - _KEYS
    if unknown:
        raise AuthFileError(f"{where}: unknown key(s) {sorted(unknown)}")
    token, hashed = entry.get("token"), entry.get("token_sha256")
    if (token is None) == (hashed is None):
        raise AuthFileError(f"{where}: give exactly one of 'token' and 'token_sha256'")
    if token is not None:
        if not isinstance(token, str) or not token:
            raise AuthFileError(f"{where}: 'token' must be a non-empty string")
        digest = _digest(token)
    else:
        if not isinstance(hashed, str) or not _HEX_DIGEST.fullmatch(hashed):
            raise AuthFileError(f"{where}: 'token_sha256' must be 64 hex digits")
        digest = bytes.fromhex(hashed)
    register = _strings(entry, "register", where)
    control = _strings(entry, "control", where)
    watch = _strings(entry, "watch", where)
    for pattern in watch:
        try:
            validate_subject(pattern)
        except InvalidSubjectError as exc:
            raise AuthFileError(f"{where}: watch pattern {pattern!r}: {exc}") from None
    return Credential(name, digest, frozenset(register), tuple(watch), frozenset(control))


def _strings(entry: Mapping[str, Any], key: str, where: str) -> list[str]:
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise AuthFileError(f"{where}: '{key}' must be a list of non-empty strings")
    return value


def presented_token(
    headers: Sequence[tuple[str, str]], query: str
) -> str | HandshakeRefusal | None:
    """The token a handshake presents (see the module docstring): the token, None when
    it presents none, or the :class:`HandshakeRefusal` for an ambiguous or malformed one.
    ``headers`` are the raw (name, value) pairs, repeated names kept."""
    given = [value for name, value in headers if name.lower() == "authorization"]
    in_query = [value for key, value in parse_qsl(query, keep_blank_values=True) if key == "token"]
    if len(given) > 1:
        return HandshakeRefusal(400, "more than one Authorization header", "duplicate_credentials")
    if len(in_query) > 1:
        return HandshakeRefusal(400, "more than one token parameter", "duplicate_credentials")
    if given and in_query:
        return HandshakeRefusal(
            400,
            "credentials in both the Authorization header and the URL",
            "duplicate_credentials",
        )
    if in_query:
        return in_query[0]
    if not given:
        return None
    scheme, _, token = given[0].strip().partition(" ")
    if scheme.lower() != "bearer":
        return HandshakeRefusal(401, "missing bearer token", "missing_token")
    token = token.strip()
    if not token:
        return HandshakeRefusal(401, "missing bearer token", "missing_token")
    return token
