// A run: its DAG coloured by state, a timeline, each step's attempts and output, live events.

import { TERMINAL, badge, debounce, duration, esc, flash, get, json, post, subscribe, when } from "./api.js";
import { drawDag } from "./dag.js";

const RUN_ENDS = new Set(["completed", "failed", "cancelled", "compensated", "compensation_failed"]
  .map((t) => `ingestion.workflow.${t}`));
const DONE = new Set(["SUCCEEDED", "SKIPPED", "COMPENSATED"]);
const BAR = { SUCCEEDED: "#2e9e5b", FAILED: "#d64541", TIMED_OUT: "#d64541", RUNNING: "#2f6fde", RETRY_WAIT: "#e89a2c", CANCELLED: "#8a91a0" };

// Decisions taken by a model carry {model, version, source} somewhere in the step's output.
function provenance(value, found = [], depth = 0) {
  if (!value || typeof value !== "object" || depth > 5 || found.length > 20) return found;
  if (!Array.isArray(value) && "model" in value && ("source" in value || "version" in value)) {
    found.push({ model: value.model, version: value.version, source: value.source });
  }
  for (const v of Object.values(value)) provenance(v, found, depth + 1);
  return found;
}

function fanOut(step) {
  if (!step.map_items) return null;
  const total = Object.values(step.map_items).reduce((a, b) => a + b, 0);
  const done = Object.entries(step.map_items).filter(([s]) => DONE.has(s)).reduce((a, [, n]) => a + n, 0);
  return { done, total };
}

function gantt(run, steps) {
  const timed = steps.filter((s) => s.started_at);
  if (!timed.length) return '<p class="muted">No step has started yet.</p>';
  const t0 = Math.min(...timed.map((s) => new Date(s.started_at).getTime()));
  const end = (s) => (s.finished_at ? new Date(s.finished_at).getTime() : Date.now());
  const t1 = Math.max(...timed.map(end), t0 + 1);
  const W = 760, L = 150, row = 22;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - 60);
  const rows = timed.map((s, i) => {
    const a = x(new Date(s.started_at).getTime());
    const b = Math.max(x(end(s)), a + 2);
    const y = 18 + i * row;
    return `<text x="0" y="${y + 12}">${esc(s.step_id.slice(0, 20))}</text>
      <rect x="${a}" y="${y + 2}" width="${b - a}" height="14" rx="3" fill="${BAR[s.status] || "#aab1bf"}"><title>${esc(s.step_id)}: ${duration(s.duration_ms)}</title></rect>
      <text x="${b + 4}" y="${y + 13}" fill="#6b7385">${duration(s.duration_ms ?? end(s) - new Date(s.started_at).getTime())}</text>`;
  });
  const h = 24 + timed.length * row;
  return `<svg class="gantt" viewBox="0 0 ${W} ${h}" width="100%" preserveAspectRatio="xMinYMin meet">
    <line class="axis" x1="${L}" y1="12" x2="${L}" y2="${h}"/>
    <text x="${L}" y="10" fill="#6b7385">0 s</text><text x="${W - 60}" y="10" fill="#6b7385" text-anchor="end">${duration(t1 - t0)}</text>
    ${rows.join("")}</svg>`;
}

function attempts(step) {
  if (!step.attempt_log.length) return '<p class="muted">No attempt yet.</p>';
  return step.attempt_log.map((a) => `
    <div class="attempt ${esc(a.outcome)}"><b>attempt ${esc(a.attempt)}</b> · ${esc(a.outcome)}
      · ${duration(a.duration_ms)} <span class="muted">${esc(a.worker || "")}</span>
      ${a.error ? `<div class="error-text">${esc(a.error.code || a.error.error || "")} ${esc(a.error.message || "")}</div>${json(a.error)}` : ""}
      ${a.decision ? `<div>decision: ${json(a.decision)}</div>` : ""}</div>`).join("");
}

