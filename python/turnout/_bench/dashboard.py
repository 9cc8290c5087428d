"""The hub's dashboard in a real browser: how fast it draws, and a screenshot of it.

``python -m turnout._bench.dashboard`` starts ``turnout hub`` in a child process, connects
services (real :class:`~turnout.ws.Coordinator` clients) reporting ``--workflows``
workflows between them, opens the page in headless Chromium (Debian's ``chromium``
package, driven by playwright; no browser is downloaded) and prints:

- **first paint**: from the start of the page's navigation until the frame after the one
  that drew every workflow of the hub's first snapshot;
- **updates**: while the services send ``--rounds`` progress reports for every workflow
  as fast as they can, the events the page applied per second, the workflow rows it
  redrew per second, the frames it drew per second, and the longest gap between two
  animation frames (what a user would feel as a freeze).

``--screenshot PATH`` also writes a screenshot of the page with a few services (the one
in the documentation is ``--screenshot docs/images/dashboard.png``). The browser is
``$TURNOUT_CHROMIUM`` or the ``chromium`` on ``PATH``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from turnout.phases import Phase
from turnout.ws import Coordinator, CoordinatorConfig

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

__all__ = [
    "CHROMIUM_INSTALL",
    "DrawRates",
    "chromium_executable",
    "launch_chromium",
    "main",
    "measure_first_paint",
    "measure_updates",
    "start_services",
    "wait_for",
]

#: How to get the browser these measurements and the browser tests use.
CHROMIUM_INSTALL = "apt-get install -y chromium"
WAIT = 30.0


def chromium_executable() -> str | None:
    """``$TURNOUT_CHROMIUM``, or Debian's ``chromium`` on ``PATH``; None when neither."""
    given = os.environ.get("TURNOUT_CHROMIUM")
    if given:
        return given
    return shutil.which("chromium") or shutil.which("chromium-browser")


@asynccontextmanager
async def launch_chromium(executable: str) -> AsyncIterator[Browser]:
    """Headless Chromium from ``executable``, driven by playwright."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, args=["--disable-gpu", "--no-sandbox"]
        )
        try:
            yield browser
        finally:
            await browser.close()


async def wait_for(
    page: Page, expression: str, what: str, timeout: float = WAIT, arg: Any = None
) -> Any:
    """Waits until ``expression`` (JavaScript, run in the page; ``arg`` is its ``arg``)
    is truthy; returns its value. Polled from here: playwright's own polling evaluates
    strings with ``eval()`` in some versions, which the page's content security policy
    forbids."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await page.evaluate(f"(arg) => ({expression})", arg)
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def start_services(
    url: str,
    services: int,
    workflows: int,
    token: str | None = None,
    *,
    phase: Phase | None = Phase.EXECUTION,
) -> list[Coordinator]:
    """``services`` coordinators (``svc-0``...) reporting ``workflows`` workflows between
    them (``wf-0``...), each moved to ``phase`` (None: only a progress report)."""
    coordinators = []
    for n in range(services):
        config = CoordinatorConfig(
            url, f"builder-{n}", service_id=f"svc-{n}", token=token, reconnect_initial_delay=0.2
        )
        coordinator = Coordinator(config, queue_size=max(1000, 4 * workflows))
        await coordinator.connect()
        coordinators.append(coordinator)
    for w in range(workflows):
        coordinator = coordinators[w % services]
        workflow_id = f"wf-{w}"
        if phase is None:
            coordinator.send_progress(workflow_id, "start", 0.0, "start", "started")
            continue
        coordinator.phases.register_workflow(workflow_id)
        for step in (Phase.PRE_FLIGHT, Phase.PLANNING, Phase.EXECUTION):
            coordinator.phases.transition_to(workflow_id, step, "starting")
            if step is phase:
                break
    return coordinators


async def measure_first_paint(page: Page, base_url: str, workflows: int) -> float:
    """Opens the page; milliseconds from the navigation's start until the frame after the
    one that drew the ``workflows`` workflows of its first snapshot."""
    await page.goto(base_url + "/")
    await wait_for(
        page,
        f"turnoutDashboard.metrics.snapshotWorkflows >= {workflows}"
        " && typeof turnoutDashboard.metrics.firstPaint === 'number'",
        f"the page to draw {workflows} workflows",
    )
    first_paint: float = await page.evaluate("turnoutDashboard.metrics.firstPaint")
    return first_paint


@dataclass(frozen=True)
class DrawRates:
    """What the page did while the services reported: per second; the longest gap
    between two animation frames and the longest the page's own code held the main thread
    (a message or a frame), in milliseconds; the share of the time its code ran."""

    seconds: float
    events_per_second: float
    rows_per_second: float
    frames_per_second: float
    longest_frame_ms: float
    longest_task_ms: float
    busy_share: float

    def describe(self) -> str:
        return (
            f"{self.events_per_second:,.0f} events/s applied, "
            f"{self.rows_per_second:,.0f} row updates/s, "
            f"{self.frames_per_second:.0f} frames/s, longest frame gap "
            f"{self.longest_frame_ms:.0f} ms, the page's longest task "
            f"{self.longest_task_ms:.0f} ms, its code busy {self.busy_share:.0%} of "
            f"{self.seconds:.1f} s"
        )


