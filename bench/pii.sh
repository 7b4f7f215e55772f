#!/usr/bin/env bash
# bench/pii.sh — precision and recall of PII detection on two labelled sets:
#   bench/pii/fixture.json  66 columns, written with the classifier (development set);
#   bench/pii/holdout.json  80 columns, written independently, without seeing the classifier.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gridata/target}"
for f in fixture holdout; do
    printf '%-8s ' "$f"
    cargo run -q -p gridata-metadata --example pii_eval -- "bench/pii/$f.json"
done
