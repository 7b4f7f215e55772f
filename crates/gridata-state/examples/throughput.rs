//! Task instances per second through the state store: each instance is
//! queued, started and finished as the executor records them.
//!
//! cargo run --profile fast -p gridata-state --example throughput -- <url> [instances] [concurrency]

use std::sync::Arc;
use std::time::Instant;

use gridata_state::{RowCounts, RunRecord, SqlStateStore, StateStore, TaskState};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "sqlite::memory:".into());
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5000);
    let conc: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(4);
    let store = Arc::new(SqlStateStore::connect(&url).await.expect("connect"));
    let run_id = uuid_like();
    store
        .create_run(&RunRecord::queued(
            run_id.clone(),
            "bench",
            Default::default(),
            "bench",
            0,
        ))
        .await
        .expect("run");
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..conc {
        let store = store.clone();
        let run_id = run_id.clone();
        tasks.spawn(async move {
            let mut i = w;
            while i < n {
                let t = format!("t{i}");
                store
                    .set_task_state(&run_id, &t, TaskState::Queued, 1, None)
                    .await
                    .expect("queue");
                store.start_attempt(&run_id, &t, 1, 2).await.expect("start");
                store
                    .finish_attempt(
                        &run_id,
                        &t,
                        1,
                        TaskState::Success,
                        3,
                        None,
                        RowCounts::default(),
                        Some("{}"),
                    )
                    .await
                    .expect("finish");
                i += conc;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{{\"instances\": {n}, \"concurrency\": {conc}, \"seconds\": {secs:.3}, \"per_second\": {:.0}}}",
        n as f64 / secs
    );
}

fn uuid_like() -> String {
    format!(
        "bench-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}
