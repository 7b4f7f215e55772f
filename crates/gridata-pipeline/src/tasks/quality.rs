//! `quality`: checks on a table or an upstream task's output. On a table
//! this run wrote, the checks read the staged snapshot, before readers can
//! see it. Every result is stored for the run. A failing `error` check
//! fails the task (without retry), so the run never publishes the staged
//! snapshot: the table stays at its pre-run snapshot. A failing `warn`
//! check is recorded and logged only.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::Dur;
use crate::run::{TaskCtx, TaskError, TaskResult, quote_ident, quote_str};
use crate::tasks::validate_rows::{AcceptedValues, RangeSpec, RegexSpec};

/// Settings of a `quality` task: exactly one of `table` and `input`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Quality {
    /// Table checked, `namespace.table`.
    #[serde(default)]
    pub table: Option<String>,
    /// Upstream task whose output is checked.
    #[serde(default)]
    pub input: Option<String>,
    /// The checks.
    pub checks: Vec<Check>,
}

/// How much a failing check matters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Recorded and logged.
    Warn,
    /// Fails the run; the table is not published.
    #[default]
    Error,
}

/// One check: a name, a severity and exactly one kind.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// Name, unique in the task; default from the kind and column.
    #[serde(default)]
    pub name: Option<String>,
    /// `error` (default) or `warn`.
    #[serde(default)]
    pub severity: Severity,
    /// What it guards against.
    #[serde(default)]
    pub description: Option<String>,
    /// Row count within bounds.
    #[serde(default)]
    pub row_count: Option<CountRange>,
    /// No nulls in the column.
    #[serde(default)]
    pub not_null: Option<String>,
    /// Share of nulls at most `max` percent.
    #[serde(default)]
    pub null_percentage: Option<NullPercentage>,
    /// No two rows share these columns' values.
    #[serde(default)]
    pub unique: Option<Vec<String>>,
    /// Values within a set.
    #[serde(default)]
    pub accepted_values: Option<AcceptedValues>,
    /// Values within bounds.
    #[serde(default)]
    pub range: Option<RangeSpec>,
    /// Values match a regular expression.
    #[serde(default)]
    pub regex: Option<RegexSpec>,
    /// Every value exists in another table.
    #[serde(default)]
    pub references: Option<References>,
    /// The newest value is recent enough.
    #[serde(default)]
    pub freshness: Option<Freshness>,
    /// A query returning the offending rows; passes when it returns at
    /// most `max_rows`.
    #[serde(default)]
    pub sql: Option<SqlCheck>,
}

/// Bounds of a count.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CountRange {
    /// At least.
    #[serde(default)]
    pub min: Option<u64>,
    /// At most.
    #[serde(default)]
    pub max: Option<u64>,
}

/// `null_percentage`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NullPercentage {
    /// Column.
    pub column: String,
    /// Highest allowed share of nulls, in percent.
    pub max: f64,
}

/// `references`: referential integrity.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct References {
    /// Column of the checked dataset.
    pub column: String,
    /// Referenced table.
    pub table: String,
    /// Column of the referenced table. Default: same as `column`.
    #[serde(default)]
    pub key: Option<String>,
}

/// `freshness`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Freshness {
    /// A timestamp column.
    pub column: String,
    /// The newest value may be at most this old.
    pub max_age: Dur,
    /// The reference time (templated, e.g. `{{ date }} 23:59:59`).
    /// Default: now.
    #[serde(default)]
    pub relative_to: Option<String>,
}

/// `sql`: a custom check.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlCheck {
    /// Query (templated) returning offending rows; `{{ dataset }}` names
    /// the checked dataset.
    pub query: String,
    /// Most offending rows allowed. Default 0.
    #[serde(default)]
    pub max_rows: u64,
}

impl Check {
    /// How many kinds are set (valid checks have one).
    pub fn kind_count(&self) -> usize {
        self.kinds().len()
    }

    fn kinds(&self) -> Vec<&'static str> {
        let mut k = Vec::new();
        macro_rules! add {
            ($($f:ident),*) => { $( if self.$f.is_some() { k.push(stringify!($f)); } )* };
        }
        add!(
            row_count,
            not_null,
            null_percentage,
            unique,
            accepted_values,
            range,
            regex,
            references,
            freshness,
            sql
        );
        k
    }

    /// The kind's name.
    pub fn kind(&self) -> &'static str {
        self.kinds().first().copied().unwrap_or("none")
    }

    /// The check's name: given, or `<kind>_<column>`.
    pub fn display_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        let col = self
            .not_null
            .clone()
            .or_else(|| self.null_percentage.as_ref().map(|c| c.column.clone()))
            .or_else(|| self.unique.as_ref().map(|c| c.join("_")))
            .or_else(|| self.accepted_values.as_ref().map(|c| c.column.clone()))
            .or_else(|| self.range.as_ref().map(|c| c.column.clone()))
            .or_else(|| self.regex.as_ref().map(|c| c.column.clone()))
            .or_else(|| self.references.as_ref().map(|c| c.column.clone()))
            .or_else(|| self.freshness.as_ref().map(|c| c.column.clone()));
        match col {
            Some(c) => format!("{}_{c}", self.kind()),
            None => self.kind().to_string(),
        }
    }
}

