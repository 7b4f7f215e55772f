//! `gridata generate`, `run`, `pipeline` and `runs`: thin wrappers over
//! `gridata-gen`, `gridata-pipeline` and `gridata-state`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use comfy_table::{Cell, Table, presets::UTF8_FULL_CONDENSED};
use gridata_core::{Home, SystemClock};
use gridata_pipeline::{Loaded, RunEvent, RunOptions, RunSummary, Runner};
use gridata_state::{RunFilter, SqlStateStore, Store, TaskState};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// `gridata generate`.
#[derive(Debug, clap::Subcommand)]
pub enum GenerateCmd {
    /// The e-commerce data set: customers, products, orders with line
    /// items, clickstream; written to raw/ecommerce/<entity>/YYYY-MM-DD/.
    Ecommerce(EcommerceArgs),
}

/// Options of `generate ecommerce`.
#[derive(Debug, Clone, clap::Args)]
pub struct EcommerceArgs {
    /// Orders in total.
    #[arg(long, default_value_t = 10_000)]
    pub orders: u64,
    /// Days, from --start.
    #[arg(long, default_value_t = 1)]
    pub days: u32,
    /// First day (YYYY-MM-DD). Default: today.
    #[arg(long)]
    pub start: Option<String>,
    /// File format.
    #[arg(long, value_enum, default_value = "csv")]
    pub format: GenFormat,
    /// Random seed: the same seed gives the same files.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Share of rows with a defect, 0 to 1.
    #[arg(long, default_value_t = 0.02)]
    pub defect_rate: f64,
    /// Skip the clickstream (about 1.5 KB per order), e.g. for the
    /// 100-million-order benchmark.
    #[arg(long)]
    pub no_clickstream: bool,
}

/// Formats of generated files.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum GenFormat {
    /// CSV.
    Csv,
    /// JSON lines.
    Json,
    /// Parquet.
    Parquet,
}

impl GenFormat {
    /// The generator's format.
    pub fn gen_format(self) -> gridata_gen::Format {
        match self {
            GenFormat::Csv => gridata_gen::Format::Csv,
            GenFormat::Json => gridata_gen::Format::Json,
            GenFormat::Parquet => gridata_gen::Format::Parquet,
        }
    }
}

/// `gridata pipeline`.
#[derive(Debug, clap::Subcommand)]
pub enum PipelineCmd {
    /// List the pipelines in the home's pipelines/ folder.
    List,
    /// Validate pipeline files (ids or paths; default: all); every problem
    /// is reported with file:line.
    Validate { pipelines: Vec<String> },
    /// Print the JSON Schema of pipeline files, for editors.
    Schema,
}

/// `gridata runs`.
#[derive(Debug, clap::Subcommand)]
pub enum RunsCmd {
    /// Recent runs, newest first.
    List {
        /// Only this pipeline.
        #[arg(long)]
        pipeline: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One run: tasks, per-file rows and checks.
    Show {
        run_id: String,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// A task's log.
    Logs { run_id: String, task: String },
}

/// Options of `gridata run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Pipeline id (in <home>/pipelines) or a path to a pipeline file.
    pub pipeline: String,
    /// Parameters, `name=value`.
    #[arg(long = "param", short = 'p')]
    pub params: Vec<String>,
    /// Print the run as JSON instead of the progress and summary.
    #[arg(long)]
    pub json: bool,
}

pub async fn generate(home: &Home, cmd: &GenerateCmd, quiet: bool) -> Result<gridata_gen::Report> {
    let GenerateCmd::Ecommerce(a) = cmd;
    let storage = gridata_storage::Storage::open(home)?;
    storage.init()?;
    let start = match &a.start {
        Some(s) => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .with_context(|| format!("--start '{s}' is not a date (YYYY-MM-DD)"))?,
        None => chrono::Utc::now().date_naive(),
    };
    let spec = gridata_gen::Spec {
        orders: a.orders,
        start,
        days: a.days,
        format: a.format.gen_format(),
        seed: a.seed,
        defect_rate: a.defect_rate,
        clickstream: !a.no_clickstream,
    };
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(a.orders)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} generating {pos}/{len} orders {wide_bar} {eta}")
            .expect("template"),
    );
    let b2 = bar.clone();
    let report = gridata_gen::generate(&storage, &spec, &mut move |n| b2.set_position(n)).await?;
    bar.finish_and_clear();
    Ok(report)
}

pub fn print_generate(report: &gridata_gen::Report) {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec!["file", "rows", "bytes", "defects"]);
    for f in &report.files {
        let defects: Vec<String> = f.defects.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        t.add_row(vec![
            f.uri.clone(),
            f.rows.to_string(),
            f.bytes.to_string(),
            defects.join(", "),
        ]);
    }
    println!("{t}");
}

