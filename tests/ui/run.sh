#!/usr/bin/env bash
# The web UI's end-to-end test in headless Chromium (tests/ui/e2e.mjs).
#
# Prepares a home: the e-commerce data for one day, the five shipped
# pipelines run once (so that customer_360 and its lineage exist), an admin
# and a viewer token; starts `gridata serve`; runs e2e.mjs with Node.
# Screenshots land in $GRIDATA_UI_SHOTS (default: a folder under the run's
# temp dir, printed at the end).
#
# Needs: GRIDATA_BIN; Debian's chromium; playwright-core from npm in
# $GRIDATA_TOOLS/node. scripts/test.sh installs both; by hand:
#   apt-get install chromium && npm --prefix ~/.cache/gridata/tools/node install playwright-core@1.64.1
#   GRIDATA_BIN=~/.cache/gridata/target/debug/gridata tests/ui/run.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN=${GRIDATA_BIN:?set GRIDATA_BIN to the gridata binary (scripts/test.sh does)}
TOOLS=${GRIDATA_TOOLS:-$HOME/.cache/gridata/tools}
NODE_DIR="$TOOLS/node"
CHROMIUM=${GRIDATA_CHROMIUM:-/usr/bin/chromium}
[[ -x "$CHROMIUM" ]] || { echo "ui/run.sh: $CHROMIUM not found; install Debian's chromium (scripts/test.sh does)" >&2; exit 1; }
[[ -d "$NODE_DIR/node_modules/playwright-core" ]] || {
    echo "ui/run.sh: playwright-core is not installed in $NODE_DIR; run: npm --prefix $NODE_DIR install playwright-core@1.64.1 (scripts/test.sh does)" >&2
    exit 1
}

WORK=$(mktemp -d)
SHOTS=${GRIDATA_UI_SHOTS:-$WORK/shots}
SERVE_PID=
cleanup() {
    local status=$?
    if [[ -n "$SERVE_PID" ]]; then
        kill "$SERVE_PID" 2>/dev/null || true
        wait "$SERVE_PID" 2>/dev/null || true
    fi
    if [[ $status -ne 0 && -f "$WORK/serve.log" ]]; then
        echo "--- gridata serve log (last 40 lines) ---" >&2
        tail -40 "$WORK/serve.log" >&2
    fi
    exit "$status"
}
trap cleanup EXIT

H="$WORK/home"
DAY=2026-11-20
g() { "$BIN" --home "$H" "$@"; }
g init >/dev/null
g generate ecommerce --orders 600 --days 1 --start "$DAY" >/dev/null 2>&1
for p in ecommerce_customers ecommerce_products ecommerce_clickstream ecommerce_orders ecommerce_customer_360; do
    g run "$p" -p "date=$DAY" --json >/dev/null
done
ADMIN=$(g token create --role admin --name ui-admin 2>/dev/null)
VIEWER=$(g token create --role viewer --name ui-viewer 2>/dev/null)

# shellcheck source=../lib/serve.sh
source "$HERE/../lib/serve.sh"
start_serve ui/run.sh --no-watch --tick-ms 200

# ES modules resolve packages from the script's folder: run a copy beside
# a link to the tools' node_modules.
cp "$HERE/e2e.mjs" "$WORK/e2e.mjs"
ln -s "$NODE_DIR/node_modules" "$WORK/node_modules"
GRIDATA_UI_BASE="$BASE" GRIDATA_UI_ADMIN_TOKEN="$ADMIN" GRIDATA_UI_VIEWER_TOKEN="$VIEWER" \
    GRIDATA_UI_SHOTS="$SHOTS" GRIDATA_UI_DAY="$DAY" GRIDATA_CHROMIUM="$CHROMIUM" \
    node "$WORK/e2e.mjs"
echo "ui/run.sh: screenshots in $SHOTS"
