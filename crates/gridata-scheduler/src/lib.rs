//! The scheduler: turns triggers into queued runs and executes the runs
//! this process claims.
//!
//! Invariants:
//! - Every run is a row in the state store before anything executes it;
//!   triggers only enqueue, with a dedup key, so a trigger firing twice or
//!   in two schedulers starts one run.
//! - A run executes only in the process holding its lease; leases are
//!   renewed while it runs and another scheduler resumes it once the
//!   lease lapses (crash) or is released (shutdown).
//! - Trigger watermarks (last cron time, last snapshot seen, when file
//!   watching began) live in the store, so a restart neither misses nor
//!   repeats a trigger.
//! - Time comes from the injected clock.

mod triggers;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use gridata_core::Clock;
use gridata_pipeline::{
    ExecOptions, Lease, Loaded, RunEvent, RunOptions, Runner, StopReason, StopSignal,
};
use gridata_state::{BackfillRecord, ClaimLimits, RunRecord, RunState, SchedulerInfo, Store};
use serde::Serialize;
use tokio::sync::{Notify, broadcast};

pub use triggers::{FilePattern, next_cron};

/// Errors of the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such pipeline.
    #[error("pipeline '{0}' not found")]
    PipelineNotFound(String),
    /// A request that does not fit, such as a bad date range.
    #[error("{0}")]
    Invalid(String),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] gridata_state::Error),
    /// The pipeline layer failed.
    #[error(transparent)]
    Pipeline(#[from] gridata_pipeline::Error),
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the scheduler behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// A lease lapses this long after its last renewal; another scheduler
    /// then resumes the run.
    pub lease_ttl: Duration,
    /// Runs this process executes at once.
    pub max_runs: usize,
    /// How often to look for claimable runs when nothing wakes the loop.
    pub claim_interval: Duration,
    /// How often triggers are evaluated (cron, tables, backfills, and
    /// file listing where notifications are not available; with them,
    /// listing runs every 30 s as a safety net).
    pub tick: Duration,
    /// How long shutdown waits for running tasks before handing runs back.
    pub shutdown_grace: Duration,
    /// Scale retry delays (tests use small values).
    pub retry_delay_scale: Option<f64>,
    /// Use filesystem notifications for file triggers on local storage.
    pub watch_files: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(30),
            max_runs: 8,
            claim_interval: Duration::from_secs(1),
            tick: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(30),
            retry_delay_scale: None,
            watch_files: true,
        }
    }
}

/// What happens, for metrics and live views.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A run was queued by a trigger or a user.
    RunQueued {
        /// Run.
        run_id: String,
        /// Pipeline.
        pipeline: String,
        /// What started it.
        trigger: String,
    },
    /// This scheduler began executing a run.
    RunClaimed {
        /// Run.
        run_id: String,
        /// Pipeline.
        pipeline: String,
    },
    /// A task attempt started.
    TaskStarted {
        /// Run.
        run_id: String,
        /// Pipeline.
        pipeline: String,
        /// Task.
        task_id: String,
        /// Attempt.
        attempt: u32,
    },
    /// A task ended.
    TaskFinished {
        /// Run.
        run_id: String,
        /// Pipeline.
        pipeline: String,
        /// Task.
        task_id: String,
        /// Final state.
        state: String,
        /// Seconds.
        seconds: f64,
    },
    /// A run stopped executing here.
    RunFinished {
        /// Run.
        run_id: String,
        /// Pipeline.
        pipeline: String,
        /// State afterwards (`running` when handed back).
        state: String,
        /// Seconds executed here.
        seconds: f64,
    },
}

/// The scheduler of one process.
pub struct Scheduler {
    runner: Runner,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    pipelines_dir: PathBuf,
    pipelines: RwLock<BTreeMap<String, Arc<Loaded>>>,
    problems: RwLock<BTreeMap<String, String>>,
    config: Config,
    info: Mutex<SchedulerInfo>,
    running: Mutex<HashMap<String, StopSignal>>,
    claim_wake: Notify,
    trigger_wake: Notify,
    stopping: std::sync::atomic::AtomicBool,
    events: broadcast::Sender<Event>,
    seen_files: Mutex<HashSet<String>>,
    /// Local zones are watched: listing is only a safety net then.
    watching: std::sync::atomic::AtomicBool,
    last_listing_ms: std::sync::atomic::AtomicI64,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("owner", &self.owner())
            .finish()
    }
}

