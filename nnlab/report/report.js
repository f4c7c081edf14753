// The nnlab report page: unpacks its data and plotly.js (gzip, base64; both inside this file),
// then draws the compare table, the learning curves and the sweep plots. No request leaves it.
"use strict";

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const DASHES = ["solid", "dash", "dot", "dashdot"];
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));

async function unpack(id) {
  const raw = atob($(id).textContent.trim());
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  const stream = new Blob([out]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Response(stream).text();
}

// ------------------------------------------------------------------ numbers

function num(x, digits = 4) {
  if (x === null || x === undefined) return "-";
  if (typeof x !== "number") return String(x);
  if (Number.isInteger(x) && Math.abs(x) < 1e15) return String(x);
  if (x !== 0 && (Math.abs(x) >= 1e5 || Math.abs(x) < Math.pow(10, -(digits - 1)))) {
    return x.toPrecision(digits);
  }
  return x.toFixed(digits);
}

function cellText(col, v) {
  if (col.kind === "interval") {
    if (!v || v[0] === null) return "-";
    const d = col.key === "epochs" || col.key === "runs" ? 1 : col.key === "seconds" ? 2 : 4;
    const half = v[2] === null ? null : v[2] - v[0];
    return num(v[0], d) + (v[3] > 1 && half !== null ? " ± " + half.toFixed(d) : "") + " (" + v[3] + ")";
  }
  if (col.kind === "p") return pValue(v);
  if (col.kind === "number") return col.key === "seconds" && typeof v === "number" ? v.toFixed(2) : num(v);
  return v === null || v === undefined ? "-" : String(v);
}

function sortValue(col, v) {
  if (col.kind === "interval") return v ? v[0] : null;
  return v;
}

// ------------------------------------------------------------------ the table

const state = { view: "runs", sort: null, desc: false, filter: "" };

function currentTable(data) {
  const t = data.tables[state.view];
  if (state.view !== "groups" || !t.verdicts || !t.verdicts.rows) return t;
  const v = t.verdicts;
  const at = t.columns.findIndex((c) => c.key === v.metric) + 1 || t.columns.length;
  const added = [
    { key: "verdict.diff", header: "vs best " + v.metric, kind: "diff" },
    { key: "verdict.p", header: "p", kind: "p" },
    { key: "verdict", header: "verdict", kind: "verdict" }];
  const columns = [...t.columns.slice(0, at), ...added, ...t.columns.slice(at)];
  const rows = t.rows.map((r, i) => [...r.slice(0, at), v.rows[i], v.rows[i].p, v.rows[i], ...r.slice(at)]);
  return { columns, rows, note: t.note };
}

const signed = (x) => (x >= 0 ? "+" : "") + x.toFixed(4);
const pValue = (p) => p === null || p === undefined ? "-" : p < 0.001 ? "<0.001" : p.toFixed(3);

function verdictCell(col, v) {
  if (col.kind === "diff") {
    if (v.verdict === "reference") return "reference";
    const ci = v.low === null ? "" : " [" + signed(v.low) + ", " + signed(v.high) + "]";
    return signed(v.diff) + ci;
  }
  return (v.marker ? v.marker + " " : "") + v.verdict;
}

function parseFilter(text, columns) {
  return text.trim().split(/\s+/).filter(Boolean).map((tok) => {
    const m = tok.match(/^([^<>=!]+)(==|!=|<=|>=|=|<|>)(.+)$/);
    if (!m) return { text: tok.toLowerCase() };
    const name = m[1];
    const j = columns.findIndex((c) => c.header === name || c.key === name || c.key.endsWith("." + name));
    return j < 0 ? { text: tok.toLowerCase() } : { col: j, op: m[2] === "=" ? "==" : m[2], value: m[3] };
  });
}

function passes(row, texts, conds, columns) {
  return conds.every((c) => {
    if (c.text !== undefined) return texts.some((t) => t.toLowerCase().includes(c.text));
    const raw = sortValue(columns[c.col], row[c.col]);
    const num = Number(c.value);
    const isNum = typeof raw === "number" && c.value.trim() !== "" && !Number.isNaN(num);
    const a = isNum ? raw : String(raw === null ? "-" : raw), b = isNum ? num : c.value;
    return { "==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b }[c.op];
  });
}

function drawTable(data) {
  const t = currentTable(data);
  const conds = parseFilter(state.filter, t.columns);
  let order = t.rows.map((r, i) => i);
  const texts = t.rows.map((r) => r.map((v, j) => t.columns[j].kind === "diff" || t.columns[j].kind === "verdict"
    ? verdictCell(t.columns[j], v) : cellText(t.columns[j], v)));
  order = order.filter((i) => passes(t.rows[i], texts[i], conds, t.columns));
  if (state.sort !== null && state.sort < t.columns.length) {
    const col = t.columns[state.sort], j = state.sort;
    const key = (i) => col.kind === "diff" ? t.rows[i][j].diff : col.kind === "verdict" ? t.rows[i][j].verdict : sortValue(col, t.rows[i][j]);
    order.sort((a, b) => {
      const x = key(a), y = key(b);
      if (x === null || x === undefined) return 1;
      if (y === null || y === undefined) return -1;
      const c = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y), undefined, { numeric: true });
      return state.desc ? -c : c;
    });
  }
  const head = t.columns.map((c, j) => {
    const mark = state.sort === j ? (state.desc ? " ▼" : " ▲") : "";
    return `<th data-col="${j}" class="${c.kind}" title="${esc(c.key)}">${esc(c.header)}${mark}</th>`;
  }).join("");
  const body = order.map((i) => {
    const cells = texts[i].map((s, j) => {
      const col = t.columns[j];
      const cls = col.kind === "verdict" ? "verdict " + t.rows[i][j].verdict.replace(/ /g, "-") : col.kind;
      return `<td class="${cls}">${esc(s)}</td>`;
    }).join("");
    return `<tr data-row="${i}">${cells}</tr>`;
  }).join("");
  $("table").innerHTML = `<table class="runs"><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
  state.shown = new Set(state.view === "groups" ? order : order.map((i) => data.runs[i].group));
  $("count").textContent = `${order.length} of ${t.rows.length} ${state.view === "groups" ? "groups" : "runs"}`;
  const notes = [t.note];
  if (state.view === "groups" && data.tables.groups.verdicts) {
    const v = data.tables.groups.verdicts;
    notes.push(v.error ? "verdicts: " + v.error
      : `verdicts on ${v.metric}: each group against the best by a paired t-test on the seeds both ran (Welch's otherwise), 95% interval of the difference; ` +
        `* a difference larger than the seed noise (p < 0.05), ≈ within noise. Seeds needed to tell the two best apart: ${v.seeds_needed === null ? "-" : v.seeds_needed}.`);
  }
  $("table-note").textContent = notes.filter(Boolean).map((n) => n.endsWith(".") ? n : n + ".").join(" ");
}

