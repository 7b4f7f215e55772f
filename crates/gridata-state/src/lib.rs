//! The state store: pipeline runs, task instances and their attempts, task
//! logs, per-file row counts and quality-check results, on SQLite (embedded)
//! or PostgreSQL, through one SQL implementation.
//!
//! Invariants:
//! - Every state transition is written before the caller acts on it, so a
//!   restarted process sees what was running.
//! - Writes are idempotent: recording a task's result or its per-file
//!   counts again replaces the earlier record instead of adding to it.
//! - The schema is created by [`SqlStateStore::connect`] and versioned in
//!   `gridata_state_version`; statements use only SQL both engines accept.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::any::{AnyPoolOptions, AnyRow, install_default_drivers};
use sqlx::{AnyPool, Executor, Row};

mod metadata;
mod outbox;
mod sched;
pub use metadata::{
    ColumnAnnotation, ColumnInfo, DatasetAnnotation, DatasetRecord, LineageEdge, MetadataStore,
};
pub use outbox::{LineageOutbox, OutboxEvent, OutboxStats, ReceivedEvent};
pub use sched::{
    BackfillRecord, ClaimLimits, Heartbeat, PoolRecord, SchedulerInfo, SchedulerStore, Store,
    TokenRecord,
};

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database could not be opened or a statement failed.
    #[error("state store: {context}: {source}")]
    Db {
        context: String,
        #[source]
        source: sqlx::Error,
    },
    /// A run that does not exist.
    #[error("run '{0}' not found")]
    RunNotFound(String),
    /// A pool, token or backfill that does not exist.
    #[error("{what} '{name}' not found")]
    NotFound { what: &'static str, name: String },
    /// The operation does not fit the current state.
    #[error("{0}")]
    Conflict(String),
    /// A stored value that does not parse.
    #[error("state store: corrupt {what}: '{value}'")]
    Corrupt { what: &'static str, value: String },
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn db(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> Error {
    let context = context.into();
    move |source| Error::Db { context, source }
}

macro_rules! states {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $v),* }

        impl $name {
            /// The stored name.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                match s {
                    $($s => Ok(Self::$v),)*
                    other => Err(Error::Corrupt { what: stringify!($name), value: other.into() }),
                }
            }
        }
    };
}

states!(
    /// The state of a run.
    RunState {
        /// Waiting to start.
        Queued = "queued",
        /// Tasks are running.
        Running = "running",
        /// Every task succeeded or was skipped.
        Success = "success",
        /// A task failed.
        Failed = "failed",
        /// Stopped by a user.
        Cancelled = "cancelled",
    }
);

states!(
    /// The state of a task instance.
    TaskState {
        /// Ready or waiting for upstream tasks.
        Queued = "queued",
        /// An attempt is running.
        Running = "running",
        /// Done.
        Success = "success",
        /// Failed, with no attempt left.
        Failed = "failed",
        /// Failed, and waiting for its next attempt.
        UpForRetry = "up_for_retry",
        /// Not run, by a condition.
        Skipped = "skipped",
        /// Not run, because an upstream task failed.
        UpstreamFailed = "upstream_failed",
    }
);

impl RunState {
    /// Whether the run has ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Success | Self::Failed | Self::Cancelled)
    }
}

impl TaskState {
    /// Whether the task has ended.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Success | Self::Failed | Self::Skipped | Self::UpstreamFailed
        )
    }
}

/// One run of a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunRecord {
    /// Run id (a UUIDv7).
    pub run_id: String,
    /// Pipeline id.
    pub pipeline: String,
    /// Parameters, rendered as text.
    pub params: BTreeMap<String, String>,
    /// State.
    pub state: RunState,
    /// What started it: `manual`, `cron`, `file`, `table`, `backfill`.
    pub trigger: String,
    /// When it was created (ms since the epoch).
    pub created_ms: i64,
    /// When it started.
    pub started_ms: Option<i64>,
    /// When it ended.
    pub ended_ms: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
    /// The scheduler (or CLI process) holding the run's lease.
    #[serde(default)]
    pub owner: Option<String>,
    /// The lease ends then unless renewed (ms since the epoch).
    #[serde(default)]
    pub lease_until_ms: Option<i64>,
    /// A user asked to cancel; the owner stops the run.
    #[serde(default)]
    pub cancel_requested: bool,
    /// Makes triggering idempotent: at most one run has a given key.
    #[serde(default)]
    pub dedup_key: Option<String>,
    /// The backfill that created it.
    #[serde(default)]
    pub backfill_id: Option<String>,
}

impl RunRecord {
    /// A new queued run.
    pub fn queued(
        run_id: String,
        pipeline: &str,
        params: BTreeMap<String, String>,
        trigger: &str,
        now_ms: i64,
    ) -> Self {
        Self {
            run_id,
            pipeline: pipeline.to_string(),
            params,
            state: RunState::Queued,
            trigger: trigger.to_string(),
            created_ms: now_ms,
            started_ms: None,
            ended_ms: None,
            error: None,
            owner: None,
            lease_until_ms: None,
            cancel_requested: false,
            dedup_key: None,
            backfill_id: None,
        }
    }
}

/// Rows a task read, wrote and rejected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RowCounts {
    /// Rows in.
    pub rows_in: u64,
    /// Rows out (passed on or written).
    pub rows_out: u64,
    /// Rows quarantined.
    pub rows_rejected: u64,
}

