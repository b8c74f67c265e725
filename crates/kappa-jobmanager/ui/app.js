// The Kappa web UI: a single page over the REST API under /api/v1, refreshed live by polling.
// No build step and no dependencies: the jobmanager serves these modules from its binary. This
// one holds the routing and the cluster's, jobs' and taskmanagers' pages; common.js what every
// page shares, upgrades.js the Upgrades pages, charts.js the Metrics tab's charts.

import { drawCharts, formatValue } from "./charts.js";
import {
  action, api, bar, catchingUp, esc, live, newPage, num, rate, setStatus, showError, state, stillShowing, time, view,
} from "./common.js";
import { upgradePage, upgradesPage } from "./upgrades.js";

// ---- helpers ---------------------------------------------------------------------------

function watermark(w) {
  if (w == null) return "–";
  if (w >= 9.2e18) return "end of input";
  // Date covers ±8.64e15 ms; toISOString throws outside it.
  if (Math.abs(w) > 8.64e15) return String(w);
  return new Date(w).toISOString().replace(".000Z", "Z");
}

function bytes(n) {
  if (n == null) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i += 1;
  }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

// ---- pages -----------------------------------------------------------------------------

async function overviewPage() {
  view.innerHTML = `<h1>Cluster</h1><div class="cards" id="cards"></div>
    <h2>Jobs by state</h2><div id="by-state"></div>
    <h2>Recent failures</h2><div id="failures"></div>`;
  live(() => Promise.all([api("GET", "/api/v1/overview"), api("GET", "/api/v1/jobs")]), ([o, jobs]) => {
    const card = (label, value, id) =>
      `<div class="card"><div class="muted">${label}</div><div class="value" id="${id}">${value}</div></div>`;
    document.getElementById("cards").innerHTML =
      card("Taskmanagers", o.taskmanagers, "tm-count") +
      card("Slots total", o.slots_total, "slots-total") +
      card("Slots free", o.slots_free, "slots-free") +
      card("Version", esc(o.version), "version") +
      card("Checkpoints", esc(o.checkpoint_dir || "off"), "checkpoint-dir");
    const rows = Object.entries(o.jobs)
      .filter(([, n]) => n > 0)
      .map(([s, n]) => `<tr><td>${state(s)}</td><td class="num">${n}</td></tr>`)
      .join("");
    document.getElementById("by-state").innerHTML = rows
      ? `<table><tr><th>state</th><th class="num">jobs</th></tr>${rows}</table>`
      : `<p class="muted">No jobs yet. <a href="#/submit">Submit one.</a></p>`;
    const failed = jobs
      .filter((j) => j.error)
      .sort((a, b) => (b.ended_at_ms || b.submitted_at_ms) - (a.ended_at_ms || a.submitted_at_ms))
      .slice(0, 10);
    document.getElementById("failures").innerHTML = failed.length
      ? `<table><tr><th>job</th><th>state</th><th>error</th></tr>${failed
          .map((j) => `<tr><td><a href="#/jobs/${esc(j.id)}">${esc(j.name)}</a></td><td>${state(j.state)}</td><td class="error">${esc(j.error)}</td></tr>`)
          .join("")}</table>`
      : `<p class="muted">None.</p>`;
  });
}

async function jobsPage() {
  view.innerHTML = `<h1>Jobs</h1><div class="toolbar"><a href="#/submit"><button class="primary">Submit a job</button></a></div><div id="jobs"></div>`;
  live(() => api("GET", "/api/v1/jobs"), (jobs) => {
    document.getElementById("jobs").innerHTML = jobs.length
      ? `<table id="jobs-table"><tr><th>name</th><th>id</th><th>state</th><th>start</th><th class="num">parallelism</th><th>submitted</th></tr>${jobs
          .slice()
          .reverse()
          .map((j) => `<tr><td><a href="#/jobs/${esc(j.id)}">${esc(j.name)}</a></td><td class="muted">${esc(j.id)}</td><td>${state(j.state)}</td><td>${esc(j.start)}</td><td class="num">${j.parallelism}</td><td>${time(j.submitted_at_ms)}</td></tr>`)
          .join("")}</table>`
      : `<p class="muted">No jobs yet.</p>`;
  });
}

