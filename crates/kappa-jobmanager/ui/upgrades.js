// The Upgrades pages (GET /api/v1/upgrades[/{id}]): every upgrade and audit, and one upgrade's
// page — v1 and v2 side by side with their sinks, the shadow run's progress, the diff per sink
// and its download, the phase history, and the cut-over and abort buttons.

import { action, api, apiText, bar, catchingUp, esc, live, num, rate, state, time, view } from "./common.js";

// Phases a cut-over may be asked in (in SHADOWING it waits until v2 has caught up).
const CUTTABLE = ["SHADOWING", "CAUGHT_UP"];
// Phases an abort no longer stops: the live sinks are being swapped, or the upgrade ended.
const UNABORTABLE = ["SWAPPING", "STARTING_LIVE", "DONE", "ABORTING", "ABORTED"];
// Phases with shadows beside the live sinks, which GET …/diff compares.
const COMPARABLE = ["SHADOWING", "CAUGHT_UP", "STOPPING_V1", "ALIGNING_V2"];

const jobLink = (id, name) => `<a href="#/jobs/${esc(id)}">${esc(name || id)}</a>`;

export async function upgradesPage() {
  view.innerHTML = `<h1>Upgrades</h1>
    <p class="muted">Audit a job from its page; upgrade it to a new file with <code>kappactl upgrade</code>.</p>
    <div id="upgrades"></div>`;
  live(() => Promise.all([api("GET", "/api/v1/upgrades"), api("GET", "/api/v1/jobs")]), ([list, jobs]) => {
    const names = new Map(jobs.map((j) => [j.id, j.name]));
    document.getElementById("upgrades").innerHTML = list.length
      ? `<table id="upgrades-table"><tr><th>id</th><th>kind</th><th>job</th><th>phase</th><th>started</th></tr>${list
          .slice()
          .reverse()
          .map((u) => `<tr data-upgrade="${esc(u.id)}"><td><a href="#/upgrades/${esc(u.id)}">${esc(u.id)}</a></td>
            <td>${esc(u.kind)}</td><td>${jobLink(u.v1_job, names.get(u.v1_job))}</td>
            <td data-field="phase">${state(u.phase)}</td><td>${time(u.started_at_ms)}</td></tr>`)
          .join("")}</table>`
      : `<p class="muted">No upgrades or audits yet.</p>`;
  });
}

export async function upgradePage(id) {
  const path = `/api/v1/upgrades/${encodeURIComponent(id)}`;
  view.innerHTML = `<h1><span id="upgrade-kind">Upgrade</span> <span id="upgrade-id">${esc(id)}</span></h1>
    <div class="toolbar">
      <span>phase <span id="upgrade-phase"></span></span>
      <button id="cutover" class="primary" hidden>Cut over</button>
      <button id="abort" class="danger" hidden>Abort</button>
      <button id="download-diff" hidden>Download diff (JSON lines)</button>
      <span id="action-result"></span>
    </div>
    <div id="upgrade"></div>`;
  const result = document.getElementById("action-result");
  action("cutover", result, "cutting over", async () => {
    if (!confirm("Cut over? v1 stops, the live sinks take v2's results and v2 goes on live.")) return "";
    await api("POST", `${path}/cutover`);
    return "cut-over requested";
  });
  action("abort", result, "aborting", async () => {
    if (!confirm("Abort? v2 is cancelled and the shadow sinks dropped; v1 goes on.")) return "";
    await api("POST", `${path}/abort`);
    return "abort requested";
  });
  action("download-diff", result, "comparing the sinks", async () => {
    const lines = await apiText("GET", `${path}/diff`);
    save(lines, `${id}-diff.jsonl`, "application/x-ndjson");
    return `saved ${num(lines.split("\n").filter(Boolean).length)} differing rows`;
  });
  // A job that cannot be read shows as its id without a state; the page goes on.
  const job = (j) => (j ? api("GET", `/api/v1/jobs/${encodeURIComponent(j)}`).catch(() => null) : null);
  live(
    async () => {
      const u = await api("GET", path);
      const ids = [u.v1_job, u.v1_restarted_as, u.shadow_job, u.live_job];
      const details = await Promise.all(ids.map(job));
      return { u, jobs: new Map(ids.map((j, i) => [j, details[i]])) };
    },
    ({ u, jobs }) => {
      document.getElementById("upgrade-kind").textContent = u.kind === "audit" ? "Audit" : "Upgrade";
      document.getElementById("upgrade-phase").innerHTML = state(u.phase);
      const cutover = document.getElementById("cutover");
      cutover.hidden = u.kind !== "upgrade";
      cutover.disabled = !CUTTABLE.includes(u.phase);
      document.getElementById("abort").hidden = UNABORTABLE.includes(u.phase);
      document.getElementById("download-diff").hidden = !COMPARABLE.includes(u.phase);
      // A pending request is answered by the phase itself once the upgrade ended.
      if (["DONE", "ABORTED"].includes(u.phase) && result.textContent.endsWith("requested")) result.textContent = "";
      document.getElementById("upgrade").innerHTML =
        `${problems(u)}${versions(u, jobs)}${progress(u)}${diff(u.diff)}${history(u)}`;
    },
  );
}

