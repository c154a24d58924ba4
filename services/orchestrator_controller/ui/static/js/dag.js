// The DAG drawn as SVG: layered layout by dagre (vendored), nodes coloured by state.

import { esc } from "./api.js";

const COLOURS = {
  SUCCEEDED: ["#e3f5ea", "#2e9e5b"], FAILED: ["#fbe4e3", "#d64541"], TIMED_OUT: ["#fbe4e3", "#d64541"],
  RUNNING: ["#e4edfc", "#2f6fde"], READY: ["#eef3fd", "#7fa4ea"], RETRY_WAIT: ["#fdf1df", "#e89a2c"],
  PENDING: ["#f1f2f5", "#aab1bf"], SKIPPED: ["#f5f6f8", "#c9ced8"], CANCELLED: ["#eceef2", "#8a91a0"],
  COMPENSATED: ["#f1e9fa", "#8b5cc7"], COMPENSATION_FAILED: ["#fbe4e3", "#d64541"],
};
const NODE_W = 170;
const NODE_H = 50;

// nodes: [{id, label, sub, status, progress: {done, total} | null}], edges: [[from, to]]
export function drawDag(container, nodes, edges, { selected, onSelect } = {}) {
  const g = new dagre.graphlib.Graph();
  const wide = nodes.length > 12;
  g.setGraph({ rankdir: wide ? "TB" : "LR", nodesep: 22, ranksep: wide ? 40 : 55, marginx: 16, marginy: 16 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of nodes) g.setNode(n.id, { width: NODE_W, height: NODE_H });
  const known = new Set(nodes.map((n) => n.id));
  for (const [a, b] of edges) if (known.has(a) && known.has(b)) g.setEdge(a, b);
  dagre.layout(g);
  const { width, height } = g.graph();
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
    `<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#9aa3b5"/></marker></defs>`];
  for (const e of g.edges()) {
    const pts = g.edge(e).points;
    const d = pts.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ");
    parts.push(`<path class="edge" d="${d}" marker-end="url(#arrow)"/>`);
  }
  for (const n of nodes) {
    const { x, y } = g.node(n.id);
    const [fill, stroke] = COLOURS[n.status] || COLOURS.PENDING;
    const left = x - NODE_W / 2;
    const top = y - NODE_H / 2;
    const label = n.label.length > 22 ? `${n.label.slice(0, 21)}…` : n.label;
    parts.push(`<g class="node ${esc(n.status)}${n.id === selected ? " selected" : ""}" data-id="${esc(n.id)}" data-status="${esc(n.status)}">`,
      `<title>${esc(n.id)}: ${esc(n.status)}</title>`,
      `<rect class="box" x="${left}" y="${top}" width="${NODE_W}" height="${NODE_H}" fill="${fill}" stroke="${stroke}"/>`,
      `<rect x="${left}" y="${top}" width="6" height="${NODE_H}" fill="${stroke}" rx="3"/>`,
      `<text x="${left + 14}" y="${top + 20}" font-weight="600">${esc(label)}</text>`,
      `<text x="${left + 14}" y="${top + 37}" fill="#6b7385">${esc(n.sub || n.status)}</text>`);
    if (n.progress && n.progress.total) {
      const w = NODE_W - 28;
      const done = Math.round((w * n.progress.done) / n.progress.total);
      parts.push(`<rect x="${left + 14}" y="${top + 42}" width="${w}" height="4" fill="#e6e9ef" rx="2"/>`,
        `<rect x="${left + 14}" y="${top + 42}" width="${done}" height="4" fill="${stroke}" rx="2"/>`);
    }
    parts.push("</g>");
  }
  parts.push("</svg>");
  container.innerHTML = parts.join("");
  if (onSelect) {
    container.querySelectorAll("g.node").forEach((el) => {
      el.addEventListener("click", () => onSelect(el.dataset.id));
    });
  }
}

// A spec's steps as nodes and edges (for the workflows page).
export function specGraph(spec) {
  const nodes = (spec.steps || []).map((s) => ({
    id: s.id, label: s.id, sub: `${s.agent} · ${s.action}${s.map_over ? " · fan-out" : ""}`, status: "PENDING",
  }));
  const edges = [];
  for (const s of spec.steps || []) for (const d of s.depends_on || []) edges.push([d, s.id]);
  return { nodes, edges };
}
