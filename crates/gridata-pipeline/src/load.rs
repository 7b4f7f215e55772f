//! Loading and validating pipeline files.
//!
//! Parsing happens in passes so that one mistake does not hide the others:
//! an outline pass finds where each task starts; each task is then parsed
//! on its own, and the top level without its tasks; finally the semantic
//! checks (ids, DAG, inputs, templates, SQL syntax, rules) run on what
//! parsed. Every problem carries the file, the line and the field.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use gridata_core::TableName;
use serde::Deserialize;

use crate::model::{Input, ParamType, Pipeline, Task, TaskKind};
use crate::{Error, Problem, Result, template};

/// A validated pipeline.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file it came from.
    pub path: PathBuf,
    /// The pipeline.
    pub pipeline: Pipeline,
    /// Transitive downstream tasks of each task.
    downstream: HashMap<String, HashSet<String>>,
}

impl Loaded {
    /// The `quality` tasks downstream of `task`: a write is published when
    /// they all passed.
    pub fn gates(&self, task: &str) -> Vec<String> {
        let Some(down) = self.downstream.get(task) else {
            return vec![];
        };
        self.pipeline
            .tasks
            .iter()
            .filter(|t| down.contains(&t.id) && t.quality.is_some())
            .map(|t| t.id.clone())
            .collect()
    }

    /// Tasks (transitively) downstream of `task`, in file order.
    pub fn downstream(&self, task: &str) -> Vec<String> {
        let Some(down) = self.downstream.get(task) else {
            return vec![];
        };
        self.pipeline
            .tasks
            .iter()
            .filter(|t| down.contains(&t.id))
            .map(|t| t.id.clone())
            .collect()
    }

    /// Whether `up` is (transitively) upstream of `task`.
    pub fn is_upstream(&self, up: &str, task: &str) -> bool {
        self.downstream.get(up).is_some_and(|d| d.contains(task))
    }
}

#[derive(Deserialize)]
struct Outline {
    #[serde(default)]
    tasks: Vec<serde_saphyr::Spanned<serde::de::IgnoredAny>>,
}

struct Lines<'a> {
    lines: Vec<&'a str>,
    task_ranges: Vec<(usize, usize)>,
}

impl Lines<'_> {
    /// Line of `key:` within task `i` (its first line when not found).
    fn task_field(&self, i: usize, key: &str) -> usize {
        let Some(&(start, end)) = self.task_ranges.get(i) else {
            return 0;
        };
        let last = key.rsplit('.').next().unwrap_or(key);
        for n in start..=end.min(self.lines.len()) {
            let l = self.lines[n - 1].trim_start().trim_start_matches("- ");
            if l.starts_with(&format!("{last}:")) {
                return n;
            }
        }
        start
    }

    /// Line of a top-level `key:`.
    fn top(&self, key: &str) -> usize {
        self.lines
            .iter()
            .position(|l| l.starts_with(&format!("{key}:")))
            .map(|i| i + 1)
            .unwrap_or(1)
    }

    /// Line containing `needle` after `from` (0 when absent).
    fn find(&self, needle: &str, from: usize) -> usize {
        self.lines
            .iter()
            .enumerate()
            .skip(from.saturating_sub(1))
            .find(|(_, l)| l.contains(needle))
            .map(|(i, _)| i + 1)
            .unwrap_or(0)
    }
}

/// Load every `*.yaml` pipeline in a folder, by id.
pub fn load_dir(dir: &Path) -> Result<BTreeMap<String, Loaded>> {
    let mut out = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    paths.sort();
    for p in paths {
        let l = load_file(&p)?;
        out.insert(l.pipeline.id.clone(), l);
    }
    Ok(out)
}

/// Load one pipeline file.
pub fn load_file(path: &Path) -> Result<Loaded> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    load_str(path, &text)
}

