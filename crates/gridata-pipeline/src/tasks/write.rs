//! `write`: write an upstream task's rows into an Iceberg table.
//!
//! The first run creates the table from the rows' schema with the declared
//! partitioning and the pipeline's dataset metadata as properties. The
//! commit is **staged** (write-audit-publish): readers keep seeing the
//! previous snapshot until every `quality` task downstream of this one has
//! passed; then the run publishes it. A failed run never publishes.
//!
//! Every mode is idempotent for a rerun with the same parameters:
//! `overwrite` and `overwrite_partitions` replace what they cover, `merge`
//! upserts on `key`, and `append` replaces the files that an earlier run of
//! the same task and parameters appended (matched by the snapshot summary's
//! `gridata.write-key`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use datafusion::common::JoinType;
use datafusion::prelude::{DataFrame, col};
use futures::StreamExt;
use gridata_core::TableName;
use gridata_engine::LakeTableProvider;
use gridata_lake::iceberg::spec::Operation;
use gridata_lake::{CommitRequest, LakeTable, Removal};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::run::{StagedWrite, TaskCtx, TaskError, TaskResult};

/// Settings of a `write` task.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Write {
    /// The upstream task whose rows are written.
    pub input: String,
    /// Target table, `namespace.table`.
    pub table: String,
    /// How new rows relate to existing ones.
    pub mode: WriteMode,
    /// Partition spec used when the table is created, e.g.
    /// `["month(order_ts)", "order_date"]`.
    #[serde(default)]
    pub partition_by: Vec<String>,
    /// Key columns, for `merge`.
    #[serde(default)]
    pub key: Vec<String>,
    /// Table properties set when the table is created.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// Write modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// Add the rows.
    Append,
    /// Replace every row of the table.
    Overwrite,
    /// Replace the partitions the rows fall in.
    OverwritePartitions,
    /// Upsert on `key`: rows whose key exists replace the old row.
    Merge,
}

fn lake_err(e: impl std::fmt::Display) -> TaskError {
    TaskError::fatal(e.to_string())
}