impl Scheduler {
    /// A scheduler over the pipelines in `pipelines_dir`.
    pub fn new(runner: Runner, pipelines_dir: PathBuf, config: Config) -> Arc<Self> {
        let store = runner.state().clone();
        let clock = runner.clock().clone();
        let now = clock.now_ms();
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        let info = SchedulerInfo {
            owner: format!("{host}-{}-{}", std::process::id(), uuid::Uuid::now_v7()),
            host,
            pid: std::process::id(),
            started_ms: now,
            heartbeat_ms: now,
            stopped: false,
        };
        let me = Arc::new(Self {
            runner,
            store,
            clock,
            pipelines_dir,
            pipelines: RwLock::new(BTreeMap::new()),
            problems: RwLock::new(BTreeMap::new()),
            config,
            info: Mutex::new(info),
            running: Mutex::new(HashMap::new()),
            claim_wake: Notify::new(),
            trigger_wake: Notify::new(),
            stopping: std::sync::atomic::AtomicBool::new(false),
            events: broadcast::channel(4096).0,
            seen_files: Mutex::new(HashSet::new()),
            watching: std::sync::atomic::AtomicBool::new(false),
            last_listing_ms: std::sync::atomic::AtomicI64::new(0),
        });
        me.reload();
        me
    }

    /// This process's id in the store.
    pub fn owner(&self) -> String {
        self.info.lock().expect("info").owner.clone()
    }

