//! SQL golden files: every `tests/slt/*.slt` runs against a fresh embedded
//! lake holding the fixture below, through the same [`Engine`] the CLI, the
//! server and the pipelines use.
//!
//! - `cargo test -p gridata-engine --test sqllogic [NAME…]` runs the files
//!   whose name contains one of the NAMEs (all when none).
//! - `GRIDATA_SLT_COMPLETE=1` rewrites the expected results from the actual
//!   ones; review the diff before committing it.
//! - Every file then runs again in a child process under a 64 MiB memory
//!   limit (label `bounded`), where sessions plan with the `spill` module's
//!   rules and strings stay `Utf8`: the answers must be the same.
//!
//! Snapshot ids and commit times are random, so queries name them with
//! placeholders: `{{orders@N}}` is the id of `shop.orders`' N-th snapshot
//! and `{{orders@N.ms}}` its commit time in epoch milliseconds.
//!
//! Values print with Arrow's display format; NULL is `NULL` and the empty
//! string `(empty)`. Column types are `I` (integers), `R` (floats and
//! decimals) and `T` (everything else).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use gridata_core::{Home, TableName};
use gridata_engine::datafusion::arrow::datatypes::DataType;
use gridata_engine::datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use gridata_engine::{Engine, ImportFormat, InputFile, WriteMode};
use gridata_lake::iceberg::spec::PrimitiveType;
use gridata_lake::schema::{parse_partition_spec, parse_schema};
use gridata_lake::{Lake, SchemaUpdate};
use gridata_storage::Storage;
use sqllogictest::{DBOutput, DefaultColumnType};

/// One connection: the engine, and the placeholder values.
struct Gridata {
    engine: Engine,
    placeholders: BTreeMap<String, String>,
}

#[async_trait]
impl sqllogictest::AsyncDB for Gridata {
    type Error = gridata_engine::Error;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Self::Error> {
        let mut sql = sql.to_string();
        for (k, v) in &self.placeholders {
            sql = sql.replace(k, v);
        }
        let (schema, batches) = self.engine.query(&sql).await?;
        let types = schema
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        let opts = FormatOptions::default().with_null("NULL");
        let mut rows = Vec::new();
        for b in &batches {
            let cols = b
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| gridata_engine::Error::Sql(e.to_string()))?;
            for r in 0..b.num_rows() {
                rows.push(
                    cols.iter()
                        .map(|c| match c.value(r).to_string() {
                            s if s.is_empty() => "(empty)".to_string(),
                            s => s,
                        })
                        .collect(),
                );
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "gridata"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}

fn column_type(t: &DataType) -> DefaultColumnType {
    if t.is_integer() {
        DefaultColumnType::Integer
    } else if t.is_floating() || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..)) {
        DefaultColumnType::FloatingPoint
    } else {
        DefaultColumnType::Text
    }
}

/// The fixture every file starts from:
///
/// `shop.orders (id long, name string, amount int, ts timestamptz)`,
/// partitioned by `month(ts)`, with this history:
/// 1. append ids 1–4 (October and November);
/// 2. overwrite the November partition with id 5;
/// 3. delete `amount < 15` (id 1);
/// 4. rename `name` to `customer`, widen `amount` to long, add `channel`,
///    then append id 6 (December).
///
/// `shop.customers (customer string, segment string)`, one append.
async fn fixture(dir: &Path) -> (Lake, BTreeMap<String, String>) {
    let home = Home::open(dir).unwrap();
    Storage::open(&home).unwrap().init().unwrap();
    let lake = Lake::open(&home).await.unwrap();
    let engine = Engine::new(lake.clone()).await.unwrap();
    lake.create_namespace("shop", &BTreeMap::new())
        .await
        .unwrap();
    let create = |name: &str, schema: &str, partitions: &[&str]| {
        let lake = lake.clone();
        let name = TableName::parse(name).unwrap();
        let schema = parse_schema(schema).unwrap();
        let parts: Vec<String> = partitions.iter().map(|p| p.to_string()).collect();
        async move {
            let spec = parse_partition_spec(&parts, &schema).unwrap();
            lake.create_table(&name, schema, spec, HashMap::new())
                .await
                .unwrap();
            name
        }
    };

    let orders = create(
        "shop.orders",
        "id long not null, name string, amount int, ts timestamptz not null",
        &["month(ts)"],
    )
    .await;
    let oct_nov = "id,name,amount,ts\n1,a,10,2026-10-01T10:00:00Z\n2,b,20,2026-10-15T10:00:00Z\n3,c,30,2026-11-02T10:00:00Z\n4,d,40,2026-11-20T10:00:00Z\n";
    load(&engine, dir, &orders, oct_nov, WriteMode::Append, "r1").await;
    let nov = "id,name,amount,ts\n5,e,50,2026-11-05T10:00:00Z\n";
    load(
        &engine,
        dir,
        &orders,
        nov,
        WriteMode::OverwritePartitions,
        "r2",
    )
    .await;
    engine
        .delete_where(&orders, "amount < 15", run_props("r3"))
        .await
        .unwrap();
    lake.evolve(
        &orders,
        &[
            SchemaUpdate::Rename {
                from: "name".into(),
                to: "customer".into(),
            },
            SchemaUpdate::Widen {
                name: "amount".into(),
                ty: PrimitiveType::Long,
            },
            SchemaUpdate::Add {
                name: "channel".into(),
                ty: PrimitiveType::String,
                doc: None,
            },
        ],
    )
    .await
    .unwrap();
    let dec = "id,customer,amount,ts,channel\n6,f,60,2026-12-24T08:00:00Z,web\n";
    load(&engine, dir, &orders, dec, WriteMode::Append, "r4").await;

    let customers = create(
        "shop.customers",
        "customer string not null, segment string",
        &[],
    )
    .await;
    let segs = "customer,segment\nb,VIP\nc,Low Value\ne,VIP\nf,\nz,High Value\n";
    load(&engine, dir, &customers, segs, WriteMode::Append, "r5").await;

    let table = lake.load_table(&orders).await.unwrap();
    let mut snaps: Vec<_> = table.metadata.snapshots().collect();
    snaps.sort_by_key(|s| s.sequence_number());
    let mut placeholders = BTreeMap::new();
    for (i, s) in snaps.iter().enumerate() {
        let n = i + 1;
        placeholders.insert(format!("{{{{orders@{n}}}}}"), s.snapshot_id().to_string());
        placeholders.insert(
            format!("{{{{orders@{n}.ms}}}}"),
            s.timestamp_ms().to_string(),
        );
    }
    (lake, placeholders)
}