/** The submit page; `prefill` comes from "restore from this checkpoint". */
async function submitPage() {
  const prefill = JSON.parse(sessionStorage.getItem("kappa-prefill") || "null");
  sessionStorage.removeItem("kappa-prefill");
  view.innerHTML = `<h1>Submit a job</h1>
    <div class="form-row">
      <label for="job-file">Upload job.toml</label><input type="file" id="job-file" accept=".toml,text/plain">
      <span class="muted">or paste it below</span>
    </div>
    <div class="editor"><div class="gutter" id="gutter"></div>
      <textarea id="job-text" spellcheck="false" wrap="off" placeholder="name = &quot;my-job&quot;&#10;[source]&#10;…"></textarea></div>
    <div class="form-row">
      <label for="start">Start</label>
      <select id="start">
        <option value="">as in the job file</option>
        <option value="earliest">earliest</option>
        <option value="latest">latest</option>
        <option value="timestamp">a timestamp</option>
        <option value="savepoint">a savepoint</option>
        <option value="checkpoint">a retained checkpoint</option>
      </select>
      <input type="text" id="start-timestamp" placeholder="epoch ms or 2026-11-25T10:00:00Z" hidden>
      <input type="text" id="start-savepoint" placeholder="savepoint directory or s3://…" size="50" hidden>
      <select id="start-checkpoint" hidden></select>
      <label for="parallelism">Parallelism</label>
      <input type="number" id="parallelism" min="1" placeholder="as in the file" class="narrow">
      <label><input type="checkbox" id="allow-non-restored"> allow non-restored state</label>
    </div>
    <div class="toolbar">
      <button id="validate">Validate</button>
      <button id="submit" class="primary">Submit</button>
      <span id="result" class="muted"></span>
    </div>
    <div id="problems"></div>
    <pre id="plan" hidden></pre>`;
  const text = document.getElementById("job-text");
  const gutter = document.getElementById("gutter");
  let fileName = "job.toml";
  let badLines = new Set();
  const drawGutter = () => {
    const n = text.value.split("\n").length;
    let out = "";
    for (let i = 1; i <= n; i += 1) out += badLines.has(i) ? `<span class="bad">${i}</span>\n` : `${i}\n`;
    gutter.innerHTML = out;
    gutter.scrollTop = text.scrollTop;
  };
  text.addEventListener("input", () => {
    badLines = new Set();
    drawGutter();
  });
  text.addEventListener("scroll", () => (gutter.scrollTop = text.scrollTop));
  const startSel = document.getElementById("start");
  const extra = { timestamp: "start-timestamp", savepoint: "start-savepoint", checkpoint: "start-checkpoint" };
  startSel.addEventListener("change", () => {
    for (const [k, id] of Object.entries(extra)) document.getElementById(id).hidden = startSel.value !== k;
  });
  document.getElementById("job-file").addEventListener("change", async (ev) => {
    const f = ev.target.files[0];
    if (!f) return;
    try {
      text.value = new TextDecoder("utf-8", { fatal: true }).decode(await f.arrayBuffer());
      fileName = f.name;
      document.getElementById("problems").innerHTML = "";
    } catch {
      document.getElementById("problems").innerHTML = `<p class="error" id="upload-error">${esc(f.name)} is not UTF-8 text: a job file must be UTF-8.</p>`;
    }
    badLines = new Set();
    drawGutter();
  });
  const checkpointSel = document.getElementById("start-checkpoint");
  const addCheckpoint = (value, label) => {
    if ([...checkpointSel.options].some((o) => o.value === value)) return;
    const o = document.createElement("option");
    o.value = value;
    o.textContent = label;
    checkpointSel.appendChild(o);
  };
  if (prefill) {
    text.value = prefill.job;
    fileName = prefill.file_name || fileName;
    if (prefill.start) {
      startSel.value = "checkpoint";
      addCheckpoint(prefill.start, prefill.start);
      checkpointSel.value = prefill.start;
      startSel.dispatchEvent(new Event("change"));
    }
  }
  // Retained checkpoints of every job, newest first, listed in the background: the form works
  // meanwhile.
  const shown = stillShowing();
  (async () => {
    const jobs = await api("GET", "/api/v1/jobs");
    const lists = await Promise.all(
      jobs
        .slice()
        .reverse()
        .map((j) => api("GET", `/api/v1/jobs/${encodeURIComponent(j.id)}/checkpoints`).then((l) => [j, l])),
    );
    if (!shown()) return;
    for (const [j, list] of lists) {
      for (const c of list.filter((c) => c.status === "COMPLETED" && c.retained)) {
        addCheckpoint(`checkpoint:${j.id}:${c.id}`, `${j.name} (${j.id.slice(0, 8)}) chk-${c.id}, ${time(c.trigger_ms)}`);
      }
    }
  })().catch((e) => {
    if (shown()) setStatus(`could not list checkpoints: ${e.message}`);
  });
  drawGutter();

  const request = () => {
    const body = { job: text.value, file_name: fileName };
    const kind = startSel.value;
    if (kind === "earliest" || kind === "latest") body.start = kind;
    if (kind === "timestamp") {
      const v = document.getElementById("start-timestamp").value.trim();
      const ms = /^\d+$/.test(v) ? Number(v) : Date.parse(v);
      if (Number.isNaN(ms)) throw new Error(`not a timestamp: ${v}`);
      body.start = `timestamp:${ms}`;
    }
    if (kind === "savepoint") body.start = `savepoint:${document.getElementById("start-savepoint").value.trim()}`;
    if (kind === "checkpoint") body.start = document.getElementById("start-checkpoint").value;
    const p = document.getElementById("parallelism").value;
    if (p) body.parallelism = Number(p);
    if (document.getElementById("allow-non-restored").checked) body.allow_non_restored_state = true;
    return body;
  };
  /** Puts the caret at `line`:`column` (1-based) and scrolls the editor to it. */
  const goToLine = (line, column) => {
    const lines = text.value.split("\n");
    let at = 0;
    for (let i = 0; i < Math.min(line - 1, lines.length); i += 1) at += lines[i].length + 1;
    at += Math.max(0, (column || 1) - 1);
    const lineHeight = parseFloat(getComputedStyle(text).lineHeight) || 20;
    text.focus({ preventScroll: true });
    text.setSelectionRange(at, at);
    text.scrollTop = Math.max(0, (line - 3) * lineHeight);
    gutter.scrollTop = text.scrollTop;
  };
  const showProblems = (e) => {
    const details = (e.body && e.body.details) || [];
    badLines = new Set(details.map((d) => d.line).filter((l) => l));
    drawGutter();
    // With details the list says it all; the summary only counts.
    const summary = details.length ? `${details.length} problem${details.length > 1 ? "s" : ""} in the job` : e.message;
    document.getElementById("problems").innerHTML = `<p class="error" id="problem-summary">${esc(summary)}</p>${
      details.length
        ? `<ul class="problems" id="problem-list">${details
            .map((d) => `<li${d.line ? ` data-line="${d.line}" data-column="${d.column || 1}" title="go to line ${d.line}"` : ""}>${d.line ? `line ${d.line}${d.column ? `, column ${d.column}` : ""}: ` : ""}${d.field ? `${esc(d.field)}: ` : ""}${esc(d.message)}</li>`)
            .join("")}</ul>`
        : ""
    }`;
    const first = details.find((d) => d.line);
    if (first) goToLine(first.line, first.column);
  };
  document.getElementById("problems").addEventListener("click", (ev) => {
    const li = ev.target.closest("li[data-line]");
    if (li) goToLine(Number(li.dataset.line), Number(li.dataset.column));
  });
  const run = async (button, f) => {
    button.disabled = true;
    document.getElementById("problems").innerHTML = "";
    document.getElementById("plan").hidden = true;
    try {
      await f(request());
    } catch (e) {
      showProblems(e);
    } finally {
      button.disabled = false;
    }
  };
  document.getElementById("validate").addEventListener("click", (ev) =>
    run(ev.target, async (body) => {
      const v = await api("POST", "/api/v1/jobs/validate", body);
      badLines = new Set();
      drawGutter();
      document.getElementById("result").textContent = `valid: ${v.name}, parallelism ${v.parallelism}`;
      const plan = document.getElementById("plan");
      plan.textContent = v.plan;
      plan.hidden = false;
    }),
  );
  document.getElementById("submit").addEventListener("click", (ev) =>
    run(ev.target, async (body) => {
      const r = await api("POST", "/api/v1/jobs", body);
      location.hash = `#/jobs/${r.id}`;
    }),
  );
}

