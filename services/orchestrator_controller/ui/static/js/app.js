// The router: hash routes to pages; each page returns a function that stops its live updates.

import { apiKey, flash, setApiKey } from "./api.js";
import { datasetPage, datasetsPage } from "./datasets.js";
import { agentsPage, orchestratorsPage, schedulesPage } from "./ops.js";
import { runPage } from "./run.js";
import { runsPage } from "./runs.js";
import { workflowPage, workflowsPage } from "./workflows.js";

const routes = [
  [/^#\/runs\/([^/]+)$/, runPage, "runs"],
  [/^#\/runs\/?(?:\?(.*))?$/, runsPage, "runs"],
  [/^#\/workflows\/([^/]+)$/, workflowPage, "workflows"],
  [/^#\/workflows\/?$/, workflowsPage, "workflows"],
  [/^#\/datasets\/([^/]+)$/, datasetPage, "datasets"],
  [/^#\/datasets\/?$/, datasetsPage, "datasets"],
  [/^#\/schedules\/?$/, schedulesPage, "schedules"],
  [/^#\/agents\/?$/, agentsPage, "agents"],
  [/^#\/orchestrators\/?$/, orchestratorsPage, "orchestrators"],
];

let stop = null;

async function render() {
  if (stop) { try { stop(); } catch { /* a page that failed to start */ } stop = null; }
  const hash = location.hash || "#/runs";
  const main = document.getElementById("page");
  for (const [pattern, page, nav] of routes) {
    const match = hash.match(pattern);
    if (!match) continue;
    document.querySelectorAll("header nav a").forEach((a) => {
      a.classList.toggle("active", a.dataset.nav === nav);
    });
    main.innerHTML = '<p class="muted">Loading…</p>';
    try {
      stop = (await page(main, ...match.slice(1).map((m) => (m ? decodeURIComponent(m) : m)))) || null;
    } catch (err) {
      main.innerHTML = `<h1>Could not load this page</h1><p class="error-text"></p>`;
      main.querySelector("p").textContent = err.message;
    }
    return;
  }
  location.hash = "#/runs";
}

function keyForm() {
  const input = document.getElementById("api-key");
  const state = document.getElementById("key-state");
  const show = () => { state.textContent = apiKey() ? "key set" : "read-only"; };
  input.value = apiKey();
  show();
  input.addEventListener("change", () => { setApiKey(input.value.trim()); show(); flash(apiKey() ? "API key saved in this browser" : "API key removed"); });
  document.getElementById("key-form").addEventListener("submit", (e) => { e.preventDefault(); input.dispatchEvent(new Event("change")); });
}

keyForm();
window.addEventListener("hashchange", render);
render();
