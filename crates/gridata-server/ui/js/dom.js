// Small DOM helpers. User data only ever reaches the page as text nodes
// or attributes, never as HTML.

const SVG_NS = "http://www.w3.org/2000/svg";

// The signed-in session: { role, open }.
export const session = { role: null, open: false };

const RANK = { viewer: 0, operator: 1, admin: 2 };
export function can(role) {
  return session.role !== null && RANK[session.role] >= RANK[role];
}

function apply(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.setAttribute("class", v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// h("a", { href: "#/" }, "text", child…)
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

// Parse server-made SVG into a node of this document.
export function svgNode(text) {
  const doc = new DOMParser().parseFromString(text, "image/svg+xml");
  const root = doc.documentElement;
  if (root.nodeName !== "svg") throw new Error("the server sent no SVG");
  return document.importNode(root, true);
}

export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function fmtTime(ms) {
  if (ms === null || ms === undefined) return "—";
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function fmtDur(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 1000) return `${ms} ms`;
  const sec = ms / 1000;
  if (sec < 60) return `${sec.toFixed(1)} s`;
  const m = Math.floor(sec / 60);
  return `${m} min ${Math.round(sec - m * 60)} s`;
}

export function fmtNum(n) {
  return n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US");
}

export function badge(state) {
  return h("span", { class: `badge state-${state}` }, state.replace("_", " "));
}

export function status(message, kind = "info") {
  const el = document.getElementById("status");
  el.className = `status ${kind}`;
  el.textContent = message;
  if (message) {
    clearTimeout(status.timer);
    status.timer = setTimeout(() => {
      el.textContent = "";
      el.className = "status";
    }, 6000);
  }
}

export function errorBox(e) {
  return h("p", { class: "error", role: "alert" }, e && e.message ? e.message : String(e));
}

// A table: columns are [label, (row) => cell] pairs.
export function table(caption, columns, rows, empty = "Nothing yet.") {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h(
    "div",
    { class: "scroll" },
    h(
      "table",
      {},
      h("caption", { class: "sr-only" }, caption),
      h("thead", {}, h("tr", {}, columns.map(([label]) => h("th", { scope: "col" }, label)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, columns.map(([, f]) => h("td", {}, f(r)))))),
    ),
  );
}

// A modal confirmation; resolves true when confirmed.
export function confirmDialog(title, text, confirmLabel) {
  return new Promise((resolve) => {
    const ok = h("button", { type: "submit", class: "danger", value: "ok" }, confirmLabel);
    const cancel = h("button", { type: "submit", value: "cancel", class: "ghost" }, "Cancel");
    const dlg = h(
      "dialog",
      { "aria-labelledby": "dlg-title" },
      h(
        "form",
        { method: "dialog" },
        h("h2", { id: "dlg-title" }, title),
        h("p", {}, text),
        h("div", { class: "actions" }, cancel, ok),
      ),
    );
    dlg.addEventListener("close", () => {
      dlg.remove();
      resolve(dlg.returnValue === "ok");
    });
    document.body.append(dlg);
    dlg.showModal();
    cancel.focus();
  });
}

// Bars (one per value, oldest left), with an accessible summary.
export function barChart(label, points, unit) {
  const w = 640;
  const ht = 140;
  const max = Math.max(1, ...points.map((p) => p.value));
  const bw = Math.max(4, Math.min(28, (w - 40) / Math.max(1, points.length) - 4));
  const svg = s("svg", {
    viewBox: `0 0 ${w} ${ht + 20}`,
    class: "chart",
    role: "img",
    "aria-label": label,
  });
  svg.append(s("line", { x1: 30, y1: ht, x2: w, y2: ht, class: "axis" }));
  svg.append(s("text", { x: 0, y: 12, class: "tick" }, unit(max)));
  points.forEach((p, i) => {
    const bh = Math.max(1, (p.value / max) * (ht - 20));
    const x = 34 + i * (bw + 4);
    svg.append(
      s(
        "rect",
        { x, y: ht - bh, width: bw, height: bh, class: `bar state-${p.state || "none"}` },
        s("title", {}, `${p.label}: ${unit(p.value)}`),
      ),
    );
  });
  return svg;
}

// Pass/fail dots over time.
export function passFailChart(label, points) {
  const w = 640;
  const ht = 70;
  const times = points.map((p) => p.at);
  const lo = Math.min(...times);
  const hi = Math.max(...times);
  const span = Math.max(1, hi - lo);
  const svg = s("svg", { viewBox: `0 0 ${w} ${ht}`, class: "chart", role: "img", "aria-label": label });
  svg.append(s("text", { x: 0, y: 20, class: "tick" }, "pass"));
  svg.append(s("text", { x: 0, y: 55, class: "tick" }, "fail"));
  for (const p of points) {
    const x = 40 + ((p.at - lo) / span) * (w - 60);
    svg.append(
      s(
        "circle",
        { cx: x, cy: p.passed ? 16 : 51, r: 5, class: p.passed ? "pass" : "fail" },
        s("title", {}, `${p.label} — ${p.passed ? "passed" : "failed"} at ${fmtTime(p.at)}`),
      ),
    );
  }
  return svg;
}

// Rows of JSON objects as a CSV file.
export function toCsv(columns, rows) {
  const cell = (v) => {
    if (v === null || v === undefined) return "";
    const t = typeof v === "object" ? JSON.stringify(v) : String(v);
    return /[",\n\r]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
  };
  return [columns.map(cell).join(","), ...rows.map((r) => columns.map((c) => cell(r[c])).join(","))].join("\r\n") + "\r\n";
}

export function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// A generic results table for SQL rows.
export function rowsTable(caption, columns, rows) {
  return table(
    caption,
    columns.map((c) => [c, (r) => cellText(r[c])]),
    rows,
    "No rows.",
  );
}

function cellText(v) {
  if (v === null || v === undefined) return h("span", { class: "null" }, "null");
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}
