"""The ``turnout`` command line (``turnout`` or ``python -m turnout``).

Commands:

- ``turnout hub``: runs the coordination hub services connect to over WebSocket, on the
  embedded bus or on NATS (``--nats URL``), until SIGINT or SIGTERM.
- ``turnout ctl``: asks a running hub what it knows (services, workflows, a workflow's
  status) and commands workflows (pause, resume, cancel).
- ``turnout watch``: follows events, from a hub's watcher path or a NATS server, one line
  each.
- ``turnout pub``: emits one event on a NATS server.
- ``turnout bench``: runs the standard workloads (W1-W12) on turnout and on each
  workload's baselines (the pure-Python reference index, plain Python, third-party
  libraries), showing progress on stderr and printing a comparison table on stdout;
  ``--json`` and ``--svg`` also write the results and a chart of the speedups.
- ``turnout conformance --nats URL``: checks a live NATS deployment's routing against
  turnout's subject semantics (:mod:`turnout.testing.conformance`).

Each command is one ``_add_<command>`` function registering its parser and its handler, a
function of the parsed arguments returning the exit status. Heavy imports happen inside the
handlers, so one command does not pay for another's.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from turnout import __version__

Handler = Callable[[argparse.Namespace], int]

# The keys of turnout._bench.catalog.WORKLOADS, repeated so that building the parser
# (and so `turnout --help`) loads no benchmark code; tests/test_cli.py checks they agree.
_WORKLOAD_KEYS = ("W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9", "W10", "W11", "W12")
_EXIT_FAILED = 1
_EXIT_USAGE = 2
_EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="turnout",
        description="High-throughput event routing: NATS subject matching in Rust.",
    )
    parser.add_argument("--version", action="version", version=f"turnout {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_bench(commands)
    _add_hub(commands)
    _add_ctl(commands)
    _add_watch(commands)
    _add_pub(commands)
    _add_conformance(commands)
    return parser


# --- turnout bench ----------------------------------------------------------------------


def _add_bench(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = commands.add_parser(
        "bench",
        help="run the standard workloads and compare turnout with its baselines",
        description=(
            "Runs the standard workloads: W1-W4 on the subject index (nats-server's sublist "
            "set, fan-out, churn, scale) beside the pure-Python reference; W5-W12 on the "
            "bus, the dispatcher, logs, phases, NATS, the hub, a fleet of hubs and the "
            "history beside "
            "plain-Python and "
            "third-party baselines. Prints, per workload, turnout's ops/s, time per "
            "operation and P50/P95/P99, and how many times faster it is than each baseline "
            "(above 1 = turnout faster). What is not installed is skipped and listed once "
            "with the command that installs it. Progress goes to stderr, the table to stdout."
        ),
    )
    bench.add_argument(
        "--quick",
        action="store_true",
        help="small scales and few repeats: checks everything runs, in seconds",
    )
    bench.add_argument(
        "--json", type=Path, metavar="FILE", help="also write the results as JSON to FILE"
    )
    bench.add_argument(
        "--svg", type=Path, metavar="FILE", help="also write a bar chart of the speedups to FILE"
    )
    bench.add_argument(
        "--workload",
        dest="workloads",
        type=_workload_key,
        nargs="+",
        action="extend",
        metavar="W",
        help=f"run only these workloads ({', '.join(_WORKLOAD_KEYS)}; default: all)",
    )
    bench.add_argument(
        "--no-reference",
        action="store_true",
        help="measure turnout only, no baselines (the reference is slow at full scale)",
    )
    bench.set_defaults(handler=_run_bench)


def _workload_key(text: str) -> str:
    key = text.strip().upper()
    if key not in _WORKLOAD_KEYS:
        raise argparse.ArgumentTypeError(
            f"unknown workload {text!r} (choose from {', '.join(_WORKLOAD_KEYS)})"
        )
    return key


def _run_bench(args: argparse.Namespace) -> int:
    from turnout._bench.catalog import WORKLOADS
    from turnout._bench.chart import render_speedup_svg
    from turnout._bench.progress import ProgressLine
    from turnout._bench.report import render_table
    from turnout._bench.runner import run_benchmarks
    from turnout._bench.workloads import FULL, QUICK, WorkloadError

    chosen = set(args.workloads or _WORKLOAD_KEYS)
    workloads = [w for key, w in WORKLOADS.items() if key in chosen]
    progress = ProgressLine(sys.stderr)
    try:
        report = run_benchmarks(
            workloads,
            QUICK if args.quick else FULL,
            progress.update,
            turnout_only=args.no_reference,
        )
    except KeyboardInterrupt:
        progress.abandon()
        print("turnout bench: interrupted", file=sys.stderr)
        return _EXIT_INTERRUPTED
    except WorkloadError as error:
        progress.abandon()
        print(f"turnout bench: {error}", file=sys.stderr)
        return _EXIT_FAILED
    progress.finish(f"turnout bench: done in {report.duration_s:.1f} s")

    sys.stdout.write(render_table(report))
    sys.stdout.flush()
    if args.json is not None:
        report.write_json(args.json)
        print(f"turnout bench: results written to {args.json}", file=sys.stderr)
    if args.svg is not None:
        args.svg.write_text(render_speedup_svg(report), encoding="utf-8")
        print(f"turnout bench: chart written to {args.svg}", file=sys.stderr)
    return 0


# --- turnout hub ------------------------------------------------------------------------

_HUB_TOKEN_ENV = "TURNOUT_HUB_TOKEN"


def _add_hub(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    hub = commands.add_parser(
        "hub",
        help="run the coordination hub services connect to over WebSocket",
        description=(
            "Serves the coordination hub: services register at /v1/coordination, watchers "
            "follow events at /v1/watch?subject=PATTERN; everything services send is "
            "republished on the bus under events.coordination.<kind>.<service>.<workflow>. "
            "Stops cleanly on SIGINT or SIGTERM."
        ),
    )
    hub.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    hub.add_argument(
        "--port", type=int, default=8765, help="port to listen on (default: %(default)s)"
    )
    hub.add_argument(
        "--token",
        default=None,
        help=f"require 'Authorization: Bearer TOKEN' (default: ${_HUB_TOKEN_ENV}, else none)",
    )
    hub.add_argument(
        "--auth",
        metavar="FILE",
        help="credentials and their permissions, a JSON file (see docs/hub.md); not with --token",
    )
    hub.add_argument("--tls-cert", metavar="FILE", help="serve TLS with this certificate (PEM)")
    hub.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")
    hub.add_argument(
        "--nats",
        metavar="URL",
        help="republish on NATS at URL (several: comma-separated) and join the fleet of the "
        "hubs there (default: the embedded bus, no fleet)",
    )
    hub.add_argument(
        "--hub-id",
        metavar="ID",
        help="this hub's id in the fleet (default: a generated one)",
    )
    hub.add_argument("--node", default="hub", help="the bus node name (default: %(default)s)")
    hub.add_argument(
        "--max-message-size",
        type=int,
        default=1 << 20,
        metavar="BYTES",
        help="largest frame accepted; bigger ones close with 1009 (default: %(default)s)",
    )
    hub.add_argument(
        "--retention",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how long disconnected services and finished workflows stay listed "
        "(default: %(default)s)",
    )
    hub.add_argument(
        "--max-workflows",
        type=int,
        default=10_000,
        metavar="N",
        help="workflows one service may have tracked at a time (default: %(default)s)",
    )
    hub.set_defaults(handler=_run_hub)


def _run_hub(args: argparse.Namespace) -> int:
    import os

    try:
        from turnout.ws.runner import HubOptions, run_hub
    except ImportError as error:
        print(
            f"turnout hub: needs the ws extra: pip install 'turnout[ws]' ({error})", file=sys.stderr
        )
        return _EXIT_USAGE
    token = args.token or (None if args.auth else os.environ.get(_HUB_TOKEN_ENV)) or None
    return run_hub(
        HubOptions(
            host=args.host,
            port=args.port,
            token=token,
            auth_file=args.auth,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            nats_url=args.nats,
            hub_id=args.hub_id,
            node=args.node,
            max_message_size=args.max_message_size,
            retention=args.retention,
            max_workflows=args.max_workflows,
        )
    )


# --- turnout ctl / watch / pub ----------------------------------------------------------

_HUB_URL_ENV = "TURNOUT_HUB_URL"


def _hub_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hub",
        metavar="URL",
        help=f"the hub's base URL: ws://, http://, wss:// or https://HOST:PORT "
        f"(default: ${_HUB_URL_ENV})",
    )
    parser.add_argument("--token", help=f"the credential's token (default: ${_HUB_TOKEN_ENV})")
    parser.add_argument(
        "--ca-file",
        metavar="FILE",
        help="certificate authorities (PEM) that sign a TLS hub's certificate",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _add_ctl(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ctl = commands.add_parser(
        "ctl",
        help="ask a running hub about services and workflows, and command workflows",
        description=(
            "Talks to a running hub: lists its services and workflows, asks a workflow's "
            "service for its status, pauses, resumes or cancels a workflow (a credential with "
            "'control' for its service). Exits non-zero when the hub or the service refused, "
            "the request expired or the service disconnected first."
        ),
    )
    _hub_options(ctl)
    actions = ctl.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("services", help="the services the hub knows")
    workflows = actions.add_parser("workflows", help="the workflows the hub knows")
    workflows.add_argument("--phase", help="only workflows in this phase")
    workflows.add_argument("--service", help="only this service id's workflows")
    status = actions.add_parser("status", help="ask the workflow's service for its status")
    status.add_argument("workflow")
    pause = actions.add_parser("pause", help="pause a workflow")
    pause.add_argument("workflow")
    pause.add_argument("--reason", default="", help="why (sent to the service)")
    resume = actions.add_parser("resume", help="resume a paused workflow")
    resume.add_argument("workflow")
    resume.add_argument("--from-checkpoint", default="", metavar="ID")
    cancel = actions.add_parser("cancel", help="cancel a workflow")
    cancel.add_argument("workflow")
    cancel.add_argument("--reason", default="")
    cancel.add_argument("--force", action="store_true", help="complete the cancellation at once")
    for parser in (status, pause, resume, cancel):
        parser.add_argument(
            "--timeout",
            type=float,
            default=10.0,
            help="seconds to wait for the service (default: 10)",
        )
    ctl.set_defaults(handler=_run_ctl)


def _hub_client(args: argparse.Namespace, command: str) -> Any:
    import os

    from turnout.ws.operator import HubClient

    url = args.hub or os.environ.get(_HUB_URL_ENV)
    if not url:
        raise _UsageError(f"turnout {command}: give --hub URL or set ${_HUB_URL_ENV}")
    token = args.token or os.environ.get(_HUB_TOKEN_ENV) or None
    try:
        return HubClient(url, token, ca_file=args.ca_file)
    except ValueError as exc:
        raise _UsageError(f"turnout {command}: {exc}") from None


class _UsageError(Exception):
    pass


def _run_ctl(args: argparse.Namespace) -> int:
    import asyncio

    try:
        from turnout.ws.operator import HubClientError
    except ImportError as error:
        print(
            f"turnout ctl: needs the ws extra: pip install 'turnout[ws]' ({error})", file=sys.stderr
        )
        return _EXIT_USAGE
    try:
        client = _hub_client(args, "ctl")
    except _UsageError as exc:
        print(exc, file=sys.stderr)
        return _EXIT_USAGE
    try:
        if args.action == "services":
            rows = client.services()
            _print_rows(
                rows,
                args.json,
                ("service_id", "instance_id", "service_name", "connected", "hub", "version"),
            )
            return 0
        if args.action == "workflows":
            rows = client.workflows(args.phase, args.service)
            _print_rows(
                rows,
                args.json,
                ("workflow_id", "service_id", "hub", "phase", "progress", "updated_at"),
            )
            return 0
        fields: dict[str, Any] = {"timeout": args.timeout}
        if args.action in ("pause", "cancel"):
            fields["reason"] = args.reason
        if args.action == "cancel":
            fields["force"] = args.force
        if args.action == "resume":
            fields["from_checkpoint"] = args.from_checkpoint
        answer = asyncio.run(client.command(args.action, args.workflow, **fields))
    except HubClientError as exc:
        print(f"turnout ctl: {exc}", file=sys.stderr)
        return _EXIT_FAILED
    return _print_answer(args, answer)


def _print_answer(args: argparse.Namespace, answer: dict[str, Any]) -> int:
    import json

    outcome = answer.get("outcome")
    if args.json:
        print(json.dumps(answer, sort_keys=True))
    else:
        response = answer.get("response") or {}
        payload = response.get("payload") or {}
        if outcome == "answered" and args.action == "status":
            _print_rows(
                [{"workflow_id": args.workflow, **payload}],
                False,
                ("workflow_id", "phase", "progress", "current_action", "message"),
            )
        elif outcome == "answered":
            print(f"{args.action} {args.workflow}: {outcome} (phase {payload.get('to', '?')})")
        else:
            detail = answer.get("error") or ""
            print(f"{args.action} {args.workflow}: {outcome}" + (f": {detail}" if detail else ""))
    return 0 if outcome == "answered" else _EXIT_FAILED


def _print_rows(rows: list[dict[str, Any]], as_json: bool, columns: Sequence[str]) -> None:
    import json

    if as_json:
        print(json.dumps(rows, sort_keys=True))
        return
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: object) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _add_watch(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    watch = commands.add_parser(
        "watch",
        help="follow events from a hub or a NATS server, one line each",
        description=(
            "Prints every event matching one of the PATTERNs, one line each (the subject, "
            "then the data as JSON; --json: the whole event), from a hub's watcher path "
            "(--hub) or a NATS server (--nats), until interrupted."
        ),
    )
    _hub_options(watch)
    watch.add_argument("--nats", metavar="URL", help="follow a NATS server instead of a hub")
    watch.add_argument(
        "--count", type=int, default=0, metavar="N", help="stop after N events (default: never)"
    )
    watch.add_argument("patterns", nargs="+", metavar="PATTERN", help="subject patterns")
    watch.set_defaults(handler=_run_watch)


def _event_line(event: dict[str, Any], as_json: bool) -> str:
    import json

    if as_json:
        return json.dumps(event, sort_keys=True, ensure_ascii=False)
    data = json.dumps(event.get("data"), sort_keys=True, ensure_ascii=False)
    return f"{event.get('timestamp', '')} events.{event.get('type', '')} {data}"


def _run_watch(args: argparse.Namespace) -> int:
    import asyncio

    if args.nats is not None and args.hub is not None:
        print("turnout watch: give --hub URL or --nats URL, not both", file=sys.stderr)
        return _EXIT_USAGE
    if args.nats is None and args.hub is None and not _env_hub():
        print(f"turnout watch: give --hub URL (or ${_HUB_URL_ENV}) or --nats URL", file=sys.stderr)
        return _EXIT_USAGE
    try:
        if args.nats is not None:
            return asyncio.run(_watch_nats(args))
        return asyncio.run(_watch_hub(args))
    except KeyboardInterrupt:
        return _EXIT_INTERRUPTED


def _env_hub() -> bool:
    import os

    return bool(os.environ.get(_HUB_URL_ENV))


async def _watch_hub(args: argparse.Namespace) -> int:
    from turnout.ws.operator import HubClientError

    try:
        client = _hub_client(args, "watch")
    except _UsageError as exc:
        print(exc, file=sys.stderr)
        return _EXIT_USAGE
    seen = 0
    try:
        async for event in client.watch(args.patterns):
            print(_event_line(event, args.json), flush=True)
            seen += 1
            if args.count and seen >= args.count:
                return 0
    except HubClientError as exc:
        print(f"turnout watch: {exc}", file=sys.stderr)
        return _EXIT_FAILED
    print("turnout watch: the hub closed the connection", file=sys.stderr)
    return _EXIT_FAILED


async def _watch_nats(args: argparse.Namespace) -> int:
    import asyncio

    import orjson

    from turnout.events import Event

    try:
        import turnout.nats
    except ImportError as error:
        print(f"turnout watch: --nats needs the nats extra ({error})", file=sys.stderr)
        return _EXIT_USAGE
    try:
        bus = await turnout.nats.connect(args.nats, node="turnout-watch")
    except Exception as exc:
        print(f"turnout watch: cannot connect to NATS at {args.nats}: {exc}", file=sys.stderr)
        return _EXIT_FAILED
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    seen = 0

    def show(event: Event) -> None:  # on whatever thread the bus delivers on
        nonlocal seen
        if done.is_set():
            return
        print(_event_line(orjson.loads(event.to_json()), args.json), flush=True)
        seen += 1
        if args.count and seen >= args.count:
            loop.call_soon_threadsafe(done.set)

    try:
        for pattern in args.patterns:
            bus.subscribe(pattern, show)
        await done.wait()
        return 0
    finally:
        await bus.aclose()


def _add_pub(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pub = commands.add_parser(
        "pub",
        help="emit one event on a NATS server",
        description="Emits one event of TYPE (its subject is events.TYPE) with DATA (JSON).",
    )
    pub.add_argument("--nats", metavar="URL", required=True, help="the NATS server")
    pub.add_argument("type", metavar="TYPE", help="the event type, e.g. deploy.started")
    pub.add_argument("data", metavar="JSON-DATA", nargs="?", help="the event's data as JSON")
    pub.set_defaults(handler=_run_pub)


def _run_pub(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from turnout.events import Event

    try:
        data = None if args.data is None else json.loads(args.data)
    except json.JSONDecodeError as exc:
        print(f"turnout pub: JSON-DATA is not JSON: {exc}", file=sys.stderr)
        return _EXIT_USAGE
    try:
        event = Event(args.type, data=data)
    except (ValueError, TypeError) as exc:
        print(f"turnout pub: {exc}", file=sys.stderr)
        return _EXIT_USAGE
    try:
        import turnout.nats
    except ImportError as error:
        print(f"turnout pub: needs the nats extra ({error})", file=sys.stderr)
        return _EXIT_USAGE

    async def publish() -> int:
        try:
            bus = await turnout.nats.connect(args.nats, node="turnout-pub")
        except Exception as exc:
            print(f"turnout pub: cannot connect to NATS at {args.nats}: {exc}", file=sys.stderr)
            return _EXIT_FAILED
        try:
            await bus.aemit(event)
        finally:
            await bus.aclose()
        return 0

    return asyncio.run(publish())


# --- turnout conformance ----------------------------------------------------------------


def _add_conformance(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    conformance = commands.add_parser(
        "conformance",
        help="check a live NATS deployment's routing against turnout's subject semantics",
        description=(
            "Makes random subscriptions (wildcards and queue groups included), publishes "
            "random subjects under turnout-conformance.<nonce>, and compares every delivery "
            "with what turnout's subject index says. Prints what was checked, what "
            "disagreed and the seed to replay; exits 1 on a disagreement or an unfinished "
            "run, 2 when it cannot run."
        ),
    )
    conformance.add_argument(
        "--nats",
        metavar="URL",
        required=True,
        action="append",
        help="a server of the deployment (repeat for a cluster: subscribers spread over them)",
    )
    conformance.add_argument(
        "--subjects",
        type=int,
        default=10_000,
        metavar="N",
        help="subjects to publish (default: %(default)s)",
    )
    conformance.add_argument(
        "--subscriptions",
        type=int,
        default=60,
        metavar="M",
        help="subscriptions to make (default: %(default)s)",
    )
    conformance.add_argument("--seed", type=int, default=None, help="replay the run of this seed")
    conformance.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="give up after this long (default: %(default)s)",
    )
    conformance.set_defaults(handler=_run_conformance)


def _run_conformance(args: argparse.Namespace) -> int:
    from turnout.testing.conformance import command

    return command(
        args.nats,
        subjects=args.subjects,
        subscriptions=args.subscriptions,
        seed=args.seed,
        timeout=args.timeout,
    )
