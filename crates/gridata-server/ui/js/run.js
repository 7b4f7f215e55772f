// A run (tasks with rows in/out/rejected, checks, files, clear and
// rerun), a task (attempts, and its log tailing live while it runs), and
// a run's rejected rows with their reasons.

import { api, apiText, enc, qs } from "/ui/js/api.js";
import { h, mount, badge, fmtTime, fmtDur, fmtNum, table, can, status, svgNode, errorBox, rowsTable } from "/ui/js/dom.js";

const ACTIVE = new Set(["queued", "running"]);

function dur(a, b) {
  return a && b ? fmtDur(b - a) : "—";
}

async function clearRun(runId, body, label) {
  try {
    const r = await api(`/api/v1/runs/${enc(runId)}/clear`, { method: "POST", body });
    status(`${label}: ${r.cleared.length} task(s) will run again`);
    return true;
  } catch (e) {
    status(e.message, "error");
    return false;
  }
}

function runActions(run, refresh) {
  const op = can("operator");
  const title = op ? "" : "needs the operator role";
  const out = [];
  if (ACTIVE.has(run.state)) {
    const b = h("button", { type: "button", class: "danger", disabled: !op, title }, "Cancel run");
    b.addEventListener("click", async () => {
      try {
        await api(`/api/v1/runs/${enc(run.run_id)}/cancel`, { method: "POST" });
        status(`cancel requested for ${run.run_id}`);
        refresh();
      } catch (e) {
        status(e.message, "error");
      }
    });
    out.push(b);
  } else {
    const all = h("button", { type: "button", disabled: !op, title }, "Clear and rerun");
    all.addEventListener("click", async () => (await clearRun(run.run_id, { only_failed: false }, "cleared")) && refresh());
    out.push(all);
    if (run.state === "failed") {
      const failed = h("button", { type: "button", disabled: !op, title }, "Rerun failed tasks");
      failed.addEventListener("click", async () => (await clearRun(run.run_id, { only_failed: true }, "cleared")) && refresh());
      out.push(failed);
    }
  }
  return h("div", { class: "actions" }, out);
}

