//! `gridata`: the command line. Thin: every operation lives in a library crate.

mod demo;
mod output;
mod pipes;
mod serve;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use gridata_core::{Home, TableName};
use gridata_engine::{Engine, ImportFormat, InputFile, WriteMode};
use gridata_lake::schema::{
    parse_partition_spec, parse_schema, parse_type, schema_text, type_name,
};
use gridata_lake::{Lake, SchemaUpdate};
use output::Format;

// DataFusion's sorts, spills and hash tables allocate and free large
// buffers at a high rate. glibc's malloc kept the freed holes (2.5x the
// memory limit resident); jemalloc returns them (decision 0009).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Gridata: a lakehouse data platform in one program.
#[derive(Debug, Parser)]
#[command(name = "gridata", version, about, long_about = None)]
struct Cli {
    /// Home folder: catalog.db, warehouse/ zones and gridata.yaml.
    #[arg(long, global = true, env = "GRIDATA_HOME")]
    home: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the home: catalog database and storage zones.
    Init,
    /// Run one SQL statement. Tables are `namespace.table`; time travel with
    /// `VERSION AS OF <id>` or `TIMESTAMP AS OF '<time>'`; metadata tables
    /// `t$snapshots`, `t$history`, `t$files`.
    Sql {
        /// The statement.
        query: String,
        /// Output format.
        #[arg(long, short, value_enum, default_value = "table")]
        format: Format,
    },
    /// Namespaces.
    #[command(subcommand)]
    Namespace(NamespaceCmd),
    /// Tables and their maintenance.
    #[command(subcommand)]
    Table(TableCmd),
    /// Run the end-to-end demo on a fresh home.
    Demo(demo::DemoArgs),
    /// Generate sample data into the raw zone.
    #[command(subcommand)]
    Generate(pipes::GenerateCmd),
    /// Run a pipeline in-process: a live display, then a summary table.
    /// Exits non-zero when the run fails.
    Run(pipes::RunArgs),
    /// Pipeline files: list, validate, JSON Schema.
    #[command(subcommand)]
    Pipeline(pipes::PipelineCmd),
    /// Runs recorded in the state store.
    #[command(subcommand)]
    Runs(pipes::RunsCmd),
    /// Run the scheduler, the executor and the HTTP API in one process.
    Serve(serve::ServeArgs),
    /// API tokens with roles (viewer, operator, admin).
    #[command(subcommand)]
    Token(serve::TokenCmd),
    /// Pools limiting concurrent tasks across pipelines and schedulers.
    #[command(subcommand)]
    Pool(serve::PoolCmd),
    /// Classify a table's columns as personal data (e-mail, phone, name,
    /// street address, IP address, card number, date of birth) from their
    /// names and a sample of values.
    Pii {
        table: String,
        #[arg(long, short, default_value = "text")]
        format: String,
    },
    /// Search the datasets pipelines wrote: names, columns, descriptions,
    /// tags, owners; facets by namespace, tag, owner and PII.
    Search(serve::SearchArgs),
    /// Column lineage: upstream, downstream, impact; text, JSON, DOT or SVG.
    Lineage(serve::LineageArgs),
    /// Edit a dataset's metadata: description, owners, tags, domain,
    /// glossary terms, column descriptions, PII overrides, masking.
    Annotate(serve::AnnotateArgs),
    #[command(flatten)]
    Control(serve::ControlCmd),
}

#[derive(Debug, Subcommand)]
enum NamespaceCmd {
    /// List namespaces.
    List {
        #[arg(long, short, value_enum, default_value = "table")]
        format: Format,
    },
    /// Create a namespace.
    Create {
        name: String,
        /// Properties, `key=value`.
        #[arg(long = "property", short = 'p')]
        properties: Vec<String>,
    },
    /// Drop an empty namespace.
    Drop { name: String },
}

