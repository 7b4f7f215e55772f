#!/usr/bin/env bash
# scripts/test.sh — the README test command: runs every Gridata test.
#
# Works on a fresh Debian 12 machine (as root) and is quick on re-runs:
#   * installs what the tests need, idempotently: PostgreSQL (Debian), mold
#     (opt-in, GRIDATA_USE_MOLD=1), and a Python venv with PyIceberg, moto, pytest
#     and DuckDB (from scripts/requirements-test.txt, cached by a stamp file);
#   * starts PostgreSQL 15 and a moto S3 server on 127.0.0.1, creates the
#     `gridata-test` bucket, and stops both on exit;
#   * runs, failing fast: cargo fmt --check, cargo clippy -D warnings,
#     cargo test --workspace -- --include-ignored (doc-tests without it),
#     cargo build -p gridata-cli,
#     the PyIceberg and OpenLineage interop tests (pytest tests/interop), the
#     API contract (tests/api/contract.sh: schemathesis on /api/v1, promtool
#     on /metrics), and the web UI end to end (tests/ui/run.sh: Debian's
#     chromium driven by playwright-core from npm).
#
# Environment knobs:
#   CARGO_TARGET_DIR           default $HOME/.cache/gridata/target (outside the clone,
#                              so CI and developers reuse builds)
#   GRIDATA_TOOLS              default $HOME/.cache/gridata/tools (venv lives here)
#   GRIDATA_USE_MOLD=1         link with mold (installs it); off by default because a
#                              RUSTFLAGS change rebuilds every dependency
#   GRIDATA_TEST_ONLY_SERVICES=1
#                              only install + start the services, check them, and
#                              then run "$@" (if given) with the test environment
#                              exported; e.g.
#                                GRIDATA_TEST_ONLY_SERVICES=1 scripts/test.sh \
#                                  cargo test -p gridata-lake -- --include-ignored
#
# Exported to the tests: GRIDATA_TEST_PG_URL, GRIDATA_TEST_S3_ENDPOINT,
# GRIDATA_TEST_S3_BUCKET, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
# GRIDATA_PYTHON (the venv's python) and, for pytest, GRIDATA_BIN.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

export DEBIAN_FRONTEND=noninteractive
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gridata/target}"
GRIDATA_TOOLS="${GRIDATA_TOOLS:-$HOME/.cache/gridata/tools}"
VENV="$GRIDATA_TOOLS/venv"
REQUIREMENTS="$REPO_ROOT/scripts/requirements-test.txt"
ONLY_SERVICES="${GRIDATA_TEST_ONLY_SERVICES:-0}"

PG_DB=gridata_test
PG_USER=tester
PG_PASSWORD=tester
S3_BUCKET=gridata-test

# rustup's cargo may not be on PATH in a bare CI shell.
if [[ -d "$HOME/.cargo/bin" && ":$PATH:" != *":$HOME/.cargo/bin:"* ]]; then
    PATH="$HOME/.cargo/bin:$PATH"
fi

START_TIME=$SECONDS
STEP="setup"
RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/gridata-test.XXXXXX")"
MOTO_PID=""
PG_STARTED_CLUSTER=""   # "VERSION main" when this script started the cluster
SUMMARY_DONE=0

log() { printf '[test.sh %4ss] %s\n' "$((SECONDS - START_TIME))" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        die "need root (or passwordless sudo) to run: $*"
    fi
}

# ---------------------------------------------------------------------------
# cleanup
# ---------------------------------------------------------------------------
stop_services() {
    if [[ -n "$MOTO_PID" ]]; then
        kill "$MOTO_PID" 2>/dev/null || true
        wait "$MOTO_PID" 2>/dev/null || true
        MOTO_PID=""
        log "stopped moto"
    fi
    if [[ -n "$PG_STARTED_CLUSTER" ]]; then
        # shellcheck disable=SC2086  # "VERSION main" is two words on purpose
        as_root pg_ctlcluster $PG_STARTED_CLUSTER stop >/dev/null 2>&1 || true
        log "stopped PostgreSQL $PG_STARTED_CLUSTER"
        PG_STARTED_CLUSTER=""
    fi
}