/// A task in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskRecord {
    /// Run id.
    pub run_id: String,
    /// Task id.
    pub task_id: String,
    /// State.
    pub state: TaskState,
    /// Attempts started.
    pub attempts: u32,
    /// Start of the first attempt.
    pub started_ms: Option<i64>,
    /// End of the last attempt.
    pub ended_ms: Option<i64>,
    /// Row counts of the successful attempt.
    pub rows: RowCounts,
    /// The last error.
    pub error: Option<String>,
    /// What the task produced, as JSON (task kind specific).
    pub output: Option<String>,
}

/// One attempt of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttemptRecord {
    /// Attempt number, from 1.
    pub attempt: u32,
    /// State at its end, or `running`.
    pub state: TaskState,
    /// Start.
    pub started_ms: i64,
    /// End.
    pub ended_ms: Option<i64>,
    /// Error.
    pub error: Option<String>,
}

/// A line of a task's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogLine {
    /// Task id.
    pub task_id: String,
    /// Attempt.
    pub attempt: u32,
    /// Sequence within the attempt.
    pub seq: u32,
    /// Time.
    pub ts_ms: i64,
    /// `info`, `warn` or `error`.
    pub level: String,
    /// Text.
    pub message: String,
}

/// The result of one quality check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckRecord {
    /// Task id.
    pub task_id: String,
    /// Check name, unique in the task.
    pub name: String,
    /// Check kind, such as `unique`.
    pub kind: String,
    /// `warn` or `error`.
    pub severity: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was measured, e.g. `3 duplicate rows`.
    pub observed: String,
    /// What was expected.
    pub expected: String,
    /// The table or task output checked.
    pub dataset: String,
    /// The snapshot checked, for tables.
    pub snapshot_id: Option<i64>,
    /// When.
    pub at_ms: i64,
}

/// A check result on a dataset, with its run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DatasetCheck {
    /// The run that checked it.
    pub run_id: String,
    /// The result.
    #[serde(flatten)]
    pub check: CheckRecord,
}

/// Row counts of one input file within one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileCounts {
    /// The file's URI.
    pub source_file: String,
    /// Rows read from it.
    pub rows_read: u64,
    /// Its rows that were quarantined.
    pub rows_rejected: u64,
    /// Its rows that were written to tables.
    pub rows_written: u64,
}

/// Filter for listing runs.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only this pipeline.
    pub pipeline: Option<String>,
    /// Only this state.
    pub state: Option<RunState>,
    /// Only runs of this backfill.
    pub backfill_id: Option<String>,
    /// At most this many (newest first); 0 means 50.
    pub limit: u32,
    /// Skip this many.
    pub offset: u32,
}

/// Where run state is kept.
#[async_trait]
pub trait StateStore: Send + Sync + fmt::Debug {
    /// Record a new run.
    async fn create_run(&self, run: &RunRecord) -> Result<()>;
    /// Set a run's state and error. `running` sets the start time once;
    /// a terminal state sets the end time.
    async fn set_run_state(
        &self,
        run_id: &str,
        state: RunState,
        at_ms: i64,
        error: Option<&str>,
    ) -> Result<()>;
    /// One run.
    async fn run(&self, run_id: &str) -> Result<RunRecord>;
    /// Runs, newest first.
    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>>;
    /// The latest successful run of a pipeline with exactly these params.
    async fn last_success(
        &self,
        pipeline: &str,
        params: &BTreeMap<String, String>,
    ) -> Result<Option<RunRecord>>;

    /// Set a task's state (creating its record).
    async fn set_task_state(
        &self,
        run_id: &str,
        task_id: &str,
        state: TaskState,
        at_ms: i64,
        error: Option<&str>,
    ) -> Result<()>;
    /// Start an attempt: the task becomes `running`.
    async fn start_attempt(
        &self,
        run_id: &str,
        task_id: &str,
        attempt: u32,
        at_ms: i64,
    ) -> Result<()>;
    /// End an attempt with its state; on success, the task's row counts
    /// and output are recorded.
    async fn finish_attempt(
        &self,
        run_id: &str,
        task_id: &str,
        attempt: u32,
        state: TaskState,
        at_ms: i64,
        error: Option<&str>,
        rows: RowCounts,
        output: Option<&str>,
    ) -> Result<()>;
    /// The tasks of a run, in id order.
    async fn tasks(&self, run_id: &str) -> Result<Vec<TaskRecord>>;
    /// The attempts of a task.
    async fn attempts(&self, run_id: &str, task_id: &str) -> Result<Vec<AttemptRecord>>;

    /// Append log lines.
    async fn append_logs(&self, run_id: &str, lines: &[LogLine]) -> Result<()>;
    /// A task's log, all attempts, in order.
    async fn logs(&self, run_id: &str, task_id: &str) -> Result<Vec<LogLine>>;

    /// Record (replace) a task's check results.
    async fn record_checks(&self, run_id: &str, checks: &[CheckRecord]) -> Result<()>;
    /// A run's check results.
    async fn checks(&self, run_id: &str) -> Result<Vec<CheckRecord>>;
    /// The latest check results on one dataset, newest first, across runs.
    async fn dataset_checks(&self, dataset: &str, limit: u32) -> Result<Vec<DatasetCheck>>;

    /// Record (replace) a task's per-file counts.
    async fn record_file_counts(
        &self,
        run_id: &str,
        task_id: &str,
        counts: &[FileCounts],
    ) -> Result<()>;
    /// A run's per-file counts: rows read (the most any task read), and
    /// rows rejected and written (summed over tasks).
    async fn file_counts(&self, run_id: &str) -> Result<Vec<FileCounts>>;
}

const SCHEMA_VERSION: i64 = 5;