#[derive(Debug, Subcommand)]
enum TableCmd {
    /// List tables.
    List {
        /// Only this namespace.
        namespace: Option<String>,
        #[arg(long, short, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show a table's schema, partitioning, properties and current snapshot.
    Show {
        table: String,
        #[arg(long, short, value_enum, default_value = "table")]
        format: Format,
    },
    /// Create a table.
    Create {
        table: String,
        /// Columns: `id long not null, name string, ts timestamptz`.
        #[arg(long)]
        schema: String,
        /// Partition fields: `month(ts)`, `bucket(16, id)`, `truncate(4, s)`, `col`.
        #[arg(long = "partition")]
        partitions: Vec<String>,
        /// Table properties, `key=value`.
        #[arg(long = "property", short = 'p')]
        properties: Vec<String>,
    },
    /// Drop a table.
    Drop {
        table: String,
        /// Also delete its files.
        #[arg(long)]
        purge: bool,
    },
    /// The snapshot history.
    Snapshots {
        table: String,
        #[arg(long, short, value_enum, default_value = "table")]
        format: Format,
    },
    /// Make an earlier snapshot current.
    Rollback {
        table: String,
        /// The snapshot id.
        #[arg(long)]
        to: i64,
    },
    /// Change the schema; field ids are kept so old files stay readable.
    Evolve {
        table: String,
        #[command(subcommand)]
        change: EvolveCmd,
    },
    /// Rewrite small files into files of the target size.
    Compact {
        table: String,
        /// Target file size, e.g. 128MB (default: the table's property).
        #[arg(long)]
        target_file_size: Option<String>,
    },
    /// Expire old snapshots and delete the files only they referenced.
    Expire {
        table: String,
        /// Expire snapshots older than this, e.g. 7d, 12h, 30m.
        #[arg(long, default_value = "7d")]
        older_than: String,
        /// Always keep this many of the latest snapshots.
        #[arg(long, default_value_t = 1)]
        retain_last: usize,
    },
    /// Delete files under the table that no snapshot references.
    RemoveOrphans {
        table: String,
        /// Only files older than this (protects in-flight writes), e.g. 1d.
        #[arg(long, default_value = "1d")]
        older_than: String,
    },
    /// Load CSV (with header), JSON lines or Parquet files into a table.
    Import {
        table: String,
        /// The files.
        #[arg(required = true)]
        files: Vec<String>,
        /// File format; by default from the extension.
        #[arg(long, value_enum)]
        format: Option<FileFormat>,
        /// append, overwrite (all rows) or overwrite-partitions.
        #[arg(long, value_enum, default_value = "append")]
        mode: Mode,
        /// Summary properties for the snapshot, `key=value`.
        #[arg(long = "property", short = 'p')]
        properties: Vec<String>,
    },
    /// Delete the rows matching a SQL predicate (copy-on-write).
    Delete {
        table: String,
        /// The predicate, e.g. "status = 'cancelled'".
        #[arg(long = "where")]
        predicate: String,
    },
}

#[derive(Debug, Subcommand)]
enum EvolveCmd {
    /// Add an optional column.
    Add { column: String, r#type: String },
    /// Drop a column.
    Drop { column: String },
    /// Rename a column.
    Rename { from: String, to: String },
    /// Widen a column's type: int to long, float to double.
    Widen { column: String, r#type: String },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FileFormat {
    Csv,
    Json,
    Parquet,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Mode {
    Append,
    Overwrite,
    OverwritePartitions,
}

/// Parse `7d`, `12h`, `30m`, `45s`, `0d`.
pub fn parse_age(text: &str) -> Result<Duration> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num
        .parse()
        .with_context(|| format!("bad duration '{text}': use e.g. 7d, 12h, 30m"))?;
    let secs = match unit {
        "d" => n * 86_400,
        "h" => n * 3_600,
        "m" => n * 60,
        "s" | "" => n,
        _ => bail!("bad duration '{text}': use a unit of d, h, m or s"),
    };
    Ok(Duration::from_secs(secs))
}

fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim().to_ascii_uppercase();
    let (num, mult) = if let Some(n) = t.strip_suffix("GB") {
        (n, 1u64 << 30)
    } else if let Some(n) = t.strip_suffix("MB") {
        (n, 1 << 20)
    } else if let Some(n) = t.strip_suffix("KB") {
        (n, 1 << 10)
    } else {
        (t.strip_suffix('B').unwrap_or(&t), 1)
    };
    Ok(num
        .trim()
        .parse::<u64>()
        .with_context(|| format!("bad size '{text}'"))?
        * mult)
}

fn parse_props(items: &[String]) -> Result<HashMap<String, String>> {
    items
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .with_context(|| format!("property '{kv}' must be key=value"))
        })
        .collect()
}