/// Snapshot summary properties of a fixture commit.
fn run_props(run: &str) -> HashMap<String, String> {
    HashMap::from([("gridata.run-id".to_string(), run.to_string())])
}

/// Import CSV text into `table` as run `run`.
async fn load(
    engine: &Engine,
    dir: &Path,
    table: &TableName,
    csv: &str,
    mode: WriteMode,
    run: &str,
) {
    let path = dir.join(format!("{run}.csv"));
    std::fs::write(&path, csv).unwrap();
    let input = InputFile {
        path: path.display().to_string(),
        format: ImportFormat::Csv,
    };
    engine
        .import(table, &[input], mode, run_props(run))
        .await
        .unwrap();
}

fn slt_files(filters: &[String]) -> Vec<PathBuf> {
    // The checkout under test, not the one the binary was built in.
    let dir = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo test"))
        .join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
        })
        .collect();
    files.sort();
    files
}

async fn run_file(path: &Path, complete: bool, bounded: bool) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let (lake, placeholders) = fixture(dir.path()).await;
    let mut runner = sqllogictest::Runner::new(move || {
        let lake = lake.clone();
        let placeholders = placeholders.clone();
        async move {
            Ok(Gridata {
                engine: Engine::new(lake).await?,
                placeholders,
            })
        }
    });
    if bounded {
        runner.add_label("bounded");
    }
    if complete {
        runner
            .update_test_file(
                path,
                " ",
                sqllogictest::default_validator,
                sqllogictest::default_normalizer,
                sqllogictest::default_column_validator,
            )
            .await
            .map_err(|e| e.to_string())
    } else {
        runner
            .run_file_async(path)
            .await
            .map_err(|e| e.display(false).to_string())
    }
}

/// Set in the child process that runs every file again under a memory
/// limit: the bounded planner must give the same answers. Files tell the two passes apart with the `bounded`
/// label (`onlyif bounded` / `skipif bounded`).
const BOUNDED: &str = "GRIDATA_SLT_MEMORY_LIMIT";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // libtest flags (`--include-ignored`, `--nocapture`, …) pass through
    // `cargo test`; the rest are file name filters.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let complete = std::env::var_os("GRIDATA_SLT_COMPLETE").is_some();
    let limit = std::env::var(BOUNDED).ok().and_then(|v| v.parse().ok());
    if limit.is_some() {
        gridata_engine::set_memory_limit(limit);
    }
    let pass = if limit.is_some() { "bounded " } else { "" };
    let files = slt_files(&filters);
    let mut failed = 0;
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        match run_file(f, complete, limit.is_some()).await {
            Ok(()) => println!("slt {pass}{name} ... ok"),
            Err(e) => {
                failed += 1;
                println!("slt {pass}{name} ... FAILED\n{e}");
            }
        }
    }
    println!(
        "\ntest result: {}. {} passed; {failed} failed",
        if failed == 0 { "ok" } else { "FAILED" },
        files.len() - failed
    );
    let mut ok = failed == 0;
    if limit.is_none() && !complete {
        // The limit is process-wide: the bounded pass is a process of its own.
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(std::env::args().skip(1))
            .env(BOUNDED, (64u64 << 20).to_string())
            .status()
            .expect("run the bounded pass");
        ok &= status.success();
    }
    if !ok {
        std::process::exit(1);
    }
}