const DDL: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS gridata_state_version (version BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY,
        pipeline TEXT NOT NULL,
        params TEXT NOT NULL,
        params_key TEXT NOT NULL,
        state TEXT NOT NULL,
        trigger_kind TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        started_ms BIGINT,
        ended_ms BIGINT,
        error TEXT)",
    "CREATE INDEX IF NOT EXISTS runs_by_pipeline ON runs (pipeline, created_ms)",
    "CREATE TABLE IF NOT EXISTS task_instances (
        run_id TEXT NOT NULL,
        task_id TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        started_ms BIGINT,
        ended_ms BIGINT,
        rows_in BIGINT NOT NULL,
        rows_out BIGINT NOT NULL,
        rows_rejected BIGINT NOT NULL,
        error TEXT,
        output TEXT,
        PRIMARY KEY (run_id, task_id))",
    "CREATE TABLE IF NOT EXISTS task_attempts (
        run_id TEXT NOT NULL,
        task_id TEXT NOT NULL,
        attempt BIGINT NOT NULL,
        state TEXT NOT NULL,
        started_ms BIGINT NOT NULL,
        ended_ms BIGINT,
        error TEXT,
        PRIMARY KEY (run_id, task_id, attempt))",
    "CREATE TABLE IF NOT EXISTS task_logs (
        run_id TEXT NOT NULL,
        task_id TEXT NOT NULL,
        attempt BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        ts_ms BIGINT NOT NULL,
        level TEXT NOT NULL,
        message TEXT NOT NULL,
        PRIMARY KEY (run_id, task_id, attempt, seq))",
    "CREATE TABLE IF NOT EXISTS check_results (
        run_id TEXT NOT NULL,
        task_id TEXT NOT NULL,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        severity TEXT NOT NULL,
        passed BIGINT NOT NULL,
        observed TEXT NOT NULL,
        expected TEXT NOT NULL,
        dataset TEXT NOT NULL,
        snapshot_id BIGINT,
        at_ms BIGINT NOT NULL,
        PRIMARY KEY (run_id, task_id, name))",
    "CREATE TABLE IF NOT EXISTS file_counts (
        run_id TEXT NOT NULL,
        task_id TEXT NOT NULL,
        source_file TEXT NOT NULL,
        rows_read BIGINT NOT NULL,
        rows_rejected BIGINT NOT NULL,
        rows_written BIGINT NOT NULL,
        PRIMARY KEY (run_id, task_id, source_file))",
];

/// Upgrades from the version-1 schema above, by target version.
const MIGRATIONS: &[(i64, &[&str])] = &[
    (
        2,
        &[
            "ALTER TABLE runs ADD COLUMN owner TEXT",
            "ALTER TABLE runs ADD COLUMN lease_until_ms BIGINT",
            "ALTER TABLE runs ADD COLUMN cancel_requested BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE runs ADD COLUMN dedup_key TEXT",
            "ALTER TABLE runs ADD COLUMN backfill_id TEXT",
            "CREATE UNIQUE INDEX runs_dedup ON runs (dedup_key)",
            "CREATE INDEX runs_by_state ON runs (state, created_ms)",
            "CREATE INDEX runs_by_backfill ON runs (backfill_id)",
            "CREATE TABLE pipeline_flags (
            pipeline TEXT PRIMARY KEY,
            paused BIGINT NOT NULL,
            updated_ms BIGINT NOT NULL)",
            "CREATE TABLE trigger_state (
            pipeline TEXT NOT NULL,
            trigger_key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (pipeline, trigger_key))",
            "CREATE TABLE schedulers (
            owner TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid BIGINT NOT NULL,
            started_ms BIGINT NOT NULL,
            heartbeat_ms BIGINT NOT NULL,
            stopped BIGINT NOT NULL)",
            "CREATE TABLE backfills (
            backfill_id TEXT PRIMARY KEY,
            pipeline TEXT NOT NULL,
            start_date TEXT NOT NULL,
            end_date TEXT NOT NULL,
            next_date TEXT NOT NULL,
            max_parallel BIGINT NOT NULL,
            params TEXT NOT NULL,
            state TEXT NOT NULL,
            created_ms BIGINT NOT NULL)",
            "CREATE TABLE pools (
            name TEXT PRIMARY KEY,
            slots BIGINT NOT NULL,
            description TEXT)",
            "CREATE TABLE pool_slots (
            pool TEXT NOT NULL,
            run_id TEXT NOT NULL,
            task_id TEXT NOT NULL,
            acquired_ms BIGINT NOT NULL,
            PRIMARY KEY (run_id, task_id))",
            "CREATE TABLE api_tokens (
            token_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            role TEXT NOT NULL,
            secret_hash TEXT NOT NULL UNIQUE,
            created_ms BIGINT NOT NULL,
            revoked BIGINT NOT NULL)",
        ],
    ),
    (
        3,
        &["CREATE TABLE lineage_edges (
            target_dataset TEXT NOT NULL,
            target_field TEXT NOT NULL,
            source_dataset TEXT NOT NULL,
            source_field TEXT NOT NULL,
            subtypes TEXT NOT NULL,
            pipeline TEXT NOT NULL,
            task_id TEXT NOT NULL,
            run_id TEXT NOT NULL,
            updated_ms BIGINT NOT NULL,
            PRIMARY KEY (target_dataset, target_field, source_dataset, source_field))"],
    ),
    (
        4,
        &["CREATE TABLE datasets (
            name TEXT PRIMARY KEY,
            doc TEXT NOT NULL,
            updated_ms BIGINT NOT NULL)"],
    ),
    (
        5,
        &[
            "CREATE INDEX check_results_by_dataset ON check_results (dataset, at_ms)",
            "CREATE TABLE lineage_outbox (
            sink TEXT NOT NULL,
            run_id TEXT NOT NULL,
            event_type TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_ms BIGINT NOT NULL,
            attempts BIGINT NOT NULL,
            next_attempt_ms BIGINT NOT NULL,
            delivered_ms BIGINT,
            last_error TEXT,
            PRIMARY KEY (sink, run_id, event_type))",
            "CREATE INDEX lineage_outbox_pending ON lineage_outbox (delivered_ms, next_attempt_ms)",
            "CREATE TABLE lineage_events_in (
            run_id TEXT NOT NULL,
            event_type TEXT NOT NULL,
            job_namespace TEXT NOT NULL,
            job_name TEXT NOT NULL,
            event_time TEXT NOT NULL,
            payload TEXT NOT NULL,
            received_ms BIGINT NOT NULL,
            PRIMARY KEY (run_id, event_type))",
            "CREATE TABLE dataset_annotations (
            name TEXT PRIMARY KEY,
            doc TEXT NOT NULL,
            updated_ms BIGINT NOT NULL)",
            "ALTER TABLE api_tokens ADD COLUMN pii BIGINT NOT NULL DEFAULT 0",
        ],
    ),
];

