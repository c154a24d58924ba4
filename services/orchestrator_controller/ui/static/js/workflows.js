// Workflows: every registered definition, its versions, spec, DAG, recent runs and a run form.
// The list reads summaries (no specs); one workflow's page asks for its specs.

import { ago, badge, duration, esc, flash, get, json, post } from "./api.js";
import { drawDag, specGraph } from "./dag.js";

export async function workflowsPage(main) {
  const defs = (await get("/workflows/definitions")).items;
  const latest = new Map();
  for (const d of defs) {
    const cur = latest.get(d.name);
    if (!cur || d.version > cur.version) latest.set(d.name, { ...d, versions: (cur?.versions || 0) + 1 });
    else cur.versions += 1;
  }
  const rows = [...latest.values()].sort((a, b) => a.name.localeCompare(b.name));
  main.innerHTML = `<h1>Workflows</h1><table><thead><tr><th>Name</th><th>Kind</th><th>Latest</th>
    <th>Steps</th><th>Source</th><th>Description</th></tr></thead><tbody>${rows.map((d) => `
    <tr class="clickable" data-name="${esc(d.name)}"><td><a href="#/workflows/${esc(d.name)}">${esc(d.name)}</a></td>
    <td>${esc(d.kind)}</td><td>v${d.version} <span class="muted">(${d.versions} version${d.versions > 1 ? "s" : ""})</span></td>
    <td>${d.steps}</td><td>${esc(d.source)}</td><td class="muted">${esc(d.description)}</td></tr>`).join("")}
    </tbody></table>`;
  main.querySelectorAll("tr[data-name]").forEach((tr) => {
    tr.addEventListener("click", () => { location.hash = `#/workflows/${tr.dataset.name}`; });
  });
}

function inputField(name, spec) {
  const id = `in-${name}`;
  const def = spec.default;
  let field;
  if (spec.type === "boolean") field = `<input type="checkbox" id="${id}" name="${esc(name)}" ${def ? "checked" : ""}>`;
  else if (spec.type === "integer" || spec.type === "number") {
    field = `<input type="number" id="${id}" name="${esc(name)}" step="${spec.type === "integer" ? 1 : "any"}" value="${esc(def ?? "")}">`;
  } else if (spec.type === "string") field = `<input type="text" id="${id}" name="${esc(name)}" value="${esc(def ?? "")}" size="50">`;
  else field = `<textarea id="${id}" name="${esc(name)}" rows="3" cols="50" placeholder="JSON">${def === null || def === undefined ? "" : esc(JSON.stringify(def))}</textarea>`;
  return `<label for="${id}">${esc(name)}${spec.required ? " *" : ""}</label>${field}
    <small>${esc(spec.type)}${spec.description ? ` — ${esc(spec.description)}` : ""}</small>`;
}

function readInputs(form, inputs) {
  const values = {};
  for (const [name, spec] of Object.entries(inputs)) {
    const el = form.elements[name];
    if (spec.type === "boolean") { values[name] = el.checked; continue; }
    const raw = el.value.trim();
    if (raw === "") {
      if (spec.required) throw new Error(`${name}: required`);
      continue;
    }
    if (spec.type === "integer" || spec.type === "number") values[name] = Number(raw);
    else if (spec.type === "string") values[name] = raw;
    else {
      try { values[name] = JSON.parse(raw); } catch { throw new Error(`${name}: not valid JSON`); }
    }
  }
  return values;
}

export async function workflowPage(main, name) {
  const versions = (await get(`/workflows/definitions?name=${encodeURIComponent(name)}&include_spec=true`)).items
    .sort((a, b) => b.version - a.version);
  if (!versions.length) { main.innerHTML = `<h1>No workflow ${esc(name)}</h1>`; return; }
  main.innerHTML = `<h1>${esc(name)} <select id="version">${versions.map((v) => `<option value="${v.version}">v${v.version}</option>`).join("")}</select>
    <span class="muted" id="kind"></span></h1>
    <p class="muted" id="desc"></p>
    <div class="dag" id="dag"></div>
    <div class="grid2" style="margin-top:16px">
      <div class="panel"><h2 style="margin-top:0">Run it</h2><form class="inputs" id="run-form"></form>
        <p><button id="submit" type="button">Submit run</button></p></div>
      <div class="panel"><h2 style="margin-top:0">Recent runs</h2><div id="recent"></div></div>
    </div>
    <h2>Spec</h2><div id="spec"></div>`;
  const select = main.querySelector("#version");
  const form = main.querySelector("#run-form");
  let def = versions[0];

  function show() {
    def = versions.find((v) => String(v.version) === select.value) || versions[0];
    main.querySelector("#kind").textContent = `${def.kind} · ${def.source}`;
    main.querySelector("#desc").textContent = def.spec.description || "";
    const { nodes, edges } = specGraph(def.spec);
    drawDag(main.querySelector("#dag"), nodes, edges);
    const inputs = def.spec.inputs || {};
    form.innerHTML = Object.entries(inputs).map(([n, s]) => inputField(n, s)).join("") ||
      '<p class="muted">This workflow takes no inputs.</p>';
    main.querySelector("#spec").innerHTML = json(def.spec);
  }
  select.addEventListener("change", show);
  show();

  main.querySelector("#submit").addEventListener("click", async () => {
    try {
      const inputs = readInputs(form, def.spec.inputs || {});
      const accepted = await post("/coordinate", { workflow: name, version: def.version, inputs });
      flash(`Run ${accepted.run_id.slice(0, 8)} accepted`);
      location.hash = `#/runs/${accepted.run_id}`;
    } catch (err) { flash(err.message, true); }
  });

  const runs = (await get(`/workflows/status?workflow=${encodeURIComponent(name)}&limit=15`)).items;
  main.querySelector("#recent").innerHTML = runs.length ? `<table>${runs.map((r) => `<tr>
    <td><a href="#/runs/${r.run_id}"><code>${r.run_id.slice(0, 8)}</code></a></td><td>v${r.version}</td>
    <td>${badge(r.status)}</td><td>${ago(r.created_at)}</td><td>${duration(r.duration_ms)}</td></tr>`).join("")}</table>`
    : '<p class="muted">No runs yet.</p>';
}
