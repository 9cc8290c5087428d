"""A fleet of hubs on NATS, sans I/O: what each hub tells the others about itself, how it
merges what they tell it into one view, and the documents of a command routed from one
hub to another. :mod:`turnout.ws.fleet` moves the bytes; tests drive this directly.

::

    fleet = FleetProtocol("hub-a")
    for frame in fleet.snapshot(services, workflows):  # this hub's state, in frames
        publish(fleet.state_subject, frame)
    fleet.receive_snapshot(frame, now)                  # another hub's frame
    fleet.expire(now)                                   # hubs silent for expire_after go
    fleet.services(local_services)                      # the merged view, each naming its hub
    fleet.locate(workflow_id, local_workflows)          # which hub holds a workflow

**State.** Every hub publishes a *snapshot* of what it holds (its service instances and
their workflows, as the ``/v1/services`` and ``/v1/workflows`` documents) on
``turnout.fleet.state.<hub>``: every ``heartbeat_interval`` seconds, and soon after each
registration, disconnection and phase change. A snapshot replaces everything the readers
knew of that hub; a large one is cut into frames of at most ``max_frame`` bytes, and is
applied once all its frames arrived. A hub whose snapshots stop (killed, partitioned,
stopped) is forgotten ``expire_after`` seconds after its last one; a hub that stops
cleanly says so with a last, empty snapshot marked ``leaving``.

**Merging.** The same service instance may be reported by two hubs for a while (it moved
from a dead hub whose snapshot has not expired yet, or a hub still reports it as
disconnected): the view keeps one entry per (service id, instance id), the connected one,
then the newest registration, then this hub's own. A workflow is shown once too, from the
hub where its service is connected, then the newest update.

**Commands** travel as request/reply on ``turnout.fleet.command.<hub>``: a
:class:`FleetCommand` document in, a :class:`FleetReply` out. The operator's hub checks
the operator's permissions; the hub holding the service runs the command as its own.
"""

from __future__ import annotations

import secrets
import string
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

from turnout._core import parse_time
from turnout.coordination.subjects import subject_token

__all__ = [
    "COMMAND_PREFIX",
    "DEFAULT_EXPIRE_AFTER",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_MAX_FRAME",
    "FLEET_COMMANDS",
    "MAX_HUB_ID_LENGTH",
    "STATE_PATTERN",
    "STATE_PREFIX",
    "FleetCommand",
    "FleetProtocol",
    "FleetReply",
    "Peer",
    "command_subject",
    "generated_hub_id",
    "state_subject",
    "validate_hub_id",
]

STATE_PREFIX = "turnout.fleet.state."
STATE_PATTERN = STATE_PREFIX + "*"
COMMAND_PREFIX = "turnout.fleet.command."
#: Seconds between a hub's snapshots when nothing changes.
DEFAULT_HEARTBEAT_INTERVAL = 1.0
#: Seconds after its last snapshot a silent hub's entries are dropped.
DEFAULT_EXPIRE_AFTER = 3.0
#: The largest snapshot frame (NATS servers refuse payloads over 1 MiB by default).
DEFAULT_MAX_FRAME = 512 * 1024
MAX_HUB_ID_LENGTH = 64
FLEET_COMMANDS = ("pause", "resume", "cancel", "status")
_OUTCOMES = frozenset({"answered", "refused", "expired", "disconnected", "error"})
_ID_ALPHABET = string.ascii_lowercase + string.digits
_EPOCH_START = datetime(1, 1, 1, tzinfo=timezone.utc)


def validate_hub_id(hub_id: str) -> str:
    """``hub_id`` if it is a usable hub id (1 to 64 printable characters, no spaces);
    ``ValueError`` saying why not."""
    if not isinstance(hub_id, str) or not hub_id:
        raise ValueError("a hub id is a non-empty string")
    if len(hub_id) > MAX_HUB_ID_LENGTH:
        raise ValueError(f"a hub id has at most {MAX_HUB_ID_LENGTH} characters")
    if not hub_id.isprintable() or any(c.isspace() for c in hub_id):
        raise ValueError(f"a hub id has no spaces or control characters: {hub_id!r}")
    return hub_id


