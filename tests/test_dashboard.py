"""The hub's dashboard in headless Chromium (Debian's ``chromium``, driven by playwright),
against ``turnout hub`` in a child process and real :class:`~turnout.ws.Coordinator`
services. Every wait is for a state, with a generous bound; nothing is timed.

Outside CI a machine without Chromium or playwright skips these tests, naming the install
command; under ``CI=true`` they fail instead."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest
import pytest_asyncio
from waiting import until
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from turnout._bench.dashboard import (
    CHROMIUM_INSTALL,
    chromium_executable,
    launch_chromium,
    measure_first_paint,
    measure_updates,
    start_services,
    wait_for,
)
from turnout.phases import Phase
from turnout.protocol import MessageType, PhaseChangedPayload, RegisterPayload, WSMessage
from turnout.testing.hub_process import HubProcess
from turnout.ws import Coordinator, CoordinatorConfig
from turnout.ws.dashboard import cookie_value

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page

pytestmark = pytest.mark.asyncio(loop_scope="module")

WAIT = 30.0
OPS, WATCHER, SERVICES = "ops-token-5d1f", "watcher-token-77ab", "services-token-c0de"
CREDENTIALS = {
    "credentials": [
        {"name": "ops", "token": OPS, "watch": [">"], "control": ["*"]},
        {"name": "watcher", "token": WATCHER, "watch": ["events.coordination.>"]},
        {"name": "services", "token": SERVICES, "register": ["*"]},
    ]
}


def _browser_or_reason() -> str:
    """The Chromium executable, after checking playwright imports; skips or fails (CI)."""
    executable = chromium_executable()
    missing = None
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        missing = "playwright is not installed: pip install 'turnout[test]'"
    if missing is None and executable is None:
        missing = f"no chromium to drive: {CHROMIUM_INSTALL}"
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the browser tests must run in CI: {missing}")
        pytest.skip(missing)
    assert executable is not None
    return executable


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with launch_chromium(_browser_or_reason()) as launched:
        yield launched


@pytest.fixture(scope="module")
def auth_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """A hub with three credentials: ops (control), watcher (watch only), services."""
    path = tmp_path_factory.mktemp("dashboard") / "auth.json"
    path.write_text(json.dumps(CREDENTIALS))
    hub = HubProcess(args=["--auth", str(path)]).start()
    try:
        yield hub
    finally:
        hub.kill()


def base_url(hub: HubProcess) -> str:
    return f"http://127.0.0.1:{hub.port}"


@pytest_asyncio.fixture(loop_scope="module")
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile (no cookies) per test."""
    made = await browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield made
    finally:
        await made.close()


async def open_page(context: BrowserContext, hub: HubProcess) -> Page:
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(base_url(hub) + "/")
    page_errors[id(page)] = errors
    return page


page_errors: dict[int, list[str]] = {}


async def sign_in(context: BrowserContext, hub: HubProcess, token: str) -> Page:
    """Opens the page and signs in through its form, as a person would."""
    page = await open_page(context, hub)
    await page.wait_for_selector("#sign-in-form", state="visible", timeout=WAIT * 1000)
    await page.fill("#token", token)
    await page.click("#sign-in-form button[type=submit]")
    await wait_for(page, "document.getElementById('status').dataset.state === 'connected'", "hub")
    return page


def row(workflow_id: str) -> str:
    return f"#workflows tr[data-workflow='{workflow_id}']"


async def phase_shown(page: Page, workflow_id: str, phase: str) -> None:
    await page.wait_for_selector(
        f"{row(workflow_id)} .phase[data-phase='{phase}']", timeout=WAIT * 1000
    )


async def outcome_shown(page: Page, workflow_id: str, text: str) -> str:
    selector = f"{row(workflow_id)} .outcome"
    await wait_for(
        page,
        "(document.querySelector(arg[0])?.textContent || '').startsWith(arg[1])",
        f"{workflow_id}'s outcome {text!r}",
        arg=[selector, text],
    )
    return await page.inner_text(selector)


