//! Running one pipeline: the DAG executor.
//!
//! Invariants:
//! - Every task state and attempt is written to the state store before
//!   the executor acts on it.
//! - Tasks run when all their dependencies succeeded, at most
//!   `max_active_tasks` at a time; a failed task marks its downstream
//!   `upstream_failed`.
//! - A staged table write is published only after every `quality` task
//!   downstream of it passed; when the run fails, unpublished writes are
//!   discarded and the tables stay at their pre-run snapshots.
//! - A run is executed by the holder of its lease, renewed while it runs.
//!   [`Runner::execute`] resumes any run: attempts left `running` by a
//!   dead process are closed as interrupted and retried, staged snapshots
//!   the run never published are discarded and their writes redone, and
//!   succeeded tasks are kept (their staged outputs reloaded), so a
//!   resumed run neither loses nor duplicates rows.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::catalog::TableProvider;
use datafusion::prelude::DataFrame;
use gridata_core::{Clock, TableName, Zone};
use gridata_engine::skip::{self, SkipLinesTable, SkippedLines};
use gridata_engine::{Engine, LakeTableProvider};
use gridata_lake::{CommitRequest, Lake};
use gridata_metadata::ColumnLineage;
use gridata_state::{
    CheckRecord, FileCounts, LogLine, RowCounts, RunRecord, RunState, Store, TaskRecord, TaskState,
};
use gridata_storage::Storage;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;

use crate::landing::{LandTarget, land};
use crate::load::Loaded;
use crate::model::{Dataset, FileFormat, Input, Task, TaskKind, ZoneName};
use crate::{Error, Result, tasks, template};

mod openlineage;
use gridata_metadata::openlineage::EventType;
pub use openlineage::{Emitter, naming as openlineage_naming};

/// The folder of a run's quarantine that holds raw files' malformed lines.
/// A task id has no `-`, so no task's folder has this name.
pub const MALFORMED_DIR: &str = "malformed-lines";

/// Quote a SQL identifier.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quote a SQL string literal.
pub fn quote_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Why a task attempt failed, and whether another attempt may help.
#[derive(Debug, Clone)]
pub struct TaskError {
    /// What happened, naming the file, table or query.
    pub message: String,
    /// Transient (I/O, conflicts, remote errors) rather than deterministic.
    pub retryable: bool,
}

impl TaskError {
    /// A failure that another attempt will not fix.
    pub fn fatal(e: impl std::fmt::Display) -> Self {
        Self {
            message: e.to_string(),
            retryable: false,
        }
    }

    /// A failure that may pass on another attempt.
    pub fn retryable(e: impl std::fmt::Display) -> Self {
        Self {
            message: e.to_string(),
            retryable: true,
        }
    }
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What a successful attempt produced.
#[derive(Debug, Clone, Default)]
pub struct TaskResult {
    /// Row counts.
    pub rows: RowCounts,
    /// Per source file counts.
    pub files: BTreeMap<String, FileCounts>,
    /// Kind-specific output, stored as JSON.
    pub output: serde_json::Value,
}

impl TaskResult {
    /// A result with only an output.
    pub fn with_output(output: serde_json::Value) -> Self {
        Self {
            output,
            ..Default::default()
        }
    }

    /// Add per-file counts.
    pub fn add_file(&mut self, file: &str, read: u64, rejected: u64, written: u64) {
        let e = self
            .files
            .entry(file.to_string())
            .or_insert_with(|| FileCounts {
                source_file: file.to_string(),
                rows_read: 0,
                rows_rejected: 0,
                rows_written: 0,
            });
        e.rows_read += read;
        e.rows_rejected += rejected;
        e.rows_written += written;
    }
}

/// Where a task's output rows are kept: a staged Parquet file, less the
/// source lines of the rows in some quarantine files. A resumed run reads
/// it back from this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedOutput {
    /// The staged Parquet file.
    pub file: String,
    /// Quarantine files (with `_source_file` and `_source_line`) whose
    /// rows are left out of `file`.
    pub without: Vec<String>,
    /// Each `(_source_file, _source_line)` names one row of `file` (a
    /// landed file): a row check may then skip lines instead of copying.
    pub unique_lines: bool,
}

impl StagedOutput {
    /// All the rows of `file`, which may repeat a source line.
    pub fn file(file: &str) -> Self {
        Self {
            file: file.to_string(),
            without: Vec::new(),
            unique_lines: false,
        }
    }

    /// All the rows of a landed file: one per source line.
    pub fn landed(file: &str) -> Self {
        Self {
            unique_lines: true,
            ..Self::file(file)
        }
    }
}

/// A task input whose rows are staged.
#[derive(Debug, Clone)]
pub struct StagedInput {
    /// Where the rows are kept.
    pub output: StagedOutput,
    /// The source lines left out of `output.file`, when some are.
    pub skipped: Option<Arc<SkippedLines>>,
}

/// A staged table write waiting for its checks.
#[derive(Debug, Clone)]
pub struct StagedWrite {
    /// The write task.
    pub task_id: String,
    /// The table.
    pub table: TableName,
    /// The staged snapshot.
    pub snapshot_id: i64,
    /// The snapshot that was current when staging.
    pub parent: Option<i64>,
    /// The commit, to re-apply if the table moved meanwhile; `None` for a
    /// staged snapshot found when resuming, which only fast-forwards.
    pub request: Option<CommitRequest>,
    /// Data files it added.
    pub added: Vec<String>,
}

/// Progress of a run, for displays.
#[derive(Debug, Clone)]
pub enum RunEvent {
    /// The run started.
    RunStarted {
        /// Run id.
        run_id: String,
        /// Task ids in order.
        tasks: Vec<String>,
    },
    /// An attempt started.
    TaskStarted {
        /// Task.
        task_id: String,
        /// Attempt, from 1.
        attempt: u32,
    },
    /// An attempt failed and will be retried.
    TaskRetrying {
        /// Task.
        task_id: String,
        /// The failed attempt.
        attempt: u32,
        /// Why.
        error: String,
        /// Wait before the next.
        delay: Duration,
    },
    /// A task reached a final state.
    TaskFinished {
        /// Task.
        task_id: String,
        /// Its state.
        state: TaskState,
        /// Rows.
        rows: RowCounts,
        /// Time taken.
        duration: Duration,
    },
    /// A staged write was published.
    Published {
        /// Table.
        table: String,
        /// Snapshot now current.
        snapshot_id: i64,
    },
}

/// Options of one run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Parameters as given (`name=value`).
    pub params: BTreeMap<String, String>,
    /// What started the run.
    pub trigger: String,
    /// Progress events.
    pub events: Option<UnboundedSender<RunEvent>>,
    /// Scale retry delays (tests use 0).
    pub retry_delay_scale: Option<f64>,
    /// Makes triggering idempotent: a second request with the same key
    /// starts no run.
    pub dedup_key: Option<String>,
    /// The backfill asking for the run.
    pub backfill_id: Option<String>,
    /// Resolve `today`/`yesterday` defaults at this time instead of now
    /// (a cron run's scheduled time).
    pub logical_ms: Option<i64>,
}

/// A lease on a run: the owner renews it while executing.
#[derive(Debug, Clone)]
pub struct Lease {
    /// Who holds it: a scheduler or a CLI process.
    pub owner: String,
    /// It lapses this long after the last renewal.
    pub ttl: Duration,
}

impl Lease {
    /// A lease for this process, for runs started from the command line.
    pub fn local(ttl: Duration) -> Self {
        Self {
            owner: format!("cli-{}-{}", std::process::id(), uuid::Uuid::now_v7()),
            ttl,
        }
    }
}

/// Why an executing run must stop early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A user cancelled it.
    Cancel,
    /// Shutting down: start no new task, hand the run back when the
    /// running ones end.
    Drain,
    /// Shutting down now: interrupt tasks and hand the run back.
    HandBack,
    /// Another process owns the run now: stop without writing.
    LeaseLost,
}

/// Asks an executing run to stop. Cloned handles share the signal; the
/// strongest reason wins.
#[derive(Debug, Clone, Default)]
pub struct StopSignal(Arc<(AtomicU8, tokio::sync::Notify)>);

impl StopSignal {
    /// Ask the run to stop.
    pub fn stop(&self, reason: StopReason) {
        let code = match reason {
            StopReason::Drain => 1,
            StopReason::HandBack => 2,
            StopReason::Cancel => 3,
            StopReason::LeaseLost => 4,
        };
        self.0.0.fetch_max(code, Ordering::SeqCst);
        self.0.1.notify_waiters();
    }