/// The state store over SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlStateStore {
    pub(crate) pool: AnyPool,
    pub(crate) postgres: bool,
}

/// The canonical text of a parameter map, used to find earlier runs with
/// the same parameters.
pub fn params_key(params: &BTreeMap<String, String>) -> String {
    serde_json::to_string(params).unwrap_or_default()
}

pub(crate) fn run_from(row: &AnyRow) -> Result<RunRecord> {
    let params: String = row.try_get("params").map_err(db("read run"))?;
    let state: String = row.try_get("state").map_err(db("read run"))?;
    Ok(RunRecord {
        run_id: row.try_get("run_id").map_err(db("read run"))?,
        pipeline: row.try_get("pipeline").map_err(db("read run"))?,
        params: serde_json::from_str(&params).map_err(|_| Error::Corrupt {
            what: "run params",
            value: params.clone(),
        })?,
        state: state.parse()?,
        trigger: row.try_get("trigger_kind").map_err(db("read run"))?,
        created_ms: row.try_get("created_ms").map_err(db("read run"))?,
        started_ms: row.try_get("started_ms").map_err(db("read run"))?,
        ended_ms: row.try_get("ended_ms").map_err(db("read run"))?,
        error: row.try_get("error").map_err(db("read run"))?,
        owner: row.try_get("owner").map_err(db("read run"))?,
        lease_until_ms: row.try_get("lease_until_ms").map_err(db("read run"))?,
        cancel_requested: row
            .try_get::<i64, _>("cancel_requested")
            .map_err(db("read run"))?
            != 0,
        dedup_key: row.try_get("dedup_key").map_err(db("read run"))?,
        backfill_id: row.try_get("backfill_id").map_err(db("read run"))?,
    })
}

pub(crate) const RUN_COLUMNS: &str = "run_id, pipeline, params, state, trigger_kind, created_ms, \
     started_ms, ended_ms, error, owner, lease_until_ms, cancel_requested, dedup_key, backfill_id";

impl SqlStateStore {
    /// Open (and create or upgrade) the store at a `sqlite://` or
    /// `postgres://` URL. SQLite runs in WAL mode with a busy timeout.
    pub async fn connect(url: &str) -> Result<Self> {
        install_default_drivers();
        let is_sqlite = url.starts_with("sqlite:");
        let memory = url.contains(":memory:");
        let pool = AnyPoolOptions::new()
            .max_connections(if memory {
                1
            } else if is_sqlite {
                4
            } else {
                8
            })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if is_sqlite {
                        conn.execute("PRAGMA busy_timeout = 30000").await?;
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(db(format!("cannot open {}", redact(url))))?;
        let me = Self {
            pool,
            postgres: !is_sqlite,
        };
        me.migrate().await?;
        Ok(me)
    }

    /// An in-process store (SQLite in memory) for tests and one-off runs.
    pub async fn memory() -> Result<Self> {
        Self::connect("sqlite::memory:").await
    }

    /// Create or upgrade the schema, one process at a time: PostgreSQL
    /// takes an advisory lock, SQLite the write lock of the first DDL.
    async fn migrate(&self) -> Result<()> {
        let ctx = "upgrade schema";
        let mut tx = self.pool.begin().await.map_err(db(ctx))?;
        if self.postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7419004)")
                .execute(&mut *tx)
                .await
                .map_err(db(ctx))?;
        }
        for ddl in DDL {
            tx.execute(*ddl).await.map_err(db(ctx))?;
        }
        let v: Option<i64> = sqlx::query("SELECT MAX(version) AS v FROM gridata_state_version")
            .fetch_one(&mut *tx)
            .await
            .map_err(db("read schema version"))?
            .try_get("v")
            .map_err(db("read schema version"))?;
        let from = v.unwrap_or(1);
        for (version, statements) in MIGRATIONS {
            if *version > from {
                for ddl in *statements {
                    tx.execute(*ddl)
                        .await
                        .map_err(db(format!("upgrade schema to version {version}")))?;
                }
            }
        }
        sqlx::query("DELETE FROM gridata_state_version")
            .execute(&mut *tx)
            .await
            .map_err(db(ctx))?;
        sqlx::query("INSERT INTO gridata_state_version (version) VALUES ($1)")
            .bind(SCHEMA_VERSION)
            .execute(&mut *tx)
            .await
            .map_err(db("write schema version"))?;
        tx.commit().await.map_err(db(ctx))
    }
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &url[..s], &url[at..]),
        _ => url.to_string(),
    }
}

