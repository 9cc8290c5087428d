"""The ``turnout`` command line (``turnout`` or ``python -m turnout``).

Commands:

- ``turnout hub``: runs the coordination hub services connect to over WebSocket, on the
  embedded bus or on NATS (``--nats URL``), until SIGINT or SIGTERM.
- ``turnout bench``: runs the standard workloads (W1-W10) on turnout and on each
  workload's baselines (the pure-Python reference index, plain Python, third-party
  libraries), showing progress on stderr and printing a comparison table on stdout;
  ``--json`` and ``--svg`` also write the results and a chart of the speedups.

Each command is one ``_add_<command>`` function registering its parser and its handler, a
function of the parsed arguments returning the exit status. Heavy imports happen inside the
handlers, so one command does not pay for another's.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from turnout import __version__

Handler = Callable[[argparse.Namespace], int]

# The keys of turnout._bench.catalog.WORKLOADS, repeated so that building the parser
# (and so `turnout --help`) loads no benchmark code; tests/test_cli.py checks they agree.
_WORKLOAD_KEYS = ("W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9", "W10")
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
    return parser


# --- turnout bench ----------------------------------------------------------------------


def _add_bench(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = commands.add_parser(
        "bench",
        help="run the standard workloads and compare turnout with its baselines",
        description=(
            "Runs the standard workloads: W1-W4 on the subject index (nats-server's sublist "
            "set, fan-out, churn, scale) beside the pure-Python reference; W5-W10 on the "
            "bus, the dispatcher, logs, phases, NATS and the hub beside plain-Python and "
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
        "--nats", metavar="URL", help="republish on a NATS bus at URL (default: the embedded bus)"
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
            node=args.node,
            max_message_size=args.max_message_size,
            retention=args.retention,
            max_workflows=args.max_workflows,
        )
    )
