// Lineage: the graph around a dataset or column, upstream or downstream,
// at dataset or column level, drawn by the server; click a box to move
// there, a column to follow it, and ask what a change to it would break.

import { api, apiText, enc, qs } from "/ui/js/api.js";
import { h, mount, svgNode, errorBox, table } from "/ui/js/dom.js";

function link(p) {
  return `#/lineage${qs(p)}`;
}

export async function lineagePage(main, _m, query) {
  const p = {
    dataset: query.get("dataset") || "",
    column: query.get("column") || "",
    direction: query.get("direction") || "upstream",
    depth: query.get("depth") || "",
    level: query.get("level") || "column",
  };
  const tables = await api(`/api/v1/tables${qs({ limit: 500 })}`);
  const dataset = h("input", { id: "lin-dataset", name: "dataset", list: "lin-datasets", value: p.dataset, required: true, placeholder: "namespace.table" });
  const column = h("input", { id: "lin-column", name: "column", value: p.column, placeholder: "all columns" });
  const direction = h(
    "select",
    { id: "lin-direction", name: "direction" },
    ["upstream", "downstream"].map((d) => h("option", { value: d, selected: d === p.direction }, d)),
  );
  const level = h(
    "select",
    { id: "lin-level", name: "level" },
    [["column", "columns"], ["dataset", "datasets"]].map(([v, l]) => h("option", { value: v, selected: v === p.level }, l)),
  );
  const depth = h("input", { id: "lin-depth", name: "depth", type: "number", min: "0", value: p.depth, placeholder: "all", class: "narrow" });
  const form = h(
    "form",
    { class: "inline-form", role: "search", "aria-label": "lineage" },
    h("label", { for: "lin-dataset" }, "Dataset"),
    dataset,
    h("datalist", { id: "lin-datasets" }, tables.items.map((t) => h("option", { value: t.name }))),
    h("label", { for: "lin-column" }, "Column"),
    column,
    h("label", { for: "lin-direction" }, "Direction"),
    direction,
    h("label", { for: "lin-level" }, "Show"),
    level,
    h("label", { for: "lin-depth" }, "Hops"),
    depth,
    h("button", { type: "submit" }, "Show"),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    location.hash = link({ dataset: dataset.value.trim(), column: column.value.trim(), direction: direction.value, depth: depth.value, level: level.value });
  });
  const graph = h("div", { class: "graph-box lineage", "aria-live": "polite" });
  const impactBox = h("section", { "aria-labelledby": "impact-title" });
  mount(main, h("h1", {}, "Lineage"), form, graph, impactBox);
  if (!p.dataset) {
    mount(graph, h("p", { class: "muted" }, "Choose a dataset. Boxes are datasets; arrows go from source to target; dashed arrows are indirect (join, filter, group by)."));
    return;
  }
  let svgText;
  try {
    svgText = await apiText(`/api/v1/lineage/svg${qs({ dataset: p.dataset, column: p.column, direction: p.direction, depth: p.depth, level: p.level })}`);
  } catch (e) {
    mount(graph, errorBox(e));
    return;
  }
  const svg = svgNode(svgText);
  if (!svg.querySelector("g.node")) {
    mount(graph, h("p", { class: "muted" }, `No lineage is recorded ${p.direction} of ${p.dataset}${p.column ? `.${p.column}` : ""}.`));
  } else mount(
    graph,
    h(
      "p",
      { class: "muted" },
      `${p.direction === "upstream" ? "Where" : "What reads"} ${p.dataset}${p.column ? `.${p.column}` : ""}${p.direction === "upstream" ? " comes from" : ""}. Click a dataset to centre on it, a column to follow it.`,
    ),
    svg,
  );
  for (const n of svg.querySelectorAll("g.node")) {
    if (n.dataset.node === p.dataset) n.classList.add("focus");
    n.addEventListener("click", (ev) => {
      if (ev.target.closest("g.row")) return;
      location.hash = link({ ...p, dataset: n.dataset.node, column: "" });
    });
    n.addEventListener("keydown", (ev) => {
      if ((ev.key === "Enter" || ev.key === " ") && ev.target === n) {
        ev.preventDefault();
        location.hash = link({ ...p, dataset: n.dataset.node, column: "" });
      }
    });
  }
  for (const r of svg.querySelectorAll("g.row")) {
    if (r.dataset.node === p.dataset && r.dataset.row === p.column) r.classList.add("focus");
    const go = () => (location.hash = link({ ...p, dataset: r.dataset.node, column: r.dataset.row }));
    r.addEventListener("click", go);
    r.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" || ev.key === " ") {
        ev.preventDefault();
        ev.stopPropagation();
        go();
      }
    });
  }
  const dlDot = h("a", { class: "button ghost", href: "#", role: "button" }, "Download SVG");
  dlDot.addEventListener("click", (ev) => {
    ev.preventDefault();
    const url = URL.createObjectURL(new Blob([svgText], { type: "image/svg+xml" }));
    const a = h("a", { href: url, download: `lineage-${p.dataset}.svg` });
    document.body.append(a);
    a.click();
    a.remove();
  });
  const impactBtn = h("button", { type: "button", disabled: !p.column }, "Impact of changing this column");
  if (!p.column) impactBtn.title = "choose a column first";
  impactBtn.addEventListener("click", async () => {
    try {
      const imp = await api(`/api/v1/lineage/impact${qs({ dataset: p.dataset, column: p.column })}`);
      mount(
        impactBox,
        h("h2", { id: "impact-title" }, `Changing ${p.dataset}.${p.column} affects`),
        h("p", {}, `${imp.columns.length} columns in ${imp.datasets.length} datasets, written by ${imp.pipelines.length} pipelines: ${imp.pipelines.join(", ") || "none"}.`),
        table(
          "affected columns",
          [
            ["Dataset", (c) => h("a", { href: link({ ...p, dataset: c.dataset, column: c.column, direction: "downstream" }) }, c.dataset)],
            ["Column", (c) => c.column || "(every row)"],
          ],
          imp.columns,
          "Nothing downstream reads it.",
        ),
      );
    } catch (e) {
      mount(impactBox, errorBox(e));
    }
  });
  graph.append(h("div", { class: "actions" }, impactBtn, dlDot));
}
