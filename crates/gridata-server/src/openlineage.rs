//! OpenLineage in: `POST /api/v1/lineage` takes RunEvents from other tools
//! (dbt, Spark, Airflow…) and merges their lineage into Gridata's graph;
//! and the state of Gridata's own outgoing events.
//!
//! Invariants:
//! - An event is stored once per `(runId, eventType)`; a repeat is
//!   acknowledged (200) and changes nothing, so senders can retry freely.
//! - Only `COMPLETE` events change the graph: each output's edges are
//!   replaced by the event's, as Gridata's own writes do.
//! - Datasets of other systems are registered under their OpenLineage
//!   namespace; Gridata's own tables are never overwritten by them.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use gridata_state::{DatasetRecord, OutboxStats, ReceivedEvent};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::api::{ApiQuery, Caller, page};
use crate::auth::Role;
use crate::error::{ApiError, ApiResult, ErrorBody};

/// What happened to a received event.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// The event's run id.
    pub run_id: String,
    /// The event's type.
    pub event_type: String,
    /// `false` when this `(runId, eventType)` had been received before.
    pub new: bool,
    /// Output datasets whose lineage it set.
    pub datasets: Vec<String>,
}

/// Receive an OpenLineage RunEvent (operator).
#[utoipa::path(post, path = "/api/v1/lineage", tag = "lineage",
    request_body(content = serde_json::Value, description = "An OpenLineage 2-0-2 RunEvent"),
    security(("bearer" = [])),
    responses((status = 201, body = Accepted, description = "Stored and merged"),
        (status = 200, body = Accepted, description = "Already received"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn receive(
    State(s): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    caller.require(Role::Operator)?;
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    let runner = s.scheduler.runner();
    let now = runner.clock().now_ms();
    let naming = runner.naming();
    let r = gridata_metadata::openlineage::read_event(&naming, &v, now)
        .map_err(ApiError::bad_request)?;
    let store = s.scheduler.store();
    let new = store
        .receive_lineage_event(&ReceivedEvent {
            run_id: r.run_id.clone(),
            event_type: r.event_type.clone(),
            job_namespace: r.job_namespace.clone(),
            job_name: r.job_name.clone(),
            event_time: r.event_time.clone(),
            payload: v.to_string(),
            received_ms: now,
        })
        .await?;
    let mut datasets = Vec::new();
    if new {
        let known: std::collections::BTreeSet<String> = store
            .datasets()
            .await?
            .into_iter()
            .map(|d| d.name)
            .collect();
        for (target, edges) in &r.lineage {
            store.record_lineage(target, edges).await?;
            datasets.push(target.clone());
            if !known.contains(target) || target.contains('/') {
                register(&s, &v, target, &r, now).await?;
            }
        }
    }
    Ok((
        if new {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(Accepted {
            run_id: r.run_id,
            event_type: r.event_type,
            new,
            datasets,
        }),
    ))
}

/// Register an output of another system, with the columns of its schema
/// facet.
async fn register(
    s: &AppState,
    event: &serde_json::Value,
    target: &str,
    r: &gridata_metadata::openlineage::Received,
    now: i64,
) -> ApiResult<()> {
    let naming = s.scheduler.runner().naming();
    let Some(out) = event["outputs"].as_array().into_iter().flatten().find(|o| {
        naming.graph_name(
            o["namespace"].as_str().unwrap_or_default(),
            o["name"].as_str().unwrap_or_default(),
        ) == target
    }) else {
        return Ok(());
    };
    let columns = out["facets"]["schema"]["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| {
            Some(gridata_state::ColumnInfo {
                name: f["name"].as_str()?.to_string(),
                ty: f["type"].as_str().unwrap_or_default().to_string(),
                description: f["description"].as_str().map(String::from),
                pii: None,
                pii_confidence: None,
                masking: None,
            })
        })
        .collect();
    s.scheduler
        .store()
        .upsert_dataset(&DatasetRecord {
            name: target.to_string(),
            namespace: out["namespace"].as_str().unwrap_or_default().to_string(),
            description: None,
            owners: Vec::new(),
            tags: vec!["openlineage".into()],
            domain: None,
            glossary_terms: Vec::new(),
            columns,
            row_count: out["outputFacets"]["outputStatistics"]["rowCount"].as_u64(),
            snapshot_id: None,
            size_bytes: None,
            quality: None,
            pipeline: Some(format!("{}/{}", r.job_namespace, r.job_name)),
            updated_ms: now,
        })
        .await?;
    Ok(())
}

/// How many received events.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// At most this many (1–500, default 50).
    pub limit: Option<u32>,
}

/// OpenLineage events received from other tools, newest first.
#[utoipa::path(get, path = "/api/v1/lineage/events", tag = "lineage", params(EventsQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Vec<ReceivedEvent>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn received(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult<Json<Vec<ReceivedEvent>>> {
    caller.require(Role::Viewer)?;
    let (limit, _) = page(q.limit, None)?;
    Ok(Json(
        s.scheduler.store().received_lineage_events(limit).await?,
    ))
}

/// Gridata's outgoing OpenLineage events per sink: pending, delivered,
/// and the last error.
#[utoipa::path(get, path = "/api/v1/lineage/outbox", tag = "lineage",
    security(("bearer" = [])),
    responses((status = 200, body = Vec<OutboxStats>), (status = 401, body = ErrorBody)))]
pub async fn outbox(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<OutboxStats>>> {
    caller.require(Role::Viewer)?;
    Ok(Json(s.scheduler.store().lineage_outbox_stats().await?))
}
