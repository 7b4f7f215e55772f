//! `gridata serve` and the operations on the scheduler's state: tokens,
//! triggers, backfills, pause, cancel, clear, pools.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use gridata_core::{Clock, Home, SystemClock};
use gridata_scheduler::{Config, Scheduler};
use gridata_server::{AppState, Role};

use crate::pipes;

/// Options of `gridata serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the API and UI. Without any API token it is forced to
    /// loopback.
    #[arg(long, default_value = "127.0.0.1:8080", env = "GRIDATA_ADDR")]
    pub addr: SocketAddr,
    /// TLS certificate chain (PEM); with --tls-key, serve HTTPS.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Runs this process executes at once.
    #[arg(long, default_value_t = 8)]
    pub max_runs: usize,
    /// Seconds after which another scheduler takes over a run whose
    /// owner stopped renewing its lease.
    #[arg(long, default_value_t = 30)]
    pub lease_ttl: u64,
    /// Milliseconds between trigger evaluations.
    #[arg(long, default_value_t = 1000)]
    pub tick_ms: u64,
    /// Seconds SIGTERM waits for running tasks before handing runs back.
    #[arg(long, default_value_t = 30)]
    pub shutdown_grace: u64,
    /// Scale retry delays (e.g. 0.01 in tests).
    #[arg(long, hide = true)]
    pub retry_delay_scale: Option<f64>,
    /// Do not use filesystem notifications for file triggers (list only).
    #[arg(long)]
    pub no_watch: bool,
}

/// API tokens.
#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a token; its secret is printed once.
    Create {
        /// viewer, operator or admin.
        #[arg(long)]
        role: String,
        /// What it is for.
        #[arg(long, default_value = "cli")]
        name: String,
        /// May see PII columns unmasked (admins always may).
        #[arg(long)]
        pii: bool,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token.
    Revoke { token_id: String },
}

/// Pools that limit concurrent tasks across pipelines.
#[derive(Debug, Subcommand)]
pub enum PoolCmd {
    /// Create or resize a pool.
    Set {
        name: String,
        slots: u32,
        #[arg(long)]
        description: Option<String>,
    },
    /// List pools and their use.
    List,
}

/// Operations on runs, done through the state store; a running
/// `gridata serve` picks them up.
#[derive(Debug, Subcommand)]
pub enum ControlCmd {
    /// Queue a run for the scheduler (use `gridata run` to run in-process).
    Trigger {
        pipeline: String,
        /// Parameters, `name=value`.
        #[arg(long = "param", short = 'p')]
        params: Vec<String>,
    },
    /// Queue one run per date, at most --max-parallel at a time.
    Backfill {
        pipeline: String,
        /// First date, YYYY-MM-DD.
        #[arg(long)]
        start: String,
        /// Last date, inclusive.
        #[arg(long)]
        end: String,
        #[arg(long, default_value_t = 4)]
        max_parallel: u32,
        /// Other parameters, `name=value`.
        #[arg(long = "param", short = 'p')]
        params: Vec<String>,
    },
    /// Pause a pipeline: it starts no run.
    Pause { pipeline: String },
    /// Unpause a pipeline.
    Unpause { pipeline: String },
    /// Cancel a run.
    Cancel { run_id: String },
    /// Clear an ended run so it runs again.
    Clear {
        run_id: String,
        /// Only this task and its downstream.
        #[arg(long)]
        task: Option<String>,
        /// Only tasks that did not succeed.
        #[arg(long)]
        only_failed: bool,
    },
}

/// `gridata lineage`: column lineage recorded by pipeline runs.
#[derive(Debug, Args)]
pub struct LineageArgs {
    /// A table (`namespace.table`) or file pattern dataset (`raw:…`).
    pub dataset: String,
    /// One column; without it, every column.
    #[arg(long, short)]
    pub column: Option<String>,
    /// Walk towards consumers instead of sources.
    #[arg(long, conflicts_with = "impact")]
    pub downstream: bool,
    /// What changing --column would affect: columns, tables, pipelines.
    #[arg(long, requires = "column")]
    pub impact: bool,
    /// At most this many hops (0: all).
    #[arg(long, default_value_t = 0)]
    pub depth: usize,
    /// text, json, dot (Graphviz) or svg.
    #[arg(long, short, default_value = "text")]
    pub format: String,
}