/** Saves `text` as the file `name` (a download of the browser). */
function save(text, name, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  // The download reads the object URL after this task: it is released a minute later.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

function problems(u) {
  return `${u.error ? `<p class="error" id="upgrade-error">${esc(u.error)}</p>` : ""}${
    u.reason ? `<p class="warning" id="upgrade-reason">${esc(u.reason)}</p>` : ""
  }`;
}

/** v1 and v2 side by side (each job: a link to its page and its state), then the sinks. */
function versions(u, jobs) {
  const line = (label, id) => {
    if (!id) return "";
    const j = jobs.get(id);
    return `<div class="job-line" data-job="${esc(id)}">${label} ${jobLink(id, j && j.name)}
      <span class="muted">${esc(id)}</span> <span data-field="state">${j ? state(j.state) : "–"}</span></div>`;
  };
  const v2 = u.kind === "audit" ? "the job's own file again" : "the new version";
  return `<div class="versions">
      <div class="card" id="v1"><div class="muted">v1: the running job</div>
        ${line("", u.v1_job)}${line("restarted as", u.v1_restarted_as)}</div>
      <div class="card" id="v2"><div class="muted">v2: ${v2}</div>
        ${line("shadow run", u.shadow_job)}${line("live", u.live_job)}</div>
    </div>
    <p class="muted" id="upgrade-times">started ${time(u.started_at_ms)} · caught up ${time(u.caught_up_at_ms)} · ended ${time(u.ended_at_ms)}</p>
    <table id="sinks"><tr><th>sink</th><th>connector</th><th>live → shadow</th></tr>${u.shadows
      .map((s) => `<tr><td>${esc(s.sink)}</td><td>${esc(s.connector)}</td><td>${esc(s.live)} → ${esc(s.shadow)}</td></tr>`)
      .join("")}</table>`;
}

/** The shadow run's progress while it catches up: the share of the time spent so far. */
function progress(u) {
  const p = u.progress;
  if (!p) return "";
  if (!p.catching_up) {
    return `<p id="shadow-progress">v2 keeps up with its topics: ${num(p.lag)} records behind · reading ${rate(p.read_per_second)}/s</p>`;
  }
  // Server and browser clocks may differ a little: never a negative time spent.
  const spent = Math.max(0, Date.now() - u.started_at_ms);
  const done = p.eta_ms == null ? `<progress class="bar"></progress>` : bar(spent / (spent + p.eta_ms));
  return `<p id="shadow-progress">v2 recomputes history: ${done} ${catchingUp(p)}</p>`;
}

/** The latest diff: counts per sink and the largest changes. */
function diff(d) {
  if (!d) return `<h2>Diff</h2><p class="muted" id="diff">Computed once v2 has caught up.</p>`;
  const differing = d.sinks.reduce((n, s) => n + s.changed + s.only_v1 + s.only_v2, 0);
  const summary = differing
    ? `${num(differing)} rows differ`
    : "No differences: v2 gives every row the live sinks hold";
  const sinks = d.sinks.map((s) => `<h3>Sink <code>${esc(s.sink)}</code></h3>
    <table class="diff-counts" data-sink="${esc(s.sink)}"><tr><th class="num">equal</th><th class="num">changed</th>
      <th class="num">only in v1</th><th class="num">only in v2</th></tr>
      <tr><td class="num" data-field="equal">${num(s.equal)}</td><td class="num" data-field="changed">${num(s.changed)}</td>
      <td class="num" data-field="only_v1">${num(s.only_v1)}</td><td class="num" data-field="only_v2">${num(s.only_v2)}</td></tr></table>
    ${s.largest.length
      ? `<table class="changes"><tr><th>key</th><th>v1 (old)</th><th></th><th>v2 (new)</th><th class="num">magnitude</th></tr>${s.largest
          .map(change)
          .join("")}</table>`
      : ""}`);
  return `<h2>Diff</h2><div id="diff">
    <p><span id="diff-summary">${summary}</span> <span class="muted">(computed ${time(d.computed_at_ms)})</span></p>
    ${d.error ? `<p class="error" id="diff-error">${esc(d.error)}</p>` : ""}${sinks.join("")}</div>`;
}

/** One changed row: of two rows the fields that differ, of a row on one side only all. */
function change(c) {
  const object = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
  const fields = (row, other) => {
    if (row == null) return `<span class="muted">none</span>`;
    if (!object(row) || !object(other)) return esc(JSON.stringify(row));
    return Object.entries(row)
      .filter(([k, v]) => JSON.stringify(v) !== JSON.stringify(other[k]))
      .map(([k, v]) => `${esc(k)}: ${esc(JSON.stringify(v))}`)
      .join("<br>");
  };
  return `<tr><td>${esc(c.key)}</td><td>${fields(c.old, c.new)}</td><td>→</td><td>${fields(c.new, c.old)}</td>
    <td class="num">${c.magnitude == null ? "–" : rate(c.magnitude)}</td></tr>`;
}

function history(u) {
  return `<h2>History</h2><ol id="history">${u.history
    .map((h) => `<li><span class="muted">${time(h.at_ms)}</span> ${state(h.phase)} ${esc(h.note)}</li>`)
    .join("")}</ol>`;
}
