//! Helpers shared by the end-to-end pipeline tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use gridata_core::{Home, SystemClock};
use gridata_engine::Engine;
use gridata_lake::Lake;
use gridata_pipeline::{Loaded, RunOptions, RunSummary, Runner, load_str, shipped};
use gridata_state::{RunState, SqlStateStore};

pub struct Env {
    pub _dir: tempfile::TempDir,
    pub home: Home,
    pub runner: Runner,
    pub lake: Lake,
}

pub async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::open(dir.path()).unwrap();
    let storage = gridata_storage::Storage::open(&home).unwrap();
    storage.init().unwrap();
    let lake = Lake::open(&home).await.unwrap();
    let state = Arc::new(
        SqlStateStore::connect(home.state_url().unwrap().expose())
            .await
            .unwrap(),
    );
    let runner = Runner::new(
        lake.clone(),
        state,
        Arc::new(SystemClock),
        home.root.clone(),
    );
    Env {
        _dir: dir,
        home,
        runner,
        lake,
    }
}

/// Writes `text` to `path` in the raw zone.
pub async fn raw_file(env: &Env, path: &str, text: &str) {
    let storage = gridata_storage::Storage::open(&env.home).unwrap();
    storage
        .write(
            &storage.uri(gridata_core::Zone::Raw, path),
            text.to_string().into(),
        )
        .await
        .unwrap();
}

/// A task's rows in and rows out in a run that succeeded.
pub fn task_rows(s: &RunSummary, task: &str) -> (u64, u64) {
    assert_eq!(s.run.state, RunState::Success, "{:?}", s.run.error);
    let t = s.tasks.iter().find(|t| t.task_id == task).unwrap();
    (t.rows.rows_in, t.rows.rows_out)
}

pub async fn generate(env: &Env, orders: u64, days: u32, defect_rate: f64) {
    let storage = gridata_storage::Storage::open(&env.home).unwrap();
    gridata_gen::generate(
        &storage,
        &gridata_gen::Spec {
            orders,
            start: chrono::NaiveDate::from_ymd_opt(2026, 11, 19).unwrap(),
            days,
            format: gridata_gen::Format::Csv,
            seed: 5,
            defect_rate,
            clickstream: true,
        },
        &mut |_| {},
    )
    .await
    .unwrap();
}

pub fn shipped_pipeline(id: &str) -> Arc<Loaded> {
    let (name, text) = shipped::SHIPPED
        .iter()
        .find(|(n, _)| n.trim_end_matches(".yaml") == id)
        .unwrap();
    Arc::new(load_str(Path::new(name), text).unwrap())
}

pub fn pipeline(id: &str, text: &str) -> Arc<Loaded> {
    Arc::new(load_str(Path::new(&format!("{id}.yaml")), text).unwrap())
}

pub async fn run(env: &Env, p: Arc<Loaded>, date: &str) -> RunSummary {
    let params = if p.pipeline.params.contains_key("date") {
        BTreeMap::from([("date".to_string(), date.to_string())])
    } else {
        BTreeMap::new()
    };
    env.runner
        .run(
            p,
            RunOptions {
                params,
                trigger: "test".into(),
                retry_delay_scale: Some(0.0),
                ..Default::default()
            },
        )
        .await
        .unwrap()
}

pub async fn count(env: &Env, sql: &str) -> i64 {
    let engine = Engine::new(env.lake.clone()).await.unwrap();
    let (_, batches) = engine.query(sql).await.unwrap();
    let c = arrow::compute::cast(batches[0].column(0), &arrow::datatypes::DataType::Int64).unwrap();
    c.as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap()
        .value(0)
}

pub async fn load_day(env: &Env, date: &str, first: bool) {
    for id in [
        "ecommerce_customers",
        "ecommerce_products",
        "ecommerce_clickstream",
        "ecommerce_orders",
    ] {
        if id == "ecommerce_products" && !first {
            continue;
        }
        let s = run(env, shipped_pipeline(id), date).await;
        assert_eq!(
            s.run.state,
            RunState::Success,
            "{id} {date}: {:?}",
            s.run.error
        );
    }
}

/// Rows in the quarantine Parquet files of a run, each with a reason.
pub async fn quarantined_rows(env: &Env, pipeline: &str, run_id: &str) -> i64 {
    let dir = env
        .home
        .local_root()
        .unwrap()
        .join("rejected")
        .join(pipeline)
        .join(run_id);
    let engine = Engine::new(env.lake.clone()).await.unwrap();
    let mut total = 0;
    for task in std::fs::read_dir(&dir).into_iter().flatten() {
        for f in std::fs::read_dir(task.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "parquet") {
                let df = engine
                    .context()
                    .read_parquet(p.display().to_string(), Default::default())
                    .await
                    .unwrap();
                let batches = df.collect().await.unwrap();
                for b in batches {
                    let reason = b.column_by_name("_reject_reason").unwrap();
                    let line = b.column_by_name("_source_line").unwrap();
                    let run = b.column_by_name("_run_id").unwrap();
                    assert_eq!(
                        reason.null_count(),
                        0,
                        "{}: every row has a reason",
                        p.display()
                    );
                    assert_eq!(
                        line.null_count(),
                        0,
                        "{}: every row has its line",
                        p.display()
                    );
                    assert_eq!(run.null_count(), 0);
                    total += b.num_rows() as i64;
                }
            }
        }
    }
    total
}

/// The rows a task of a run quarantined, as `select` over them (the table
/// is `bad`), each row's values joined with " / ".
pub async fn rejected_rows(
    env: &Env,
    pipeline: &str,
    run_id: &str,
    task: &str,
    select: &str,
) -> Vec<String> {
    use arrow::array::AsArray;
    let file = env
        .home
        .local_root()
        .unwrap()
        .join("rejected")
        .join(pipeline)
        .join(run_id)
        .join(task)
        .join("rows.parquet");
    let engine = Engine::new(env.lake.clone()).await.unwrap();
    let df = engine
        .context()
        .read_parquet(file.display().to_string(), Default::default())
        .await
        .unwrap();
    engine.register("bad", df.into_view()).unwrap();
    let (_, batches) = engine.query(select).await.unwrap();
    let mut rows = Vec::new();
    for b in &batches {
        let cols: Vec<_> = b
            .columns()
            .iter()
            .map(|c| arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).unwrap())
            .collect();
        for r in 0..b.num_rows() {
            let values: Vec<&str> = cols.iter().map(|c| c.as_string::<i32>().value(r)).collect();
            rows.push(values.join(" / "));
        }
    }
    rows
}
