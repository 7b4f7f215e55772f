//! The `/api/v1` handlers and the OpenAPI document generated from them.
//!
//! Invariants:
//! - Every handler checks the caller's role before acting.
//! - Every error is JSON with a code and a message; request rejections
//!   (bad JSON, bad query) are 400s in the same shape.
//! - Lists are paginated with `limit` (at most 500) and `offset`.

use std::collections::BTreeMap;
use std::path::Path as FsPath;

use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::{Json, Router, routing};
use gridata_core::{TableName, Zone};
use gridata_state::{
    AttemptRecord, BackfillRecord, CheckRecord, FileCounts, LogLine, PoolRecord, RunFilter,
    RunRecord, RunState, SchedulerInfo, TaskRecord,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::AppState;
use crate::auth::Role;
use crate::error::{ApiError, ApiResult, ErrorBody};

/// A JSON body whose rejections are [`ApiError`]s.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| ApiJson(v))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// A query string whose rejections are [`ApiError`]s.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| ApiQuery(v))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// The authenticated caller: its role, and whether it sees PII unmasked.
#[derive(Debug, Clone, Copy)]
pub struct Caller(pub Role, pub bool);

impl Caller {
    pub(crate) fn require(self, role: Role) -> ApiResult<()> {
        if self.0 >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the {role} role; the token has {}",
                self.0
            )))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let Some(header) = header else {
            return if state.open {
                Ok(Caller(Role::Admin, true))
            } else {
                Err(ApiError::unauthorized(
                    "missing `Authorization: Bearer <token>` (create one with `gridata token create`)",
                ))
            };
        };
        let token = header.strip_prefix("Bearer ").ok_or_else(|| {
            ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
        })?;
        let record = state
            .scheduler
            .store()
            .token_by_hash(&crate::auth::hash(token.trim()))
            .await?
            .filter(|t| !t.revoked)
            .ok_or_else(|| ApiError::unauthorized("unknown or revoked token"))?;
        let role = record
            .role
            .parse()
            .map_err(|e: String| ApiError::internal(e))?;
        Ok(Caller(role, record.pii || role == Role::Admin))
    }
}

pub(crate) fn page(limit: Option<u32>, offset: Option<u32>) -> ApiResult<(u32, u32)> {
    let limit = limit.unwrap_or(50);
    if limit == 0 || limit > 500 {
        return Err(ApiError::bad_request("limit must be between 1 and 500"));
    }
    Ok((limit, offset.unwrap_or(0)))
}

pub(crate) fn table_name(s: &str) -> ApiResult<TableName> {
    TableName::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn date(field: &str, s: &str) -> ApiResult<chrono::NaiveDate> {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| ApiError::bad_request(format!("{field}: '{s}' is not a YYYY-MM-DD date")))
}

// ---- health -----------------------------------------------------------

/// Liveness and what this process is.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
    /// Gridata's version.
    pub version: String,
    /// This scheduler's id.
    pub scheduler: String,
    /// Runs executing in this process.
    pub running_runs: usize,
    /// No token exists: the API needs none (and listens on loopback only).
    pub open: bool,
}

/// Health check (no token needed).
#[utoipa::path(get, path = "/api/v1/health", tag = "system",
    responses((status = 200, body = Health)))]
pub async fn health(State(s): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        scheduler: s.scheduler.owner(),
        running_runs: s.scheduler.running_runs(),
        open: s.open,
    })
}

// ---- pipelines --------------------------------------------------------

/// A run, briefly.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunBrief {
    /// Run id.
    pub run_id: String,
    /// State.
    pub state: RunState,
    /// Created (ms).
    pub created_ms: i64,
}

/// A pipeline in a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct PipelineSummary {
    /// Id.
    pub id: String,
    /// What it does.
    pub description: Option<String>,
    /// Owners.
    pub owners: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Paused pipelines start no run.
    pub paused: bool,
    /// Cron schedule.
    pub cron: Option<String>,
    /// The schedule's time zone.
    pub timezone: Option<String>,
    /// Next scheduled run (ms), unless paused.
    pub next_run_ms: Option<i64>,
    /// File pattern that starts runs.
    pub file_trigger: Option<String>,
    /// Tables whose new snapshots start runs.
    pub table_triggers: Vec<String>,
    /// Number of tasks.
    pub tasks: usize,
    /// The latest runs, newest first.
    pub last_runs: Vec<RunBrief>,
}

/// A page of pipelines.
#[derive(Debug, Serialize, ToSchema)]
pub struct PipelinePage {
    /// This page.
    pub items: Vec<PipelineSummary>,
    /// Pipelines in all.
    pub total: u64,
    /// Page size.
    pub limit: u32,
    /// Skipped.
    pub offset: u32,
}

/// A task of a pipeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskInfo {
    /// Id.
    pub id: String,
    /// Kind, such as `sql` or `write`.
    pub kind: String,
    /// Upstream tasks.
    pub depends_on: Vec<String>,
    /// What it does.
    pub description: Option<String>,
    /// The pool it runs in.
    pub pool: Option<String>,
}

/// A parameter of a pipeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParamInfo {
    /// Name.
    pub name: String,
    /// `string`, `int`, `date` or `bool`.
    #[serde(rename = "type")]
    pub ty: String,
    /// Default.
    pub default: Option<String>,
    /// Meaning.
    pub description: Option<String>,
}

/// A pipeline with its tasks and parameters.
#[derive(Debug, Serialize, ToSchema)]
pub struct PipelineDetail {
    /// The summary.
    #[serde(flatten)]
    pub summary: PipelineSummary,
    /// Tasks, in file order.
    pub task_list: Vec<TaskInfo>,
    /// Parameters.
    pub params: Vec<ParamInfo>,
    /// Runs at once across schedulers.
    pub max_active_runs: usize,
    /// The file.
    pub file: String,
}

/// Paging parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<u32>,
    /// Items to skip.
    pub offset: Option<u32>,
}

async fn summary(
    s: &AppState,
    p: &gridata_pipeline::Loaded,
    paused: bool,
) -> ApiResult<PipelineSummary> {
    let t = &p.pipeline.trigger;
    let next_run_ms = match (&t.cron, paused) {
        (Some(c), false) => {
            gridata_scheduler::next_cron(c, t.timezone.as_deref(), s.scheduler.clock().now_ms())
                .ok()
        }
        _ => None,
    };
    let last_runs = s
        .scheduler
        .store()
        .runs(&RunFilter {
            pipeline: Some(p.pipeline.id.clone()),
            limit: 10,
            ..Default::default()
        })
        .await?
        .into_iter()
        .map(|r| RunBrief {
            run_id: r.run_id,
            state: r.state,
            created_ms: r.created_ms,
        })
        .collect();
    Ok(PipelineSummary {
        id: p.pipeline.id.clone(),
        description: p.pipeline.description.clone(),
        owners: p.pipeline.owners.clone(),
        tags: p.pipeline.tags.clone(),
        paused,
        cron: t.cron.clone(),
        timezone: t.timezone.clone(),
        next_run_ms,
        file_trigger: t
            .files
            .as_ref()
            .map(|f| format!("{}/{}", f.zone.zone(), f.path)),
        table_triggers: t.tables.clone(),
        tasks: p.pipeline.tasks.len(),
        last_runs,
    })
}

