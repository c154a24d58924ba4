// The public API, and small helpers every page uses. The UI reads nothing the API does not give.

const KEY = "ingestion.apiKey";

export function apiKey() { return localStorage.getItem(KEY) || ""; }
export function setApiKey(value) {
  if (value) localStorage.setItem(KEY, value); else localStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, body) {
    super(describe(status, body));
    this.status = status;
    this.body = body;
  }
}

function describe(status, body) {
  if (status === 401 || status === 403) return `${status}: the API key is missing or not accepted`;
  if (body && typeof body === "object") {
    if (Array.isArray(body.detail)) {
      return `${status}: ` + body.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
    }
    if (body.message) return `${status} ${body.error || ""}: ${body.message}`;
  }
  return `${status}: ${typeof body === "string" ? body : JSON.stringify(body)}`;
}

export async function request(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  // Reads need the read scope too: every request carries the key.
  if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let parsed = text;
  try { parsed = text ? JSON.parse(text) : null; } catch { /* keep the text */ }
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

export const get = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body ?? {});
export const patch = (path, body) => request("PATCH", path, body);

// The controller's schema tells which optional endpoints exist (trigger now, retry, ...).
let schemaPaths = null;
export async function hasEndpoint(method, path) {
  if (!schemaPaths) {
    try { schemaPaths = (await get("/openapi.json")).paths || {}; } catch { schemaPaths = {}; }
  }
  return Boolean(schemaPaths[path] && schemaPaths[path][method.toLowerCase()]);
}

export const TERMINAL = new Set(["SUCCEEDED", "FAILED", "CANCELLED", "COMPENSATED", "COMPENSATION_FAILED"]);
export const RUN_STATUSES = ["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED",
  "COMPENSATING", "COMPENSATED", "COMPENSATION_FAILED"];

export function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => (
    { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

export function badge(status) {
  return `<span class="badge s-${esc(status)}">${esc(status)}</span>`;
}

export function when(iso, timeZone) {
  if (!iso) return "—";
  const d = new Date(iso);
  const options = { dateStyle: "short", timeStyle: "medium" };
  if (timeZone) options.timeZone = timeZone;
  try { return d.toLocaleString(undefined, options); } catch { return d.toLocaleString(); }
}

export function ago(iso) {
  if (!iso) return "—";
  const s = (Date.now() - new Date(iso).getTime()) / 1000;
  if (s < 60) return `${Math.max(0, Math.round(s))}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

export function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)}m ${Math.round((ms % 60000) / 1000)}s`;
}

export function json(value) { return `<pre>${esc(JSON.stringify(value, null, 2))}</pre>`; }

export function flash(message, isError = false) {
  const el = document.getElementById("flash");
  el.textContent = message;
  el.className = isError ? "error" : "";
  el.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => { el.hidden = true; }, isError ? 8000 : 3500);
}

// A debounced callback: bursts of events cause one refresh.
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

// Subscribe to an SSE feed; returns an object with close(). Read through fetch rather than
// EventSource, which cannot send the Authorization header the feeds need; resumes after the
// last sequence seen (`after`) when the connection drops.
export function subscribe(url, onEvent) {
  const controller = new AbortController();
  let last = 0;
  let closed = false;
  const run = async () => {
    while (!closed) {
      try {
        const sep = url.includes("?") ? "&" : "?";
        const response = await fetch(last ? `${url}${sep}after=${last}` : url, {
          headers: { Accept: "text/event-stream", Authorization: `Bearer ${apiKey()}` },
          signal: controller.signal,
        });
        if (!response.ok || !response.body) throw new Error(`feed ${response.status}`);
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const data = block.split("\n").filter((l) => l.startsWith("data:"))
              .map((l) => l.slice(5).trimStart()).join("\n");
            const id = block.split("\n").find((l) => l.startsWith("id:"));
            if (id) last = Number(id.slice(3).trim()) || last;
            if (!data) continue;
            try { onEvent(JSON.parse(data)); } catch { /* a malformed event is skipped */ }
          }
        }
        return; // the server ended the feed (the run finished)
      } catch (error) {
        if (closed) return;
        await new Promise((resolve) => setTimeout(resolve, 3000));
      }
    }
  };
  run();
  return { close() { closed = true; controller.abort(); } };
}
