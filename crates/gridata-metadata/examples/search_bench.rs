//! Search latency over a registry of synthetic datasets (issue #5 target:
//! under 50 ms at 10,000 datasets).
//!
//! cargo run --profile fast -p gridata-metadata --example search_bench -- [datasets]

use std::time::Instant;

use gridata_metadata::search::{Filters, Index};
use gridata_state::{ColumnInfo, DatasetRecord};

const WORDS: &[&str] = &[
    "orders",
    "customers",
    "payments",
    "refunds",
    "sessions",
    "events",
    "inventory",
    "shipments",
    "invoices",
    "products",
    "campaigns",
    "leads",
    "tickets",
    "devices",
    "sensors",
    "accounts",
];
const COLS: &[&str] = &[
    "id",
    "customer_id",
    "email",
    "amount",
    "status",
    "created_at",
    "country",
    "phone",
    "sku",
    "quantity",
    "total",
    "currency",
    "ip_address",
    "device",
    "score",
    "region",
];

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let records: Vec<DatasetRecord> = (0..n)
        .map(|i| {
            let w = WORDS[i % WORDS.len()];
            let ns = ["sales", "marketing", "ops", "finance", "support"][i % 5];
            DatasetRecord {
                name: format!("{ns}.{w}_{i}"),
                namespace: ns.into(),
                description: Some(format!("{w} of the {ns} team, version {}", i % 97)),
                owners: vec![format!("{ns}-team@example.com")],
                tags: vec![["gold", "silver", "bronze"][i % 3].into()],
                domain: Some(ns.into()),
                glossary_terms: vec![],
                columns: (0..12)
                    .map(|c| {
                        let name = COLS[(i + c) % COLS.len()];
                        ColumnInfo {
                            name: name.into(),
                            ty: "string".into(),
                            description: None,
                            pii: (name == "email" || name == "phone").then(|| name.to_string()),
                            pii_confidence: None,
                            masking: None,
                        }
                    })
                    .collect(),
                row_count: Some(i as u64),
                snapshot_id: None,
                size_bytes: None,
                quality: None,
                pipeline: None,
                updated_ms: 0,
            }
        })
        .collect();
    let built = Instant::now();
    let index = Index::new(records);
    let build_ms = built.elapsed().as_secs_f64() * 1000.0;
    let queries: Vec<(&str, Filters)> = vec![
        ("orders", Filters::default()),
        ("customer email", Filters::default()),
        ("payments gold", Filters::default()),
        (
            "",
            Filters {
                pii: Some(true),
                ..Default::default()
            },
        ),
        (
            "sessions",
            Filters {
                namespace: Some("ops".into()),
                ..Default::default()
            },
        ),
        (
            "amount",
            Filters {
                tag: Some("gold".into()),
                ..Default::default()
            },
        ),
        ("nothingmatches", Filters::default()),
    ];
    let mut times = Vec::new();
    for _ in 0..30 {
        for (q, f) in &queries {
            let t = Instant::now();
            let r = index.search(q, f, 20, 0);
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            std::hint::black_box(r);
        }
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    println!(
        "{{\"datasets\": {n}, \"index_build_ms\": {build_ms:.1}, \"queries\": {}, \"p50_ms\": {:.2}, \"p99_ms\": {:.2}, \"max_ms\": {:.2}}}",
        times.len(),
        pct(0.5),
        pct(0.99),
        times[times.len() - 1]
    );
}
