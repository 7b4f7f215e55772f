// The shell: sign-in, theme, and the hash router. Each page is a
// function (main element, route params, query) that may return a
// cleanup function (to stop polling).

import { api, setToken, token } from "/ui/js/api.js";
import { h, mount, session, errorBox } from "/ui/js/dom.js";
import { pipelinesPage } from "/ui/js/pipelines.js";
import { pipelinePage } from "/ui/js/pipeline.js";
import { runPage, taskPage, rejectedPage } from "/ui/js/run.js";
import { tablesPage, tablePage, qualityPage } from "/ui/js/table.js";
import { lineagePage } from "/ui/js/lineage.js";
import { searchPage } from "/ui/js/search.js";
import { sqlPage } from "/ui/js/sql.js";

const routes = [
  [/^\/?$/, "pipelines", pipelinesPage],
  [/^\/pipelines\/([^/]+)$/, "pipelines", pipelinePage],
  [/^\/runs\/([^/]+)$/, "pipelines", runPage],
  [/^\/runs\/([^/]+)\/tasks\/([^/]+)$/, "pipelines", taskPage],
  [/^\/runs\/([^/]+)\/rejected$/, "pipelines", rejectedPage],
  [/^\/tables$/, "tables", tablesPage],
  [/^\/tables\/([^/]+)$/, "tables", tablePage],
  [/^\/quality$/, "quality", qualityPage],
  [/^\/lineage$/, "lineage", lineagePage],
  [/^\/search$/, "search", searchPage],
  [/^\/sql$/, "sql", sqlPage],
];

const main = document.getElementById("main");
let cleanup = null;

function theme(next) {
  const t = next || localStorage.getItem("gridata.theme") || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
  document.documentElement.dataset.theme = t;
  localStorage.setItem("gridata.theme", t);
  document.getElementById("theme").textContent = t === "dark" ? "Light theme" : "Dark theme";
}

function showSession() {
  const who = document.getElementById("who");
  who.textContent = session.open
    ? "open (loopback)"
    : session.role
      ? `signed in: ${session.role}${session.pii ? "" : " · PII masked"}`
      : "";
  document.getElementById("signout").hidden = session.open || !session.role;
}

async function whoami() {
  try {
    const w = await api("/api/v1/whoami");
    session.role = w.role;
    session.open = w.open;
    session.pii = w.pii;
  } catch (_) {
    session.role = null;
  }
  showSession();
}

function signIn(after) {
  const input = h("input", {
    id: "token",
    name: "token",
    type: "password",
    autocomplete: "off",
    required: true,
    placeholder: "gdt_…",
    "aria-describedby": "token-help",
  });
  const err = h("p", { class: "error", role: "alert", hidden: true });
  const form = h(
    "form",
    { class: "card signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in"),
    h("label", { for: "token" }, "API token"),
    input,
    h("p", { id: "token-help", class: "muted" }, "Use a token from ", h("code", {}, "gridata token create"), ". It stays in this tab only."),
    err,
    h("button", { type: "submit" }, "Sign in"),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const t = input.value.trim();
    try {
      const w = await api("/api/v1/whoami", { tok: t });
      setToken(t);
      session.role = w.role;
      session.open = w.open;
      session.pii = w.pii;
      showSession();
      after();
    } catch (e) {
      err.hidden = false;
      err.textContent = e.status === 401 ? "That token is unknown or revoked." : e.message;
    }
  });
  mount(main, form);
  input.focus();
}

async function route() {
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  if (!session.role) {
    signIn(route);
    return;
  }
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query] = raw.split("?");
  const params = new URLSearchParams(query || "");
  for (const [re, nav, page] of routes) {
    const m = path.match(re);
    if (!m) continue;
    for (const a of document.querySelectorAll("[data-nav]")) {
      if (a.dataset.nav === nav) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    mount(main, h("p", { class: "muted" }, "Loading…"));
    try {
      cleanup = (await page(main, m.slice(1).map(decodeURIComponent), params)) || null;
    } catch (e) {
      mount(main, errorBox(e));
    }
    return;
  }
  mount(main, h("h1", {}, "Not found"), h("p", {}, "No page at ", h("code", {}, path), "."));
}

window.addEventListener("gridata:unauthorized", () => {
  if (session.open) return;
  setToken(null);
  session.role = null;
  showSession();
  signIn(route);
});

document.getElementById("theme").addEventListener("click", () => {
  theme(document.documentElement.dataset.theme === "dark" ? "light" : "dark");
});
document.getElementById("signout").addEventListener("click", () => {
  setToken(null);
  session.role = null;
  showSession();
  signIn(route);
});
window.addEventListener("hashchange", () => {
  route();
  main.focus({ preventScroll: true });
});

theme();
try {
  const health = await api("/api/v1/health");
  if (health.open || token()) await whoami();
} catch (_) {
  // the sign-in page says what is wrong
}
route();