    /// The reason given, if any.
    pub fn reason(&self) -> Option<StopReason> {
        match self.0.0.load(Ordering::SeqCst) {
            1 => Some(StopReason::Drain),
            2 => Some(StopReason::HandBack),
            3 => Some(StopReason::Cancel),
            4 => Some(StopReason::LeaseLost),
            _ => None,
        }
    }

    /// Resolves when a stop is asked (or after a short wait, so a signal
    /// given between checks is never missed for long).
    async fn changed(&self) {
        tokio::select! {
            _ = self.0.1.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// How [`Runner::execute`] runs.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Progress events.
    pub events: Option<UnboundedSender<RunEvent>>,
    /// Scale retry delays (tests use 0).
    pub retry_delay_scale: Option<f64>,
    /// The lease to renew; none for tests that own the store alone.
    pub lease: Option<Lease>,
    /// Stops the run early.
    pub stop: StopSignal,
}

/// The result of a run, as stored.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The run.
    pub run: RunRecord,
    /// Its tasks.
    pub tasks: Vec<gridata_state::TaskRecord>,
    /// Per-file row counts.
    pub files: Vec<FileCounts>,
    /// Check results.
    pub checks: Vec<CheckRecord>,
}

/// Runs pipelines in-process.
#[derive(Clone)]
pub struct Runner {
    lake: Lake,
    state: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    home: PathBuf,
    openlineage: Option<Arc<Emitter>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").field("home", &self.home).finish()
    }
}

struct Shared {
    run_id: String,
    pipeline: Arc<Loaded>,
    params: BTreeMap<String, String>,
    vars: BTreeMap<String, String>,
    lake: Lake,
    state: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    home: PathBuf,
    outputs: Mutex<HashMap<String, Arc<dyn TableProvider>>>,
    output_files: Mutex<HashMap<String, StagedOutput>>,
    lineage: Mutex<HashMap<String, ColumnLineage>>,
    staged: Mutex<Vec<StagedWrite>>,
    published: Mutex<Vec<String>>,
    landed: Mutex<HashMap<String, Arc<LandedFile>>>,
}

/// A raw file landed once per run and shared by the tasks that read it.
#[derive(Default)]
pub(crate) struct LandedFile {
    landed: tokio::sync::OnceCell<crate::landing::Landed>,
    /// The task whose result counts the file's rows read and malformed:
    /// the first task to read it (again on its retries), not a task that
    /// only landed it ahead of its readers.
    counted_by: Mutex<Option<String>>,
}

/// What a task sees while it runs.
#[derive(Clone)]
pub struct TaskCtx {
    shared: Arc<Shared>,
    task_id: String,
    attempt: u32,
    logs: Arc<Mutex<Vec<LogLine>>>,
}

impl TaskCtx {
    /// The run id.
    pub fn run_id(&self) -> &str {
        &self.shared.run_id
    }

    /// The task id.
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// The pipeline id.
    pub fn pipeline_id(&self) -> &str {
        &self.shared.pipeline.pipeline.id
    }

    /// The run's parameters.
    pub fn params(&self) -> &BTreeMap<String, String> {
        &self.shared.params
    }

    /// The Gridata home.
    pub fn home_dir(&self) -> PathBuf {
        self.shared.home.clone()
    }

    /// The lake.
    pub fn lake(&self) -> &Lake {
        &self.shared.lake
    }

    /// Storage zones.
    pub fn storage(&self) -> &Storage {
        self.shared.lake.storage()
    }

    /// Now, from the injected clock.
    pub fn now_ms(&self) -> i64 {
        self.shared.clock.now_ms()
    }

    /// Tables published so far in this run.
    pub fn published_tables(&self) -> Vec<String> {
        self.shared.published.lock().expect("published").clone()
    }

    /// Metadata the pipeline declares for a dataset.
    pub fn dataset_meta(&self, table: &str) -> Option<Dataset> {
        self.shared.pipeline.pipeline.datasets.get(table).cloned()
    }

    /// Add a line to the task's log.
    pub fn log(&self, message: String) {
        tracing::info!(run = %self.shared.run_id, task = %self.task_id, "{message}");
        let mut logs = self.logs.lock().expect("logs");
        let seq = logs.len() as u32;
        logs.push(LogLine {
            task_id: self.task_id.clone(),
            attempt: self.attempt,
            seq,
            ts_ms: self.shared.clock.now_ms(),
            level: "info".into(),
            message,
        });
    }

    /// Render a template with the run's variables.
    pub fn render(&self, text: &str) -> std::result::Result<String, TaskError> {
        template::render(text, &self.shared.vars).map_err(TaskError::fatal)
    }

    /// Render with extra variables.
    pub fn render_with(
        &self,
        text: &str,
        extra: &[(&str, &str)],
    ) -> std::result::Result<String, TaskError> {
        let mut vars = self.shared.vars.clone();
        for (k, v) in extra {
            vars.insert((*k).to_string(), (*v).to_string());
        }
        template::render(text, &vars).map_err(TaskError::fatal)
    }

    /// A fresh SQL session over the lake.
    pub async fn session(&self) -> std::result::Result<Engine, TaskError> {
        Engine::new(self.shared.lake.clone())
            .await
            .map_err(TaskError::retryable)
    }

    /// Set the task's output.
    pub fn set_output(&self, provider: Arc<dyn TableProvider>) {
        self.shared
            .outputs
            .lock()
            .expect("outputs")
            .insert(self.task_id.clone(), provider);
    }

    /// Set the task's output, kept in a staged Parquet file so a resumed
    /// run can reload it.
    pub fn set_output_file(&self, provider: Arc<dyn TableProvider>, uri: &str) {
        self.set_output_staged(provider, StagedOutput::file(uri));
    }

    /// Set the task's output, kept as `staged` so a resumed run can reload
    /// it.
    pub fn set_output_staged(&self, provider: Arc<dyn TableProvider>, staged: StagedOutput) {
        self.set_output(provider);
        self.shared
            .output_files
            .lock()
            .expect("outputs")
            .insert(self.task_id.clone(), staged);
    }

    /// The dataset an input names in lineage: `task:<id>`, a table's
    /// `namespace.table`, or `<zone>:<path pattern>` for files.
    pub fn input_dataset(input: &Input) -> String {
        if let Some(t) = &input.task {
            format!("task:{t}")
        } else if let Some(t) = &input.table {
            t.clone()
        } else {
            let zone = input.zone.unwrap_or(ZoneName::Raw).zone();
            format!("{zone}:{}", input.file.as_deref().unwrap_or(""))
        }
    }

    /// Record the column lineage of this task's output.
    pub fn set_lineage(&self, lineage: ColumnLineage) {
        self.shared
            .lineage
            .lock()
            .expect("lineage")
            .insert(self.task_id.clone(), lineage);
    }

    /// The lineage of a task's output, traced back through upstream tasks
    /// to tables and files (as far as they recorded lineage).
    pub fn resolved_lineage(&self, task: &str) -> Option<ColumnLineage> {
        let own = self
            .shared
            .lineage
            .lock()
            .expect("lineage")
            .get(task)
            .cloned()?;
        Some(own.compose(&|ds| {
            ds.strip_prefix("task:")
                .and_then(|t| self.resolved_lineage(t))
        }))
    }

    fn output_provider(&self, task: &str) -> Option<Arc<dyn TableProvider>> {
        self.shared
            .outputs
            .lock()
            .expect("outputs")
            .get(task)
            .cloned()
    }

    /// An upstream task's output as a DataFrame in `engine`.
    pub fn task_frame(
        &self,
        engine: &Engine,
        task: &str,
    ) -> std::result::Result<DataFrame, TaskError> {
        let provider = self
            .output_provider(task)
            .ok_or_else(|| TaskError::fatal(format!("task '{task}' has no output")))?;
        engine
            .context()
            .read_table(provider)
            .map_err(TaskError::fatal)
    }

    /// Record this task's check results now.
    pub async fn record_checks(
        &self,
        checks: &[CheckRecord],
    ) -> std::result::Result<(), TaskError> {
        self.shared
            .state
            .record_checks(&self.shared.run_id, checks)
            .await
            .map_err(TaskError::retryable)
    }

    /// Register a staged write.
    pub fn stage(&self, w: StagedWrite) {
        let mut staged = self.shared.staged.lock().expect("staged");
        staged.retain(|s| s.task_id != w.task_id);
        staged.push(w);
    }