pub(crate) async fn run(cfg: &Write, ctx: &TaskCtx) -> Result<TaskResult, TaskError> {
    let name = TableName::parse(&cfg.table).map_err(lake_err)?;
    let engine = ctx.session().await?;
    let df = ctx.task_frame(&engine, &cfg.input)?;
    let lake = ctx.lake();
    let table = match lake.load_table(&name).await {
        Ok(t) => t,
        Err(gridata_lake::Error::NoSuchTable { .. }) => create(cfg, ctx, &name, &df).await?,
        Err(e) => return Err(TaskError::retryable(e)),
    };
    let write_key = format!(
        "{}/{}/{}",
        ctx.pipeline_id(),
        ctx.task_id(),
        gridata_state::params_key(ctx.params())
    );

    // Merge: the keys must be unique in the new rows.
    if cfg.mode == WriteMode::Merge {
        let keys: Vec<_> = cfg.key.iter().map(|k| col(quote(k))).collect();
        let dups = df
            .clone()
            .aggregate(
                keys,
                vec![datafusion::functions_aggregate::count::count_all().alias("__n")],
            )
            .and_then(|d| d.filter(col("__n").gt(datafusion::prelude::lit(1))))
            .map_err(lake_err)?
            .limit(0, Some(1))
            .map_err(lake_err)?
            .count()
            .await
            .map_err(lake_err)?;
        if dups > 0 {
            return Err(TaskError::fatal(format!(
                "merge into '{name}': the new rows repeat a key ({}); deduplicate upstream",
                cfg.key.join(", ")
            )));
        }
    }

    let (counts, added) = write_rows(ctx, &engine, &table, df.clone()).await?;
    let rows: u64 = counts.values().sum();
    let mut properties = HashMap::from([
        ("gridata.run-id".to_string(), ctx.run_id().to_string()),
        (
            "gridata.pipeline".to_string(),
            ctx.pipeline_id().to_string(),
        ),
        ("gridata.task".to_string(), ctx.task_id().to_string()),
        ("gridata.write-key".to_string(), write_key.clone()),
    ]);
    let (operation, removal, mut extra) = match cfg.mode {
        WriteMode::Append => {
            let previous = files_of_write_key(ctx, &table, &write_key).await?;
            if previous.is_empty() {
                (Operation::Append, Removal::None, vec![])
            } else {
                ctx.log(format!(
                    "replacing {} file(s) appended by an earlier run with the same parameters",
                    previous.len()
                ));
                (Operation::Overwrite, Removal::Files(previous), vec![])
            }
        }
        WriteMode::Overwrite => (Operation::Overwrite, Removal::All, vec![]),
        WriteMode::OverwritePartitions => (Operation::Overwrite, Removal::Partitions, vec![]),
        WriteMode::Merge => {
            let (removed, rewritten, replaced) =
                merge_rewrites(ctx, &engine, &table, &df, &cfg.key).await?;
            ctx.log(format!(
                "merge: {replaced} existing row(s) replaced, {} file(s) rewritten",
                removed.len()
            ));
            properties.insert("gridata.merge-replaced-rows".into(), replaced.to_string());
            if removed.is_empty() {
                (Operation::Append, Removal::None, vec![])
            } else {
                (Operation::Overwrite, Removal::Files(removed), rewritten)
            }
        }
    };
    let added_paths: Vec<String> = added
        .iter()
        .chain(extra.iter())
        .map(|f| f.file_path().to_string())
        .collect();
    let mut all = added;
    all.append(&mut extra);
    if all.is_empty() && matches!(removal, Removal::None) {
        ctx.log(format!("no rows to write to {name}"));
        let mut result =
            TaskResult::with_output(serde_json::json!({ "table": name.to_string(), "rows": 0 }));
        for (file, n) in counts {
            result.add_file(&file, 0, 0, n);
        }
        return Ok(result);
    }
    let request = CommitRequest {
        operation,
        added: all,
        removal,
        properties,
        stage: true,
    };
    let parent = table.metadata.current_snapshot_id();
    let committed = lake
        .commit(&name, request.clone())
        .await
        .map_err(|e| match e {
            gridata_lake::Error::ConcurrentChange { .. }
            | gridata_lake::Error::CommitConflict { .. } => TaskError::retryable(e),
            other => TaskError::fatal(other),
        })?;
    let staged = committed
        .metadata
        .snapshots()
        .filter(|s| {
            s.summary()
                .additional_properties
                .get("gridata.run-id")
                .map(String::as_str)
                == Some(ctx.run_id())
        })
        .filter(|s| {
            s.summary()
                .additional_properties
                .get("gridata.task")
                .map(String::as_str)
                == Some(ctx.task_id())
        })
        .max_by_key(|s| s.sequence_number())
        .map(|s| s.snapshot_id())
        .ok_or_else(|| TaskError::fatal(format!("staged snapshot of '{name}' not found")))?;
    ctx.log(format!(
        "staged snapshot {staged} of {name}: {rows} rows in {} file(s); published after its checks pass",
        added_paths.len()
    ));
    ctx.stage(StagedWrite {
        task_id: ctx.task_id().to_string(),
        table: name.clone(),
        snapshot_id: staged,
        parent,
        request: Some(request),
        added: added_paths.clone(),
    });
    let lineage = ctx.resolved_lineage(&cfg.input);
    let mut result = TaskResult::with_output(serde_json::json!({
        "table": name.to_string(),
        "lineage": lineage.map(|l| l.to_json()),
        "staged_snapshot": staged,
        "parent_snapshot": parent,
        "rows": rows,
        "files": added_paths.len(),
    }));
    result.rows.rows_in = rows;
    result.rows.rows_out = rows;
    for (file, n) in counts {
        result.add_file(&file, 0, 0, n);
    }
    Ok(result)
}

