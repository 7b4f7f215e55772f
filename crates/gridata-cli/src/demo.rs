//! `gridata demo`: the main job on the embedded default (local disk,
//! SQLite, in-process engine): a fresh home, a generated e-commerce data
//! set with defects, every shipped pipeline run day by day, and a report
//! of what was written, quarantined and checked.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use gridata_core::Home;
use gridata_engine::Engine;
use gridata_state::RunState;

use crate::output::{Format, print_batches};
use crate::pipes;

/// Options of the demo.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Orders to generate, spread over the days.
    #[arg(long, default_value_t = 6_000)]
    orders: u64,
    /// Days of data, ending on --end.
    #[arg(long, default_value_t = 3)]
    days: u32,
    /// The last day.
    #[arg(long, default_value = "2026-11-20")]
    end: String,
    /// Share of rows with a defect.
    #[arg(long, default_value_t = 0.02)]
    defect_rate: f64,
    /// Random seed: the same seed gives the same data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

const MARKER: &str = ".gridata-demo";

fn step(n: usize, text: &str) {
    println!("\n== {n}. {text}");
}

async fn show(engine: &Engine, sql: &str) -> Result<()> {
    println!("> {sql}");
    let (schema, batches) = engine.query(sql).await?;
    print_batches(&schema, &batches, Format::Table)
}

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
    let end = chrono::NaiveDate::parse_from_str(&args.end, "%Y-%m-%d")
        .with_context(|| format!("--end '{}' is not a date", args.end))?;
    let start = end - chrono::Duration::days(i64::from(args.days.max(1)) - 1);

    step(1, &format!("Initialise a home at {}", root.display()));
    crate::init(&root).await?;
    std::fs::write(
        root.join(MARKER),
        "created by `gridata demo`; safe to delete\n",
    )?;
    let home = Home::open(&root)?;
    println!("catalog    {}", root.join("catalog.db").display());
    println!("state      {}", root.join("state.db").display());
    println!("zones      {}", root.join("warehouse").display());
    println!("pipelines  {}", home.pipelines_dir().display());

    step(
        2,
        &format!(
            "Generate {} orders over {} day(s) from {start}, {:.0}% of rows with defects",
            args.orders,
            args.days,
            args.defect_rate * 100.0
        ),
    );
    let spec = pipes::EcommerceArgs {
        orders: args.orders,
        days: args.days,
        start: Some(start.format("%Y-%m-%d").to_string()),
        format: pipes::GenFormat::Csv,
        seed: args.seed,
        defect_rate: args.defect_rate,
        no_clickstream: false,
    };
    let report = pipes::generate(&home, &pipes::GenerateCmd::Ecommerce(spec), false).await?;
    let defects: u64 = report.files.iter().flat_map(|f| f.defects.values()).sum();
    let rows: u64 = report.files.iter().map(|f| f.rows).sum();
    println!(
        "{} files, {rows} rows, {defects} defects injected, under {}",
        report.files.len(),
        root.join("warehouse/raw/ecommerce").display()
    );

    step(3, "Run the shipped pipelines, day by day");
    let all = gridata_pipeline::load_dir(&home.pipelines_dir())?;
    let mut plan: Vec<(String, String)> = Vec::new();
    for d in 0..args.days {
        let date = (start + chrono::Duration::days(i64::from(d)))
            .format("%Y-%m-%d")
            .to_string();
        plan.push(("ecommerce_customers".into(), date.clone()));
        if d == 0 {
            plan.push(("ecommerce_products".into(), date.clone()));
        }
        plan.push(("ecommerce_clickstream".into(), date.clone()));
        plan.push(("ecommerce_orders".into(), date));
    }
    plan.push((
        "ecommerce_customer_360".into(),
        end.format("%Y-%m-%d").to_string(),
    ));
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header(vec![
        "pipeline",
        "date",
        "state",
        "time",
        "rows read",
        "written",
        "quarantined",
        "checks",
    ]);
    let (mut read, mut written, mut quarantined) = (0u64, 0u64, 0u64);
    let mut last_orders_run = None;
    for (id, date) in &plan {
        let loaded = all.get(id).with_context(|| {
            format!(
                "pipeline {id} is missing from {}",
                home.pipelines_dir().display()
            )
        })?;
        let params = BTreeMap::from([("date".to_string(), date.clone())]);
        let s = pipes::run_loaded(&home, Arc::new(loaded.clone()), params, false).await?;
        let r: u64 = s.files.iter().map(|f| f.rows_read).sum();
        let w: u64 = s.files.iter().map(|f| f.rows_written).sum();
        let q: u64 = s.files.iter().map(|f| f.rows_rejected).sum();
        let written_rows: u64 = if s.files.is_empty() {
            s.tasks
                .iter()
                .filter(|t| t.task_id.starts_with("write"))
                .map(|t| t.rows.rows_out)
                .sum()
        } else {
            w
        };
        read += r;
        written += w;
        quarantined += q;
        let passed = s.checks.iter().filter(|c| c.passed).count();
        let secs = match (s.run.started_ms, s.run.ended_ms) {
            (Some(a), Some(b)) => format!("{:.2}s", (b - a) as f64 / 1000.0),
            _ => "-".into(),
        };
        table.add_row(vec![
            id.clone(),
            date.clone(),
            s.run.state.to_string(),
            secs,
            r.to_string(),
            written_rows.to_string(),
            q.to_string(),
            format!("{passed}/{}", s.checks.len()),
        ]);
        if s.run.state != RunState::Success {
            println!("{table}");
            bail!(
                "run {} of {id} for {date} failed: {}",
                s.run.run_id,
                s.run.error.unwrap_or_default()
            );
        }
        if id == "ecommerce_orders" {
            last_orders_run = Some(s.run.run_id.clone());
        }
    }
    println!("{table}");
    println!(
        "every input row accounted for: {read} read = {written} written + {quarantined} quarantined ({})",
        if read == written + quarantined {
            "ok"
        } else {
            "MISMATCH"
        }
    );
    if read != written + quarantined {
        bail!("row conservation failed");
    }

    step(4, "What was written");
    let lake = gridata_lake::Lake::open(&home).await?;
    let engine = Engine::new(lake).await?;
    show(
        &engine,
        "SELECT 'ecommerce.orders' AS table_name, count(*) AS rows FROM ecommerce.orders \
         UNION ALL SELECT 'ecommerce.order_items', count(*) FROM ecommerce.order_items \
         UNION ALL SELECT 'ecommerce.customers', count(*) FROM ecommerce.customers \
         UNION ALL SELECT 'ecommerce.products', count(*) FROM ecommerce.products \
         UNION ALL SELECT 'ecommerce.clickstream', count(*) FROM ecommerce.clickstream \
         UNION ALL SELECT 'analytics.customer_360', count(*) FROM analytics.customer_360 \
         ORDER BY 1",
    )
    .await?;
    show(
        &engine,
        "SELECT segment, activity_status, count(*) AS customers, \
         CAST(sum(lifetime_value) AS DECIMAL(14,2)) AS lifetime_value, \
         round(avg(churn_risk_score), 3) AS avg_churn_risk \
         FROM analytics.customer_360 GROUP BY 1, 2 ORDER BY 3 DESC",
    )
    .await?;

    step(5, "What was quarantined (last orders run), with reasons");
    if let Some(run_id) = &last_orders_run {
        let dir = home
            .local_root()
            .map(|r| r.join("rejected/ecommerce_orders").join(run_id));
        if let Some(dir) = dir.filter(|d| d.exists()) {
            // Each row check's rejects, and each raw file's malformed lines.
            let mut files = Vec::new();
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                if path.ends_with(gridata_pipeline::run::MALFORMED_DIR) {
                    for f in std::fs::read_dir(&path)? {
                        let f = f?.path();
                        if f.extension().is_some_and(|e| e == "parquet") {
                            files.push(f);
                        }
                    }
                } else if path.join("rows.parquet").exists() {
                    files.push(path.join("rows.parquet"));
                }
            }
            files.sort();
            for (i, f) in files.iter().enumerate() {
                engine
                    .context()
                    .register_parquet(
                        format!("rejected_{i}"),
                        f.display().to_string(),
                        Default::default(),
                    )
                    .await?;
                println!("{}", f.display());
                show(
                    &engine,
                    &format!(
                        "SELECT _reject_rule AS rule, count(*) AS rows, min(_reject_reason) AS example \
                         FROM rejected_{i} GROUP BY 1 ORDER BY 2 DESC"
                    ),
                )
                .await?;
            }
        }
    }

    step(6, "Try next");
    let h = root.display();
    println!("gridata --home {h} runs list");
    println!("gridata --home {h} runs show <run id>");
    println!(
        "gridata --home {h} sql \"SELECT * FROM analytics.customer_360 ORDER BY lifetime_value DESC LIMIT 10\""
    );
    println!(
        "gridata --home {h} sql \"SELECT value_category, count(*), sum(order_total) FROM ecommerce.orders GROUP BY 1\""
    );
    println!("gridata --home {h} table snapshots ecommerce.orders");
    println!(
        "gridata --home {h} sql \"SELECT count(*) FROM ecommerce.orders VERSION AS OF <snapshot id>\""
    );
    println!("gridata --home {h} pipeline validate");
    println!("gridata --home {h} serve    # scheduler, API and web UI on http://127.0.0.1:8080/");
    println!(
        "python: SqlCatalog(\"gridata\", uri=\"sqlite:///{}\", warehouse=\"file://{}\")",
        std::path::absolute(root.join("catalog.db"))?.display(),
        std::path::absolute(root.join("warehouse/curated"))?.display()
    );
    Ok(())
}