function setupTable(data) {
  const views = $("views");
  if (!data.tables.groups) views.hidden = true;
  views.addEventListener("change", (e) => { state.view = e.target.value; state.sort = null; drawTable(data); });
  let pending = null;
  $("filter").addEventListener("input", (e) => {
    state.filter = e.target.value;
    drawTable(data);
    clearTimeout(pending);  // the curves follow the filter, once the typing pauses
    pending = setTimeout(() => drawCurves(data), 300);
  });
  $("table").addEventListener("click", (e) => {
    const th = e.target.closest("th");
    if (th) {
      const j = Number(th.dataset.col);
      state.desc = state.sort === j ? !state.desc : false;
      state.sort = j;
      drawTable(data);
      return;
    }
    const tr = e.target.closest("tr[data-row]");
    if (tr) showDetails(data, state.view, Number(tr.dataset.row));
  });
  if (data.tables.groups) { state.view = "groups"; views.querySelector("[value=groups]").checked = true; }
  drawTable(data);
}

// ------------------------------------------------------------------ details

function plain(v) {  // a summary's value as text: numbers as in the table, objects as "key value, ..."
  if (typeof v === "number") return num(v);
  if (Array.isArray(v)) return v.map(plain).join(", ");
  if (typeof v === "object" && v !== null) return Object.entries(v).map(([k, x]) => k + " " + plain(x)).join(", ");
  return v === null || v === undefined ? "-" : String(v);
}

