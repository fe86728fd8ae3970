// Conveyor dashboard. The server lays the graph out (conveyor/dashboard/views.py); this script
// places what it is given, keeps it live from the server's event stream, and sends the buttons'
// actions. Everything from the cluster is set as text (textContent), never parsed as HTML.
"use strict";

const TOKEN = document.querySelector('meta[name="conveyor-token"]').content;
const SVG = "http://www.w3.org/2000/svg";
const ICONS = {
  success: "\u2713", failed: "\u2715", warning: "!", running: "\u25cc", pending: "\u2026",
  created: "\u2022", manual: "\u2699", scheduled: "\u23f1", approval: "\u2691",
  skipped: "\u00bb", canceled: "\u2298",
};
const ACTION_LABELS = { play: "Play", retry: "Retry", approve: "Approve", reject: "Reject" };
const ACTION_ICONS = { play: "\u25b6", retry: "\u21bb" };
const PHASE_STATUS = {
  Succeeded: "success", Failed: "failed", Running: "running", Pending: "pending",
  WaitingForApproval: "approval", Cancelled: "canceled", Skipped: "skipped",
};

const state = {
  config: null,
  runs: new Map(), // "ns/name" -> row
  selected: null, // {namespace, name}
  view: null, // the selected run's view
  viewVersion: null,
  job: null, // the selected job's name
  logKey: null, // what the log shows: job, attempt, status
  logAbort: null,
};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "style") Object.assign(node.style, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const key = (ns, name) => `${ns}/${name}`;

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await response.json();
  if (!response.ok) throw new Error(body.message || `${response.status}`);
  return body;
}

function ago(stamp) {
  if (!stamp) return "-";
  let s = Math.max(0, Math.floor((Date.now() - Date.parse(stamp)) / 1000));
  if (s < 60) return `${s}s`;
  let m = Math.floor(s / 60); s %= 60;
  if (m < 60) return s && m < 10 ? `${m}m${s}s` : `${m}m`;
  let h = Math.floor(m / 60); m %= 60;
  if (h < 24) return m && h < 10 ? `${h}h${m}m` : `${h}h`;
  return `${Math.floor(h / 24)}d`;
}

// -- the list of runs
function renderRuns() {
  const body = document.querySelector("#runs tbody");
  const rows = [...state.runs.values()].sort((a, b) =>
    (b.created || "").localeCompare(a.created || "") ||
    a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));
  body.replaceChildren(...rows.map((r) => {
    const selected = state.selected && state.selected.namespace === r.namespace &&
      state.selected.name === r.name;
    return el("tr", { class: selected ? "selected" : null, "data-run": key(r.namespace, r.name) },
      el("td", { class: "ns" }, r.namespace),
      el("td", {}, el("a", { href: `#/run/${encodeURIComponent(r.namespace)}/${encodeURIComponent(r.name)}` }, r.name)),
      el("td", {}, r.pipeline),
      el("td", {}, r.ref, r.sha ? el("span", { class: "muted" }, ` ${r.sha}`) : null),
      el("td", { class: "phase" },
        el("span", { class: `badge status-${PHASE_STATUS[r.phase] || "created"}` }, r.phase),
        r.waiting ? el("span", { class: "waiting" }, r.waiting) : null),
      el("td", { class: "age", title: r.created }, ago(r.created)));
  }));
  document.getElementById("no-runs").hidden = rows.length > 0;
}

// -- one run
function showNotice(ok, message) {
  const notice = document.getElementById("notice");
  notice.className = `banner ${ok ? "ok" : "error"}`;
  notice.textContent = message;
  notice.hidden = false;
}

function renderRun() {
  const v = state.view;
  document.getElementById("run-pane").hidden = !v;
  if (!v) return;
  const phase = document.getElementById("run-phase");
  phase.className = `badge status-${PHASE_STATUS[v.phase] || "created"}`;
  phase.textContent = v.phase;
  document.getElementById("run-name").textContent = v.name;
  const meta = [`pipeline ${v.pipeline}`, `ref ${v.ref}`];
  if (v.sha) meta.push(`commit ${v.sha}`);
  if (v.namespace) meta.push(`namespace ${v.namespace}`);
  meta.push(`created ${ago(v.created)} ago`);
  if (v.duration) meta.push(`took ${v.duration}`);
  document.getElementById("run-meta").textContent = meta.join(" \u00b7 ");
  document.getElementById("run-message").textContent =
    v.reason || v.message ? `${v.reason || ""}${v.message ? `: ${v.message}` : ""}` : "";
  renderApprovals(v);
  renderGraph(v.graph);
  renderJob();
}

