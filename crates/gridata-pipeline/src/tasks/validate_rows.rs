//! `validate_rows`: row rules. Each row is checked against the rules in
//! order; the first rule it fails quarantines it to
//! `rejected/<pipeline>/<run>/<task>/rows.parquet` with `_reject_rule`,
//! `_reject_reason`, its `_source_file`/`_source_line` and `_run_id`.
//! Rows that pass become the task's output. When the input is staged
//! Parquet with source lines (a landed file, or an earlier check's
//! output), they are not copied: the output is that file read without the
//! quarantined rows' lines (`gridata_engine::skip`). Otherwise they are
//! staged to a file of their own.
//!
//! With source lines, each key rule (`unique`, `exists_in`) first finds the
//! rows it fails from a narrow projection (file, line, keys): an anti join
//! for `exists_in`, a ranking of the duplicated keys' rows for `unique`
//! (found by grouping key hashes, not keys: `gridata_engine::KeySet`). The
//! wide rows then stream through every rule once, looking those verdicts
//! up: no wide row is joined or sorted (see `verdicts`).
//!
//! Invariant: rows in = rows out + rows rejected, per source file, in one
//! pass over the wide rows.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema};
use futures::StreamExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod verdicts;

use crate::landing::{ParquetOut, ValueType};
use crate::model::Input;
use crate::run::{StagedOutput, TaskCtx, TaskError, TaskResult, quote_ident, quote_str};
use gridata_engine::skip::{SkipLinesTable, SkippedLines};

/// Settings of a `validate_rows` task.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateRows {
    /// The rows to check.
    pub input: Input,
    /// Rules, checked in order.
    pub rules: Vec<Rule>,
}

/// One rule: a name and exactly one kind.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Name recorded with rejected rows; default from the kind and column.
    #[serde(default)]
    pub name: Option<String>,
    /// These columns must be present and non-empty.
    #[serde(default)]
    pub not_null: Option<Vec<String>>,
    /// The column's non-empty values must parse as the type.
    #[serde(default)]
    pub parseable: Option<Parseable>,
    /// The column's values (as numbers) must be within bounds.
    #[serde(default)]
    pub range: Option<RangeSpec>,
    /// The column's non-empty values must be one of these.
    #[serde(default)]
    pub accepted_values: Option<AcceptedValues>,
    /// The column's non-empty values must match the regular expression.
    #[serde(default)]
    pub regex: Option<RegexSpec>,
    /// The first row (by source line) of each key is kept; later rows
    /// with the same key are rejected as duplicates.
    #[serde(default)]
    pub unique: Option<Vec<String>>,
    /// The column's non-empty values must exist in another dataset.
    #[serde(default)]
    pub exists_in: Option<ExistsIn>,
    /// A SQL predicate that must be true.
    #[serde(default)]
    pub sql: Option<String>,
}

/// `parseable`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parseable {
    /// Column.
    pub column: String,
    /// Type its values must parse as.
    #[serde(rename = "type")]
    pub ty: ValueType,
}

/// `range`: inclusive bounds.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RangeSpec {
    /// Column.
    pub column: String,
    /// Smallest allowed value.
    #[serde(default)]
    pub min: Option<f64>,
    /// Largest allowed value.
    #[serde(default)]
    pub max: Option<f64>,
}

/// `accepted_values`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptedValues {
    /// Column.
    pub column: String,
    /// Allowed values (compared as text).
    pub values: Vec<String>,
}

/// `regex`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegexSpec {
    /// Column.
    pub column: String,
    /// Regular expression the whole value must match.
    pub pattern: String,
}

/// `exists_in`: a key lookup in a table or an earlier task's output.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExistsIn {
    /// Column of the checked rows.
    pub column: String,
    /// Dataset that must contain the value.
    #[serde(flatten)]
    pub dataset: Input,
    /// Column of that dataset. Default: same as `column`.
    #[serde(default)]
    pub key: Option<String>,
}