def service(hub: HubProcess, service_id: str, **config: Any) -> Coordinator:
    return Coordinator(
        CoordinatorConfig(
            hub.url,
            "builder",
            service_id=service_id,
            token=SERVICES,
            reconnect_initial_delay=0.1,
            **config,
        )
    )


def to_execution(coordinator: Coordinator, workflow_id: str) -> None:
    phases = coordinator.phases
    phases.register_workflow(workflow_id)
    for phase in (Phase.PRE_FLIGHT, Phase.PLANNING, Phase.EXECUTION):
        phases.transition_to(workflow_id, phase, "starting")


async def service_phase(coordinator: Coordinator, workflow_id: str, phase: Phase) -> None:
    await until(
        lambda: coordinator.phases.get_phase(workflow_id) is phase, f"{phase} at the service"
    )


# --- what the page shows ------------------------------------------------------------------


async def test_a_service_appears_then_its_phase_progress_and_log_line(
    context: BrowserContext, auth_hub: HubProcess, tmp_path: Path
) -> None:
    page = await sign_in(context, auth_hub, OPS)
    assert OPS not in page.url and "token" not in page.url
    (cookie,) = await context.cookies()
    assert (cookie["name"], cookie["value"], cookie["httpOnly"], cookie["sameSite"]) == (
        "turnout_session",
        cookie_value(OPS),
        True,
        "Strict",
    )
    assert not cookie["secure"]  # no TLS here; under TLS the hub adds Secure (test below)
    assert await page.evaluate("document.cookie") == ""  # HttpOnly: scripts cannot read it
    async with service(auth_hub, "svc-live") as coordinator:
        await page.wait_for_selector(
            "#services tr[data-service='svc-live'] .state-connected", timeout=WAIT * 1000
        )
        # which hub holds it (in a fleet, possibly another one), from the next refresh
        hub_id = await wait_for(
            page,
            "document.querySelector(\"#services tr[data-service='svc-live'] .hub-column\")"
            "?.textContent",
            "the service's hub",
        )
        assert hub_id.startswith("hub-")
        to_execution(coordinator, "wf-live")
        await phase_shown(page, "wf-live", "execution")
        coordinator.send_progress("wf-live", "build", 42.0, "build", "compiling")
        await page.wait_for_selector(
            f"{row('wf-live')} .col-message:text('compiling')", timeout=WAIT * 1000
        )
        assert await page.inner_text(f"{row('wf-live')} .percent") == "42%"
        coordinator.log_with_context("info", "image app:1.2 built", "wf-live")
        coordinator.log_debug("cache warm")
        await page.wait_for_selector("#log-tail li:has-text('image app:1.2 built')")
        # the level filter: debug lines appear only when asked for
        assert await page.locator("#log-tail li:has-text('cache warm')").count() == 0
        await page.select_option("#log-level", "debug")
        await page.wait_for_selector("#log-tail li:has-text('cache warm')")
        await page.select_option("#log-level", "error")
        await page.wait_for_selector("#log-tail li", state="detached", timeout=WAIT * 1000)
        await page.wait_for_selector("#counters [data-counter='received']")
        # a few services, for the eye
        others = [service(auth_hub, f"svc-{n}") for n in range(2)]
        for n, other in enumerate(others):
            await other.connect()
            to_execution(other, f"wf-other-{n}")
            other.send_progress(f"wf-other-{n}", "test", 30.0 + 40 * n, "test", "running tests")
        await page.select_option("#log-level", "info")
        await page.wait_for_selector(f"{row('wf-other-1')} .col-message:text('running tests')")
        shot = tmp_path / "dashboard.png"
        await page.screenshot(path=str(shot), full_page=True)
        print(f"\ndashboard screenshot: {shot}")
        for other in others:
            await other.close()
    await page.wait_for_selector(
        "#services tr[data-service='svc-live'] .state-disconnected", timeout=WAIT * 1000
    )
    assert page_errors[id(page)] == []