function renderApprovals(v) {
  const pending = v.approvals.filter((a) => a.decision === "Pending");
  document.getElementById("approvals").replaceChildren(...pending.map((a) => {
    const comment = el("input", { type: "text", placeholder: "comment (optional)", "data-approval-comment": a.name, maxlength: 1024 });
    const votes = a.votes.length ? ` \u00b7 votes: ${a.votes.map((x) => `${x.user} ${x.decision}`).join(", ")}` : "";
    return el("div", { class: "approval", "data-approval": a.name },
      el("span", {}, el("strong", {}, `${a.job}`), ` waits for approval to deploy to ${a.environment}`,
        el("span", { class: "muted" }, ` (${a.approvals || `0/${a.required}`}${votes})`)),
      comment,
      el("button", { class: "action primary", "data-action": "approve", onclick: () =>
        act({ action: "approve", job: a.job, approval: a.name, comment: comment.value }) }, "Approve"),
      el("button", { class: "action danger", "data-action": "reject", onclick: () =>
        act({ action: "reject", job: a.job, approval: a.name, comment: comment.value }) }, "Reject"));
  }));
}

function renderGraph(g) {
  const graph = document.getElementById("graph");
  graph.style.width = `${g.width}px`;
  graph.style.height = `${g.height}px`;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("width", g.width);
  svg.setAttribute("height", g.height);
  for (const e of g.edges) {
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", e.path);
    path.setAttribute("class", `edge${state.job && (state.job === e.from || state.job === e.to) ? " active" : ""}`);
    path.setAttribute("data-from", e.from);
    path.setAttribute("data-to", e.to);
    svg.append(path);
  }
  const nodes = [svg];
  for (const stage of g.stages) {
    nodes.push(el("div", { class: "stage-title", "data-stage": stage.name, style: { left: `${stage.x + 8}px`, top: "12px" } }, stage.name));
    for (const job of stage.jobs) {
      const quick = job.actions.filter((a) => a in ACTION_ICONS).map((a) =>
        el("button", { class: "act", title: ACTION_LABELS[a], "data-action": a, onclick: (event) => {
          event.stopPropagation();
          act({ action: a, job: job.name });
        } }, ACTION_ICONS[a]));
      nodes.push(el("div", {
        class: `job status-${job.status}${state.job === job.name ? " selected" : ""}`,
        role: "button", tabindex: 0, title: `${job.name}: ${job.phase}${job.reason ? ` (${job.reason})` : ""}`,
        "data-job": job.name, "data-stage": stage.name, "data-status": job.status,
        style: { left: `${job.x}px`, top: `${job.y}px`, width: `${job.w}px`, height: `${job.h}px` },
        onclick: () => selectJob(job.name),
        onkeydown: (event) => { if (event.key === "Enter") selectJob(job.name); },
      }, el("span", { class: "icon" }, ICONS[job.status] || "\u2022"),
      el("span", { class: "name" }, job.name), quick));
    }
  }
  graph.replaceChildren(...nodes);
}

function findJob(name) {
  if (!state.view) return null;
  for (const stage of state.view.graph.stages) {
    for (const job of stage.jobs) if (job.name === name) return job;
  }
  return null;
}

function selectJob(name) {
  state.job = name;
  state.logKey = null;
  renderRun();
}

function renderJob() {
  const job = state.job && findJob(state.job);
  document.getElementById("job-pane").hidden = !job;
  if (!job) return;
  const status = document.getElementById("job-status");
  status.className = `badge status-${job.status}`;
  status.textContent = job.phase;
  document.getElementById("job-name").textContent = job.name;
  document.getElementById("job-actions").replaceChildren(...job.actions.map((a) =>
    el("button", { class: `action${a === "reject" ? " danger" : " primary"}`, "data-action": a, onclick: () =>
      act({ action: a, job: job.name, approval: job.approval }) }, ACTION_LABELS[a])));
  const details = [["Stage", job.stage], ["Attempt", job.attempt], ["Reason", job.reason],
    ["Exit code", job.exitCode], ["Environment", job.environment], ["Message", job.message],
    ["Started", job.startTime], ["Finished", job.completionTime], ["Starts at", job.scheduledAt]];
  document.getElementById("job-details").replaceChildren(...details
    .filter(([, value]) => value !== null && value !== undefined && value !== "")
    .flatMap(([label, value]) => [el("dt", {}, label), el("dd", {}, String(value))]));
  loadLog(job);
}

