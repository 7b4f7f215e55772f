//! Read endpoints shaped for the web UI (and any client that wants the
//! same views): the caller's role, a pipeline's run grid and DAG, the
//! difference between two snapshots, a dataset's check history, and
//! lineage as SVG.
//!
//! Invariants:
//! - Each answers in one request what the UI would otherwise assemble
//!   from many, and stays paginated (the grid takes `limit`/`offset`).
//! - Like every handler, each checks the caller's role first.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use gridata_metadata::svg;
use gridata_state::{DatasetCheck, RunFilter, RunRecord, TaskState};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::api::{ApiQuery, Caller, LineageQuery, TaskInfo, lineage_walk, page, table_name};
use crate::auth::Role;
use crate::error::{ApiError, ApiResult, ErrorBody};

/// Who the caller is.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI {
    /// The caller's role.
    pub role: Role,
    /// No token exists: everyone is admin (the server listens on loopback only).
    pub open: bool,
    /// Sees PII columns unmasked; without it, columns with a masking
    /// policy come back hashed or redacted.
    pub pii: bool,
}

/// The caller's role: what a sign-in checks.
#[utoipa::path(get, path = "/api/v1/whoami", tag = "access", security(("bearer" = [])),
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)))]
pub async fn whoami(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<WhoAmI>> {
    Ok(Json(WhoAmI {
        role: caller.0,
        open: s.open,
        pii: caller.1,
    }))
}

// ---- grid -------------------------------------------------------------

/// A task instance in the grid.
#[derive(Debug, Serialize, ToSchema)]
pub struct GridCell {
    /// State.
    pub state: TaskState,
    /// Attempts so far.
    pub attempts: u32,
    /// Start (ms).
    pub started_ms: Option<i64>,
    /// End (ms).
    pub ended_ms: Option<i64>,
}

/// A run with its task instances.
#[derive(Debug, Serialize, ToSchema)]
pub struct GridRun {
    /// The run.
    pub run: RunRecord,
    /// Task id → its instance; tasks not reached yet are absent.
    pub tasks: BTreeMap<String, GridCell>,
}

/// Runs by tasks, as Airflow's grid.
#[derive(Debug, Serialize, ToSchema)]
pub struct Grid {
    /// The pipeline's tasks, in file order.
    pub tasks: Vec<TaskInfo>,
    /// This page of runs, newest first.
    pub runs: Vec<GridRun>,
    /// Runs in all.
    pub total: u64,
    /// Page size.
    pub limit: u32,
    /// Skipped.
    pub offset: u32,
}

/// A page of the grid.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GridQuery {
    /// Runs per page (1–500, default 25).
    pub limit: Option<u32>,
    /// Runs to skip.
    pub offset: Option<u32>,
}

/// A pipeline's runs by tasks, newest first.
#[utoipa::path(get, path = "/api/v1/pipelines/{id}/grid", tag = "pipelines",
    params(("id" = String, Path, description = "Pipeline id"), GridQuery), security(("bearer" = [])),
    responses((status = 200, body = Grid), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn grid(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<GridQuery>,
) -> ApiResult<Json<Grid>> {
    caller.require(Role::Viewer)?;
    let p = s.scheduler.pipeline(&id)?;
    let (limit, offset) = page(Some(q.limit.unwrap_or(25)), q.offset)?;
    let filter = RunFilter {
        pipeline: Some(id),
        limit,
        offset,
        ..Default::default()
    };
    let store = s.scheduler.store();
    let mut runs = Vec::new();
    for run in store.runs(&filter).await? {
        let tasks = store
            .tasks(&run.run_id)
            .await?
            .into_iter()
            .map(|t| {
                (
                    t.task_id,
                    GridCell {
                        state: t.state,
                        attempts: t.attempts,
                        started_ms: t.started_ms,
                        ended_ms: t.ended_ms,
                    },
                )
            })
            .collect();
        runs.push(GridRun { run, tasks });
    }
    Ok(Json(Grid {
        tasks: crate::api::task_infos(&p.pipeline),
        runs,
        total: store.count_runs(&filter).await?,
        limit,
        offset,
    }))
}

/// Which run colours the DAG.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DagQuery {
    /// Colour tasks by this run's task states.
    pub run_id: Option<String>,
}