on_exit() {
    local rc=$?
    set +e
    stop_services
    if [[ $rc -ne 0 ]]; then
        if [[ -s "$RUN_DIR/moto.log" && "$STEP" == "services" ]]; then
            log "moto log (last 20 lines):"
            tail -n 20 "$RUN_DIR/moto.log" >&2
        fi
        if [[ $SUMMARY_DONE -eq 0 ]]; then
            echo "test.sh: FAILED during '$STEP' (exit $rc) after $((SECONDS - START_TIME))s"
        fi
    fi
    rm -rf "$RUN_DIR"
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------
# apt: update only when needed
# ---------------------------------------------------------------------------
APT_UPDATED=0
apt_update() {
    [[ $APT_UPDATED -eq 1 ]] && return 0
    log "apt-get update"
    as_root apt-get update -qq
    APT_UPDATED=1
}

pkg_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

# apt_install PKG... — installs the packages that are missing.
apt_install() {
    local missing=() p
    for p in "$@"; do
        pkg_installed "$p" || missing+=("$p")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    # A fresh machine may have empty package lists: refresh them only if apt
    # doesn't know one of the packages.
    for p in "${missing[@]}"; do
        if ! apt-cache show "$p" >/dev/null 2>&1; then
            apt_update
            break
        fi
    done
    log "apt-get install ${missing[*]}"
    if ! as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$RUN_DIR/apt.log" 2>&1; then
        # Stale lists (a superseded .deb gives 404): refresh once and retry.
        if [[ $APT_UPDATED -eq 1 ]]; then
            cat "$RUN_DIR/apt.log" >&2
            return 1
        fi
        apt_update
        as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$RUN_DIR/apt.log" 2>&1 \
            || { cat "$RUN_DIR/apt.log" >&2; return 1; }
    fi
}

# ---------------------------------------------------------------------------
# tools: Chromium and playwright-core for the UI test
# ---------------------------------------------------------------------------
PLAYWRIGHT_VERSION=1.64.1
setup_ui_tools() {
    [[ -x /usr/bin/chromium ]] || apt_install chromium
    command -v node >/dev/null || apt_install nodejs npm
    local dir="$GRIDATA_TOOLS/node"
    if [[ ! -f "$dir/node_modules/playwright-core/package.json" ]] \
        || ! grep -q "\"version\": \"$PLAYWRIGHT_VERSION\"" "$dir/node_modules/playwright-core/package.json"; then
        log "npm install playwright-core@$PLAYWRIGHT_VERSION (into $dir)"
        mkdir -p "$dir"
        npm --prefix "$dir" install --no-audit --no-fund --silent "playwright-core@$PLAYWRIGHT_VERSION" >"$RUN_DIR/npm.log" 2>&1 \
            || { cat "$RUN_DIR/npm.log" >&2; return 1; }
    fi
}

# ---------------------------------------------------------------------------
# tools: mold, Python venv
# ---------------------------------------------------------------------------
setup_linker() {
    # Opt-in: RUSTFLAGS are part of cargo's fingerprint, so switching linkers
    # rebuilds every dependency; the cached target dir is built without it.
    [[ "${GRIDATA_USE_MOLD:-0}" == 1 ]] || return 0
    # Optional: any failure falls back silently to the default linker.
    if ! command -v mold >/dev/null 2>&1; then
        ( apt_install mold ) >/dev/null 2>&1 || true
    fi
    command -v mold >/dev/null 2>&1 || return 0
    printf 'int main(void) { return 0; }\n' >"$RUN_DIR/mold-check.c"
    if gcc -fuse-ld=mold "$RUN_DIR/mold-check.c" -o "$RUN_DIR/mold-check" >/dev/null 2>&1 \
        && "$RUN_DIR/mold-check"; then
        case " ${RUSTFLAGS:-} " in
            *"-fuse-ld=mold"*) ;;
            *) export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C link-arg=-fuse-ld=mold" ;;
        esac
        log "linking with mold (RUSTFLAGS=$RUSTFLAGS)"
    fi
}

