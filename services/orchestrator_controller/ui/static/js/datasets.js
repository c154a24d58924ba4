// Datasets: what merges loaded, where, and the versions those loads made.

import { ago, esc, get, when } from "./api.js";

const how = (load) => (load.write_disposition === "merge" && load.strategy
  ? `merge/${load.strategy}` : load.write_disposition);

export async function datasetsPage(main) {
  const items = await get("/datasets?limit=200");
  main.innerHTML = `<h1>Datasets</h1><table id="datasets"><thead><tr><th>Dataset</th><th>Destination</th>
    <th>Rows</th><th>Version</th><th>Loads</th><th>Last load</th></tr></thead><tbody>${items.map((d) => `
    <tr><td><a href="#/datasets/${encodeURIComponent(d.dataset)}">${esc(d.dataset)}</a></td>
    <td><span class="tag">${esc(d.kind)}</span> <code>${esc(d.destination)}</code></td>
    <td>${d.rows ?? "—"}</td><td>${d.version ?? "—"}</td><td>${d.loads}</td>
    <td>${d.last_run_id ? `<a href="#/runs/${d.last_run_id}">${ago(d.last_loaded_at)}</a>` : ago(d.last_loaded_at)}</td></tr>`).join("")
    || '<tr><td colspan="6" class="muted">no load recorded yet</td></tr>'}</tbody></table>`;
}

export async function datasetPage(main, name) {
  const page = await get(`/datasets/${encodeURIComponent(name)}/loads?limit=100`);
  const last = page.loads[0];
  main.innerHTML = `<h1>${esc(name)} <span class="muted">${esc(last.kind)}</span></h1>
    <p><code>${esc(last.destination)}</code> · ${last.rows ?? "?"} rows · version ${last.version ?? "—"}</p>
    <h2>Loads <span class="muted">(newest first)</span></h2>
    <table id="loads"><thead><tr><th>When</th><th>Run</th><th>How</th><th>Inserted</th><th>Updated</th>
    <th>Deleted</th><th>Unchanged</th><th>Written</th><th>Rows after</th><th>Version</th></tr></thead><tbody>
    ${page.loads.map((l) => `<tr><td>${when(l.loaded_at)} <span class="muted">${ago(l.loaded_at)}</span></td>
      <td>${l.run_id ? `<a href="#/runs/${l.run_id}"><code>${esc(l.run_id.slice(0, 8))}</code></a>` : "—"}</td>
      <td>${esc(how(l))}</td><td>${l.inserted}</td><td>${l.updated}</td><td>${l.deleted}</td><td>${l.unchanged}</td>
      <td>${l.written}</td><td>${l.rows ?? "—"}</td><td>${l.version ?? "—"}</td></tr>`).join("")}
    </tbody></table>
    <h2>Schema</h2><table><thead><tr><th>Column</th><th>Type</th></tr></thead><tbody>
    ${Object.entries(last.schema).map(([c, t]) => `<tr><td>${esc(c)}</td><td><code>${esc(t)}</code></td></tr>`).join("")}
    </tbody></table>`;
}
