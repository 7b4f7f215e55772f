//! Gridata's HTTP server: the `/api/v1` REST API (OpenAPI at
//! `/api/v1/openapi.json`), bearer tokens with roles, `/metrics`, and the
//! web UI at `/` (assets embedded in the binary).
//!
//! Invariants:
//! - With no token in the store the API is open, so it listens on
//!   loopback only, whatever address was asked for, and says so.
//! - The server never executes work itself: it reads the stores and asks
//!   the scheduler to queue, cancel, clear or pause.

pub mod api;
pub mod auth;
pub mod error;
pub mod metrics;
pub mod openlineage;
pub mod ui;
pub mod views;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gridata_scheduler::{Event, Scheduler};
use gridata_state::{RunFilter, RunState};

pub use api::openapi_json;
pub use auth::Role;
pub use error::{ApiError, ApiResult};
pub use metrics::Metrics;

/// What every handler sees.
#[derive(Clone)]
pub struct AppState {
    /// The scheduler (and through it the stores and the lake).
    pub scheduler: Arc<Scheduler>,
    /// No token exists: every caller is admin (loopback only).
    pub open: bool,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The search index and the registry version it was built from.
    index: Arc<tokio::sync::Mutex<CachedIndex>>,
}

/// The registry version (count, latest update) and the index built from it.
type CachedIndex = ((i64, i64), Arc<gridata_metadata::search::Index>);

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("open", &self.open)
            .finish()
    }
}

/// Server errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be read.
    #[error("TLS: {0}")]
    Tls(String),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] gridata_state::Error),
}

/// TLS files (PEM).
#[derive(Debug, Clone)]
pub struct Tls {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

impl AppState {
    /// State for a scheduler; open when the store holds no token.
    pub async fn new(scheduler: Arc<Scheduler>) -> Result<Self, Error> {
        let open = scheduler.store().tokens().await?.is_empty();
        let metrics = Arc::new(Metrics::default());
        let mut events = scheduler.subscribe();
        let m = metrics.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(e) => record(&m, e),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                }
            }
        });
        Ok(Self {
            scheduler,
            open,
            metrics,
            index: Arc::new(tokio::sync::Mutex::new((
                (-1, -1),
                Arc::new(gridata_metadata::search::Index::default()),
            ))),
        })
    }

    /// The search index, rebuilt when the registry changed.
    pub async fn index(&self) -> Result<Arc<gridata_metadata::search::Index>, ApiError> {
        let store = self.scheduler.store();
        let version = store.datasets_version().await?;
        let mut cached = self.index.lock().await;
        if cached.0 != version {
            *cached = (
                version,
                Arc::new(gridata_metadata::search::Index::new(
                    store.datasets().await?,
                )),
            );
        }
        Ok(cached.1.clone())
    }
}

fn record(m: &Metrics, e: Event) {
    match e {
        Event::RunQueued {
            pipeline, trigger, ..
        } => m.inc(
            "gridata_runs_queued_total",
            vec![("pipeline", pipeline), ("trigger", trigger)],
            1.0,
        ),
        Event::RunClaimed { pipeline, .. } => m.inc(
            "gridata_runs_claimed_total",
            vec![("pipeline", pipeline)],
            1.0,
        ),
        Event::TaskStarted { pipeline, .. } => m.inc(
            "gridata_tasks_started_total",
            vec![("pipeline", pipeline)],
            1.0,
        ),
        Event::TaskFinished {
            pipeline,
            state,
            seconds,
            ..
        } => {
            m.inc(
                "gridata_tasks_finished_total",
                vec![("pipeline", pipeline.clone()), ("state", state)],
                1.0,
            );
            m.observe(
                "gridata_task_duration_seconds",
                vec![("pipeline", pipeline)],
                seconds,
            );
        }
        Event::RunFinished {
            pipeline,
            state,
            seconds,
            ..
        } => {
            m.inc(
                "gridata_runs_finished_total",
                vec![("pipeline", pipeline.clone()), ("state", state)],
                1.0,
            );
            m.observe(
                "gridata_run_duration_seconds",
                vec![("pipeline", pipeline)],
                seconds,
            );
        }
    }
}

/// Arrow rows as JSON objects.
pub fn rows_json(batch: &arrow::record_batch::RecordBatch) -> ApiResult<Vec<serde_json::Value>> {
    let mut w = arrow::json::ArrayWriter::new(Vec::new());
    w.write(batch)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    w.finish().map_err(|e| ApiError::internal(e.to_string()))?;
    let bytes = w.into_inner();
    if bytes.is_empty() {
        return Ok(vec![]);
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::internal(e.to_string()))
}