requirements_key() {
    # Key on the requirements file and the interpreter the venv was made from.
    { cat "$REQUIREMENTS"; "$VENV/bin/python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1
}

make_venv() {
    local bootstrap="${GRIDATA_BOOTSTRAP_PYTHON:-python3}"
    if command -v "$bootstrap" >/dev/null 2>&1 && "$bootstrap" -m venv "$VENV" >"$RUN_DIR/venv.log" 2>&1; then
        return 0
    fi
    # Debian's python3 needs python3-venv for ensurepip.
    rm -rf "$VENV"
    apt_install python3 python3-venv
    /usr/bin/python3 -m venv "$VENV"
}

setup_venv() {
    mkdir -p "$GRIDATA_TOOLS"
    exec 9>"$GRIDATA_TOOLS/.install.lock"
    flock 9 # another test.sh run may be installing right now

    if [[ -d "$VENV" ]] && ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
        log "venv at $VENV is broken (its interpreter is gone): recreating"
        rm -rf "$VENV"
    fi
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating venv $VENV"
        make_venv
    fi
    local stamp="$VENV/.gridata-requirements.sha256" key
    key="$(requirements_key)"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$key" ]]; then
        log "venv up to date ($VENV)"
    else
        log "pip install -r scripts/requirements-test.txt (into $VENV)"
        rm -f "$stamp"
        "$VENV/bin/python" -m pip install -q --no-input --disable-pip-version-check -r "$REQUIREMENTS"
        echo "$key" >"$stamp"
    fi
    flock -u 9
    exec 9>&-
    export GRIDATA_PYTHON="$VENV/bin/python"
    export PATH="$VENV/bin:$PATH" # python, pytest, moto_server for the steps below
}

# ---------------------------------------------------------------------------
# services
# ---------------------------------------------------------------------------
start_postgres() {
    apt_install postgresql
    local ver line port status
    ver="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)"
    [[ -n "$ver" ]] || die "no PostgreSQL server under /usr/lib/postgresql"
    if ! pg_lsclusters -h | awk -v v="$ver" '$1 == v && $2 == "main" { found = 1 } END { exit !found }'; then
        log "pg_createcluster $ver main"
        as_root pg_createcluster "$ver" main >/dev/null
    fi
    line="$(pg_lsclusters -h | awk -v v="$ver" '$1 == v && $2 == "main"')"
    port="$(awk '{ print $3 }' <<<"$line")"
    status="$(awk '{ print $4 }' <<<"$line")"
    if [[ "$status" != online* ]]; then
        log "starting PostgreSQL $ver main on port $port"
        as_root pg_ctlcluster "$ver" main start
        PG_STARTED_CLUSTER="$ver main"
    else
        log "PostgreSQL $ver main already running on port $port (left running on exit)"
    fi
    local i
    for i in $(seq 1 60); do
        pg_isready -q -h 127.0.0.1 -p "$port" && break
        [[ $i -eq 60 ]] && die "PostgreSQL did not accept connections on 127.0.0.1:$port"
        sleep 0.5
    done
    # Role and a fresh, empty database for every run.
    ( cd / && as_root runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$port" -d postgres \
        -c "SET client_min_messages TO warning" \
        -c "DO \$\$ BEGIN
              IF EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') THEN
                ALTER ROLE $PG_USER LOGIN SUPERUSER PASSWORD '$PG_PASSWORD';
              ELSE
                CREATE ROLE $PG_USER LOGIN SUPERUSER PASSWORD '$PG_PASSWORD';
              END IF;
            END \$\$;" \
        -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" \
        -c "CREATE DATABASE $PG_DB OWNER $PG_USER" )
    export GRIDATA_TEST_PG_URL="postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$port/$PG_DB"
}

free_port() {
    "$VENV/bin/python" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

start_moto() {
    local attempt port i
    for attempt in 1 2 3; do
        port="$(free_port)"
        "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$RUN_DIR/moto.log" 2>&1 &
        MOTO_PID=$!
        for i in $(seq 1 100); do
            if ! kill -0 "$MOTO_PID" 2>/dev/null; then
                wait "$MOTO_PID" 2>/dev/null || true
                MOTO_PID=""
                break # died (port taken?): try another port
            fi
            if "$VENV/bin/python" -c 'import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()' "$port" 2>/dev/null; then
                break 2
            fi
            sleep 0.2
        done
        if [[ -n "$MOTO_PID" ]]; then
            kill "$MOTO_PID" 2>/dev/null || true
            wait "$MOTO_PID" 2>/dev/null || true
            MOTO_PID=""
        fi
        log "moto did not come up on port $port (attempt $attempt)"
    done
    [[ -n "$MOTO_PID" ]] || die "could not start moto_server"
    export GRIDATA_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
    export GRIDATA_TEST_S3_BUCKET="$S3_BUCKET"
    export AWS_ACCESS_KEY_ID=testing
    export AWS_SECRET_ACCESS_KEY=testing
    export AWS_REGION=us-east-1
    export AWS_DEFAULT_REGION=us-east-1
    # Keep the SDKs away from instance metadata and any user config.
    export AWS_EC2_METADATA_DISABLED=true
    export AWS_CONFIG_FILE=/dev/null
    export AWS_SHARED_CREDENTIALS_FILE=/dev/null
    "$VENV/bin/python" - <<'EOF'
import os
import boto3
s3 = boto3.client("s3", endpoint_url=os.environ["GRIDATA_TEST_S3_ENDPOINT"])
s3.create_bucket(Bucket=os.environ["GRIDATA_TEST_S3_BUCKET"])
EOF
    log "moto S3 on $GRIDATA_TEST_S3_ENDPOINT (pid $MOTO_PID), bucket $S3_BUCKET"
}

# Proves both services answer the way the tests will use them.
check_services() {
    "$VENV/bin/python" - <<'EOF'
import os
import boto3
import psycopg2

with psycopg2.connect(os.environ["GRIDATA_TEST_PG_URL"]) as conn, conn.cursor() as cur:
    cur.execute("SELECT current_user, current_database(), split_part(version(), ' ', 2)")
    user, db, version = cur.fetchone()
    assert (user, db) == ("tester", "gridata_test"), (user, db)
conn.close()

s3 = boto3.client("s3", endpoint_url=os.environ["GRIDATA_TEST_S3_ENDPOINT"])
bucket = os.environ["GRIDATA_TEST_S3_BUCKET"]
s3.put_object(Bucket=bucket, Key="_check/hello.txt", Body=b"hello")
assert s3.get_object(Bucket=bucket, Key="_check/hello.txt")["Body"].read() == b"hello"
s3.delete_object(Bucket=bucket, Key="_check/hello.txt")
print(f"services ok: PostgreSQL {version} ({user}@{db}), S3 bucket {bucket}")
EOF
}

# ---------------------------------------------------------------------------
# steps
# ---------------------------------------------------------------------------
step() {
    STEP="$1"
    shift
    local t0=$SECONDS
    log "== $STEP: $*"
    "$@"
    log "== $STEP ok ($((SECONDS - t0))s)"
}

# Services are up, so the #[ignore]d tests that need them run too
# (`cargo test --workspace -- --include-ignored`). Doc-tests run in a second,
# plain pass: under --include-ignored rustdoc would compile and run the
# ```ignore examples in doc comments as well, which are not meant to build.
cargo_test() {
    log "cargo test --workspace --lib --bins --tests -- --include-ignored"
    cargo test --workspace --lib --bins --tests -- --include-ignored 2>&1 | tee "$RUN_DIR/cargo-test.log"
    log "cargo test --workspace --doc"
    cargo test --workspace --doc 2>&1 | tee -a "$RUN_DIR/cargo-test.log"
}

# Sums the "test result:" lines of cargo test.
cargo_counts() {
    awk '/^test result:/ {
            for (i = 1; i <= NF; i++) {
                if ($(i+1) ~ /^passed/) p += $i
                if ($(i+1) ~ /^failed/) f += $i
                if ($(i+1) ~ /^ignored/) s += $i
            }
         }
         END { printf "%d %d %d\n", p, f, s }' "$1"
}

# Reads pytest's junit XML: prints "passed failed skipped".
pytest_counts() {
    "$VENV/bin/python" - "$1" <<'EOF'
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
tests = failed = skipped = 0
for s in suites:
    tests += int(s.get("tests", 0))
    failed += int(s.get("failures", 0)) + int(s.get("errors", 0))
    skipped += int(s.get("skipped", 0))
print(tests - failed - skipped, failed, skipped)
EOF
}

main() {
    log "repo $REPO_ROOT; CARGO_TARGET_DIR=$CARGO_TARGET_DIR; tools $GRIDATA_TOOLS"

    STEP="services"
    setup_venv
    start_postgres
    start_moto
    check_services
    log "GRIDATA_TEST_PG_URL=$GRIDATA_TEST_PG_URL"
    log "GRIDATA_TEST_S3_ENDPOINT=$GRIDATA_TEST_S3_ENDPOINT GRIDATA_TEST_S3_BUCKET=$GRIDATA_TEST_S3_BUCKET"
    log "GRIDATA_PYTHON=$GRIDATA_PYTHON"

    if [[ "$ONLY_SERVICES" == 1 ]]; then
        if [[ $# -gt 0 ]]; then
            step "command" "$@"
        fi
        stop_services
        SUMMARY_DONE=1
        echo "test.sh: services only (GRIDATA_TEST_ONLY_SERVICES=1): PostgreSQL, moto S3 and the venv are working; no tests run; $((SECONDS - START_TIME))s"
        return 0
    fi
    [[ $# -eq 0 ]] || die "arguments are only accepted with GRIDATA_TEST_ONLY_SERVICES=1"

    STEP="linker"
    setup_linker

    step "cargo fmt" cargo fmt --all -- --check
    step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
    step "cargo test" cargo_test
    step "cargo build" cargo build -p gridata-cli

    export GRIDATA_BIN="$CARGO_TARGET_DIR/debug/gridata"
    [[ -x "$GRIDATA_BIN" ]] || die "cargo build did not produce $GRIDATA_BIN"
    step "interop tests" "$VENV/bin/python" -m pytest -q tests/interop --junitxml="$RUN_DIR/interop.xml"
    # promtool comes with Debian's prometheus package (its server is not started).
    command -v promtool >/dev/null || apt_install prometheus
    step "api contract" tests/api/contract.sh
    STEP="ui tools"
    setup_ui_tools
    step "ui e2e" tests/ui/run.sh

    local cp cf cs pp pf ps
    read -r cp cf cs < <(cargo_counts "$RUN_DIR/cargo-test.log")
    read -r pp pf ps < <(pytest_counts "$RUN_DIR/interop.xml")
    STEP="summary"
    stop_services # before the summary, so that it is the last thing printed
    SUMMARY_DONE=1
    echo "test.sh: fmt ok, clippy ok, cargo test $cp passed ($cs ignored), interop $pp passed ($ps skipped), api contract ok, ui e2e ok; $((SECONDS - START_TIME))s"
    if [[ $((cs + ps)) -gt 0 ]]; then
        echo "summary: $((cp + pp + 2)) passed, $((cf + pf)) failed, $((cs + ps)) skipped"
    else
        echo "summary: $((cp + pp + 2)) passed, $((cf + pf)) failed"
    fi
}

main "$@"
