// Tables: the list; a table's schema with PII tags, partitions, snapshot
// timeline, rows at any snapshot (time travel), the difference between
// two snapshots, rollback (admins) and check history; and the quality
// overview across tables.

import { api, enc, qs, int } from "/ui/js/api.js";
import { h, mount, fmtTime, fmtNum, table, can, status, confirmDialog, rowsTable, passFailChart, errorBox, badge } from "/ui/js/dom.js";

function sqlName(name) {
  return name
    .split(".")
    .map((p) => `"${p.replace(/"/g, '""')}"`)
    .join(".");
}

export async function tablesPage(main, _m, query) {
  const offset = Number(query.get("offset") || 0);
  const page = await api(`/api/v1/tables${qs({ limit: 100, offset })}`);
  mount(
    main,
    h("h1", {}, "Tables"),
    table(
      "tables",
      [
        ["Table", (t) => h("a", { href: `#/tables/${enc(t.name)}` }, t.name)],
        ["Rows", (t) => fmtNum(t.total_records)],
        ["Snapshots", (t) => t.snapshots],
        ["Updated", (t) => fmtTime(t.last_updated_ms)],
        ["Lineage", (t) => h("a", { href: `#/lineage?dataset=${enc(t.name)}` }, "upstream")],
      ],
      page.items,
      "No table yet: run a pipeline.",
    ),
    h(
      "nav",
      { class: "pager", "aria-label": "pages" },
      offset > 0 ? h("a", { href: `#/tables?offset=${Math.max(0, offset - 100)}` }, "← Previous") : null,
      h("span", { class: "muted" }, `${page.total} tables`),
      offset + 100 < page.total ? h("a", { href: `#/tables?offset=${offset + 100}` }, "Next →") : null,
    ),
  );
}

function snapshotLabel(s) {
  return `${s.snapshot_id} · ${s.operation} · ${fmtTime(s.timestamp_ms)}${s.current ? " (current)" : ""}`;
}

function summaryText(s) {
  const sm = s.summary || {};
  const parts = [];
  if (sm["added-records"]) parts.push(`+${fmtNum(sm["added-records"])}`);
  if (sm["deleted-records"]) parts.push(`−${fmtNum(sm["deleted-records"])}`);
  if (sm["total-records"]) parts.push(`${fmtNum(sm["total-records"])} total`);
  if (sm["gridata.run-id"]) parts.push(`run ${sm["gridata.run-id"]}`);
  return parts.join(" · ");
}

function checkHistory(name, checks) {
  if (!checks.length) return h("p", { class: "muted" }, "No check has run on this dataset.");
  const points = checks.map((c) => ({ at: c.at_ms, passed: c.passed, label: c.name })).reverse();
  const passed = checks.filter((c) => c.passed).length;
  return h(
    "div",
    {},
    h("p", {}, `${passed} of ${checks.length} recent results passed.`),
    passFailChart(`check results on ${name} over time: ${passed} passed, ${checks.length - passed} failed`, points),
    table(
      `check history of ${name}`,
      [
        ["When", (c) => fmtTime(c.at_ms)],
        ["Check", (c) => c.name],
        ["Result", (c) => h("span", { class: `badge ${c.passed ? "state-success" : "state-failed"}` }, c.passed ? "passed" : `failed (${c.severity})`)],
        ["Observed", (c) => c.observed],
        ["Expected", (c) => c.expected],
        ["Run", (c) => h("a", { href: `#/runs/${enc(c.run_id)}` }, c.run_id)],
      ],
      checks.slice(0, 50),
    ),
  );
}

// Each schema version with what changed from the one before.
function schemaHistory(name, versions) {
  let prev = null;
  const rows = versions.map((v) => {
    const byId = new Map(v.columns.map((c) => [c.id, c]));
    const changes = [];
    const first = prev === null;
    if (!first) {
      const before = new Map(prev.columns.map((c) => [c.id, c]));
      for (const c of v.columns) {
        const b = before.get(c.id);
        if (!b) changes.push(`+ ${c.name} ${c.type}`);
        else if (b.name !== c.name) changes.push(`${b.name} → ${c.name}`);
        else if (b.type !== c.type) changes.push(`${c.name}: ${b.type} → ${c.type}`);
      }
      for (const b of prev.columns) if (!byId.has(b.id)) changes.push(`− ${b.name}`);
    }
    prev = v;
    return { v, changes: first ? "created" : changes.join(", ") || "no column change" };
  });
  return table(
    `schema versions of ${name}`,
    [
      ["Schema", ({ v }) => `${v.schema_id}${v.current ? " (current)" : ""}`],
      ["Columns", ({ v }) => v.columns.length],
      ["Change", ({ changes }) => changes],
      ["Snapshots", ({ v }) => v.snapshots.length],
      ["First used", ({ v }) => fmtTime(v.first_used_ms)],
    ],
    rows.reverse(),
  );
}

