//! The orders pipeline under a memory limit, in a process of its own (the
//! limit is process-wide). Joins past the broadcast threshold (65k rows
//! under this limit) sort and merge, every operator is capped at 16 MiB,
//! and the run must still conserve every row.

mod common;

use common::*;
use gridata_state::RunState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orders_pipeline_conserves_rows_under_a_memory_limit() {
    gridata_engine::set_memory_limit(Some(128 << 20));
    let env = env().await;
    // Under a limit, spills are LZ4 and strings stay Utf8 (decision 0010).
    let engine = gridata_engine::Engine::new(env.lake.clone()).await.unwrap();
    let opts = engine.context().state().config_options().clone();
    assert_eq!(
        opts.execution.spill_compression,
        gridata_engine::datafusion::common::config::SpillCompression::Lz4Frame
    );
    assert!(!opts.execution.parquet.schema_force_view_types);
    // 100k orders and about 200k items: the order keys are past the
    // broadcast threshold, so the key rules and transforms sort and merge.
    generate(&env, 100_000, 1, 0.02).await;
    for id in ["ecommerce_customers", "ecommerce_products"] {
        let s = run(&env, shipped_pipeline(id), "2026-11-19").await;
        assert_eq!(s.run.state, RunState::Success, "{id}: {:?}", s.run.error);
    }
    let s = run(&env, shipped_pipeline("ecommerce_orders"), "2026-11-19").await;
    assert_eq!(s.run.state, RunState::Success, "{:?}", s.run.error);
    assert_eq!(s.files.len(), 2, "{:?}", s.files);
    for f in &s.files {
        assert_eq!(f.rows_read, f.rows_written + f.rows_rejected, "{f:?}");
        assert!(f.rows_rejected > 0, "defects are quarantined: {f:?}");
    }
    let rejected: u64 = s.files.iter().map(|f| f.rows_rejected).sum();
    assert_eq!(
        quarantined_rows(&env, "ecommerce_orders", &s.run.run_id).await as u64,
        rejected
    );
    let written = |name: &str| -> i64 {
        s.files
            .iter()
            .filter(|f| f.source_file.ends_with(name))
            .map(|f| f.rows_written as i64)
            .sum()
    };
    assert_eq!(
        count(
            &env,
            "SELECT count(DISTINCT order_id) FROM ecommerce.orders"
        )
        .await,
        written("/orders.csv")
    );
    assert_eq!(
        count(&env, "SELECT count(*) FROM ecommerce.order_items").await,
        written("/order_items.csv")
    );
    // Every written item belongs to a written order, whose subtotal is the
    // sum of its lines.
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM ecommerce.order_items i \
             LEFT JOIN ecommerce.orders o ON i.order_id = o.order_id WHERE o.order_id IS NULL"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM ecommerce.orders o JOIN (SELECT order_id, \
             sum(CAST(quantity AS BIGINT) * unit_price) AS s FROM ecommerce.order_items \
             GROUP BY order_id) l ON o.order_id = l.order_id WHERE o.items_subtotal <> l.s"
        )
        .await,
        0
    );
}
