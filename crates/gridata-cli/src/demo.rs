//! `gridata demo`: a lakehouse walk-through on a fresh home, embedded
//! default (local disk, SQLite, in-process engine).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use gridata_core::TableName;
use gridata_engine::{Engine, ImportFormat, InputFile, WriteMode};
use gridata_lake::SchemaUpdate;
use gridata_lake::iceberg::spec::PrimitiveType;
use gridata_lake::schema::{parse_partition_spec, parse_schema};

use crate::output::{Format, print_batches};

/// Options of the demo.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Orders per month to generate.
    #[arg(long, default_value_t = 5_000)]
    orders: usize,
    /// Random seed: the same seed gives the same data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

const MARKER: &str = ".gridata-demo";

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Write `n` orders of one month as CSV; ids start at `first_id`.
pub fn orders_csv(path: &Path, month: u32, n: usize, first_id: u64, seed: u64) -> Result<()> {
    const STATUS: [&str; 5] = ["delivered", "delivered", "shipped", "pending", "cancelled"];
    const COUNTRY: [&str; 6] = ["US", "DE", "FR", "GB", "BR", "IN"];
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut s = String::with_capacity(n * 80);
    s.push_str("order_id,customer_id,order_ts,status,quantity,amount,country\n");
    for i in 0..n as u64 {
        let day = 1 + rng.below(28);
        let (h, m, sec) = (rng.below(24), rng.below(60), rng.below(60));
        let qty = 1 + rng.below(5);
        let cents = 500 + rng.below(50_000);
        writeln!(
            s,
            "{},{},2026-{month:02}-{day:02}T{h:02}:{m:02}:{sec:02}Z,{},{qty},{}.{:02},{}",
            first_id + i,
            1 + rng.below(1_000),
            STATUS[rng.below(5) as usize],
            cents / 100,
            cents % 100,
            COUNTRY[rng.below(6) as usize],
        )?;
    }
    std::fs::write(path, s).with_context(|| format!("write {}", path.display()))
}

fn step(n: usize, text: &str) {
    println!("\n\x1b[1m[{n}] {text}\x1b[0m");
}

async fn show(engine: &Engine, sql: &str) -> Result<()> {
    println!("gridata sql \"{sql}\"");
    let (schema, batches) = engine.query(sql).await?;
    print_batches(&schema, &batches, Format::Table)
}

async fn count(engine: &Engine, sql: &str) -> Result<i64> {
    let (_, b) = engine.query(sql).await?;
    let col = b
        .first()
        .context("no rows")?
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .context("count is not an integer")?
        .value(0);
    Ok(col)
}

