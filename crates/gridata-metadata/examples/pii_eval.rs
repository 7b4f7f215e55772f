//! Precision and recall of PII detection on a labelled fixture.
//!
//! cargo run -p gridata-metadata --example pii_eval -- bench/pii/fixture.json

use gridata_metadata::pii::{Labelled, evaluate};

#[derive(serde::Deserialize)]
struct Fixture {
    columns: Vec<Labelled>,
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "bench/pii/fixture.json".into());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let f: Fixture = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let pii = f.columns.iter().filter(|c| c.label.is_some()).count();
    let e = evaluate(&f.columns);
    println!(
        "{} columns ({pii} PII, {} not): precision {:.3}, recall {:.3} (targets ≥ 0.95)",
        f.columns.len(),
        f.columns.len() - pii,
        e.precision,
        e.recall
    );
    for (name, want, got) in &e.mistakes {
        println!("  {name}: expected {want:?}, got {got:?}");
    }
}