fn serde_problem(file: &Path, offset: usize, field: &str, e: &serde_saphyr::Error) -> Problem {
    let line = e.location().map(|l| l.line() as usize).unwrap_or(0);
    let msg = e.to_string();
    // The message repeats the location; keep the first line without it.
    let first = msg.lines().next().unwrap_or(&msg);
    let first = match first.strip_prefix("error: line ") {
        Some(rest) => rest.split_once(": ").map(|(_, m)| m).unwrap_or(rest),
        None => first,
    }
    .to_string();
    Problem {
        file: file.to_path_buf(),
        line: if line > 0 {
            line + offset
        } else {
            offset.max(1)
        },
        field: field.to_string(),
        message: first,
    }
}

/// Load a pipeline from text; `path` is used in messages and must be
/// named `<id>.yaml`.
pub fn load_str(path: &Path, text: &str) -> Result<Loaded> {
    let mut problems = Vec::new();
    let outline: Outline = match serde_saphyr::from_str(text) {
        Ok(o) => o,
        Err(e) => {
            return Err(Error::Invalid {
                file: path.to_path_buf(),
                problems: vec![serde_problem(path, 0, "(file)", &e)],
            });
        }
    };
    let all_lines: Vec<&str> = text.lines().collect();
    let starts: Vec<usize> = outline
        .tasks
        .iter()
        .map(|s| s.referenced.line() as usize)
        .collect();
    let mut ranges = Vec::new();
    for (i, &s) in starts.iter().enumerate() {
        let mut end = starts.get(i + 1).map(|n| n - 1).unwrap_or(all_lines.len());
        // Stop at the next top-level key.
        for n in s + 1..=end {
            let l = all_lines[n - 1];
            if !l.is_empty() && !l.starts_with([' ', '-', '#', '\t']) {
                end = n - 1;
                break;
            }
        }
        ranges.push((s, end));
    }
    let lines = Lines {
        lines: all_lines.clone(),
        task_ranges: ranges.clone(),
    };

    // Each task on its own.
    let mut tasks: Vec<Option<Task>> = Vec::new();
    for (i, &(s, e)) in ranges.iter().enumerate() {
        let slice = all_lines[s - 1..e].join("\n");
        let indent = all_lines[s - 1].len() - all_lines[s - 1].trim_start().len();
        let first = all_lines[s - 1].trim_start();
        let body = if first.starts_with("- ") {
            slice
        } else {
            // The span points at the first key of the item: make it a list.
            let pad = " ".repeat(indent.saturating_sub(2));
            let mut t = format!("{pad}- {}", first);
            for l in &all_lines[s..e] {
                t.push('\n');
                t.push_str(l);
            }
            t
        };
        match serde_saphyr::from_str::<Vec<Task>>(&body) {
            Ok(mut v) if v.len() == 1 => tasks.push(v.pop()),
            Ok(_) => {
                problems.push(Problem {
                    file: path.to_path_buf(),
                    line: s,
                    field: format!("tasks[{i}]"),
                    message: "could not isolate this task".into(),
                });
                tasks.push(None);
            }
            Err(err) => {
                problems.push(serde_problem(path, s - 1, &format!("tasks[{i}]"), &err));
                tasks.push(None);
            }
        }
    }

    // The top level without its tasks.
    #[derive(Deserialize)]
    struct Header {
        #[serde(flatten)]
        rest: serde_json::Map<String, serde_json::Value>,
    }
    let mut header: Option<Pipeline> = None;
    match serde_saphyr::from_str::<Header>(text) {
        Ok(h) => {
            let mut rest = h.rest;
            rest.insert("tasks".into(), serde_json::Value::Array(vec![]));
            match serde_json::from_value::<Pipeline>(serde_json::Value::Object(rest)) {
                Ok(p) => header = Some(p),
                Err(e) => {
                    let msg = e.to_string();
                    let key = msg
                        .split('`')
                        .nth(1)
                        .map(str::to_string)
                        .unwrap_or_default();
                    problems.push(Problem {
                        file: path.to_path_buf(),
                        line: if key.is_empty() { 1 } else { lines.top(&key) },
                        field: if key.is_empty() {
                            "(top level)".into()
                        } else {
                            key
                        },
                        message: msg,
                    });
                }
            }
        }
        Err(e) => problems.push(serde_problem(path, 0, "(top level)", &e)),
    }
    let Some(mut pipeline) = header else {
        return Err(Error::Invalid {
            file: path.to_path_buf(),
            problems,
        });
    };
    let parsed_all = tasks.iter().all(Option::is_some);
    let task_index: Vec<usize> = tasks
        .iter()
        .enumerate()
        .filter(|(_, t)| t.is_some())
        .map(|(i, _)| i)
        .collect();
    pipeline.tasks = tasks.into_iter().flatten().collect();
    let mut v = Validator {
        path,
        lines: &lines,
        problems,
    };
    let downstream = v.check(&pipeline, &task_index, parsed_all);
    if !v.problems.is_empty() {
        v.problems.sort_by_key(|p| p.line);
        return Err(Error::Invalid {
            file: path.to_path_buf(),
            problems: v.problems,
        });
    }
    Ok(Loaded {
        path: path.to_path_buf(),
        pipeline,
        downstream,
    })
}