function graph(d) {
  const parts = [];
  d.vertices.forEach((v, i) => {
    if (i > 0) {
      const e = d.edges.find((x) => x.to === v.id) || {};
      const up = d.vertices[i - 1];
      parts.push(`<div class="edge"><div class="arrow">→</div><div>${esc(e.ship_strategy || "")}</div>
        <div data-edge="${up.id}-${v.id}">${rate(up.records_out_per_second)} records/s</div></div>`);
    }
    parts.push(`<div class="vertex" data-vertex="${v.id}"><div class="name">${esc(v.name)}</div>
      <div class="muted">${esc(v.operators.join(" → "))}</div>
      <div>parallelism ${v.parallelism}</div>
      <div>in <span data-field="records_in_per_second">${rate(v.records_in_per_second)}</span>/s · out ${rate(v.records_out_per_second)}/s</div>
      <div>watermark <span data-field="watermark">${watermark(v.watermark)}</span></div>
      <div>backpressure ${bar(v.backpressure_ratio)}</div>${stateLine(v.state)}</div>`);
  });
  return `<div class="graph" id="graph">${parts.join("")}</div>`;
}

// A keyed vertex's state: in memory, spilled to disk, cache hits.
function stateLine(st) {
  if (!st) return "";
  const hits = st.cache_hit_rate == null ? "" : ` · ${(100 * st.cache_hit_rate).toFixed(1)}% hits`;
  return `<div class="state">state <span data-field="state">${num(st.keys_in_memory)} keys · ${bytes(st.bytes_in_memory)} in memory · ${bytes(st.bytes_spilled)} spilled${hits}</span></div>`;
}

