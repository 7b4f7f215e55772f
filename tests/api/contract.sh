#!/usr/bin/env bash
# The API contract, checked against a live `gridata serve`:
#   * schemathesis (PyPI) fuzzes every operation of /api/v1/openapi.json and
#     fails on any server error or any response that breaks the schema
#     (DELETE /tokens/{id} is left out: it could revoke the fuzzer's own
#     token; the Rust access tests cover it);
#   * Prometheus's `promtool check metrics` (Debian package `prometheus`)
#     lints /metrics.
# Run by scripts/test.sh, which sets GRIDATA_BIN and GRIDATA_PYTHON and
# installs both tools. By hand:
#   GRIDATA_BIN=target/debug/gridata GRIDATA_PYTHON=$VENV/bin/python tests/api/contract.sh
set -euo pipefail

BIN=${GRIDATA_BIN:?set GRIDATA_BIN to the gridata binary (scripts/test.sh does)}
PY=${GRIDATA_PYTHON:?set GRIDATA_PYTHON to the venv python with schemathesis (scripts/test.sh does)}
ST="$(dirname "$PY")/schemathesis"
[[ -x "$ST" ]] || { echo "contract.sh: schemathesis is not installed in $(dirname "$PY"); run scripts/test.sh" >&2; exit 1; }
command -v promtool >/dev/null || { echo "contract.sh: promtool not found; scripts/test.sh installs Debian's prometheus package" >&2; exit 1; }

WORK=$(mktemp -d)
SERVE_PID=
cleanup() {
    local status=$?
    if [[ -n "$SERVE_PID" ]]; then
        kill "$SERVE_PID" 2>/dev/null || true
        wait "$SERVE_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
H="$WORK/home"
g() { "$BIN" --home "$H" "$@"; }

g init >/dev/null
g generate ecommerce --orders 300 --days 1 --start 2026-11-20 --no-clickstream >/dev/null 2>&1
g run ecommerce_customers -p date=2026-11-20 --json >/dev/null
TOKEN=$(g token create --role admin --name contract 2>/dev/null)
SCRAPE=$(g token create --role viewer --name prometheus 2>/dev/null)

# shellcheck source=../lib/serve.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/serve.sh"
start_serve contract.sh --no-watch

# From the scratch folder: schemathesis keeps a cache in the working directory.
(cd "$WORK" && "$ST" run "$BASE/api/v1/openapi.json" \
    --header "Authorization: Bearer $TOKEN" \
    --checks not_a_server_error,response_schema_conformance \
    --phases examples,coverage,fuzzing \
    --max-examples "${GRIDATA_SCHEMATHESIS_EXAMPLES:-25}" \
    --workers 1 \
    --suppress-health-check all \
    --seed 7 \
    --exclude-method DELETE \
    --no-color)

curl -sf -H "Authorization: Bearer $SCRAPE" "$BASE/metrics" >"$WORK/metrics.txt"
promtool check metrics <"$WORK/metrics.txt"
echo "contract.sh: promtool check metrics: ok ($(grep -c '^gridata_' "$WORK/metrics.txt") samples)"
