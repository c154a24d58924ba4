// The runs list: filters by status and workflow, refreshed live from the platform-wide feed.

import { RUN_STATUSES, ago, badge, debounce, duration, esc, get, subscribe, when } from "./api.js";

export async function runsPage(main, query) {
  const params = new URLSearchParams(query || "");
  // archived workflows too: their runs are still listed
  const defs = await get("/workflows/definitions?include_archived=true");
  const names = [...new Set(defs.items.map((d) => d.name))].sort();
  main.innerHTML = `
    <h1>Runs <span class="muted" id="runs-total"></span></h1>
    <div class="toolbar">
      <label>Status <select id="f-status"><option value="">any</option>
        ${RUN_STATUSES.map((s) => `<option>${s}</option>`).join("")}</select></label>
      <label>Workflow <select id="f-workflow"><option value="">any</option>
        ${names.map((n) => `<option>${esc(n)}</option>`).join("")}</select></label>
      <label>Started <select id="f-since"><option value="">any time</option>
        <option value="3600">last hour</option><option value="86400">last day</option>
        <option value="604800">last week</option></select></label>
      <span class="muted" id="live">● live</span>
    </div>
    <table><thead><tr><th>Run</th><th>Workflow</th><th>Status</th><th>Why</th><th>Created</th><th>Duration</th></tr></thead>
    <tbody id="runs-body"></tbody></table>`;
  const status = main.querySelector("#f-status");
  const workflow = main.querySelector("#f-workflow");
  const since = main.querySelector("#f-since");
  status.value = params.get("status") || "";
  workflow.value = params.get("workflow") || "";
  since.value = params.get("since") || "";

  async function load() {
    const q = new URLSearchParams({ limit: "200" });
    if (status.value) q.set("status", status.value);
    if (workflow.value) q.set("workflow", workflow.value);
    const page = await get(`/workflows/status?${q}`);
    const cutoff = since.value ? Date.now() - Number(since.value) * 1000 : 0;
    const items = page.items.filter((r) => new Date(r.created_at).getTime() >= cutoff);
    main.querySelector("#runs-total").textContent = `${items.length} shown of ${page.total}`;
    main.querySelector("#runs-body").innerHTML = items.map((r) => `
      <tr class="clickable" data-run="${r.run_id}">
        <td><a href="#/runs/${r.run_id}"><code>${r.run_id.slice(0, 8)}</code></a></td>
        <td>${esc(r.workflow)} <span class="muted">v${r.version}</span></td>
        <td>${badge(r.status)}</td>
        <td class="muted">${esc(r.failed_step ? `${r.failed_step}: ${r.error || ""}` : r.status_reason || "")}</td>
        <td title="${esc(when(r.created_at))}">${ago(r.created_at)}</td>
        <td>${duration(r.duration_ms)}</td></tr>`).join("") ||
      '<tr><td colspan="6" class="muted">No runs match.</td></tr>';
    main.querySelectorAll("tr[data-run]").forEach((tr) => {
      tr.addEventListener("click", () => { location.hash = `#/runs/${tr.dataset.run}`; });
    });
  }
  const reload = debounce(() => load().catch(() => {}), 400);
  for (const el of [status, workflow, since]) {
    el.addEventListener("change", () => {
      const q = new URLSearchParams();
      if (status.value) q.set("status", status.value);
      if (workflow.value) q.set("workflow", workflow.value);
      if (since.value) q.set("since", since.value);
      history.replaceState(null, "", `#/runs${q.toString() ? `?${q}` : ""}`);
      load();
    });
  }
  await load();
  // Run-level events change the list; step events do not.
  const feed = subscribe("/events?type=ingestion.workflow", reload);
  const live = main.querySelector("#live");
  feed.onopen = () => { live.textContent = "● live"; live.style.color = "var(--ok)"; };
  feed.onerror = () => { live.textContent = "○ reconnecting"; live.style.color = "var(--warn)"; };
  const timer = setInterval(reload, 10000);
  return () => { feed.close(); clearInterval(timer); };
}
