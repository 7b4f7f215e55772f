// The SQL editor: run a query (Ctrl+Enter), see the rows, download CSV.

import { api } from "/ui/js/api.js";
import { h, mount, rowsTable, toCsv, download, errorBox } from "/ui/js/dom.js";

export async function sqlPage(main, _m, query) {
  const tables = await api("/api/v1/tables?limit=500");
  const initial = query.get("q") || sessionStorage.getItem("gridata.sql") || (tables.items[0] ? `SELECT * FROM ${tables.items[0].name} LIMIT 100` : "SELECT 1");
  const editor = h("textarea", { id: "sql", rows: "8", spellcheck: "false", "aria-describedby": "sql-help" }, initial);
  const limit = h("input", { id: "sql-limit", type: "number", min: "1", max: "10000", value: "1000", class: "narrow" });
  const run = h("button", { type: "submit" }, "Run");
  const csv = h("button", { type: "button", class: "ghost", disabled: true }, "Download CSV");
  const out = h("div", { "aria-live": "polite" });
  let last = null;
  const form = h(
    "form",
    { class: "sql" },
    h("label", { for: "sql" }, "Query"),
    editor,
    h("p", { id: "sql-help", class: "muted small" }, "Ctrl+Enter runs. Time travel: ", h("code", {}, "FROM t VERSION AS OF <snapshot>"), " or ", h("code", {}, "TIMESTAMP AS OF '…'"), "."),
    h("div", { class: "actions" }, h("label", { for: "sql-limit" }, "Row limit"), limit, run, csv),
  );
  const exec = async () => {
    sessionStorage.setItem("gridata.sql", editor.value);
    mount(out, h("p", { class: "muted" }, "Running…"));
    const t0 = performance.now();
    try {
      const r = await api("/api/v1/sql", { method: "POST", body: { query: editor.value, limit: Number(limit.value) || 1000 } });
      last = r;
      csv.disabled = false;
      mount(
        out,
        h("p", { class: "muted" }, `${r.rows.length} rows${r.truncated ? " (truncated at the limit)" : ""} in ${Math.round(performance.now() - t0)} ms`),
        rowsTable("query results", r.columns, r.rows),
      );
    } catch (e) {
      last = null;
      csv.disabled = true;
      mount(out, errorBox(e));
    }
  };
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    exec();
  });
  editor.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      exec();
    }
  });
  csv.addEventListener("click", () => {
    if (last) download("gridata-query.csv", toCsv(last.columns, last.rows), "text/csv");
  });
  mount(main, h("h1", {}, "SQL"), form, out);
  editor.focus();
}
