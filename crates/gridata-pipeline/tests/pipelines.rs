//! End-to-end pipeline runs on the embedded default: generated data with
//! defects, the shipped pipelines, quarantine, write-audit-publish,
//! reruns, retries and clear failures.

use std::collections::BTreeMap;
use std::sync::Arc;

use gridata_core::TableName;
use gridata_engine::Engine;
use gridata_pipeline::{ExecOptions, Loaded, RunEvent, RunOptions, RunSummary};
use gridata_state::{RunState, TaskState};

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_are_conserved_on_generated_defects_and_reruns_are_idempotent() {
    let env = env().await;
    generate(&env, 1_500, 2, 0.05).await;
    load_day(&env, "2026-11-19", true).await;

    let orders = shipped_pipeline("ecommerce_orders");
    let first = run(&env, orders.clone(), "2026-11-20").await;
    // Customers for the 20th were not loaded yet: some orders reference
    // unknown customers and are quarantined, never lost.
    assert_eq!(first.run.state, RunState::Success, "{:?}", first.run.error);
    assert_eq!(first.files.len(), 2, "{:?}", first.files);
    for f in &first.files {
        assert!(f.rows_read > 0);
        assert_eq!(
            f.rows_read,
            f.rows_written + f.rows_rejected,
            "conservation for {}",
            f.source_file
        );
        assert!(f.rows_rejected > 0, "defects are quarantined: {f:?}");
    }
    let rejected: u64 = first.files.iter().map(|f| f.rows_rejected).sum();
    assert_eq!(
        quarantined_rows(&env, "ecommerce_orders", &first.run.run_id).await as u64,
        rejected,
        "every quarantined row is in the rejected zone with its reason"
    );
    let written: u64 = first
        .files
        .iter()
        .filter(|f| f.source_file.ends_with("/orders.csv"))
        .map(|f| f.rows_written)
        .sum();
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM ecommerce.orders WHERE order_date = DATE '2026-11-20'"
        )
        .await as u64,
        written
    );
    // The raw files were archived, with their checksum sidecars.
    let root = env.home.local_root().unwrap();
    for f in ["orders.csv", "orders.csv.sha256", "order_items.csv.sha256"] {
        assert!(
            root.join("archive/ecommerce/orders/2026-11-20")
                .join(f)
                .exists(),
            "{f} archived"
        );
    }
    let left: Vec<_> = std::fs::read_dir(root.join("raw/ecommerce/orders/2026-11-20"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left in raw: {left:?}");

    let snapshot = |sql: &'static str| {
        let env = &env;
        async move {
            let engine = Engine::new(env.lake.clone()).await.unwrap();
            let (_, b) = engine.query(sql).await.unwrap();
            arrow::util::pretty::pretty_format_batches(&b)
                .unwrap()
                .to_string()
        }
    };
    const CONTENT: &str = "SELECT order_id, customer_id, order_ts, order_total, status, _source_line \
                           FROM ecommerce.orders ORDER BY order_id";
    const ITEMS: &str = "SELECT order_id, line_number, line_total FROM ecommerce.order_items \
                         ORDER BY order_id, line_number";
    let (before, before_items) = (snapshot(CONTENT).await, snapshot(ITEMS).await);
    let total = count(&env, "SELECT count(*) FROM ecommerce.orders").await;

    // Rerun the same date (from the archive): same contents, no duplicates.
    let again = run(&env, orders, "2026-11-20").await;
    assert_eq!(again.run.state, RunState::Success, "{:?}", again.run.error);
    assert_eq!(
        count(&env, "SELECT count(*) FROM ecommerce.orders").await,
        total
    );
    assert_eq!(snapshot(CONTENT).await, before);
    assert_eq!(snapshot(ITEMS).await, before_items);
    let days = count(
        &env,
        "SELECT count(DISTINCT order_date) FROM ecommerce.orders",
    )
    .await;
    assert_eq!(days, 2, "the other day's partition is kept");
}