    /// The runner.
    pub fn runner(&self) -> &Runner {
        &self.runner
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Subscribe to events.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Runs executing in this process.
    pub fn running_runs(&self) -> usize {
        self.running.lock().expect("running").len()
    }

    /// Read the pipeline files again. Invalid files are skipped and
    /// reported by [`Scheduler::problems`]; valid ones replace the old.
    pub fn reload(&self) {
        let mut loaded = BTreeMap::new();
        let mut problems = BTreeMap::new();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&self.pipelines_dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        paths.sort();
        for p in paths {
            match gridata_pipeline::load_file(&p) {
                Ok(l) => {
                    loaded.insert(l.pipeline.id.clone(), Arc::new(l));
                }
                Err(e) => {
                    problems.insert(p.display().to_string(), e.to_string());
                }
            }
        }
        *self.pipelines.write().expect("pipelines") = loaded;
        *self.problems.write().expect("problems") = problems;
    }

    /// Pipeline files that did not load, with why.
    pub fn problems(&self) -> BTreeMap<String, String> {
        self.problems.read().expect("problems").clone()
    }

    /// The loaded pipelines.
    pub fn pipelines(&self) -> BTreeMap<String, Arc<Loaded>> {
        self.pipelines.read().expect("pipelines").clone()
    }

    /// One pipeline.
    pub fn pipeline(&self, id: &str) -> Result<Arc<Loaded>> {
        self.pipelines
            .read()
            .expect("pipelines")
            .get(id)
            .cloned()
            .ok_or_else(|| Error::PipelineNotFound(id.to_string()))
    }

    fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    /// Queue a run. Returns `None` when its dedup key already named a run.
    pub async fn enqueue(&self, pipeline: &str, opts: RunOptions) -> Result<Option<RunRecord>> {
        let p = self.pipeline(pipeline)?;
        let run = self.runner.enqueue(&p, &opts).await?;
        if let Some(r) = &run {
            tracing::info!(run = %r.run_id, pipeline, trigger = %r.trigger, params = ?r.params, "run queued");
            self.emit(Event::RunQueued {
                run_id: r.run_id.clone(),
                pipeline: pipeline.to_string(),
                trigger: r.trigger.clone(),
            });
            self.claim_wake.notify_one();
        }
        Ok(run)
    }

    /// Queue a manual run with parameters.
    pub async fn trigger(
        &self,
        pipeline: &str,
        params: BTreeMap<String, String>,
    ) -> Result<RunRecord> {
        let run = self
            .enqueue(
                pipeline,
                RunOptions {
                    params,
                    trigger: "manual".into(),
                    ..Default::default()
                },
            )
            .await?;
        run.ok_or_else(|| Error::Invalid("a manual run has no dedup key".into()))
    }

    /// Cancel a run: a queued one ends now, a running one stops within a
    /// heartbeat.
    pub async fn cancel(&self, run_id: &str) -> Result<RunState> {
        let state = self
            .store
            .request_cancel(run_id, self.clock.now_ms())
            .await?;
        if let Some(stop) = self.running.lock().expect("running").get(run_id) {
            stop.stop(StopReason::Cancel);
        }
        Ok(state)
    }

    /// Clear an ended run so it runs again: one task and its downstream,
    /// the tasks that did not succeed (`only_failed`), or every task.
    pub async fn clear(
        &self,
        run_id: &str,
        task: Option<&str>,
        only_failed: bool,
    ) -> Result<Vec<String>> {
        let run = self.store.run(run_id).await?;
        let p = self.pipeline(&run.pipeline)?;
        let mut reset: Vec<String> = match task {
            Some(t) => {
                if !p.pipeline.tasks.iter().any(|x| x.id == t) {
                    return Err(Error::Invalid(format!(
                        "pipeline '{}' has no task '{t}'",
                        run.pipeline
                    )));
                }
                let mut v = vec![t.to_string()];
                v.extend(p.downstream(t));
                v
            }
            None if only_failed => {
                let mut v = Vec::new();
                for t in self.store.tasks(run_id).await? {
                    if t.state != gridata_state::TaskState::Success {
                        v.extend(p.downstream(&t.task_id));
                        v.push(t.task_id);
                    }
                }
                v
            }
            None => p.pipeline.tasks.iter().map(|t| t.id.clone()).collect(),
        };
        reset.sort();
        reset.dedup();
        self.store
            .requeue_run(run_id, &reset, self.clock.now_ms())
            .await?;
        self.claim_wake.notify_one();
        Ok(reset)
    }

    /// Pause or unpause a pipeline: paused pipelines start no run.
    pub async fn set_paused(&self, pipeline: &str, paused: bool) -> Result<()> {
        self.pipeline(pipeline)?;
        self.store
            .set_paused(pipeline, paused, self.clock.now_ms())
            .await?;
        self.trigger_wake.notify_one();
        self.claim_wake.notify_one();
        Ok(())
    }

    /// Start a backfill: one run per date from `start` to `end`, at most
    /// `max_parallel` at a time.
    pub async fn backfill(
        &self,
        pipeline: &str,
        start: chrono::NaiveDate,
        end: chrono::NaiveDate,
        max_parallel: u32,
        params: BTreeMap<String, String>,
    ) -> Result<BackfillRecord> {
        let p = self.pipeline(pipeline)?;
        if !p.pipeline.params.contains_key("date") {
            return Err(Error::Invalid(format!(
                "pipeline '{pipeline}' has no `date` parameter to backfill"
            )));
        }
        if end < start {
            return Err(Error::Invalid(format!(
                "backfill ends ({end}) before it starts ({start})"
            )));
        }
        if max_parallel == 0 {
            return Err(Error::Invalid("max_parallel must be at least 1".into()));
        }
        // Parameters must resolve now, not fail later in every run.
        let mut probe = params.clone();
        probe.insert("date".into(), start.to_string());
        gridata_pipeline::load::resolve_params(&p.pipeline, &probe, self.clock.now_ms())?;
        let b = BackfillRecord {
            backfill_id: uuid::Uuid::now_v7().to_string(),
            pipeline: pipeline.to_string(),
            start_date: start.to_string(),
            end_date: end.to_string(),
            next_date: start.to_string(),
            max_parallel,
            params,
            state: "running".into(),
            created_ms: self.clock.now_ms(),
        };
        self.store.create_backfill(&b).await?;
        self.trigger_wake.notify_one();
        Ok(b)
    }

    /// Start the loops. Returns a handle that shuts them down.
    pub fn start(self: &Arc<Self>) -> Handle {
        let mut tasks = Vec::new();
        let me = self.clone();
        tasks.push(tokio::spawn(async move { me.claim_loop().await }));
        let me = self.clone();
        tasks.push(tokio::spawn(async move { me.trigger_loop().await }));
        let me = self.clone();
        tasks.push(tokio::spawn(async move { me.heartbeat_loop().await }));
        let watcher = if self.config.watch_files {
            triggers::watch_files(self.clone())
        } else {
            None
        };
        self.watching
            .store(watcher.is_some(), std::sync::atomic::Ordering::SeqCst);
        Handle {
            scheduler: self.clone(),
            tasks,
            _watcher: watcher,
        }
    }

    async fn heartbeat_loop(self: Arc<Self>) {
        loop {
            let info = {
                let mut i = self.info.lock().expect("info");
                i.heartbeat_ms = self.clock.now_ms();
                i.clone()
            };
            if let Err(e) = self.store.scheduler_heartbeat(&info).await {
                tracing::warn!(error = %e, "scheduler heartbeat failed");
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }

    async fn claim_loop(self: Arc<Self>) {
        loop {
            if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            if let Err(e) = self.claim_once().await {
                tracing::warn!(error = %e, "claiming runs failed");
            }
            tokio::select! {
                _ = self.claim_wake.notified() => {}
                _ = tokio::time::sleep(self.config.claim_interval) => {}
            }
        }
    }

    /// Claim what this process may run now and start executing it.
    pub async fn claim_once(self: &Arc<Self>) -> Result<usize> {
        let free = self
            .config
            .max_runs
            .saturating_sub(self.running.lock().expect("running").len());
        if free == 0 {
            return Ok(0);
        }
        let pipelines = self.pipelines();
        let limits = ClaimLimits {
            max_runs: free,
            per_pipeline: pipelines
                .iter()
                .map(|(id, p)| (id.clone(), p.pipeline.max_active_runs.max(1)))
                .collect(),
        };
        let owner = self.owner();
        let claimed = self
            .store
            .claim_runs(
                &owner,
                self.clock.now_ms(),
                self.config.lease_ttl.as_millis() as i64,
                &limits,
            )
            .await?;
        let n = claimed.len();
        for run in claimed {
            let Some(p) = pipelines.get(&run.pipeline).cloned() else {
                continue;
            };
            self.spawn_run(run, p, owner.clone());
        }
        Ok(n)
    }

    fn spawn_run(self: &Arc<Self>, run: RunRecord, pipeline: Arc<Loaded>, owner: String) {
        let stop = StopSignal::default();
        self.running
            .lock()
            .expect("running")
            .insert(run.run_id.clone(), stop.clone());
        tracing::info!(run = %run.run_id, pipeline = %run.pipeline, "run claimed");
        self.emit(Event::RunClaimed {
            run_id: run.run_id.clone(),
            pipeline: run.pipeline.clone(),
        });
        let me = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let forward = {
                let me = me.clone();
                let (run_id, pipeline) = (run.run_id.clone(), run.pipeline.clone());
                tokio::spawn(async move {
                    while let Some(e) = rx.recv().await {
                        match e {
                            RunEvent::TaskStarted { task_id, attempt } => {
                                me.emit(Event::TaskStarted {
                                    run_id: run_id.clone(),
                                    pipeline: pipeline.clone(),
                                    task_id,
                                    attempt,
                                })
                            }
                            RunEvent::TaskFinished {
                                task_id,
                                state,
                                duration,
                                ..
                            } => me.emit(Event::TaskFinished {
                                run_id: run_id.clone(),
                                pipeline: pipeline.clone(),
                                task_id,
                                state: state.to_string(),
                                seconds: duration.as_secs_f64(),
                            }),
                            _ => {}
                        }
                    }
                })
            };
            let opts = ExecOptions {
                events: Some(tx),
                retry_delay_scale: me.config.retry_delay_scale,
                lease: Some(Lease {
                    owner,
                    ttl: me.config.lease_ttl,
                }),
                stop,
            };
            let result = me.runner.execute(pipeline, &run.run_id, &opts).await;
            drop(opts);
            let _ = forward.await;
            let state = match result {
                Ok(s) => s.run.state.to_string(),
                Err(e) => {
                    tracing::error!(run = %run.run_id, error = %e, "run could not be executed");
                    "error".into()
                }
            };
            me.running.lock().expect("running").remove(&run.run_id);
            tracing::info!(run = %run.run_id, pipeline = %run.pipeline, %state, "run left this scheduler");
            me.emit(Event::RunFinished {
                run_id: run.run_id.clone(),
                pipeline: run.pipeline.clone(),
                state,
                seconds: started.elapsed().as_secs_f64(),
            });
            me.claim_wake.notify_one();
            me.trigger_wake.notify_one();
        });
    }

    async fn trigger_loop(self: Arc<Self>) {
        loop {
            if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "evaluating triggers failed");
            }
            tokio::select! {
                _ = self.trigger_wake.notified() => {}
                _ = tokio::time::sleep(self.config.tick) => {}
            }
        }
    }

    /// Evaluate every trigger once: cron, tables, files (by listing) and
    /// backfills.
    pub async fn tick(self: &Arc<Self>) -> Result<()> {
        use std::sync::atomic::Ordering;
        let paused = self.store.paused().await?;
        // With notifications, list every 30 s only, to catch what they miss.
        let now = self.clock.now_ms();
        let list = !self.watching.load(Ordering::SeqCst)
            || now - self.last_listing_ms.load(Ordering::SeqCst) >= 30_000;
        if list {
            self.last_listing_ms.store(now, Ordering::SeqCst);
        }
        for (id, p) in self.pipelines() {
            if paused.contains(&id) {
                continue;
            }
            let t = &p.pipeline.trigger;
            // One pipeline's broken trigger must not stop the others.
            let result = async {
                if t.cron.is_some() {
                    triggers::cron(self, &p).await?;
                }
                if !t.tables.is_empty() {
                    triggers::tables(self, &p).await?;
                }
                if t.files.is_some() && list {
                    triggers::files(self, &p, None).await?;
                }
                Ok::<(), Error>(())
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(pipeline = %id, error = %e, "trigger failed");
            }
        }
        triggers::backfills(self).await
    }
}