function subtasks(d) {
  return d.vertices
    .map((v) => `<h2>${esc(v.name)}</h2><table class="subtasks"><tr><th>subtask</th><th>taskmanager</th>
      <th class="num">records in</th><th class="num">records out</th><th class="num">in/s</th>
      <th>watermark</th><th>backpressure</th><th class="num">late dropped</th></tr>${v.subtasks
        .map((s) => `<tr><td>${s.index}</td><td>${s.taskmanager ? `<a href="#/taskmanagers/${esc(s.taskmanager)}">${esc(s.taskmanager)}</a>` : "–"}</td>
          <td class="num">${num(s.records_in)}</td><td class="num">${num(s.records_out)}</td>
          <td class="num">${rate(s.records_in_per_second)}</td><td>${watermark(s.watermark)}</td>
          <td>${bar(s.backpressure_ratio)}</td><td class="num">${num(s.late_records_dropped)}</td></tr>`)
        .join("")}</table>`)
    .join("");
}

function partitions(d) {
  const rows = [];
  for (const v of d.vertices) {
    for (const s of v.subtasks) {
      for (const p of s.partitions || []) {
        rows.push(`<tr><td>${p.partition}</td><td>${s.index}</td><td class="num">${num(p.position)}</td>
          <td class="num">${num(p.high_watermark)}</td><td class="num">${num(p.lag)}</td></tr>`);
      }
    }
  }
  return rows.length
    ? `<h2>Kafka partitions</h2><table id="partitions"><tr><th>partition</th><th>source subtask</th><th class="num">offset</th><th class="num">high watermark</th><th class="num">lag</th></tr>${rows.join("")}</table>`
    : "";
}