/// Open the state store of a home.
pub async fn state(home: &Home) -> Result<Arc<dyn Store>> {
    let url = home.state_url()?;
    Ok(Arc::new(SqlStateStore::connect(url.expose()).await?))
}

/// Find a pipeline by id or path.
pub fn find(home: &Home, which: &str) -> Result<Loaded> {
    let p = Path::new(which);
    if which.ends_with(".yaml") || which.ends_with(".yml") || p.is_file() {
        return Ok(gridata_pipeline::load_file(p)?);
    }
    let dir = home.pipelines_dir();
    for ext in ["yaml", "yml"] {
        let f = dir.join(format!("{which}.{ext}"));
        if f.exists() {
            return Ok(gridata_pipeline::load_file(&f)?);
        }
    }
    bail!(
        "no pipeline '{which}' in {} (run `gridata init` to install the shipped ones)",
        dir.display()
    )
}

pub async fn runner(home: &Home) -> Result<Runner> {
    let lake = gridata_lake::Lake::open(home).await?;
    let emitter = openlineage(home, &lake)?.map(|(emitter, _)| emitter);
    let runner = Runner::new(
        lake,
        state(home).await?,
        Arc::new(SystemClock),
        home.root.clone(),
    );
    Ok(match emitter {
        Some(e) => runner.with_openlineage(e),
        None => runner,
    })
}

/// The OpenLineage emitter and sinks configured in `gridata.yaml`, if any.
pub fn openlineage(
    home: &Home,
    lake: &gridata_lake::Lake,
) -> Result<Option<(gridata_pipeline::Emitter, gridata_metadata::deliver::Sinks)>> {
    let Some(c) = &home.config.openlineage else {
        return Ok(None);
    };
    let api_key = match &c.api_key {
        Some(k) => Some(
            k.resolve()
                .context("openlineage.api_key")?
                .expose()
                .to_string(),
        ),
        None => None,
    };
    let file = c.file.as_ref().map(|f| {
        if f.is_absolute() {
            f.clone()
        } else {
            home.root.join(f)
        }
    });
    let sinks = gridata_metadata::deliver::Sinks {
        url: c.url.clone(),
        api_key,
        file,
    };
    let naming = gridata_pipeline::openlineage_naming(lake, c.namespace.as_deref());
    Ok(Some((
        gridata_pipeline::Emitter {
            naming,
            sinks: sinks.names(),
        },
        sinks,
    )))
}

/// Deliver queued OpenLineage events for up to `wait`; what is left stays
/// queued for the next `run` or `serve`.
pub async fn flush_openlineage(home: &Home, runner: &Runner, wait: Duration) -> Result<()> {
    let Some((_, sinks)) = openlineage(home, runner.lake())? else {
        return Ok(());
    };
    let d = gridata_metadata::deliver::Delivery::new(
        runner.state().clone(),
        runner.clock().clone(),
        sinks,
    );
    let pending = d.flush(wait).await?;
    if pending > 0 {
        eprintln!(
            "openlineage: {pending} event(s) could not be delivered yet; they stay queued and are sent by the next `gridata run` or `gridata serve`"
        );
    }
    Ok(())
}

/// Run a pipeline with a live display; returns the summary.
pub async fn run(home: &Home, args: &RunArgs, show: bool) -> Result<RunSummary> {
    let loaded = Arc::new(find(home, &args.pipeline)?);
    let params = gridata_pipeline::load::parse_param_args(&args.params)?;
    run_loaded(home, loaded, params, show).await
}