async fn metrics_handler(
    State(s): State<AppState>,
    caller: Result<api::Caller, ApiError>,
) -> Response {
    if let Err(e) = caller {
        return e.into_response();
    }
    let store = s.scheduler.store();
    let mut by_state = Vec::new();
    for state in [
        RunState::Queued,
        RunState::Running,
        RunState::Success,
        RunState::Failed,
        RunState::Cancelled,
    ] {
        let n = store
            .count_runs(&RunFilter {
                state: Some(state),
                ..Default::default()
            })
            .await
            .unwrap_or(0);
        by_state.push((vec![("state", state.to_string())], n as f64));
    }
    let now = s.scheduler.clock().now_ms();
    let schedulers = store
        .schedulers()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|i| !i.stopped && now - i.heartbeat_ms < 30_000)
        .count();
    let text = s.metrics.render(&[
        (
            "gridata_runs",
            "Runs in the state store, by state.",
            by_state,
        ),
        (
            "gridata_runs_executing",
            "Runs executing in this process.",
            vec![(vec![], s.scheduler.running_runs() as f64)],
        ),
        (
            "gridata_schedulers_alive",
            "Scheduler processes with a heartbeat in the last 30 seconds.",
            vec![(vec![], schedulers as f64)],
        ),
        (
            "gridata_pipelines",
            "Pipelines loaded by this process.",
            vec![(vec![], s.scheduler.pipelines().len() as f64)],
        ),
    ]);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn track(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    s.metrics.inc(
        "gridata_http_requests_total",
        vec![
            ("method", method),
            ("route", route.clone()),
            ("status", resp.status().as_u16().to_string()),
        ],
        1.0,
    );
    s.metrics.observe(
        "gridata_http_request_duration_seconds",
        vec![("route", route)],
        started.elapsed().as_secs_f64(),
    );
    resp
}

/// The whole application: API, metrics and the web UI.
pub fn router(state: AppState) -> Router {
    api::routes()
        .merge(ui::routes())
        .route("/metrics", axum::routing::get(metrics_handler))
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// The address actually used: loopback when the API is open.
pub fn effective_addr(state: &AppState, asked: SocketAddr) -> SocketAddr {
    if state.open && !asked.ip().is_loopback() {
        SocketAddr::from(([127, 0, 0, 1], asked.port()))
    } else {
        asked
    }
}

/// Serve until `shutdown` resolves. Calls `ready` with the bound address.
pub async fn serve(
    state: AppState,
    asked: SocketAddr,
    tls: Option<Tls>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), Error> {
    let addr = effective_addr(&state, asked);
    if state.open {
        tracing::warn!(
            %addr,
            "no API token exists: every caller is admin, so the server listens on loopback only; create one with `gridata token create --role admin`"
        );
    }
    let app = router(state);
    match tls {
        None => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind { addr, source })?;
            let bound = listener
                .local_addr()
                .map_err(|source| Error::Bind { addr, source })?;
            ready(bound);
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
                .map_err(|source| Error::Bind { addr, source })
        }
        Some(tls) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                .await
                .map_err(|e| {
                    Error::Tls(format!(
                        "{} / {}: {e}",
                        tls.cert.display(),
                        tls.key.display()
                    ))
                })?;
            let std_listener =
                std::net::TcpListener::bind(addr).map_err(|source| Error::Bind { addr, source })?;
            let bound = std_listener
                .local_addr()
                .map_err(|source| Error::Bind { addr, source })?;
            let handle = axum_server::Handle::new();
            let h = handle.clone();
            tokio::spawn(async move {
                shutdown.await;
                h.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
            });
            ready(bound);
            axum_server::from_tcp_rustls(std_listener, config)
                .handle(handle)
                .serve(app.into_make_service())
                .await
                .map_err(|source| Error::Bind { addr, source })
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_openapi_document_is_committed() {
        // The checkout being tested, not the one the binary was built in.
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo test");
        let path = format!("{dir}/../../docs/openapi.json");
        let path = path.as_str();
        let now = crate::openapi_json();
        if std::env::var_os("GRIDATA_UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &now).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == now,
            "docs/openapi.json is out of date: run GRIDATA_UPDATE_OPENAPI=1 cargo test -p gridata-server the_openapi"
        );
    }
}