_WATCH_FRAMES = """() => {
  const watch = { longest: 0, last: performance.now(), running: true };
  const step = (now) => {
    watch.longest = Math.max(watch.longest, now - watch.last);
    watch.last = now;
    if (watch.running) requestAnimationFrame(step);
  };
  requestAnimationFrame(step);
  window.frameWatch = watch;
  const m = turnoutDashboard.metrics;
  m.longestTaskMs = 0;
  window.drawStart = { at: performance.now(), events: m.eventsReceived,
                       rows: m.updatesApplied, frames: m.framesRendered, busy: m.busyMs };
}"""

_DRAW_RATES = """() => {
  window.frameWatch.running = false;
  const m = turnoutDashboard.metrics, s = window.drawStart;
  return { seconds: (performance.now() - s.at) / 1000, events: m.eventsReceived - s.events,
           rows: m.updatesApplied - s.rows, frames: m.framesRendered - s.frames,
           longest: window.frameWatch.longest, task: m.longestTaskMs,
           busy: m.busyMs - s.busy };
}"""


async def measure_updates(
    page: Page, coordinators: Sequence[Coordinator], workflows: int, rounds: int
) -> DrawRates:
    """Has the services send ``rounds`` progress reports for each of ``workflows``
    workflows, the last one at 100%, and waits until the page shows every workflow at
    100%."""
    await page.evaluate(_WATCH_FRAMES)
    services = len(coordinators)
    for r in range(1, rounds + 1):
        percent = 100.0 * r / rounds
        for w in range(workflows):
            coordinators[w % services].send_progress(
                f"wf-{w}", "step", percent, "work", f"round {r} of {rounds}"
            )
        await asyncio.sleep(0)  # let the writers go
    await wait_for(
        page,
        "(() => { let done = 0; for (const w of turnoutDashboard.state.workflows.values())"
        f" if (w.progress >= 100) done += 1; return done >= {workflows}; }})()",
        f"{workflows} workflows at 100%",
        timeout=120.0,
    )
    raw = await page.evaluate(_DRAW_RATES)
    seconds = max(raw["seconds"], 1e-9)
    return DrawRates(
        seconds,
        raw["events"] / seconds,
        raw["rows"] / seconds,
        raw["frames"] / seconds,
        raw["longest"],
        raw["task"],
        raw["busy"] / 1000 / seconds,
    )


async def _run(args: argparse.Namespace) -> int:
    from turnout.testing.hub_process import HubProcess

    executable = args.chromium or chromium_executable()
    if executable is None:
        print(f"no chromium found: {CHROMIUM_INSTALL} (or set TURNOUT_CHROMIUM)", file=sys.stderr)
        return 1
    hub = HubProcess(token="").start()
    base_url = f"http://127.0.0.1:{hub.port}"
    coordinators: list[Coordinator] = []
    try:
        async with launch_chromium(executable) as browser:
            if args.screenshot:
                coordinators = await _screenshot(browser, hub.url, base_url, args.screenshot)
                for coordinator in coordinators:
                    await coordinator.close()
                hub.kill()
                hub = HubProcess(token="").start()
                base_url = f"http://127.0.0.1:{hub.port}"
            coordinators = await start_services(hub.url, args.services, args.workflows)
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            first_paint = await measure_first_paint(page, base_url, args.workflows)
            print(f"{args.workflows} workflows: first paint {first_paint:.0f} ms")
            rates = await measure_updates(page, coordinators, args.workflows, args.rounds)
            print(f"{args.workflows} workflows, {args.rounds} rounds: {rates.describe()}")
    finally:
        for coordinator in coordinators:
            await coordinator.close()
        hub.kill()
    return 0


async def _screenshot(browser: Browser, url: str, base_url: str, path: str) -> list[Coordinator]:
    """Three services with a few workflows in various states, and a screenshot."""
    coordinators = await start_services(url, 3, 7)
    page = await browser.new_page(viewport={"width": 1280, "height": 960})
    await page.goto(base_url + "/")
    await wait_for(page, "turnoutDashboard.state.workflows.size >= 7", "7 workflows")
    # A few seconds of traffic, so that the chart shows something.
    finals = (35.0, 60.0, 80.0, 12.0, 100.0, 100.0, 47.0)
    for second in range(1, 5):
        for w, final in enumerate(finals):
            coordinators[w % 3].send_progress(
                f"wf-{w}", "build", final * second / 4, "build", f"step {second} of 4"
            )
        await asyncio.sleep(1.0)
    phases = coordinators[1].phases
    phases.transition_to("wf-1", Phase.PAUSING, "maintenance window")
    phases.complete_pause("wf-1", "cp-7")
    coordinators[2].phases.transition_to("wf-5", Phase.COMPLETING, "wrapping up")
    coordinators[2].phases.transition_to("wf-5", Phase.COMPLETED, "done")
    coordinators[0].log_with_context("info", "image app:1.2 built", "wf-0")
    coordinators[1].log_with_context("warn", "disk 85% full on builder-1", "wf-1")
    coordinators[2].log_with_context("error", "test suite failed: 2 of 310", "wf-2")
    await wait_for(page, "turnoutDashboard.state.logs.length >= 3", "3 log lines")
    await wait_for(
        page, "turnoutDashboard.state.workflows.get('wf-5').phase === 'completed'", "wf-5 done"
    )
    await page.screenshot(path=path, full_page=True)
    await page.close()
    print(f"screenshot: {path}")
    return coordinators


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m turnout._bench.dashboard", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--services", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=10, help="progress reports per workflow")
    parser.add_argument("--screenshot", metavar="PATH", help="also write a screenshot here")
    parser.add_argument("--chromium", metavar="PATH", help="the browser's executable")
    return asyncio.run(_run(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