fn quote(c: &str) -> String {
    format!("\"{}\"", c.replace('"', "\"\""))
}

async fn create(
    cfg: &Write,
    ctx: &TaskCtx,
    name: &TableName,
    df: &DataFrame,
) -> Result<LakeTable, TaskError> {
    let lake = ctx.lake();
    let schema = gridata_lake::schema::schema_from_arrow(df.schema().as_arrow())
        .map_err(|e| TaskError::fatal(format!("cannot create '{name}': {e}")))?;
    let spec = gridata_lake::schema::parse_partition_spec(&cfg.partition_by, &schema)
        .map_err(|e| TaskError::fatal(format!("cannot create '{name}': {e}")))?;
    let ns = name.namespace_str();
    if lake.catalog().namespace_properties(&ns).await.is_err() {
        let _ = lake.create_namespace(&ns, &Default::default()).await;
    }
    let mut props: HashMap<String, String> = cfg.properties.clone().into_iter().collect();
    if let Some(meta) = ctx.dataset_meta(&name.to_string()) {
        if let Some(d) = &meta.description {
            props.insert("comment".into(), d.clone());
        }
        if !meta.owners.is_empty() {
            props.insert("owner".into(), meta.owners.join(","));
        }
        if !meta.tags.is_empty() {
            props.insert("gridata.tags".into(), meta.tags.join(","));
        }
        if let Some(d) = &meta.domain {
            props.insert("gridata.domain".into(), d.clone());
        }
        for (c, d) in &meta.columns {
            props.insert(format!("gridata.column.{c}.description"), d.clone());
        }
    }
    props.insert("gridata.created-by".into(), ctx.pipeline_id().to_string());
    match lake.create_table(name, schema, spec, props).await {
        Ok(t) => {
            ctx.log(format!("created table {name}"));
            Ok(t)
        }
        // Another run created it first.
        Err(gridata_lake::Error::TableExists { .. }) => {
            lake.load_table(name).await.map_err(TaskError::retryable)
        }
        Err(e) => Err(TaskError::fatal(e)),
    }
}

/// Write the rows as data files (not committed), counting rows per
/// `_source_file`; large inputs get one writer per core.
async fn write_rows(
    ctx: &TaskCtx,
    engine: &gridata_engine::Engine,
    table: &LakeTable,
    df: DataFrame,
) -> Result<
    (
        HashMap<String, u64>,
        Vec<gridata_lake::iceberg::spec::DataFile>,
    ),
    TaskError,
> {
    let target = table.arrow_schema(None).map_err(TaskError::fatal)?;
    let name = table.name.to_string();
    let file_idx = df.schema().as_arrow().index_of("_source_file").ok();
    let (plan, parts) = engine
        .write_streams(df)
        .await
        .map_err(|e| TaskError::fatal(format!("reading input of {name}: {e}")))?;
    let counts = Arc::new(std::sync::Mutex::new(HashMap::<String, u64>::new()));
    let mut streams: Vec<gridata_lake::BatchStream> = Vec::with_capacity(parts.len());
    for stream in parts {
        let c2 = counts.clone();
        let (name, target) = (name.clone(), target.clone());
        streams.push(Box::pin(stream.map(move |b| {
            let b = b.map_err(|e| gridata_lake::Error::DataMismatch {
                table: name.clone(),
                reason: e.strip_backtrace(),
            })?;
            if let Some(i) = file_idx {
                let runs = gridata_engine::skip::file_runs(b.column(i).as_ref()).map_err(|e| {
                    gridata_lake::Error::DataMismatch {
                        table: name.clone(),
                        reason: e.strip_backtrace(),
                    }
                })?;
                let mut m = c2.lock().expect("counts");
                for (_, n, f) in runs {
                    *m.entry(f.to_string()).or_default() += n as u64;
                }
            }
            gridata_lake::conform_batch(&name, &b, &target)
        })));
    }
    let files = ctx
        .lake()
        .write_files(table, streams)
        .await
        .map_err(|e| TaskError::fatal(format!("{e}")))?;
    tracing::debug!(
        task = ctx.task_id(),
        plan = %gridata_engine::plan_metrics(plan.as_ref()),
        "write plan, executed"
    );
    let counts = std::mem::take(&mut *counts.lock().expect("counts"));
    Ok((counts, files))
}