/// Start a run, kill it (drop its future, as a crash would) right after
/// `cut` finished, then resume it as another process would.
async fn interrupted_then_resumed(env: &Env, p: Arc<Loaded>, date: &str, cut: &str) -> RunSummary {
    let pipeline = p.pipeline.id.clone();
    let opts = RunOptions {
        params: BTreeMap::from([("date".to_string(), date.to_string())]),
        trigger: "test".into(),
        retry_delay_scale: Some(0.0),
        ..Default::default()
    };
    let run = env.runner.enqueue(&p, &opts).await.unwrap().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let exec = ExecOptions {
        events: Some(tx),
        retry_delay_scale: Some(0.0),
        ..Default::default()
    };
    let (runner, p2, id) = (env.runner.clone(), p.clone(), run.run_id.clone());
    let handle = tokio::spawn(async move { runner.execute(p2, &id, &exec).await });
    while let Some(e) = rx.recv().await {
        if let RunEvent::TaskFinished { task_id, .. } = e
            && task_id == cut
        {
            break;
        }
    }
    handle.abort();
    let _ = handle.await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mid = env.runner.state().run(&run.run_id).await.unwrap();
    assert_eq!(mid.state, RunState::Running, "killed mid-run after {cut}");
    let resumed = env
        .runner
        .execute(
            p,
            &run.run_id,
            &ExecOptions {
                retry_delay_scale: Some(0.0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        resumed.run.state,
        RunState::Success,
        "resumed after {cut}: {:?}",
        resumed.run.error
    );
    // Each quarantined row is in the rejected zone once, also when the
    // resumed run landed a file from another task than the first attempt.
    let rejected: u64 = resumed.files.iter().map(|f| f.rows_rejected).sum();
    assert!(rejected > 0);
    assert_eq!(
        quarantined_rows(env, &pipeline, &run.run_id).await as u64,
        rejected,
        "resumed after {cut}"
    );
    resumed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_anywhere_resumes_without_losing_or_duplicating_rows() {
    let env = env().await;
    generate(&env, 1_200, 2, 0.05).await;
    load_day(&env, "2026-11-19", true).await;
    let orders = shipped_pipeline("ecommerce_orders");
    const CONTENT: &str = "SELECT order_id, customer_id, order_total, status, _source_line \
                           FROM ecommerce.orders ORDER BY order_id";
    let dump = || async {
        let engine = Engine::new(env.lake.clone()).await.unwrap();
        let (_, b) = engine.query(CONTENT).await.unwrap();
        arrow::util::pretty::pretty_format_batches(&b)
            .unwrap()
            .to_string()
    };
    // Killed after the write was staged, before its checks published it.
    let s = interrupted_then_resumed(&env, orders.clone(), "2026-11-20", "write_orders").await;
    // Its staged snapshot was kept, checked and published: not written twice.
    let w = s
        .tasks
        .iter()
        .find(|t| t.task_id == "write_orders")
        .unwrap();
    assert_eq!((w.state, w.attempts), (TaskState::Success, 1));
    for f in &s.files {
        assert_eq!(f.rows_read, f.rows_written + f.rows_rejected, "{f:?}");
    }
    let written: u64 = s
        .files
        .iter()
        .filter(|f| f.source_file.ends_with("/orders.csv"))
        .map(|f| f.rows_written)
        .sum();
    assert!(written > 0);
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM ecommerce.orders WHERE order_date = DATE '2026-11-20'"
        )
        .await as u64,
        written
    );
    assert_eq!(
        count(
            &env,
            "SELECT count(*) - count(DISTINCT order_id) FROM ecommerce.orders"
        )
        .await,
        0
    );
    // No staged snapshot is left behind: every snapshot is on main.
    let t = env
        .lake
        .load_table(&gridata_core::TableName::parse("ecommerce.orders").unwrap())
        .await
        .unwrap();
    let mut on_main = 0;
    let mut next = t.metadata.current_snapshot_id();
    while let Some(id) = next {
        on_main += 1;
        next = t.metadata.snapshot_by_id(id).unwrap().parent_snapshot_id();
    }
    assert_eq!(t.metadata.snapshots().count(), on_main);
    let after_resume = dump().await;
    // Killed after a file check landed the raw file: the row check that
    // reads it lands it again, and its malformed lines replace the first.
    let s =
        interrupted_then_resumed(&env, orders.clone(), "2026-11-20", "validate_orders_file").await;
    let malformed = env
        .home
        .local_root()
        .unwrap()
        .join(format!("rejected/ecommerce_orders/{}", s.run.run_id))
        .join(gridata_pipeline::run::MALFORMED_DIR);
    assert!(std::fs::read_dir(&malformed).unwrap().count() > 0);
    assert_eq!(dump().await, after_resume);
    // A clean rerun gives the same table.
    let clean = run(&env, orders.clone(), "2026-11-20").await;
    assert_eq!(clean.run.state, RunState::Success);
    assert_eq!(dump().await, after_resume);
    // Killed after the row checks: their outputs (staged files read without
    // the quarantined lines) are read back, not checked again.
    let s = interrupted_then_resumed(&env, orders.clone(), "2026-11-20", "check_item_orders").await;
    for f in &s.files {
        assert_eq!(f.rows_read, f.rows_written + f.rows_rejected, "{f:?}");
    }
    let checks = s.tasks.iter().filter(|t| t.task_id.starts_with("check_"));
    assert!(checks.clone().count() == 3 && checks.clone().all(|t| t.attempts == 1));
    assert_eq!(dump().await, after_resume);
    // Killed after the raw files were archived: the resumed run finishes.
    interrupted_then_resumed(&env, orders, "2026-11-20", "archive").await;
    assert_eq!(dump().await, after_resume);
}

const GATED: &str = r#"
id: gated
params:
  severity: { type: string, default: error }
tasks:
  - id: rows
    sql:
      query: "SELECT CAST(v AS BIGINT) AS v FROM (VALUES (1), (2), (-3)) AS t(v)"
  - id: write
    depends_on: [rows]
    write: { input: rows, table: demo.gated, mode: append }
  - id: check
    depends_on: [write]
    quality:
      table: demo.gated
      checks:
        - name: positive
          severity: SEVERITY
          range: { column: v, min: 0 }
        - row_count: { min: 1 }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_error_check_keeps_the_pre_run_snapshot_and_a_warn_check_does_not() {
    let env = env().await;
    let name = TableName::parse("demo.gated").unwrap();
    // First run with a warn check: published.
    let warn = pipeline("gated", &GATED.replace("SEVERITY", "warn"));
    let s = run(&env, warn, "").await;
    assert_eq!(s.run.state, RunState::Success, "{:?}", s.run.error);
    assert!(
        s.checks
            .iter()
            .any(|c| c.name == "positive" && !c.passed && c.severity == "warn")
    );
    let published = env.lake.load_table(&name).await.unwrap();
    let before = published.metadata.current_snapshot_id();
    assert!(before.is_some());
    assert_eq!(count(&env, "SELECT count(*) FROM demo.gated").await, 3);

    // A different pipeline appending the same rows with an error check.
    let error = pipeline(
        "gated_error",
        &GATED
            .replace("SEVERITY", "error")
            .replace("id: gated", "id: gated_error"),
    );
    let s = run(&env, error, "").await;
    assert_eq!(s.run.state, RunState::Failed);
    let err = s.run.error.clone().unwrap();
    assert!(err.contains("check") && err.contains("positive"), "{err}");
    let check = s.checks.iter().find(|c| c.name == "positive").unwrap();
    assert!(!check.passed);
    assert!(
        check.snapshot_id.is_some() && check.snapshot_id != before,
        "checked the staged snapshot"
    );
    let after = env.lake.load_table(&name).await.unwrap();
    assert_eq!(
        after.metadata.current_snapshot_id(),
        before,
        "pre-run snapshot kept"
    );
    assert_eq!(count(&env, "SELECT count(*) FROM demo.gated").await, 3);
    assert!(
        after
            .metadata
            .snapshot_by_id(check.snapshot_id.unwrap())
            .is_none(),
        "the staged snapshot is discarded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_name_the_task_file_and_cause() {
    let env = env().await;
    // A missing input file.
    let missing = pipeline(
        "missing",
        r#"
id: missing
tasks:
  - id: read
    validate_rows:
      input: { file: "nowhere/orders.csv" }
      rules: [ { not_null: [a] } ]
"#,
    );
    let s = run(&env, missing, "").await;
    assert_eq!(s.run.state, RunState::Failed);
    let e = s.run.error.unwrap();
    assert!(
        e.contains("task 'read'") && e.contains("nowhere/orders.csv") && e.contains("not found"),
        "{e}"
    );

    // A SQL error: an unknown column.
    let storage = gridata_storage::Storage::open(&env.home).unwrap();
    raw_file(&env, "in/a.csv", "a,b\n1,2\n").await;
    let bad_sql = pipeline(
        "bad_sql",
        r#"
id: bad_sql
tasks:
  - id: transform
    sql:
      inputs: { src: { file: "in/a.csv" } }
      query: SELECT nope FROM src
"#,
    );
    let s = run(&env, bad_sql, "").await;
    let e = s.run.error.unwrap();
    assert!(
        e.contains("task 'transform'") && e.contains("SQL error") && e.contains("nope"),
        "{e}"
    );
    let t = s.tasks.iter().find(|t| t.task_id == "transform").unwrap();
    assert_eq!(t.attempts, 1, "deterministic errors are not retried");

    // A schema mismatch: the file lacks a required column.
    let mismatch = pipeline(
        "mismatch",
        r#"
id: mismatch
tasks:
  - id: check_file
    validate_file:
      path: in/a.csv
      columns: [ { name: order_id, required: true } ]
  - id: after
    depends_on: [check_file]
    sql: { query: SELECT 1 }
"#,
    );
    let s = run(&env, mismatch, "").await;
    let e = s.run.error.unwrap();
    assert!(
        e.contains("task 'check_file'")
            && e.contains("a.csv")
            && e.contains("required column 'order_id' is missing"),
        "{e}"
    );
    let after = s.tasks.iter().find(|t| t.task_id == "after").unwrap();
    assert_eq!(after.state, TaskState::UpstreamFailed);
    // The bad file moved to the rejected zone with a reason file.
    assert!(
        !storage
            .exists(&storage.uri(gridata_core::Zone::Raw, "in/a.csv"))
            .await
            .unwrap()
    );
    let rejected = storage
        .list(storage.zone_uri(gridata_core::Zone::Rejected))
        .await
        .unwrap();
    assert!(
        rejected
            .iter()
            .any(|f| f.uri.ends_with("a.csv.reason.json")),
        "{rejected:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_and_independent_tasks_run_in_parallel() {
    let env = env().await;
    let marker = env.home.root.join("attempted");
    let text = format!(
        r#"
id: flaky
defaults: {{ retries: 2, retry_delay: 1s }}
tasks:
  - id: flaky
    command:
      program: sh
      args: ["-c", "if [ -f {m} ]; then echo second try; else touch {m}; echo first try >&2; exit 3; fi"]
  - id: slow_a
    command: {{ program: sh, args: ["-c", "sleep 1"] }}
  - id: slow_b
    command: {{ program: sh, args: ["-c", "sleep 1"] }}
"#,
        m = marker.display()
    );
    let s = run(&env, pipeline("flaky", &text), "").await;
    assert_eq!(s.run.state, RunState::Success, "{:?}", s.run.error);
    let t = s.tasks.iter().find(|t| t.task_id == "flaky").unwrap();
    assert_eq!(t.attempts, 2);
    let attempts = env
        .runner
        .state()
        .attempts(&s.run.run_id, "flaky")
        .await
        .unwrap();
    assert_eq!(attempts[0].state, TaskState::UpForRetry);
    assert!(
        attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("exited with code 3")
    );
    let logs = env
        .runner
        .state()
        .logs(&s.run.run_id, "flaky")
        .await
        .unwrap();
    assert!(
        logs.iter().any(|l| l.message.contains("second try")),
        "{logs:?}"
    );
    // Two one-second tasks side by side take about one second, not two.
    let a = s.tasks.iter().find(|t| t.task_id == "slow_a").unwrap();
    let b = s.tasks.iter().find(|t| t.task_id == "slow_b").unwrap();
    assert!(
        a.started_ms.unwrap() < b.ended_ms.unwrap() && b.started_ms.unwrap() < a.ended_ms.unwrap()
    );
}

/// Column lineage recorded by each write of the shipped pipelines, traced
/// from the table back to raw files and source tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_lineage_of_the_shipped_pipelines() {
    let env = env().await;
    generate(&env, 300, 1, 0.0).await;
    load_day(&env, "2026-11-19", true).await;
    let c360 = run(
        &env,
        shipped_pipeline("ecommerce_customer_360"),
        "2026-11-19",
    )
    .await;
    assert_eq!(c360.run.state, RunState::Success, "{:?}", c360.run.error);
    let runs = env
        .runner
        .state()
        .runs(&gridata_state::RunFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = String::new();
    let mut seen = std::collections::BTreeSet::new();
    for r in runs.iter().rev() {
        for t in env.runner.state().tasks(&r.run_id).await.unwrap() {
            let Some(o) = t.output.as_deref() else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(o).unwrap();
            let (Some(table), Some(lineage)) = (v["table"].as_str(), v.get("lineage")) else {
                continue;
            };
            if lineage.is_null() || !seen.insert(table.to_string()) {
                continue;
            }
            out.push_str(&format!(
                "== {table} (written by {}.{})\n",
                r.pipeline, t.task_id
            ));
            for (col, inputs) in lineage["fields"].as_object().unwrap() {
                let srcs: Vec<String> = inputs
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| {
                        let subs: Vec<&str> = i["transformations"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|t| t["subtype"].as_str().unwrap())
                            .collect();
                        format!(
                            "{}.{}({})",
                            i["dataset"].as_str().unwrap(),
                            i["field"].as_str().unwrap(),
                            subs.join(",")
                        )
                    })
                    .collect();
                out.push_str(&format!("{col} <- {}\n", srcs.join(" ")));
            }
            let rows: Vec<String> = lineage["dataset"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    format!(
                        "{}.{}",
                        i["dataset"].as_str().unwrap(),
                        i["field"].as_str().unwrap()
                    )
                })
                .collect();
            out.push_str(&format!("[rows] <- {}\n\n", rows.join(" ")));
        }
    }
    for table in [
        "ecommerce.customers",
        "ecommerce.products",
        "ecommerce.clickstream",
        "ecommerce.orders",
        "ecommerce.order_items",
        "analytics.customer_360",
    ] {
        assert!(
            seen.contains(table),
            "no lineage recorded for {table}:\n{out}"
        );
    }
    insta::assert_snapshot!(out);

    // The recorded graph reaches from customer 360 back to the raw files.
    let graph = gridata_metadata::Graph::new(env.runner.state().lineage_edges().await.unwrap());
    let up = graph.walk(
        "analytics.customer_360",
        Some("lifetime_value"),
        gridata_metadata::Direction::Upstream,
        0,
    );
    let sources: std::collections::BTreeSet<String> = up
        .edges
        .iter()
        .map(|(_, e)| format!("{}.{}", e.source_dataset, e.source_field))
        .collect();
    for s in [
        "ecommerce.orders.order_total",
        "raw:ecommerce/orders/{{ date }}/order_items.{{ format }}.quantity",
        "raw:ecommerce/orders/{{ date }}/orders.{{ format }}.shipping_cost",
    ] {
        assert!(
            sources.contains(s),
            "{s} not upstream of lifetime_value: {sources:#?}"
        );
    }
    // Every written table is registered, with PII found in its columns.
    let index = gridata_metadata::search::Index::new(env.runner.state().datasets().await.unwrap());
    let customers = index.get("ecommerce.customers").unwrap();
    let pii = |c: &str| {
        customers
            .columns
            .iter()
            .find(|x| x.name == c)
            .unwrap()
            .pii
            .clone()
    };
    assert_eq!(pii("email").as_deref(), Some("email"));
    assert_eq!(pii("birth_date").as_deref(), Some("date_of_birth"));
    assert_eq!(pii("customer_id"), None);
    assert!(customers.row_count.unwrap() > 0 && !customers.owners.is_empty());
    let found = index.search("lifetime", &Default::default(), 10, 0);
    assert_eq!(found.hits[0].name, "analytics.customer_360");
    let with_pii = index.search(
        "",
        &gridata_metadata::search::Filters {
            pii: Some(true),
            ..Default::default()
        },
        10,
        0,
    );
    assert!(
        with_pii.facets["pii"].contains_key("email"),
        "{:?}",
        with_pii.facets
    );
    let impact = graph.impact("ecommerce.orders", "order_total");
    assert!(
        impact
            .columns
            .contains(&("analytics.customer_360".into(), "lifetime_value".into()))
    );
    assert!(impact.pipelines.contains("ecommerce_customer_360"));
}

/// A `unique` check counts every row beyond the first of its key (NULLs are
/// one key, as in GROUP BY), whatever the key's width, and passes when every
/// key is distinct.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_checks_count_the_rows_beyond_each_keys_first() {
    let env = env().await;
    let p = pipeline(
        "uq",
        r#"
id: uq
tasks:
  - id: rows
    sql:
      query: >-
        SELECT * FROM (VALUES (1, 'a', 1), (2, 'a', 1), (3, 'a', 1), (4, 'a', 2),
        (5, 'b', 1), (6, NULL, 3), (7, NULL, 3)) AS t(id, k, n)
  - id: check
    depends_on: [rows]
    quality:
      input: rows
      checks:
        - { name: k_n, severity: warn, unique: [k, n] }
        - { name: n_k, severity: warn, unique: [n, k] }
        - { name: k, severity: warn, unique: [k] }
        - { name: id, unique: [id] }
        - { name: id_k, unique: [id, k] }
"#,
    );
    let s = run(&env, p, "").await;
    assert_eq!(s.run.state, RunState::Success, "{:?}", s.run.error);
    let observed = |name: &str| {
        let c = s.checks.iter().find(|c| c.name == name).unwrap();
        (c.passed, c.observed.clone())
    };
    assert_eq!(observed("k_n"), (false, "3 duplicate rows".into()));
    assert_eq!(observed("n_k"), (false, "3 duplicate rows".into()));
    assert_eq!(observed("k"), (false, "4 duplicate rows".into()));
    assert_eq!(observed("id"), (true, "0 duplicate rows".into()));
    assert_eq!(observed("id_k"), (true, "0 duplicate rows".into()));
}