/// A pipeline's tasks as an SVG graph; with `run_id`, each task carries
/// the class `state-<state>` of that run.
#[utoipa::path(get, path = "/api/v1/pipelines/{id}/dag", tag = "pipelines",
    params(("id" = String, Path, description = "Pipeline id"), DagQuery), security(("bearer" = [])),
    responses((status = 200, description = "SVG", content_type = "image/svg+xml", body = String),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn dag(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<DagQuery>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Role::Viewer)?;
    let p = s.scheduler.pipeline(&id)?;
    let states: BTreeMap<String, String> = match &q.run_id {
        Some(run) => s
            .scheduler
            .store()
            .tasks(run)
            .await?
            .into_iter()
            .map(|t| (t.task_id, t.state.as_str().to_string()))
            .collect(),
        None => BTreeMap::new(),
    };
    let nodes: Vec<svg::Node> = p
        .pipeline
        .tasks
        .iter()
        .map(|t| svg::Node {
            id: t.id.clone(),
            title: format!("{} · {}", t.id, t.kind().name()),
            rows: Vec::new(),
            class: format!(
                "task state-{}",
                states.get(&t.id).map_or("none", String::as_str)
            ),
        })
        .collect();
    let edges: Vec<svg::Edge> = p
        .pipeline
        .tasks
        .iter()
        .flat_map(|t| {
            t.depends_on.iter().map(|d| svg::Edge {
                from: d.clone(),
                from_row: None,
                to: t.id.clone(),
                to_row: None,
                dashed: false,
                class: String::new(),
            })
        })
        .collect();
    Ok((
        [(axum::http::header::CONTENT_TYPE, "image/svg+xml")],
        svg::render(&format!("tasks of pipeline {id}"), &nodes, &edges),
    ))
}

// ---- snapshot diff ------------------------------------------------------

/// The two snapshots to compare.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiffQuery {
    /// The older snapshot.
    pub from: i64,
    /// The newer snapshot.
    pub to: i64,
}

/// Rows added and removed in one partition.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartitionDiff {
    /// `name=value/…`, or `` for an unpartitioned table.
    pub partition: String,
    /// Rows in `to` and not in `from`.
    pub added: i64,
    /// Rows in `from` and not in `to`.
    pub removed: i64,
}

/// What changed between two snapshots, row by row.
#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotDiff {
    /// The older snapshot.
    pub from: i64,
    /// The newer snapshot.
    pub to: i64,
    /// Per partition of the current spec, in order.
    pub partitions: Vec<PartitionDiff>,
    /// Rows added in all.
    pub added: i64,
    /// Rows removed in all.
    pub removed: i64,
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// SQL for a partition field's value as text, as Iceberg names it in paths.
fn partition_expr(transform: &str, column: &str) -> Option<String> {
    let c = quote(column);
    Some(match transform {
        "identity" => format!("CAST({c} AS VARCHAR)"),
        "year" => format!("CAST(date_part('year', {c}) AS BIGINT)"),
        "month" => format!("to_char({c}, '%Y-%m')"),
        "day" => format!("to_char({c}, '%Y-%m-%d')"),
        "hour" => format!("to_char({c}, '%Y-%m-%d-%H')"),
        _ => return None,
    })
}