    /// A table for checks: this run's staged snapshot if it wrote one.
    pub async fn table_for_check(
        &self,
        table: &str,
    ) -> std::result::Result<(Arc<dyn TableProvider>, Option<i64>), TaskError> {
        let name = TableName::parse(table).map_err(TaskError::fatal)?;
        let staged = self
            .shared
            .staged
            .lock()
            .expect("staged")
            .iter()
            .rev()
            .find(|s| s.table == name)
            .map(|s| s.snapshot_id);
        let t = self
            .shared
            .lake
            .load_table(&name)
            .await
            .map_err(TaskError::fatal)?;
        let snap = staged.or(t.metadata.current_snapshot_id());
        let provider =
            LakeTableProvider::new(self.shared.lake.clone(), t, snap).map_err(TaskError::fatal)?;
        Ok((Arc::new(provider), snap))
    }

    /// URI of a file in this task's staging folder.
    pub fn staging_uri(&self, file: &str) -> String {
        self.storage().uri(
            Zone::Staging,
            &format!("runs/{}/{}/{file}", self.shared.run_id, self.task_id),
        )
    }

    /// URI of a file in this task's quarantine folder.
    pub fn rejected_uri(&self, file: &str) -> String {
        self.run_rejected_uri(&format!("{}/{file}", self.task_id))
    }

    /// URI of a file in this run's quarantine folder.
    fn run_rejected_uri(&self, rel: &str) -> String {
        self.storage().uri(
            Zone::Rejected,
            &format!("{}/{}/{rel}", self.pipeline_id(), self.shared.run_id),
        )
    }

    /// A staged Parquet file as a table ([`skip::read_staged`]).
    pub async fn parquet_view(
        &self,
        engine: &Engine,
        uri: &str,
    ) -> std::result::Result<Arc<dyn TableProvider>, TaskError> {
        let df = skip::read_staged(engine.context(), uri)
            .await
            .map_err(|e| TaskError::retryable(format!("{uri}: {e}")))?;
        Ok(df.into_view())
    }

    /// Compute a frame into a staged Parquet file; returns its row count
    /// and URI.
    pub async fn materialize(
        &self,
        df: DataFrame,
        name: &str,
    ) -> std::result::Result<(u64, String), TaskError> {
        use futures::StreamExt;
        let uri = self.staging_uri(&format!("{name}.parquet"));
        // A landed input's label must not name rows that a query mixed.
        let mut schema = df.schema().as_arrow().clone();
        schema.metadata.remove(skip::SOURCE_FILE_KEY);
        let mut out =
            crate::landing::ParquetOut::create(&uri, Arc::new(schema)).map_err(TaskError::fatal)?;
        let mut stream = df
            .execute_stream()
            .await
            .map_err(|e| TaskError::fatal(format!("SQL error: {e}")))?;
        while let Some(b) = stream.next().await {
            let b = b.map_err(|e| TaskError::fatal(format!("SQL error: {e}")))?;
            out.write(&b).map_err(TaskError::fatal)?;
        }
        let (uri, rows) = out
            .close()
            .map_err(TaskError::fatal)?
            .upload(self.storage())
            .await
            .map_err(TaskError::retryable)?;
        Ok((rows, uri))
    }

    /// The URI of `rel` in `zone`, or in `archive` when it was archived.
    pub async fn locate(
        &self,
        zone: ZoneName,
        rel: &str,
    ) -> std::result::Result<Option<String>, TaskError> {
        let storage = self.storage();
        let uri = storage.uri(zone.zone(), rel);
        if storage.exists(&uri).await.map_err(TaskError::retryable)? {
            return Ok(Some(uri));
        }
        if zone == ZoneName::Raw {
            let archived = storage.uri(Zone::Archive, rel);
            if storage
                .exists(&archived)
                .await
                .map_err(TaskError::retryable)?
            {
                self.log(format!("{rel}: using the archived copy {archived}"));
                return Ok(Some(archived));
            }
        }
        Ok(None)
    }

    /// Files in `zone` matching `pattern` (a path, `*` in the last
    /// segment, or a folder ending in `/`).
    pub async fn list_matching(
        &self,
        zone: Zone,
        pattern: &str,
    ) -> std::result::Result<Vec<String>, TaskError> {
        let storage = self.storage();
        if !pattern.contains('*') && !pattern.ends_with('/') {
            let uri = storage.uri(zone, pattern);
            return Ok(
                if storage.exists(&uri).await.map_err(TaskError::retryable)? {
                    vec![uri]
                } else {
                    vec![]
                },
            );
        }
        let (dir, last) = pattern.rsplit_once('/').unwrap_or(("", pattern));
        let base = storage.uri(zone, dir);
        let files = match storage.list(&base).await {
            Ok(f) => f,
            Err(gridata_storage::Error::NotFound { .. }) => vec![],
            Err(e) => return Err(TaskError::retryable(e)),
        };
        Ok(files
            .into_iter()
            .map(|f| f.uri)
            .filter(|u| {
                let name = u.rsplit('/').next().unwrap_or("");
                last.is_empty() || glob(last, name)
            })
            .filter(|u| !u.ends_with(".sha256"))
            .collect())
    }

    /// Files matching in `zone`, or in `archive` when none are left there.
    pub async fn find_files(
        &self,
        zone: ZoneName,
        pattern: &str,
    ) -> std::result::Result<Vec<String>, TaskError> {
        let found = self.list_matching(zone.zone(), pattern).await?;
        if found.is_empty() && zone == ZoneName::Raw {
            return self.list_matching(Zone::Archive, pattern).await;
        }
        Ok(found)
    }

    /// Move a file that failed validation to the rejected zone, with a
    /// reason file. Returns its new URI.
    pub async fn reject_file(
        &self,
        uri: &str,
        problems: &[String],
    ) -> std::result::Result<String, TaskError> {
        let storage = self.storage();
        let name = uri.rsplit('/').next().unwrap_or("file");
        let to = self.rejected_uri(&format!("files/{name}"));
        storage
            .rename(uri, &to)
            .await
            .map_err(TaskError::retryable)?;
        let sidecar = format!("{uri}.sha256");
        if storage.exists(&sidecar).await.unwrap_or(false) {
            let _ = storage.rename(&sidecar, &format!("{to}.sha256")).await;
        }
        let reason = serde_json::json!({
            "file": uri,
            "run_id": self.run_id(),
            "pipeline": self.pipeline_id(),
            "task": self.task_id,
            "problems": problems,
        });
        storage
            .write(
                &format!("{to}.reason.json"),
                serde_json::to_vec_pretty(&reason)
                    .unwrap_or_default()
                    .into(),
            )
            .await
            .map_err(TaskError::retryable)?;
        self.log(format!("moved {uri} to {to}"));
        Ok(to)
    }

    /// An input as a DataFrame; raw files are landed (once per run) and
    /// their read and quarantined counts added to `result`.
    pub async fn input_frame(
        &self,
        engine: &Engine,
        input: &Input,
        result: &mut TaskResult,
    ) -> std::result::Result<DataFrame, TaskError> {
        Ok(self.input_staged(engine, input, result).await?.0)
    }

    /// [`Self::input_frame`], and where its rows are staged when each
    /// `(_source_file, _source_line)` names one of them: a landed file, or
    /// a `validate_rows` output (possibly read without some lines).
    pub async fn input_staged(
        &self,
        engine: &Engine,
        input: &Input,
        result: &mut TaskResult,
    ) -> std::result::Result<(DataFrame, Option<StagedInput>), TaskError> {
        if let Some(task) = &input.task {
            let frame = self.task_frame(engine, task)?;
            // Only a landed file, or a row check over one, is known to keep
            // one row per source line; an SQL output may repeat or invent
            // them, and so may a row check that copied such rows.
            let output = self
                .shared
                .output_files
                .lock()
                .expect("outputs")
                .get(task)
                .filter(|o| o.unique_lines)
                .cloned();
            let staged = output.map(|output| {
                let skipped = self.output_provider(task).and_then(|p| {
                    p.as_any()
                        .downcast_ref::<SkipLinesTable>()
                        .map(|s| Arc::clone(s.skipped()))
                });
                StagedInput { output, skipped }
            });
            return Ok((frame, staged));
        }
        if let Some(table) = &input.table {
            let frame = engine
                .sql(&format!("SELECT * FROM {table}"))
                .await
                .map_err(|e| TaskError::fatal(format!("table {table}: {e}")))?;
            return Ok((frame, None));
        }
        let (label, file) = self.land_input(input).await?;
        let l = file.landed.get().expect("landed");
        let counts = {
            let mut counted_by = file.counted_by.lock().expect("counted");
            let mine = counted_by.as_ref().is_none_or(|t| *t == self.task_id);
            *counted_by = Some(counted_by.take().unwrap_or_else(|| self.task_id.clone()));
            mine
        };
        if counts {
            result.add_file(&label, l.rows_read, l.rows_rejected, 0);
            result.rows.rows_in += l.rows_read;
            result.rows.rows_rejected += l.rows_rejected;
        }
        let provider = self.parquet_view(engine, &l.staged).await?;
        let frame = engine
            .context()
            .read_table(provider)
            .map_err(TaskError::fatal)?;
        let staged = StagedInput {
            output: StagedOutput::landed(&l.staged),
            skipped: None,
        };
        Ok((frame, Some(staged)))
    }
}

