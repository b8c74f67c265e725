// What every page of the web UI shares: the API client (with the token prompt), the page's
// lifecycle (live refresh, a stale page never draws), escaping and formatting, action buttons.

import { formatValue } from "./charts.js";

// The token lives in this tab's session storage only: closing the tab forgets it. Earlier
// versions kept it in local storage; it is removed from there.
const TOKEN_KEY = "kappa-token";
localStorage.removeItem(TOKEN_KEY);
const REFRESH_MS = 1000;
export const view = document.getElementById("view");
let timer = null;

// ---- API -------------------------------------------------------------------------------

let tokenWait = null;

/** Asks for the cluster's token once; concurrent requests wait for the same answer. */
function askToken(message) {
  if (tokenWait) return tokenWait;
  const dialog = document.getElementById("token-dialog");
  document.getElementById("token-error").textContent = message || "";
  // The token is required: Escape would close the dialog and leave every request waiting.
  dialog.oncancel = (ev) => ev.preventDefault();
  tokenWait = new Promise((resolve) => {
    const form = document.getElementById("token-form");
    form.onsubmit = () => {
      sessionStorage.setItem(TOKEN_KEY, document.getElementById("token-input").value);
      dialog.close();
      tokenWait = null;
      resolve();
    };
  });
  dialog.showModal();
  return tokenWait;
}

/** A JSON answer; text that is not JSON becomes `{ error: text }`. */
function parse(text) {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return { error: text };
  }
}

/**
 * Calls the API and returns its answer as text (for answers that are not one JSON document);
 * a 401 asks for the token and retries. Errors carry the JSON body.
 */
export async function apiText(method, path, body) {
  for (;;) {
    const headers = {};
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (r.status === 401) {
      await askToken(token ? "That token was refused." : "");
      continue;
    }
    const text = await r.text();
    if (!r.ok) {
      const data = parse(text);
      const e = new Error((data && data.error) || `${r.status} ${r.statusText}`);
      e.status = r.status;
      e.body = data;
      throw e;
    }
    return text;
  }
}

/** Calls the API; its JSON answer. */
export async function api(method, path, body) {
  return parse(await apiText(method, path, body));
}

// ---- formatting ------------------------------------------------------------------------

export function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);
}

export const num = (n) => (n == null ? "–" : Number(n).toLocaleString("en-US"));
export const rate = (n) => (n == null ? "–" : Number(n).toLocaleString("en-US", { maximumFractionDigits: 1 }));
export const time = (ms) => (ms == null ? "–" : new Date(ms).toLocaleString());
export const state = (s) => `<span class="state state-${esc(s)}">${esc(s)}</span>`;

/** A progress bar of `ratio` (0–1) with its percentage. */
export function bar(ratio) {
  const pct = Math.round(Math.min(1, Math.max(0, ratio || 0)) * 100);
  return `<progress class="bar" max="100" value="${pct}" title="${pct}%"></progress> ${pct}%`;
}

/** A catch-up (a job's `catch_up`, an upgrade's `progress`): its ETA, lag and read rate. */
export function catchingUp(c) {
  const eta = c.eta_ms == null ? "no ETA (the lag is not shrinking)" : `ETA ${formatValue(c.eta_ms, "ms")}`;
  return `<span data-field="eta">${eta}</span> · ${num(c.lag)} records behind · reading ${num(Math.round(c.read_per_second))}/s`;
}

// ---- the page --------------------------------------------------------------------------

export function setStatus(text) {
  document.getElementById("status").textContent = text;
}

export function showError(e) {
  view.innerHTML = `<p class="error" id="page-error">${esc(e.message)}</p>`;
}

// Bumped by every route change: a page's pending requests must not draw over the next page.
let page = 0;

/** A route change: the previous page's refreshes stop. */
export function newPage() {
  clearInterval(timer);
  page += 1;
}

/** Whether the page showing now still shows, asked later (after an await). */
export function stillShowing() {
  const mine = page;
  return () => mine === page;
}

/**
 * Runs `load` (async: fetches what the page shows) now and every REFRESH_MS until the page
 * changes, then `draw(data)` if the page is still the one that asked. A tick starts only once
 * the previous one has ended (a slow API or a token prompt does not pile requests up).
 */
export function live(load, draw) {
  const shown = stillShowing();
  let busy = false;
  const tick = async () => {
    if (busy || !shown()) return;
    busy = true;
    try {
      const data = await load();
      if (!shown()) return;
      draw(data);
      setStatus(`updated ${new Date().toLocaleTimeString()}`);
    } catch (e) {
      if (!shown()) return;
      setStatus(`update failed: ${e.message}`);
      if (e.status === 404) {
        clearInterval(timer);
        showError(e);
      }
    } finally {
      busy = false;
    }
  };
  tick();
  timer = setInterval(tick, REFRESH_MS);
}

/**
 * Makes a click on the button with id `id` run `f` (async): `result` says `what…` meanwhile,
 * then the text `f` returns, or the error in red. The button is disabled while `f` runs.
 */
export function action(id, result, what, f) {
  const button = document.getElementById(id);
  button.addEventListener("click", async () => {
    button.disabled = true;
    result.className = "muted";
    result.textContent = `${what}…`;
    try {
      result.textContent = await f();
    } catch (e) {
      result.className = "error";
      result.textContent = e.message;
    } finally {
      button.disabled = false;
    }
  });
}