export async function runPage(main, [runId]) {
  const header = h("div", {});
  const tasksBox = h("section", { "aria-labelledby": "tasks-title" });
  const checksBox = h("section", { "aria-labelledby": "checks-title" });
  const filesBox = h("section", { "aria-labelledby": "files-title" });
  const dagBox = h("div", { class: "graph-box" });
  let timer = null;

  const load = async () => {
    const [d, checks] = await Promise.all([api(`/api/v1/runs/${enc(runId)}`), api(`/api/v1/runs/${enc(runId)}/checks`)]);
    const r = d.run;
    const rejected = d.tasks.reduce((n, t) => n + t.rows.rows_rejected, 0);
    mount(
      header,
      h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Pipelines"), " / ", h("a", { href: `#/pipelines/${enc(r.pipeline)}` }, r.pipeline), " / ", r.run_id),
      h("div", { class: "title-row" }, h("h1", {}, `Run ${r.run_id}`), badge(r.state)),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Pipeline"),
        h("dd", {}, h("a", { href: `#/pipelines/${enc(r.pipeline)}` }, r.pipeline)),
        h("dt", {}, "Trigger"),
        h("dd", {}, r.trigger),
        h("dt", {}, "Parameters"),
        h("dd", {}, Object.entries(r.params).map(([k, v]) => `${k}=${v}`).join(", ") || "—"),
        h("dt", {}, "Created"),
        h("dd", {}, fmtTime(r.created_ms)),
        h("dt", {}, "Duration"),
        h("dd", {}, dur(r.started_ms, r.ended_ms)),
        h("dt", {}, "Rejected rows"),
        h("dd", {}, rejected ? h("a", { href: `#/runs/${enc(r.run_id)}/rejected` }, `${fmtNum(rejected)} — see rows and reasons`) : "0"),
      ),
      r.error ? h("pre", { class: "error" }, r.error) : null,
      runActions(r, load),
    );
    mount(
      tasksBox,
      h("h2", { id: "tasks-title" }, "Tasks"),
      table(
        "tasks of the run",
        [
          ["Task", (t) => h("a", { href: `#/runs/${enc(r.run_id)}/tasks/${enc(t.task_id)}` }, t.task_id)],
          ["State", (t) => badge(t.state)],
          ["Attempts", (t) => t.attempts],
          ["Rows in", (t) => fmtNum(t.rows.rows_in)],
          ["Rows out", (t) => fmtNum(t.rows.rows_out)],
          [
            "Rejected",
            (t) => (t.rows.rows_rejected ? h("a", { href: `#/runs/${enc(r.run_id)}/rejected` }, fmtNum(t.rows.rows_rejected)) : "0"),
          ],
          ["Duration", (t) => dur(t.started_ms, t.ended_ms)],
          ["Error", (t) => t.error || ""],
        ],
        d.tasks,
        "No task has started.",
      ),
    );
    mount(
      checksBox,
      h("h2", { id: "checks-title" }, "Quality checks"),
      table(
        "quality checks of the run",
        [
          ["Check", (c) => c.name],
          ["Task", (c) => c.task_id],
          ["Dataset", (c) => c.dataset],
          ["Result", (c) => h("span", { class: `badge ${c.passed ? "state-success" : c.severity === "warn" ? "state-up_for_retry" : "state-failed"}` }, c.passed ? "passed" : `failed (${c.severity})`)],
          ["Observed", (c) => c.observed],
          ["Expected", (c) => c.expected],
        ],
        checks,
        "No check ran.",
      ),
    );
    mount(
      filesBox,
      h("h2", { id: "files-title" }, "Input files"),
      table(
        "input files of the run",
        [
          ["File", (f) => h("code", {}, f.source_file)],
          ["Read", (f) => fmtNum(f.rows_read)],
          ["Written", (f) => fmtNum(f.rows_written)],
          ["Rejected", (f) => fmtNum(f.rows_rejected)],
        ],
        d.files,
        "No file was read.",
      ),
    );
    const svg = await apiText(`/api/v1/pipelines/${enc(r.pipeline)}/dag${qs({ run_id: r.run_id })}`);
    mount(dagBox, svgNode(svg));
    for (const n of dagBox.querySelectorAll("g.node")) {
      const go = () => (location.hash = `#/runs/${enc(r.run_id)}/tasks/${enc(n.dataset.node)}`);
      n.addEventListener("click", go);
      n.addEventListener("keydown", (e) => (e.key === "Enter" || e.key === " ") && go());
    }
    if (!ACTIVE.has(r.state) && timer) {
      clearInterval(timer);
      timer = null;
    }
    return r;
  };

  mount(main, header, h("section", { "aria-labelledby": "graph-title" }, h("h2", { id: "graph-title" }, "Graph"), dagBox), tasksBox, checksBox, filesBox);
  const r = await load();
  if (ACTIVE.has(r.state)) {
    timer = setInterval(() => load().catch((e) => main.prepend(errorBox(e))), 1000);
  }
  return () => timer && clearInterval(timer);
}

