// Pipelines: the list with last runs, schedule, pause and trigger; and the
// trigger form shared with the pipeline page.

import { api, enc, qs } from "/ui/js/api.js";
import { h, mount, badge, fmtTime, can, status, errorBox } from "/ui/js/dom.js";

const PAGE = 50;

export function schedule(p) {
  if (p.cron) return `${p.cron}${p.timezone ? ` (${p.timezone})` : ""}`;
  if (p.file_trigger) return `files: ${p.file_trigger}`;
  if (p.table_triggers.length) return `tables: ${p.table_triggers.join(", ")}`;
  return "manual";
}

export function lastRuns(p) {
  return h(
    "ol",
    { class: "runs-strip", "aria-label": `last runs of ${p.id}` },
    p.last_runs
      .slice()
      .reverse()
      .map((r) =>
        h(
          "li",
          {},
          h("a", {
            href: `#/runs/${enc(r.run_id)}`,
            class: `cell state-${r.state}`,
            title: `${r.state} · ${fmtTime(r.created_ms)}`,
            "aria-label": `run ${r.run_id}: ${r.state}`,
          }),
        ),
      ),
  );
}

function pauseToggle(p, onChange) {
  const box = h("input", {
    type: "checkbox",
    role: "switch",
    id: `pause-${p.id}`,
    checked: !p.paused,
    disabled: !can("operator"),
    "aria-label": `${p.id} scheduled (on) or paused (off)`,
  });
  box.addEventListener("change", async () => {
    try {
      const r = await api(`/api/v1/pipelines/${enc(p.id)}/pause`, {
        method: "POST",
        body: { paused: !box.checked },
      });
      status(`${p.id} ${r.paused ? "paused" : "unpaused"}`);
      if (onChange) onChange(r);
    } catch (e) {
      box.checked = !box.checked;
      status(e.message, "error");
    }
  });
  return h("label", { class: "switch", title: can("operator") ? "" : "needs the operator role" }, box, h("span", {}, p.paused ? "paused" : "on"));
}

// A trigger button that opens a form for the pipeline's parameters.
export function triggerButton(id) {
  const btn = h("button", { type: "button", disabled: !can("operator"), "aria-haspopup": "dialog" }, "Trigger");
  if (!can("operator")) btn.title = "needs the operator role";
  btn.addEventListener("click", () => triggerDialog(id));
  return btn;
}

async function triggerDialog(id) {
  let detail;
  try {
    detail = await api(`/api/v1/pipelines/${enc(id)}`);
  } catch (e) {
    status(e.message, "error");
    return;
  }
  const inputs = detail.params.map((p) => {
    const input = h("input", {
      id: `param-${p.name}`,
      name: p.name,
      value: p.default ?? "",
      placeholder: p.type === "date" ? "YYYY-MM-DD" : p.type,
      required: p.default === null || p.default === undefined,
    });
    return [
      p.name,
      h(
        "div",
        { class: "field" },
        h("label", { for: `param-${p.name}` }, `${p.name} (${p.type})`),
        input,
        p.description ? h("small", { class: "muted" }, p.description) : null,
      ),
      input,
    ];
  });
  const err = h("p", { class: "error", role: "alert", hidden: true });
  const submit = h("button", { type: "submit" }, "Trigger run");
  const cancel = h("button", { type: "button", class: "ghost" }, "Cancel");
  const form = h(
    "form",
    {},
    h("h2", { id: "trigger-title" }, `Trigger ${id}`),
    inputs.length ? inputs.map(([, f]) => f) : h("p", { class: "muted" }, "This pipeline takes no parameters."),
    err,
    h("div", { class: "actions" }, cancel, submit),
  );
  const dlg = h("dialog", { "aria-labelledby": "trigger-title" }, form);
  cancel.addEventListener("click", () => dlg.close());
  dlg.addEventListener("close", () => dlg.remove());
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const params = {};
    for (const [name, , input] of inputs) if (input.value !== "") params[name] = input.value;
    try {
      const run = await api(`/api/v1/pipelines/${enc(id)}/runs`, { method: "POST", body: { params } });
      dlg.close();
      status(`queued run ${run.run_id}`);
      location.hash = `#/runs/${enc(run.run_id)}`;
    } catch (e) {
      err.hidden = false;
      err.textContent = e.message;
    }
  });
  document.body.append(dlg);
  dlg.showModal();
  (inputs.length ? inputs[0][2] : submit).focus();
}

export async function pipelinesPage(main, _m, query) {
  const offset = Number(query.get("offset") || 0);
  const page = await api(`/api/v1/pipelines${qs({ limit: PAGE, offset })}`);
  const rows = page.items.map((p) =>
    h(
      "tr",
      {},
      h("td", {}, h("a", { href: `#/pipelines/${enc(p.id)}` }, p.id), p.description ? h("div", { class: "muted small" }, p.description) : null),
      h("td", {}, lastRuns(p)),
      h("td", {}, schedule(p)),
      h("td", {}, p.next_run_ms ? fmtTime(p.next_run_ms) : "—"),
      h("td", {}, p.owners.join(", ") || "—"),
      h("td", {}, pauseToggle(p)),
      h("td", {}, triggerButton(p.id)),
    ),
  );
  const pager = h(
    "nav",
    { class: "pager", "aria-label": "pages" },
    offset > 0 ? h("a", { href: `#/?offset=${Math.max(0, offset - PAGE)}` }, "← Previous") : null,
    h("span", { class: "muted" }, `${page.total ? offset + 1 : 0}–${offset + page.items.length} of ${page.total}`),
    offset + PAGE < page.total ? h("a", { href: `#/?offset=${offset + PAGE}` }, "Next →") : null,
  );
  mount(
    main,
    h("h1", {}, "Pipelines"),
    page.items.length
      ? h(
          "div",
          { class: "scroll" },
          h(
            "table",
            { class: "pipelines" },
            h("caption", { class: "sr-only" }, "Pipelines"),
            h(
              "thead",
              {},
              h("tr", {}, ["Pipeline", "Last runs", "Schedule", "Next run", "Owners", "Scheduled", ""].map((c) => h("th", { scope: "col" }, c))),
            ),
            h("tbody", {}, rows),
          ),
        )
      : h("p", { class: "muted" }, "No pipeline is loaded. Start ", h("code", {}, "gridata serve --pipelines <dir>"), "."),
    pager,
  );
  const timer = setInterval(async () => {
    try {
      const fresh = await api(`/api/v1/pipelines${qs({ limit: PAGE, offset })}`);
      fresh.items.forEach((p, i) => {
        const cell = rows[i] && rows[i].children[1];
        if (cell) mount(cell, lastRuns(p));
      });
    } catch (e) {
      main.prepend(errorBox(e));
      clearInterval(timer);
    }
  }, 3000);
  return () => clearInterval(timer);
}