impl TaskCtx {
    /// Lands a file input as staged Parquet, once per run: a file two
    /// tasks read (or a `validate_file` landed ahead of its readers) is
    /// parsed once. Returns the rows' `_source_file` label and the landing.
    pub(crate) async fn land_input(
        &self,
        input: &Input,
    ) -> std::result::Result<(String, Arc<LandedFile>), TaskError> {
        let Some(file) = &input.file else {
            return Err(TaskError::fatal("input names no task, table or file"));
        };
        let rel = self.render(file)?;
        let zone = input.zone.unwrap_or(ZoneName::Raw);
        let Some(uri) = self.locate(zone, &rel).await? else {
            return Err(TaskError::fatal(format!(
                "input file {rel} not found in zone {zone:?}"
            )));
        };
        let format = input
            .format
            .or_else(|| FileFormat::from_path(&rel))
            .ok_or_else(|| TaskError::fatal(format!("{uri}: cannot tell the format")))?;
        // Rows are labelled with the file's URI in its zone, also when it
        // is read back from the archive.
        let label = self.storage().uri(zone.zone(), &rel);
        let entry = {
            let mut landed = self.shared.landed.lock().expect("landed");
            Arc::clone(landed.entry(label.clone()).or_default())
        };
        // Named by the file, so a resumed run that lands it again replaces
        // the same files and never another file's.
        let h = {
            use sha2::Digest;
            hex::encode(&sha2::Sha256::digest(label.as_bytes())[..8])
        };
        entry
            .landed
            .get_or_try_init(|| async {
                let target = LandTarget {
                    staged: self.staging_uri(&format!("landed-{h}.parquet")),
                    // Named by the file, not the task: a resumed run that
                    // lands it from another task replaces the same file.
                    rejected: self.run_rejected_uri(&format!("{MALFORMED_DIR}/{h}.parquet")),
                    run_id: self.shared.run_id.clone(),
                    task_id: self.task_id.clone(),
                };
                let l = land(self.storage(), &uri, &label, format, &target)
                    .await
                    .map_err(TaskError::fatal)?;
                self.log(format!(
                    "read {}: {} rows, {} malformed line(s) quarantined",
                    uri, l.rows_read, l.rows_rejected
                ));
                Ok::<_, TaskError>(l)
            })
            .await?;
        Ok((label, entry))
    }

    /// The file inputs of the tasks downstream of this one that read the
    /// file `rel` of `zone`.
    pub(crate) fn downstream_readers(
        &self,
        zone: ZoneName,
        rel: &str,
    ) -> std::result::Result<Vec<Input>, TaskError> {
        let loaded = &self.shared.pipeline;
        let mut found = Vec::new();
        for id in loaded.downstream(&self.task_id) {
            let Some(task) = loaded.pipeline.tasks.iter().find(|t| t.id == id) else {
                continue;
            };
            let kind = task.kind();
            let inputs: Vec<&Input> = match &kind {
                TaskKind::ValidateRows(v) => vec![&v.input],
                TaskKind::Sql(q) => q.inputs.values().collect(),
                _ => continue,
            };
            for input in inputs {
                if let Some(f) = &input.file
                    && input.zone.unwrap_or(ZoneName::Raw) == zone
                    && self.render(f)? == rel
                {
                    found.push(input.clone());
                }
            }
        }
        Ok(found)
    }
}

fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((pre, rest)) => {
            if !name.starts_with(pre) {
                return false;
            }
            let tail = &name[pre.len()..];
            if rest.is_empty() {
                return true;
            }
            (0..=tail.len()).any(|i| tail.is_char_boundary(i) && glob(rest, &tail[i..]))
        }
    }
}

/// How a run's execution ended, before it is recorded.
enum Outcome {
    /// Every task succeeded.
    Success,
    /// A task failed or the run timed out.
    Failed(String),
    /// Stopped early.
    Stopped(StopReason),
}

impl Runner {
    /// A staged output read back, or `None` when one of its files is gone.
    async fn reload(&self, staged: &StagedOutput) -> Result<Option<Arc<dyn TableProvider>>> {
        let storage = self.lake.storage();
        for uri in std::iter::once(&staged.file).chain(&staged.without) {
            if !storage.exists(uri).await.unwrap_or(false) {
                return Ok(None);
            }
        }
        let engine = Engine::new(self.lake.clone())
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        let read = |uri: String| {
            let ctx = engine.context().clone();
            async move {
                skip::read_staged(&ctx, uri.as_str())
                    .await
                    .map_err(|e| Error::Internal(format!("{uri}: {e}")))
            }
        };
        let base = read(staged.file.clone()).await?.into_view();
        if staged.without.is_empty() {
            return Ok(Some(base));
        }
        let mut skipped = SkippedLines::default();
        for uri in &staged.without {
            let batches = read(uri.clone())
                .await?
                .select_columns(&[skip::SOURCE_FILE, skip::SOURCE_LINE])
                .map_err(|e| Error::Internal(format!("{uri}: {e}")))?
                .collect()
                .await
                .map_err(|e| Error::Internal(format!("{uri}: {e}")))?;
            for b in batches {
                skipped
                    .insert_rows(b.column(0), b.column(1))
                    .map_err(|e| Error::Internal(format!("{uri}: {e}")))?;
            }
        }
        let table = SkipLinesTable::try_new(base, Arc::new(skipped))
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(Some(Arc::new(table)))
    }

    /// A runner over a lake and a state store.
    pub fn new(lake: Lake, state: Arc<dyn Store>, clock: Arc<dyn Clock>, home: PathBuf) -> Self {
        Self {
            lake,
            state,
            clock,
            home,
            openlineage: None,
        }
    }

    /// The state store.
    pub fn state(&self) -> &Arc<dyn Store> {
        &self.state
    }

    /// The lake.
    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// A new run record with resolved parameters (not yet stored).
    pub fn new_run(&self, pipeline: &Loaded, opts: &RunOptions) -> Result<RunRecord> {
        let p = &pipeline.pipeline;
        let now = self.clock.now_ms();
        let params = crate::load::resolve_params(p, &opts.params, opts.logical_ms.unwrap_or(now))?;
        let trigger = if opts.trigger.is_empty() {
            "manual"
        } else {
            &opts.trigger
        };
        let mut run = RunRecord::queued(
            uuid::Uuid::now_v7().to_string(),
            &p.id,
            params,
            trigger,
            now,
        );
        run.dedup_key = opts.dedup_key.clone();
        run.backfill_id = opts.backfill_id.clone();
        Ok(run)
    }

    /// Queue a run for a scheduler. Returns `None` when a run with the
    /// same dedup key exists.
    pub async fn enqueue(&self, pipeline: &Loaded, opts: &RunOptions) -> Result<Option<RunRecord>> {
        let run = self.new_run(pipeline, opts)?;
        Ok(self.state.enqueue_run(&run).await?.then_some(run))
    }

    /// Run a validated pipeline to its end in this process, holding a
    /// lease on it so that a scheduler resumes it if this process dies.
    pub async fn run(&self, pipeline: Arc<Loaded>, opts: RunOptions) -> Result<RunSummary> {
        let lease = Lease::local(Duration::from_secs(30));
        let mut run = self.new_run(&pipeline, &opts)?;
        let now = self.clock.now_ms();
        run.state = RunState::Running;
        run.started_ms = Some(now);
        run.owner = Some(lease.owner.clone());
        run.lease_until_ms = Some(now + lease.ttl.as_millis() as i64);
        if !self.state.enqueue_run(&run).await? {
            return Err(Error::Internal(format!(
                "a run with key '{}' exists",
                run.dedup_key.unwrap_or_default()
            )));
        }
        let exec = ExecOptions {
            events: opts.events,
            retry_delay_scale: opts.retry_delay_scale,
            lease: Some(lease),
            stop: StopSignal::default(),
        };
        self.execute(pipeline, &run.run_id, &exec).await
    }