impl Rule {
    /// How many kinds are set (valid rules have one).
    pub fn kind_count(&self) -> usize {
        [
            self.not_null.is_some(),
            self.parseable.is_some(),
            self.range.is_some(),
            self.accepted_values.is_some(),
            self.regex.is_some(),
            self.unique.is_some(),
            self.exists_in.is_some(),
            self.sql.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count()
    }

    /// The rule's name: given, or `<kind>_<column>`.
    pub fn display_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        if let Some(c) = &self.not_null {
            format!("not_null_{}", c.join("_"))
        } else if let Some(p) = &self.parseable {
            format!("parseable_{}", p.column)
        } else if let Some(r) = &self.range {
            format!("range_{}", r.column)
        } else if let Some(a) = &self.accepted_values {
            format!("accepted_values_{}", a.column)
        } else if let Some(r) = &self.regex {
            format!("regex_{}", r.column)
        } else if let Some(u) = &self.unique {
            format!("unique_{}", u.join("_"))
        } else if let Some(e) = &self.exists_in {
            format!("exists_in_{}", e.column)
        } else {
            "sql".into()
        }
    }
}

fn text(c: &str) -> String {
    format!("CAST({} AS VARCHAR)", quote_ident(c))
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The parts of the checking query.
#[derive(Default)]
struct Plan {
    windows: Vec<String>,
    /// A relation with its alias, and the join condition.
    joins: Vec<(String, String)>,
    cases: Vec<(String, String, String)>,
    /// Key rules with source lines: a query of the rows each fails, as
    /// (`__f` file, `__l` line, `__rule` index, `__first` line or NULL).
    /// A `unique` rule whose keys are all distinct needs none.
    key_queries: Vec<String>,
    /// Some rule looks its verdict up (a key rule with source lines).
    verdicts: bool,
}

/// `base` joined to each rule's relation by a RIGHT JOIN that keeps every
/// row of `base`; the rules' relations are the build sides.
fn chain(base: String, joins: &[(String, String)]) -> String {
    let mut from = base;
    for (n, (factor, on)) in joins.iter().enumerate() {
        from = if n == 0 {
            format!("{factor} RIGHT JOIN {from} ON {on}")
        } else {
            format!("{factor} RIGHT JOIN ({from}) ON {on}")
        };
    }
    from
}

/// Columns pass through unchanged; the columns the rules read decide which
/// rows pass (FILTER), and `exists_in` keys join (JOIN). Custom SQL rules
/// are not analysed.
fn rule_lineage(cfg: &ValidateRows, columns: &[String]) -> gridata_metadata::ColumnLineage {
    use gridata_metadata::Subtype;
    let input = TaskCtx::input_dataset(&cfg.input);
    let mut l = gridata_metadata::ColumnLineage::identity(&input, columns);
    let mut rows = |ds: &str, col: &str, sub: Subtype| {
        l.dataset
            .entry((ds.to_string(), col.to_string()))
            .or_default()
            .insert(sub);
    };
    for r in &cfg.rules {
        let mut cols: Vec<&str> = Vec::new();
        cols.extend(r.not_null.iter().flatten().map(String::as_str));
        cols.extend(r.unique.iter().flatten().map(String::as_str));
        cols.extend(r.parseable.as_ref().map(|p| p.column.as_str()));
        cols.extend(r.range.as_ref().map(|p| p.column.as_str()));
        cols.extend(r.accepted_values.as_ref().map(|p| p.column.as_str()));
        cols.extend(r.regex.as_ref().map(|p| p.column.as_str()));
        for c in cols {
            rows(&input, c, Subtype::Filter);
        }
        if let Some(e) = &r.exists_in {
            rows(&input, &e.column, Subtype::Join);
            let key = e.key.as_deref().unwrap_or(&e.column);
            rows(&TaskCtx::input_dataset(&e.dataset), key, Subtype::Join);
        }
    }
    l
}

pub(crate) async fn run(cfg: &ValidateRows, ctx: &TaskCtx) -> Result<TaskResult, TaskError> {
    let engine = ctx.session().await?;
    // Without file statistics the planner keeps each join as written, with
    // the rule's relation as the build side. With them it may swap in the
    // input, whose estimate can look smaller (an aggregate's estimate is its
    // input's), and hash every input row. Under a memory limit, large joins
    // sort and merge instead, and the statistics let small relations (a
    // dimension table's keys) still be broadcast.
    if gridata_engine::memory_limit().is_none() {
        engine
            .context()
            .sql("SET datafusion.execution.collect_statistics = false")
            .await
            .map_err(TaskError::fatal)?;
    }
    let mut result = TaskResult::default();
    let (df, staged_input) = ctx.input_staged(&engine, &cfg.input, &mut result).await?;
    let input_schema = df.schema().as_arrow().clone();
    let has_lines = input_schema.field_with_name("_source_line").is_ok();
    let has_file = input_schema.field_with_name("_source_file").is_ok();
    // Staged rows with source lines are not copied: the accepted rows are
    // the staged file read without the rejected rows' lines.
    let skipping = match staged_input {
        Some(s) if has_lines && has_file => Some(s),
        _ => None,
    };
    engine
        .register("__input", df.into_view())
        .map_err(TaskError::fatal)?;

    // With a row's source file and line, each key rule first finds the rows
    // it fails from a narrow projection, and the row rules look those
    // verdicts up (see `verdicts`); without them, the key rules join the
    // wide rows.
    let narrow = has_lines;
    // The verdicts are looked up once per row, as columns of the input.
    let (v_rule, v_first) = ("\"__w\".\"__verdict\"", "\"__w\".\"__verdict_first\"");
    let mut plan = Plan::default();
    // The key rules carry each row's file as a number (see `verdicts`).
    let file_ids = Arc::new(verdicts::FileIds::default());
    engine.context().register_udf(file_ids.udf());
    let file_id = format!(
        "\"{}\"({})",
        verdicts::FILE_ID_FN,
        if has_file { "\"_source_file\"" } else { "''" }
    );
    for (i, rule) in cfg.rules.iter().enumerate() {
        let name = rule.display_name();
        let (cond, reason) = if let Some(cols) = &rule.not_null {
            let conds: Vec<String> = cols
                .iter()
                .map(|c| format!("({} IS NULL OR TRIM({}) = '')", quote_ident(c), text(c)))
                .collect();
            let which: Vec<String> = cols
                .iter()
                .map(|c| {
                    format!(
                        "CASE WHEN {} IS NULL OR TRIM({}) = '' THEN {} END",
                        quote_ident(c),
                        text(c),
                        quote_str(c)
                    )
                })
                .collect();
            (
                conds.join(" OR "),
                format!(
                    "'required value missing: ' || concat_ws(', ', {})",
                    which.join(", ")
                ),
            )
        } else if let Some(p) = &rule.parseable {
            let c = quote_ident(&p.column);
            (
                format!(
                    "({c} IS NOT NULL AND TRIM({t}) <> '' AND TRY_CAST(TRIM({t}) AS {ty}) IS NULL)",
                    t = text(&p.column),
                    ty = p.ty.sql()
                ),
                format!(
                    "{} || ' ''' || {} || ''' is not a valid {}'",
                    quote_str(&p.column),
                    text(&p.column),
                    format!("{:?}", p.ty).to_lowercase()
                ),
            )
        } else if let Some(r) = &rule.range {
            let v = format!("TRY_CAST({} AS DOUBLE)", text(&r.column));
            let mut parts = Vec::new();
            if let Some(min) = r.min {
                parts.push(format!("{v} < {}", num(min)));
            }
            if let Some(max) = r.max {
                parts.push(format!("{v} > {}", num(max)));
            }
            let bounds = format!(
                "[{}, {}]",
                r.min.map(num).unwrap_or_else(|| "-inf".into()),
                r.max.map(num).unwrap_or_else(|| "inf".into())
            );
            (
                format!("({})", parts.join(" OR ")),
                format!(
                    "{} || ' ' || {} || ' is outside {bounds}'",
                    quote_str(&r.column),
                    text(&r.column)
                ),
            )
        } else if let Some(a) = &rule.accepted_values {
            let list: Vec<String> = a.values.iter().map(|v| quote_str(v)).collect();
            (
                format!(
                    "({c} IS NOT NULL AND {t} NOT IN ({l}))",
                    c = quote_ident(&a.column),
                    t = text(&a.column),
                    l = list.join(", ")
                ),
                format!(
                    "{} || ' ''' || {} || ''' is not one of {}'",
                    quote_str(&a.column),
                    text(&a.column),
                    a.values.join(", ").replace('\'', "''")
                ),
            )
        } else if let Some(r) = &rule.regex {
            let anchored = format!("^(?:{})$", r.pattern);
            (
                format!(
                    "({c} IS NOT NULL AND NOT regexp_like({t}, {p}))",
                    c = quote_ident(&r.column),
                    t = text(&r.column),
                    p = quote_str(&anchored)
                ),
                format!(
                    "{} || ' ''' || {} || ''' does not match /' || {} || '/'",
                    quote_str(&r.column),
                    text(&r.column),
                    quote_str(&r.pattern)
                ),
            )
        } else if let Some(cols) = &rule.unique {
            let part: Vec<String> = cols.iter().map(|c| quote_ident(c)).collect();
            let key: Vec<String> = cols
                .iter()
                .map(|c| format!("COALESCE({}, '')", text(c)))
                .collect();
            let describe = |first: String| {
                format!(
                    "'duplicate {}: ' || concat_ws(', ', {}){first}",
                    cols.join(", "),
                    key.join(", ")
                )
            };
            if has_lines {
                plan.verdicts = true;
                // A first pass groups the keys' 63-bit hashes, not the keys;
                // only the rows of hashes seen twice are then ranked by key,
                // so memory follows the duplicates, not the input. Every row
                // of a duplicated key is among them, so ranks are exact.
                let repeated = engine
                    .repeated_key_hashes("\"__input\"", &part)
                    .await
                    .map_err(|e| TaskError::fatal(format!("rule {name}: {e}")))?;
                if !repeated.is_empty() {
                    let set = format!("__gridata_repeated{i}");
                    engine
                        .context()
                        .register_udf(gridata_engine::KeySet::udf(&set, repeated));
                    let mut order = Vec::new();
                    if has_file {
                        order.push("\"_source_file\"".to_string());
                    }
                    order.push("\"_source_line\"".to_string());
                    let by = format!(
                        "PARTITION BY {} ORDER BY {}",
                        part.join(", "),
                        order.join(", ")
                    );
                    // The later rows of each duplicated key fail, with the
                    // key's first line.
                    plan.key_queries.push(format!(
                        "SELECT \"__f\", \"__l\", {i} AS \"__rule\", \"__first\" FROM \
                         (SELECT {file_id} AS \"__f\", \"_source_line\" AS \"__l\", \
                          ROW_NUMBER() OVER ({by}) AS \"__rn\", \
                          FIRST_VALUE(\"_source_line\") OVER ({by}) AS \"__first\" \
                          FROM \"__input\" WHERE \"{set}\"({plain})) AS \"__x\" \
                         WHERE \"__rn\" > 1",
                        plain = part.join(", "),
                    ));
                }
                (
                    format!("{} = {i}", v_rule),
                    describe(format!(
                        " || ' (first at line ' || CAST({} AS VARCHAR) || ')'",
                        v_first
                    )),
                )
            } else {
                plan.windows.push(format!(
                    "ROW_NUMBER() OVER (PARTITION BY {}) AS \"__dup{i}\"",
                    part.join(", ")
                ));
                (format!("\"__dup{i}\" > 1"), describe(String::new()))
            }
        } else if let Some(e) = &rule.exists_in {
            let key = e.key.clone().unwrap_or_else(|| e.column.clone());
            let refdf = ctx.input_frame(&engine, &e.dataset, &mut result).await?;
            let alias = format!("__ref{i}");
            engine
                .register(&alias, refdf.into_view())
                .map_err(TaskError::fatal)?;
            let c = quote_ident(&e.column);
            // Each rule's key has a name of its own: DataFusion 53 resolves
            // pushed-down filter columns by name (apache/datafusion#25244),
            // and two `__k` columns gave one rule the other's verdicts.
            // An anti join needs no DISTINCT (a key that repeats still
            // matches), and under a limit it would be a spilling aggregate
            // over as many keys as rows; the left join below needs one.
            let keys = |distinct: &str| {
                format!(
                    "(SELECT {distinct}{k} AS \"__k{i}\" FROM {a}) AS \"__j{i}\"",
                    k = text(&key),
                    a = quote_ident(&alias),
                )
            };
            let on = format!("CAST(\"__w\".{c} AS VARCHAR) = \"__j{i}\".\"__k{i}\"");
            let cond = if narrow {
                plan.verdicts = true;
                // The rows whose key is missing, by an anti join of the
                // narrow rows and the keys. NULL keys pass; they are
                // dropped with the passing rows, not by a WHERE, which would
                // shrink the narrow side's estimate until it looked small
                // enough to broadcast.
                // The narrow rows are what the join sorts and spills: the
                // file as a number, the line, and the key once.
                let kc = format!("\"__c{i}\"");
                plan.key_queries.push(format!(
                    "SELECT \"__w\".\"__fid\" AS \"__f\", \"__w\".\"_source_line\" AS \"__l\", \
                     CASE WHEN \"__w\".{kc} IS NOT NULL THEN {i} END AS \"__rule\", \
                     CAST(NULL AS BIGINT) AS \"__first\" \
                     FROM {keys} RIGHT ANTI JOIN \
                     (SELECT {file_id} AS \"__fid\", \"_source_line\", {t} AS {kc} \
                      FROM \"__input\") AS \"__w\" \
                     ON \"__w\".{kc} = \"__j{i}\".\"__k{i}\"",
                    t = text(&e.column),
                    keys = keys(""),
                ));
                format!("{} = {i}", v_rule)
            } else {
                plan.joins.push((keys("DISTINCT "), on));
                format!("(\"__w\".{c} IS NOT NULL AND \"__j{i}\".\"__k{i}\" IS NULL)")
            };
            (
                cond,
                format!(
                    "{} || ' ''' || CAST(\"__w\".{} AS VARCHAR) || ''' not found in {}'",
                    quote_str(&e.column),
                    quote_ident(&e.column),
                    e.dataset.describe().replace('\'', "")
                ),
            )
        } else if let Some(pred) = &rule.sql {
            let pred = ctx.render(pred)?;
            (
                format!("NOT COALESCE(({pred}), FALSE)"),
                quote_str(&format!("predicate failed: {pred}")),
            )
        } else {
            return Err(TaskError::fatal(format!("rule {} has no kind", i + 1)));
        };
        plan.cases.push((cond, quote_str(&name), reason));
    }

    let windows = if plan.windows.is_empty() {
        String::new()
    } else {
        format!(", {}", plan.windows.join(", "))
    };
    let rule_case: Vec<String> = plan
        .cases
        .iter()
        .map(|(c, n, _)| format!("WHEN {c} THEN {n}"))
        .collect();
    let reason_case: Vec<String> = plan
        .cases
        .iter()
        .map(|(c, _, r)| format!("WHEN {c} THEN {r}"))
        .collect();
    let cols: Vec<String> = input_schema
        .fields()
        .iter()
        .map(|f| format!("\"__w\".{}", quote_ident(f.name())))
        .collect();
    // Without source lines, the key rules join the wide rows (see `chain`).
    let lookups = if !plan.verdicts {
        String::new()
    } else {
        let args = format!(
            "({}, \"_source_line\")",
            if has_file { "\"_source_file\"" } else { "''" }
        );
        format!(
            ", {}{args} AS \"__verdict\", {}{args} AS \"__verdict_first\"",
            verdicts::RULE_FN,
            verdicts::FIRST_FN
        )
    };
    let base = format!("(SELECT *{windows}{lookups} FROM \"__input\") AS \"__w\"");
    if plan.verdicts {
        let found = if plan.key_queries.is_empty() {
            verdicts::Verdicts::default()
        } else {
            key_verdicts(&engine, ctx, &plan.key_queries, &file_ids).await?
        };
        ctx.log(format!("key rules: {} rows fail one", found.rows()));
        for udf in found.into_udfs() {
            engine.context().register_udf(udf);
        }
    }
    let from = chain(base, &plan.joins);
    // The reason is built only for rejected rows; the rule's CASE is
    // evaluated once (common subexpression) for both columns.
    let query = format!(
        "SELECT {cols}, CASE {rules} END AS \"_reject_rule\",
                CASE WHEN (CASE {rules} END) IS NOT NULL THEN CASE {reasons} END END AS \"_reject_reason\"
         FROM {from}",
        cols = cols.join(", "),
        rules = rule_case.join(" "),
        reasons = reason_case.join(" "),
    );
    tracing::debug!(task = ctx.task_id(), %query, "row rules");
    let checked = engine
        .sql(&query)
        .await
        .map_err(|e| TaskError::fatal(format!("row rules: {e}")))?;
    let task_ctx = Arc::new(checked.task_ctx());
    let physical = checked
        .create_physical_plan()
        .await
        .map_err(|e| TaskError::fatal(format!("row rules: {e}")))?;
    tracing::debug!(
        task = ctx.task_id(),
        plan = %datafusion::physical_plan::displayable(physical.as_ref()).indent(false),
        "row rules plan"
    );
    let mut stream = datafusion::physical_plan::execute_stream(physical.clone(), task_ctx)
        .map_err(|e| TaskError::fatal(format!("row rules: {e}")))?;

    let good_schema = Arc::new(Schema::new(
        input_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<Field>>(),
    ));
    // Quarantine files are kept: a dictionary (a staged `_source_file`) is
    // written as its plain values.
    let mut bad_fields: Vec<Field> = good_schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Dictionary(_, v) => f.as_ref().clone().with_data_type(v.as_ref().clone()),
            _ => f.as_ref().clone(),
        })
        .collect();
    bad_fields.push(Field::new("_reject_rule", DataType::Utf8, true));
    bad_fields.push(Field::new("_reject_reason", DataType::Utf8, true));
    bad_fields.push(Field::new("_run_id", DataType::Utf8, false));
    bad_fields.push(Field::new("_task_id", DataType::Utf8, false));
    let bad_schema = Arc::new(Schema::new(bad_fields));

    let staged_uri = ctx.staging_uri("accepted.parquet");
    let rejected_uri = ctx.rejected_uri("rows.parquet");
    let mut good = match skipping {
        Some(_) => None,
        None => {
            Some(ParquetOut::create(&staged_uri, good_schema.clone()).map_err(TaskError::fatal)?)
        }
    };
    let mut rejected_lines = SkippedLines::default();
    let line_idx = good_schema.index_of("_source_line").ok();
    let mut bad: Option<ParquetOut> = None;
    let mut per_file: HashMap<String, (u64, u64)> = HashMap::new();
    let ncols = good_schema.fields().len();
    let file_idx = good_schema.index_of("_source_file").ok();
    let (mut rows_in, mut rows_bad) = (0u64, 0u64);
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| TaskError::fatal(format!("row rules: {e}")))?;
        let rule = batch.column(ncols).clone();
        let rejected = arrow::compute::is_not_null(&rule).map_err(TaskError::fatal)?;
        let accepted = arrow::compute::not(&rejected).map_err(TaskError::fatal)?;
        rows_in += batch.num_rows() as u64;
        if let Some(fi) = file_idx {
            let runs = gridata_engine::skip::file_runs(batch.column(fi).as_ref())
                .map_err(|e| TaskError::fatal(format!("row rules: {e}")))?;
            for (at, n, f) in runs {
                let bad = rejected.slice(at, n).true_count() as u64;
                let e = per_file.entry(f.to_string()).or_default();
                e.0 += n as u64 - bad;
                e.1 += bad;
            }
        }
        if let Some(good) = good.as_mut() {
            let data = conform(
                &batch
                    .project(&(0..ncols).collect::<Vec<_>>())
                    .map_err(TaskError::fatal)?,
                &good_schema,
            )?;
            good.write(&filter_record_batch(&data, &accepted).map_err(TaskError::fatal)?)
                .map_err(TaskError::fatal)?;
        }
        let nbad = rejected.true_count();
        if nbad > 0 {
            rows_bad += nbad as u64;
            let with_reason = batch
                .project(&(0..ncols + 2).collect::<Vec<_>>())
                .map_err(TaskError::fatal)?;
            let sel = filter_record_batch(&with_reason, &rejected).map_err(TaskError::fatal)?;
            if good.is_none()
                && let (Some(f), Some(l)) = (file_idx, line_idx)
            {
                rejected_lines
                    .insert_rows(sel.column(f), sel.column(l))
                    .map_err(|e| TaskError::fatal(format!("row rules: {e}")))?;
            }
            let n = sel.num_rows();
            let mut cols: Vec<arrow::array::ArrayRef> = Vec::with_capacity(ncols + 4);
            for (i, f) in bad_schema.fields().iter().enumerate().take(ncols + 2) {
                cols.push(
                    arrow::compute::cast(sel.column(i), f.data_type()).map_err(TaskError::fatal)?,
                );
            }
            cols.push(Arc::new(arrow::array::StringArray::from(vec![
                ctx.run_id();
                n
            ])));
            cols.push(Arc::new(arrow::array::StringArray::from(vec![
                ctx.task_id();
                n
            ])));
            let out = RecordBatch::try_new(bad_schema.clone(), cols).map_err(TaskError::fatal)?;
            if bad.is_none() {
                bad = Some(
                    ParquetOut::create_kept(&rejected_uri, bad_schema.clone())
                        .map_err(TaskError::fatal)?,
                );
            }
            bad.as_mut()
                .expect("created")
                .write(&out)
                .map_err(TaskError::fatal)?;
        }
    }
    tracing::debug!(
        task = ctx.task_id(),
        plan = %gridata_engine::plan_metrics(physical.as_ref()),
        "row rules plan, executed"
    );
    let storage = ctx.storage();
    let written = match good {
        Some(good) => Some(
            good.close()
                .map_err(TaskError::fatal)?
                .upload(storage)
                .await
                .map_err(TaskError::retryable)?,
        ),
        None => None,
    };
    let rejected_file = match bad {
        Some(b) => Some(
            b.close()
                .map_err(TaskError::fatal)?
                .upload(storage)
                .await
                .map_err(TaskError::retryable)?
                .0,
        ),
        None => None,
    };
    let rows_good = match &written {
        Some((_, rows)) => *rows,
        None => rows_in - rows_bad,
    };
    debug_assert_eq!(rows_in, rows_good + rows_bad);
    ctx.log(format!(
        "{rows_in} rows checked: {rows_good} accepted, {rows_bad} quarantined{}",
        rejected_file
            .as_ref()
            .map(|f| format!(" to {f}"))
            .unwrap_or_default()
    ));
    // The output keeps its file statistics for the tasks that read it (a
    // write sizes its writers by them).
    engine
        .context()
        .sql("SET datafusion.execution.collect_statistics = true")
        .await
        .map_err(TaskError::fatal)?;
    let input_skipped = skipping.as_ref().and_then(|s| s.skipped.clone());
    let staged = match (written, skipping) {
        (Some((file, _)), _) => StagedOutput::file(&file),
        (None, Some(input)) => {
            let mut without = input.output.without;
            without.extend(rejected_file.clone());
            StagedOutput {
                without,
                ..input.output
            }
        }
        (None, None) => unreachable!("rows are either written or skipped"),
    };
    let mut provider = ctx.parquet_view(&engine, &staged.file).await?;
    if !staged.without.is_empty() {
        let mut skipped = input_skipped.map(|s| (*s).clone()).unwrap_or_default();
        skipped.union(&rejected_lines);
        provider = Arc::new(
            SkipLinesTable::try_new(provider, Arc::new(skipped)).map_err(TaskError::fatal)?,
        );
    }
    let columns: Vec<String> = provider
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    ctx.set_lineage(rule_lineage(cfg, &columns));
    ctx.set_output_staged(provider, staged.clone());
    // Lines quarantined while landing a raw input count as rows in too.
    let malformed = result.rows.rows_rejected;
    result.rows.rows_in = rows_in + malformed;
    result.rows.rows_out = rows_good;
    result.rows.rows_rejected = malformed + rows_bad;
    for (file, (_, rejected)) in per_file {
        result.add_file(&file, 0, rejected, 0);
    }
    result.output = serde_json::json!({
        "accepted": staged.file,
        "accepted_without": staged.without,
        "rejected": rejected_file,
    });
    Ok(result)
}