/// Rows added and removed between two snapshots, per partition (a
/// multiset difference: `EXCEPT ALL` both ways).
#[utoipa::path(get, path = "/api/v1/tables/{name}/diff", tag = "tables",
    params(("name" = String, Path, description = "`namespace.table`"), DiffQuery),
    security(("bearer" = [])),
    responses((status = 200, body = SnapshotDiff), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn diff(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<DiffQuery>,
) -> ApiResult<Json<SnapshotDiff>> {
    caller.require(Role::Viewer)?;
    let tn = table_name(&name)?;
    let lake = s.scheduler.runner().lake().clone();
    let t = lake.load_table(&tn).await?;
    for id in [q.from, q.to] {
        if t.metadata.snapshot_by_id(id).is_none() {
            return Err(ApiError::not_found(format!(
                "table {name} has no snapshot {id}"
            )));
        }
    }
    let schema = t.metadata.current_schema();
    let parts: Vec<String> = t
        .metadata
        .default_partition_spec()
        .fields()
        .iter()
        .filter_map(|p| {
            let col = schema.name_by_field_id(p.source_id)?;
            let e = partition_expr(&p.transform.to_string(), col)?;
            Some(format!(
                "'{}=' || coalesce({e}, 'null')",
                p.name.replace('\'', "''")
            ))
        })
        .collect();
    let label = if parts.is_empty() {
        "''".to_string()
    } else {
        format!("concat_ws('/', {})", parts.join(", "))
    };
    let engine = gridata_engine::Engine::new(lake)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let table = tn
        .namespace
        .iter()
        .chain([&tn.name])
        .map(|p| quote(p))
        .collect::<Vec<_>>()
        .join(".");
    let side = |a: i64, b: i64| {
        format!(
            "SELECT {label} AS p, count(*) AS n FROM (SELECT * FROM {table} VERSION AS OF {a} \
             EXCEPT ALL SELECT * FROM {table} VERSION AS OF {b}) GROUP BY 1"
        )
    };
    let mut by_part: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (added, sql) in [(true, side(q.to, q.from)), (false, side(q.from, q.to))] {
        let batches = engine
            .sql(&sql)
            .await
            .map_err(|e| ApiError::bad_request(format!("compare {name}: {e}")))?
            .collect()
            .await
            .map_err(|e| ApiError::bad_request(format!("compare {name}: {e}")))?;
        for b in &batches {
            for row in crate::rows_json(b)? {
                let p = row["p"].as_str().unwrap_or_default().to_string();
                let n = row["n"].as_i64().unwrap_or(0);
                let e = by_part.entry(p).or_default();
                if added {
                    e.0 += n;
                } else {
                    e.1 += n;
                }
            }
        }
    }
    let partitions: Vec<PartitionDiff> = by_part
        .into_iter()
        .map(|(partition, (added, removed))| PartitionDiff {
            partition,
            added,
            removed,
        })
        .collect();
    Ok(Json(SnapshotDiff {
        from: q.from,
        to: q.to,
        added: partitions.iter().map(|p| p.added).sum(),
        removed: partitions.iter().map(|p| p.removed).sum(),
        partitions,
    }))
}

// ---- schema history -------------------------------------------------------

/// A version of a table's schema.
#[derive(Debug, Serialize, ToSchema)]
pub struct SchemaVersion {
    /// Iceberg schema id.
    pub schema_id: i32,
    /// The table's current schema.
    pub current: bool,
    /// Its columns.
    pub columns: Vec<crate::api::Column>,
    /// Snapshots written with it, oldest first.
    pub snapshots: Vec<i64>,
    /// The first snapshot's time (ms), if any.
    pub first_used_ms: Option<i64>,
}

/// Every schema a table has had, oldest first, with the snapshots that used
/// each: the table's schema history per snapshot.
#[utoipa::path(get, path = "/api/v1/tables/{name}/schemas", tag = "tables",
    params(("name" = String, Path, description = "`namespace.table`")), security(("bearer" = [])),
    responses((status = 200, body = Vec<SchemaVersion>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn schemas(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<SchemaVersion>>> {
    caller.require(Role::Viewer)?;
    let t = s
        .scheduler
        .runner()
        .lake()
        .load_table(&table_name(&name)?)
        .await?;
    let m = &t.metadata;
    let mut snaps: Vec<_> = m.snapshots().collect();
    snaps.sort_by_key(|s| (s.timestamp_ms(), s.sequence_number()));
    let current = m.current_schema_id();
    let mut out: Vec<SchemaVersion> = m
        .schemas_iter()
        .map(|schema| {
            let used: Vec<_> = snaps
                .iter()
                .filter(|s| s.schema_id() == Some(schema.schema_id()))
                .collect();
            SchemaVersion {
                schema_id: schema.schema_id(),
                current: schema.schema_id() == current,
                columns: crate::api::columns(schema),
                snapshots: used.iter().map(|s| s.snapshot_id()).collect(),
                first_used_ms: used.first().map(|s| s.timestamp_ms()),
            }
        })
        .collect();
    out.sort_by_key(|v| v.schema_id);
    Ok(Json(out))
}

// ---- quality history ----------------------------------------------------

/// How many results.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChecksQuery {
    /// At most this many (1–500, default 200).
    pub limit: Option<u32>,
}

/// A dataset's check results across runs, newest first.
#[utoipa::path(get, path = "/api/v1/datasets/{name}/checks", tag = "quality",
    params(("name" = String, Path, description = "Dataset, such as `sales.orders`"), ChecksQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Vec<DatasetCheck>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn dataset_checks(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<ChecksQuery>,
) -> ApiResult<Json<Vec<DatasetCheck>>> {
    caller.require(Role::Viewer)?;
    let (limit, _) = page(Some(q.limit.unwrap_or(200)), None)?;
    Ok(Json(
        s.scheduler.store().dataset_checks(&name, limit).await?,
    ))
}

// ---- lineage as SVG -------------------------------------------------------

/// A lineage drawing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SvgQuery {
    /// A table (`namespace.table`) or a file pattern dataset (`raw:…`).
    pub dataset: String,
    /// One column; every column when absent.
    pub column: Option<String>,
    /// `upstream` (default) or `downstream`.
    pub direction: Option<String>,
    /// At most this many hops (0 or absent: all).
    pub depth: Option<u32>,
    /// `column` (default): boxes list their columns; `dataset`: one box per
    /// dataset, one arrow per pair.
    pub level: Option<String>,
}

/// The same walk as `/api/v1/lineage`, drawn: a box per dataset with its
/// columns; indirect edges dashed.
#[utoipa::path(get, path = "/api/v1/lineage/svg", tag = "lineage", params(SvgQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "SVG", content_type = "image/svg+xml", body = String),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn lineage_svg(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SvgQuery>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Role::Viewer)?;
    let columns = match q.level.as_deref() {
        None | Some("column") => true,
        Some("dataset") => false,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "level '{other}': column or dataset"
            )));
        }
    };
    let walk = lineage_walk(
        &s,
        &LineageQuery {
            dataset: q.dataset.clone(),
            column: q.column.clone(),
            direction: q.direction.clone(),
            depth: q.depth,
        },
    )
    .await?;
    let edges: Vec<_> = walk.edges.into_iter().map(|(_, e)| e).collect();
    let label = match &q.column {
        Some(c) => format!("lineage of {}.{c}", q.dataset),
        None => format!("lineage of {}", q.dataset),
    };
    Ok((
        [(axum::http::header::CONTENT_TYPE, "image/svg+xml")],
        svg::lineage(&label, &edges, columns),
    ))
}