async def test_pause_resume_and_cancel_from_the_page_reach_the_service(
    context: BrowserContext, auth_hub: HubProcess
) -> None:
    page = await sign_in(context, auth_hub, OPS)
    async with service(auth_hub, "svc-commands") as coordinator:
        to_execution(coordinator, "wf-c")
        await phase_shown(page, "wf-c", "execution")

        await page.click(f"{row('wf-c')} button[data-command='pause']")
        await service_phase(coordinator, "wf-c", Phase.PAUSING)
        await phase_shown(page, "wf-c", "pausing")
        assert await outcome_shown(page, "wf-c", "pause: answered") == "pause: answered"
        coordinator.phases.complete_pause("wf-c", "cp-1")
        await phase_shown(page, "wf-c", "paused")

        await page.click(f"{row('wf-c')} button[data-command='resume']")
        await service_phase(coordinator, "wf-c", Phase.RESUMING)
        await phase_shown(page, "wf-c", "resuming")
        await outcome_shown(page, "wf-c", "resume: answered")
        coordinator.phases.complete_resume("wf-c")
        await phase_shown(page, "wf-c", "execution")

        # the service says no: its reason is shown
        await page.click(f"{row('wf-c')} button[data-command='resume']")
        refused = await outcome_shown(page, "wf-c", "resume: refused: ")
        assert "execution" in refused, refused

        await page.click(f"{row('wf-c')} button[data-command='cancel']")
        await service_phase(coordinator, "wf-c", Phase.CANCELLING)
        await phase_shown(page, "wf-c", "cancelling")
        await outcome_shown(page, "wf-c", "cancel: answered")
        coordinator.phases.complete_cancellation("wf-c")
        await phase_shown(page, "wf-c", "cancelled")
        assert await page.is_disabled(f"{row('wf-c')} button[data-command='pause']")
    assert page_errors[id(page)] == []


async def test_a_command_nobody_answers_is_shown_expired(
    context: BrowserContext, auth_hub: HubProcess
) -> None:
    page = await sign_in(context, auth_hub, OPS)
    # A service that reports a workflow and then never answers anything.
    headers = {"X-Service-Name": "mute", "Authorization": f"Bearer {SERVICES}"}
    async with connect(auth_hub.url, additional_headers=headers) as mute:
        await mute.send(
            WSMessage.with_payload(MessageType.REGISTER, RegisterPayload("mute", "svc-mute"))
            .to_json()
            .decode()
        )
        await asyncio.wait_for(mute.recv(), WAIT)
        report = PhaseChangedPayload("wf-mute", Phase.PLANNING, Phase.EXECUTION)
        await mute.send(
            WSMessage.with_payload(MessageType.PHASE_CHANGED, report).to_json().decode()
        )
        await phase_shown(page, "wf-mute", "execution")
        await page.evaluate("turnoutDashboard.command('pause', 'wf-mute', {timeout: 0.2})")
        shown = await outcome_shown(page, "wf-mute", "pause: expired")
        assert shown == "pause: expired: no answer before the timeout"


async def test_a_watch_only_credential_sees_no_buttons_and_a_forged_command_is_refused(
    context: BrowserContext, auth_hub: HubProcess
) -> None:
    page = await sign_in(context, auth_hub, WATCHER)
    async with service(auth_hub, "svc-watched") as coordinator:
        to_execution(coordinator, "wf-w")
        await phase_shown(page, "wf-w", "execution")
        assert await page.locator("#workflows button").count() == 0
        assert not await page.is_visible("#workflows th.control-column")
        # What a tampered page could send, on its feed and on the operators' socket.
        await page.evaluate(
            "turnoutDashboard.send({id: 'forged', command: 'pause', workflow_id: 'wf-w'})"
        )
        answer = await wait_for(
            page, "turnoutDashboard.state.answers.get('forged')", "the forged command's answer"
        )
        assert answer["outcome"] == "error"
        assert answer["error"] == "credential 'watcher' may not control service 'svc-watched'"
        control_answer = await page.evaluate(
            """() => new Promise((resolve, reject) => {
                const ws = new WebSocket(`ws://${location.host}/v1/control`);
                ws.onopen = () => ws.send(JSON.stringify(
                    {id: 1, command: 'cancel', workflow_id: 'wf-w', force: true}));
                ws.onmessage = (event) => { resolve(JSON.parse(event.data)); ws.close(); };
                ws.onerror = () => reject(new Error('no control socket'));
            })"""
        )
        assert control_answer["outcome"] == "error"
        assert "may not control" in control_answer["error"]
        assert coordinator.phases.get_phase("wf-w") is Phase.EXECUTION