async fn files_of_write_key(
    ctx: &TaskCtx,
    table: &LakeTable,
    key: &str,
) -> Result<HashSet<String>, TaskError> {
    let snaps: HashSet<i64> = table
        .metadata
        .snapshots()
        .filter(|s| {
            s.summary()
                .additional_properties
                .get("gridata.write-key")
                .map(String::as_str)
                == Some(key)
        })
        .map(|s| s.snapshot_id())
        .collect();
    if snaps.is_empty() {
        return Ok(HashSet::new());
    }
    Ok(ctx
        .lake()
        .live_files(table, None)
        .await
        .map_err(TaskError::retryable)?
        .into_iter()
        .filter(|f| snaps.contains(&f.snapshot_id))
        .map(|f| f.file.file_path().to_string())
        .collect())
}

/// For a merge: the live files holding keys of the new rows, their
/// rewrites without those rows, and how many rows are replaced.
async fn merge_rewrites(
    ctx: &TaskCtx,
    engine: &gridata_engine::Engine,
    table: &LakeTable,
    df: &DataFrame,
    key: &[String],
) -> Result<
    (
        HashSet<String>,
        Vec<gridata_lake::iceberg::spec::DataFile>,
        u64,
    ),
    TaskError,
> {
    let lake = ctx.lake();
    let target = table.arrow_schema(None).map_err(TaskError::fatal)?;
    let right: Vec<String> = (0..key.len()).map(|i| format!("__k{i}")).collect();
    let mut key_exprs = Vec::new();
    for (i, k) in key.iter().enumerate() {
        let ty = target
            .field_with_name(k)
            .map_err(|_| {
                TaskError::fatal(format!(
                    "merge key '{k}' is not a column of '{}'",
                    table.name
                ))
            })?
            .data_type()
            .clone();
        key_exprs.push(datafusion::prelude::cast(col(quote(k)), ty).alias(&right[i]));
    }
    let keys = df
        .clone()
        .select(key_exprs)
        .and_then(|d| d.distinct())
        .map_err(lake_err)?
        .cache()
        .await
        .map_err(lake_err)?;
    let left: Vec<&str> = key.iter().map(String::as_str).collect();
    let right_ref: Vec<&str> = right.iter().map(String::as_str).collect();
    let mut removed = HashSet::new();
    let mut rewritten = Vec::new();
    let mut replaced = 0u64;
    for f in lake
        .live_files(table, None)
        .await
        .map_err(TaskError::retryable)?
    {
        let path = f.file.file_path().to_string();
        let provider = LakeTableProvider::new(lake.clone(), table.clone(), None)
            .map_err(TaskError::fatal)?
            .with_files(vec![path.clone()]);
        let fdf = engine
            .context()
            .read_table(Arc::new(provider))
            .map_err(lake_err)?;
        let hits = fdf
            .clone()
            .join(keys.clone(), JoinType::LeftSemi, &left, &right_ref, None)
            .map_err(lake_err)?
            .count()
            .await
            .map_err(lake_err)? as u64;
        if hits == 0 {
            continue;
        }
        replaced += hits;
        removed.insert(path);
        let kept = fdf
            .join(keys.clone(), JoinType::LeftAnti, &left, &right_ref, None)
            .map_err(lake_err)?;
        let (_, files) = write_rows(ctx, engine, table, kept).await?;
        rewritten.extend(files);
    }
    Ok((removed, rewritten, replaced))
}