/// Run the demo.
pub async fn run(args: &DemoArgs, home: Option<PathBuf>) -> Result<()> {
    let root = home.unwrap_or_else(|| PathBuf::from("gridata-demo"));
    if root.exists() {
        if root.join(MARKER).exists() {
            std::fs::remove_dir_all(&root).with_context(|| format!("clean {}", root.display()))?;
        } else if std::fs::read_dir(&root)?.next().is_some() {
            bail!(
                "{} exists and is not a demo home; pass --home with a new folder",
                root.display()
            );
        }
    }
    step(1, &format!("Initialise a home at {}", root.display()));
    let lake = crate::init(&root).await?;
    std::fs::write(
        root.join(MARKER),
        "created by `gridata demo`; safe to delete\n",
    )?;
    println!("catalog  {}", root.join("catalog.db").display());
    println!("zones    {}", root.join("warehouse").display());

    step(
        2,
        "Generate orders for October and November 2026 (CSV, seeded)",
    );
    let raw = root.join("warehouse/raw/ecommerce/orders");
    std::fs::create_dir_all(&raw)?;
    let (oct, nov, nov_fix) = (
        raw.join("2026-10.csv"),
        raw.join("2026-11.csv"),
        raw.join("2026-11-corrected.csv"),
    );
    orders_csv(&oct, 10, args.orders, 1, args.seed)?;
    orders_csv(&nov, 11, args.orders, 1 + args.orders as u64, args.seed + 1)?;
    orders_csv(
        &nov_fix,
        11,
        args.orders / 2,
        1 + args.orders as u64,
        args.seed + 2,
    )?;
    println!("{} orders per month in {}", args.orders, raw.display());

    step(3, "Create ecommerce.orders, partitioned by month(order_ts)");
    lake.create_namespace(
        "ecommerce",
        &BTreeMap::from([("owner".into(), "data-eng".into())]),
    )
    .await?;
    let name = TableName::parse("ecommerce.orders")?;
    let schema = parse_schema(
        "order_id long not null, customer_id long not null, order_ts timestamptz not null, \
         status string, quantity int, amount double, country string",
    )?;
    let spec = parse_partition_spec(&["month(order_ts)".into()], &schema)?;
    lake.create_table(&name, schema, spec, HashMap::new())
        .await?;
    let engine = Engine::new(lake.clone()).await?;
    let input = |p: &Path| InputFile {
        path: p.display().to_string(),
        format: ImportFormat::Csv,
    };

    step(
        4,
        "Import both months (append, ZSTD Parquet, one atomic commit)",
    );
    let r = engine
        .import(
            &name,
            &[input(&oct), input(&nov)],
            WriteMode::Append,
            HashMap::new(),
        )
        .await?;
    let first = r.snapshot_id.context("no snapshot")?;
    println!(
        "{} rows, {} data files, snapshot {first}",
        r.rows, r.data_files
    );
    show(&engine, "SELECT date_trunc('month', order_ts) AS month, count(*) AS orders, round(sum(amount), 2) AS revenue FROM ecommerce.orders GROUP BY 1 ORDER BY 1").await?;

    step(
        5,
        "A corrected November file arrives: overwrite only its partition",
    );
    let r = engine
        .import(
            &name,
            &[input(&nov_fix)],
            WriteMode::OverwritePartitions,
            HashMap::new(),
        )
        .await?;
    println!("{} rows replaced November; October untouched", r.rows);
    show(&engine, "SELECT date_trunc('month', order_ts) AS month, count(*) AS orders FROM ecommerce.orders GROUP BY 1 ORDER BY 1").await?;

    step(6, "Delete cancelled orders (copy-on-write)");
    let n = engine
        .delete_where(&name, "status = 'cancelled'", HashMap::new())
        .await?;
    println!("deleted {n} rows");

    step(
        7,
        "Evolve the schema: add `channel`, rename `amount` to `order_total`",
    );
    lake.evolve(
        &name,
        &[
            SchemaUpdate::Add {
                name: "channel".into(),
                ty: PrimitiveType::String,
                doc: None,
            },
            SchemaUpdate::Rename {
                from: "amount".into(),
                to: "order_total".into(),
            },
        ],
    )
    .await?;
    show(&engine, "SELECT order_id, status, order_total, channel FROM ecommerce.orders ORDER BY order_id LIMIT 3").await?;

    step(8, "Time travel to the first import");
    let now = count(&engine, "SELECT count(*) FROM ecommerce.orders").await?;
    let then = count(
        &engine,
        &format!("SELECT count(*) FROM ecommerce.orders VERSION AS OF {first}"),
    )
    .await?;
    println!("rows now: {now}; rows at snapshot {first}: {then}");

    step(9, "Three small December drops, then compaction");
    for i in 0..3u64 {
        let f = raw.join(format!("2026-12-part{i}.csv"));
        orders_csv(&f, 12, 200, 100_000 + i * 1_000, args.seed + 10 + i)?;
        // Producers follow the rename too.
        let text = std::fs::read_to_string(&f)?.replacen(",amount,", ",order_total,", 1);
        std::fs::write(&f, text)?;
        engine
            .import(&name, &[input(&f)], WriteMode::Append, HashMap::new())
            .await?;
    }
    let now = count(&engine, "SELECT count(*) FROM ecommerce.orders").await?;
    let (removed, added) = engine.compact(&name, None).await?;
    println!(
        "rewrote {removed} files into {added}; rows unchanged: {}",
        count(&engine, "SELECT count(*) FROM ecommerce.orders").await? == now
    );

    step(10, "Snapshot history");
    show(
        &engine,
        "SELECT snapshot_id, parent_id, operation, committed_at FROM ecommerce.orders$snapshots",
    )
    .await?;

    println!("\nTry next:");
    let h = root.display();
    println!(
        "  gridata --home {h} sql \"SELECT country, count(*), sum(order_total) FROM ecommerce.orders GROUP BY country\""
    );
    println!(
        "  gridata --home {h} sql \"SELECT * FROM ecommerce.orders VERSION AS OF {first} LIMIT 5\""
    );
    println!("  gridata --home {h} sql \"SELECT * FROM ecommerce.orders\\$files\"");
    println!("  gridata --home {h} table snapshots ecommerce.orders");
    println!("  gridata --home {h} table rollback ecommerce.orders --to {first}");
    println!(
        "  python -c \"from pyiceberg.catalog.sql import SqlCatalog; c = SqlCatalog('gridata', uri='sqlite:///{h}/catalog.db'); print(c.load_table('ecommerce.orders').scan().to_arrow().num_rows)\""
    );
    Ok(())
}
