#!/usr/bin/env bash
# bench/run.sh — the lakehouse-core benchmark in one command.
#
#   bench/run.sh [--rows N] [other bench/lakehouse.py options]     (default: 10,000,000 rows)
#
# 1. builds gridata with `cargo build --profile fast -p gridata-cli`
#    (skipped when GRIDATA_BIN points at a binary);
# 2. makes sure a Python venv with DuckDB exists: reuses
#    ${GRIDATA_TOOLS:-$HOME/.cache/gridata/tools}/venv (the one scripts/test.sh makes),
#    creating it / pip-installing duckdb only when missing;
# 3. runs bench/lakehouse.py, which generates the data, runs gridata and DuckDB and
#    prints the report; JSON lands in bench/out/lakehouse-<timestamp>.json.
#
# Environment knobs:
#   GRIDATA_BIN         use this gridata binary instead of building one
#   CARGO_TARGET_DIR    default $HOME/.cache/gridata/target (binary: $CARGO_TARGET_DIR/fast/gridata)
#   GRIDATA_TOOLS       default $HOME/.cache/gridata/tools (venv lives here)
#   GRIDATA_BENCH_DIR   generated CSV + the benchmark's Gridata home
#                       (default $HOME/.cache/gridata/bench/lakehouse; needs ~2 GB at 10M rows)
#
# Run `bench/run.sh --help` for the benchmark's own options.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gridata/target}"
GRIDATA_TOOLS="${GRIDATA_TOOLS:-$HOME/.cache/gridata/tools}"
VENV="$GRIDATA_TOOLS/venv"
# Same DuckDB as scripts/requirements-test.txt, so the shared venv stays consistent.
DUCKDB_REQ="duckdb==1.5.5"

log() { printf '[run.sh] %s\n' "$*" >&2; }

if [[ -d "$HOME/.cargo/bin" && ":$PATH:" != *":$HOME/.cargo/bin:"* ]]; then
    PATH="$HOME/.cargo/bin:$PATH"
fi

for arg in "$@"; do
    if [[ "$arg" == "-h" || "$arg" == "--help" ]]; then
        exec python3 "$REPO_ROOT/bench/lakehouse.py" --help  # stdlib only; no build needed
    fi
done

# --- the binary --------------------------------------------------------------
if [[ -n "${GRIDATA_BIN:-}" ]]; then
    BIN="$GRIDATA_BIN"
    [[ -x "$BIN" ]] || { log "GRIDATA_BIN=$BIN is not an executable file"; exit 2; }
    log "using GRIDATA_BIN=$BIN (no build)"
else
    log "cargo build --profile fast -p gridata-cli (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    cargo build --profile fast -p gridata-cli
    BIN="$CARGO_TARGET_DIR/fast/gridata"
    [[ -x "$BIN" ]] || { log "build finished but $BIN is missing"; exit 2; }
fi

# --- the venv with DuckDB ----------------------------------------------------
mkdir -p "$GRIDATA_TOOLS"
(
    exec 9>"$GRIDATA_TOOLS/.install.lock"
    flock 9 # scripts/test.sh may be installing into the same venv right now
    if [[ -d "$VENV" ]] && ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
        log "venv at $VENV is broken: recreating"
        rm -rf "$VENV"
    fi
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating venv $VENV"
        python3 -m venv "$VENV"
    fi
    if ! "$VENV/bin/python" -c 'import duckdb' >/dev/null 2>&1; then
        log "pip install $DUCKDB_REQ (into $VENV)"
        "$VENV/bin/python" -m pip install -q --no-input --disable-pip-version-check "$DUCKDB_REQ"
    fi
)

# --- the benchmark -----------------------------------------------------------
exec "$VENV/bin/python" "$REPO_ROOT/bench/lakehouse.py" --bin "$BIN" "$@"