def generated_hub_id() -> str:
    """A fresh hub id: ``hub-`` and 8 random letters and digits."""
    return "hub-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def state_subject(hub_id: str) -> str:
    """Where ``hub_id`` publishes its snapshots."""
    return STATE_PREFIX + subject_token(hub_id)


def command_subject(hub_id: str) -> str:
    """Where ``hub_id`` answers routed commands."""
    return COMMAND_PREFIX + subject_token(hub_id)


@dataclass(frozen=True)
class FleetCommand:
    """A command routed to the hub holding the workflow's service. ``timeout``: seconds
    the holding hub waits for the service; ``operator``: the credential name the
    operator's hub admitted (for its logs), ``origin``: that hub's id."""

    command: str
    workflow_id: str
    reason: str = ""
    from_checkpoint: str = ""
    force: bool = False
    timeout: float = 10.0
    origin: str = ""
    operator: str = ""

    def to_json(self) -> bytes:
        return orjson.dumps(self.__dict__)

    @classmethod
    def parse(cls, data: bytes) -> FleetCommand:
        """Reads a command document; ``ValueError`` naming what is wrong."""
        document = _object(data, "command")
        command = document.get("command")
        if command not in FLEET_COMMANDS:
            raise ValueError(f"command must be one of {', '.join(FLEET_COMMANDS)}")
        workflow_id = document.get("workflow_id")
        if not isinstance(workflow_id, str) or not workflow_id:
            raise ValueError("workflow_id must be a non-empty string")
        timeout = document.get("timeout", 10.0)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise ValueError("timeout must be a number")
        if not 0 < timeout <= 3600:
            raise ValueError("timeout must be in (0, 3600] seconds")
        force = document.get("force", False)
        if not isinstance(force, bool):
            raise ValueError("force must be true or false")
        texts = {}
        for key in ("reason", "from_checkpoint", "origin", "operator"):
            value = document.get(key, "")
            if not isinstance(value, str):
                raise ValueError(f"{key} must be a string")
            texts[key] = value
        return cls(command, workflow_id, force=force, timeout=float(timeout), **texts)


@dataclass(frozen=True)
class FleetReply:
    """What the holding hub answers: the request's ``outcome`` (``answered``,
    ``refused``, ``expired``, ``disconnected``, or ``error`` when it could not send it),
    the ``response`` message's document (or None), the ``error`` text, and the ``hub``
    that answered."""

    outcome: str
    response: dict[str, Any] | None = None
    error: str = ""
    hub: str = ""

    def to_json(self) -> bytes:
        return orjson.dumps(self.__dict__)

    @classmethod
    def parse(cls, data: bytes) -> FleetReply:
        document = _object(data, "reply")
        outcome = document.get("outcome")
        if outcome not in _OUTCOMES:
            raise ValueError(f"reply: unknown outcome {outcome!r}")
        response = document.get("response")
        if response is not None and not isinstance(response, dict):
            raise ValueError("reply: response must be an object or null")
        error = document.get("error", "")
        hub = document.get("hub", "")
        if not isinstance(error, str) or not isinstance(hub, str):
            raise ValueError("reply: error and hub must be strings")
        return cls(outcome, response, error, hub)


@dataclass(frozen=True)
class Peer:
    """Another hub as this one last heard of it: ``seen_at`` on this hub's clock."""

    hub_id: str
    epoch: str
    sequence: int
    seen_at: float
    services: tuple[dict[str, Any], ...]
    workflows: tuple[dict[str, Any], ...]
    service_index: dict[tuple[str, str], dict[str, Any]] = field(
        default_factory=dict, repr=False, compare=False
    )
    workflow_index: dict[str, dict[str, Any]] = field(
        default_factory=dict, repr=False, compare=False
    )


@dataclass
class _Assembly:
    epoch: str
    sequence: int
    parts: int
    services: list[dict[str, Any]]
    workflows: list[dict[str, Any]]
    received: set[int]