    /// Execute a run this process owns, from wherever it stopped, to its
    /// end or until `opts.stop` fires.
    pub async fn execute(
        &self,
        pipeline: Arc<Loaded>,
        run_id: &str,
        opts: &ExecOptions,
    ) -> Result<RunSummary> {
        let p = &pipeline.pipeline;
        let record = self.state.run(run_id).await?;
        let started = record.started_ms.unwrap_or(record.created_ms);
        let mut vars = record.params.clone();
        vars.insert("run_id".into(), run_id.to_string());
        vars.insert("pipeline".into(), p.id.clone());
        vars.insert(
            "run_started_at".into(),
            chrono::DateTime::from_timestamp_millis(started)
                .map(|t| t.naive_utc().format("%Y-%m-%d %H:%M:%S%.3f").to_string())
                .unwrap_or_default(),
        );
        let shared = Arc::new(Shared {
            run_id: run_id.to_string(),
            pipeline: pipeline.clone(),
            params: record.params.clone(),
            vars,
            lake: self.lake.clone(),
            state: self.state.clone(),
            clock: self.clock.clone(),
            home: self.home.clone(),
            outputs: Mutex::new(HashMap::new()),
            output_files: Mutex::new(HashMap::new()),
            lineage: Mutex::new(HashMap::new()),
            staged: Mutex::new(Vec::new()),
            published: Mutex::new(Vec::new()),
            landed: Mutex::new(HashMap::new()),
        });
        if record.state != RunState::Running {
            self.state
                .set_run_state(run_id, RunState::Running, self.clock.now_ms(), None)
                .await?;
        }
        if let Some(tx) = &opts.events {
            let _ = tx.send(RunEvent::RunStarted {
                run_id: run_id.to_string(),
                tasks: p.tasks.iter().map(|t| t.id.clone()).collect(),
            });
        }
        self.emit_run(&shared, EventType::Start, None).await;
        let heartbeat = opts
            .lease
            .clone()
            .map(|lease| self.spawn_heartbeat(run_id.to_string(), lease, opts.stop.clone()));
        if record.cancel_requested {
            opts.stop.stop(StopReason::Cancel);
        }
        let elapsed = Duration::from_millis((self.clock.now_ms() - started).max(0) as u64);
        let budget = p.defaults.run_timeout.0.saturating_sub(elapsed);
        let outcome = async {
            let states = self.recover(&shared).await?;
            match tokio::time::timeout(budget, self.schedule(shared.clone(), states, opts)).await {
                Ok(r) => r,
                Err(_) => Ok(Outcome::Failed(format!(
                    "run timed out after {}",
                    p.defaults.run_timeout
                ))),
            }
        }
        .await;
        if let Some(h) = heartbeat {
            h.abort();
        }
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => Outcome::Failed(e.to_string()),
        };
        self.finish(&shared, outcome, opts).await?;
        Ok(RunSummary {
            run: self.state.run(run_id).await?,
            tasks: self.state.tasks(run_id).await?,
            files: self.state.file_counts(run_id).await?,
            checks: self.state.checks(run_id).await?,
        })
    }

    fn spawn_heartbeat(
        &self,
        run_id: String,
        lease: Lease,
        stop: StopSignal,
    ) -> tokio::task::JoinHandle<()> {
        let state = self.state.clone();
        let clock = self.clock.clone();
        let every = (lease.ttl / 4).min(Duration::from_secs(1));
        let ttl = lease.ttl.as_millis() as i64;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match state
                    .heartbeat_run(&run_id, &lease.owner, clock.now_ms(), ttl)
                    .await
                {
                    Ok(hb) if !hb.owned => {
                        tracing::warn!(run = %run_id, owner = %lease.owner, "lease lost; stopping");
                        stop.stop(StopReason::LeaseLost);
                        return;
                    }
                    Ok(hb) if hb.cancel_requested => stop.stop(StopReason::Cancel),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(run = %run_id, error = %e, "lease renewal failed"),
                }
            }
        })
    }

    /// Record how the run ended: publish nothing more, discard what was
    /// staged (unless handing back), and set the run's state.
    async fn finish(
        &self,
        shared: &Arc<Shared>,
        outcome: Outcome,
        opts: &ExecOptions,
    ) -> Result<()> {
        let run_id = &shared.run_id;
        let now = self.clock.now_ms();
        match outcome {
            Outcome::Stopped(StopReason::LeaseLost) => return Ok(()),
            Outcome::Stopped(StopReason::Drain | StopReason::HandBack) => {
                // Tasks that were interrupted are closed by whoever resumes.
                if let Some(lease) = &opts.lease {
                    self.state.release_run(run_id, &lease.owner).await?;
                }
                tracing::info!(run = %run_id, "run handed back");
                return Ok(());
            }
            _ => {}
        }
        self.discard_staged(shared).await;
        self.state.release_slots(run_id, None).await?;
        let (state, error) = match outcome {
            Outcome::Success => {
                self.cleanup_staging(run_id).await;
                self.record_metadata(shared).await;
                (RunState::Success, None)
            }
            Outcome::Failed(e) => (RunState::Failed, Some(e)),
            Outcome::Stopped(_) => {
                for t in self.state.tasks(run_id).await? {
                    if !t.state.is_terminal() {
                        if t.state == TaskState::Running {
                            self.state
                                .finish_attempt(
                                    run_id,
                                    &t.task_id,
                                    t.attempts.max(1),
                                    TaskState::Failed,
                                    now,
                                    Some("run cancelled"),
                                    RowCounts::default(),
                                    None,
                                )
                                .await?;
                        } else {
                            self.state
                                .set_task_state(
                                    run_id,
                                    &t.task_id,
                                    TaskState::Skipped,
                                    now,
                                    Some("run cancelled"),
                                )
                                .await?;
                        }
                    }
                }
                (RunState::Cancelled, Some("cancelled by a user".to_string()))
            }
        };
        self.state
            .set_run_state(run_id, state, now, error.as_deref())
            .await?;
        let event = match state {
            RunState::Success => EventType::Complete,
            RunState::Cancelled => EventType::Abort,
            _ => EventType::Fail,
        };
        self.emit_run(shared, event, error.as_deref()).await;
        Ok(())
    }

    /// Register every table this run wrote, with its schema, metadata, row
    /// count and PII found in a sample of rows.
    /// Register the raw file patterns a write read as datasets (namespace:
    /// their zone), with the columns lineage found read from them.
    async fn register_files(
        &self,
        edges: &[gridata_state::LineageEdge],
        shared: &Arc<Shared>,
        now: i64,
    ) {
        let mut files: BTreeMap<&str, std::collections::BTreeSet<&str>> = BTreeMap::new();
        for e in edges {
            if let Some((zone, _)) = e.source_dataset.split_once(':')
                && zone != "task"
                && !zone.contains('.')
            {
                let cols = files.entry(e.source_dataset.as_str()).or_default();
                if !e.source_field.is_empty() {
                    cols.insert(e.source_field.as_str());
                }
            }
        }
        for (name, cols) in files {
            let record = gridata_state::DatasetRecord {
                name: name.to_string(),
                namespace: name.split(':').next().unwrap_or_default().to_string(),
                description: Some(format!(
                    "Files matching {} in the {} zone",
                    name.split_once(':').map_or("", |x| x.1),
                    name.split(':').next().unwrap_or_default()
                )),
                owners: shared.pipeline.pipeline.owners.clone(),
                tags: vec!["files".into()],
                domain: None,
                glossary_terms: Vec::new(),
                columns: cols
                    .into_iter()
                    .map(|c| gridata_state::ColumnInfo {
                        name: c.to_string(),
                        ty: "string".into(),
                        description: None,
                        pii: None,
                        pii_confidence: None,
                        masking: None,
                    })
                    .collect(),
                row_count: None,
                snapshot_id: None,
                size_bytes: None,
                quality: None,
                pipeline: Some(shared.pipeline.pipeline.id.clone()),
                updated_ms: now,
            };
            if let Err(e) = self.state.upsert_dataset(&record).await {
                tracing::warn!(dataset = name, error = %e, "could not register files");
            }
        }
    }

    async fn register_dataset(&self, table: &str, shared: &Arc<Shared>, now: i64) {
        let pipeline = shared.pipeline.pipeline.id.as_str();
        let checks: Vec<_> = self
            .state
            .checks(&shared.run_id)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.dataset == table && c.severity == "error")
            .collect();
        let quality = (!checks.is_empty()).then(|| {
            if checks.iter().all(|c| c.passed) {
                "passed".to_string()
            } else {
                "failed".to_string()
            }
        });
        let Ok(name) = TableName::parse(table) else {
            return;
        };
        let Ok(t) = self.lake.load_table(&name).await else {
            return;
        };
        let props = t.metadata.properties();
        let list = |k: &str| -> Vec<String> {
            props
                .get(k)
                .map(|v| {
                    v.split(',')
                        .map(|x| x.trim().to_string())
                        .filter(|x| !x.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        let pii: HashMap<String, gridata_metadata::Classification> = async {
            let engine = Engine::new(self.lake.clone()).await.ok()?;
            let (_, batches) = engine
                .query(&format!("SELECT * FROM {name} LIMIT 200"))
                .await
                .ok()?;
            Some(
                gridata_metadata::pii::classify_batches(&batches)
                    .into_iter()
                    .filter_map(|(c, k)| k.map(|k| (c, k)))
                    .collect(),
            )
        }
        .await
        .unwrap_or_default();
        let snap = t.metadata.current_snapshot();
        let record = gridata_state::DatasetRecord {
            name: table.to_string(),
            namespace: name.namespace_str(),
            description: props.get("comment").cloned(),
            owners: list("owner"),
            tags: list("gridata.tags"),
            domain: props.get("gridata.domain").cloned(),
            glossary_terms: list("gridata.glossary_terms"),
            columns: t
                .metadata
                .current_schema()
                .as_struct()
                .fields()
                .iter()
                .map(|f| gridata_state::ColumnInfo {
                    name: f.name.clone(),
                    ty: f.field_type.to_string(),
                    description: f.doc.clone().or_else(|| {
                        props
                            .get(&format!("gridata.column.{}.description", f.name))
                            .cloned()
                    }),
                    pii: pii.get(&f.name).map(|k| k.kind.as_str().to_string()),
                    pii_confidence: pii.get(&f.name).map(|k| k.confidence),
                    masking: props
                        .get(&format!("gridata.column.{}.masking", f.name))
                        .cloned(),
                })
                .collect(),
            row_count: snap.and_then(|s| {
                s.summary()
                    .additional_properties
                    .get("total-records")
                    .and_then(|v| v.parse().ok())
            }),
            snapshot_id: snap.map(|s| s.snapshot_id()),
            size_bytes: snap.and_then(|s| {
                s.summary()
                    .additional_properties
                    .get("total-files-size")
                    .and_then(|v| v.parse().ok())
            }),
            quality,
            pipeline: Some(pipeline.to_string()),
            updated_ms: now,
        };
        if let Err(e) = self.state.upsert_dataset(&record).await {
            tracing::warn!(table, error = %e, "could not register dataset");
        }
    }

    /// Store the column lineage of every table this run wrote (replacing
    /// the table's previous lineage) and register the tables.
    async fn record_metadata(&self, shared: &Arc<Shared>) {
        let run_id = &shared.run_id;
        let Ok(tasks) = self.state.tasks(run_id).await else {
            return;
        };
        let now = self.clock.now_ms();
        for t in tasks {
            let Some(v) = t
                .output
                .as_deref()
                .and_then(|o| serde_json::from_str::<serde_json::Value>(o).ok())
            else {
                continue;
            };
            let Some(table) = v["table"].as_str() else {
                continue;
            };
            let lineage = v.get("lineage").cloned().unwrap_or_default();
            if lineage.is_null() {
                self.register_dataset(table, shared, now).await;
                continue;
            }
            let edge = |field: &str, src: &serde_json::Value| gridata_state::LineageEdge {
                target_dataset: table.to_string(),
                target_field: field.to_string(),
                source_dataset: src["dataset"].as_str().unwrap_or_default().to_string(),
                source_field: src["field"].as_str().unwrap_or_default().to_string(),
                subtypes: src["transformations"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x["subtype"].as_str().map(String::from))
                    .collect(),
                pipeline: shared.pipeline.pipeline.id.clone(),
                task_id: t.task_id.clone(),
                run_id: run_id.clone(),
                updated_ms: now,
            };
            let mut edges = Vec::new();
            if let Some(fields) = lineage["fields"].as_object() {
                for (col, srcs) in fields {
                    for src in srcs.as_array().into_iter().flatten() {
                        edges.push(edge(col, src));
                    }
                }
            }
            for src in lineage["dataset"].as_array().into_iter().flatten() {
                edges.push(edge("", src));
            }
            if let Err(e) = self.state.record_lineage(table, &edges).await {
                tracing::warn!(table, error = %e, "could not record lineage");
            }
            self.register_files(&edges, shared, now).await;
            self.register_dataset(table, shared, now).await;
        }
    }

    async fn discard_staged(&self, shared: &Arc<Shared>) {
        let leftover: Vec<StagedWrite> =
            std::mem::take(&mut *shared.staged.lock().expect("staged"));
        for w in leftover {
            if let Err(e) = self.lake.discard(&w.table, w.snapshot_id, &w.added).await {
                tracing::warn!(table = %w.table, error = %e, "could not discard staged snapshot");
            } else {
                tracing::info!(table = %w.table, snapshot = w.snapshot_id, "staged snapshot discarded");
            }
        }
    }

    async fn cleanup_staging(&self, run_id: &str) {
        let storage = self.lake.storage();
        let dir = storage.uri(Zone::Staging, &format!("runs/{run_id}"));
        if let Ok(files) = storage.list(&dir).await {
            for f in files {
                let _ = storage.delete(&f.uri).await;
            }
        }
        if let Some(p) = dir.strip_prefix("file://") {
            let _ = std::fs::remove_dir_all(p);
        }
    }

    /// Bring a run's recorded state to where execution can go on; returns
    /// each task's state.
    async fn recover(&self, shared: &Arc<Shared>) -> Result<HashMap<String, TaskState>> {
        let loaded = shared.pipeline.clone();
        let p = &loaded.pipeline;
        let run_id = shared.run_id.as_str();
        let now = self.clock.now_ms();
        let records: HashMap<String, TaskRecord> = self
            .state
            .tasks(run_id)
            .await?
            .into_iter()
            .map(|t| (t.task_id.clone(), t))
            .collect();
        let mut states: HashMap<String, TaskState> = HashMap::new();
        for t in &p.tasks {
            let state = match records.get(&t.id) {
                None => {
                    self.state
                        .set_task_state(run_id, &t.id, TaskState::Queued, now, None)
                        .await?;
                    TaskState::Queued
                }
                Some(r) if r.state == TaskState::Running => {
                    let msg = "interrupted: the process running it stopped; retrying";
                    tracing::warn!(run = run_id, task = %t.id, attempt = r.attempts, "{msg}");
                    self.state
                        .finish_attempt(
                            run_id,
                            &t.id,
                            r.attempts.max(1),
                            TaskState::Failed,
                            now,
                            Some(msg),
                            RowCounts::default(),
                            None,
                        )
                        .await?;
                    TaskState::Queued
                }
                Some(r) if r.state == TaskState::UpForRetry => TaskState::Queued,
                Some(r) => r.state,
            };
            states.insert(t.id.clone(), state);
        }
        self.state.release_slots(run_id, None).await?;
        let mut reset: Vec<String> = Vec::new();
        // Writes: keep published ones, discard what was only staged.
        for t in &p.tasks {
            let TaskKind::Write(w) = t.kind() else {
                continue;
            };
            let table = template::render(&w.table, &shared.vars)
                .map_err(|e| Error::Internal(e.to_string()))?;
            let name = TableName::parse(&table).map_err(|e| Error::Internal(e.to_string()))?;
            let Ok(found) = self.lake.run_writes(&name, run_id, &t.id).await else {
                continue;
            };
            let done = states[&t.id] == TaskState::Success;
            // A write handed back before its checks passed: keep it staged
            // when nothing moved the table meanwhile.
            let keep = match found.staged.as_slice() {
                [one] if done && !found.published && one.parent_id == found.current => {
                    Some(one.clone())
                }
                _ => None,
            };
            for st in &found.staged {
                if keep.as_ref() == Some(st) {
                    continue;
                }
                tracing::info!(table = %name, snapshot = st.snapshot_id, "discarding a snapshot staged by an interrupted attempt");
                self.lake
                    .discard(&name, st.snapshot_id, &st.added)
                    .await
                    .map_err(|e| Error::Publish {
                        table: table.clone(),
                        reason: e.to_string(),
                    })?;
            }
            if let Some(st) = keep {
                tracing::info!(table = %name, snapshot = st.snapshot_id, "resuming with the staged write");
                shared.staged.lock().expect("staged").push(StagedWrite {
                    task_id: t.id.clone(),
                    table: name.clone(),
                    snapshot_id: st.snapshot_id,
                    parent: st.parent_id,
                    request: None,
                    added: st.added,
                });
            } else if done && !found.published {
                reset.push(t.id.clone());
                reset.extend(loaded.downstream(&t.id));
            }
        }
        // Outputs that unfinished tasks need: reload or recompute.
        let needed = |id: &str, states: &HashMap<String, TaskState>| {
            loaded
                .downstream(id)
                .iter()
                .any(|d| states[d] != TaskState::Success)
        };
        for id in &reset {
            states.insert(id.clone(), TaskState::Queued);
        }
        let mut changed = true;
        while changed {
            changed = false;
            for t in &p.tasks {
                if states[&t.id] != TaskState::Success
                    || !matches!(t.kind(), TaskKind::Sql(_) | TaskKind::ValidateRows(_))
                    || !needed(&t.id, &states)
                    || shared.outputs.lock().expect("outputs").contains_key(&t.id)
                {
                    continue;
                }
                let staged = records
                    .get(&t.id)
                    .and_then(|r| r.output.as_deref())
                    .and_then(|o| serde_json::from_str::<serde_json::Value>(o).ok())
                    .and_then(|v| {
                        let file = v.get("staged_output")?.as_str()?.to_string();
                        let without = v
                            .get("staged_without")
                            .and_then(|w| w.as_array())
                            .map(|w| w.iter().filter_map(|u| Some(u.as_str()?.to_string())))
                            .map(Iterator::collect)
                            .unwrap_or_default();
                        let unique_lines = v
                            .get("staged_unique_lines")
                            .and_then(serde_json::Value::as_bool)
                            .unwrap_or(false);
                        Some(StagedOutput {
                            file,
                            without,
                            unique_lines,
                        })
                    });
                let restored = match staged {
                    Some(staged) => match self.reload(&staged).await? {
                        Some(provider) => {
                            shared
                                .outputs
                                .lock()
                                .expect("outputs")
                                .insert(t.id.clone(), provider);
                            shared
                                .output_files
                                .lock()
                                .expect("outputs")
                                .insert(t.id.clone(), staged);
                            true
                        }
                        None => false,
                    },
                    None => false,
                };
                if !restored {
                    states.insert(t.id.clone(), TaskState::Queued);
                    reset.push(t.id.clone());
                    changed = true;
                }
            }
        }
        reset.sort();
        reset.dedup();
        for id in &reset {
            tracing::info!(run = run_id, task = %id, "task will run again");
            self.state
                .set_task_state(run_id, id, TaskState::Queued, now, None)
                .await?;
        }
        Ok(states)
    }

    /// Run the DAG from the given states.
    async fn schedule(
        &self,
        shared: Arc<Shared>,
        mut states: HashMap<String, TaskState>,
        opts: &ExecOptions,
    ) -> Result<Outcome> {
        let loaded = shared.pipeline.clone();
        let p = &loaded.pipeline;
        let run_id = shared.run_id.clone();
        let attempts: HashMap<String, u32> = self
            .state
            .tasks(&run_id)
            .await?
            .into_iter()
            .map(|t| (t.task_id, t.attempts))
            .collect();
        let mut running: JoinSet<(String, std::result::Result<(), String>)> = JoinSet::new();
        let mut first_error: Option<String> = None;
        loop {
            if let Some(reason) = opts.stop.reason()
                && reason != StopReason::Drain
            {
                running.abort_all();
                while running.join_next().await.is_some() {}
                return Ok(Outcome::Stopped(reason));
            }
            // Mark tasks whose upstream failed.
            let mut changed = true;
            while changed {
                changed = false;
                for t in &p.tasks {
                    if states[&t.id] != TaskState::Queued {
                        continue;
                    }
                    if t.depends_on.iter().any(|d| {
                        matches!(
                            states[d],
                            TaskState::Failed | TaskState::UpstreamFailed | TaskState::Skipped
                        )
                    }) {
                        states.insert(t.id.clone(), TaskState::UpstreamFailed);
                        self.state
                            .set_task_state(
                                &run_id,
                                &t.id,
                                TaskState::UpstreamFailed,
                                self.clock.now_ms(),
                                None,
                            )
                            .await?;
                        if let Some(tx) = &opts.events {
                            let _ = tx.send(RunEvent::TaskFinished {
                                task_id: t.id.clone(),
                                state: TaskState::UpstreamFailed,
                                rows: RowCounts::default(),
                                duration: Duration::ZERO,
                            });
                        }
                        changed = true;
                    }
                }
            }
            // Start ready tasks, in file order, unless draining.
            let draining = opts.stop.reason() == Some(StopReason::Drain);
            for t in &p.tasks {
                if draining || running.len() >= p.max_active_tasks.max(1) {
                    break;
                }
                if states[&t.id] != TaskState::Queued
                    || !t.depends_on.iter().all(|d| states[d] == TaskState::Success)
                {
                    continue;
                }
                states.insert(t.id.clone(), TaskState::Running);
                let me = self.clone();
                let shared = shared.clone();
                let task = t.clone();
                let opts = opts.clone();
                let first = attempts.get(&t.id).copied().unwrap_or(0) + 1;
                running.spawn(async move {
                    let r = me.run_task(shared, &task, &opts, first).await;
                    (task.id.clone(), r)
                });
            }
            if running.is_empty() {
                if draining && states.values().any(|s| *s == TaskState::Queued) {
                    return Ok(Outcome::Stopped(StopReason::Drain));
                }
                break;
            }
            let done = tokio::select! {
                done = running.join_next() => done,
                _ = opts.stop.changed() => continue,
            };
            let Some(done) = done else {
                break;
            };
            let (task_id, r) = done.map_err(|e| Error::Internal(e.to_string()))?;
            match r {
                Ok(()) => {
                    states.insert(task_id.clone(), TaskState::Success);
                    self.publish_ready(&shared, &states, opts).await?;
                }
                Err(e) => {
                    states.insert(task_id.clone(), TaskState::Failed);
                    if first_error.is_none() {
                        first_error = Some(format!("task '{task_id}' failed: {e}"));
                    }
                }
            }
        }
        if let Some(e) = first_error {
            return Ok(Outcome::Failed(e));
        }
        if let Some(t) = states.iter().find(|(_, s)| **s != TaskState::Success) {
            return Ok(Outcome::Failed(format!("task '{}' is {}", t.0, t.1)));
        }
        // Everything passed: publish what is left.
        self.publish_ready(&shared, &states, opts).await?;
        Ok(Outcome::Success)
    }

    async fn publish_ready(
        &self,
        shared: &Arc<Shared>,
        states: &HashMap<String, TaskState>,
        opts: &ExecOptions,
    ) -> Result<()> {
        let ready: Vec<StagedWrite> = {
            let staged = shared.staged.lock().expect("staged");
            staged
                .iter()
                .filter(|w| {
                    shared
                        .pipeline
                        .gates(&w.task_id)
                        .iter()
                        .all(|q| states.get(q) == Some(&TaskState::Success))
                })
                .cloned()
                .collect()
        };
        for w in ready {
            let publish = async {
                match &w.request {
                    Some(r) => self.lake.publish(&w.table, w.snapshot_id, r).await,
                    None => self.lake.fast_forward(&w.table, w.snapshot_id).await,
                }
            };
            let t = publish.await.map_err(|e| Error::Publish {
                table: w.table.to_string(),
                reason: e.to_string(),
            })?;
            let snap = t.metadata.current_snapshot_id().unwrap_or(w.snapshot_id);
            tracing::info!(table = %w.table, snapshot = snap, "published");
            shared
                .staged
                .lock()
                .expect("staged")
                .retain(|s| s.task_id != w.task_id);
            shared
                .published
                .lock()
                .expect("published")
                .push(w.table.to_string());
            if let Some(tx) = &opts.events {
                let _ = tx.send(RunEvent::Published {
                    table: w.table.to_string(),
                    snapshot_id: snap,
                });
            }
        }
        Ok(())
    }

    /// Wait for a slot of the task's pool.
    async fn take_slot(
        &self,
        pool: &str,
        run_id: &str,
        task_id: &str,
    ) -> std::result::Result<(), String> {
        let mut waited = false;
        loop {
            match self
                .state
                .acquire_slot(pool, run_id, task_id, self.clock.now_ms())
                .await
            {
                Ok(true) => return Ok(()),
                Ok(false) => {
                    if !waited {
                        tracing::info!(
                            run = run_id,
                            task = task_id,
                            pool,
                            "waiting for a pool slot"
                        );
                        waited = true;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// One task with its retries, from attempt `first`. Returns the final
    /// error message.
    async fn run_task(
        &self,
        shared: Arc<Shared>,
        task: &Task,
        opts: &ExecOptions,
        first: u32,
    ) -> std::result::Result<(), String> {
        let p = &shared.pipeline.pipeline;
        let retries = task.retries.unwrap_or(p.defaults.retries);
        let base = task.retry_delay.unwrap_or(p.defaults.retry_delay).0;
        let timeout = task.timeout.unwrap_or(p.defaults.timeout).0;
        let run_id = shared.run_id.clone();
        let started = Instant::now();
        let kind = task.kind();
        let mut attempt = first - 1;
        let mut failures = 0u32;
        loop {
            attempt += 1;
            if let Some(pool) = &task.pool {
                self.take_slot(pool, &run_id, &task.id).await?;
            }
            let now = self.clock.now_ms();
            if let Err(e) = self
                .state
                .start_attempt(&run_id, &task.id, attempt, now)
                .await
            {
                return Err(e.to_string());
            }
            if let Some(tx) = &opts.events {
                let _ = tx.send(RunEvent::TaskStarted {
                    task_id: task.id.clone(),
                    attempt,
                });
            }
            self.emit_task(&shared, task, attempt, EventType::Start, None, None)
                .await;
            let ctx = TaskCtx {
                shared: shared.clone(),
                task_id: task.id.clone(),
                attempt,
                logs: Arc::new(Mutex::new(Vec::new())),
            };
            let outcome = match tokio::time::timeout(timeout, run_kind(&kind, &ctx)).await {
                Ok(r) => r,
                Err(_) => Err(TaskError::retryable(format!(
                    "timed out after {}",
                    crate::model::Dur(timeout)
                ))),
            };
            if task.pool.is_some() {
                let _ = self.state.release_slots(&run_id, Some(&task.id)).await;
            }
            let logs = std::mem::take(&mut *ctx.logs.lock().expect("logs"));
            let _ = self.state.append_logs(&run_id, &logs).await;
            let end = self.clock.now_ms();
            match outcome {
                Ok(mut result) => {
                    if let Some(staged) = shared.output_files.lock().expect("outputs").get(&task.id)
                        && let Some(o) = result.output.as_object_mut()
                    {
                        o.insert("staged_output".into(), staged.file.clone().into());
                        if !staged.without.is_empty() {
                            o.insert("staged_without".into(), staged.without.clone().into());
                        }
                        if staged.unique_lines {
                            o.insert("staged_unique_lines".into(), true.into());
                        }
                    }
                    let files: Vec<FileCounts> = result.files.values().cloned().collect();
                    let record = async {
                        self.state
                            .record_file_counts(&run_id, &task.id, &files)
                            .await?;
                        self.state
                            .finish_attempt(
                                &run_id,
                                &task.id,
                                attempt,
                                TaskState::Success,
                                end,
                                None,
                                result.rows,
                                Some(&result.output.to_string()),
                            )
                            .await
                    };
                    if let Err(e) = record.await {
                        return Err(e.to_string());
                    }
                    self.emit_task(
                        &shared,
                        task,
                        attempt,
                        EventType::Complete,
                        Some(&result.output),
                        None,
                    )
                    .await;
                    if let Some(tx) = &opts.events {
                        let _ = tx.send(RunEvent::TaskFinished {
                            task_id: task.id.clone(),
                            state: TaskState::Success,
                            rows: result.rows,
                            duration: started.elapsed(),
                        });
                    }
                    return Ok(());
                }
                Err(e) => {
                    failures += 1;
                    let message = format!("{}: {}", kind.name(), e.message);
                    let last = !e.retryable || failures > retries;
                    let state = if last {
                        TaskState::Failed
                    } else {
                        TaskState::UpForRetry
                    };
                    tracing::warn!(run = %run_id, task = %task.id, attempt, error = %message, "task attempt failed");
                    let _ = self
                        .state
                        .append_logs(
                            &run_id,
                            &[LogLine {
                                task_id: task.id.clone(),
                                attempt,
                                seq: logs.len() as u32,
                                ts_ms: end,
                                level: "error".into(),
                                message: message.clone(),
                            }],
                        )
                        .await;
                    let _ = self
                        .state
                        .finish_attempt(
                            &run_id,
                            &task.id,
                            attempt,
                            state,
                            end,
                            Some(&message),
                            RowCounts::default(),
                            None,
                        )
                        .await;
                    self.emit_task(
                        &shared,
                        task,
                        attempt,
                        EventType::Fail,
                        None,
                        Some(&message),
                    )
                    .await;
                    if last {
                        if let Some(tx) = &opts.events {
                            let _ = tx.send(RunEvent::TaskFinished {
                                task_id: task.id.clone(),
                                state: TaskState::Failed,
                                rows: RowCounts::default(),
                                duration: started.elapsed(),
                            });
                        }
                        return Err(message);
                    }
                    let delay = backoff(
                        base,
                        p.defaults.retry_backoff,
                        p.defaults.max_retry_delay.0,
                        failures,
                    )
                    .mul_f64(opts.retry_delay_scale.unwrap_or(1.0));
                    if let Some(tx) = &opts.events {
                        let _ = tx.send(RunEvent::TaskRetrying {
                            task_id: task.id.clone(),
                            attempt,
                            error: message.clone(),
                            delay,
                        });
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// The wait before attempt `failed + 1`: `base * factor^(failed - 1)`,
/// capped, with ±10% jitter.
pub fn backoff(base: Duration, factor: f64, cap: Duration, failed: u32) -> Duration {
    use rand::Rng;
    let raw = base.as_secs_f64() * factor.max(1.0).powi(failed.saturating_sub(1) as i32);
    let capped = raw.min(cap.as_secs_f64());
    let jitter = rand::rng().random_range(0.9..=1.1);
    Duration::from_secs_f64(capped * jitter)
}

async fn run_kind(kind: &TaskKind, ctx: &TaskCtx) -> std::result::Result<TaskResult, TaskError> {
    match kind {
        TaskKind::Sense(c) => tasks::sense::run(c, ctx).await,
        TaskKind::ValidateFile(c) => tasks::validate_file::run(c, ctx).await,
        TaskKind::Sql(c) => tasks::sql::run(c, ctx).await,
        TaskKind::ValidateRows(c) => tasks::validate_rows::run(c, ctx).await,
        TaskKind::Write(c) => tasks::write::run(c, ctx).await,
        TaskKind::Quality(c) => tasks::quality::run(c, ctx).await,
        TaskKind::Archive(c) => tasks::archive::run(c, ctx).await,
        TaskKind::Notify(c) => tasks::notify::run(c, ctx).await,
        TaskKind::Command(c) => tasks::command::run(c, ctx).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_follows_the_seeds() {
        let five = Duration::from_secs(300);
        let cap = Duration::from_secs(3600);
        let d1 = backoff(five, 3.0, cap, 1).as_secs_f64();
        let d2 = backoff(five, 3.0, cap, 2).as_secs_f64();
        assert!((270.0..=330.0).contains(&d1), "{d1}");
        assert!((810.0..=990.0).contains(&d2), "{d2}");
        assert!(backoff(five, 3.0, cap, 9).as_secs_f64() <= 3960.0);
    }

    #[test]
    fn globs() {
        assert!(glob("*.csv", "orders.csv"));
        assert!(glob("orders*", "orders.csv"));
        assert!(!glob("*.csv", "orders.csv.sha256"));
        assert!(glob("a*b*c", "axxbyyc"));
    }
}
