// The turnout hub's dashboard: one WebSocket (/v1/dashboard) feeds it; changes are kept
// in plain objects and drawn at most once per animation frame, so a burst of thousands of
// events costs one layout, not thousands.
"use strict";

(() => {
  const LEVELS = ["debug", "info", "warn", "error", "fatal"];
  const TERMINAL = new Set(["completed", "cancelled", "failed"]);
  const LOG_KEPT = 1000;         // entries remembered
  const LOG_SHOWN = 200;         // entries drawn
  const RATE_SECONDS = 60;       // the chart's width in seconds
  const COMMANDS_KEPT = 100;     // answers remembered (for tests and the curious)
  const COLOURS = ["#2b6cb0", "#2f855a", "#b7791f", "#c53030", "#6b46c1", "#319795", "#d53f8c", "#4a5568"];

  const $ = (id) => document.getElementById(id);
  const metrics = {
    // performance.now() of the first frame drawn after the first snapshot was drawn
    firstPaint: null,
    snapshotWorkflows: 0,
    framesRendered: 0,
    updatesApplied: 0,     // workflow rows redrawn
    eventsReceived: 0,
    longestTaskMs: 0,      // the longest the page's own code held the main thread
    busyMs: 0,             // and its total
    snapshots: 0,
    connects: 0,
  };
  const state = {
    session: null,          // what GET /v1/session said
    control: null,          // "*" or the service ids this credential may command
    credential: null,
    services: new Map(),    // "service_id/instance_id" -> document
    workflows: new Map(),   // workflow_id -> {doc fields, row, dirty}
    dirty: new Set(),       // workflow ids to redraw
    servicesDirty: false,
    counters: null,
    countersDirty: false,
    logs: [],
    logsDirty: false,
    rates: new Map(),       // kind -> {colour, counts: number[RATE_SECONDS]}
    rateSecond: Math.floor(Date.now() / 1000),
    answers: new Map(),     // command id -> the hub's answer
    pending: new Map(),     // command id -> {command, workflow_id}
    nextId: 1,
    filter: "",
  };
  let socket = null;
  let retryDelay = 250;
  let retryTimer = null;
  let frameRequested = false;
  let stopped = false;       // signed out: no reconnecting

  // -- connection ------------------------------------------------------------------------

  function setStatus(text, key) {
    const status = $("status");
    status.textContent = text;
    status.dataset.state = key;
  }

  async function start() {
    clearTimeout(retryTimer);
    let session;
    try {
      const response = await fetch("/v1/session", { cache: "no-store", credentials: "same-origin" });
      session = await response.json();
    } catch (error) {
      reconnectLater();
      return;
    }
    state.session = session;
    if (session.auth && !session.credential) {
      showSignIn("");
      return;
    }
    $("who").textContent = session.credential ? `signed in as ${session.credential}` : "open hub";
    $("sign-out").hidden = !session.auth;
    $("sign-in").hidden = true;
    $("dashboard").hidden = false;
    stopped = false;
    connect();
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/v1/dashboard`);
    socket = ws;
    ws.onmessage = (event) => {
      if (ws !== socket) return;
      const began = performance.now();
      receive(JSON.parse(event.data));
      busy(began);
    };
    ws.onclose = () => {
      if (ws !== socket) return;
      socket = null;
      for (const [id, sent] of state.pending) settle(id, sent, { outcome: "disconnected", error: "the connection to the hub closed first" });
      if (!stopped) reconnectLater();
    };
  }

  function reconnectLater() {
    setStatus("reconnecting", "reconnecting");
    clearTimeout(retryTimer);
    retryTimer = setTimeout(start, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 4000);
  }

  function showSignIn(error) {
    stopped = true;
    if (socket) { const ws = socket; socket = null; ws.close(); }
    setStatus("signed out", "signed-out");
    $("who").textContent = "";
    $("sign-out").hidden = true;
    $("dashboard").hidden = true;
    $("sign-in").hidden = false;
    $("sign-in-error").textContent = error;
    $("token").focus();
  }

  async function signIn(event) {
    event.preventDefault();
    const input = $("token");
    const token = input.value.trim();
    input.value = "";
    if (!token) return;
    try {
      // The token goes in a header, never in a URL; the answer sets the cookie.
      const response = await fetch("/v1/session", {
        cache: "no-store",
        credentials: "same-origin",
        headers: { "Authorization": `Bearer ${token}`, "X-Turnout-Session": "sign-in" },
      });
      if (!response.ok) {
        const answer = await response.json().catch(() => ({}));
        showSignIn(`not signed in: ${answer.error || response.status}`);
        return;
      }
    } catch (error) {
      showSignIn("the hub cannot be reached");
      return;
    }
    retryDelay = 250;
    start();
  }

  async function signOut() {
    stopped = true;
    try {
      await fetch("/v1/session", { cache: "no-store", credentials: "same-origin", headers: { "X-Turnout-Session": "sign-out" } });
    } finally {
      state.workflows.clear();
      $("workflows").tBodies[0].replaceChildren();
      showSignIn("");
    }
  }

  // -- what the hub sends ----------------------------------------------------------------

  function receive(frame) {
    switch (frame.type) {
      case "hello":
        retryDelay = 250;
        metrics.connects += 1;
        state.control = frame.control;
        state.credential = frame.credential;
        document.body.classList.toggle("no-control", !(frame.control === "*" || frame.control.length));
        setStatus("connected", "connected");
        break;
      case "snapshot":
        snapshot(frame);
        break;
      case "events":
        for (const event of frame.events) applyEvent(event);
        break;
      case "stats":
        state.counters = frame.stats;
        state.countersDirty = true;
        replaceServices(frame.services);
        break;
      case "answer":
        answered(frame);
        break;
    }
    requestFrame();
  }

  function snapshot(frame) {
    metrics.snapshots += 1;
    replaceServices(frame.services);
    const seen = new Set();
    for (const doc of frame.workflows) {
      seen.add(doc.workflow_id);
      const workflow = workflowOf(doc.workflow_id, doc.service_id);
      workflow.phase = doc.phase;
      workflow.progress = doc.progress;
      if (!workflow.message) workflow.message = doc.reason || doc.current_action || "";
      touch(workflow);
    }
    for (const [id, workflow] of state.workflows) {
      if (!seen.has(id)) {
        if (workflow.row) workflow.row.remove();
        state.workflows.delete(id);
        state.dirty.delete(id);
      }
    }
    if (metrics.snapshots === 1) metrics.snapshotWorkflows = frame.workflows.length;
  }

  function replaceServices(services) {
    state.services.clear();
    for (const doc of services) state.services.set(`${doc.service_id}/${doc.instance_id}`, doc);
    state.servicesDirty = true;
  }

  function workflowOf(id, serviceId) {
    let workflow = state.workflows.get(id);
    if (!workflow) {
      workflow = { id, service: serviceId || "", phase: "pending", progress: 0, message: "", outcome: null, outcomeText: "", row: null };
      state.workflows.set(id, workflow);
    }
    return workflow;
  }

  function touch(workflow) {
    state.dirty.add(workflow.id);
  }

  function applyEvent(event) {
    metrics.eventsReceived += 1;
    const kind = (event.type || "").split(".")[1] || "other";
    countRate(kind);
    const data = event.data || {};
    const message = data.message;
    if (kind === "disconnected") {
      for (const doc of state.services.values()) {
        if (doc.service_id === data.service_id && (!data.instance_id || doc.instance_id === data.instance_id)) {
          doc.connected = false;
          doc.disconnected_at = event.timestamp;
        }
      }
      state.servicesDirty = true;
      return;
    }
    if (!message) return;
    const payload = message.payload || {};
    const workflowId = payload.workflow_id || message.workflow_id;
    switch (message.type) {
      case "register": {
        const key = `${data.service_id}/${data.instance_id || ""}`;
        state.services.set(key, {
          ...(state.services.get(key) || {}),
          service_id: data.service_id,
          instance_id: data.instance_id || "",
          service_name: data.service_name || payload.service_name || "",
          connected: true,
          registered_at: message.timestamp || event.timestamp,
        });
        state.servicesDirty = true;
        return;
      }
      case "phase_changed": {
        if (!workflowId) return;
        const workflow = workflowOf(workflowId, data.service_id);
        workflow.phase = payload.to;
        workflow.message = payload.reason ? `${payload.to}: ${payload.reason}` : `${payload.from || "?"} → ${payload.to}`;
        touch(workflow);
        return;
      }
      case "progress": {
        if (!workflowId) return;
        const workflow = workflowOf(workflowId, data.service_id);
        workflow.progress = payload.percent;
        if (payload.message || payload.stage) workflow.message = payload.message || payload.stage;
        touch(workflow);
        return;
      }
      case "workflow_created":
      case "checkpoint": {
        if (!workflowId) return;
        const workflow = workflowOf(workflowId, data.service_id);
        if (message.type === "checkpoint") workflow.message = `checkpoint ${payload.checkpoint_id || ""}`.trim();
        touch(workflow);
        return;
      }
      case "error": {
        if (workflowId) {
          const workflow = workflowOf(workflowId, data.service_id);
          workflow.message = `error: ${payload.error || ""}`;
          touch(workflow);
        }
        addLog({ level: "error", message: payload.error || "", workflow_id: workflowId }, data.service_id, message.timestamp);
        return;
      }
      case "log":
        addLog(payload, data.service_id, message.timestamp);
        return;
      case "log_batch":
        for (const entry of payload.logs || []) addLog(entry, data.service_id, message.timestamp);
        return;
    }
  }

  function addLog(entry, serviceId, fallbackTime) {
    const level = LEVELS.includes(entry.level) ? entry.level : "info";
    state.logs.push({
      level,
      rank: LEVELS.indexOf(level),
      time: entry.timestamp || fallbackTime || "",
      service: serviceId || "",
      workflow: entry.workflow_id || "",
      message: entry.message || "",
    });
    if (state.logs.length > LOG_KEPT) state.logs.splice(0, state.logs.length - LOG_KEPT);
    state.logsDirty = true;
    if (entry.workflow_id && state.workflows.has(entry.workflow_id)) {
      const workflow = state.workflows.get(entry.workflow_id);
      workflow.message = entry.message || workflow.message;
      touch(workflow);
    }
  }

  // -- events per second -----------------------------------------------------------------

  function advanceRates() {
    const now = Math.floor(Date.now() / 1000);
    const steps = Math.min(now - state.rateSecond, RATE_SECONDS);
    if (steps <= 0) return false;
    for (const rate of state.rates.values()) {
      rate.counts.splice(0, steps);
      for (let i = 0; i < steps; i += 1) rate.counts.push(0);
    }
    state.rateSecond = now;
    return true;
  }

  function countRate(kind) {
    advanceRates();
    let rate = state.rates.get(kind);
    if (!rate) {
      rate = { colour: COLOURS[state.rates.size % COLOURS.length], counts: new Array(RATE_SECONDS).fill(0) };
      state.rates.set(kind, rate);
    }
    rate.counts[RATE_SECONDS - 1] += 1;
  }

  function drawRates() {
    const canvas = $("rates");
    const context = canvas.getContext("2d");
    const width = canvas.width, height = canvas.height;
    const left = 44, bottom = 18, top = 8;
    context.clearRect(0, 0, width, height);
    // The last second is still filling: the chart ends at the one before.
    const shown = RATE_SECONDS - 1;
    let peak = 1;
    for (const rate of state.rates.values()) for (let i = 0; i < shown; i += 1) peak = Math.max(peak, rate.counts[i]);
    const scale = niceCeiling(peak);
    context.font = "11px system-ui, sans-serif";
    context.fillStyle = "#5a6477";
    context.strokeStyle = "#d8dde6";
    context.lineWidth = 1;
    for (const fraction of [0, 0.5, 1]) {
      const y = top + (height - top - bottom) * (1 - fraction);
      context.beginPath();
      context.moveTo(left, y + 0.5);
      context.lineTo(width, y + 0.5);
      context.stroke();
      context.fillText(formatCount(scale * fraction), 2, y + 4);
    }
    context.fillText(`-${shown} s`, left, height - 4);
    context.fillText("now", width - 24, height - 4);
    const x = (i) => left + ((width - left) * i) / (shown - 1);
    const y = (value) => top + (height - top - bottom) * (1 - value / scale);
    for (const rate of state.rates.values()) {
      context.strokeStyle = rate.colour;
      context.lineWidth = 1.5;
      context.beginPath();
      for (let i = 0; i < shown; i += 1) {
        if (i === 0) context.moveTo(x(i), y(rate.counts[i]));
        else context.lineTo(x(i), y(rate.counts[i]));
      }
      context.stroke();
    }
    const legend = [];
    for (const [kind, rate] of state.rates) {
      const item = document.createElement("li");
      const swatch = document.createElement("i");
      swatch.style.background = rate.colour;
      item.append(swatch, `${kind} ${formatCount(rate.counts[shown - 1])}/s`);
      legend.push(item);
    }
    $("rates-legend").replaceChildren(...legend);
  }

  function niceCeiling(value) {
    const power = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 5, 10]) if (value <= step * power) return step * power;
    return 10 * power;
  }

  function formatCount(value) {
    if (value >= 1e6) return `${(value / 1e6).toFixed(1)}M`;
    if (value >= 1e4) return `${Math.round(value / 1e3)}k`;
    return Number.isInteger(value) ? String(value) : value.toFixed(1);
  }

  // -- commands --------------------------------------------------------------------------

  function mayControl(serviceId) {
    const control = state.control;
    return control === "*" || (Array.isArray(control) && control.includes(serviceId));
  }

  function send(command) {
    if (!socket || socket.readyState !== WebSocket.OPEN) return false;
    socket.send(JSON.stringify(command));
    return true;
  }

  // options: {reason, timeout (seconds), force (cancel)}
  function command(kind, workflowId, options = {}) {
    const id = state.nextId++;
    const sent = { command: kind, workflow_id: workflowId };
    const workflow = state.workflows.get(workflowId);
    if (!send({ id, ...sent, reason: "from the dashboard", timeout: 10, ...options })) {
      if (workflow) setOutcome(workflow, "error", `${kind}: not connected`);
      return null;
    }
    state.pending.set(id, sent);
    if (workflow) setOutcome(workflow, "sent", `${kind}: sent`);
    return id;
  }

  function answered(answer) {
    const sent = state.pending.get(answer.id);
    state.answers.set(answer.id, answer);
    if (state.answers.size > COMMANDS_KEPT) state.answers.delete(state.answers.keys().next().value);
    if (sent) settle(answer.id, sent, answer);
  }

  function settle(id, sent, answer) {
    state.pending.delete(id);
    const workflow = state.workflows.get(sent.workflow_id);
    if (!workflow) return;
    const outcome = answer.outcome;
    const why = answer.error ? `: ${answer.error}` : "";
    setOutcome(workflow, outcome, `${sent.command}: ${outcome}${outcome === "answered" ? "" : why}`);
  }

  function setOutcome(workflow, outcome, text) {
    workflow.outcome = outcome;
    workflow.outcomeText = text;
    touch(workflow);
    requestFrame();
  }

  // -- drawing, once per animation frame --------------------------------------------------

  function requestFrame() {
    if (frameRequested) return;
    frameRequested = true;
    requestAnimationFrame(render);
  }

  function busy(began) {
    const took = performance.now() - began;
    metrics.busyMs += took;
    if (took > metrics.longestTaskMs) metrics.longestTaskMs = took;
  }

  function render() {
    const began = performance.now();
    draw();
    busy(began);
  }

  function draw() {
    frameRequested = false;
    metrics.framesRendered += 1;
    if (state.servicesDirty) renderServices();
    if (state.countersDirty) renderCounters();
    if (state.logsDirty) renderLogs();
    if (state.dirty.size) renderWorkflows();
    if (metrics.firstPaint === null && metrics.snapshots > 0) {
      // The frame after this one starts once this one is on the screen.
      requestAnimationFrame(() => { metrics.firstPaint = performance.now(); });
      metrics.firstPaint = undefined;
    }
  }

  function renderWorkflows() {
    const body = $("workflows").tBodies[0];
    const added = document.createDocumentFragment();
    for (const id of state.dirty) {
      const workflow = state.workflows.get(id);
      if (!workflow) continue;
      if (!workflow.row) {
        workflow.row = makeRow(workflow);
        added.append(workflow.row);
      }
      drawRow(workflow);
      metrics.updatesApplied += 1;
    }
    state.dirty.clear();
    body.append(added);
    $("workflow-count").textContent = String(state.workflows.size);
  }

  function makeRow(workflow) {
    const row = document.createElement("tr");
    row.dataset.workflow = workflow.id;
    const cells = {};
    for (const name of ["id", "service", "phase", "progress", "message", "actions", "outcome"]) {
      const cell = document.createElement("td");
      cell.className = `col-${name}`;
      row.append(cell);
      cells[name] = cell;
    }
    cells.actions.classList.add("control-column");
    cells.outcome.classList.add("control-column");
    cells.id.textContent = workflow.id;
    cells.phaseBadge = document.createElement("span");
    cells.phaseBadge.className = "phase";
    cells.phase.append(cells.phaseBadge);
    const bar = document.createElement("span");
    bar.className = "bar";
    cells.fill = document.createElement("i");
    bar.append(cells.fill);
    cells.percent = document.createElement("span");
    cells.percent.className = "percent";
    cells.progress.append(bar, cells.percent);
    cells.outcomeText = document.createElement("span");
    cells.outcomeText.className = "outcome";
    cells.outcome.append(cells.outcomeText);
    row.cells_ = cells;
    row.hidden = !matchesFilter(workflow);
    return row;
  }

  function drawRow(workflow) {
    const cells = workflow.row.cells_;
    if (cells.service.textContent !== workflow.service) cells.service.textContent = workflow.service;
    cells.phaseBadge.textContent = workflow.phase;
    cells.phaseBadge.dataset.phase = workflow.phase;
    const percent = Math.max(0, Math.min(100, Number(workflow.progress) || 0));
    cells.fill.style.width = `${percent}%`;
    cells.percent.textContent = `${percent.toFixed(0)}%`;
    cells.message.textContent = workflow.message;
    const allowed = mayControl(workflow.service);
    if (allowed && !cells.actions.firstChild) {
      for (const kind of ["pause", "resume", "cancel"]) {
        const button = document.createElement("button");
        button.type = "button";
        button.dataset.command = kind;
        button.textContent = kind[0].toUpperCase() + kind.slice(1);
        cells.actions.append(button);
      }
    } else if (!allowed && cells.actions.firstChild) {
      cells.actions.replaceChildren();
    }
    const ended = TERMINAL.has(workflow.phase);
    for (const button of cells.actions.children) button.disabled = ended;
    cells.outcomeText.textContent = workflow.outcomeText;
    if (workflow.outcome) cells.outcomeText.dataset.outcome = workflow.outcome;
    if (state.filter) workflow.row.hidden = !matchesFilter(workflow);
  }

  function matchesFilter(workflow) {
    const filter = state.filter;
    return !filter || workflow.id.includes(filter) || workflow.service.includes(filter) || workflow.phase.includes(filter);
  }

  function renderServices() {
    state.servicesDirty = false;
    const rows = [];
    let anyHub = false;
    const services = [...state.services.values()].sort((a, b) => (a.service_id + a.instance_id).localeCompare(b.service_id + b.instance_id));
    for (const doc of services) {
      const row = document.createElement("tr");
      row.dataset.service = doc.service_id;
      const connected = doc.connected !== false;
      const since = connected ? doc.registered_at : doc.disconnected_at;
      if (doc.hub) anyHub = true;
      const cells = [doc.service_id, doc.instance_id || "", doc.service_name || "", doc.hub || "", connected ? "connected" : "disconnected", since ? ago(since) : ""];
      cells.forEach((text, index) => {
        const cell = document.createElement("td");
        cell.textContent = text;
        if (index === 3) cell.className = "hub-column";
        if (index === 4) cell.className = `state state-${text}`;
        if (index === 5 && since) cell.title = since;
        row.append(cell);
      });
      rows.push(row);
    }
    document.body.classList.toggle("no-hub-column", !anyHub);
    $("services").tBodies[0].replaceChildren(...rows);
    const connected = services.filter((doc) => doc.connected !== false).length;
    $("service-count").textContent = `${connected} connected of ${services.length}`;
  }

  function ago(timestamp) {
    const then = Date.parse(timestamp);
    if (Number.isNaN(then)) return timestamp;
    const seconds = Math.max(0, Math.round((Date.now() - then) / 1000));
    const clock = new Date(then).toLocaleTimeString();
    if (seconds < 60) return `${clock} (${seconds} s ago)`;
    if (seconds < 3600) return `${clock} (${Math.round(seconds / 60)} min ago)`;
    return `${new Date(then).toLocaleString()} (${Math.round(seconds / 3600)} h ago)`;
  }

  function renderCounters() {
    state.countersDirty = false;
    const items = [];
    for (const key of Object.keys(state.counters).sort()) {
      const item = document.createElement("div");
      item.dataset.counter = key;
      const name = document.createElement("dt");
      name.textContent = key.replaceAll("_", " ");
      const value = document.createElement("dd");
      value.textContent = String(state.counters[key]);
      item.append(name, value);
      items.push(item);
    }
    $("counters").replaceChildren(...items);
  }

  function renderLogs() {
    state.logsDirty = false;
    const minimum = LEVELS.indexOf($("log-level").value);
    const shown = [];
    for (let i = state.logs.length - 1; i >= 0 && shown.length < LOG_SHOWN; i -= 1) {
      if (state.logs[i].rank >= minimum) shown.push(state.logs[i]);
    }
    const items = shown.reverse().map((entry) => {
      const item = document.createElement("li");
      item.dataset.level = entry.level;
      const level = document.createElement("span");
      level.className = `level level-${entry.level}`;
      level.textContent = entry.level;
      const source = document.createElement("span");
      source.className = "source";
      const time = entry.time ? new Date(entry.time).toLocaleTimeString() : "";
      source.textContent = `${time} ${entry.service}${entry.workflow ? ` ${entry.workflow}` : ""} `;
      item.append(level, source, entry.message);
      return item;
    });
    const tail = $("log-tail");
    const atBottom = tail.scrollTop + tail.clientHeight >= tail.scrollHeight - 4;
    tail.replaceChildren(...items);
    if (atBottom) tail.scrollTop = tail.scrollHeight;
  }

  // -- wiring ----------------------------------------------------------------------------

  function tick() {
    advanceRates();
    drawRates();
    if (state.services.size) state.servicesDirty = true; // "n s ago" moves on
    requestFrame();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("sign-in-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", signOut);
    $("log-level").addEventListener("change", () => { state.logsDirty = true; requestFrame(); });
    $("workflow-filter").addEventListener("input", (event) => {
      state.filter = event.target.value.trim();
      for (const workflow of state.workflows.values()) if (workflow.row) workflow.row.hidden = !matchesFilter(workflow);
    });
    $("workflows").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-command]");
      if (!button) return;
      const row = button.closest("tr");
      command(button.dataset.command, row.dataset.workflow);
    });
    setInterval(tick, 1000);
    start();
  });

  // For scripts and tests driving the page: read-only views and the command path.
  window.turnoutDashboard = { state, metrics, command, send };
})();