# --- signing in and out, and the cookie off its own site ----------------------------------


async def test_sign_in_refuses_a_bad_token_and_sign_out_forgets_the_session(
    context: BrowserContext, auth_hub: HubProcess
) -> None:
    page = await open_page(context, auth_hub)
    await page.wait_for_selector("#sign-in-form", state="visible", timeout=WAIT * 1000)
    assert await page.is_hidden("#dashboard")
    await page.fill("#token", "not-a-token")
    await page.click("#sign-in-form button[type=submit]")
    await page.wait_for_selector("#sign-in-error:text('invalid token')", timeout=WAIT * 1000)
    assert await context.cookies() == []
    assert "not-a-token" not in page.url
    page = await sign_in(context, auth_hub, OPS)
    await page.click("#sign-out")
    await page.wait_for_selector("#sign-in-form", state="visible", timeout=WAIT * 1000)
    assert await context.cookies() == []
    await page.reload()
    await page.wait_for_selector("#sign-in-form", state="visible", timeout=WAIT * 1000)


async def test_the_session_cookie_is_refused_from_another_origin(auth_hub: HubProcess) -> None:
    cookie = {"Cookie": f"theme=dark; turnout_session={cookie_value(OPS)}"}
    dashboard = f"ws://127.0.0.1:{auth_hub.port}/v1/dashboard"
    own = base_url(auth_hub)
    # Another page of the same site (another port, same host) and one of another site.
    for origin in ("http://127.0.0.1:1", "http://evil.example"):
        with pytest.raises(InvalidStatus) as refused:
            await connect(dashboard, additional_headers=cookie, origin=origin)  # type: ignore[arg-type]
        assert refused.value.response.status_code == 403
        assert b"may not use this hub's session" in refused.value.response.body
    with pytest.raises(InvalidStatus) as no_origin:  # a WebSocket by cookie needs an Origin
        await connect(dashboard, additional_headers=cookie)
    assert no_origin.value.response.status_code == 403
    async with connect(dashboard, additional_headers=cookie, origin=own) as feed:  # type: ignore[arg-type]
        hello = orjson.loads(await asyncio.wait_for(feed.recv(), WAIT))
        assert (hello["type"], hello["credential"], hello["control"]) == ("hello", "ops", "*")
    # plain requests: a cross-site fetch is refused, the page's own is served
    status, body = await http_get(
        auth_hub, "/v1/services", {**cookie, "Sec-Fetch-Site": "cross-site"}
    )
    assert status == 403
    status, body = await http_get(
        auth_hub, "/v1/services", {**cookie, "Origin": "http://evil.example"}
    )
    assert status == 403
    status, body = await http_get(
        auth_hub, "/v1/services", {**cookie, "Sec-Fetch-Site": "same-origin"}
    )
    assert status == 200 and "services" in orjson.loads(body)
    status, body = await http_get(
        auth_hub, "/v1/services", {"Cookie": f"turnout_session={cookie_value('wrong')}"}
    )
    assert status == 401
    # signing in from another origin
    status, body = await http_get(
        auth_hub,
        "/v1/session",
        {
            "Authorization": f"Bearer {OPS}",
            "X-Turnout-Session": "sign-in",
            "Origin": "http://evil.example",
        },
    )
    assert status == 403


async def http_get(hub: HubProcess, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{hub.port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), WAIT)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


# --- an open hub: no sign-in; a restart --------------------------------------------------