fn table_name(s: &str) -> Result<TableName> {
    Ok(TableName::parse(s)?)
}

fn home_path(cli: &Cli) -> PathBuf {
    cli.home.clone().unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".gridata")
    })
}

/// Bound the query engine's memory: `GRIDATA_MEMORY_LIMIT`, else the
/// home's `engine.memory_limit`.
pub(crate) fn engine_memory(home: &Home) -> Result<()> {
    let limit = match std::env::var("GRIDATA_MEMORY_LIMIT") {
        Ok(v) if !v.trim().is_empty() => Some(
            v.parse::<gridata_core::ByteSize>()
                .map_err(|e| anyhow::anyhow!("GRIDATA_MEMORY_LIMIT: {e}"))?,
        ),
        _ => home.config.engine.memory_limit,
    };
    if let Some(l) = limit {
        gridata_engine::set_memory_limit(Some(usize::try_from(l.0).unwrap_or(usize::MAX)));
    }
    Ok(())
}

async fn open(cli: &Cli) -> Result<Lake> {
    let root = home_path(cli);
    let home = Home::open(&root)?;
    engine_memory(&home)?;
    if home.local_root().is_some()
        && !home.catalog_db().exists()
        && home.config.catalog.url.is_none()
    {
        bail!(
            "{} is not a Gridata home: run `gridata --home {} init` first",
            root.display(),
            root.display()
        );
    }
    Ok(Lake::open(&home).await?)
}

fn spinner(msg: &str) -> indicatif::ProgressBar {
    let pb = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    };
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(Duration::from_millis(100));
    pb
}

/// Create a home: zones, catalog, state store, and the shipped pipelines
/// (files already there are kept).
pub(crate) async fn init(root: &std::path::Path) -> Result<Lake> {
    std::fs::create_dir_all(root).with_context(|| format!("create {}", root.display()))?;
    let home = Home::open(root)?;
    engine_memory(&home)?;
    let storage = gridata_storage::Storage::open(&home)?;
    storage.init()?;
    pipes::state(&home).await?;
    gridata_pipeline::shipped::install(&home.pipelines_dir())
        .with_context(|| format!("install pipelines into {}", home.pipelines_dir().display()))?;
    Ok(Lake::open(&home).await?)
}

/// The home, checked to be initialised.
async fn open_home(cli: &Cli) -> Result<Home> {
    open(cli).await?;
    Ok(Home::open(home_path(cli))?)
}

async fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Init => {
            let root = home_path(&cli);
            init(&root).await?;
            println!("initialised Gridata home at {}", root.display());
        }
        Command::Generate(cmd) => {
            let home = open_home(&cli).await?;
            let report = pipes::generate(&home, cmd, false).await?;
            pipes::print_generate(&report);
        }
        Command::Run(args) => {
            let home = open_home(&cli).await?;
            let show = !args.json && std::io::IsTerminal::is_terminal(&std::io::stderr());
            let summary = pipes::run(&home, args, show).await?;
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&pipes::summary_json(&summary))?
                );
            } else {
                pipes::print_summary(&summary);
            }
            if summary.run.state != gridata_state::RunState::Success {
                bail!(
                    "run {} of {} failed: {}",
                    summary.run.run_id,
                    summary.run.pipeline,
                    summary.run.error.unwrap_or_default()
                );
            }
        }
        Command::Pipeline(cmd) => pipes::pipeline_cmd(&open_home(&cli).await?, cmd)?,
        Command::Runs(cmd) => pipes::runs_cmd(&open_home(&cli).await?, cmd).await?,
        Command::Demo(args) => demo::run(args, cli.home.clone()).await?,
        Command::Sql { query, format } => {
            let engine = Engine::new(open(&cli).await?).await?;
            let (schema, batches) = engine.query(query).await?;
            output::print_batches(&schema, &batches, *format)?;
        }
        Command::Namespace(cmd) => {
            let lake = open(&cli).await?;
            match cmd {
                NamespaceCmd::List { format } => {
                    let ns = lake.catalog().list_namespaces().await?;
                    match format {
                        Format::Json => output::print_json(&serde_json::json!(ns))?,
                        _ => ns.iter().for_each(|n| println!("{n}")),
                    }
                }
                NamespaceCmd::Create { name, properties } => {
                    let props: BTreeMap<_, _> = parse_props(properties)?.into_iter().collect();
                    lake.create_namespace(name, &props).await?;
                    println!("created namespace {name}");
                }
                NamespaceCmd::Drop { name } => {
                    lake.catalog().drop_namespace(name).await?;
                    println!("dropped namespace {name}");
                }
            }
        }
        Command::Table(cmd) => table_cmd(&cli, cmd).await?,
        Command::Serve(args) => serve::serve(&open_home(&cli).await?, args).await?,
        Command::Token(cmd) => serve::token_cmd(&open_home(&cli).await?, cmd).await?,
        Command::Pool(cmd) => serve::pool_cmd(&open_home(&cli).await?, cmd).await?,
        Command::Pii { table, format } => {
            serve::pii(&open_home(&cli).await?, table, format).await?
        }
        Command::Search(args) => serve::search(&open_home(&cli).await?, args).await?,
        Command::Lineage(args) => serve::lineage(&open_home(&cli).await?, args).await?,
        Command::Annotate(args) => serve::annotate(&open_home(&cli).await?, args).await?,
        Command::Control(cmd) => serve::control(&open_home(&cli).await?, cmd).await?,
    }
    Ok(())
}