fn check_from_row(r: &AnyRow) -> Result<CheckRecord> {
    let e = || db("read check");
    Ok(CheckRecord {
        task_id: r.try_get("task_id").map_err(e())?,
        name: r.try_get("name").map_err(e())?,
        kind: r.try_get("kind").map_err(e())?,
        severity: r.try_get("severity").map_err(e())?,
        passed: r.try_get::<i64, _>("passed").map_err(e())? != 0,
        observed: r.try_get("observed").map_err(e())?,
        expected: r.try_get("expected").map_err(e())?,
        dataset: r.try_get("dataset").map_err(e())?,
        snapshot_id: r.try_get("snapshot_id").map_err(e())?,
        at_ms: r.try_get("at_ms").map_err(e())?,
    })
}

#[async_trait]
impl StateStore for SqlStateStore {
    async fn create_run(&self, run: &RunRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO runs (run_id, pipeline, params, params_key, state, trigger_kind,
                created_ms, started_ms, ended_ms, error, owner, lease_until_ms, cancel_requested,
                dedup_key, backfill_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(&run.run_id)
        .bind(&run.pipeline)
        .bind(serde_json::to_string(&run.params).unwrap_or_default())
        .bind(params_key(&run.params))
        .bind(run.state.as_str())
        .bind(&run.trigger)
        .bind(run.created_ms)
        .bind(run.started_ms)
        .bind(run.ended_ms)
        .bind(run.error.as_deref())
        .bind(run.owner.as_deref())
        .bind(run.lease_until_ms)
        .bind(i64::from(run.cancel_requested))
        .bind(run.dedup_key.as_deref())
        .bind(run.backfill_id.as_deref())
        .execute(&self.pool)
        .await
        .map_err(db(format!("create run {}", run.run_id)))?;
        Ok(())
    }

    async fn set_run_state(
        &self,
        run_id: &str,
        state: RunState,
        at_ms: i64,
        error: Option<&str>,
    ) -> Result<()> {
        let q = match state {
            RunState::Running => sqlx::query(
                "UPDATE runs SET state = $1, started_ms = COALESCE(started_ms, $2),
                    ended_ms = NULL, error = $3 WHERE run_id = $4",
            )
            .bind(state.as_str())
            .bind(at_ms),
            s if s.is_terminal() => sqlx::query(
                "UPDATE runs SET state = $1, ended_ms = $2, error = $3 WHERE run_id = $4",
            )
            .bind(state.as_str())
            .bind(at_ms),
            _ => sqlx::query(
                "UPDATE runs SET state = $1, ended_ms = NULL, error = $2 WHERE run_id = $3",
            )
            .bind(state.as_str()),
        };
        let done = q
            .bind(error)
            .bind(run_id)
            .execute(&self.pool)
            .await
            .map_err(db(format!("update run {run_id}")))?;
        if done.rows_affected() == 0 {
            return Err(Error::RunNotFound(run_id.into()));
        }
        Ok(())
    }

    async fn run(&self, run_id: &str) -> Result<RunRecord> {
        let row = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = $1"))
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db(format!("read run {run_id}")))?
            .ok_or_else(|| Error::RunNotFound(run_id.into()))?;
        run_from(&row)
    }