function stepDetail(step) {
  if (!step) return '<p class="muted">Click a step in the graph to see its attempts and output.</p>';
  const models = provenance(step.output);
  const fan = fanOut(step);
  return `<h2 style="margin-top:0">${esc(step.step_id)} ${badge(step.status)}</h2>
    <dl class="kv">
      <dt>agent</dt><dd>${esc(step.agent)} · <code>${esc(step.action)}</code></dd>
      <dt>attempts</dt><dd>${step.attempts} of ${step.max_attempts}</dd>
      <dt>started</dt><dd>${when(step.started_at)}</dd>
      <dt>duration</dt><dd>${duration(step.duration_ms)}</dd>
      ${step.status_reason ? `<dt>why</dt><dd>${esc(step.status_reason)}</dd>` : ""}
      ${fan ? `<dt>fan-out</dt><dd>${fan.done} / ${fan.total} done ${Object.entries(step.map_items).map(([s, n]) => `<span class="tag">${esc(s)} ${n}</span>`).join("")}</dd>` : ""}
      ${models.length ? `<dt>model</dt><dd>${models.map((m) => `<span class="tag">${esc(m.model)} v${esc(m.version ?? "—")} (${esc(m.source)})</span>`).join("")}</dd>` : ""}
    </dl>
    ${step.error ? `<h2>Error</h2>${json(step.error)}` : ""}
    <h2>Attempts</h2>${attempts(step)}
    <h2>Output</h2>${step.output === null || step.output === undefined ? '<p class="muted">none</p>' : json(step.output)}`;
}