class FleetProtocol:
    """One hub's part in the fleet (see the module docstring). Not thread-safe: drive it
    from the hub's event loop. ``clock``: the hub's clock (seconds)."""

    def __init__(
        self,
        hub_id: str,
        *,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        expire_after: float = DEFAULT_EXPIRE_AFTER,
        max_frame: int = DEFAULT_MAX_FRAME,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hub_id = validate_hub_id(hub_id)
        if not heartbeat_interval > 0:
            raise ValueError("heartbeat_interval must be positive")
        if not expire_after > heartbeat_interval:
            raise ValueError("expire_after must be longer than heartbeat_interval")
        if max_frame < 4096:
            raise ValueError("max_frame must be at least 4096 bytes")
        self.heartbeat_interval = heartbeat_interval
        self.expire_after = expire_after
        self.max_frame = max_frame
        self.state_subject = state_subject(hub_id)
        self.command_subject = command_subject(hub_id)
        # A new epoch per start: a restarted hub's sequence numbers begin again.
        self.epoch = secrets.token_hex(8)
        self._clock = clock
        self._sequence = 0
        self._peers: dict[str, Peer] = {}
        self._assemblies: dict[str, _Assembly] = {}
        self._counts: Counter[str] = Counter(
            dict.fromkeys(
                (
                    "snapshots_sent",
                    "snapshot_frames_sent",
                    "snapshots_applied",
                    "snapshot_frames_received",
                    "snapshot_frames_malformed",
                    "snapshot_frames_stale",
                    "snapshots_incomplete",
                    "peers_expired",
                    "peers_left",
                ),
                0,
            )
        )

    # -- this hub's state --

    def snapshot(
        self,
        services: Sequence[dict[str, Any]],
        workflows: Sequence[dict[str, Any]],
        *,
        leaving: bool = False,
    ) -> list[bytes]:
        """This hub's snapshot frames (publish each on :attr:`state_subject`, in order).
        ``leaving``: the last one of a hub that stops (readers drop it at once)."""
        self._sequence += 1
        if leaving:
            services, workflows = (), ()
        entries = [(b"s", orjson.dumps(s)) for s in services]
        entries += [(b"w", orjson.dumps(w)) for w in workflows]
        # Each frame: a header line, then one entry a line ("s" or "w", then its JSON).
        budget = self.max_frame - 512  # the header's room
        chunks: list[list[bytes]] = [[]]
        size = 0
        for kind, body in entries:
            line = kind + body
            if len(line) > budget:
                raise ValueError(
                    f"a fleet entry of {len(line)} bytes does not fit a {self.max_frame}-byte frame"
                )
            if size + len(line) + 1 > budget and chunks[-1]:
                chunks.append([])
                size = 0
            chunks[-1].append(line)
            size += len(line) + 1
        frames = []
        for part, lines in enumerate(chunks):
            header = orjson.dumps(
                {
                    "hub": self.hub_id,
                    "epoch": self.epoch,
                    "sequence": self._sequence,
                    "part": part,
                    "parts": len(chunks),
                    "leaving": leaving,
                }
            )
            frames.append(b"\n".join([header, *lines]))
        self._counts["snapshots_sent"] += 1
        self._counts["snapshot_frames_sent"] += len(frames)
        return frames

    # -- other hubs --

    def receive_snapshot(self, data: bytes, now: float | None = None) -> str | None:
        """Takes one snapshot frame; returns the hub id whose state changed (its snapshot
        is complete, or it left), else None. This hub's own frames are ignored; a
        malformed frame is counted and ignored."""
        if now is None:
            now = self._clock()
        self._counts["snapshot_frames_received"] += 1
        try:
            header, services, workflows = _read_frame(data)
        except (ValueError, orjson.JSONDecodeError):
            self._counts["snapshot_frames_malformed"] += 1
            return None
        hub_id: str = header["hub"]
        if hub_id == self.hub_id:
            return None
        epoch, sequence = header["epoch"], header["sequence"]
        known = self._peers.get(hub_id)
        if known is not None and known.epoch == epoch and sequence <= known.sequence:
            self._counts["snapshot_frames_stale"] += 1
            return None
        if header["leaving"]:
            self._assemblies.pop(hub_id, None)
            if self._peers.pop(hub_id, None) is not None:
                self._counts["peers_left"] += 1
            return hub_id
        assembly = self._assemblies.get(hub_id)
        if assembly is None or (assembly.epoch, assembly.sequence) != (epoch, sequence):
            if assembly is not None:
                self._counts["snapshots_incomplete"] += 1
            assembly = _Assembly(epoch, sequence, header["parts"], [], [], set())
            self._assemblies[hub_id] = assembly
        part = header["part"]
        if part in assembly.received or part >= assembly.parts:
            self._counts["snapshot_frames_malformed"] += 1
            return None
        assembly.received.add(part)
        assembly.services.extend(services)
        assembly.workflows.extend(workflows)
        if len(assembly.received) < assembly.parts:
            return None
        del self._assemblies[hub_id]
        for entry in (*assembly.services, *assembly.workflows):
            entry["hub"] = hub_id
        self._peers[hub_id] = Peer(
            hub_id,
            epoch,
            sequence,
            now,
            tuple(assembly.services),
            tuple(assembly.workflows),
            {(s["service_id"], s["instance_id"]): s for s in assembly.services},
            {w["workflow_id"]: w for w in assembly.workflows},
        )
        self._counts["snapshots_applied"] += 1
        return hub_id

    def expire(self, now: float | None = None) -> list[str]:
        """Forgets the hubs heard from last more than ``expire_after`` seconds before
        ``now``; returns their ids."""
        if now is None:
            now = self._clock()
        gone = [h for h, p in self._peers.items() if now - p.seen_at > self.expire_after]
        for hub_id in gone:
            del self._peers[hub_id]
            self._assemblies.pop(hub_id, None)
        self._counts["peers_expired"] += len(gone)
        return gone

    def peers(self) -> list[Peer]:
        return list(self._peers.values())

    # -- the merged view --

    def services(self, local: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Every service instance of the fleet, once each (module docstring), each with
        ``hub``: ``local`` are this hub's documents."""
        best: dict[tuple[str, str], tuple[tuple[bool, datetime, bool], dict[str, Any]]] = {}
        for entry, own in self._all_services(local):
            key = (str(entry.get("service_id", "")), str(entry.get("instance_id", "")))
            rank = (bool(entry.get("connected")), _time(entry.get("registered_at")), own)
            current = best.get(key)
            if current is None or rank > current[0]:
                best[key] = (rank, entry)
        return [entry for _, entry in best.values()]

    def workflows(
        self, local_services: Iterable[dict[str, Any]], local: Iterable[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Every workflow of the fleet, once each, each with ``hub``: from the hub where
        :meth:`services` lists its service, else the one that updated it last."""
        holders = {
            (str(s.get("service_id", "")), str(s.get("instance_id", ""))): s["hub"]
            for s in self.services(local_services)
        }
        best: dict[str, tuple[tuple[bool, datetime, bool], dict[str, Any]]] = {}
        for entry, own in self._all_workflows(local):
            key = str(entry.get("workflow_id", ""))
            service = (str(entry.get("service_id", "")), str(entry.get("instance_id", "")))
            rank = (holders.get(service) == entry["hub"], _time(entry.get("updated_at")), own)
            current = best.get(key)
            if current is None or rank > current[0]:
                best[key] = (rank, entry)
        return [entry for _, entry in best.values()]

    def locate(
        self,
        workflow_id: str,
        local: dict[str, Any] | None,
        local_service: Callable[[str, str], dict[str, Any] | None],
    ) -> dict[str, Any] | None:
        """The fleet's entry for ``workflow_id`` (its ``hub`` holds it), or None, as
        :meth:`workflows` would list it, without building the whole view: ``local`` is
        this hub's document of it (or None), ``local_service(service_id, instance_id)``
        this hub's document of a service (or None)."""
        candidates = [] if local is None else [({**local, "hub": self.hub_id}, True)]
        for peer in self._peers.values():
            entry = peer.workflow_index.get(workflow_id)
            if entry is not None:
                candidates.append((entry, False))
        if len(candidates) == 1:  # the common case: nothing to rank (a command's hot path)
            return candidates[0][0]
        best: tuple[tuple[bool, datetime, bool], dict[str, Any]] | None = None
        for entry, own in candidates:
            service = (str(entry.get("service_id", "")), str(entry.get("instance_id", "")))
            rank = (
                self._holder(service, local_service(*service)) == entry["hub"],
                _time(entry.get("updated_at")),
                own,
            )
            if best is None or rank > best[0]:
                best = (rank, entry)
        return None if best is None else best[1]

    def _holder(self, key: tuple[str, str], local: dict[str, Any] | None) -> str | None:
        """The hub :meth:`services` lists the service ``key`` under."""
        best: tuple[tuple[bool, datetime, bool], str] | None = None
        reports = [] if local is None else [({**local, "hub": self.hub_id}, True)]
        for peer in self._peers.values():
            entry = peer.service_index.get(key)
            if entry is not None:
                reports.append((entry, False))
        for entry, own in reports:
            rank = (bool(entry.get("connected")), _time(entry.get("registered_at")), own)
            if best is None or rank > best[0]:
                best = (rank, entry["hub"])
        return None if best is None else best[1]

    def _all_services(
        self, local: Iterable[dict[str, Any]]
    ) -> Iterable[tuple[dict[str, Any], bool]]:
        for entry in local:
            yield {**entry, "hub": self.hub_id}, True
        for peer in self._peers.values():
            for entry in peer.services:
                yield entry, False

    def _all_workflows(
        self, local: Iterable[dict[str, Any]]
    ) -> Iterable[tuple[dict[str, Any], bool]]:
        for entry in local:
            yield {**entry, "hub": self.hub_id}, True
        for peer in self._peers.values():
            for entry in peer.workflows:
                yield entry, False

    def stats(self) -> dict[str, int]:
        """Snapshots sent, frames received / malformed / stale (older than one applied),
        snapshots applied and left incomplete, hubs expired and left, and ``peers``
        (hubs known now)."""
        return {**self._counts, "peers": len(self._peers)}


def _object(data: bytes, what: str) -> dict[str, Any]:
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{what}: invalid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError(f"{what}: expected a JSON object")
    return document


def _read_frame(
    data: bytes,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    lines = bytes(data).split(b"\n")
    header = orjson.loads(lines[0])
    if not isinstance(header, dict):
        raise ValueError("header")
    for key, kind in (("hub", str), ("epoch", str), ("sequence", int), ("part", int)):
        if not isinstance(header.get(key), kind):
            raise ValueError(key)
    parts = header.get("parts")
    if not isinstance(parts, int) or not 0 < parts <= 10_000 or header["part"] < 0:
        raise ValueError("parts")
    if not isinstance(header.get("leaving", False), bool):
        raise ValueError("leaving")
    header.setdefault("leaving", False)
    validate_hub_id(header["hub"])
    services, workflows = [], []
    for line in lines[1:]:
        entry = orjson.loads(line[1:])
        if not isinstance(entry, dict):
            raise ValueError("entry")
        if line[:1] == b"s":
            entry.setdefault("instance_id", "")
            if not _texts(entry, "service_id", "instance_id"):
                raise ValueError("service entry")
            services.append(entry)
        elif line[:1] == b"w":
            entry.setdefault("instance_id", "")
            if not _texts(entry, "workflow_id", "service_id", "instance_id"):
                raise ValueError("workflow entry")
            workflows.append(entry)
        else:
            raise ValueError("entry kind")
    return header, services, workflows


def _texts(entry: dict[str, Any], *keys: str) -> bool:
    return all(isinstance(entry.get(key), str) for key in keys)


def _time(text: object) -> datetime:
    if isinstance(text, str):
        try:
            return parse_time(text)
        except ValueError:
            pass
    return _EPOCH_START