/// Runs the key rules' queries (together, as one UNION ALL) and collects
/// the rows that fail one.
async fn key_verdicts(
    engine: &gridata_engine::Engine,
    ctx: &TaskCtx,
    queries: &[String],
    file_ids: &verdicts::FileIds,
) -> Result<verdicts::Verdicts, TaskError> {
    let query = queries.join(" UNION ALL ");
    tracing::debug!(task = ctx.task_id(), %query, "key rules");
    let fail = |e: datafusion::error::DataFusionError| TaskError::fatal(format!("key rules: {e}"));
    let df = engine
        .sql(&query)
        .await
        .map_err(|e| TaskError::fatal(format!("key rules: {e}")))?;
    let task_ctx = Arc::new(df.task_ctx());
    let physical = df.create_physical_plan().await.map_err(fail)?;
    tracing::debug!(
        task = ctx.task_id(),
        plan = %datafusion::physical_plan::displayable(physical.as_ref()).indent(false),
        "key rules plan"
    );
    let mut stream =
        datafusion::physical_plan::execute_stream(physical.clone(), task_ctx).map_err(fail)?;
    let mut found = verdicts::Verdicts::default();
    while let Some(batch) = stream.next().await {
        found
            .add(&batch.map_err(fail)?, file_ids)
            .map_err(|e| TaskError::fatal(format!("key rules: {e}")))?;
    }
    tracing::debug!(
        task = ctx.task_id(),
        plan = %gridata_engine::plan_metrics(physical.as_ref()),
        "key rules plan, executed"
    );
    Ok(found)
}

/// Cast a batch's columns to `schema` (view types to plain ones).
fn conform(batch: &RecordBatch, schema: &Arc<Schema>) -> Result<RecordBatch, TaskError> {
    let cols = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                arrow::compute::cast(c, f.data_type()).map_err(TaskError::fatal)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), cols).map_err(TaskError::fatal)
}