export async function tablePage(main, [name], query) {
  const [t, pii, checks, schemas] = await Promise.all([
    api(`/api/v1/tables/${enc(name)}`),
    api(`/api/v1/tables/${enc(name)}/pii`),
    api(`/api/v1/datasets/${enc(name)}/checks${qs({ limit: 200 })}`),
    api(`/api/v1/tables/${enc(name)}/schemas`),
  ]);
  const piiBy = Object.fromEntries(pii.map((p) => [p.column, p]));
  const timelineBox = h("section", { "aria-labelledby": "snap-title" });
  const partitionsBox = h("section", { "aria-labelledby": "parts-title" }, h("h2", { id: "parts-title" }, "Partitions"));
  const previewBox = h("section", { "aria-labelledby": "preview-title" });
  const diffBox = h("section", { "aria-labelledby": "diff-title" });

  const preview = async (snapshotId) => {
    const out = h("div", { "aria-live": "polite" }, h("p", { class: "muted" }, "Loading rows…"));
    mount(previewBox, h("h2", { id: "preview-title" }, `Rows at snapshot ${snapshotId}`), out);
    try {
      const r = await api("/api/v1/sql", {
        method: "POST",
        body: { query: `SELECT * FROM ${sqlName(name)} VERSION AS OF ${snapshotId} LIMIT 50`, limit: 50 },
      });
      mount(out, h("p", { class: "muted" }, `First ${r.rows.length} rows as of snapshot ${snapshotId}.`), rowsTable(`rows of ${name} at snapshot ${snapshotId}`, r.columns, r.rows));
    } catch (e) {
      mount(out, errorBox(e));
    }
  };

  const drawTimeline = async () => {
    const snaps = await api(`/api/v1/tables/${enc(name)}/snapshots`);
    const newest = snaps.slice().reverse();
    const admin = can("admin");
    const items = newest.map((s) => {
      const view = h("button", { type: "button", class: "ghost", "aria-label": `show rows at snapshot ${s.snapshot_id}` }, "Rows");
      view.addEventListener("click", () => preview(s.snapshot_id));
      const rb = h(
        "button",
        {
          type: "button",
          class: "danger",
          disabled: !admin || s.current,
          title: admin ? "" : "Rollback needs the admin role",
          "aria-label": `roll back to snapshot ${s.snapshot_id}`,
        },
        "Roll back here",
      );
      rb.addEventListener("click", async () => {
        const ok = await confirmDialog(
          `Roll back ${name}?`,
          `The table's current snapshot becomes ${s.snapshot_id} (${fmtTime(s.timestamp_ms)}). Readers see that data at once; later snapshots stay in history.`,
          "Roll back",
        );
        if (!ok) return;
        try {
          await api(`/api/v1/tables/${enc(name)}/rollback`, { method: "POST", body: { snapshot_id: int(s.snapshot_id) } });
          status(`${name} rolled back to ${s.snapshot_id}`);
          await drawTimeline();
        } catch (e) {
          status(e.message, "error");
        }
      });
      return h(
        "li",
        { class: s.current ? "current" : "" },
        h("div", { class: "snap" }, h("strong", {}, snapshotLabel(s)), h("div", { class: "muted small" }, summaryText(s))),
        h("div", { class: "actions" }, view, rb),
      );
    });
    const from = h("select", { id: "diff-from" }, newest.map((s) => h("option", { value: s.snapshot_id }, snapshotLabel(s))));
    const to = h("select", { id: "diff-to" }, newest.map((s) => h("option", { value: s.snapshot_id }, snapshotLabel(s))));
    if (newest.length > 1) from.selectedIndex = 1;
    const go = h("button", { type: "submit" }, "Compare");
    const result = h("div", { "aria-live": "polite" });
    const form = h(
      "form",
      { class: "inline-form" },
      h("label", { for: "diff-from" }, "From"),
      from,
      h("label", { for: "diff-to" }, "To"),
      to,
      go,
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      mount(result, h("p", { class: "muted" }, "Comparing…"));
      try {
        const d = await api(`/api/v1/tables/${enc(name)}/diff${qs({ from: from.value, to: to.value })}`);
        mount(
          result,
          h("p", {}, `${fmtNum(d.added)} rows added, ${fmtNum(d.removed)} removed.`),
          table(
            "rows added and removed per partition",
            [
              ["Partition", (p) => p.partition || "(unpartitioned)"],
              ["Added", (p) => fmtNum(p.added)],
              ["Removed", (p) => fmtNum(p.removed)],
            ],
            d.partitions,
            "No row differs.",
          ),
        );
      } catch (e) {
        mount(result, errorBox(e));
      }
    });
    mount(
      timelineBox,
      h("h2", { id: "snap-title" }, "Snapshots"),
      admin ? null : h("p", { class: "muted", id: "rollback-note" }, "Rollback needs the admin role."),
      h("ol", { class: "timeline" }, items),
    );
    mount(diffBox, h("h2", { id: "diff-title" }, "Compare snapshots"), newest.length ? form : h("p", { class: "muted" }, "No snapshot."), result);
    return newest;
  };

  mount(
    main,
    h("p", { class: "crumbs" }, h("a", { href: "#/tables" }, "Tables"), " / ", name),
    h("div", { class: "title-row" }, h("h1", {}, name), h("a", { class: "button ghost", href: `#/lineage?dataset=${enc(name)}` }, "Lineage")),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Rows"),
      h("dd", {}, fmtNum(t.total_records)),
      h("dt", {}, "Current snapshot"),
      h("dd", {}, t.current_snapshot_id ?? "—"),
      h("dt", {}, "Partitions"),
      h("dd", {}, t.partitioning.length ? t.partitioning.join(", ") : "unpartitioned"),
      h("dt", {}, "Location"),
      h("dd", {}, h("code", {}, t.location)),
    ),
    h(
      "section",
      { "aria-labelledby": "schema-title" },
      h("h2", { id: "schema-title" }, "Schema"),
      table(
        `schema of ${name}`,
        [
          ["#", (c) => c.id],
          ["Column", (c) => h("a", { href: `#/lineage?dataset=${enc(name)}&column=${enc(c.name)}` }, c.name)],
          ["Type", (c) => h("code", {}, c.type)],
          ["Required", (c) => (c.required ? "yes" : "no")],
          [
            "PII",
            (c) => {
              const p = piiBy[c.name];
              if (!p || !p.tags.length) return "";
              return h("span", { class: "tags" }, p.tags.map((tag) => h("span", { class: "tag pii", title: p.reason || "" }, tag)), p.confidence ? h("small", { class: "muted" }, ` ${Math.round(p.confidence * 100)}%`) : null);
            },
          ],
          ["Description", (c) => c.doc || ""],
        ],
        t.columns,
      ),
    ),
    partitionsBox,
    h("section", { "aria-labelledby": "schemas-title" }, h("h2", { id: "schemas-title" }, "Schema history"), schemaHistory(name, schemas)),
    timelineBox,
    previewBox,
    diffBox,
    h("section", { "aria-labelledby": "quality-title", id: "quality" }, h("h2", { id: "quality-title" }, "Quality"), checkHistory(name, checks)),
  );
  const [ns, tbl] = [name.slice(0, name.lastIndexOf(".")), name.slice(name.lastIndexOf(".") + 1)];
  const filesTable = `${sqlName(ns)}."${`${tbl}$files`.replace(/"/g, '""')}"`;
  api("/api/v1/sql", {
    method: "POST",
    body: {
      query: `SELECT partition, count(*) AS files, sum(record_count) AS records, sum(file_size_in_bytes) AS bytes FROM ${filesTable} GROUP BY partition ORDER BY partition`,
      limit: 1000,
    },
  })
    .then((r) =>
      partitionsBox.append(
        table(
          `partitions of ${name}`,
          [
            ["Partition", (p) => p.partition || "(unpartitioned)"],
            ["Files", (p) => fmtNum(p.files)],
            ["Rows", (p) => fmtNum(p.records)],
            ["Size", (p) => `${(Number(p.bytes) / 1024).toFixed(1)} KiB`],
          ],
          r.rows,
          "No data file.",
        ),
      ),
    )
    .catch((e) => partitionsBox.append(errorBox(e)));
  const snaps = await drawTimeline();
  const at = query.get("snapshot");
  if (at) await preview(at);
  else if (snaps.length) mount(previewBox, h("h2", { id: "preview-title" }, "Rows"), h("p", { class: "muted" }, "Choose a snapshot's Rows to see the table as it was."));
}

export async function qualityPage(main) {
  const page = await api(`/api/v1/tables${qs({ limit: 200 })}`);
  const rows = await Promise.all(
    page.items.map(async (t) => {
      const checks = await api(`/api/v1/datasets/${enc(t.name)}/checks${qs({ limit: 50 })}`);
      return { t, checks };
    }),
  );
  mount(
    main,
    h("h1", {}, "Quality"),
    table(
      "latest check results per table",
      [
        ["Table", ({ t }) => h("a", { href: `#/tables/${enc(t.name)}` }, t.name)],
        [
          "Latest",
          ({ checks }) => {
            if (!checks.length) return h("span", { class: "muted" }, "no checks");
            const at = checks[0].at_ms;
            const latest = checks.filter((c) => c.at_ms === at);
            return latest.every((c) => c.passed) ? badge("success") : badge("failed");
          },
        ],
        ["History", ({ t, checks }) => (checks.length ? passFailChart(`check results on ${t.name}`, checks.map((c) => ({ at: c.at_ms, passed: c.passed, label: c.name }))) : "")],
        ["Checked", ({ checks }) => (checks.length ? fmtTime(checks[0].at_ms) : "—")],
      ],
      rows,
      "No table yet.",
    ),
  );
}
