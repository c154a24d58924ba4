// Schedules, agents and orchestrators: operational views over the public API.

import { ago, badge, esc, flash, get, hasEndpoint, json, patch, post, when } from "./api.js";

export async function schedulesPage(main) {
  const items = (await get("/schedules")).items;
  const canTrigger = await hasEndpoint("POST", "/schedules/{ref}/trigger");
  main.innerHTML = `<h1>Schedules</h1><table><thead><tr><th>Name</th><th>Workflow</th><th>Trigger</th>
    <th>Next fires (schedule's zone)</th><th>Last runs</th><th>Enabled</th><th></th></tr></thead><tbody>${items.map((s) => `
    <tr><td>${esc(s.name)}</td><td><a href="#/workflows/${esc(s.workflow)}">${esc(s.workflow)}</a></td>
    <td>${esc(s.trigger)} <code>${esc(s.cron || (s.interval_s ? `${s.interval_s}s` : ""))}</code> <span class="muted">${esc(s.timezone)}</span></td>
    <td>${s.next_fire_times.slice(0, 3).map((t) => `<div>${when(t, s.timezone)}</div>`).join("") || "—"}</td>
    <td>${s.last_runs.slice(0, 3).map((f) => `<div>${f.run_id ? `<a href="#/runs/${f.run_id}">${badge(f.run_status || f.outcome)}</a>` : badge(f.outcome)} ${ago(f.fired_at)}</div>`).join("") || "—"}</td>
    <td><input type="checkbox" data-toggle="${s.id}" ${s.enabled ? "checked" : ""}> ${esc(s.status_reason || "")}</td>
    <td>${canTrigger ? `<button class="secondary" data-trigger="${s.id}">Trigger now</button>` : ""}</td></tr>`).join("")}
    </tbody></table>`;
  main.querySelectorAll("[data-toggle]").forEach((box) => box.addEventListener("change", async () => {
    try { await patch(`/schedules/${box.dataset.toggle}`, { enabled: box.checked }); flash("Schedule updated"); } catch (err) { box.checked = !box.checked; flash(err.message, true); }
  }));
  main.querySelectorAll("[data-trigger]").forEach((b) => b.addEventListener("click", async () => {
    try { await post(`/schedules/${b.dataset.trigger}/trigger`); flash("Triggered"); } catch (err) { flash(err.message, true); }
  }));
}

export async function agentsPage(main) {
  const [health, history] = await Promise.all([get("/agents/health"), get("/agents/health/history?limit=50")]);
  main.innerHTML = `<h1>Agents ${badge(health.status)}</h1><table><thead><tr><th>Agent</th><th>Status</th>
    <th>Latency</th><th>Checked</th><th>Since</th><th>Models</th><th>Checks</th></tr></thead><tbody>${health.agents.map((a) => {
      const checks = (a.detail && a.detail.checks) || {};
      const models = Object.entries(checks).filter(([k]) => k.startsWith("model:"));
      return `<tr><td>${esc(a.agent)}<div class="muted"><code>${esc(a.url)}</code></div></td><td>${badge(a.status)}</td>
        <td>${a.latency_ms ?? "—"} ms</td><td>${ago(a.checked_at)}</td><td>${ago(a.changed_at)}</td>
        <td>${models.map(([k, v]) => `<div><span class="tag">${esc(k.slice(6))}</span> <code>${esc(JSON.stringify(v))}</code></div>`).join("") || "—"}</td>
        <td>${Object.entries(checks).filter(([k]) => !k.startsWith("model:")).map(([k, v]) => `<span class="tag">${esc(k)}: ${esc(typeof v === "string" ? v : JSON.stringify(v))}</span>`).join("")}</td></tr>`;
    }).join("")}</tbody></table>
    <h2>Health history <span class="muted">(status changes, newest first)</span></h2>
    <table id="health-history"><thead><tr><th>When</th><th>Agent</th><th>Change</th><th>Latency</th></tr></thead><tbody>
    ${history.items.map((c) => `<tr><td>${when(c.time)} <span class="muted">${ago(c.time)}</span></td><td>${esc(c.agent)}</td>
      <td>${c.previous ? `${badge(c.previous)} → ` : ""}${badge(c.status)}</td><td>${c.latency_ms != null ? `${Math.round(c.latency_ms)} ms` : "—"}</td></tr>`).join("") || '<tr><td colspan="4" class="muted">no changes recorded</td></tr>'}
    </tbody></table>`;
}

export async function orchestratorsPage(main) {
  const items = (await get("/orchestrators")).items;
  main.innerHTML = `<h1>Orchestrators</h1>${items.map((o) => `<div class="panel" style="margin-bottom:12px">
    <h2 style="margin-top:0">${esc(o.name)} <span class="muted">${esc(o.workflow_kinds.join(", "))}</span></h2>
    <p class="muted">${esc(o.description)}</p><div class="grid2"><div><b>Live</b>${json(o.live)}</div><div><b>Config</b>${json(o.config)}</div></div></div>`).join("")}`;
}
