// Line charts of a job's time series (GET /api/v1/jobs/{id}/series) drawn as inline SVG:
// no library and nothing from the network, served by the jobmanager like the rest of the UI.
// Every series the API lists gets a chart, so a series added there shows up here by itself.

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 460;
const HEIGHT = 170;
const PAD = { left: 62, right: 10, top: 10, bottom: 22 };
// Lines beyond this many colours reuse them.
const COLOURS = 6;

function el(ns, name, attrs, text) {
  const e = ns ? document.createElementNS(ns, name) : document.createElement(name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/**
 * A value in its unit, short: `12.3 ms`, `1.2 s`, `4.5 MB`, `12.3k records/s`; on an axis
 * (`axis`) counts and rates go without their unit, which the chart's title names.
 */
export function formatValue(v, unit, axis = false) {
  if (v == null || !Number.isFinite(v)) return "–";
  const abs = Math.abs(v);
  const digits = (n) => {
    const a = Math.abs(n);
    if (Number.isInteger(n)) return String(n);
    return a >= 1 ? n.toFixed(a >= 100 ? 0 : a >= 10 ? 1 : 2) : n.toPrecision(2);
  };
  if (unit === "ms") {
    if (abs >= 60000) return `${(v / 60000).toFixed(1)} min`;
    if (abs >= 1000) return `${(v / 1000).toFixed(abs >= 10000 ? 0 : 1)} s`;
    return `${digits(v)} ms`;
  }
  const [scale, suffix] = unit === "bytes"
    ? [[1e12, " TB"], [1e9, " GB"], [1e6, " MB"], [1e3, " KB"], [1, " B"]].find(([s]) => abs >= s) || [1, " B"]
    : [[1e9, "G"], [1e6, "M"], [1e3, "k"], [1, ""]].find(([s]) => abs >= s) || [1, ""];
  const n = v / scale;
  const text = `${scale === 1 ? digits(n) : n.toFixed(Math.abs(n) >= 100 ? 0 : 1)}${suffix}`;
  return unit === "bytes" || axis ? text : `${text} ${unit}`;
}

const clock = (ms) => new Date(ms).toLocaleTimeString();

/** A round upper bound for the y axis. */
function ceiling(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((m) => m >= v);
}

/** The SVG path of one line: segments between missing values, x and y mapped by `at`. */
function path(values, at) {
  let d = "";
  let drawn = 0;
  let lone = [];
  values.forEach((v, i) => {
    if (v == null) return;
    const [x, y] = at(i, v);
    const joined = i > 0 && values[i - 1] != null;
    d += `${joined ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`;
    drawn += 1;
    // A point with no neighbour draws no segment: it gets a dot.
    if (!joined && (i + 1 >= values.length || values[i + 1] == null)) lone.push([x, y]);
  });
  return { d, drawn, lone };
}

/** The chart of one series over `times` (epoch ms), as a DOM element. */
function chart(series, times) {
  const card = el(null, "div", { class: "chart", "data-series": series.name });
  card.appendChild(el(null, "div", { class: "chart-title" }, `${series.title} (${series.unit})`));
  const values = series.lines.flatMap((l) => l.values.filter((v) => v != null));
  if (!values.length) {
    card.appendChild(el(null, "p", { class: "muted chart-empty" }, "No data yet."));
    return card;
  }
  const low = Math.min(0, ...values);
  const high = ceiling(Math.max(...values));
  const top = high <= low ? low + 1 : high;
  const plot = { w: WIDTH - PAD.left - PAD.right, h: HEIGHT - PAD.top - PAD.bottom };
  const [t0, t1] = [times[0], times[times.length - 1]];
  const at = (i, v) => [
    PAD.left + (t1 > t0 ? ((times[i] - t0) / (t1 - t0)) * plot.w : plot.w / 2),
    PAD.top + plot.h - ((v - low) / (top - low)) * plot.h,
  ];
  const svg = el(SVG, "svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "chart-svg", role: "img" });
  svg.appendChild(el(SVG, "title", {}, `${series.title} (${series.unit})`));
  for (const v of [low, (low + top) / 2, top]) {
    const y = at(0, v)[1];
    svg.appendChild(el(SVG, "line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y, y2: y, class: "grid" }));
    svg.appendChild(el(SVG, "text", { x: PAD.left - 4, y: y + 4, class: "axis y" }, formatValue(v, series.unit, true)));
  }
  svg.appendChild(el(SVG, "text", { x: PAD.left, y: HEIGHT - 6, class: "axis" }, clock(t0)));
  svg.appendChild(el(SVG, "text", { x: WIDTH - PAD.right, y: HEIGHT - 6, class: "axis end" }, clock(t1)));
  const legend = el(null, "ul", { class: "legend" });
  series.lines.forEach((line, k) => {
    const colour = `c${k % COLOURS}`;
    const { d, drawn, lone } = path(line.values, at);
    svg.appendChild(el(SVG, "path", { d, class: `line ${colour}`, "data-label": line.label, "data-points": drawn }));
    for (const [x, y] of lone) svg.appendChild(el(SVG, "circle", { cx: x, cy: y, r: 2.5, class: `dot ${colour}` }));
    const latest = [...line.values].reverse().find((v) => v != null);
    const item = el(null, "li", { class: colour });
    item.appendChild(el(null, "span", { class: "swatch" }));
    item.appendChild(el(null, "span", {}, `${line.label}: ${formatValue(latest, series.unit)}`));
    legend.appendChild(item);
  });
  card.appendChild(svg);
  card.appendChild(legend);
  return card;
}

/** Draws a chart per series of `data` (the API's answer) into `container`. */
export function drawCharts(container, data) {
  const span = data.times_ms.length > 1 ? data.times_ms[data.times_ms.length - 1] - data.times_ms[0] : 0;
  const note = el(null, "p", { class: "muted", id: "charts-note" },
    `One point every ${data.interval_ms / 1000} s while the job runs; the last ${data.retention_ms / 60000} min are kept` +
      (data.times_ms.length ? ` (${data.times_ms.length} points over ${Math.round(span / 1000)} s so far).` : "; none yet."));
  const grid = el(null, "div", { class: "charts", id: "charts" });
  for (const s of data.series) grid.appendChild(chart(s, data.times_ms));
  container.replaceChildren(note, grid);
}
