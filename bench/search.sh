#!/usr/bin/env bash
# bench/search.sh — dataset search latency over 10,000 registered datasets
# (target: under 50 ms). Builds the example with the `fast` profile.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gridata/target}"
# Selecting gridata-cli too unifies features as in the binary, so the fast
# build of the dependencies is reused.
cargo build -q --profile fast -p gridata-cli -p gridata-metadata --example search_bench
"$CARGO_TARGET_DIR/fast/examples/search_bench" "${1:-10000}"