    async fn runs(&self, f: &RunFilter) -> Result<Vec<RunRecord>> {
        let limit = if f.limit == 0 { 50 } else { f.limit };
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM runs
             WHERE ($1 = '' OR pipeline = $1) AND ($2 = '' OR state = $2)
                AND ($5 = '' OR backfill_id = $5)
             ORDER BY created_ms DESC, run_id DESC LIMIT $3 OFFSET $4"
        ))
        .bind(f.pipeline.as_deref().unwrap_or(""))
        .bind(f.state.map(|s| s.as_str()).unwrap_or(""))
        .bind(i64::from(limit))
        .bind(i64::from(f.offset))
        .bind(f.backfill_id.as_deref().unwrap_or(""))
        .fetch_all(&self.pool)
        .await
        .map_err(db("list runs"))?;
        rows.iter().map(run_from).collect()
    }

    async fn last_success(
        &self,
        pipeline: &str,
        params: &BTreeMap<String, String>,
    ) -> Result<Option<RunRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM runs
             WHERE pipeline = $1 AND params_key = $2 AND state = 'success'
             ORDER BY created_ms DESC LIMIT 1"
        ))
        .bind(pipeline)
        .bind(params_key(params))
        .fetch_optional(&self.pool)
        .await
        .map_err(db("find run"))?;
        row.as_ref().map(run_from).transpose()
    }

    async fn set_task_state(
        &self,
        run_id: &str,
        task_id: &str,
        state: TaskState,
        at_ms: i64,
        error: Option<&str>,
    ) -> Result<()> {
        let ended = state.is_terminal().then_some(at_ms);
        sqlx::query(
            "INSERT INTO task_instances (run_id, task_id, state, attempts, started_ms, ended_ms,
                rows_in, rows_out, rows_rejected, error, output)
             VALUES ($1, $2, $3, 0, NULL, $4, 0, 0, 0, $5, NULL)
             ON CONFLICT (run_id, task_id) DO UPDATE SET state = $3, ended_ms = $4,
                error = COALESCE($5, task_instances.error)",
        )
        .bind(run_id)
        .bind(task_id)
        .bind(state.as_str())
        .bind(ended)
        .bind(error)
        .execute(&self.pool)
        .await
        .map_err(db(format!("update task {task_id} of run {run_id}")))?;
        Ok(())
    }

    async fn start_attempt(
        &self,
        run_id: &str,
        task_id: &str,
        attempt: u32,
        at_ms: i64,
    ) -> Result<()> {
        let ctx = format!("start task {task_id} of run {run_id}");
        let mut tx = self.pool.begin().await.map_err(db(ctx.clone()))?;
        sqlx::query(
            "INSERT INTO task_attempts (run_id, task_id, attempt, state, started_ms, ended_ms, error)
             VALUES ($1, $2, $3, 'running', $4, NULL, NULL)
             ON CONFLICT (run_id, task_id, attempt) DO UPDATE SET state = 'running',
                started_ms = $4, ended_ms = NULL, error = NULL",
        )
        .bind(run_id)
        .bind(task_id)
        .bind(i64::from(attempt))
        .bind(at_ms)
        .execute(&mut *tx)
        .await
        .map_err(db(ctx.clone()))?;
        sqlx::query(
            "INSERT INTO task_instances (run_id, task_id, state, attempts, started_ms, ended_ms,
                rows_in, rows_out, rows_rejected, error, output)
             VALUES ($1, $2, 'running', $3, $4, NULL, 0, 0, 0, NULL, NULL)
             ON CONFLICT (run_id, task_id) DO UPDATE SET state = 'running', attempts = $3,
                started_ms = COALESCE(task_instances.started_ms, $4), ended_ms = NULL",
        )
        .bind(run_id)
        .bind(task_id)
        .bind(i64::from(attempt))
        .bind(at_ms)
        .execute(&mut *tx)
        .await
        .map_err(db(ctx.clone()))?;
        tx.commit().await.map_err(db(ctx))
    }

    async fn finish_attempt(
        &self,
        run_id: &str,
        task_id: &str,
        attempt: u32,
        state: TaskState,
        at_ms: i64,
        error: Option<&str>,
        rows: RowCounts,
        output: Option<&str>,
    ) -> Result<()> {
        let ctx = format!("finish task {task_id} of run {run_id}");
        let mut tx = self.pool.begin().await.map_err(db(ctx.clone()))?;
        sqlx::query(
            "UPDATE task_attempts SET state = $1, ended_ms = $2, error = $3
             WHERE run_id = $4 AND task_id = $5 AND attempt = $6",
        )
        .bind(state.as_str())
        .bind(at_ms)
        .bind(error)
        .bind(run_id)
        .bind(task_id)
        .bind(i64::from(attempt))
        .execute(&mut *tx)
        .await
        .map_err(db(ctx.clone()))?;
        sqlx::query(
            "UPDATE task_instances SET state = $1, ended_ms = $2, error = $3,
                rows_in = $4, rows_out = $5, rows_rejected = $6, output = $7
             WHERE run_id = $8 AND task_id = $9",
        )
        .bind(state.as_str())
        .bind(at_ms)
        .bind(error)
        .bind(rows.rows_in as i64)
        .bind(rows.rows_out as i64)
        .bind(rows.rows_rejected as i64)
        .bind(output)
        .bind(run_id)
        .bind(task_id)
        .execute(&mut *tx)
        .await
        .map_err(db(ctx.clone()))?;
        tx.commit().await.map_err(db(ctx))
    }

    async fn tasks(&self, run_id: &str) -> Result<Vec<TaskRecord>> {
        let rows = sqlx::query(
            "SELECT run_id, task_id, state, attempts, started_ms, ended_ms, rows_in, rows_out,
                rows_rejected, error, output
             FROM task_instances WHERE run_id = $1 ORDER BY task_id",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db(format!("read tasks of run {run_id}")))?;
        rows.iter()
            .map(|r| {
                let e = || db("read task");
                let state: String = r.try_get("state").map_err(e())?;
                Ok(TaskRecord {
                    run_id: r.try_get("run_id").map_err(e())?,
                    task_id: r.try_get("task_id").map_err(e())?,
                    state: state.parse()?,
                    attempts: r.try_get::<i64, _>("attempts").map_err(e())? as u32,
                    started_ms: r.try_get("started_ms").map_err(e())?,
                    ended_ms: r.try_get("ended_ms").map_err(e())?,
                    rows: RowCounts {
                        rows_in: r.try_get::<i64, _>("rows_in").map_err(e())? as u64,
                        rows_out: r.try_get::<i64, _>("rows_out").map_err(e())? as u64,
                        rows_rejected: r.try_get::<i64, _>("rows_rejected").map_err(e())? as u64,
                    },
                    error: r.try_get("error").map_err(e())?,
                    output: r.try_get("output").map_err(e())?,
                })
            })
            .collect()
    }

    async fn attempts(&self, run_id: &str, task_id: &str) -> Result<Vec<AttemptRecord>> {
        let rows = sqlx::query(
            "SELECT attempt, state, started_ms, ended_ms, error FROM task_attempts
             WHERE run_id = $1 AND task_id = $2 ORDER BY attempt",
        )
        .bind(run_id)
        .bind(task_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db(format!("read attempts of {task_id}")))?;
        rows.iter()
            .map(|r| {
                let e = || db("read attempt");
                let state: String = r.try_get("state").map_err(e())?;
                Ok(AttemptRecord {
                    attempt: r.try_get::<i64, _>("attempt").map_err(e())? as u32,
                    state: state.parse()?,
                    started_ms: r.try_get("started_ms").map_err(e())?,
                    ended_ms: r.try_get("ended_ms").map_err(e())?,
                    error: r.try_get("error").map_err(e())?,
                })
            })
            .collect()
    }

    async fn append_logs(&self, run_id: &str, lines: &[LogLine]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(db("append logs"))?;
        for l in lines {
            sqlx::query(
                "INSERT INTO task_logs (run_id, task_id, attempt, seq, ts_ms, level, message)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (run_id, task_id, attempt, seq) DO NOTHING",
            )
            .bind(run_id)
            .bind(&l.task_id)
            .bind(i64::from(l.attempt))
            .bind(i64::from(l.seq))
            .bind(l.ts_ms)
            .bind(&l.level)
            .bind(&l.message)
            .execute(&mut *tx)
            .await
            .map_err(db("append logs"))?;
        }
        tx.commit().await.map_err(db("append logs"))
    }

    async fn logs(&self, run_id: &str, task_id: &str) -> Result<Vec<LogLine>> {
        let rows = sqlx::query(
            "SELECT task_id, attempt, seq, ts_ms, level, message FROM task_logs
             WHERE run_id = $1 AND task_id = $2 ORDER BY attempt, seq",
        )
        .bind(run_id)
        .bind(task_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db(format!("read log of {task_id}")))?;
        rows.iter()
            .map(|r| {
                let e = || db("read log");
                Ok(LogLine {
                    task_id: r.try_get("task_id").map_err(e())?,
                    attempt: r.try_get::<i64, _>("attempt").map_err(e())? as u32,
                    seq: r.try_get::<i64, _>("seq").map_err(e())? as u32,
                    ts_ms: r.try_get("ts_ms").map_err(e())?,
                    level: r.try_get("level").map_err(e())?,
                    message: r.try_get("message").map_err(e())?,
                })
            })
            .collect()
    }

    async fn record_checks(&self, run_id: &str, checks: &[CheckRecord]) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db("record checks"))?;
        for c in checks {
            sqlx::query(
                "INSERT INTO check_results (run_id, task_id, name, kind, severity, passed,
                    observed, expected, dataset, snapshot_id, at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT (run_id, task_id, name) DO UPDATE SET kind = $4, severity = $5,
                    passed = $6, observed = $7, expected = $8, dataset = $9,
                    snapshot_id = $10, at_ms = $11",
            )
            .bind(run_id)
            .bind(&c.task_id)
            .bind(&c.name)
            .bind(&c.kind)
            .bind(&c.severity)
            .bind(i64::from(c.passed))
            .bind(&c.observed)
            .bind(&c.expected)
            .bind(&c.dataset)
            .bind(c.snapshot_id)
            .bind(c.at_ms)
            .execute(&mut *tx)
            .await
            .map_err(db(format!("record check {}", c.name)))?;
        }
        tx.commit().await.map_err(db("record checks"))
    }

    async fn checks(&self, run_id: &str) -> Result<Vec<CheckRecord>> {
        let rows = sqlx::query(
            "SELECT task_id, name, kind, severity, passed, observed, expected, dataset,
                snapshot_id, at_ms
             FROM check_results WHERE run_id = $1 ORDER BY task_id, name",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db(format!("read checks of run {run_id}")))?;
        rows.iter().map(check_from_row).collect()
    }

    async fn dataset_checks(&self, dataset: &str, limit: u32) -> Result<Vec<DatasetCheck>> {
        let rows = sqlx::query(
            "SELECT run_id, task_id, name, kind, severity, passed, observed, expected, dataset,
                snapshot_id, at_ms
             FROM check_results WHERE dataset = $1
             ORDER BY at_ms DESC, run_id, task_id, name LIMIT $2",
        )
        .bind(dataset)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db(format!("read checks of dataset {dataset}")))?;
        rows.iter()
            .map(|r| {
                Ok(DatasetCheck {
                    run_id: r.try_get("run_id").map_err(db("read check"))?,
                    check: check_from_row(r)?,
                })
            })
            .collect()
    }

    async fn record_file_counts(
        &self,
        run_id: &str,
        task_id: &str,
        counts: &[FileCounts],
    ) -> Result<()> {
        let ctx = format!("record file counts of {task_id}");
        let mut tx = self.pool.begin().await.map_err(db(ctx.clone()))?;
        sqlx::query("DELETE FROM file_counts WHERE run_id = $1 AND task_id = $2")
            .bind(run_id)
            .bind(task_id)
            .execute(&mut *tx)
            .await
            .map_err(db(ctx.clone()))?;
        for c in counts {
            sqlx::query(
                "INSERT INTO file_counts (run_id, task_id, source_file, rows_read,
                    rows_rejected, rows_written) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(run_id)
            .bind(task_id)
            .bind(&c.source_file)
            .bind(c.rows_read as i64)
            .bind(c.rows_rejected as i64)
            .bind(c.rows_written as i64)
            .execute(&mut *tx)
            .await
            .map_err(db(ctx.clone()))?;
        }
        tx.commit().await.map_err(db(ctx))
    }

    async fn file_counts(&self, run_id: &str) -> Result<Vec<FileCounts>> {
        let rows = sqlx::query(
            "SELECT source_file, MAX(rows_read) AS r, CAST(SUM(rows_rejected) AS BIGINT) AS q,
                CAST(SUM(rows_written) AS BIGINT) AS w
             FROM file_counts WHERE run_id = $1 GROUP BY source_file ORDER BY source_file",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db(format!("read file counts of run {run_id}")))?;
        rows.iter()
            .map(|r| {
                let e = || db("read file counts");
                Ok(FileCounts {
                    source_file: r.try_get("source_file").map_err(e())?,
                    rows_read: r.try_get::<i64, _>("r").map_err(e())? as u64,
                    rows_rejected: r.try_get::<i64, _>("q").map_err(e())? as u64,
                    rows_written: r.try_get::<i64, _>("w").map_err(e())? as u64,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The suite every backend must pass.
    pub(crate) async fn suite(store: &dyn StateStore) {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let run_id = format!("run-{nanos}");
        let params = BTreeMap::from([("date".to_string(), "2026-11-20".to_string())]);
        store
            .create_run(&RunRecord::queued(
                run_id.clone(),
                "p",
                params.clone(),
                "manual",
                1,
            ))
            .await
            .unwrap();
        store
            .set_run_state(&run_id, RunState::Running, 2, None)
            .await
            .unwrap();
        store.start_attempt(&run_id, "t", 1, 3).await.unwrap();
        store
            .finish_attempt(
                &run_id,
                "t",
                1,
                TaskState::UpForRetry,
                4,
                Some("boom"),
                RowCounts::default(),
                None,
            )
            .await
            .unwrap();
        store.start_attempt(&run_id, "t", 2, 5).await.unwrap();
        let rows = RowCounts {
            rows_in: 10,
            rows_out: 8,
            rows_rejected: 2,
        };
        store
            .finish_attempt(
                &run_id,
                "t",
                2,
                TaskState::Success,
                6,
                None,
                rows,
                Some("{}"),
            )
            .await
            .unwrap();
        let fc = |f: &str, r, q, w| FileCounts {
            source_file: f.into(),
            rows_read: r,
            rows_rejected: q,
            rows_written: w,
        };
        store
            .record_file_counts(&run_id, "t", &[fc("a.csv", 10, 2, 0)])
            .await
            .unwrap();
        // Recording again replaces.
        store
            .record_file_counts(&run_id, "t", &[fc("a.csv", 10, 2, 0)])
            .await
            .unwrap();
        store
            .record_file_counts(&run_id, "w", &[fc("a.csv", 0, 0, 8)])
            .await
            .unwrap();
        assert_eq!(
            store.file_counts(&run_id).await.unwrap(),
            vec![fc("a.csv", 10, 2, 8)]
        );
        store
            .set_run_state(&run_id, RunState::Success, 7, None)
            .await
            .unwrap();

        let run = store.run(&run_id).await.unwrap();
        assert_eq!(run.state, RunState::Success);
        assert_eq!((run.started_ms, run.ended_ms), (Some(2), Some(7)));
        let tasks = store.tasks(&run_id).await.unwrap();
        assert_eq!(tasks[0].attempts, 2);
        assert_eq!(tasks[0].rows, rows);
        assert_eq!(tasks[0].started_ms, Some(3));
        let attempts = store.attempts(&run_id, "t").await.unwrap();
        assert_eq!(attempts.len(), 2);
        assert_eq!(attempts[0].error.as_deref(), Some("boom"));
        assert_eq!(
            store
                .last_success("p", &params)
                .await
                .unwrap()
                .unwrap()
                .run_id,
            run_id
        );
        assert!(
            store
                .last_success("p", &BTreeMap::new())
                .await
                .unwrap()
                .is_none()
        );
        let listed = store
            .runs(&RunFilter {
                pipeline: Some("p".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(listed.iter().any(|r| r.run_id == run_id));
        assert!(matches!(
            store.run("nope").await,
            Err(Error::RunNotFound(_))
        ));
    }

    #[tokio::test]
    async fn sqlite_memory() {
        let store = SqlStateStore::memory().await.unwrap();
        suite(&store).await;
        crate::sched::tests::suite(&store, "mem").await;
        crate::metadata::tests::suite(&store, "mem").await;
        crate::outbox::tests::suite(&store, "mem").await;
    }

    #[tokio::test]
    async fn upgrades_a_version_1_database() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("v1.db").display());
        {
            install_default_drivers();
            let pool = AnyPoolOptions::new().connect(&url).await.unwrap();
            for ddl in DDL {
                pool.execute(*ddl).await.unwrap();
            }
            pool.execute("INSERT INTO gridata_state_version (version) VALUES (1)")
                .await
                .unwrap();
            pool.execute(
                "INSERT INTO runs (run_id, pipeline, params, params_key, state, trigger_kind,
                    created_ms) VALUES ('old', 'p', '{}', '{}', 'success', 'manual', 1)",
            )
            .await
            .unwrap();
        }
        let store = SqlStateStore::connect(&url).await.unwrap();
        let old = store.run("old").await.unwrap();
        assert_eq!((old.owner, old.cancel_requested), (None, false));
        crate::sched::tests::suite(&store, "v1").await;
    }

    #[tokio::test]
    async fn sqlite_file_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
        suite(&SqlStateStore::connect(&url).await.unwrap()).await;
        // Opening again keeps the schema and the data.
        let again = SqlStateStore::connect(&url).await.unwrap();
        assert_eq!(again.runs(&RunFilter::default()).await.unwrap().len(), 1);
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: run scripts/test.sh"]
    async fn postgres() {
        let url = std::env::var("GRIDATA_TEST_PG_URL").expect(
            "GRIDATA_TEST_PG_URL is not set: this test needs PostgreSQL; run scripts/test.sh, which installs and starts it",
        );
        let store = SqlStateStore::connect(&url).await.unwrap();
        suite(&store).await;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        crate::sched::tests::suite(&store, &format!("pg{nanos}")).await;
        crate::metadata::tests::suite(&store, &format!("pg{nanos}")).await;
        crate::outbox::tests::suite(&store, &format!("pg{nanos}")).await;
    }
}