function checkpointsTab(d, list) {
  const every = d.checkpoint_interval_ms == null
    ? `<p id="checkpoint-interval">Periodic checkpoints are off: the job turned them off, or the cluster has no --checkpoint-dir (savepoints on request only). A failure replays from the start position.</p>`
    : `<p id="checkpoint-interval">Checkpointed every ${(d.checkpoint_interval_ms / 1000).toLocaleString()} s.</p>`;
  if (!list.length) return `${every}<p class="muted" id="no-checkpoints">No checkpoints yet.</p>`;
  return `${every}<table id="checkpoints"><tr><th>id</th><th>status</th><th>triggered</th><th class="num">duration</th>
    <th class="num">full size</th><th class="num">uploaded</th><th>subtasks (sync / async / alignment ms)</th><th>offsets</th><th></th></tr>${list
      .map((c) => `<tr><td>${c.id}</td><td>${state(c.status)}${c.failure ? `<div class="error">${esc(c.failure)}</div>` : ""}</td>
        <td>${time(c.trigger_ms)}</td><td class="num">${c.duration_ms == null ? "–" : `${c.duration_ms} ms`}</td>
        <td class="num">${bytes(c.full_bytes)}</td><td class="num">${bytes(c.incremental_bytes)}</td>
        <td>${c.subtasks
          .slice()
          .sort((a, b) => a.vertex - b.vertex || a.subtask - b.subtask)
          .map((s) => `${s.vertex}.${s.subtask}: ${s.sync_ms} / ${s.async_ms} / ${s.alignment_ms}`)
          .join("<br>")}</td>
        <td>${c.offsets
          .slice()
          .sort((a, b) => a.partition - b.partition)
          .map((o) => `p${o.partition}: ${o.next_offset ?? "start"}`)
          .join(", ")}</td>
        <td>${c.status === "COMPLETED" && c.retained ? `<button data-restore="${c.id}">restore from this checkpoint</button>` : ""}</td></tr>`)
      .join("")}</table>`;
}

function latency(d) {
  const l = d.latency;
  if (!l) return `<p class="muted" id="latency">Event-to-sink latency: no row written yet.</p>`;
  const ms = (v) => formatValue(v, "ms");
  return `<p id="latency" title="From when what produced a row entered the engine (read by a source; for a window's row, the records that moved the watermark past its end) to the sink, since the attempt started">
    Event-to-sink latency: p50 <span data-field="p50">${ms(l.p50_ms)}</span> · p99 <span data-field="p99">${ms(l.p99_ms)}</span>
    · max ${ms(l.max_ms)} <span class="muted">(${num(l.rows)} rows)</span></p>`;
}

function catchUp(d) {
  const c = d.catch_up;
  if (!c || !c.catching_up) return "";
  return `<p id="catch-up" title="The job's Kafka lag is worth more than its catch_up threshold of reading: it checkpoints less often and holds updates back until a checkpoint">
    Catching up: ${catchingUp(c)}</p>`;
}

function warnings(d) {
  return (d.warnings || []).length
    ? `<div id="warnings">${d.warnings.map((w) => `<p class="warning">${esc(w)}</p>`).join("")}</div>`
    : "";
}

function exceptionsTab(d) {
  const rows = d.attempts
    .slice()
    .reverse()
    .map((a) => `<tr><td>${a.attempt}</td><td>${time(a.started_at_ms)}</td><td>${time(a.ended_at_ms)}</td>
      <td>${a.restored_from == null ? "–" : `chk-${a.restored_from}`}</td><td class="error">${esc(a.error || "")}</td></tr>`)
    .join("");
  return `${d.error ? `<h2>Root cause</h2><pre class="error" id="root-cause">${esc(d.error)}</pre>` : ""}
    <h2>Attempts</h2><table id="attempts"><tr><th>attempt</th><th>started</th><th>ended</th><th>restored from</th><th>error</th></tr>${rows}</table>`;
}