/// `unique` keeps the first line of each key (nulls are one key) and
/// quarantines the later ones with the first line in the reason; the other
/// rules see the input's columns unqualified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_rows_keep_the_first_line_of_each_key() {
    let env = env().await;
    raw_file(
        &env,
        "in/u.csv",
        "a,b,c\n1,x,ok\n1,x,ok\n1,,ok\n1,,ok\n2,x,\n2,x,ok\n1,x,ok\n3,y,ok\n",
    )
    .await;
    let p = pipeline(
        "uniq",
        r#"
id: uniq
tasks:
  - id: check
    validate_rows:
      input: { file: "in/u.csv" }
      rules:
        - not_null: [c]
        - name: dup
          unique: [a, b]
"#,
    );
    let s = run(&env, p, "").await;
    assert_eq!(s.run.state, RunState::Success, "{:?}", s.run.error);
    let rows = rejected_rows(
        &env,
        "uniq",
        &s.run.run_id,
        "check",
        "SELECT _source_line, _reject_rule, _reject_reason FROM bad ORDER BY _source_line",
    )
    .await;
    assert_eq!(
        rows,
        [
            "3 / dup / duplicate a, b: 1, x (first at line 2)",
            "5 / dup / duplicate a, b: 1,  (first at line 4)",
            "6 / not_null_c / required value missing: c",
            "7 / dup / duplicate a, b: 2, x (first at line 6)",
            "8 / dup / duplicate a, b: 1, x (first at line 2)",
        ]
    );
    // Distinct keys: the rule has no verdicts to look up, and every row passes.
    raw_file(&env, "in/v.csv", "a,b\n1,x\n2,x\n,x\n").await;
    let p = pipeline(
        "distinct",
        r#"
id: distinct
tasks:
  - id: check
    validate_rows:
      input: { file: "in/v.csv" }
      rules: [ { unique: [a] } ]
"#,
    );
    let s = run(&env, p, "").await;
    assert_eq!(task_rows(&s, "check"), (3, 3));
}