/// `gridata lineage …`.
pub async fn lineage(home: &Home, a: &LineageArgs) -> Result<()> {
    use gridata_metadata::{Direction, Graph};
    let store = pipes::state(home).await?;
    let graph = Graph::new(store.lineage_edges().await?);
    if !graph.datasets().contains(&a.dataset) {
        bail!(
            "no lineage recorded for '{}' (lineage is recorded when a pipeline run writes a table); known: {}",
            a.dataset,
            graph.datasets().into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    if a.impact {
        let impact = graph.impact(&a.dataset, a.column.as_deref().unwrap_or_default());
        if a.format == "json" {
            println!("{}", serde_json::to_string_pretty(&impact)?);
        } else {
            println!(
                "changing {}.{} affects:",
                a.dataset,
                a.column.as_deref().unwrap_or_default()
            );
            for (d, c) in &impact.columns {
                println!(
                    "  column   {d}.{}",
                    if c.is_empty() { "(every row)" } else { c }
                );
            }
            for d in &impact.datasets {
                println!("  dataset  {d}");
            }
            for p in &impact.pipelines {
                println!("  pipeline {p}");
            }
        }
        return Ok(());
    }
    let dir = if a.downstream {
        Direction::Downstream
    } else {
        Direction::Upstream
    };
    let walk = graph.walk(&a.dataset, a.column.as_deref(), dir, a.depth);
    match a.format.as_str() {
        "json" => println!("{}", serde_json::to_string_pretty(&walk)?),
        "dot" => {
            let edges: Vec<_> = walk.edges.into_iter().map(|(_, e)| e).collect();
            print!("{}", Graph::dot(&edges));
        }
        "svg" => {
            let edges: Vec<_> = walk.edges.into_iter().map(|(_, e)| e).collect();
            let label = match &a.column {
                Some(c) => format!("lineage of {}.{c}", a.dataset),
                None => format!("lineage of {}", a.dataset),
            };
            println!("{}", gridata_metadata::svg::lineage(&label, &edges, true));
        }
        "text" => {
            for (d, e) in walk.edges {
                let field = |f: &str| {
                    if f.is_empty() {
                        "(rows)".to_string()
                    } else {
                        f.to_string()
                    }
                };
                println!(
                    "{}{}.{} <- {}.{}  [{}]  ({})",
                    "  ".repeat(d - 1),
                    e.target_dataset,
                    field(&e.target_field),
                    e.source_dataset,
                    field(&e.source_field),
                    e.subtypes.join(","),
                    e.pipeline
                );
            }
        }
        other => bail!("unknown format '{other}' (text, json, dot or svg)"),
    }
    Ok(())
}

/// `gridata annotate`.
#[derive(Debug, Args)]
pub struct AnnotateArgs {
    /// The dataset, such as `ecommerce.customers`.
    pub dataset: String,
    /// Description.
    #[arg(long)]
    pub description: Option<String>,
    /// Owners (repeat; replaces the list).
    #[arg(long = "owner")]
    pub owners: Vec<String>,
    /// Tags (repeat; replaces the list).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Business domain.
    #[arg(long)]
    pub domain: Option<String>,
    /// Glossary terms (repeat; replaces the list).
    #[arg(long = "term")]
    pub terms: Vec<String>,
    /// `column=text`: a column's description (repeat).
    #[arg(long = "column-description", value_name = "COLUMN=TEXT")]
    pub column_descriptions: Vec<String>,
    /// `column=kind`: override the PII classifier (`email`, `phone`,
    /// `person_name`, `street_address`, `ip_address`, `card_number`,
    /// `date_of_birth`, or `none`).
    #[arg(long = "pii", value_name = "COLUMN=KIND")]
    pub pii: Vec<String>,
    /// `column=policy`: mask a column for readers without the PII
    /// privilege (`hash`, `redact`, or `none`).
    #[arg(long = "mask", value_name = "COLUMN=POLICY")]
    pub masks: Vec<String>,
}

/// `gridata annotate`.
pub async fn annotate(home: &Home, a: &AnnotateArgs) -> Result<()> {
    use gridata_state::{ColumnAnnotation, DatasetAnnotation};
    let store = pipes::state(home).await?;
    let Some(current) = store
        .datasets()
        .await?
        .into_iter()
        .find(|d| d.name == a.dataset)
    else {
        bail!(
            "dataset '{}' is not registered (a pipeline write registers it)",
            a.dataset
        );
    };
    let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let mut patch = DatasetAnnotation {
        description: a.description.clone(),
        owners: list(&a.owners),
        tags: list(&a.tags),
        domain: a.domain.clone(),
        glossary_terms: list(&a.terms),
        ..Default::default()
    };
    let kinds: Vec<&str> = gridata_metadata::pii::PiiKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    let column = |flag: &str, spec: &str| -> Result<(String, String)> {
        let (c, v) = spec
            .split_once('=')
            .with_context(|| format!("--{flag} '{spec}': expected COLUMN=VALUE"))?;
        if !current.columns.iter().any(|x| x.name == c) {
            bail!("--{flag} '{spec}': {} has no column '{c}'", a.dataset);
        }
        Ok((c.to_string(), v.to_string()))
    };
    let mut cols: std::collections::BTreeMap<String, ColumnAnnotation> = Default::default();
    for spec in &a.column_descriptions {
        let (c, v) = column("column-description", spec)?;
        cols.entry(c).or_default().description = Some(v);
    }
    for spec in &a.pii {
        let (c, v) = column("pii", spec)?;
        if v != "none" && !kinds.contains(&v.as_str()) {
            bail!("--pii '{spec}': '{v}' is not {} or none", kinds.join(", "));
        }
        cols.entry(c).or_default().pii = Some(v);
    }
    for spec in &a.masks {
        let (c, v) = column("mask", spec)?;
        if !matches!(v.as_str(), "hash" | "redact" | "none") {
            bail!("--mask '{spec}': '{v}' is not hash, redact or none");
        }
        cols.entry(c).or_default().masking = Some(v);
    }
    patch.columns = cols;
    let merged = store
        .annotate_dataset(&a.dataset, patch, SystemClock.now_ms())
        .await?;
    println!("{}", serde_json::to_string_pretty(&merged)?);
    Ok(())
}

/// `gridata search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Words that must all match (names, columns, descriptions, tags, owners).
    #[arg(default_value = "")]
    pub query: String,
    #[arg(long)]
    pub namespace: Option<String>,
    #[arg(long)]
    pub tag: Option<String>,
    #[arg(long)]
    pub owner: Option<String>,
    /// Only datasets with PII columns.
    #[arg(long)]
    pub pii: bool,
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// text or json.
    #[arg(long, short, default_value = "text")]
    pub format: String,
}

/// `gridata search …`: the dataset registry, filled by pipeline writes.
pub async fn search(home: &Home, a: &SearchArgs) -> Result<()> {
    use gridata_metadata::search::{Filters, Index};
    let store = pipes::state(home).await?;
    let index = Index::new(store.datasets().await?);
    let r = index.search(
        &a.query,
        &Filters {
            namespace: a.namespace.clone(),
            tag: a.tag.clone(),
            owner: a.owner.clone(),
            pii: a.pii.then_some(true),
        },
        a.limit,
        0,
    );
    if a.format == "json" {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!("{} of {} datasets", r.total, index.len());
    for h in &r.hits {
        println!(
            "{:<32} {:>5.1}  {}{}",
            h.name,
            h.score,
            h.description.as_deref().unwrap_or(""),
            if h.columns.is_empty() {
                String::new()
            } else {
                format!("  [columns: {}]", h.columns.join(", "))
            }
        );
    }
    for (facet, counts) in &r.facets {
        let c: Vec<String> = counts.iter().map(|(k, n)| format!("{k} ({n})")).collect();
        println!("  {facet}: {}", c.join(", "));
    }
    Ok(())
}

/// `gridata pii <table>`: classify each column from a sample of rows.
pub async fn pii(home: &Home, table: &str, format: &str) -> Result<()> {
    let name = gridata_core::TableName::parse(table)?;
    let lake = gridata_lake::Lake::open(home).await?;
    let engine = gridata_engine::Engine::new(lake).await?;
    let (_, batches) = engine
        .query(&format!("SELECT * FROM {name} LIMIT 1000"))
        .await?;
    let found = gridata_metadata::pii::classify_batches(&batches);
    if format == "json" {
        let v: Vec<_> = found
            .iter()
            .map(|(c, k)| serde_json::json!({ "column": c, "pii": k }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for (col, k) in &found {
        match k {
            Some(k) => println!(
                "{col:<24} {:<15} {:.2}  {}  ({})",
                k.kind.as_str(),
                k.confidence,
                k.tags.join(","),
                k.reason
            ),
            None => println!("{col:<24} -"),
        }
    }
    Ok(())
}

async fn scheduler(home: &Home, config: Config) -> Result<Arc<Scheduler>> {
    let runner = pipes::runner(home).await?;
    Ok(Scheduler::new(runner, home.pipelines_dir(), config))
}

/// `gridata serve`.
pub async fn serve(home: &Home, a: &ServeArgs) -> Result<()> {
    let config = Config {
        lease_ttl: Duration::from_secs(a.lease_ttl.max(1)),
        max_runs: a.max_runs.max(1),
        tick: Duration::from_millis(a.tick_ms.max(10)),
        shutdown_grace: Duration::from_secs(a.shutdown_grace),
        retry_delay_scale: a.retry_delay_scale,
        watch_files: !a.no_watch,
        ..Default::default()
    };
    let s = scheduler(home, config).await?;
    for (file, problem) in s.problems() {
        tracing::warn!(%file, %problem, "pipeline file skipped");
    }
    let state = AppState::new(s.clone()).await?;
    let handle = s.start();
    let (ol_stop_tx, ol_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let delivery = match pipes::openlineage(home, s.runner().lake())? {
        Some((_, sinks)) => {
            let d = gridata_metadata::deliver::Delivery::new(
                s.store().clone(),
                s.runner().clock().clone(),
                sinks,
            );
            Some(tokio::spawn(d.run(Duration::from_secs(1), async move {
                let _ = ol_stop_rx.await;
            })))
        }
        None => None,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => Some(gridata_server::Tls {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let owner = s.owner();
    let pipelines = s.pipelines().len();
    let server = tokio::spawn(gridata_server::serve(
        state,
        a.addr,
        tls,
        async move {
            let _ = stop_rx.await;
        },
        move |addr| {
            println!(
                "gridata serve: listening on {scheme}://{addr} (scheduler {owner}, {pipelines} pipelines)"
            );
        },
    ));
    let signal = wait_for_signal();
    tokio::select! {
        r = server => {
            handle.shutdown().await;
            return r.context("server task")?.map_err(Into::into);
        }
        _ = signal => {}
    }
    eprintln!("gridata serve: shutting down (running tasks finish or are handed back)");
    handle.shutdown().await;
    let _ = stop_tx.send(());
    let _ = ol_stop_tx.send(());
    if let Some(d) = delivery {
        let _ = d.await;
    }
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// `gridata token …`.
pub async fn token_cmd(home: &Home, cmd: &TokenCmd) -> Result<()> {
    let store = pipes::state(home).await?;
    match cmd {
        TokenCmd::Create { role, name, pii } => {
            let role: Role = role.parse().map_err(anyhow::Error::msg)?;
            let (token, record) = gridata_server::auth::create(
                store.as_ref(),
                name,
                role,
                *pii,
                SystemClock.now_ms(),
            )
            .await?;
            eprintln!(
                "created {role} token {} ('{name}'); it is shown only once:",
                record.token_id
            );
            println!("{token}");
        }
        TokenCmd::List => {
            for t in store.tokens().await? {
                println!(
                    "{}  {:<8}  {}{}",
                    t.token_id,
                    t.role,
                    t.name,
                    if t.revoked { "  (revoked)" } else { "" }
                );
            }
        }
        TokenCmd::Revoke { token_id } => {
            if !store.revoke_token(token_id).await? {
                bail!("token '{token_id}' not found");
            }
            println!("revoked token {token_id}");
        }
    }
    Ok(())
}

/// `gridata pool …`.
pub async fn pool_cmd(home: &Home, cmd: &PoolCmd) -> Result<()> {
    let store = pipes::state(home).await?;
    match cmd {
        PoolCmd::Set {
            name,
            slots,
            description,
        } => {
            if *slots == 0 {
                bail!("a pool needs at least one slot");
            }
            store.set_pool(name, *slots, description.as_deref()).await?;
            println!("pool {name}: {slots} slots");
        }
        PoolCmd::List => {
            for p in store.pools().await? {
                println!("{:<20} {}/{} used", p.name, p.used, p.slots);
            }
        }
    }
    Ok(())
}

/// Scheduler operations from the command line.
pub async fn control(home: &Home, cmd: &ControlCmd) -> Result<()> {
    let config = Config {
        watch_files: false,
        ..Default::default()
    };
    let s = scheduler(home, config).await?;
    match cmd {
        ControlCmd::Trigger { pipeline, params } => {
            let params = gridata_pipeline::load::parse_param_args(params)?;
            let run = s.trigger(pipeline, params).await?;
            println!("queued run {} of {pipeline} {:?}", run.run_id, run.params);
        }
        ControlCmd::Backfill {
            pipeline,
            start,
            end,
            max_parallel,
            params,
        } => {
            let d = |x: &str| {
                chrono::NaiveDate::parse_from_str(x, "%Y-%m-%d")
                    .with_context(|| format!("'{x}' is not a YYYY-MM-DD date"))
            };
            let params: BTreeMap<String, String> =
                gridata_pipeline::load::parse_param_args(params)?;
            let b = s
                .backfill(pipeline, d(start)?, d(end)?, *max_parallel, params)
                .await?;
            println!(
                "backfill {} of {pipeline}: {start} to {end}, {max_parallel} at a time (a running `gridata serve` executes it)",
                b.backfill_id
            );
        }
        ControlCmd::Pause { pipeline } => {
            s.set_paused(pipeline, true).await?;
            println!("paused {pipeline}");
        }
        ControlCmd::Unpause { pipeline } => {
            s.set_paused(pipeline, false).await?;
            println!("unpaused {pipeline}");
        }
        ControlCmd::Cancel { run_id } => {
            let state = s.cancel(run_id).await?;
            println!("run {run_id}: {state}");
        }
        ControlCmd::Clear {
            run_id,
            task,
            only_failed,
        } => {
            let cleared = s.clear(run_id, task.as_deref(), *only_failed).await?;
            println!("run {run_id} queued again; tasks: {}", cleared.join(", "));
        }
    }
    Ok(())
}