async function jobPage(id, tab) {
  tab = tab || "overview";
  view.innerHTML = `<h1 id="job-title">Job</h1>
    <div class="toolbar">
      <span>state <span id="job-state"></span></span><span id="job-reason" class="muted"></span>
      <button id="cancel" class="danger">Cancel</button>
      <button id="savepoint">Savepoint</button>
      <button id="stop">Stop with savepoint</button>
      <button id="audit" title="Recompute the job's history into shadow sinks and compare them with its sinks">Audit</button>
      <span id="action-result"></span>
    </div>
    <div class="tabs">
      <a href="#/jobs/${esc(id)}" id="tab-overview">Overview</a>
      <a href="#/jobs/${esc(id)}/metrics" id="tab-metrics">Metrics</a>
      <a href="#/jobs/${esc(id)}/checkpoints" id="tab-checkpoints">Checkpoints</a>
      <a href="#/jobs/${esc(id)}/exceptions" id="tab-exceptions">Exceptions</a>
    </div>
    <div id="tab-body"></div>`;
  document.getElementById(`tab-${tab}`).classList.add("active");
  const result = document.getElementById("action-result");
  action("cancel", result, "cancelling", async () => {
    if (!confirm("Cancel this job?")) return "";
    await api("POST", `/api/v1/jobs/${id}/cancel`);
    return "cancel requested";
  });
  action("savepoint", result, "taking a savepoint", async () => {
    const r = await api("POST", `/api/v1/jobs/${id}/savepoints`, {});
    return `savepoint: ${r.path}`;
  });
  action("stop", result, "stopping with a savepoint", async () => {
    const r = await api("POST", `/api/v1/jobs/${id}/stop`, {});
    return `stopped; savepoint: ${r.path}`;
  });
  action("audit", result, "starting an audit", async () => {
    const u = await api("POST", `/api/v1/jobs/${encodeURIComponent(id)}/audits`);
    location.hash = `#/upgrades/${encodeURIComponent(u.id)}`;
    return `audit ${u.id} started`;
  });
  document.getElementById("tab-body").addEventListener("click", async (ev) => {
    const n = ev.target.dataset && ev.target.dataset.restore;
    if (!n) return;
    try {
      const spec = await api("GET", `/api/v1/jobs/${encodeURIComponent(id)}/spec`);
      sessionStorage.setItem("kappa-prefill", JSON.stringify({ job: spec.job, file_name: spec.file_name, start: `checkpoint:${id}:${n}` }));
      location.hash = "#/submit";
    } catch (e) {
      result.className = "error";
      result.textContent = `could not read the job's spec: ${e.message}`;
    }
  });
  const load = async () => {
    const d = await api("GET", `/api/v1/jobs/${encodeURIComponent(id)}`);
    const list = tab === "checkpoints" ? await api("GET", `/api/v1/jobs/${encodeURIComponent(id)}/checkpoints`) : null;
    const series = tab === "metrics" ? await api("GET", `/api/v1/jobs/${encodeURIComponent(id)}/series`) : null;
    return { d, list, series };
  };
  live(load, ({ d, list, series }) => {
    // The job detail carries the summary's fields (id, name, state, error) at its top level.
    document.getElementById("job-title").textContent = d.name;
    document.getElementById("job-state").innerHTML = state(d.state);
    document.getElementById("job-reason").textContent = d.reason || "";
    const ended = ["FINISHED", "CANCELED", "FAILED"].includes(d.state);
    for (const b of ["cancel", "savepoint", "stop", "audit"]) document.getElementById(b).hidden = ended;
    // A pending "cancel requested" is answered by the state itself once the job ended.
    if (ended && result.textContent === "cancel requested") result.textContent = "";
    const tabBody = document.getElementById("tab-body");
    if (tab === "metrics") drawCharts(tabBody, series);
    else if (tab === "checkpoints") tabBody.innerHTML = checkpointsTab(d, list);
    else if (tab === "exceptions") tabBody.innerHTML = exceptionsTab(d);
    else tabBody.innerHTML = `${warnings(d)}${catchUp(d)}${graph(d)}${latency(d)}${subtasks(d)}${partitions(d)}`;
  });
}

