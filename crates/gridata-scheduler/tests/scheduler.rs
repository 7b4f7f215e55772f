//! The scheduler in-process: triggers, limits and operations. Crash
//! recovery and two processes are tested with the real binary in
//! `crates/gridata-cli/tests/serve.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gridata_core::{Clock, Home, ManualClock, SystemClock};
use gridata_lake::Lake;
use gridata_pipeline::Runner;
use gridata_scheduler::{Config, Scheduler};
use gridata_state::{RunFilter, RunRecord, RunState, SqlStateStore, TaskState};

struct Env {
    dir: tempfile::TempDir,
    home: Home,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::open(dir.path()).unwrap();
        gridata_storage::Storage::open(&home)
            .unwrap()
            .init()
            .unwrap();
        std::fs::create_dir_all(home.pipelines_dir()).unwrap();
        Self { dir, home }
    }

    fn pipeline(&self, id: &str, yaml: &str) {
        std::fs::write(self.home.pipelines_dir().join(format!("{id}.yaml")), yaml).unwrap();
    }

    async fn scheduler(&self, clock: Arc<dyn Clock>, config: Config) -> Arc<Scheduler> {
        let lake = Lake::open(&self.home).await.unwrap();
        let store = Arc::new(
            SqlStateStore::connect(self.home.state_url().unwrap().expose())
                .await
                .unwrap(),
        );
        let runner = Runner::new(lake, store, clock, self.home.root.clone());
        Scheduler::new(runner, self.home.pipelines_dir(), config)
    }
}

fn fast() -> Config {
    Config {
        lease_ttl: Duration::from_secs(5),
        tick: Duration::from_millis(100),
        claim_interval: Duration::from_millis(100),
        retry_delay_scale: Some(0.0),
        ..Default::default()
    }
}