export async function taskPage(main, [runId, taskId]) {
  const header = h("div", {});
  const attemptsBox = h("section", { "aria-labelledby": "attempts-title" });
  const log = h("pre", { class: "log", tabindex: "0", "aria-label": `log of ${taskId}`, "aria-live": "off" });
  const follow = h("input", { type: "checkbox", id: "follow", checked: true });
  let offset = 0;
  let timer = null;

  const loadLogs = async () => {
    for (;;) {
      const page = await api(`/api/v1/runs/${enc(runId)}/tasks/${enc(taskId)}/logs${qs({ limit: 500, offset })}`);
      for (const l of page.items) {
        log.append(h("span", { class: `line ${l.level}` }, `${fmtTime(l.ts_ms)} [${l.attempt}] ${l.level.toUpperCase().padEnd(5)} ${l.message}\n`));
      }
      offset += page.items.length;
      if (page.items.length < 500) break;
    }
    if (follow.checked) log.scrollTop = log.scrollHeight;
  };

  const load = async () => {
    const d = await api(`/api/v1/runs/${enc(runId)}/tasks/${enc(taskId)}`);
    const t = d.task;
    const op = can("operator");
    const clearBtn = h("button", { type: "button", disabled: !op || ACTIVE.has(t.state), title: op ? "" : "needs the operator role" }, "Clear task and downstream");
    clearBtn.addEventListener("click", async () => {
      if (await clearRun(runId, { task: taskId, only_failed: false }, `cleared ${taskId}`)) location.hash = `#/runs/${enc(runId)}`;
    });
    mount(
      header,
      h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Pipelines"), " / ", h("a", { href: `#/runs/${enc(runId)}` }, runId), " / ", taskId),
      h("div", { class: "title-row" }, h("h1", {}, taskId), badge(t.state)),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Rows in"),
        h("dd", {}, fmtNum(t.rows.rows_in)),
        h("dt", {}, "Rows out"),
        h("dd", {}, fmtNum(t.rows.rows_out)),
        h("dt", {}, "Rejected"),
        h("dd", {}, t.rows.rows_rejected ? h("a", { href: `#/runs/${enc(runId)}/rejected` }, fmtNum(t.rows.rows_rejected)) : "0"),
        h("dt", {}, "Duration"),
        h("dd", {}, dur(t.started_ms, t.ended_ms)),
        h("dt", {}, "Output"),
        h("dd", {}, t.output ? h("code", {}, t.output.length > 200 ? `${t.output.slice(0, 200)}…` : t.output) : "—"),
      ),
      t.error ? h("pre", { class: "error" }, t.error) : null,
      h("div", { class: "actions" }, clearBtn),
    );
    mount(
      attemptsBox,
      h("h2", { id: "attempts-title" }, "Attempts"),
      table(
        "attempts",
        [
          ["#", (a) => a.attempt],
          ["State", (a) => badge(a.state)],
          ["Started", (a) => fmtTime(a.started_ms)],
          ["Duration", (a) => dur(a.started_ms, a.ended_ms)],
          ["Error", (a) => a.error || ""],
        ],
        d.attempts,
        "No attempt yet.",
      ),
    );
    await loadLogs();
    return t;
  };

  mount(
    main,
    header,
    attemptsBox,
    h(
      "section",
      { "aria-labelledby": "log-title" },
      h("div", { class: "title-row" }, h("h2", { id: "log-title" }, "Log"), h("label", { class: "inline" }, follow, " follow")),
      log,
    ),
  );
  const t = await load();
  if (ACTIVE.has(t.state) || t.state === "up_for_retry") {
    timer = setInterval(async () => {
      try {
        const now = await load();
        if (!ACTIVE.has(now.state) && now.state !== "up_for_retry") {
          clearInterval(timer);
          timer = null;
        }
      } catch (e) {
        main.prepend(errorBox(e));
        clearInterval(timer);
      }
    }, 1000);
  }
  return () => timer && clearInterval(timer);
}

export async function rejectedPage(main, [runId]) {
  const r = await api(`/api/v1/runs/${enc(runId)}/rejected${qs({ limit: 200 })}`);
  const columns = [];
  for (const row of r.sample) for (const k of Object.keys(row)) if (!columns.includes(k)) columns.push(k);
  // Reasons first.
  const first = ["reason", "rule", "source_file", "line"].filter((c) => columns.includes(c));
  const ordered = [...first, ...columns.filter((c) => !first.includes(c))];
  mount(
    main,
    h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Pipelines"), " / ", h("a", { href: `#/runs/${enc(runId)}` }, runId), " / rejected rows"),
    h("h1", {}, `Rejected rows of ${runId}`),
    h("p", {}, `${fmtNum(r.count)} rows were quarantined${r.sample.length < r.count ? `; the first ${r.sample.length} are shown` : ""}.`),
    r.files.length ? h("details", {}, h("summary", {}, `${r.files.length} quarantine file(s)`), h("ul", {}, r.files.map((f) => h("li", {}, h("code", {}, f))))) : null,
    rowsTable("rejected rows", ordered, r.sample),
  );
}