async fn table_cmd(cli: &Cli, cmd: &TableCmd) -> Result<()> {
    let lake = open(cli).await?;
    match cmd {
        TableCmd::List { namespace, format } => {
            let tables = lake.list_tables(namespace.as_deref()).await?;
            match format {
                Format::Json => output::print_json(&serde_json::json!(
                    tables.iter().map(|t| t.to_string()).collect::<Vec<_>>()
                ))?,
                _ => tables.iter().for_each(|t| println!("{t}")),
            }
        }
        TableCmd::Show { table, format } => {
            let t = lake.load_table(&table_name(table)?).await?;
            let m = &t.metadata;
            let schema = m.current_schema();
            let spec = m.default_partition_spec();
            let cols: Vec<_> = schema
                .as_struct()
                .fields()
                .iter()
                .map(|f| {
                    serde_json::json!({"id": f.id, "name": f.name, "type": type_name(&f.field_type), "required": f.required})
                })
                .collect();
            let parts: Vec<_> = spec
                .fields()
                .iter()
                .map(|p| {
                    let src = schema.name_by_field_id(p.source_id).unwrap_or("?");
                    format!("{}({src}) as {}", p.transform, p.name)
                })
                .collect();
            let snap = m.current_snapshot();
            let v = serde_json::json!({
                "table": t.name.to_string(),
                "location": m.location(),
                "metadata_location": t.metadata_location,
                "format_version": format!("{:?}", m.format_version()),
                "schema_id": m.current_schema_id(),
                "columns": cols,
                "partitioning": parts,
                "properties": m.properties(),
                "current_snapshot_id": snap.map(|s| s.snapshot_id()),
                "total_records": snap.and_then(|s| s.summary().additional_properties.get("total-records").cloned()),
                "snapshots": m.snapshots().len(),
            });
            match format {
                Format::Json => output::print_json(&v)?,
                _ => {
                    println!("table      {}", t.name);
                    println!("location   {}", m.location());
                    println!("schema     {}", schema_text(schema));
                    println!(
                        "partition  {}",
                        if parts.is_empty() {
                            "unpartitioned".into()
                        } else {
                            parts.join(", ")
                        }
                    );
                    println!(
                        "snapshot   {} ({} snapshots, {} rows)",
                        snap.map(|s| s.snapshot_id().to_string())
                            .unwrap_or_else(|| "none".into()),
                        m.snapshots().len(),
                        v["total_records"].as_str().unwrap_or("0")
                    );
                }
            }
        }
        TableCmd::Create {
            table,
            schema,
            partitions,
            properties,
        } => {
            let name = table_name(table)?;
            let schema = parse_schema(schema)?;
            let spec = parse_partition_spec(partitions, &schema)?;
            lake.create_table(&name, schema, spec, parse_props(properties)?)
                .await?;
            println!("created table {name}");
        }
        TableCmd::Drop { table, purge } => {
            let name = table_name(table)?;
            lake.drop_table(&name, *purge).await?;
            println!("dropped table {name}");
        }
        TableCmd::Snapshots { table, format } => {
            let t = lake.load_table(&table_name(table)?).await?;
            let current = t.metadata.current_snapshot_id();
            let mut snaps: Vec<_> = t.metadata.snapshots().collect();
            snaps.sort_by_key(|s| (s.timestamp_ms(), s.sequence_number()));
            let rows: Vec<_> = snaps
                .iter()
                .map(|s| {
                    let mut summary: BTreeMap<String, String> = s
                        .summary()
                        .additional_properties
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    summary.insert("operation".into(), s.summary().operation.as_str().into());
                    serde_json::json!({
                        "snapshot_id": s.snapshot_id(),
                        "parent_id": s.parent_snapshot_id(),
                        "timestamp_ms": s.timestamp_ms(),
                        "committed_at": chrono::DateTime::from_timestamp_millis(s.timestamp_ms()).map(|d| d.to_rfc3339()),
                        "operation": s.summary().operation.as_str(),
                        "current": Some(s.snapshot_id()) == current,
                        "summary": summary,
                    })
                })
                .collect();
            match format {
                Format::Json => output::print_json(&serde_json::Value::Array(rows))?,
                _ => {
                    let mut tbl = comfy_table::Table::new();
                    tbl.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
                    tbl.set_header([
                        "snapshot_id",
                        "parent_id",
                        "committed_at",
                        "operation",
                        "added",
                        "deleted",
                        "total",
                        "",
                    ]);
                    for r in &rows {
                        let s = &r["summary"];
                        tbl.add_row([
                            r["snapshot_id"].to_string(),
                            r["parent_id"].to_string(),
                            r["committed_at"].as_str().unwrap_or_default().to_string(),
                            r["operation"].as_str().unwrap_or_default().to_string(),
                            s["added-records"].as_str().unwrap_or("").to_string(),
                            s["deleted-records"].as_str().unwrap_or("").to_string(),
                            s["total-records"].as_str().unwrap_or("").to_string(),
                            if r["current"] == true {
                                "current".into()
                            } else {
                                String::new()
                            },
                        ]);
                    }
                    println!("{tbl}");
                }
            }
        }
        TableCmd::Rollback { table, to } => {
            let name = table_name(table)?;
            lake.rollback(&name, *to).await?;
            println!("{name} rolled back to snapshot {to}");
        }
        TableCmd::Evolve { table, change } => {
            let name = table_name(table)?;
            let update = match change {
                EvolveCmd::Add { column, r#type } => SchemaUpdate::Add {
                    name: column.clone(),
                    ty: parse_type(r#type)?,
                    doc: None,
                },
                EvolveCmd::Drop { column } => SchemaUpdate::Drop {
                    name: column.clone(),
                },
                EvolveCmd::Rename { from, to } => SchemaUpdate::Rename {
                    from: from.clone(),
                    to: to.clone(),
                },
                EvolveCmd::Widen { column, r#type } => SchemaUpdate::Widen {
                    name: column.clone(),
                    ty: parse_type(r#type)?,
                },
            };
            let t = lake.evolve(&name, &[update]).await?;
            println!("{name}: {}", schema_text(t.metadata.current_schema()));
        }
        TableCmd::Compact {
            table,
            target_file_size,
        } => {
            let name = table_name(table)?;
            let target = target_file_size.as_deref().map(parse_size).transpose()?;
            let pb = spinner(&format!("compacting {name}"));
            let engine = Engine::new(lake).await?;
            let (removed, added) = engine.compact(&name, target).await?;
            pb.finish_and_clear();
            if removed == 0 {
                println!("{name}: nothing to compact");
            } else {
                println!("{name}: rewrote {removed} small files into {added}");
            }
        }
        TableCmd::Expire {
            table,
            older_than,
            retain_last,
        } => {
            let name = table_name(table)?;
            let cutoff = lake.clock().now_ms() - parse_age(older_than)?.as_millis() as i64;
            let r = lake.expire(&name, cutoff, *retain_last).await?;
            println!(
                "{name}: expired {} snapshot(s), deleted {} file(s)",
                r.expired_snapshots.len(),
                r.deleted_files
            );
        }
        TableCmd::RemoveOrphans { table, older_than } => {
            let name = table_name(table)?;
            let cutoff = lake.clock().now_ms() - parse_age(older_than)?.as_millis() as i64;
            let r = lake.remove_orphans(&name, cutoff).await?;
            for f in &r.deleted {
                println!("deleted {f}");
            }
            println!("{name}: removed {} orphan file(s)", r.deleted.len());
        }
        TableCmd::Import {
            table,
            files,
            format,
            mode,
            properties,
        } => {
            let name = table_name(table)?;
            let mut inputs = Vec::new();
            for f in files {
                let fmt = match format {
                    Some(FileFormat::Csv) => ImportFormat::Csv,
                    Some(FileFormat::Json) => ImportFormat::Json,
                    Some(FileFormat::Parquet) => ImportFormat::Parquet,
                    None => ImportFormat::from_path(f).with_context(|| {
                        format!("{f}: cannot tell the format from the extension; pass --format")
                    })?,
                };
                let path = if f.contains("://") {
                    f.clone()
                } else {
                    let p = std::path::absolute(f).with_context(|| f.clone())?;
                    if !p.is_file() {
                        bail!("{f}: no such file");
                    }
                    p.display().to_string()
                };
                inputs.push(InputFile { path, format: fmt });
            }
            let mode = match mode {
                Mode::Append => WriteMode::Append,
                Mode::Overwrite => WriteMode::Overwrite,
                Mode::OverwritePartitions => WriteMode::OverwritePartitions,
            };
            let pb = spinner(&format!("importing {} file(s) into {name}", inputs.len()));
            let engine = Engine::new(lake).await?;
            let r = engine
                .import(&name, &inputs, mode, parse_props(properties)?)
                .await?;
            pb.finish_and_clear();
            println!(
                "{name}: imported {} rows from {} file(s) into {} data file(s); snapshot {}",
                r.rows,
                inputs.len(),
                r.data_files,
                r.snapshot_id.map(|s| s.to_string()).unwrap_or_default()
            );
        }
        TableCmd::Delete { table, predicate } => {
            let name = table_name(table)?;
            let engine = Engine::new(lake).await?;
            let n = engine
                .delete_where(&name, predicate, HashMap::new())
                .await?;
            println!("{name}: deleted {n} row(s)");
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("GRIDATA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let sub = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_json {
        sub.json().init();
    } else {
        sub.init();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_sizes() {
        assert_eq!(parse_age("7d").unwrap().as_secs(), 7 * 86_400);
        assert_eq!(parse_age("0d").unwrap().as_secs(), 0);
        assert!(parse_age("7w").is_err());
        assert_eq!(parse_size("128MB").unwrap(), 128 << 20);
        assert_eq!(parse_size("1024").unwrap(), 1024);
    }
}