/// Key rules (`exists_in`, `unique`) and row rules keep their order: a row
/// gets the first rule it fails, whichever kind. Rows are told apart by file
/// and line, so the same line of two files gets its own verdict, and two
/// `exists_in` rules never see each other's keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rules_and_row_rules_keep_their_order_per_file_and_line() {
    let env = env().await;
    for (path, text) in [
        ("in/keys.csv", "k\nK1\nK2\n"),
        ("in/as.csv", "a\n1\n2\n3\n4\n"),
        (
            "in/a.csv",
            "a,k,c\n1,K1,ok\n1,K1,ok\n2,ZZ,\n3,K1,\n3,ZZ,ok\n2,K2,\n4,K2,ok\n",
        ),
        ("in/b.csv", "a,k,c\n1,K1,ok\n9,K2,ok\n4,ZZ,ok\n"),
    ] {
        raw_file(&env, path, text).await;
    }
    let p = pipeline(
        "keys",
        r#"
id: keys
tasks:
  - id: both
    sql:
      inputs: { a: { file: "in/a.csv" }, b: { file: "in/b.csv" } }
      query: SELECT * FROM a UNION ALL SELECT * FROM b
  - id: check
    depends_on: [both]
    validate_rows:
      input: { task: both }
      rules:
        - name: known
          exists_in: { column: k, file: "in/keys.csv" }
        - not_null: [c]
        - name: dup
          unique: [a]
        - name: known_a
          exists_in: { column: a, file: "in/as.csv" }
"#,
    );
    let s = run(&env, p, "").await;
    assert_eq!(task_rows(&s, "check"), (10, 2));
    let rows = rejected_rows(
        &env,
        "keys",
        &s.run.run_id,
        "check",
        "SELECT regexp_replace(_source_file, '.*/', '') || ':' || CAST(_source_line AS VARCHAR), \
         _reject_rule, _reject_reason FROM bad ORDER BY _source_file, _source_line",
    )
    .await;
    assert_eq!(
        rows,
        [
            "a.csv:3 / dup / duplicate a: 1 (first at line 2)",
            "a.csv:4 / known / k 'ZZ' not found in file in/keys.csv",
            "a.csv:5 / not_null_c / required value missing: c",
            "a.csv:6 / known / k 'ZZ' not found in file in/keys.csv",
            "a.csv:7 / not_null_c / required value missing: c",
            "b.csv:2 / dup / duplicate a: 1 (first at line 2)",
            "b.csv:3 / known_a / a '9' not found in file in/as.csv",
            "b.csv:4 / known / k 'ZZ' not found in file in/keys.csv",
        ]
    );
    // Staged rows carry their file as a dictionary; a kept file holds text.
    let types = rejected_rows(
        &env,
        "keys",
        &s.run.run_id,
        "check",
        "SELECT DISTINCT arrow_typeof(_source_file) FROM bad",
    )
    .await;
    assert_eq!(types.len(), 1);
    assert!(!types[0].starts_with("Dictionary"), "{types:?}");
}