// -- a job's log: `conveyor logs`' own code on the server; followed while the job runs
const ANSI = /\x1b\[[0-9;?]*[ -\/]*[@-~]/g;

async function loadLog(job) {
  const logKey = `${job.name}#${job.attempt}#${job.status}`;
  if (state.logKey === logKey) return;
  state.logKey = logKey;
  if (state.logAbort) state.logAbort.abort();
  const log = document.getElementById("log");
  if (!job.hasLog) {
    log.textContent = `(job ${job.name} has not run: it is ${job.phase})`;
    return;
  }
  const abort = new AbortController();
  state.logAbort = abort;
  const { namespace, name } = state.selected;
  const params = new URLSearchParams({ namespace, run: name, job: job.name });
  if (job.status === "running") params.set("follow", "1");
  log.textContent = "";
  log.dataset.state = "loading";
  try {
    const response = await fetch(`/api/log?${params}`, { signal: abort.signal });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      log.textContent = `(${body.message || response.status})`;
      log.dataset.state = "done";
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      log.textContent += decoder.decode(value, { stream: true }).replace(ANSI, "");
      log.scrollTop = log.scrollHeight;
    }
    log.dataset.state = "done";
  } catch (error) {
    if (error.name !== "AbortError") log.textContent += `\n(${error.message})`;
  }
}

// -- the buttons
async function act(request) {
  const { namespace, name } = state.selected;
  const body = { namespace, run: name, ...request };
  for (const button of document.querySelectorAll("button[data-action]")) button.disabled = true;
  try {
    const response = await fetch("/api/action", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Conveyor-Token": TOKEN },
      body: JSON.stringify(body),
    });
    const reply = await response.json().catch(() => ({ ok: false, message: `${response.status}` }));
    showNotice(Boolean(reply.ok), reply.message);
  } catch (error) {
    showNotice(false, error.message);
  } finally {
    for (const button of document.querySelectorAll("button[data-action]")) button.disabled = false;
    refreshRun();
  }
}

// -- navigation and live updates
async function refreshRun() {
  if (!state.selected) return;
  const { namespace, name } = state.selected;
  try {
    const view = await getJSON(`/api/run?${new URLSearchParams({ namespace, name })}`);
    if (!state.selected || state.selected.name !== name || state.selected.namespace !== namespace) return;
    state.view = view;
    state.viewVersion = view.resourceVersion;
    renderRun();
  } catch (error) {
    showNotice(false, error.message);
  }
}

function route() {
  const match = location.hash.match(/^#\/run\/([^/]+)\/([^/]+)$/);
  const selected = match ? { namespace: decodeURIComponent(match[1]), name: decodeURIComponent(match[2]) } : null;
  const changed = JSON.stringify(selected) !== JSON.stringify(state.selected);
  state.selected = selected;
  if (changed) {
    state.view = null;
    state.job = null;
    state.logKey = null;
    if (state.logAbort) state.logAbort.abort();
    document.getElementById("notice").hidden = true;
  }
  renderRuns();
  renderRun();
  if (selected) refreshRun();
}

function connect() {
  const live = document.getElementById("live");
  const failure = document.getElementById("failure");
  const events = new EventSource("/api/events");
  events.addEventListener("open", () => { live.textContent = "live"; live.className = "live on"; });
  events.addEventListener("error", () => { live.textContent = "reconnecting…"; live.className = "live off"; });
  events.addEventListener("runs", (event) => {
    state.runs = new Map(JSON.parse(event.data).map((r) => [key(r.namespace, r.name), r]));
    failure.hidden = true;
    renderRuns();
    changed();
  });
  events.addEventListener("run", (event) => {
    const r = JSON.parse(event.data);
    state.runs.set(key(r.namespace, r.name), r);
    failure.hidden = true;
    renderRuns();
    changed();
  });
  events.addEventListener("deleted", (event) => {
    const r = JSON.parse(event.data);
    state.runs.delete(key(r.namespace, r.name));
    renderRuns();
  });
  events.addEventListener("failure", (event) => {
    failure.textContent = JSON.parse(event.data).message;
    failure.hidden = false;
  });
}

function changed() {
  // The selected run changed: fetch its view (its jobs, its Approvals) again.
  if (!state.selected) return;
  const row = state.runs.get(key(state.selected.namespace, state.selected.name));
  if (row && row.resourceVersion !== state.viewVersion) refreshRun();
}

async function start() {
  try {
    state.config = await getJSON("/api/config");
    document.getElementById("scope").textContent =
      state.config.namespace ? `namespace ${state.config.namespace}` : "all namespaces";
    document.getElementById("runs-pane").classList.toggle("all", !state.config.namespace);
    if (state.config.user) document.getElementById("user").textContent = `signed in as ${state.config.user}`;
  } catch (error) {
    const failure = document.getElementById("failure");
    failure.textContent = error.message;
    failure.hidden = false;
  }
  window.addEventListener("hashchange", route);
  route();
  connect();
  setInterval(() => {
    for (const cell of document.querySelectorAll("#runs td.age")) cell.textContent = ago(cell.title);
  }, 10000);
}

start();
