// Search across datasets: full text with facets for namespace, tag,
// owner and PII.

import { api, enc, qs } from "/ui/js/api.js";
import { h, mount } from "/ui/js/dom.js";

const FACETS = ["namespace", "tag", "owner", "pii"];

function link(p) {
  return `#/search${qs(p)}`;
}

function target(name) {
  // Tables open their page; file patterns and task outputs open lineage.
  return /^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$/.test(name) ? `#/tables/${enc(name)}` : `#/lineage?dataset=${enc(name)}`;
}

export async function searchPage(main, _m, query) {
  const p = { q: query.get("q") || "" };
  for (const f of FACETS) p[f] = query.get(f) || "";
  const input = h("input", { id: "q", type: "search", name: "q", value: p.q, placeholder: "orders, email, owner…" });
  const form = h("form", { class: "inline-form", role: "search" }, h("label", { for: "q" }, "Search datasets"), input, h("button", { type: "submit" }, "Search"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    location.hash = link({ ...p, q: input.value.trim() });
  });
  const r = await api(`/api/v1/search${qs({ ...p, limit: 50 })}`);
  const facets = h(
    "aside",
    { class: "facets", "aria-label": "filters" },
    FACETS.map((f) => {
      const values = r.facets[f] || {};
      const entries = Object.entries(values);
      if (!entries.length && !p[f]) return null;
      return h(
        "section",
        {},
        h("h2", {}, f),
        h(
          "ul",
          {},
          p[f] ? h("li", {}, h("a", { href: link({ ...p, [f]: "" }) }, `✕ ${p[f]}`)) : null,
          entries.map(([v, n]) => h("li", {}, h("a", { href: link({ ...p, [f]: v }), "aria-current": p[f] === v ? "true" : null }, `${v} (${n})`))),
        ),
      );
    }),
  );
  const hits = r.hits.length
    ? h(
        "ol",
        { class: "hits" },
        r.hits.map((hit) =>
          h(
            "li",
            {},
            h("a", { href: target(hit.name) }, hit.name),
            hit.description ? h("p", {}, hit.description) : null,
            hit.columns.length ? h("p", { class: "muted small" }, `columns: ${hit.columns.join(", ")}`) : null,
          ),
        ),
      )
    : h("p", { class: "muted" }, "No dataset matches.");
  mount(main, h("h1", {}, "Search"), form, h("p", { class: "muted" }, `${r.total} datasets`), h("div", { class: "with-facets" }, facets, hits));
  input.focus();
}
