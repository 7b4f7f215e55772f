#!/usr/bin/env bash
# bench/scheduler.sh — the scheduler benchmark in one command (issue #4):
#   (a) task end → successor start over a chain of 100 no-op tasks, median and p99;
#   (b) file arrival → run start, with notifications and with the listing fallback;
#   (c) task instances per second through the state store;
# each on SQLite and on PostgreSQL, through a real `gridata serve`.
#
#   bench/scheduler.sh
#
# Builds gridata and the gridata-state `throughput` example with the `fast` profile (skipped
# when GRIDATA_BIN and GRIDATA_THROUGHPUT_BIN are set). PostgreSQL: uses GRIDATA_TEST_PG_URL when
# set; otherwise starts it through `GRIDATA_TEST_ONLY_SERVICES=1 scripts/test.sh` (Debian's
# package, on loopback) for the duration of the benchmark.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gridata/target}"
if [[ -d "$HOME/.cargo/bin" && ":$PATH:" != *":$HOME/.cargo/bin:"* ]]; then
    PATH="$HOME/.cargo/bin:$PATH"
fi

if [[ -z "${GRIDATA_BIN:-}" || -z "${GRIDATA_THROUGHPUT_BIN:-}" ]]; then
    echo "[scheduler.sh] cargo build --profile fast -p gridata-cli; --example throughput" >&2
    cargo build --profile fast -p gridata-cli >&2
    cargo build --profile fast -p gridata-state --example throughput >&2
    export GRIDATA_BIN="$CARGO_TARGET_DIR/fast/gridata"
    export GRIDATA_THROUGHPUT_BIN="$CARGO_TARGET_DIR/fast/examples/throughput"
fi

run() {
    python3 "$REPO_ROOT/bench/scheduler_bench.py" --bin "$GRIDATA_BIN" \
        --throughput "$GRIDATA_THROUGHPUT_BIN" "$@"
}

if [[ -n "${GRIDATA_TEST_PG_URL:-}" ]]; then
    run --pg-url "$GRIDATA_TEST_PG_URL"
else
    export -f run
    export REPO_ROOT
    GRIDATA_TEST_ONLY_SERVICES=1 scripts/test.sh bash -c 'run --pg-url "$GRIDATA_TEST_PG_URL"'
fi