async fn scalar(engine: &gridata_engine::Engine, sql: &str) -> Result<Option<f64>, TaskError> {
    let (_, batches) = engine
        .query(sql)
        .await
        .map_err(|e| TaskError::fatal(format!("check query failed: {e}\n  {sql}")))?;
    let Some(b) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(None);
    };
    let c = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Float64)
        .map_err(TaskError::fatal)?;
    let c = c
        .as_any()
        .downcast_ref::<arrow::array::Float64Array>()
        .expect("float64");
    Ok(if c.is_null(0) { None } else { Some(c.value(0)) })
}

use arrow::array::Array;

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{}", v as i64)
    } else {
        format!("{v:.4}")
    }
}

pub(crate) async fn run(cfg: &Quality, ctx: &TaskCtx) -> Result<TaskResult, TaskError> {
    let engine = ctx.session().await?;
    let (label, snapshot) = match (&cfg.table, &cfg.input) {
        (Some(t), _) => {
            let (provider, snap) = ctx.table_for_check(t).await?;
            engine
                .register("__dataset", provider)
                .map_err(TaskError::fatal)?;
            (t.clone(), snap)
        }
        (None, Some(task)) => {
            let df = ctx.task_frame(&engine, task)?;
            engine
                .register("__dataset", df.into_view())
                .map_err(TaskError::fatal)?;
            (format!("task {task}"), None)
        }
        _ => return Err(TaskError::fatal("quality needs `table` or `input`")),
    };
    let ds = "\"__dataset\"";
    let now_ms = ctx.now_ms();
    let mut records = Vec::new();
    let mut failed_errors = Vec::new();
    for check in &cfg.checks {
        let name = check.display_name();
        let started = std::time::Instant::now();
        let (passed, observed, expected) = if let Some(r) = &check.row_count {
            let n = scalar(&engine, &format!("SELECT COUNT(*) FROM {ds}"))
                .await?
                .unwrap_or(0.0) as u64;
            let ok = r.min.is_none_or(|m| n >= m) && r.max.is_none_or(|m| n <= m);
            (
                ok,
                format!("{n} rows"),
                format!(
                    "between {} and {}",
                    r.min.map(|v| v.to_string()).unwrap_or_else(|| "0".into()),
                    r.max.map(|v| v.to_string()).unwrap_or_else(|| "any".into())
                ),
            )
        } else if let Some(c) = &check.not_null {
            let n = scalar(
                &engine,
                &format!("SELECT COUNT(*) FROM {ds} WHERE {} IS NULL", quote_ident(c)),
            )
            .await?
            .unwrap_or(0.0);
            (n == 0.0, format!("{} nulls", fmt_num(n)), "0 nulls".into())
        } else if let Some(p) = &check.null_percentage {
            let pct = scalar(
                &engine,
                &format!(
                    "SELECT 100.0 * SUM(CASE WHEN {} IS NULL THEN 1 ELSE 0 END) / NULLIF(COUNT(*), 0) FROM {ds}",
                    quote_ident(&p.column)
                ),
            )
            .await?
            .unwrap_or(0.0);
            (
                pct <= p.max,
                format!("{pct:.2}% null"),
                format!("at most {}%", p.max),
            )
        } else if let Some(cols) = &check.unique {
            let cs: Vec<String> = cols.iter().map(|c| quote_ident(c)).collect();
            // Only the rows whose key hash repeats are grouped by the key.
            let repeated = engine
                .repeated_key_hashes(ds, &cs)
                .await
                .map_err(|e| TaskError::fatal(format!("check {name} failed: {e}")))?;
            let n = if repeated.is_empty() {
                0.0
            } else {
                engine
                    .context()
                    .register_udf(gridata_engine::KeySet::udf("__gridata_repeated", repeated));
                scalar(
                    &engine,
                    &format!(
                        "SELECT COALESCE(SUM(n - 1), 0) FROM (SELECT COUNT(*) AS n FROM {ds} \
                         WHERE \"__gridata_repeated\"({c}) GROUP BY {c}) AS g WHERE n > 1",
                        c = cs.join(", ")
                    ),
                )
                .await?
                .unwrap_or(0.0)
            };
            (
                n == 0.0,
                format!("{} duplicate rows", fmt_num(n)),
                "0 duplicate rows".into(),
            )
        } else if let Some(a) = &check.accepted_values {
            let list: Vec<String> = a.values.iter().map(|v| quote_str(v)).collect();
            let n = scalar(
                &engine,
                &format!(
                    "SELECT COUNT(*) FROM {ds} WHERE {c} IS NOT NULL AND CAST({c} AS VARCHAR) NOT IN ({})",
                    list.join(", "),
                    c = quote_ident(&a.column)
                ),
            )
            .await?
            .unwrap_or(0.0);
            (
                n == 0.0,
                format!("{} rows outside the set", fmt_num(n)),
                format!("values in [{}]", a.values.join(", ")),
            )
        } else if let Some(r) = &check.range {
            let c = format!("CAST({} AS DOUBLE)", quote_ident(&r.column));
            let mut conds = Vec::new();
            if let Some(m) = r.min {
                conds.push(format!("{c} < {m}"));
            }
            if let Some(m) = r.max {
                conds.push(format!("{c} > {m}"));
            }
            let n = if conds.is_empty() {
                0.0
            } else {
                scalar(
                    &engine,
                    &format!("SELECT COUNT(*) FROM {ds} WHERE {}", conds.join(" OR ")),
                )
                .await?
                .unwrap_or(0.0)
            };
            (
                n == 0.0,
                format!("{} rows out of range", fmt_num(n)),
                format!(
                    "within [{}, {}]",
                    r.min.map(fmt_num).unwrap_or_else(|| "-inf".into()),
                    r.max.map(fmt_num).unwrap_or_else(|| "inf".into())
                ),
            )
        } else if let Some(r) = &check.regex {
            let n = scalar(
                &engine,
                &format!(
                    "SELECT COUNT(*) FROM {ds} WHERE {c} IS NOT NULL AND NOT regexp_like(CAST({c} AS VARCHAR), {p})",
                    c = quote_ident(&r.column),
                    p = quote_str(&format!("^(?:{})$", r.pattern))
                ),
            )
            .await?
            .unwrap_or(0.0);
            (
                n == 0.0,
                format!("{} rows not matching", fmt_num(n)),
                format!("/{}/", r.pattern),
            )
        } else if let Some(r) = &check.references {
            let key = r.key.clone().unwrap_or_else(|| r.column.clone());
            let n = scalar(
                &engine,
                &format!(
                    "SELECT COUNT(*) FROM {ds} AS d WHERE d.{c} IS NOT NULL AND NOT EXISTS \
                     (SELECT 1 FROM {t} AS r WHERE CAST(r.{k} AS VARCHAR) = CAST(d.{c} AS VARCHAR))",
                    c = quote_ident(&r.column),
                    k = quote_ident(&key),
                    t = r.table
                ),
            )
            .await?
            .unwrap_or(0.0);
            (
                n == 0.0,
                format!("{} orphan rows", fmt_num(n)),
                format!("every {} in {}.{key}", r.column, r.table),
            )
        } else if let Some(f) = &check.freshness {
            let reference_ms = match &f.relative_to {
                Some(t) => {
                    let t = ctx.render(t)?;
                    gridata_engine::timetravel::parse_time_ms(&t).ok_or_else(|| {
                        TaskError::fatal(format!("freshness: '{t}' is not a time"))
                    })?
                }
                None => now_ms,
            };
            let newest = scalar(
                &engine,
                &format!(
                    "SELECT CAST(to_unixtime(MAX({})) AS DOUBLE) FROM {ds}",
                    quote_ident(&f.column)
                ),
            )
            .await?;
            match newest {
                None => (
                    false,
                    "no rows".into(),
                    format!("newest within {}", f.max_age),
                ),
                Some(secs) => {
                    let age_s = (reference_ms as f64 / 1000.0 - secs).max(0.0);
                    (
                        age_s <= f.max_age.0.as_secs_f64(),
                        format!("newest is {:.1}h old", age_s / 3600.0),
                        format!("newest within {}", f.max_age),
                    )
                }
            }
        } else if let Some(s) = &check.sql {
            let q = ctx.render_with(&s.query, &[("dataset", ds)])?;
            let n = scalar(&engine, &format!("SELECT COUNT(*) FROM ({q}) AS offending"))
                .await?
                .unwrap_or(0.0) as u64;
            (
                n <= s.max_rows,
                format!("{n} offending rows"),
                format!("at most {}", s.max_rows),
            )
        } else {
            return Err(TaskError::fatal(format!("check '{name}' has no kind")));
        };
        let sev = match check.severity {
            Severity::Warn => "warn",
            Severity::Error => "error",
        };
        ctx.log(format!(
            "{} {name} ({sev}): {observed}; expected {expected} ({:.2}s)",
            if passed { "PASS" } else { "FAIL" },
            started.elapsed().as_secs_f64()
        ));
        if !passed && check.severity == Severity::Error {
            failed_errors.push(format!("{name}: {observed}, expected {expected}"));
        }
        records.push(gridata_state::CheckRecord {
            task_id: ctx.task_id().to_string(),
            name,
            kind: check.kind().to_string(),
            severity: sev.to_string(),
            passed,
            observed,
            expected,
            dataset: label.clone(),
            snapshot_id: snapshot,
            at_ms: now_ms,
        });
    }
    ctx.record_checks(&records).await?;
    if !failed_errors.is_empty() {
        return Err(TaskError::fatal(format!(
            "{} error check(s) failed on {label}: {}",
            failed_errors.len(),
            failed_errors.join("; ")
        )));
    }
    let passed = records.iter().filter(|r| r.passed).count();
    Ok(TaskResult::with_output(serde_json::json!({
        "dataset": label,
        "snapshot": snapshot,
        "checks": records.len(),
        "passed": passed,
    })))
}