pub async fn run_loaded(
    home: &Home,
    loaded: Arc<Loaded>,
    params: BTreeMap<String, String>,
    show: bool,
) -> Result<RunSummary> {
    let runner = runner(home).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let opts = RunOptions {
        params,
        trigger: "manual".into(),
        events: Some(tx),
        ..Default::default()
    };
    let id = loaded.pipeline.id.clone();
    let display = tokio::spawn(async move {
        let multi = if show {
            MultiProgress::new()
        } else {
            MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden())
        };
        let mut bars: HashMap<String, ProgressBar> = HashMap::new();
        let style = ProgressStyle::with_template("{spinner} {prefix:<24} {msg}").expect("template");
        while let Some(e) = rx.recv().await {
            match e {
                RunEvent::RunStarted { run_id, tasks } => {
                    let head = multi.add(ProgressBar::new_spinner());
                    head.finish_with_message(format!("run {run_id} of {id}"));
                    for t in tasks {
                        let b = multi.add(ProgressBar::new_spinner());
                        b.set_style(style.clone());
                        b.set_prefix(t.clone());
                        b.set_message("queued");
                        bars.insert(t, b);
                    }
                }
                RunEvent::TaskStarted { task_id, attempt } => {
                    if let Some(b) = bars.get(&task_id) {
                        b.enable_steady_tick(Duration::from_millis(120));
                        b.set_message(if attempt > 1 {
                            format!("running (attempt {attempt})")
                        } else {
                            "running".into()
                        });
                    }
                }
                RunEvent::TaskRetrying {
                    task_id,
                    attempt,
                    error,
                    delay,
                } => {
                    if let Some(b) = bars.get(&task_id) {
                        b.set_message(format!(
                            "attempt {attempt} failed, retrying in {}s: {error}",
                            delay.as_secs()
                        ));
                    }
                }
                RunEvent::TaskFinished {
                    task_id,
                    state,
                    rows,
                    duration,
                } => {
                    if let Some(b) = bars.get(&task_id) {
                        let mark = match state {
                            TaskState::Success => "✓",
                            TaskState::UpstreamFailed | TaskState::Skipped => "·",
                            _ => "✗",
                        };
                        b.finish_with_message(format!(
                            "{mark} {state} in {:.1}s  rows in {} out {} rejected {}",
                            duration.as_secs_f64(),
                            rows.rows_in,
                            rows.rows_out,
                            rows.rows_rejected
                        ));
                    }
                }
                RunEvent::Published { table, snapshot_id } => {
                    let b = multi.add(ProgressBar::new_spinner());
                    b.finish_with_message(format!("published {table} at snapshot {snapshot_id}"));
                }
            }
        }
        let _ = multi.clear();
    });
    let started = Instant::now();
    let summary = runner.run(loaded, opts).await;
    let _ = display.await;
    let summary = summary?;
    let wait = home
        .config
        .openlineage
        .as_ref()
        .and_then(|c| c.flush_seconds)
        .unwrap_or(10);
    flush_openlineage(home, &runner, Duration::from_secs(wait)).await?;
    tracing::debug!(elapsed = ?started.elapsed(), "run finished");
    Ok(summary)
}

pub fn summary_json(s: &RunSummary) -> serde_json::Value {
    serde_json::json!({
        "run_id": s.run.run_id,
        "pipeline": s.run.pipeline,
        "params": s.run.params,
        "state": s.run.state,
        "error": s.run.error,
        "started_ms": s.run.started_ms,
        "ended_ms": s.run.ended_ms,
        "tasks": s.tasks.iter().map(|t| serde_json::json!({
            "task_id": t.task_id,
            "state": t.state,
            "attempts": t.attempts,
            "duration_ms": match (t.started_ms, t.ended_ms) { (Some(a), Some(b)) => Some(b - a), _ => None },
            "rows_in": t.rows.rows_in,
            "rows_out": t.rows.rows_out,
            "rows_rejected": t.rows.rows_rejected,
            "error": t.error,
            "output": t.output.as_deref().and_then(|o| serde_json::from_str::<serde_json::Value>(o).ok()),
        })).collect::<Vec<_>>(),
        "files": s.files,
        "checks": s.checks,
    })
}

pub fn print_summary(s: &RunSummary) {
    let mut tasks: Vec<&gridata_state::TaskRecord> = s.tasks.iter().collect();
    tasks.sort_by_key(|t| (t.started_ms.unwrap_or(i64::MAX), t.task_id.clone()));
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "task", "state", "attempts", "duration", "rows in", "rows out", "rejected",
    ]);
    for task in tasks {
        let dur = match (task.started_ms, task.ended_ms) {
            (Some(a), Some(b)) => format!("{:.2}s", (b - a) as f64 / 1000.0),
            _ => "-".into(),
        };
        t.add_row(vec![
            Cell::new(&task.task_id),
            Cell::new(task.state.to_string()),
            Cell::new(task.attempts),
            Cell::new(dur),
            Cell::new(task.rows.rows_in),
            Cell::new(task.rows.rows_out),
            Cell::new(task.rows.rows_rejected),
        ]);
    }
    println!("{t}");
    if !s.files.is_empty() {
        let mut f = Table::new();
        f.load_preset(UTF8_FULL_CONDENSED);
        f.set_header(vec!["input file", "rows read", "written", "quarantined"]);
        for c in &s.files {
            f.add_row(vec![
                short_uri(&c.source_file),
                c.rows_read.to_string(),
                c.rows_written.to_string(),
                c.rows_rejected.to_string(),
            ]);
        }
        println!("{f}");
    }
    if !s.checks.is_empty() {
        let mut c = Table::new();
        c.load_preset(UTF8_FULL_CONDENSED);
        c.set_header(vec!["check", "severity", "result", "observed", "expected"]);
        for k in &s.checks {
            c.add_row(vec![
                format!("{}.{}", k.task_id, k.name),
                k.severity.clone(),
                if k.passed {
                    "pass".into()
                } else {
                    "FAIL".into()
                },
                k.observed.clone(),
                k.expected.clone(),
            ]);
        }
        println!("{c}");
    }
    let dur = match (s.run.started_ms, s.run.ended_ms) {
        (Some(a), Some(b)) => format!(" in {:.2}s", (b - a) as f64 / 1000.0),
        _ => String::new(),
    };
    println!(
        "run {} of {}: {}{dur}",
        s.run.run_id, s.run.pipeline, s.run.state
    );
    if let Some(e) = &s.run.error {
        println!("error: {e}");
    }
}