async def test_an_open_hub_needs_no_sign_in_and_the_page_survives_a_restart(
    context: BrowserContext,
) -> None:
    hub = HubProcess(token="").start()
    try:
        page = await open_page(context, hub)
        await wait_for(
            page, "document.getElementById('status').dataset.state === 'connected'", "hub"
        )
        assert await page.is_hidden("#sign-in")
        assert await page.inner_text("#who") == "open hub"
        async with service(hub, "svc-restart") as coordinator:
            to_execution(coordinator, "wf-r")
            await phase_shown(page, "wf-r", "execution")
            hub.kill()
            await page.wait_for_selector("#status[data-state='reconnecting']", timeout=WAIT * 1000)
            hub.start()
            await page.wait_for_selector("#status[data-state='connected']", timeout=WAIT * 1000)
            # the service registers again and reports its workflow; the page shows both
            await page.wait_for_selector(
                "#services tr[data-service='svc-restart'] .state-connected", timeout=WAIT * 1000
            )
            await phase_shown(page, "wf-r", "execution")
            assert await page.evaluate("turnoutDashboard.metrics.connects") >= 2
    finally:
        hub.kill()


# --- a thousand workflows ----------------------------------------------------------------


async def test_a_thousand_workflows_first_paint_and_update_rate(
    context: BrowserContext,
) -> None:
    hub = HubProcess(token="").start()
    coordinators: list[Coordinator] = []
    try:
        coordinators = await start_services(hub.url, 4, 1000, phase=None)
        page = await context.new_page()
        first_paint = await measure_first_paint(page, base_url(hub), 1000)
        rates = await measure_updates(page, coordinators, 1000, rounds=5)
        print(f"\n1000 workflows: first paint {first_paint:.0f} ms; {rates.describe()}")
        assert await page.locator("#workflows tbody tr").count() == 1000
    finally:
        for coordinator in coordinators:
            await coordinator.close()
        hub.kill()


async def test_under_tls_the_session_cookie_is_secure(tmp_path: Path) -> None:
    from test_hub_service import make_certificate

    from turnout.ws import Hub

    cert, key = make_certificate(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    client_tls = ssl.create_default_context(cafile=str(cert))
    async with Hub(port=0, token="s3cret", ssl=server_tls) as hub:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", hub.port, ssl=client_tls, server_hostname="localhost"
        )
        writer.write(
            f"GET /v1/session HTTP/1.1\r\nHost: localhost:{hub.port}\r\n"
            "Authorization: Bearer s3cret\r\nX-Turnout-Session: sign-in\r\n\r\n".encode()
        )
        head = (await asyncio.wait_for(reader.read(), WAIT)).partition(b"\r\n\r\n")[0]
        writer.close()
    lines = head.decode().split("\r\n")
    assert lines[0].split()[1] == "200"
    (cookie,) = [line.partition(":")[2].strip() for line in lines if line.startswith("Set-Cookie")]
    value = cookie_value("s3cret")
    assert cookie == f"turnout_session={value}; Path=/; HttpOnly; SameSite=Strict; Secure"


async def test_a_page_that_falls_behind_gets_a_fresh_snapshot_instead_of_the_backlog() -> None:
    from turnout.events import Event
    from turnout.ws import Hub
    from turnout.ws.dashboard import MAX_PENDING_EVENTS

    async with Hub(port=0) as hub, connect(hub.base_url + "/v1/dashboard") as feed:
        kinds = [orjson.loads(await asyncio.wait_for(feed.recv(), WAIT))["type"] for _ in "ab"]
        assert kinds == ["hello", "snapshot"]
        # More than a page may have waiting, all within one turn of the hub's loop.
        for n in range(MAX_PENDING_EVENTS + 1):
            hub.bus.emit(Event(f"coordination.progress.svc.wf-{n % 7}", data={"n": n}))
        stats = hub.stats()
        assert stats["dashboard_events_skipped"] == MAX_PENDING_EVENTS + 1
        while (frame := orjson.loads(await asyncio.wait_for(feed.recv(), WAIT)))["type"] != (
            "snapshot"
        ):
            assert frame["type"] == "stats"  # no events: they were dropped for the snapshot
        await until(lambda: hub.stats()["dashboard_resyncs"] == 1, "the resync counted")
        hub.bus.emit(Event("coordination.progress.svc.wf-after", data={}))
        while (frame := orjson.loads(await asyncio.wait_for(feed.recv(), WAIT)))["type"] != (
            "events"
        ):
            pass
        assert [e["type"] for e in frame["events"]] == ["coordination.progress.svc.wf-after"]