async fn wait_for<F, Fut>(what: &str, secs: u64, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn runs(s: &Scheduler, pipeline: &str) -> Vec<RunRecord> {
    s.store()
        .runs(&RunFilter {
            pipeline: Some(pipeline.into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
}

async fn wait_run(s: &Scheduler, run_id: &str, state: RunState) -> RunRecord {
    let mut last = None;
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        let r = s.store().run(run_id).await.unwrap();
        if r.state == state {
            return r;
        }
        last = Some(r);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("run {run_id} never became {state}: {last:?}");
}

const DAILY: &str = r#"
id: daily
params:
  date: { type: date, default: yesterday }
trigger:
  cron: "0 * * * *"
  catchup: CATCHUP
tasks:
  - id: t
    command: { program: "true" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_runs_at_logical_times_and_catches_up_only_when_asked() {
    let env = Env::new();
    env.pipeline("daily", &DAILY.replace("CATCHUP", "true"));
    env.pipeline(
        "latest",
        &DAILY
            .replace("CATCHUP", "false")
            .replace("id: daily", "id: latest"),
    );
    // 2026-11-20 00:30 UTC.
    let clock = ManualClock::new(1_795_132_800_000 + 30 * 60_000);
    let s = env.scheduler(Arc::new(clock.clone()), fast()).await;
    s.tick().await.unwrap();
    assert!(runs(&s, "daily").await.is_empty(), "no run from the epoch");
    // Three hours and a bit pass while the scheduler is down.
    clock.advance(3 * 3_600_000 + 60_000);
    s.tick().await.unwrap();
    s.tick().await.unwrap();
    let daily = runs(&s, "daily").await;
    assert_eq!(daily.len(), 3, "one run per missed hour: {daily:?}");
    assert!(
        daily
            .iter()
            .all(|r| r.trigger == "cron" && r.state == RunState::Queued)
    );
    // `yesterday` is resolved at each run's scheduled time.
    assert!(daily.iter().all(|r| r.params["date"] == "2026-11-19"));
    assert_eq!(
        runs(&s, "latest").await.len(),
        1,
        "without catchup, only the latest"
    );
    // Paused pipelines do not fire; unpaused, the missed hour runs.
    s.set_paused("latest", true).await.unwrap();
    clock.advance(3_600_000);
    s.tick().await.unwrap();
    assert_eq!(runs(&s, "latest").await.len(), 1);
    s.set_paused("latest", false).await.unwrap();
    s.tick().await.unwrap();
    assert_eq!(runs(&s, "latest").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_arrival_starts_one_run_with_its_date() {
    let env = Env::new();
    env.pipeline(
        "ingest",
        r#"
id: ingest
params:
  date: { type: date }
trigger:
  files: { zone: raw, path: "in/{date}/data.*" }
tasks:
  - id: t
    command: { program: "true" }
"#,
    );
    let s = env.scheduler(Arc::new(SystemClock), fast()).await;
    let handle = s.start();
    // Let the trigger record when watching began.
    wait_for("the file watermark", 10, || async {
        s.store()
            .trigger_value("ingest", "files.since")
            .await
            .unwrap()
            .is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let raw = env.home.local_root().unwrap().join("raw/in/2026-11-21");
    std::fs::create_dir_all(&raw).unwrap();
    std::fs::write(raw.join("data.csv"), "a\n1\n").unwrap();
    std::fs::write(raw.join("data.csv.sha256"), "x").unwrap();
    std::fs::write(raw.join("other.csv"), "a\n1\n").unwrap();
    wait_for("a file-triggered run", 10, || async {
        runs(&s, "ingest")
            .await
            .iter()
            .any(|r| r.state == RunState::Success)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = runs(&s, "ingest").await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].trigger, "file");
    assert_eq!(all[0].params["date"], "2026-11-21");
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_snapshot_triggers_the_pipelines_that_depend_on_the_table() {
    let env = Env::new();
    env.pipeline(
        "producer",
        r#"
id: producer
tasks:
  - id: rows
    sql: { query: "SELECT 1 AS v" }
  - id: write
    depends_on: [rows]
    write: { input: rows, table: demo.source, mode: append }
"#,
    );
    env.pipeline(
        "consumer",
        r#"
id: consumer
trigger:
  tables: [demo.source]
tasks:
  - id: t
    command: { program: "true" }
"#,
    );
    let s = env.scheduler(Arc::new(SystemClock), fast()).await;
    let handle = s.start();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(runs(&s, "consumer").await.is_empty());
    let run = s.trigger("producer", BTreeMap::new()).await.unwrap();
    wait_run(&s, &run.run_id, RunState::Success).await;
    wait_for("the consumer run", 10, || async {
        runs(&s, "consumer")
            .await
            .iter()
            .any(|r| r.trigger == "table" && r.state == RunState::Success)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(runs(&s, "consumer").await.len(), 1);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_runs_every_date_with_bounded_parallelism() {
    let env = Env::new();
    env.pipeline(
        "day",
        r#"
id: day
params:
  date: { type: date }
tasks:
  # Each run marks itself active and notes how many runs are active.
  - id: t
    command:
      program: sh
      args:
        - "-c"
        - 'a="$GRIDATA_HOME/active"; mkdir -p "$a"; touch "$a/$GRIDATA_PARAM_DATE";
           ls "$a" | wc -l >> "$GRIDATA_HOME/concurrency"; sleep 0.3; rm "$a/$GRIDATA_PARAM_DATE"'
"#,
    );
    let s = env.scheduler(Arc::new(SystemClock), fast()).await;
    let handle = s.start();
    let d = |x: &str| chrono::NaiveDate::parse_from_str(x, "%Y-%m-%d").unwrap();
    assert!(
        s.backfill("day", d("2026-11-05"), d("2026-11-01"), 2, BTreeMap::new())
            .await
            .is_err()
    );
    let b = s
        .backfill("day", d("2026-11-01"), d("2026-11-05"), 2, BTreeMap::new())
        .await
        .unwrap();
    wait_for("the backfill to end", 30, || async {
        s.store()
            .backfills(false)
            .await
            .unwrap()
            .iter()
            .any(|x| x.backfill_id == b.backfill_id && x.state == "success")
    })
    .await;
    let all = runs(&s, "day").await;
    let mut dates: Vec<_> = all.iter().map(|r| r.params["date"].clone()).collect();
    dates.sort();
    assert_eq!(
        dates,
        [
            "2026-11-01",
            "2026-11-02",
            "2026-11-03",
            "2026-11-04",
            "2026-11-05"
        ]
    );
    assert!(
        all.iter()
            .all(|r| r.state == RunState::Success && r.trigger == "backfill")
    );
    // Never more than two at once, as the runs themselves saw it. (The
    // runs' millisecond stamps are not used: once in CI they overlapped by
    // more than the stamps' resolution.)
    let seen = std::fs::read_to_string(env.dir.path().join("concurrency")).unwrap();
    let seen: Vec<u32> = seen.lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(seen.iter().all(|n| (1..=2).contains(n)), "{seen:?}");
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_pause_and_clear() {
    let env = Env::new();
    env.pipeline(
        "slow",
        r#"
id: slow
tasks:
  - id: wait
    command: { program: "sleep", args: ["30"] }
  - id: after
    depends_on: [wait]
    command: { program: "true" }
"#,
    );
    env.pipeline(
        "marker",
        r#"
id: marker
defaults: { retries: 0 }
tasks:
  - id: first
    command: { program: "true" }
  - id: check
    depends_on: [first]
    command: { program: "test", args: ["-f", "marker"] }
  - id: last
    depends_on: [check]
    command: { program: "true" }
"#,
    );
    let s = env.scheduler(Arc::new(SystemClock), fast()).await;
    let handle = s.start();

    // Cancel a running run: its task stops and the rest is skipped.
    let run = s.trigger("slow", BTreeMap::new()).await.unwrap();
    wait_for("the task to run", 10, || async {
        s.store()
            .tasks(&run.run_id)
            .await
            .unwrap()
            .iter()
            .any(|t| t.state == TaskState::Running)
    })
    .await;
    let started = Instant::now();
    s.cancel(&run.run_id).await.unwrap();
    let r = wait_run(&s, &run.run_id, RunState::Cancelled).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(r.error.unwrap().contains("cancelled"));
    let tasks = s.store().tasks(&run.run_id).await.unwrap();
    assert!(tasks.iter().all(|t| t.state.is_terminal()), "{tasks:?}");

    // A paused pipeline's runs wait in the queue.
    s.set_paused("marker", true).await.unwrap();
    let run = s.trigger("marker", BTreeMap::new()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        s.store().run(&run.run_id).await.unwrap().state,
        RunState::Queued
    );
    s.set_paused("marker", false).await.unwrap();
    wait_run(&s, &run.run_id, RunState::Failed).await;

    // Clear the failed tasks after fixing the cause: only they run again.
    std::fs::write(env.home.root.join("marker"), "").unwrap();
    let cleared = s.clear(&run.run_id, None, true).await.unwrap();
    assert_eq!(cleared, ["check", "last"]);
    wait_run(&s, &run.run_id, RunState::Success).await;
    let tasks: BTreeMap<_, _> = s
        .store()
        .tasks(&run.run_id)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.task_id.clone(), t))
        .collect();
    assert_eq!(tasks["first"].attempts, 1, "succeeded tasks are kept");
    assert_eq!(tasks["check"].attempts, 2);
    assert!(s.clear(&run.run_id, Some("nope"), false).await.is_err());
    handle.shutdown().await;
    drop(env.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_on_one_store_never_run_a_task_twice() {
    let env = Env::new();
    env.pipeline(
        "log",
        r#"
id: log
max_active_runs: 4
tasks:
  - id: a
    command: { program: "sh", args: ["-c", "echo {{ run_id }} a >> runs.log"] }
  - id: b
    depends_on: [a]
    command: { program: "sh", args: ["-c", "echo {{ run_id }} b >> runs.log"] }
"#,
    );
    let one = env.scheduler(Arc::new(SystemClock), fast()).await;
    let two = env.scheduler(Arc::new(SystemClock), fast()).await;
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(one.trigger("log", BTreeMap::new()).await.unwrap().run_id);
    }
    let (h1, h2) = (one.start(), two.start());
    for id in &ids {
        wait_run(&one, id, RunState::Success).await;
    }
    let log = std::fs::read_to_string(env.home.root.join("runs.log")).unwrap();
    let mut lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 24, "{log}");
    lines.sort();
    lines.dedup();
    assert_eq!(lines.len(), 24, "a task ran twice: {log}");
    h1.shutdown().await;
    h2.shutdown().await;
}