fn short_uri(u: &str) -> String {
    match u.find("/raw/").or_else(|| u.find("/archive/")) {
        Some(i) => u[i + 1..].to_string(),
        None => u.to_string(),
    }
}

pub fn pipeline_cmd(home: &Home, cmd: &PipelineCmd) -> Result<()> {
    match cmd {
        PipelineCmd::Schema => print!("{}", gridata_pipeline::json_schema()),
        PipelineCmd::List => {
            let all = gridata_pipeline::load_dir(&home.pipelines_dir())?;
            let mut t = Table::new();
            t.load_preset(UTF8_FULL_CONDENSED);
            t.set_header(vec!["pipeline", "tasks", "trigger", "description"]);
            for (id, l) in all {
                let p = &l.pipeline;
                let mut trig = Vec::new();
                if let Some(c) = &p.trigger.cron {
                    trig.push(format!("cron {c}"));
                }
                if let Some(f) = &p.trigger.files {
                    trig.push(format!("files {}", f.path));
                }
                if !p.trigger.tables.is_empty() {
                    trig.push(format!("tables {}", p.trigger.tables.join(", ")));
                }
                t.add_row(vec![
                    id,
                    p.tasks.len().to_string(),
                    trig.join("; "),
                    p.description.clone().unwrap_or_default(),
                ]);
            }
            println!("{t}");
        }
        PipelineCmd::Validate { pipelines } => {
            let files: Vec<PathBuf> = if pipelines.is_empty() {
                let mut v: Vec<PathBuf> = std::fs::read_dir(home.pipelines_dir())
                    .with_context(|| format!("{}", home.pipelines_dir().display()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                    .collect();
                v.sort();
                v
            } else {
                pipelines
                    .iter()
                    .map(|w| {
                        let p = PathBuf::from(w);
                        if p.is_file() {
                            p
                        } else {
                            home.pipelines_dir().join(format!("{w}.yaml"))
                        }
                    })
                    .collect()
            };
            let mut bad = 0;
            for f in &files {
                match gridata_pipeline::load_file(f) {
                    Ok(l) => println!("ok  {} ({} tasks)", f.display(), l.pipeline.tasks.len()),
                    Err(e) => {
                        bad += 1;
                        eprintln!("{e}");
                    }
                }
            }
            if bad > 0 {
                bail!("{bad} of {} pipeline file(s) are invalid", files.len());
            }
        }
    }
    Ok(())
}

pub async fn runs_cmd(home: &Home, cmd: &RunsCmd) -> Result<()> {
    let store = state(home).await?;
    match cmd {
        RunsCmd::List { pipeline, limit } => {
            let runs = store
                .runs(&RunFilter {
                    pipeline: pipeline.clone(),
                    limit: *limit,
                    ..Default::default()
                })
                .await?;
            let mut t = Table::new();
            t.load_preset(UTF8_FULL_CONDENSED);
            t.set_header(vec![
                "run", "pipeline", "params", "state", "started", "duration",
            ]);
            for r in runs {
                let started = r
                    .started_ms
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default();
                let dur = match (r.started_ms, r.ended_ms) {
                    (Some(a), Some(b)) => format!("{:.2}s", (b - a) as f64 / 1000.0),
                    _ => "-".into(),
                };
                let params: Vec<String> =
                    r.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                t.add_row(vec![
                    r.run_id,
                    r.pipeline,
                    params.join(" "),
                    r.state.to_string(),
                    started,
                    dur,
                ]);
            }
            println!("{t}");
        }
        RunsCmd::Show { run_id, json } => {
            let s = RunSummary {
                run: store.run(run_id).await?,
                tasks: store.tasks(run_id).await?,
                files: store.file_counts(run_id).await?,
                checks: store.checks(run_id).await?,
            };
            if *json {
                println!("{}", serde_json::to_string_pretty(&summary_json(&s))?);
            } else {
                print_summary(&s);
            }
        }
        RunsCmd::Logs { run_id, task } => {
            for l in store.logs(run_id, task).await? {
                let ts = chrono::DateTime::from_timestamp_millis(l.ts_ms)
                    .map(|t| t.format("%H:%M:%S%.3f").to_string())
                    .unwrap_or_default();
                println!("{ts} [attempt {}] {:5} {}", l.attempt, l.level, l.message);
            }
        }
    }
    Ok(())
}