/// List pipelines.
#[utoipa::path(get, path = "/api/v1/pipelines", tag = "pipelines", params(PageQuery),
    security(("bearer" = [])),
    responses((status = 200, body = PipelinePage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn list_pipelines(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<PipelinePage>> {
    caller.require(Role::Viewer)?;
    let (limit, offset) = page(q.limit, q.offset)?;
    let all = s.scheduler.pipelines();
    let paused = s.scheduler.store().paused().await?;
    let mut items = Vec::new();
    for p in all.values().skip(offset as usize).take(limit as usize) {
        items.push(summary(&s, p, paused.contains(&p.pipeline.id)).await?);
    }
    Ok(Json(PipelinePage {
        items,
        total: all.len() as u64,
        limit,
        offset,
    }))
}

/// Show a pipeline.
#[utoipa::path(get, path = "/api/v1/pipelines/{id}", tag = "pipelines",
    params(("id" = String, Path, description = "Pipeline id")), security(("bearer" = [])),
    responses((status = 200, body = PipelineDetail), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get_pipeline(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<PipelineDetail>> {
    caller.require(Role::Viewer)?;
    let p = s.scheduler.pipeline(&id)?;
    let paused = s.scheduler.store().paused().await?.contains(&id);
    let summary = summary(&s, &p, paused).await?;
    Ok(Json(PipelineDetail {
        summary,
        task_list: task_infos(&p.pipeline),
        params: p
            .pipeline
            .params
            .iter()
            .map(|(name, prm)| ParamInfo {
                name: name.clone(),
                ty: format!("{:?}", prm.ty).to_lowercase(),
                default: prm.default.clone(),
                description: prm.description.clone(),
            })
            .collect(),
        max_active_runs: p.pipeline.max_active_runs,
        file: p.path.display().to_string(),
    }))
}

/// A pipeline's tasks, in file order.
pub(crate) fn task_infos(p: &gridata_pipeline::Pipeline) -> Vec<TaskInfo> {
    p.tasks
        .iter()
        .map(|t| TaskInfo {
            id: t.id.clone(),
            kind: t.kind().name().into(),
            depends_on: t.depends_on.clone(),
            description: t.description.clone(),
            pool: t.pool.clone(),
        })
        .collect()
}

/// A pipeline file to check.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ValidateRequest {
    /// The YAML text.
    pub yaml: String,
}

/// A problem in a pipeline file.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemInfo {
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// The field, such as `tasks[2].sql.query`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// The result of a validation.
#[derive(Debug, Serialize, ToSchema)]
pub struct ValidateResponse {
    /// No problem found.
    pub valid: bool,
    /// The pipeline id, when it parsed.
    pub id: Option<String>,
    /// Every problem.
    pub problems: Vec<ProblemInfo>,
}

/// Validate a pipeline file without installing it.
#[utoipa::path(post, path = "/api/v1/pipelines/validate", tag = "pipelines",
    request_body = ValidateRequest, security(("bearer" = [])),
    responses((status = 200, body = ValidateResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn validate_pipeline(
    caller: Caller,
    ApiJson(req): ApiJson<ValidateRequest>,
) -> ApiResult<Json<ValidateResponse>> {
    caller.require(Role::Viewer)?;
    Ok(Json(
        match gridata_pipeline::load_str(FsPath::new("pipeline.yaml"), &req.yaml) {
            Ok(l) => ValidateResponse {
                valid: true,
                id: Some(l.pipeline.id),
                problems: vec![],
            },
            Err(gridata_pipeline::Error::Invalid { problems, .. }) => ValidateResponse {
                valid: false,
                id: None,
                problems: problems
                    .into_iter()
                    .map(|p| ProblemInfo {
                        line: p.line,
                        field: p.field,
                        message: p.message,
                    })
                    .collect(),
            },
            Err(e) => return Err(e.into()),
        },
    ))
}

/// Pause or unpause.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PauseRequest {
    /// `true` to pause.
    pub paused: bool,
}

/// Pause or unpause a pipeline (operator).
#[utoipa::path(post, path = "/api/v1/pipelines/{id}/pause", tag = "pipelines",
    params(("id" = String, Path, description = "Pipeline id")), request_body = PauseRequest,
    security(("bearer" = [])),
    responses((status = 200, body = PipelineSummary), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn pause_pipeline(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<PauseRequest>,
) -> ApiResult<Json<PipelineSummary>> {
    caller.require(Role::Operator)?;
    s.scheduler.set_paused(&id, req.paused).await?;
    let p = s.scheduler.pipeline(&id)?;
    Ok(Json(summary(&s, &p, req.paused).await?))
}

// ---- runs -------------------------------------------------------------

/// Run filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunQuery {
    /// Only this pipeline.
    pub pipeline: Option<String>,
    /// Only this state.
    pub state: Option<RunState>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<u32>,
    /// Items to skip.
    pub offset: Option<u32>,
}

/// A page of runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunPage {
    /// This page, newest first.
    pub items: Vec<RunRecord>,
    /// Matching runs in all.
    pub total: u64,
    /// Page size.
    pub limit: u32,
    /// Skipped.
    pub offset: u32,
}

/// List runs, newest first.
#[utoipa::path(get, path = "/api/v1/runs", tag = "runs", params(RunQuery),
    security(("bearer" = [])),
    responses((status = 200, body = RunPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn list_runs(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<RunQuery>,
) -> ApiResult<Json<RunPage>> {
    caller.require(Role::Viewer)?;
    let (limit, offset) = page(q.limit, q.offset)?;
    let filter = RunFilter {
        pipeline: q.pipeline,
        state: q.state,
        limit,
        offset,
        ..Default::default()
    };
    let store = s.scheduler.store();
    Ok(Json(RunPage {
        items: store.runs(&filter).await?,
        total: store.count_runs(&filter).await?,
        limit,
        offset,
    }))
}

/// Parameters of a new run.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct TriggerRequest {
    /// `name: value`; missing ones take their defaults.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

/// Trigger a run (operator).
#[utoipa::path(post, path = "/api/v1/pipelines/{id}/runs", tag = "runs",
    params(("id" = String, Path, description = "Pipeline id")), request_body = TriggerRequest,
    security(("bearer" = [])),
    responses((status = 201, body = RunRecord), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn trigger_run(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<TriggerRequest>,
) -> ApiResult<(StatusCode, Json<RunRecord>)> {
    caller.require(Role::Operator)?;
    let run = s.scheduler.trigger(&id, req.params).await?;
    Ok((StatusCode::CREATED, Json(run)))
}

/// A run with its tasks and per-file row counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunDetail {
    /// The run.
    pub run: RunRecord,
    /// Its tasks.
    pub tasks: Vec<TaskRecord>,
    /// Rows read, rejected and written per input file.
    pub files: Vec<FileCounts>,
}

/// Show a run.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}", tag = "runs",
    params(("run_id" = String, Path, description = "Run id")), security(("bearer" = [])),
    responses((status = 200, body = RunDetail), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get_run(
    State(s): State<AppState>,
    caller: Caller,
    Path(run_id): Path<String>,
) -> ApiResult<Json<RunDetail>> {
    caller.require(Role::Viewer)?;
    let store = s.scheduler.store();
    Ok(Json(RunDetail {
        run: store.run(&run_id).await?,
        tasks: store.tasks(&run_id).await?,
        files: store.file_counts(&run_id).await?,
    }))
}

/// Cancel a run (operator).
#[utoipa::path(post, path = "/api/v1/runs/{run_id}/cancel", tag = "runs",
    params(("run_id" = String, Path, description = "Run id")), security(("bearer" = [])),
    responses((status = 200, body = RunRecord), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn cancel_run(
    State(s): State<AppState>,
    caller: Caller,
    Path(run_id): Path<String>,
) -> ApiResult<Json<RunRecord>> {
    caller.require(Role::Operator)?;
    s.scheduler.store().run(&run_id).await?;
    s.scheduler.cancel(&run_id).await?;
    Ok(Json(s.scheduler.store().run(&run_id).await?))
}

/// What to clear.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ClearRequest {
    /// This task and its downstream; else the whole run.
    #[serde(default)]
    pub task: Option<String>,
    /// Only tasks that did not succeed (and their downstream).
    #[serde(default)]
    pub only_failed: bool,
}

/// Tasks cleared.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClearResponse {
    /// The run, queued again.
    pub run_id: String,
    /// Tasks that will run again.
    pub cleared: Vec<String>,
}

/// Clear an ended run so it runs again (operator).
#[utoipa::path(post, path = "/api/v1/runs/{run_id}/clear", tag = "runs",
    params(("run_id" = String, Path, description = "Run id")), request_body = ClearRequest,
    security(("bearer" = [])),
    responses((status = 200, body = ClearResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn clear_run(
    State(s): State<AppState>,
    caller: Caller,
    Path(run_id): Path<String>,
    ApiJson(req): ApiJson<ClearRequest>,
) -> ApiResult<Json<ClearResponse>> {
    caller.require(Role::Operator)?;
    let cleared = s
        .scheduler
        .clear(&run_id, req.task.as_deref(), req.only_failed)
        .await?;
    Ok(Json(ClearResponse { run_id, cleared }))
}

/// A task with its attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskDetail {
    /// The task instance.
    pub task: TaskRecord,
    /// Its attempts.
    pub attempts: Vec<AttemptRecord>,
}

/// Show a task instance.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}/tasks/{task_id}", tag = "runs",
    params(("run_id" = String, Path, description = "Run id"),
        ("task_id" = String, Path, description = "Task id")), security(("bearer" = [])),
    responses((status = 200, body = TaskDetail), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get_task(
    State(s): State<AppState>,
    caller: Caller,
    Path((run_id, task_id)): Path<(String, String)>,
) -> ApiResult<Json<TaskDetail>> {
    caller.require(Role::Viewer)?;
    let store = s.scheduler.store();
    let task = store
        .tasks(&run_id)
        .await?
        .into_iter()
        .find(|t| t.task_id == task_id)
        .ok_or_else(|| ApiError::not_found(format!("run '{run_id}' has no task '{task_id}'")))?;
    Ok(Json(TaskDetail {
        attempts: store.attempts(&run_id, &task_id).await?,
        task,
    }))
}

/// A page of log lines.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogPage {
    /// Lines, oldest first.
    pub items: Vec<LogLine>,
    /// Lines in all.
    pub total: u64,
    /// Page size.
    pub limit: u32,
    /// Skipped.
    pub offset: u32,
}

/// A task's log, all attempts (tail it by moving `offset`).
#[utoipa::path(get, path = "/api/v1/runs/{run_id}/tasks/{task_id}/logs", tag = "runs",
    params(("run_id" = String, Path, description = "Run id"),
        ("task_id" = String, Path, description = "Task id"), PageQuery),
    security(("bearer" = [])),
    responses((status = 200, body = LogPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn task_logs(
    State(s): State<AppState>,
    caller: Caller,
    Path((run_id, task_id)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<LogPage>> {
    caller.require(Role::Viewer)?;
    let (limit, offset) = page(q.limit, q.offset)?;
    let store = s.scheduler.store();
    store.run(&run_id).await?;
    let all = store.logs(&run_id, &task_id).await?;
    Ok(Json(LogPage {
        total: all.len() as u64,
        items: all
            .into_iter()
            .skip(offset as usize)
            .take(limit as usize)
            .collect(),
        limit,
        offset,
    }))
}

/// Quality check results of a run.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}/checks", tag = "quality",
    params(("run_id" = String, Path, description = "Run id")), security(("bearer" = [])),
    responses((status = 200, body = Vec<CheckRecord>), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn run_checks(
    State(s): State<AppState>,
    caller: Caller,
    Path(run_id): Path<String>,
) -> ApiResult<Json<Vec<CheckRecord>>> {
    caller.require(Role::Viewer)?;
    let store = s.scheduler.store();
    store.run(&run_id).await?;
    Ok(Json(store.checks(&run_id).await?))
}

/// Sample size.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SampleQuery {
    /// Rows in the sample, 0 to 500 (default 20).
    pub limit: Option<u32>,
}

/// Rows a run quarantined.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rejected {
    /// The run.
    pub run_id: String,
    /// Rows quarantined in all.
    pub count: u64,
    /// The quarantine files.
    pub files: Vec<String>,
    /// Some rows, each with its rule, reason, file and line.
    pub sample: Vec<serde_json::Value>,
}

/// Count and sample a run's rejected rows.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}/rejected", tag = "quality",
    params(("run_id" = String, Path, description = "Run id"), SampleQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Rejected), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn run_rejected(
    State(s): State<AppState>,
    caller: Caller,
    Path(run_id): Path<String>,
    ApiQuery(q): ApiQuery<SampleQuery>,
) -> ApiResult<Json<Rejected>> {
    caller.require(Role::Viewer)?;
    let limit = q.limit.unwrap_or(20);
    if limit > 500 {
        return Err(ApiError::bad_request("limit must be at most 500"));
    }
    let run = s.scheduler.store().run(&run_id).await?;
    let lake = s.scheduler.runner().lake();
    let storage = lake.storage();
    let dir = storage.uri(Zone::Rejected, &format!("{}/{}", run.pipeline, run.run_id));
    let files: Vec<String> = match storage.list(&dir).await {
        Ok(f) => f
            .into_iter()
            .map(|f| f.uri)
            .filter(|u| u.ends_with(".parquet"))
            .collect(),
        Err(gridata_storage::Error::NotFound { .. }) => vec![],
        Err(e) => return Err(ApiError::internal(e.to_string())),
    };
    // A rerun of the run may replace these files while they are read:
    // read again, and report a conflict if it keeps happening.
    let mut last = None;
    for _ in 0..3 {
        match read_rejected(lake, &files, limit as usize).await {
            Ok((count, sample)) => {
                return Ok(Json(Rejected {
                    run_id,
                    count,
                    files,
                    sample,
                }));
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(ApiError::conflict(format!(
        "the quarantine files of run '{run_id}' are being rewritten ({}); retry",
        last.unwrap_or_default()
    )))
}

async fn read_rejected(
    lake: &gridata_lake::Lake,
    files: &[String],
    limit: usize,
) -> Result<(u64, Vec<serde_json::Value>), String> {
    let engine = gridata_engine::Engine::new(lake.clone())
        .await
        .map_err(|e| e.to_string())?;
    let mut count = 0u64;
    let mut sample = Vec::new();
    for f in files {
        let df = engine
            .context()
            .read_parquet(f.as_str(), Default::default())
            .await
            .map_err(|e| format!("{f}: {e}"))?;
        let batches = df.collect().await.map_err(|e| format!("{f}: {e}"))?;
        for b in batches {
            count += b.num_rows() as u64;
            let want = limit.saturating_sub(sample.len()).min(b.num_rows());
            if want > 0 {
                sample.extend(crate::rows_json(&b.slice(0, want)).map_err(|e| e.body.message)?);
            }
        }
    }
    Ok((count, sample))
}

/// Backfill a date range.
#[derive(Debug, Deserialize, ToSchema)]
pub struct BackfillRequest {
    /// First date, `YYYY-MM-DD`.
    pub start: String,
    /// Last date, inclusive.
    pub end: String,
    /// Runs at once (default 4).
    #[serde(default)]
    pub max_parallel: Option<u32>,
    /// Other parameters of every run.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

/// Start a backfill: one run per date (operator).
#[utoipa::path(post, path = "/api/v1/pipelines/{id}/backfills", tag = "runs",
    params(("id" = String, Path, description = "Pipeline id")), request_body = BackfillRequest,
    security(("bearer" = [])),
    responses((status = 201, body = BackfillRecord), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn start_backfill(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<BackfillRequest>,
) -> ApiResult<(StatusCode, Json<BackfillRecord>)> {
    caller.require(Role::Operator)?;
    let start = date("start", &req.start)?;
    let end = date("end", &req.end)?;
    if (end - start).num_days() > 3660 {
        return Err(ApiError::bad_request("a backfill covers at most ten years"));
    }
    let b = s
        .scheduler
        .backfill(&id, start, end, req.max_parallel.unwrap_or(4), req.params)
        .await?;
    Ok((StatusCode::CREATED, Json(b)))
}

/// List backfills, newest first.
#[utoipa::path(get, path = "/api/v1/backfills", tag = "runs", security(("bearer" = [])),
    responses((status = 200, body = Vec<BackfillRecord>), (status = 401, body = ErrorBody)))]
pub async fn list_backfills(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<BackfillRecord>>> {
    caller.require(Role::Viewer)?;
    Ok(Json(s.scheduler.store().backfills(false).await?))
}

// ---- tables -----------------------------------------------------------

/// A table in a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct TableSummary {
    /// `namespace.table`.
    pub name: String,
    /// Current snapshot.
    pub current_snapshot_id: Option<i64>,
    /// Snapshots kept.
    pub snapshots: usize,
    /// Rows in the current snapshot.
    pub total_records: Option<u64>,
    /// Last commit (ms).
    pub last_updated_ms: i64,
}

/// A page of tables.
#[derive(Debug, Serialize, ToSchema)]
pub struct TablePage {
    /// This page.
    pub items: Vec<TableSummary>,
    /// Tables in all.
    pub total: u64,
    /// Page size.
    pub limit: u32,
    /// Skipped.
    pub offset: u32,
}

/// A column.
#[derive(Debug, Serialize, ToSchema)]
pub struct Column {
    /// Iceberg field id.
    pub id: i32,
    /// Name.
    pub name: String,
    /// Iceberg type.
    #[serde(rename = "type")]
    pub ty: String,
    /// Not null.
    pub required: bool,
    /// Description.
    pub doc: Option<String>,
}

/// A table's schema, partitioning and properties.
#[derive(Debug, Serialize, ToSchema)]
pub struct TableDetail {
    /// The summary.
    #[serde(flatten)]
    pub summary: TableSummary,
    /// Where its files are.
    pub location: String,
    /// Current metadata file.
    pub metadata_location: String,
    /// Columns of the current schema.
    pub columns: Vec<Column>,
    /// Partition fields, as `transform(column) as name`.
    pub partitioning: Vec<String>,
    /// Table properties.
    pub properties: BTreeMap<String, String>,
}

/// A snapshot.
#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotInfo {
    /// Id.
    pub snapshot_id: i64,
    /// Parent.
    pub parent_id: Option<i64>,
    /// Commit time (ms).
    pub timestamp_ms: i64,
    /// `append`, `overwrite`, `replace` or `delete`.
    pub operation: String,
    /// On the main branch now.
    pub current: bool,
    /// The summary (added and deleted files and rows, run ids).
    pub summary: BTreeMap<String, String>,
}

fn table_summary(t: &gridata_lake::LakeTable) -> TableSummary {
    let m = &t.metadata;
    let snap = m.current_snapshot();
    TableSummary {
        name: t.name.to_string(),
        current_snapshot_id: snap.map(|s| s.snapshot_id()),
        snapshots: m.snapshots().len(),
        total_records: snap.and_then(|s| {
            s.summary()
                .additional_properties
                .get("total-records")
                .and_then(|v| v.parse().ok())
        }),
        last_updated_ms: m.last_updated_ms(),
    }
}

/// Table filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TableQuery {
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<u32>,
    /// Items to skip.
    pub offset: Option<u32>,
}

/// List tables.
#[utoipa::path(get, path = "/api/v1/tables", tag = "tables", params(TableQuery),
    security(("bearer" = [])),
    responses((status = 200, body = TablePage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_tables(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<TableQuery>,
) -> ApiResult<Json<TablePage>> {
    caller.require(Role::Viewer)?;
    let (limit, offset) = page(q.limit, q.offset)?;
    let lake = s.scheduler.runner().lake();
    let names = lake.list_tables(q.namespace.as_deref()).await?;
    let mut items = Vec::new();
    for n in names.iter().skip(offset as usize).take(limit as usize) {
        items.push(table_summary(&lake.load_table(n).await?));
    }
    Ok(Json(TablePage {
        items,
        total: names.len() as u64,
        limit,
        offset,
    }))
}

/// Show a table.
#[utoipa::path(get, path = "/api/v1/tables/{name}", tag = "tables",
    params(("name" = String, Path, description = "`namespace.table`")), security(("bearer" = [])),
    responses((status = 200, body = TableDetail), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_table(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<TableDetail>> {
    caller.require(Role::Viewer)?;
    let t = s
        .scheduler
        .runner()
        .lake()
        .load_table(&table_name(&name)?)
        .await?;
    let m = &t.metadata;
    let schema = m.current_schema();
    Ok(Json(TableDetail {
        summary: table_summary(&t),
        location: m.location().to_string(),
        metadata_location: t.metadata_location.clone(),
        columns: columns(schema),
        partitioning: m
            .default_partition_spec()
            .fields()
            .iter()
            .map(|p| {
                let src = schema.name_by_field_id(p.source_id).unwrap_or("?");
                format!("{}({src}) as {}", p.transform, p.name)
            })
            .collect(),
        properties: m
            .properties()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }))
}

/// The columns of an Iceberg schema.
pub(crate) fn columns(schema: &gridata_lake::iceberg::spec::Schema) -> Vec<Column> {
    schema
        .as_struct()
        .fields()
        .iter()
        .map(|f| Column {
            id: f.id,
            name: f.name.clone(),
            ty: f.field_type.to_string(),
            required: f.required,
            doc: f.doc.clone(),
        })
        .collect()
}

/// A table's snapshots, oldest first.
#[utoipa::path(get, path = "/api/v1/tables/{name}/snapshots", tag = "tables",
    params(("name" = String, Path, description = "`namespace.table`")), security(("bearer" = [])),
    responses((status = 200, body = Vec<SnapshotInfo>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn table_snapshots(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<SnapshotInfo>>> {
    caller.require(Role::Viewer)?;
    let t = s
        .scheduler
        .runner()
        .lake()
        .load_table(&table_name(&name)?)
        .await?;
    let current = t.metadata.current_snapshot_id();
    let mut snaps: Vec<_> = t.metadata.snapshots().collect();
    snaps.sort_by_key(|s| (s.timestamp_ms(), s.sequence_number()));
    Ok(Json(
        snaps
            .iter()
            .map(|s| SnapshotInfo {
                snapshot_id: s.snapshot_id(),
                parent_id: s.parent_snapshot_id(),
                timestamp_ms: s.timestamp_ms(),
                operation: s.summary().operation.as_str().into(),
                current: Some(s.snapshot_id()) == current,
                summary: s
                    .summary()
                    .additional_properties
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            })
            .collect(),
    ))
}

/// A column's PII classification.
#[derive(Debug, Serialize, ToSchema)]
pub struct PiiColumn {
    /// Column.
    pub column: String,
    /// `email`, `phone`, `person_name`, `street_address`, `ip_address`,
    /// `card_number` or `date_of_birth`; absent when not personal data.
    pub kind: Option<String>,
    /// How sure, 0 to 1.
    pub confidence: Option<f64>,
    /// Tags such as `pii.email`, `gdpr`, `ccpa`.
    pub tags: Vec<String>,
    /// Why.
    pub reason: Option<String>,
}

/// Classify a table's columns as personal data from a sample of rows.
#[utoipa::path(get, path = "/api/v1/tables/{name}/pii", tag = "tables",
    params(("name" = String, Path, description = "`namespace.table`")), security(("bearer" = [])),
    responses((status = 200, body = Vec<PiiColumn>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn table_pii(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<PiiColumn>>> {
    caller.require(Role::Viewer)?;
    let name = table_name(&name)?;
    let lake = s.scheduler.runner().lake();
    lake.load_table(&name).await?;
    let engine = gridata_engine::Engine::new(lake.clone())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let (_, batches) = engine
        .query(&format!("SELECT * FROM {name} LIMIT 1000"))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let annotation = s
        .scheduler
        .store()
        .dataset_annotation(&name.to_string())
        .await?;
    Ok(Json(
        gridata_metadata::pii::classify_batches(&batches)
            .into_iter()
            .map(|(column, c)| {
                let manual = annotation
                    .columns
                    .get(&column)
                    .and_then(|a| a.pii.as_deref());
                match manual {
                    Some("none") => PiiColumn {
                        column,
                        kind: None,
                        confidence: None,
                        tags: Vec::new(),
                        reason: Some("cleared by hand".into()),
                    },
                    Some(kind) => {
                        let k = gridata_metadata::pii::PiiKind::ALL
                            .into_iter()
                            .find(|p| p.as_str() == kind);
                        PiiColumn {
                            column,
                            kind: Some(kind.to_string()),
                            confidence: Some(1.0),
                            tags: k.map(|k| k.tags()).unwrap_or_default(),
                            reason: Some("set by hand".into()),
                        }
                    }
                    None => PiiColumn {
                        column,
                        kind: c.as_ref().map(|c| c.kind.as_str().to_string()),
                        confidence: c.as_ref().map(|c| c.confidence),
                        tags: c.as_ref().map(|c| c.tags.clone()).unwrap_or_default(),
                        reason: c.map(|c| c.reason),
                    },
                }
            })
            .collect(),
    ))
}

/// The snapshot to go back to.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RollbackRequest {
    /// A snapshot of the table.
    pub snapshot_id: i64,
}

/// Roll a table back to a snapshot (admin).
#[utoipa::path(post, path = "/api/v1/tables/{name}/rollback", tag = "tables",
    params(("name" = String, Path, description = "`namespace.table`")),
    request_body = RollbackRequest, security(("bearer" = [])),
    responses((status = 200, body = TableSummary), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn rollback_table(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<RollbackRequest>,
) -> ApiResult<Json<TableSummary>> {
    caller.require(Role::Admin)?;
    let name = table_name(&name)?;
    let lake = s.scheduler.runner().lake();
    let t = lake.load_table(&name).await?;
    if t.metadata.snapshot_by_id(req.snapshot_id).is_none() {
        return Err(ApiError::not_found(format!(
            "table '{name}' has no snapshot {}",
            req.snapshot_id
        )));
    }
    let t = lake.rollback(&name, req.snapshot_id).await?;
    tracing::info!(table = %name, snapshot = req.snapshot_id, "rolled back through the API");
    Ok(Json(table_summary(&t)))
}

// ---- SQL --------------------------------------------------------------

/// A query.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SqlRequest {
    /// One SQL statement over `namespace.table` names.
    pub query: String,
    /// Rows returned at most, 1 to 10000 (default 1000).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// Query results.
#[derive(Debug, Serialize, ToSchema)]
pub struct SqlResponse {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, as objects by column.
    pub rows: Vec<serde_json::Value>,
    /// More rows were cut.
    pub truncated: bool,
}

/// The masking policies of the dataset registry, for callers without the
/// PII privilege.
pub(crate) async fn masks(s: &AppState) -> ApiResult<gridata_engine::Masks> {
    let mut out = gridata_engine::Masks::new();
    for d in s.scheduler.store().datasets().await? {
        let cols: std::collections::BTreeMap<_, _> = d
            .columns
            .iter()
            .filter_map(|c| {
                let m = gridata_engine::Mask::parse(c.masking.as_deref()?)?;
                Some((c.name.clone(), m))
            })
            .collect();
        if !cols.is_empty() {
            out.insert(d.name.clone(), cols);
        }
    }
    Ok(out)
}

/// Run a SQL query (viewer).
#[utoipa::path(post, path = "/api/v1/sql", tag = "tables", request_body = SqlRequest,
    security(("bearer" = [])),
    responses((status = 200, body = SqlResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn sql(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<SqlRequest>,
) -> ApiResult<Json<SqlResponse>> {
    caller.require(Role::Viewer)?;
    let limit = req.limit.unwrap_or(1000);
    if limit == 0 || limit > 10_000 {
        return Err(ApiError::bad_request("limit must be between 1 and 10000"));
    }
    let masks = if caller.1 {
        gridata_engine::Masks::new()
    } else {
        masks(&s).await?
    };
    let engine = gridata_engine::Engine::with_masks(s.scheduler.runner().lake().clone(), masks)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let df = engine
        .sql(&req.query)
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let columns: Vec<String> = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let batches = df
        .limit(0, Some(limit as usize + 1))
        .map_err(|e| ApiError::bad_request(e.to_string()))?
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut rows = Vec::new();
    for b in &batches {
        rows.extend(crate::rows_json(b)?);
    }
    let truncated = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    Ok(Json(SqlResponse {
        columns,
        rows,
        truncated,
    }))
}

// ---- lineage ----------------------------------------------------------

/// Where to start a lineage walk.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LineageQuery {
    /// A table (`namespace.table`) or a file pattern dataset (`raw:…`).
    pub dataset: String,
    /// One column; every column when absent.
    pub column: Option<String>,
    /// `upstream` (default) or `downstream`.
    pub direction: Option<String>,
    /// At most this many hops (0 or absent: all).
    pub depth: Option<u32>,
}

/// An edge of a walk, with its distance from the start.
#[derive(Debug, Serialize, ToSchema)]
pub struct LineageHop {
    /// Hops from the start.
    pub depth: usize,
    /// The edge.
    pub edge: gridata_state::LineageEdge,
}

/// A lineage walk.
#[derive(Debug, Serialize, ToSchema)]
pub struct LineageWalk {
    /// Edges in the order found.
    pub edges: Vec<LineageHop>,
}

/// A column of a dataset.
#[derive(Debug, Serialize, ToSchema)]
pub struct ColumnRef {
    /// Dataset.
    pub dataset: String,
    /// Column; empty for every row of the dataset.
    pub column: String,
}

/// What changing a column affects.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImpactResponse {
    /// Downstream columns.
    pub columns: Vec<ColumnRef>,
    /// Downstream datasets.
    pub datasets: Vec<String>,
    /// Pipelines whose writes read an affected column.
    pub pipelines: Vec<String>,
}

pub(crate) async fn lineage_walk(
    s: &AppState,
    q: &LineageQuery,
) -> ApiResult<gridata_metadata::graph::Walk> {
    let dir = match q.direction.as_deref() {
        None | Some("upstream") => gridata_metadata::Direction::Upstream,
        Some("downstream") => gridata_metadata::Direction::Downstream,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "direction '{other}': upstream or downstream"
            )));
        }
    };
    let graph = gridata_metadata::Graph::new(s.scheduler.store().lineage_edges().await?);
    if !graph.datasets().contains(&q.dataset) {
        return Err(ApiError::not_found(format!(
            "no lineage recorded for '{}'",
            q.dataset
        )));
    }
    Ok(graph.walk(
        &q.dataset,
        q.column.as_deref(),
        dir,
        q.depth.unwrap_or(0) as usize,
    ))
}

/// Column lineage from a dataset or column, upstream or downstream.
#[utoipa::path(get, path = "/api/v1/lineage", tag = "lineage", params(LineageQuery),
    security(("bearer" = [])),
    responses((status = 200, body = LineageWalk), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn lineage(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<LineageQuery>,
) -> ApiResult<Json<LineageWalk>> {
    caller.require(Role::Viewer)?;
    let walk = lineage_walk(&s, &q).await?;
    Ok(Json(LineageWalk {
        edges: walk
            .edges
            .into_iter()
            .map(|(depth, edge)| LineageHop { depth, edge })
            .collect(),
    }))
}

/// The same walk as Graphviz DOT.
#[utoipa::path(get, path = "/api/v1/lineage/dot", tag = "lineage", params(LineageQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "DOT text", content_type = "text/vnd.graphviz", body = String),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn lineage_dot(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<LineageQuery>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Role::Viewer)?;
    let walk = lineage_walk(&s, &q).await?;
    let edges: Vec<_> = walk.edges.into_iter().map(|(_, e)| e).collect();
    Ok((
        [(axum::http::header::CONTENT_TYPE, "text/vnd.graphviz")],
        gridata_metadata::Graph::dot(&edges),
    ))
}

/// The column whose change is assessed.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImpactQuery {
    /// Dataset.
    pub dataset: String,
    /// Column.
    pub column: String,
}

/// Everything downstream of a column: columns, datasets, pipelines.
#[utoipa::path(get, path = "/api/v1/lineage/impact", tag = "lineage", params(ImpactQuery),
    security(("bearer" = [])),
    responses((status = 200, body = ImpactResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn lineage_impact(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ImpactQuery>,
) -> ApiResult<Json<ImpactResponse>> {
    caller.require(Role::Viewer)?;
    let graph = gridata_metadata::Graph::new(s.scheduler.store().lineage_edges().await?);
    if !graph.datasets().contains(&q.dataset) {
        return Err(ApiError::not_found(format!(
            "no lineage recorded for '{}'",
            q.dataset
        )));
    }
    let i = graph.impact(&q.dataset, &q.column);
    Ok(Json(ImpactResponse {
        columns: i
            .columns
            .into_iter()
            .map(|(dataset, column)| ColumnRef { dataset, column })
            .collect(),
        datasets: i.datasets.into_iter().collect(),
        pipelines: i.pipelines.into_iter().collect(),
    }))
}

// ---- datasets and search ----------------------------------------------

/// A search.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Words that must all match; empty lists everything.
    pub q: Option<String>,
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only this tag.
    pub tag: Option<String>,
    /// Only this owner.
    pub owner: Option<String>,
    /// Only datasets with (true) or without (false) PII columns.
    pub pii: Option<bool>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<u32>,
    /// Items to skip.
    pub offset: Option<u32>,
}

/// A search result.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchHit {
    /// Dataset.
    pub name: String,
    /// Relevance.
    pub score: f64,
    /// Description.
    pub description: Option<String>,
    /// Matching columns.
    pub columns: Vec<String>,
}

/// Search results with facet counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResponse {
    /// Matches in all.
    pub total: u64,
    /// This page.
    pub hits: Vec<SearchHit>,
    /// Counts by `namespace`, `tag`, `owner`, `pii`.
    pub facets: BTreeMap<String, BTreeMap<String, u64>>,
}

/// Search datasets by name, columns, description, tags and owners.
#[utoipa::path(get, path = "/api/v1/search", tag = "datasets", params(SearchQuery),
    security(("bearer" = [])),
    responses((status = 200, body = SearchResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn search(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> ApiResult<Json<SearchResponse>> {
    caller.require(Role::Viewer)?;
    let (limit, offset) = page(q.limit, q.offset)?;
    let index = s.index().await?;
    let r = index.search(
        q.q.as_deref().unwrap_or(""),
        &gridata_metadata::search::Filters {
            namespace: q.namespace,
            tag: q.tag,
            owner: q.owner,
            pii: q.pii,
        },
        limit as usize,
        offset as usize,
    );
    Ok(Json(SearchResponse {
        total: r.total as u64,
        hits: r
            .hits
            .into_iter()
            .map(|h| SearchHit {
                name: h.name,
                score: h.score,
                description: h.description,
                columns: h.columns,
            })
            .collect(),
        facets: r
            .facets
            .into_iter()
            .map(|(k, v)| (k, v.into_iter().map(|(a, n)| (a, n as u64)).collect()))
            .collect(),
    }))
}

/// A registered dataset: schema with PII, owners, tags, freshness.
#[utoipa::path(get, path = "/api/v1/datasets/{name}", tag = "datasets",
    params(("name" = String, Path, description = "`namespace.table`")), security(("bearer" = [])),
    responses((status = 200, body = gridata_state::DatasetRecord), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get_dataset(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<gridata_state::DatasetRecord>> {
    caller.require(Role::Viewer)?;
    let index = s.index().await?;
    index
        .get(&name)
        .cloned()
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("dataset '{name}' is not registered")))
}

/// Edit a dataset's metadata (operator): description, owners, tags,
/// domain, glossary terms, and per column a description, a PII kind that
/// overrides the classifier (`none` clears it) and a masking policy
/// (`hash`, `redact`, `none`). Given fields replace; others stay.
#[utoipa::path(patch, path = "/api/v1/datasets/{name}", tag = "datasets",
    params(("name" = String, Path, description = "`namespace.table`")),
    request_body = gridata_state::DatasetAnnotation, security(("bearer" = [])),
    responses((status = 200, body = gridata_state::DatasetRecord), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn annotate_dataset(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(patch): ApiJson<gridata_state::DatasetAnnotation>,
) -> ApiResult<Json<gridata_state::DatasetRecord>> {
    caller.require(Role::Operator)?;
    let store = s.scheduler.store();
    let Some(current) = store.datasets().await?.into_iter().find(|d| d.name == name) else {
        return Err(ApiError::not_found(format!(
            "dataset '{name}' is not registered"
        )));
    };
    for (col, a) in &patch.columns {
        if !current.columns.iter().any(|c| &c.name == col) {
            return Err(ApiError::bad_request(format!(
                "dataset '{name}' has no column '{col}'"
            )));
        }
        if let Some(m) = a.masking.as_deref()
            && !matches!(m, "hash" | "redact" | "none")
        {
            return Err(ApiError::bad_request(format!(
                "columns.{col}.masking: '{m}' is not hash, redact or none"
            )));
        }
        if let Some(k) = a.pii.as_deref()
            && k != "none"
            && !gridata_metadata::pii::PiiKind::ALL
                .iter()
                .any(|p| p.as_str() == k)
        {
            return Err(ApiError::bad_request(format!(
                "columns.{col}.pii: '{k}' is not a PII kind ({}) or none",
                gridata_metadata::pii::PiiKind::ALL
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let now = s.scheduler.runner().clock().now_ms();
    store.annotate_dataset(&name, patch, now).await?;
    let updated = store
        .datasets()
        .await?
        .into_iter()
        .find(|d| d.name == name)
        .ok_or_else(|| ApiError::not_found(format!("dataset '{name}' is not registered")))?;
    Ok(Json(updated))
}

// ---- access and system ------------------------------------------------

/// A token, without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenInfo {
    /// Id.
    pub token_id: String,
    /// What it is for.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Created (ms).
    pub created_ms: i64,
    /// Revoked.
    pub revoked: bool,
    /// Sees PII columns unmasked.
    pub pii: bool,
}

/// A token to create.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenRequest {
    /// What it is for.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// May see PII columns unmasked (admins always may).
    #[serde(default)]
    pub pii: bool,
}

/// A new token: the secret is shown only here.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewToken {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    /// Its record.
    #[serde(flatten)]
    pub info: TokenInfo,
}

fn token_info(t: gridata_state::TokenRecord) -> TokenInfo {
    TokenInfo {
        role: t.role.parse().unwrap_or(Role::Viewer),
        token_id: t.token_id,
        name: t.name,
        created_ms: t.created_ms,
        revoked: t.revoked,
        pii: t.pii,
    }
}

/// List tokens (admin).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "access", security(("bearer" = [])),
    responses((status = 200, body = Vec<TokenInfo>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn list_tokens(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<TokenInfo>>> {
    caller.require(Role::Admin)?;
    Ok(Json(
        s.scheduler
            .store()
            .tokens()
            .await?
            .into_iter()
            .map(token_info)
            .collect(),
    ))
}

/// Create a token (admin).
#[utoipa::path(post, path = "/api/v1/tokens", tag = "access", request_body = TokenRequest,
    security(("bearer" = [])),
    responses((status = 201, body = NewToken), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_token(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<TokenRequest>,
) -> ApiResult<(StatusCode, Json<NewToken>)> {
    caller.require(Role::Admin)?;
    if req.name.trim().is_empty() || req.name.len() > 200 {
        return Err(ApiError::bad_request("name must be 1 to 200 characters"));
    }
    let (token, record) = crate::auth::create(
        s.scheduler.store().as_ref(),
        &req.name,
        req.role,
        req.pii,
        s.scheduler.clock().now_ms(),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(NewToken {
            token,
            info: token_info(record),
        }),
    ))
}

/// Revoke a token (admin).
#[utoipa::path(delete, path = "/api/v1/tokens/{token_id}", tag = "access",
    params(("token_id" = String, Path, description = "Token id")), security(("bearer" = [])),
    responses((status = 204, description = "Revoked"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_token(
    State(s): State<AppState>,
    caller: Caller,
    Path(token_id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Role::Admin)?;
    if s.scheduler.store().revoke_token(&token_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("token '{token_id}' not found")))
    }
}

/// List pools with their use.
#[utoipa::path(get, path = "/api/v1/pools", tag = "system", security(("bearer" = [])),
    responses((status = 200, body = Vec<PoolRecord>), (status = 401, body = ErrorBody)))]
pub async fn list_pools(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<PoolRecord>>> {
    caller.require(Role::Viewer)?;
    Ok(Json(s.scheduler.store().pools().await?))
}

/// A pool's size.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PoolRequest {
    /// Tasks that may run in it at once (1 to 100000).
    pub slots: u32,
    /// What it guards.
    #[serde(default)]
    pub description: Option<String>,
}

/// Create or resize a pool (admin).
#[utoipa::path(put, path = "/api/v1/pools/{name}", tag = "system",
    params(("name" = String, Path, description = "Pool name")), request_body = PoolRequest,
    security(("bearer" = [])),
    responses((status = 200, body = PoolRecord), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn put_pool(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<PoolRequest>,
) -> ApiResult<Json<PoolRecord>> {
    caller.require(Role::Admin)?;
    if req.slots == 0 || req.slots > 100_000 {
        return Err(ApiError::bad_request("slots must be between 1 and 100000"));
    }
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::bad_request("a pool name has 1 to 100 characters"));
    }
    let store = s.scheduler.store();
    store
        .set_pool(&name, req.slots, req.description.as_deref())
        .await?;
    store
        .pools()
        .await?
        .into_iter()
        .find(|p| p.name == name)
        .map(Json)
        .ok_or_else(|| ApiError::internal("pool vanished"))
}

/// Scheduler processes and their heartbeats.
#[utoipa::path(get, path = "/api/v1/schedulers", tag = "system", security(("bearer" = [])),
    responses((status = 200, body = Vec<SchedulerInfo>), (status = 401, body = ErrorBody)))]
pub async fn list_schedulers(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<SchedulerInfo>>> {
    caller.require(Role::Viewer)?;
    Ok(Json(s.scheduler.store().schedulers().await?))
}

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Gridata API", description = "Pipelines, runs, tables and quality of a Gridata lakehouse."),
    paths(health, list_pipelines, get_pipeline, validate_pipeline, pause_pipeline, list_runs,
        trigger_run, get_run, cancel_run, clear_run, get_task, task_logs, run_checks, run_rejected,
        start_backfill, list_backfills, list_tables, get_table, table_snapshots, table_pii, rollback_table,
        sql, lineage, lineage_dot, lineage_impact, search, get_dataset, list_tokens, create_token, revoke_token, list_pools, put_pool, list_schedulers,
        crate::views::whoami, crate::views::grid, crate::views::dag, crate::views::diff,
        crate::views::dataset_checks, crate::views::lineage_svg, crate::views::schemas, annotate_dataset,
        crate::openlineage::receive, crate::openlineage::received, crate::openlineage::outbox),
    modifiers(&Security),
    tags((name = "pipelines"), (name = "runs"), (name = "quality"), (name = "tables"),
        (name = "lineage"), (name = "datasets"),
        (name = "access"), (name = "system"))
)]
pub struct ApiDoc;

/// The document as pretty JSON, as committed in `docs/openapi.json`.
pub fn openapi_json() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.to_pretty_json().expect("openapi serializes") + "\n"
}

async fn openapi() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        openapi_json(),
    )
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

/// The API routes.
pub fn routes() -> Router<AppState> {
    use routing::{delete, get, post, put};
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/health", get(health))
        .route("/api/v1/pipelines", get(list_pipelines))
        .route("/api/v1/pipelines/validate", post(validate_pipeline))
        .route("/api/v1/pipelines/{id}", get(get_pipeline))
        .route("/api/v1/pipelines/{id}/pause", post(pause_pipeline))
        .route("/api/v1/pipelines/{id}/grid", get(crate::views::grid))
        .route("/api/v1/pipelines/{id}/dag", get(crate::views::dag))
        .route("/api/v1/whoami", get(crate::views::whoami))
        .route("/api/v1/tables/{name}/diff", get(crate::views::diff))
        .route("/api/v1/tables/{name}/schemas", get(crate::views::schemas))
        .route(
            "/api/v1/datasets/{name}/checks",
            get(crate::views::dataset_checks),
        )
        .route("/api/v1/lineage/svg", get(crate::views::lineage_svg))
        .route("/api/v1/pipelines/{id}/runs", post(trigger_run))
        .route("/api/v1/pipelines/{id}/backfills", post(start_backfill))
        .route("/api/v1/runs", get(list_runs))
        .route("/api/v1/runs/{run_id}", get(get_run))
        .route("/api/v1/runs/{run_id}/cancel", post(cancel_run))
        .route("/api/v1/runs/{run_id}/clear", post(clear_run))
        .route("/api/v1/runs/{run_id}/checks", get(run_checks))
        .route("/api/v1/runs/{run_id}/rejected", get(run_rejected))
        .route("/api/v1/runs/{run_id}/tasks/{task_id}", get(get_task))
        .route("/api/v1/runs/{run_id}/tasks/{task_id}/logs", get(task_logs))
        .route("/api/v1/backfills", get(list_backfills))
        .route("/api/v1/tables", get(list_tables))
        .route("/api/v1/tables/{name}", get(get_table))
        .route("/api/v1/tables/{name}/snapshots", get(table_snapshots))
        .route("/api/v1/tables/{name}/pii", get(table_pii))
        .route("/api/v1/tables/{name}/rollback", post(rollback_table))
        .route("/api/v1/sql", post(sql))
        .route("/api/v1/search", get(search))
        .route(
            "/api/v1/datasets/{name}",
            get(get_dataset).patch(annotate_dataset),
        )
        .route(
            "/api/v1/lineage",
            get(lineage).post(crate::openlineage::receive),
        )
        .route("/api/v1/lineage/events", get(crate::openlineage::received))
        .route("/api/v1/lineage/outbox", get(crate::openlineage::outbox))
        .route("/api/v1/lineage/dot", get(lineage_dot))
        .route("/api/v1/lineage/impact", get(lineage_impact))
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{token_id}", delete(revoke_token))
        .route("/api/v1/pools", get(list_pools))
        .route("/api/v1/pools/{name}", put(put_pool))
        .route("/api/v1/schedulers", get(list_schedulers))
        .route("/api/v1/{*rest}", get(not_found).post(not_found))
}