function kvTable(obj, raw = false) {  // raw: a config's values as they are written
  const text = (v) => raw ? (typeof v === "object" && v !== null ? JSON.stringify(v) : String(v)) : plain(v);
  const rows = Object.entries(obj).map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(text(v))}</td></tr>`);
  return `<table class="kv">${rows.join("")}</table>`;
}

function runDetails(data, i) {
  const r = data.runs[i];
  const s = r.summary;
  const splits = ["train", "val", "test"].filter((k) => s[k]).reduce((o, k) => ({ ...o, [k]: s[k] }), {});
  const rest = Object.fromEntries(Object.entries(s).filter(([k]) => !["train", "val", "test", "baselines", "best"].includes(k)));
  const best = Object.fromEntries(Object.entries(s.best || {}).map(([k, v]) => [k, `${num(v.value)} at epoch ${v.epoch}`]));
  return `<h3>${esc(r.label)} <span class="status">${esc(r.status)}</span></h3>
    <p class="path">${esc(r.path)}</p>
    <h4>Results</h4>${kvTable(Object.fromEntries(Object.entries(splits).map(([k, m]) => [k, Object.entries(m).map(([a, b]) => a + " " + num(b)).join(", ")])))}
    <h4>Best epoch</h4>${kvTable(best)}
    <h4>Baselines</h4>${kvTable(s.baselines || {})}
    <h4>Config (its own keys)</h4>${kvTable(r.config, true)}
    <details><summary>Config keys every run shares</summary>${kvTable(data.shared, true)}</details>
    <h4>Summary</h4>${kvTable(rest)}`;
}

function showDetails(data, view, row) {
  let html;
  if (view === "groups") {
    const g = data.groups[row];
    const links = g.runs.map((i) => `<li><a href="#" data-run="${i}">${esc(data.runs[i].label)}</a> ${esc(data.runs[i].status)}</li>`).join("");
    html = `<h3>${esc(g.label)}</h3><p>${g.runs.length} runs:</p><ul>${links}</ul>` + (g.runs.length ? runDetails(data, g.runs[0]) : "");
  } else {
    html = runDetails(data, row);
  }
  $("details-body").innerHTML = html;
  $("details").hidden = false;
}

// ------------------------------------------------------------------ curves

function curveTraces(data, metric, band) {
  const c = data.curves;
  const traces = [];
  const many = data.groups.length > 20;
  for (const line of c.lines[metric] || []) {
    if (state.shown && !state.shown.has(line.group)) continue;
    const g = data.groups[line.group];
    const slot = c.colour[line.group];
    const colour = PALETTE[slot % PALETTE.length];
    if (band && line.low) {
      traces.push({ x: [...line.epochs, ...line.epochs.slice().reverse()], y: [...line.high, ...line.low.slice().reverse()],
        fill: "toself", fillcolor: colour, opacity: many ? 0.06 : 0.18, line: { width: 0 }, hoverinfo: "skip", showlegend: false,
        legendgroup: c.grouped ? "c" + slot : "g" + line.group, type: "scatter", mode: "lines" });
    }
    const name = g.label + (g.runs.length > 1 ? ` (n=${g.runs.length})` : "");
    traces.push({ x: line.epochs, y: line.mean, type: "scatter", mode: "lines", name,
      line: { color: colour, width: 1.6, dash: DASHES[c.dash[line.group]] },
      legendgroup: c.grouped ? "c" + slot : "g" + line.group, showlegend: !c.grouped,
      hovertemplate: "%{fullData.name}<br>epoch %{x}: %{y}<extra></extra>" });
  }
  if (c.grouped) {  // the legend: a colour per value of the swept axis (a click hides them), a dash per value of another
    c.entries.forEach((entry, k) => traces.push({ x: [null], y: [null], type: "scatter", mode: "lines", name: entry,
      line: { color: PALETTE[k % PALETTE.length], width: 3 }, legendgroup: "c" + k, hoverinfo: "skip" }));
    c.dash_entries.forEach((entry, k) => traces.push({ x: [null], y: [null], type: "scatter", mode: "lines", name: entry,
      line: { color: "#777", dash: DASHES[k] }, legendgroup: "d" + k, hoverinfo: "skip" }));
  }
  return traces;
}

function drawCurves(data) {
  const metric = $("metric").value;
  const layout = { margin: { t: 30, r: 10 }, xaxis: { title: { text: "epoch" } },
    yaxis: { title: { text: metric }, type: $("logy").checked ? "log" : "linear" },
    legend: { font: { size: 11 } }, height: 460 };
  Plotly.react("curves", curveTraces(data, metric, $("bands").checked), layout, { displaylogo: false, responsive: true });
}

function setupCurves(data) {
  const metrics = Object.keys(data.curves.lines);
  const select = $("metric");
  select.innerHTML = metrics.map((m) => `<option>${esc(m)}</option>`).join("");
  const preferred = [data.objective.name, "val_loss", "loss"].find((m) => metrics.includes(m));
  if (preferred) select.value = preferred;
  select.addEventListener("change", () => drawCurves(data));
  $("logy").addEventListener("change", () => drawCurves(data));
  $("bands").checked = data.groups.length <= 20;
  $("bands").addEventListener("change", () => drawCurves(data));
  drawCurves(data);
}

// ------------------------------------------------------------------ sweep

function dimension(axis, keep) {
  const vals = keep.map((g) => axis.values[g]);
  if (!axis.numeric) {
    return { label: axis.name, values: vals.map((v) => axis.levels.indexOf(v)),
      tickvals: axis.levels.map((_, i) => i), ticktext: axis.levels };
  }
  if (!axis.log) return { label: axis.name, values: vals };
  const logs = vals.map(Math.log10);
  const lo = Math.floor(Math.min(...logs)), hi = Math.ceil(Math.max(...logs));
  const ticks = [];
  for (let e = lo; e <= hi; e++) ticks.push(e);
  return { label: axis.name + " (log)", values: logs, tickvals: ticks, ticktext: ticks.map((e) => String(Math.pow(10, e))) };
}

function drawSweep(data) {
  const s = data.sweep, obj = data.objective;
  const keep = s.mean.map((m, g) => g).filter((g) => s.mean[g] !== null);
  if (keep.length < 2) {  // nothing to draw: no config has a value of the objective
    $("sweep").hidden = true;
    return;
  }
  const dims = s.axes.map((a) => dimension(a, keep));
  dims.push({ label: obj.name, values: keep.map((g) => s.mean[g]) });
  const first = dims[0].ticktext || [];
  const left = Math.min(260, 20 + 7 * Math.max(6, ...first.map((t) => String(t).length)));
  Plotly.react("parcoords", [{ type: "parcoords", dimensions: dims,
    line: { color: keep.map((g) => s.mean[g]), colorscale: "Viridis", reversescale: !obj.higher, showscale: true,
      colorbar: { title: { text: obj.name } } } }],
    { margin: { t: 50, l: left, r: 60 }, height: 420 }, { displaylogo: false, responsive: true });
  const traces = [], layout = { height: 360, margin: { t: 30 }, showlegend: false, grid: { rows: 1, columns: s.axes.length, pattern: "independent" } };
  s.axes.forEach((a, k) => {
    const xs = [], ys = [], texts = [], colours = [];
    data.groups.forEach((g, gi) => g.runs.forEach((i) => {
      if (s.values[i] === null) return;
      xs.push(a.values[gi]); ys.push(s.values[i]); texts.push(data.runs[i].label + " " + g.label);
      colours.push(PALETTE[data.curves.colour[gi] % PALETTE.length]);
    }));
    const axis = k === 0 ? "" : String(k + 1);
    traces.push({ x: xs, y: ys, text: texts, type: "scatter", mode: "markers", xaxis: "x" + axis, yaxis: "y" + axis,
      marker: { size: 7, opacity: 0.6, color: colours }, hovertemplate: "%{text}<br>%{x}: %{y}<extra></extra>" });
    layout["xaxis" + axis] = { title: { text: a.name }, type: a.numeric ? (a.log ? "log" : "linear") : "category",
      tickangle: a.numeric ? 0 : -30, automargin: true };
    layout["yaxis" + axis] = { title: { text: k === 0 ? obj.name : "" } };
  });
  Plotly.react("slices", traces, layout, { displaylogo: false, responsive: true });
  drawImportance(s.importance);
}

function drawImportance(imp) {
  if (!imp || imp.error) {
    $("importance-note").textContent = "importance: " + (imp ? imp.error : "not computed");
    return;
  }
  const terms = imp.terms.slice().reverse();
  const share = terms.map((t) => t.share);
  const err = terms.every((t) => t.low !== null)
    ? { type: "data", symmetric: false, array: terms.map((t) => t.high - t.share), arrayminus: terms.map((t) => t.share - t.low) }
    : undefined;
  Plotly.react("importance", [{ type: "bar", orientation: "h", x: share, y: terms.map((t) => t.term), error_x: err,
    marker: { color: "#1f77b4" }, hovertemplate: "%{y}: %{x:.1%}<extra></extra>" }],
    { height: 80 + 36 * terms.length, margin: { l: 180, t: 20 }, xaxis: { tickformat: ".0%", range: [0, 1], title: { text: "share of the variance of " + imp.objective } } },
    { displaylogo: false, responsive: true });
  const seeds = imp.seed_share === null ? "" : ` Seeds: ${(100 * imp.seed_share).toFixed(1)}% of the runs' variance.`;
  const bars = err ? "; the error bars: the 95% bootstrap interval over seeds" : "";
  $("importance-note").textContent = `${imp.method === "anova" ? "Exact functional ANOVA of the complete grid" : "fANOVA (Optuna)"}${bars}.${seeds} ${imp.notes.join(" ")}`;
}

// ------------------------------------------------------------------ start

async function main() {
  const [text, plotly] = await Promise.all([unpack("nnlab-data"), unpack("plotly-js")]);
  const data = JSON.parse(text);
  const script = document.createElement("script");
  script.textContent = plotly;
  document.head.appendChild(script);
  $("subtitle").textContent = `${data.runs.length} runs in ${data.groups.length} configs · objective ${data.objective.name} (${data.objective.higher ? "higher" : "lower"} is better) · made ${data.created}`;
  setupTable(data);
  setupCurves(data);
  if (data.sweep) drawSweep(data); else $("sweep").hidden = true;
  $("details-close").addEventListener("click", () => { $("details").hidden = true; });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") $("details").hidden = true; });
  $("details-body").addEventListener("click", (e) => {
    const a = e.target.closest("a[data-run]");
    if (a) { e.preventDefault(); $("details-body").innerHTML = runDetails(data, Number(a.dataset.run)); }
  });
  document.body.dataset.ready = "true";
}

main().catch((e) => {
  $("error").hidden = false;
  $("error").textContent = "The report could not be drawn: " + e;
  console.error(e);
});