export async function runPage(main, runId) {
  let run = await get(`/workflows/${runId}`);
  let selected = null;
  const failed = run.steps.find((s) => ["FAILED", "TIMED_OUT"].includes(s.status));
  if (failed) selected = failed.step_id;
  main.innerHTML = `
    <h1><a href="#/workflows/${esc(run.workflow)}">${esc(run.workflow)}</a>
      <span class="muted">v${run.version} · <code>${esc(run.run_id)}</code></span>
      <span id="run-status"></span><button id="cancel" class="danger" hidden>Cancel</button>
      <button id="retry" hidden title="a new run that reuses the steps that succeeded">Retry failed steps</button></h1>
    <div class="panel" id="summary"></div>
    <h2>Graph</h2><div class="dag" id="dag"></div>
    <div class="grid2" style="margin-top:16px">
      <div class="panel" id="step"></div>
      <div><div class="panel"><h2 style="margin-top:0">Timeline</h2><div id="gantt"></div></div>
        <div class="panel" style="margin-top:16px"><h2 style="margin-top:0">Events <span class="muted" id="feed-state"></span></h2>
        <div class="events" id="events"></div></div></div>
    </div>
    <div id="compensation"></div>
    <div class="panel" style="margin-top:16px"><h2 style="margin-top:0">Logs
      <button id="load-logs" class="secondary">Show the run's log lines</button></h2>
      <pre class="events" id="logs" hidden></pre></div>`;

  function draw() {
    const actions = run.steps.filter((s) => s.role === "action");
    main.querySelector("#run-status").innerHTML = badge(run.status);
    main.querySelector("#run-status").dataset.status = run.status;
    main.querySelector("#cancel").hidden = TERMINAL.has(run.status) || run.cancel_requested;
    main.querySelector("#retry").hidden = !["FAILED", "CANCELLED"].includes(run.status);
    main.querySelector("#summary").innerHTML = `<dl class="kv">
      ${run.status_reason ? `<dt>why</dt><dd>${esc(run.status_reason)}</dd>` : ""}
      ${run.retry_of ? `<dt>retry of</dt><dd><a href="#/runs/${esc(run.retry_of)}"><code>${esc(run.retry_of)}</code></a></dd>` : ""}
      ${run.error ? `<dt>error</dt><dd class="error-text">${esc(run.failed_step || "")}: ${esc(run.error)}</dd>` : ""}
      <dt>created</dt><dd>${when(run.created_at)}</dd><dt>started</dt><dd>${when(run.started_at)}</dd>
      <dt>finished</dt><dd>${when(run.finished_at)}</dd><dt>duration</dt><dd>${duration(run.duration_ms)}</dd>
      <dt>steps</dt><dd>${actions.filter((s) => s.status === "SUCCEEDED").length} / ${actions.length} succeeded</dd>
      <dt>inputs</dt><dd><code>${esc(JSON.stringify(run.inputs))}</code></dd>
      <dt>trace</dt><dd><code>${esc(run.trace_id)}</code></dd></dl>`;
    const nodes = actions.map((s) => {
      const fan = fanOut(s);
      const sub = fan ? `${fan.done}/${fan.total} items · ${s.status}` :
        `${s.status}${s.attempts > 1 ? ` · try ${s.attempts}` : ""}${s.duration_ms != null ? ` · ${duration(s.duration_ms)}` : ""}`;
      return { id: s.step_id, label: s.step_id, sub, status: s.status, progress: fan };
    });
    const edges = actions.flatMap((s) => s.depends_on.map((d) => [d, s.step_id]));
    drawDag(main.querySelector("#dag"), nodes, edges, {
      selected, onSelect: (id) => { selected = id; draw(); },
    });
    main.querySelector("#step").innerHTML = stepDetail(actions.find((s) => s.step_id === selected));
    main.querySelector("#gantt").innerHTML = gantt(run, actions);
    const comp = run.steps.filter((s) => s.role !== "action");
    main.querySelector("#compensation").innerHTML = comp.length ? `<h2>Compensation</h2><table>
      <tr><th>Step</th><th>Status</th><th>Attempts</th><th>Error</th></tr>${comp.map((s) => `<tr><td>${esc(s.step_id)}</td>
      <td>${badge(s.status)}</td><td>${s.attempts}</td><td>${s.error ? json(s.error) : ""}</td></tr>`).join("")}</table>` : "";
  }

  const refresh = debounce(async () => {
    try { run = await get(`/workflows/${runId}`); draw(); } catch { /* next event retries */ }
  }, 250);
  draw();

  main.querySelector("#cancel").addEventListener("click", async () => {
    try {
      await post(`/workflows/${runId}/cancel`);
      flash("Cancel requested");
      refresh();
    } catch (err) { flash(err.message, true); }
  });

  main.querySelector("#retry").addEventListener("click", async () => {
    try {
      const retried = await post(`/workflows/${runId}/retry`);
      flash("Retry started");
      location.hash = `#/runs/${retried.run_id}`;
    } catch (err) { flash(err.message, true); }
  });

  main.querySelector("#load-logs").addEventListener("click", async () => {
    const box = main.querySelector("#logs");
    box.hidden = false;
    try {
      const found = await get(`/workflows/${runId}/logs?limit=1000${selected ? `&step=${encodeURIComponent(selected)}` : ""}`);
      box.textContent = found.lines.map((l) => `${(l.ts || "").slice(11, 23)} ${l.service} ${l.level} ${l.step_id || "-"}${l.attempt ? `#${l.attempt}` : ""} ${l.message}${l.exc ? `\n${l.exc}` : ""}`).join("\n")
        || "no lines for this run";
    } catch (err) { box.textContent = err.message; }
  });

  const log = main.querySelector("#events");
  const state = main.querySelector("#feed-state");
  const feed = subscribe(`/workflows/${runId}/events`, (event) => {
    const line = document.createElement("div");
    const t = event.time ? new Date(event.time).toLocaleTimeString() : "";
    line.textContent = `#${event.sequence} ${t} ${event.type.replace("ingestion.", "")}${event.step_id ? ` ${event.step_id}` : ""}${event.attempt ? ` (attempt ${event.attempt})` : ""}`;
    log.prepend(line);
    refresh();
    // The feed ends with the run; EventSource would otherwise reconnect forever.
    if (RUN_ENDS.has(event.type)) {
      feed.close();
      state.textContent = "(run ended)";
    }
  });
  feed.onopen = () => { state.textContent = "● live"; };
  // Polling as well: a step's progress (fan-out items, durations) is not all in events.
  const timer = setInterval(() => { if (!TERMINAL.has(run.status)) refresh(); }, 2000);
  return () => { feed.close(); clearInterval(timer); };
}