/// An SQL output may repeat a source line (a join fans rows out): a row
/// check over it stages its accepted rows rather than reading the SQL output
/// without the rejected lines, which would drop the passing twin too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_over_repeated_source_lines_keeps_every_passing_row() {
    let env = env().await;
    let p = pipeline(
        "fanout",
        r#"
id: fanout
tasks:
  - id: rows
    sql:
      materialize: true
      query: "SELECT * FROM (VALUES (1, 'f', 7), (-1, 'f', 7), (2, 'f', 8), (20, 'f', 8)) AS t(v, _source_file, _source_line)"
  - id: check
    depends_on: [rows]
    validate_rows:
      input: { task: rows }
      rules:
        - range: { column: v, min: 0 }
  # Its input copied rows that repeat a line: it must copy too.
  - id: check_again
    depends_on: [check]
    validate_rows:
      input: { task: check }
      rules:
        - range: { column: v, max: 10 }
  - id: write
    depends_on: [check_again]
    write: { input: check_again, table: demo.fanout, mode: append }
"#,
    );
    let s = run(&env, p, "").await;
    assert_eq!(s.run.state, RunState::Success, "{:?}", s.run.error);
    let rows = |id: &str| {
        let t = s.tasks.iter().find(|t| t.task_id == id).unwrap();
        (t.rows.rows_out, t.rows.rows_rejected)
    };
    assert_eq!(rows("check"), (3, 1));
    assert_eq!(rows("check_again"), (2, 1));
    assert_eq!(
        count(&env, "SELECT count(*) FROM demo.fanout WHERE v IN (1, 2)").await,
        2
    );
    assert_eq!(count(&env, "SELECT count(*) FROM demo.fanout").await, 2);
}