struct Validator<'a> {
    path: &'a Path,
    lines: &'a Lines<'a>,
    problems: Vec<Problem>,
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

impl Validator<'_> {
    fn top(&mut self, key: &str, field: &str, message: String) {
        let line = self.lines.top(key);
        self.problems.push(Problem {
            file: self.path.to_path_buf(),
            line,
            field: field.into(),
            message,
        });
    }

    fn task(&mut self, i: usize, key: &str, field: String, message: String) {
        let line = self.lines.task_field(i, key);
        self.problems.push(Problem {
            file: self.path.to_path_buf(),
            line,
            field,
            message,
        });
    }

    fn check(
        &mut self,
        p: &Pipeline,
        index: &[usize],
        parsed_all: bool,
    ) -> HashMap<String, HashSet<String>> {
        if !valid_id(&p.id) {
            self.top(
                "id",
                "id",
                format!("'{}' is not an id (letters, digits, _)", p.id),
            );
        }
        if let Some(stem) = self.path.file_stem().and_then(|s| s.to_str())
            && stem != p.id
            && self.path.extension().is_some()
        {
            self.top(
                "id",
                "id",
                format!("id '{}' differs from the file name '{stem}'", p.id),
            );
        }
        for (name, param) in &p.params {
            if !valid_id(name) || template::BUILTINS.contains(&name.as_str()) {
                self.top(
                    "params",
                    &format!("params.{name}"),
                    format!("'{name}' cannot be a parameter name"),
                );
            }
            if let Some(d) = &param.default
                && let Err(e) = check_value(param.ty, d, true)
            {
                self.top("params", &format!("params.{name}.default"), e);
            }
        }
        if let Some(cron) = &p.trigger.cron {
            if cron.split_whitespace().count() != 5 {
                self.top(
                    "trigger",
                    "trigger.cron",
                    format!("'{cron}' is not a five-field cron expression"),
                );
            } else if let Err(e) = <croner::Cron as std::str::FromStr>::from_str(cron) {
                self.top("trigger", "trigger.cron", format!("'{cron}': {e}"));
            }
        }
        if let Some(tz) = &p.trigger.timezone
            && tz.parse::<chrono_tz::Tz>().is_err()
        {
            self.top(
                "trigger",
                "trigger.timezone",
                format!("'{tz}' is not an IANA time zone (e.g. Europe/Paris)"),
            );
        }
        if let Some(f) = &p.trigger.files {
            let mut rest = f.path.as_str();
            while let Some(open) = rest.find('{') {
                let Some(close) = rest[open..].find('}') else {
                    self.top(
                        "trigger",
                        "trigger.files.path",
                        format!("unclosed '{{' in '{}'", f.path),
                    );
                    break;
                };
                let name = &rest[open + 1..open + close];
                if !p.params.contains_key(name) {
                    self.top(
                        "trigger",
                        "trigger.files.path",
                        format!("'{{{name}}}' captures a parameter the pipeline does not declare"),
                    );
                }
                rest = &rest[open + close + 1..];
            }
        }
        for t in &p.trigger.tables {
            if TableName::parse(t).is_err() {
                self.top(
                    "trigger",
                    "trigger.tables",
                    format!("'{t}' is not namespace.table"),
                );
            }
        }
        for name in p.datasets.keys() {
            if TableName::parse(name).is_err() {
                self.top(
                    "datasets",
                    &format!("datasets.{name}"),
                    format!("'{name}' is not namespace.table"),
                );
            }
        }
        if p.tasks.is_empty() && parsed_all {
            self.top(
                "tasks",
                "tasks",
                "a pipeline needs at least one task".into(),
            );
        }

        let ids: HashMap<&str, usize> = p
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.as_str(), i))
            .collect();
        let mut seen = HashSet::new();
        for (k, t) in p.tasks.iter().enumerate() {
            let i = index[k];
            let f = |s: &str| format!("tasks[{i}].{s}");
            if !valid_id(&t.id) {
                self.task(i, "id", f("id"), format!("'{}' is not an id", t.id));
            }
            if !seen.insert(t.id.as_str()) {
                self.task(
                    i,
                    "id",
                    f("id"),
                    format!("task id '{}' is used twice", t.id),
                );
            }
            for d in &t.depends_on {
                if d == &t.id {
                    self.task(
                        i,
                        "depends_on",
                        f("depends_on"),
                        "a task cannot depend on itself".into(),
                    );
                } else if !ids.contains_key(d.as_str()) {
                    self.task(
                        i,
                        "depends_on",
                        f("depends_on"),
                        format!("unknown task '{d}'"),
                    );
                }
            }
            match t.kinds().len() {
                0 => self.task(
                    i,
                    "id",
                    format!("tasks[{i}]"),
                    format!(
                        "task '{}' has no kind: give one of {}",
                        t.id,
                        crate::model::KINDS.join(", ")
                    ),
                ),
                1 => {}
                _ => self.task(
                    i,
                    "id",
                    format!("tasks[{i}]"),
                    format!(
                        "task '{}' has several kinds ({}); give exactly one",
                        t.id,
                        t.kinds()
                            .iter()
                            .map(|k| k.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            }
        }

        // The DAG.
        let mut downstream: HashMap<String, HashSet<String>> = HashMap::new();
        let graph: HashMap<&str, Vec<&str>> = p
            .tasks
            .iter()
            .map(|t| {
                (
                    t.id.as_str(),
                    t.depends_on
                        .iter()
                        .map(String::as_str)
                        .filter(|d| ids.contains_key(d))
                        .collect(),
                )
            })
            .collect();
        if let Some(cycle) = find_cycle(&graph) {
            let i = index[ids[cycle[0].as_str()]];
            self.task(
                i,
                "depends_on",
                format!("tasks[{i}].depends_on"),
                format!("dependency cycle: {}", cycle.join(" -> ")),
            );
        } else {
            for t in &p.tasks {
                let mut stack: Vec<&str> = t.depends_on.iter().map(String::as_str).collect();
                let mut ups = HashSet::new();
                while let Some(u) = stack.pop() {
                    if ups.insert(u) {
                        stack.extend(graph.get(u).into_iter().flatten());
                    }
                }
                for u in ups {
                    downstream
                        .entry(u.to_string())
                        .or_default()
                        .insert(t.id.clone());
                }
            }
        }
        let upstream = |up: &str, of: &str| downstream.get(up).is_some_and(|d| d.contains(of));

        // Templates anywhere in a task.
        let mut known: HashSet<String> = p.params.keys().cloned().collect();
        known.extend(template::BUILTINS.iter().map(|s| s.to_string()));
        let writes: HashMap<String, &str> = p
            .tasks
            .iter()
            .filter_map(|t| t.write.as_ref().map(|w| (w.table.clone(), t.id.as_str())))
            .collect();

        for (k, t) in p.tasks.iter().enumerate() {
            let i = index[k];
            let json = serde_json::to_value(t).unwrap_or_default();
            let mut strings = Vec::new();
            collect_strings(&json, &mut strings);
            for s in strings {
                match template::names(&s) {
                    Err(e) => {
                        let line = self.lines.find("{{", self.lines.task_ranges[i].0);
                        self.problems.push(Problem {
                            file: self.path.to_path_buf(),
                            line,
                            field: format!("tasks[{i}]"),
                            message: e,
                        });
                    }
                    Ok(names) => {
                        for n in names {
                            let allowed =
                                known.contains(&n) || (n == "dataset" && t.quality.is_some());
                            if !allowed {
                                let line = self
                                    .lines
                                    .find(&format!("{{{{ {n}"), self.lines.task_ranges[i].0)
                                    .max(
                                        self.lines
                                            .find(&format!("{{{{{n}"), self.lines.task_ranges[i].0),
                                    );
                                self.problems.push(Problem {
                                    file: self.path.to_path_buf(),
                                    line: if line == 0 {
                                        self.lines.task_ranges[i].0
                                    } else {
                                        line
                                    },
                                    field: format!("tasks[{i}]"),
                                    message: format!("unknown template name '{n}' (known: {})", {
                                        let mut k: Vec<_> = known.iter().cloned().collect();
                                        k.sort();
                                        k.join(", ")
                                    }),
                                });
                            }
                        }
                    }
                }
            }
            if t.kinds().len() != 1 {
                continue;
            }
            let f = |s: &str| format!("tasks[{i}].{s}");
            let check_input = |me: &mut Self, input: &Input, key: &str| {
                let set = [
                    input.task.is_some(),
                    input.table.is_some(),
                    input.file.is_some(),
                ]
                .iter()
                .filter(|b| **b)
                .count();
                if set != 1 {
                    me.task(
                        i,
                        key,
                        f(key),
                        "an input names exactly one of `task`, `table`, `file`".into(),
                    );
                }
                if let Some(up) = &input.task
                    && !upstream(up, &t.id)
                {
                    me.task(i, key, f(key), format!("reads task '{up}', which is not upstream of '{}' (add it to depends_on)", t.id));
                }
                if let Some(tb) = &input.table
                    && TableName::parse(tb).is_err()
                {
                    me.task(i, key, f(key), format!("'{tb}' is not namespace.table"));
                }
                if let Some(file) = &input.file
                    && input.format.is_none()
                    && !file.rsplit('/').next().unwrap_or("").contains("{{")
                    && crate::model::FileFormat::from_path(file).is_none()
                {
                    me.task(
                        i,
                        key,
                        f(key),
                        format!("cannot tell the format of '{file}'; set `format`"),
                    );
                }
            };
            match t.kind() {
                TaskKind::Sql(s) => {
                    for (alias, input) in &s.inputs {
                        if !valid_id(alias) {
                            self.task(
                                i,
                                alias,
                                f(&format!("sql.inputs.{alias}")),
                                format!("'{alias}' is not a valid name"),
                            );
                        }
                        check_input(self, input, alias);
                    }
                    self.check_sql(i, &f("sql.query"), &s.query, &p.params);
                }
                TaskKind::ValidateRows(v) => {
                    check_input(self, &v.input, "input");
                    if v.rules.is_empty() {
                        self.task(i, "rules", f("validate_rows.rules"), "no rules".into());
                    }
                    for (r, rule) in v.rules.iter().enumerate() {
                        if rule.kind_count() != 1 {
                            self.task(i, "rules", f(&format!("validate_rows.rules[{r}]")), "a rule has exactly one kind (not_null, parseable, range, accepted_values, regex, unique, exists_in, sql)".into());
                        }
                        if let Some(re) = &rule.regex
                            && let Err(e) = regex::Regex::new(&re.pattern)
                        {
                            self.task(
                                i,
                                "pattern",
                                f(&format!("validate_rows.rules[{r}].regex.pattern")),
                                e.to_string(),
                            );
                        }
                        if let Some(e) = &rule.exists_in {
                            check_input(self, &e.dataset, "exists_in");
                        }
                    }
                }
                TaskKind::Write(w) => {
                    if !upstream(&w.input, &t.id) {
                        self.task(
                            i,
                            "input",
                            f("write.input"),
                            format!("'{}' is not an upstream task of '{}'", w.input, t.id),
                        );
                    }
                    if TableName::parse(&w.table).is_err() {
                        self.task(
                            i,
                            "table",
                            f("write.table"),
                            format!("'{}' is not namespace.table", w.table),
                        );
                    }
                    if w.mode == crate::tasks::write::WriteMode::Merge && w.key.is_empty() {
                        self.task(
                            i,
                            "mode",
                            f("write.key"),
                            "mode merge needs `key` columns".into(),
                        );
                    }
                    if writes.get(&w.table).is_some_and(|id| *id != t.id) {
                        self.task(
                            i,
                            "table",
                            f("write.table"),
                            format!("table '{}' is written by two tasks", w.table),
                        );
                    }
                }
                TaskKind::Quality(q) => {
                    match (&q.table, &q.input) {
                        (Some(_), Some(_)) | (None, None) => self.task(
                            i,
                            "quality",
                            f("quality"),
                            "give exactly one of `table` and `input`".into(),
                        ),
                        (Some(tb), None) => {
                            if let Some(w) = writes.get(tb)
                                && !upstream(w, &t.id)
                            {
                                self.task(i, "table", f("quality.table"), format!("checks '{tb}', written by task '{w}', so it must depend on '{w}'"));
                            }
                        }
                        (None, Some(up)) => {
                            if !upstream(up, &t.id) {
                                self.task(
                                    i,
                                    "input",
                                    f("quality.input"),
                                    format!("'{up}' is not an upstream task"),
                                );
                            }
                        }
                    }
                    let mut names = HashSet::new();
                    for (c, check) in q.checks.iter().enumerate() {
                        if check.kind_count() != 1 {
                            self.task(
                                i,
                                "checks",
                                f(&format!("quality.checks[{c}]")),
                                "a check has exactly one kind".into(),
                            );
                            continue;
                        }
                        if !names.insert(check.display_name()) {
                            self.task(
                                i,
                                "checks",
                                f(&format!("quality.checks[{c}]")),
                                format!(
                                    "check name '{}' is used twice; set `name`",
                                    check.display_name()
                                ),
                            );
                        }
                        if let Some(s) = &check.sql {
                            self.check_sql(
                                i,
                                &f(&format!("quality.checks[{c}].sql.query")),
                                &s.query,
                                &p.params,
                            );
                        }
                    }
                }
                TaskKind::Sense(s) if s.paths.is_empty() => {
                    self.task(i, "paths", f("sense.paths"), "no paths".into());
                }
                TaskKind::Notify(n)
                    if !n.url.starts_with("http://")
                        && !n.url.starts_with("https://")
                        && !n.url.starts_with("{{") =>
                {
                    self.task(
                        i,
                        "url",
                        f("notify.url"),
                        format!("'{}' is not an http(s) URL", n.url),
                    );
                }
                _ => {}
            }
        }
        downstream
    }

    fn check_sql(
        &mut self,
        i: usize,
        field: &str,
        query: &str,
        params: &BTreeMap<String, crate::model::Param>,
    ) {
        let mut vars: BTreeMap<String, String> = params
            .iter()
            .map(|(k, p)| {
                let v = match p.ty {
                    ParamType::Int => "0",
                    ParamType::Bool => "true",
                    ParamType::Date => "2000-01-01",
                    ParamType::String => "x",
                };
                (k.clone(), v.to_string())
            })
            .collect();
        for b in template::BUILTINS {
            vars.insert(b.to_string(), "x".into());
        }
        vars.insert("dataset".into(), "__dataset".into());
        let Ok(sql) = template::render(query, &vars) else {
            return;
        };
        let dialect = gridata_engine::GridataDialect::default();
        if let Err(e) = datafusion::sql::sqlparser::parser::Parser::parse_sql(&dialect, &sql) {
            let key = field.rsplit('.').next().unwrap_or("query");
            let base = self.lines.task_field(i, key);
            // sqlparser reports "at Line: N, Column: M" within the query.
            let msg = e.to_string();
            let offset = msg
                .split("Line: ")
                .nth(1)
                .and_then(|r| r.split(',').next())
                .and_then(|n| n.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let block = self
                .lines
                .lines
                .get(base.saturating_sub(1))
                .is_some_and(|l| l.trim_end().ends_with('|') || l.trim_end().ends_with('>'));
            self.problems.push(Problem {
                file: self.path.to_path_buf(),
                line: if block { base + offset } else { base },
                field: field.to_string(),
                message: format!("SQL syntax: {msg}"),
            });
        }
    }
}

fn collect_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

fn find_cycle(graph: &HashMap<&str, Vec<&str>>) -> Option<Vec<String>> {
    fn visit<'a>(
        n: &'a str,
        graph: &HashMap<&'a str, Vec<&'a str>>,
        state: &mut HashMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let from = path.iter().position(|p| *p == n).unwrap_or(0);
                let mut c: Vec<String> = path[from..].iter().map(|s| s.to_string()).collect();
                c.push(n.to_string());
                return Some(c);
            }
            _ => {}
        }
        state.insert(n, 1);
        path.push(n);
        for d in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, graph, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n, 2);
        None
    }
    let mut state = HashMap::new();
    let mut keys: Vec<&str> = graph.keys().copied().collect();
    keys.sort();
    for n in keys {
        if let Some(c) = visit(n, graph, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

fn check_value(ty: ParamType, v: &str, is_default: bool) -> std::result::Result<(), String> {
    match ty {
        ParamType::String => Ok(()),
        ParamType::Int => v
            .parse::<i64>()
            .map(|_| ())
            .map_err(|_| format!("'{v}' is not an integer")),
        ParamType::Bool => match v {
            "true" | "false" => Ok(()),
            _ => Err(format!("'{v}' is not true or false")),
        },
        ParamType::Date => {
            if is_default && (v == "today" || v == "yesterday") {
                return Ok(());
            }
            chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .map(|_| ())
                .map_err(|_| format!("'{v}' is not a date (YYYY-MM-DD)"))
        }
    }
}

/// The run's parameter values: given ones checked against their types,
/// defaults filled in (`today`/`yesterday` from the clock), unknown or
/// missing ones refused.
pub fn resolve_params(
    p: &Pipeline,
    given: &BTreeMap<String, String>,
    now_ms: i64,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for name in given.keys() {
        if !p.params.contains_key(name) {
            let mut known: Vec<&str> = p.params.keys().map(String::as_str).collect();
            known.sort();
            return Err(Error::Param {
                name: name.clone(),
                reason: format!(
                    "pipeline '{}' has no such parameter (it has: {})",
                    p.id,
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ),
            });
        }
    }
    let today = chrono::DateTime::from_timestamp_millis(now_ms)
        .map(|t| t.date_naive())
        .unwrap_or_default();
    for (name, param) in &p.params {
        let v = match (given.get(name), &param.default) {
            (Some(v), _) => {
                check_value(param.ty, v, false).map_err(|reason| Error::Param {
                    name: name.clone(),
                    reason,
                })?;
                v.clone()
            }
            (None, Some(d)) if param.ty == ParamType::Date && d == "today" => {
                today.format("%Y-%m-%d").to_string()
            }
            (None, Some(d)) if param.ty == ParamType::Date && d == "yesterday" => (today
                - chrono::Duration::days(1))
            .format("%Y-%m-%d")
            .to_string(),
            (None, Some(d)) => d.clone(),
            (None, None) => {
                return Err(Error::Param {
                    name: name.clone(),
                    reason: "is required (give --param name=value)".into(),
                });
            }
        };
        out.insert(name.clone(), v);
    }
    Ok(out)
}

/// Parse `name=value` pairs.
pub fn parse_param_args(args: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for a in args {
        let (k, v) = a.split_once('=').ok_or_else(|| Error::Param {
            name: a.clone(),
            reason: "expected name=value".into(),
        })?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Loaded> {
        load_str(Path::new("p.yaml"), text)
    }

    #[test]
    fn every_problem_at_once_with_lines() {
        let text = r#"id: p
params:
  date: { type: date }
tasks:
  - id: a
    depends_on: [c]
    sql:
      query: SELECT 1
  - id: b
    depends_on: [a, nope]
    sql:
      inputs:
        x: { task: c }
      query: "SELECT {{ bogus }}"
  - id: c
    depends_on: [b]
    write:
      input: b
      table: bad_name
      mode: append
  - id: d
    sql:
      query: SELEC oops
      extra_field: 1
"#;
        let err = load(text).unwrap_err();
        let Error::Invalid { problems, .. } = err else {
            panic!("expected Invalid")
        };
        let msgs: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        let all = msgs.join("\n");
        assert!(
            all.contains("p.yaml:10: tasks[1].depends_on: unknown task 'nope'"),
            "{all}"
        );
        assert!(all.contains("unknown template name 'bogus'"), "{all}");
        assert!(all.contains("dependency cycle"), "{all}");
        assert!(all.contains("'bad_name' is not namespace.table"), "{all}");
        assert!(
            all.contains("p.yaml:24: tasks[3]: unknown field `extra_field`"),
            "{all}"
        );
        assert!(all.contains("extra_field"), "{all}");
    }

    #[test]
    fn triggers_are_checked() {
        let text = r#"id: p
trigger:
  cron: "0 99 * * *"
  timezone: Mars/Base
  files: { path: "in/{date}/{region}/*.csv" }
tasks:
  - id: a
    sql: { query: SELECT 1 }
"#;
        let Err(Error::Invalid { problems, .. }) = load(text) else {
            panic!("expected Invalid")
        };
        let all: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        let all = all.join("\n");
        assert!(all.contains("trigger.cron: '0 99 * * *'"), "{all}");
        assert!(
            all.contains("'Mars/Base' is not an IANA time zone"),
            "{all}"
        );
        assert!(all.contains("'{date}' captures a parameter"), "{all}");
        assert!(all.contains("'{region}' captures a parameter"), "{all}");
    }

    #[test]
    fn a_valid_pipeline_loads() {
        let text = r#"id: p
params:
  date: { type: date, default: today }
tasks:
  - id: a
    sql:
      query: SELECT '{{ date }}' AS d
  - id: w
    depends_on: [a]
    write: { input: a, table: ns.t, mode: append }
  - id: q
    depends_on: [w]
    quality:
      table: ns.t
      checks:
        - row_count: { min: 1 }
"#;
        let l = load(text).unwrap();
        assert_eq!(l.gates("w"), vec!["q"]);
        assert!(l.is_upstream("a", "q"));
        let params = resolve_params(&l.pipeline, &BTreeMap::new(), 0).unwrap();
        assert_eq!(params["date"], "1970-01-01");
        assert!(
            resolve_params(
                &l.pipeline,
                &BTreeMap::from([("date".into(), "20261120".into())]),
                0
            )
            .is_err()
        );
    }
}
