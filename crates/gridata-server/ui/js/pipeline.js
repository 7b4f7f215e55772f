// A pipeline: the runs × tasks grid (as Airflow's), the DAG, and a chart
// of run durations. The grid is paginated and refreshes while runs move.

import { api, apiText, enc, qs } from "/ui/js/api.js";
import { h, mount, badge, fmtTime, fmtDur, barChart, svgNode, errorBox } from "/ui/js/dom.js";
import { schedule, triggerButton } from "/ui/js/pipelines.js";

const PAGE = 25;

function gridTable(id, grid) {
  // Oldest run on the left, as Airflow draws it.
  const runs = grid.runs.slice().reverse();
  return h(
    "div",
    { class: "scroll" },
    h(
      "table",
      { class: "grid", "aria-label": `runs of ${id} by task` },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, "Task"),
          runs.map((r) =>
            h(
              "th",
              { scope: "col" },
              h("a", {
                href: `#/runs/${enc(r.run.run_id)}`,
                class: `cell run state-${r.run.state}`,
                title: `${r.run.run_id} · ${r.run.state} · ${fmtTime(r.run.created_ms)}`,
                "aria-label": `run ${r.run.run_id}: ${r.run.state}`,
              }),
            ),
          ),
        ),
      ),
      h(
        "tbody",
        {},
        grid.tasks.map((t) =>
          h(
            "tr",
            {},
            h("th", { scope: "row" }, t.id, h("span", { class: "muted small" }, ` ${t.kind}`)),
            runs.map((r) => {
              const c = r.tasks[t.id];
              const state = c ? c.state : "none";
              return h(
                "td",
                {},
                c
                  ? h("a", {
                      href: `#/runs/${enc(r.run.run_id)}/tasks/${enc(t.id)}`,
                      class: `cell state-${state}`,
                      title: `${t.id} · ${state} · ${fmtDur(c.ended_ms && c.started_ms ? c.ended_ms - c.started_ms : null)}`,
                      "aria-label": `task ${t.id} in run ${r.run.run_id}: ${state}`,
                    })
                  : h("span", { class: "cell state-none", "aria-label": `task ${t.id} in run ${r.run.run_id}: not started` }),
              );
            }),
          ),
        ),
      ),
    ),
  );
}

function durations(id, grid) {
  const points = grid.runs
    .slice()
    .reverse()
    .filter((r) => r.run.started_ms && r.run.ended_ms)
    .map((r) => ({ label: r.run.run_id, value: r.run.ended_ms - r.run.started_ms, state: r.run.state }));
  if (!points.length) return h("p", { class: "muted" }, "No finished run yet.");
  return barChart(`durations of the last ${points.length} runs of ${id}`, points, fmtDur);
}

export async function pipelinePage(main, [id], query) {
  const offset = Number(query.get("offset") || 0);
  const [p, grid] = await Promise.all([
    api(`/api/v1/pipelines/${enc(id)}`),
    api(`/api/v1/pipelines/${enc(id)}/grid${qs({ limit: PAGE, offset })}`),
  ]);
  const gridBox = h("section", { "aria-labelledby": "grid-title" });
  const chartBox = h("div", {});
  const dagBox = h("div", { class: "graph-box" });
  const pager = h("nav", { class: "pager", "aria-label": "run pages" });

  const draw = async (g) => {
    mount(gridBox, h("h2", { id: "grid-title" }, "Runs"), g.runs.length ? gridTable(id, g) : h("p", { class: "muted" }, "No run yet."));
    mount(chartBox, durations(id, g));
    mount(
      pager,
      offset + PAGE < g.total ? h("a", { href: `#/pipelines/${enc(id)}?offset=${offset + PAGE}` }, "← Older") : null,
      h("span", { class: "muted" }, `${g.total} runs`),
      offset > 0 ? h("a", { href: `#/pipelines/${enc(id)}?offset=${Math.max(0, offset - PAGE)}` }, "Newer →") : null,
    );
    const latest = g.runs[0];
    const svg = await apiText(`/api/v1/pipelines/${enc(id)}/dag${qs({ run_id: latest && latest.run.run_id })}`);
    mount(dagBox, svgNode(svg));
    for (const n of dagBox.querySelectorAll("g.node")) {
      const go = () => {
        if (latest) location.hash = `#/runs/${enc(latest.run.run_id)}/tasks/${enc(n.dataset.node)}`;
      };
      n.addEventListener("click", go);
      n.addEventListener("keydown", (e) => (e.key === "Enter" || e.key === " ") && go());
    }
  };

  mount(
    main,
    h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Pipelines"), " / ", id),
    h("div", { class: "title-row" }, h("h1", {}, id), triggerButton(id)),
    p.description ? h("p", {}, p.description) : null,
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Schedule"),
      h("dd", {}, schedule(p)),
      h("dt", {}, "Next run"),
      h("dd", {}, p.next_run_ms ? fmtTime(p.next_run_ms) : "—"),
      h("dt", {}, "Owners"),
      h("dd", {}, p.owners.join(", ") || "—"),
      h("dt", {}, "Tags"),
      h("dd", {}, p.tags.join(", ") || "—"),
      h("dt", {}, "State"),
      h("dd", {}, p.paused ? badge("paused") : "scheduled"),
      h("dt", {}, "File"),
      h("dd", {}, h("code", {}, p.file)),
    ),
    gridBox,
    pager,
    h("section", { "aria-labelledby": "dag-title" }, h("h2", { id: "dag-title" }, "Tasks"), dagBox),
    h("section", { "aria-labelledby": "dur-title" }, h("h2", { id: "dur-title" }, "Run durations"), chartBox),
  );
  await draw(grid);
  const active = (g) => g.runs.some((r) => r.run.state === "queued" || r.run.state === "running");
  let last = grid;
  const timer = setInterval(async () => {
    try {
      const g = await api(`/api/v1/pipelines/${enc(id)}/grid${qs({ limit: PAGE, offset })}`);
      if (active(g) || active(last) || g.total !== last.total) await draw(g);
      last = g;
    } catch (e) {
      clearInterval(timer);
      main.prepend(errorBox(e));
    }
  }, 2000);
  return () => clearInterval(timer);
}
