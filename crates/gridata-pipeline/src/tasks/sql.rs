//! `sql`: a DataFusion SQL query over named inputs (raw files, tables, or
//! earlier tasks' outputs), producing the task's output under its id.
//!
//! The output is a view: downstream tasks compose it into their own plans,
//! and nothing is materialized unless `materialize: true`. Raw file inputs
//! are landed first (text columns plus `_source_file` and `_source_line`;
//! malformed lines quarantined).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::Input;
use crate::run::{TaskCtx, TaskError, TaskResult};

/// Settings of a `sql` task.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sql {
    /// Inputs by the name the query uses.
    #[serde(default)]
    pub inputs: BTreeMap<String, Input>,
    /// The query (templated). Tables not listed as inputs can be named as
    /// `namespace.table` too.
    pub query: String,
    /// Compute the result once into the staging zone (counting its rows)
    /// instead of passing the plan on. Default false.
    #[serde(default)]
    pub materialize: bool,
}

pub(crate) async fn run(cfg: &Sql, ctx: &TaskCtx) -> Result<TaskResult, TaskError> {
    let engine = ctx.session().await?;
    let mut result = TaskResult::default();
    for (alias, input) in &cfg.inputs {
        let df = ctx.input_frame(&engine, input, &mut result).await?;
        engine
            .register(alias, df.into_view())
            .map_err(|e| TaskError::fatal(format!("input '{alias}': {e}")))?;
    }
    let query = ctx.render(&cfg.query)?;
    let df = engine
        .sql(&query)
        .await
        .map_err(|e| TaskError::fatal(format!("SQL error: {e}")))?;
    ctx.log(format!(
        "planned query with {} columns",
        df.schema().fields().len()
    ));
    let name = |t: &datafusion::common::TableReference| match cfg.inputs.get(t.table()) {
        Some(input) if t.schema().is_none() => Some(TaskCtx::input_dataset(input)),
        _ => t.schema().map(|s| format!("{s}.{}", t.table())),
    };
    match gridata_metadata::column_lineage(df.logical_plan(), &name) {
        Ok(l) => ctx.set_lineage(l),
        Err(e) => ctx.log(format!("no column lineage: {e}")),
    }
    if cfg.materialize {
        let (rows, uri) = ctx.materialize(df, "output").await?;
        result.rows.rows_out = rows;
        ctx.set_output_file(ctx.parquet_view(&engine, &uri).await?, &uri);
    } else {
        ctx.set_output(df.into_view());
    }
    result.output = serde_json::json!({ "materialized": cfg.materialize });
    Ok(result)
}