/// The running scheduler; dropping it does not stop it, [`Handle::shutdown`]
/// does.
pub struct Handle {
    scheduler: Arc<Scheduler>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _watcher: Option<notify::RecommendedWatcher>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").finish()
    }
}

impl Handle {
    /// Stop: start nothing new, let running tasks finish within the grace
    /// period, then hand the runs back for another scheduler to resume.
    pub async fn shutdown(self) {
        let s = &self.scheduler;
        s.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        for t in &self.tasks {
            t.abort();
        }
        let stops: Vec<StopSignal> = s
            .running
            .lock()
            .expect("running")
            .values()
            .cloned()
            .collect();
        tracing::info!(runs = stops.len(), grace = ?s.config.shutdown_grace, "shutting down: finishing running tasks");
        for stop in &stops {
            stop.stop(StopReason::Drain);
        }
        let deadline = Instant::now() + s.config.shutdown_grace;
        while s.running_runs() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if s.running_runs() > 0 {
            tracing::warn!(
                runs = s.running_runs(),
                "grace period over: handing runs back"
            );
            for stop in s.running.lock().expect("running").values() {
                stop.stop(StopReason::HandBack);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while s.running_runs() > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let info = {
            let mut i = s.info.lock().expect("info");
            i.heartbeat_ms = s.clock.now_ms();
            i.stopped = true;
            i.clone()
        };
        let _ = s.store.scheduler_heartbeat(&info).await;
        tracing::info!("scheduler stopped");
    }
}