async function taskmanagersPage() {
  view.innerHTML = `<h1>Taskmanagers</h1><div id="tms"></div>`;
  live(() => api("GET", "/api/v1/taskmanagers"), (tms) => {
    document.getElementById("tms").innerHTML = tms.length
      ? `<table id="tm-table"><tr><th>id</th><th>address</th><th>version</th><th class="num">slots</th><th class="num">free</th><th class="num">heartbeat</th><th class="num">memory</th></tr>${tms
          .map((t) => `<tr><td><a href="#/taskmanagers/${esc(t.id)}">${esc(t.id)}</a></td><td>${esc(t.address)}</td><td>${esc(t.version)}</td>
            <td class="num">${t.slots_total}</td><td class="num">${t.slots_free}</td><td class="num">${t.last_heartbeat_ms_ago} ms ago</td><td class="num">${bytes(t.memory_bytes)}</td></tr>`)
          .join("")}</table>`
      : `<p class="muted">No taskmanager registered. Start one with <code>kappa taskmanager --jobmanager http://HOST:6123</code>.</p>`;
  });
}

async function taskmanagerPage(id) {
  view.innerHTML = `<h1>Taskmanager <span id="tm-id">${esc(id)}</span></h1><div id="tm"></div>`;
  live(() => api("GET", `/api/v1/taskmanagers/${encodeURIComponent(id)}`), (t) => {
    const tm = t.taskmanager;
    document.getElementById("tm").innerHTML = `<div class="cards">
        <div class="card"><div class="muted">address</div><div>${esc(tm.address)}</div></div>
        <div class="card"><div class="muted">slots</div><div class="value">${tm.slots_total - tm.slots_free} / ${tm.slots_total} used</div></div>
        <div class="card"><div class="muted">heartbeat</div><div>${tm.last_heartbeat_ms_ago} ms ago</div></div>
        <div class="card"><div class="muted">memory</div><div>${bytes(tm.memory_bytes)}</div></div></div>
      <h2>Tasks</h2>${t.tasks.length
        ? `<table id="tm-tasks"><tr><th>job</th><th>operator</th><th>subtask</th><th class="num">records in</th><th class="num">records out</th></tr>${t.tasks
            .map((k) => `<tr><td><a href="#/jobs/${esc(k.job_id)}">${esc(k.job_name)}</a></td><td>${esc(k.vertex)}</td><td>${k.subtask}</td><td class="num">${num(k.records_in)}</td><td class="num">${num(k.records_out)}</td></tr>`)
            .join("")}</table>`
        : `<p class="muted">No tasks.</p>`}`;
  });
}

// ---- routing ---------------------------------------------------------------------------

async function route() {
  newPage();
  const shown = stillShowing();
  setStatus("");
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean);
  const section = parts[0] || "overview";
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("active", a.dataset.nav === section);
  try {
    if (section === "overview") await overviewPage();
    else if (section === "jobs" && parts[1]) await jobPage(decodeURIComponent(parts[1]), parts[2]);
    else if (section === "jobs") await jobsPage();
    else if (section === "submit") await submitPage();
    else if (section === "taskmanagers" && parts[1]) await taskmanagerPage(decodeURIComponent(parts[1]));
    else if (section === "taskmanagers") await taskmanagersPage();
    else if (section === "upgrades" && parts[1]) await upgradePage(decodeURIComponent(parts[1]));
    else if (section === "upgrades") await upgradesPage();
    else view.innerHTML = `<p class="error">No page ${esc(location.hash)}.</p>`;
  } catch (e) {
    if (shown()) showError(e);
  }
}

window.addEventListener("hashchange", route);
route();
