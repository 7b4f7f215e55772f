#!/usr/bin/env python3
"""Gridata lakehouse-core benchmark: CSV import, then scan / filter / group-by / join,
each compared with DuckDB over the very same Parquet files.

Normally started through bench/run.sh (which builds the binary and prepares the venv):

    bench/run.sh [--rows N]

Direct use (the venv's python, which has duckdb):

    python bench/lakehouse.py --bin path/to/gridata [--rows N] [--repeats 3] ...

What it does, in order:
  1. generates N order rows as several CSV files plus a 100k-row customers CSV with
     DuckDB (deterministic: every value is a hash of the row number), cached in the
     work directory and reused by later runs with the same parameters;
  2. creates a fresh Gridata home, the `bench` namespace and the two tables;
  3. times `gridata table import bench.orders <csv files>` (wall, MB/s, rows/s, CPU,
     peak RSS of the gridata process) and, as a reference, DuckDB writing the same CSV
     files to month-partitioned zstd Parquet;
  4. lists the Iceberg data files with `SELECT file_path FROM bench.orders$files`
     and gives DuckDB exactly those files (read_parquet([...])) as views named
     bench.orders / bench.customers, so both engines run the same SQL text;
  5. runs each query --repeats times per engine (best wall time counts) and checks
     that both engines return the same answer, and that the imported table holds
     the generated data (row count and sum(amount) computed from the CSV files);
  6. prints a table and the targets, and writes bench/out/lakehouse-<timestamp>.json.

Timing model (stated in the output too): a gridata time is the wall time of a whole
`gridata sql ...` process (start, catalog open, planning, execution, CSV output); a
DuckDB time is the in-process time of `con.execute(sql).fetchall()` in an already
running Python process. `gridata sql "SELECT 1"` is measured as the fixed per-process
overhead and shown, together with a "net" time that subtracts it.

Peak memory: gridata's is the max RSS of the gridata process (os.wait4 rusage).
DuckDB runs in a fresh worker process per phase (this script with --duckdb-worker);
its peak is that process's max RSS, which includes the Python interpreter and the
duckdb module (the baseline before any query is reported alongside).

Exit status: 0 when everything ran and all results match; 2 on a result mismatch or
a failed command; with --strict also 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent

# Bump when the generated data changes, so cached CSV files are regenerated.
DATA_VERSION = 1

IMPORT_TARGET_MB_S_PER_CORE = 150.0
QUERY_TARGET_RATIO = 1.5

ORDERS_SCHEMA = (
    "order_id long not null, customer_id long not null, order_ts timestamptz not null, "
    "status string, quantity int, amount double, country string"
)
ORDERS_PARTITION = "month(order_ts)"
CUSTOMERS_SCHEMA = "customer_id long not null, name string, segment string, country string"

# Column types for DuckDB's read_csv (reference import and the CSV ground truth).
ORDERS_CSV_COLUMNS = {
    "order_id": "BIGINT",
    "customer_id": "BIGINT",
    "order_ts": "TIMESTAMPTZ",
    "status": "VARCHAR",
    "quantity": "INTEGER",
    "amount": "DOUBLE",
    "country": "VARCHAR",
}

# Same SQL text for both engines: DuckDB gets views bench.orders / bench.customers over
# read_parquet([...the Iceberg table's data files...]).
QUERIES = [
    ("scan", "SELECT count(*) AS n, sum(amount) AS total FROM bench.orders"),
    (
        "filter",
        "SELECT count(*) AS n, sum(amount) AS total FROM bench.orders "
        "WHERE country = 'DE' AND amount > 400",
    ),
    (
        "group-by",
        "SELECT country, status, count(*) AS n, avg(amount) AS avg_amount "
        "FROM bench.orders GROUP BY 1, 2",
    ),
    (
        "join",
        "SELECT c.segment, count(*) AS n, sum(o.amount) AS total "
        "FROM bench.orders o JOIN bench.customers c ON o.customer_id = c.customer_id "
        "GROUP BY 1",
    ),
]

MB = 1_000_000  # throughput is in decimal MB/s
MIB = 1024 * 1024  # memory is in MiB


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------

def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def die(msg: str, code: int = 2) -> None:
    print(f"\nERROR: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


def sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def sql_list(paths) -> str:
    return "[" + ", ".join(sql_str(str(p)) for p in paths) + "]"


def fmt_int(n) -> str:
    return "-" if n is None else f"{int(round(n)):,}"


def fmt_s(x) -> str:
    if x is None:
        return "-"
    return f"{x:.3f}" if x < 100 else f"{x:.1f}"


def fmt_ratio(x) -> str:
    return "-" if x is None else f"{x:.2f}x"


def fmt_mib(x) -> str:
    return "-" if x is None else f"{x:,.0f}"


def run_measured(cmd, cwd=None, env=None) -> dict:
    """Run cmd to completion; wall time plus the rusage of exactly that child."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=cwd, env=env)
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        rc = os.waitstatus_to_exitcode(status)
        proc.returncode = rc  # already reaped; keep Popen from waiting again
        out.seek(0)
        err.seek(0)
        return {
            "cmd": [str(c) for c in cmd],
            "rc": rc,
            "wall_s": wall,
            "user_s": ru.ru_utime,
            "sys_s": ru.ru_stime,
            "max_rss_mib": ru.ru_maxrss * 1024 / MIB,  # Linux: ru_maxrss is KiB
            "stdout": out.read().decode("utf-8", "replace"),
            "stderr": err.read().decode("utf-8", "replace"),
        }


def check_ok(res: dict, what: str) -> dict:
    if res["rc"] != 0:
        print(f"\nERROR: {what} failed (exit {res['rc']}): {' '.join(res['cmd'])}", file=sys.stderr)
        print(res["stderr"][-4000:], file=sys.stderr)
        print(res["stdout"][-2000:], file=sys.stderr)
        sys.exit(2)
    return res


# ---------------------------------------------------------------------------
# DuckDB worker (runs in its own process so its peak RSS can be measured)
# ---------------------------------------------------------------------------

def _rss_now_mib() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024 / MIB
    except OSError:
        pass
    return None


def _jsonable(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    try:
        import decimal

        if isinstance(v, decimal.Decimal):
            return float(v)
    except ImportError:
        pass
    return str(v)


def duckdb_worker(spec_path: str, out_path: str) -> None:
    import duckdb

    spec = json.loads(Path(spec_path).read_text())
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
    except Exception:  # no ICU: timestamps are UTC anyway
        pass
    for stmt in spec.get("setup", []):
        con.execute(stmt)
    result = {
        "duckdb_version": duckdb.__version__,
        "threads": con.execute("SELECT current_setting('threads')").fetchone()[0],
        "baseline_rss_mib": _rss_now_mib(),
        "times_s": [],
    }
    rows = None
    for _ in range(spec["repeats"]):
        for stmt in spec.get("before_each", []):
            con.execute(stmt)
        t0 = time.perf_counter()
        rows = con.execute(spec["sql"]).fetchall()
        result["times_s"].append(time.perf_counter() - t0)
    result["rows"] = [[_jsonable(v) for v in r] for r in (rows or [])]
    result["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MIB
    Path(out_path).write_text(json.dumps(result))


def run_duckdb(spec: dict, tmpdir: Path, name: str) -> dict:
    spec_path = tmpdir / f"duckdb-{name}.spec.json"
    out_path = tmpdir / f"duckdb-{name}.out.json"
    spec_path.write_text(json.dumps(spec))
    res = check_ok(
        run_measured([sys.executable, str(Path(__file__).resolve()), "--duckdb-worker",
                      str(spec_path), str(out_path)]),
        f"DuckDB ({name})",
    )
    out = json.loads(out_path.read_text())
    out["best_s"] = min(out["times_s"])
    # The parent's view of the worker's peak RSS (same number as the worker's own).
    out["max_rss_mib"] = max(out.get("max_rss_mib") or 0, res["max_rss_mib"])
    return out


# ---------------------------------------------------------------------------
# data generation (DuckDB, deterministic)
# ---------------------------------------------------------------------------

def orders_select(lo: int, hi: int) -> str:
    """Orders lo..hi-1 (1-based ids). Every value is a hash of the order id, so the data
    is the same on every run and independent of thread scheduling."""
    return f"""
SELECT
    i AS order_id,
    (hash(i, 11) % 102000 + 1)::BIGINT AS customer_id,  -- ~2% have no customer row
    strftime(TIMESTAMP '2025-01-01 00:00:00' + to_seconds((hash(i, 13) % 63072000)::BIGINT),
             '%Y-%m-%dT%H:%M:%SZ') AS order_ts,            -- 24 months
    CASE WHEN s < 50 THEN 'delivered' WHEN s < 70 THEN 'shipped' WHEN s < 85 THEN 'paid'
         WHEN s < 95 THEN 'pending' ELSE 'cancelled' END AS status,
    (hash(i, 17) % 10 + 1)::INTEGER AS quantity,
    round(((hash(i, 19) % 99900) + 100)::DOUBLE / 100.0, 2) AS amount,  -- 1.00 .. 999.99
    CASE WHEN c < 20 THEN 'DE' WHEN c < 40 THEN 'US' WHEN c < 52 THEN 'FR' WHEN c < 62 THEN 'GB'
         WHEN c < 70 THEN 'NL' WHEN c < 77 THEN 'ES' WHEN c < 84 THEN 'IT' WHEN c < 90 THEN 'PL'
         WHEN c < 95 THEN 'SE' ELSE 'JP' END AS country
FROM (SELECT range AS i, hash(range, 23) % 100 AS s, hash(range, 29) % 100 AS c
      FROM range({lo}, {hi}))
ORDER BY i
"""


def customers_select(n: int) -> str:
    return f"""
SELECT
    i AS customer_id,
    'Customer ' || lpad(i::VARCHAR, 6, '0') AS name,
    CASE WHEN s < 60 THEN 'consumer' WHEN s < 85 THEN 'small_business'
         WHEN s < 95 THEN 'enterprise' ELSE 'public_sector' END AS segment,
    CASE WHEN c < 20 THEN 'DE' WHEN c < 40 THEN 'US' WHEN c < 52 THEN 'FR' WHEN c < 62 THEN 'GB'
         WHEN c < 70 THEN 'NL' WHEN c < 77 THEN 'ES' WHEN c < 84 THEN 'IT' WHEN c < 90 THEN 'PL'
         WHEN c < 95 THEN 'SE' ELSE 'JP' END AS country
FROM (SELECT range AS i, hash(range, 31) % 100 AS s, hash(range, 37) % 100 AS c
      FROM range(1, {n + 1}))
ORDER BY i
"""


def read_csv_expr(files) -> str:
    cols = "{" + ", ".join(f"{sql_str(k)}: {sql_str(v)}" for k, v in ORDERS_CSV_COLUMNS.items()) + "}"
    return f"read_csv({sql_list(files)}, header = true, columns = {cols})"


def generate_data(workdir: Path, rows: int, nfiles: int, customers: int) -> dict:
    import duckdb

    key = f"v{DATA_VERSION}-orders{rows}-files{nfiles}-customers{customers}"
    ddir = workdir / f"data-{key}"
    manifest_path = ddir / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if all(Path(f).exists() for f in manifest["orders_files"] + [manifest["customers_file"]]):
            log(f"reusing generated data in {ddir}")
            return manifest

    # Drop data sets of other sizes: at 10M rows the CSV alone is ~0.6 GB.
    if workdir.exists():
        for old in workdir.glob("data-*"):
            if old != ddir:
                shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(ddir, ignore_errors=True)
    ddir.mkdir(parents=True)
    log(f"generating {rows:,} orders in {nfiles} CSV files and {customers:,} customers into {ddir}")
    t0 = time.perf_counter()
    con = duckdb.connect()
    orders_files = []
    per_file = -(-rows // nfiles)
    for k in range(nfiles):
        lo = 1 + k * per_file
        hi = min(rows, (k + 1) * per_file) + 1
        if lo >= hi:
            break
        path = ddir / f"orders-{k:02d}.csv"
        con.execute(f"COPY ({orders_select(lo, hi)}) TO {sql_str(str(path))} (FORMAT csv, HEADER true)")
        orders_files.append(str(path))
    cust_path = ddir / "customers.csv"
    con.execute(f"COPY ({customers_select(customers)}) TO {sql_str(str(cust_path))} (FORMAT csv, HEADER true)")
    gen_s = time.perf_counter() - t0

    # Ground truth from the CSV text itself, to check what the import stored.
    log("computing ground truth from the CSV files")
    n, total = con.execute(f"SELECT count(*), sum(amount) FROM {read_csv_expr(orders_files)}").fetchone()
    manifest = {
        "data_version": DATA_VERSION,
        "rows": rows,
        "customers": customers,
        "orders_files": orders_files,
        "orders_csv_bytes": sum(Path(f).stat().st_size for f in orders_files),
        "customers_file": str(cust_path),
        "customers_csv_bytes": cust_path.stat().st_size,
        "truth": {"rows": n, "sum_amount": total},
        "generate_s": gen_s,
        "duckdb_version": duckdb.__version__,
    }
    manifest_path.write_text(json.dumps(manifest, indent=2))
    log(f"generated {manifest['orders_csv_bytes'] / MB:,.1f} MB of orders CSV in {gen_s:.1f}s")
    return manifest


# ---------------------------------------------------------------------------
# result comparison
# ---------------------------------------------------------------------------

def parse_gridata_csv(text: str):
    reader = csv.reader(text.splitlines())
    rows = list(reader)
    if not rows:
        return [], []
    header, body = rows[0], rows[1:]

    def conv(s: str):
        if s == "":
            return None
        try:
            return int(s)
        except ValueError:
            pass
        try:
            return float(s)
        except ValueError:
            return s

    return header, [[conv(v) for v in r] for r in body]


def _sort_key(row):
    return tuple(v for v in row if isinstance(v, str))


def values_equal(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    num = (int, float)
    if isinstance(a, num) and isinstance(b, num) and not isinstance(a, bool) and not isinstance(b, bool):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-6)
    return a == b


def compare_rows(g_rows, d_rows):
    """(ok, message). Order-insensitive: rows are sorted by their string columns."""
    g = sorted(g_rows, key=_sort_key)
    d = sorted(d_rows, key=_sort_key)
    if len(g) != len(d):
        return False, f"row count differs: gridata {len(g)} rows, duckdb {len(d)} rows"
    for i, (gr, dr) in enumerate(zip(g, d)):
        if len(gr) != len(dr) or not all(values_equal(x, y) for x, y in zip(gr, dr)):
            return False, f"row {i} differs: gridata {gr} vs duckdb {dr}"
    return True, f"{len(g)} row(s) match"


# ---------------------------------------------------------------------------
# gridata
# ---------------------------------------------------------------------------

class Gridata:
    def __init__(self, binary: Path, home: Path):
        self.bin = binary
        self.home = home

    def cmd(self, *args) -> list:
        return [str(self.bin), "--home", str(self.home), *[str(a) for a in args]]

    def run(self, *args, what=None) -> dict:
        return check_ok(run_measured(self.cmd(*args)), what or " ".join(str(a) for a in args[:3]))

    def sql(self, query: str) -> dict:
        return self.run("sql", query, "--format", "csv", what=f"gridata sql {query!r}")

    def sql_rows(self, query: str):
        return parse_gridata_csv(self.sql(query)["stdout"])


def data_files(g: Gridata, table: str):
    header, rows = g.sql_rows(f"SELECT file_path, record_count, file_size_in_bytes FROM {table}$files")
    files, nrec, nbytes = [], 0, 0
    for path, rc, size in rows:
        u = urllib.parse.urlparse(path)
        if u.scheme not in ("file", ""):
            die(f"{table}: data file {path} is not a local file; DuckDB can't be pointed at it")
        files.append(urllib.parse.unquote(u.path))
        nrec += int(rc)
        nbytes += int(size)
    return files, nrec, nbytes


def time_gridata_query(g: Gridata, query: str, repeats: int) -> dict:
    runs = [g.sql(query) for _ in range(repeats)]
    best = min(runs, key=lambda r: r["wall_s"])
    header, rows = parse_gridata_csv(best["stdout"])
    return {
        "times_s": [r["wall_s"] for r in runs],
        "best_s": best["wall_s"],
        "cpu_s_best": best["user_s"] + best["sys_s"],
        "max_rss_mib": max(r["max_rss_mib"] for r in runs),
        "header": header,
        "rows": rows,
    }


# ---------------------------------------------------------------------------
# environment description
# ---------------------------------------------------------------------------

def describe_env(binary: Path) -> dict:
    env = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                env["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                env["mem_total_mib"] = int(line.split()[1]) * 1024 / MIB
                break
    except OSError:
        pass
    try:
        env["gridata_version"] = subprocess.run([str(binary), "--version"], capture_output=True,
                                                text=True, timeout=30).stdout.strip()
    except Exception:
        pass
    env["gridata_bin"] = str(binary)
    parts = binary.resolve().parts
    env["gridata_profile"] = parts[-2] if len(parts) >= 2 else "?"
    try:
        env["git_commit"] = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
                                           capture_output=True, text=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30).stdout.strip()
        env["git_dirty"] = bool(dirty)
    except Exception:
        pass
    return env


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description="Gridata lakehouse-core benchmark (vs DuckDB)")
    ap.add_argument("--rows", type=int, default=10_000_000, help="order rows to generate (default 10,000,000)")
    ap.add_argument("--files", type=int, default=8, help="number of orders CSV files (default 8)")
    ap.add_argument("--customers", type=int, default=100_000, help="customer rows (default 100,000)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per query per engine; best counts (default 3)")
    ap.add_argument("--bin", default=os.environ.get("GRIDATA_BIN"), help="gridata binary (default $GRIDATA_BIN)")
    ap.add_argument("--workdir", default=os.environ.get("GRIDATA_BENCH_DIR",
                                                        str(Path.home() / ".cache/gridata/bench/lakehouse")),
                    help="generated data + Gridata home (default $GRIDATA_BENCH_DIR or "
                         "~/.cache/gridata/bench/lakehouse)")
    ap.add_argument("--out-dir", default=str(BENCH_DIR / "out"), help="where the JSON result goes (default bench/out)")
    ap.add_argument("--keep-home", action="store_true", help="keep the benchmark's Gridata home afterwards")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--duckdb-worker", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.duckdb_worker:
        duckdb_worker(*args.duckdb_worker)
        return 0

    if not args.bin:
        die("no gridata binary: pass --bin or set GRIDATA_BIN (bench/run.sh does this)")
    binary = Path(args.bin).resolve()
    if not os.access(binary, os.X_OK):
        die(f"gridata binary {binary} is missing or not executable")
    if args.rows < 1 or args.files < 1 or args.customers < 1 or args.repeats < 1:
        die("--rows, --files, --customers and --repeats must be positive")
    try:
        import duckdb  # noqa: F401
    except ImportError:
        die(f"duckdb is not importable from {sys.executable}; use bench/run.sh, which sets up the venv")

    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    out_dir = Path(args.out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))
    started = _dt.datetime.now(_dt.timezone.utc)
    env = describe_env(binary)
    ncores = os.cpu_count() or 1

    if "debug" in env.get("gridata_profile", ""):
        log("WARNING: the gridata binary is a debug build; its numbers are not meaningful "
            "(use bench/run.sh without GRIDATA_BIN for the `fast` profile)")

    # 1. data
    data = generate_data(workdir, args.rows, args.files, args.customers)
    orders_files = data["orders_files"]
    csv_bytes = data["orders_csv_bytes"]

    # 2. fresh home and tables
    home = workdir / "home"
    shutil.rmtree(home, ignore_errors=True)
    g = Gridata(binary, home)
    g.run("init")
    g.run("namespace", "create", "bench")
    g.run("table", "create", "bench.orders", "--schema", ORDERS_SCHEMA, "--partition", ORDERS_PARTITION)
    g.run("table", "create", "bench.customers", "--schema", CUSTOMERS_SCHEMA)

    problems: list[str] = []  # result mismatches and other correctness failures

    # 3. import
    log(f"gridata table import bench.orders ({len(orders_files)} files, {csv_bytes / MB:,.1f} MB)")
    imp = g.run("table", "import", "bench.orders", *orders_files, what="gridata table import bench.orders")
    imp_cpu = imp["user_s"] + imp["sys_s"]
    imp_mb_s = csv_bytes / MB / imp["wall_s"]
    log(f"  {imp['wall_s']:.2f}s, {imp_mb_s:,.1f} MB/s, peak {imp['max_rss_mib']:,.0f} MiB: {imp['stdout'].strip()}")
    cimp = g.run("table", "import", "bench.customers", data["customers_file"],
                 what="gridata table import bench.customers")

    orders_pq, orders_recs, orders_pq_bytes = data_files(g, "bench.orders")
    cust_pq, cust_recs, _ = data_files(g, "bench.customers")
    if orders_recs != args.rows:
        problems.append(f"bench.orders$files record_count sums to {orders_recs:,}, expected {args.rows:,}")
    if cust_recs != args.customers:
        problems.append(f"bench.customers$files record_count sums to {cust_recs:,}, expected {args.customers:,}")

    log("DuckDB reference import: the same CSV files -> month-partitioned zstd Parquet")
    duck_import_dir = tmpdir / "duckdb-import"
    duck_imp = run_duckdb({
        "sql": (f"COPY (SELECT *, (year(order_ts) - 1970) * 12 + month(order_ts) - 1 AS order_ts_month "
                f"FROM {read_csv_expr(orders_files)}) TO {sql_str(str(duck_import_dir))} "
                f"(FORMAT parquet, COMPRESSION zstd, PARTITION_BY (order_ts_month), OVERWRITE_OR_IGNORE)"),
        "repeats": 1,
    }, tmpdir, "import")
    shutil.rmtree(duck_import_dir, ignore_errors=True)

    # 4. DuckDB views over the same Parquet files
    duck_setup = [
        "CREATE SCHEMA bench",
        f"CREATE VIEW bench.orders AS SELECT * FROM read_parquet({sql_list(orders_pq)}, hive_partitioning = false)",
        f"CREATE VIEW bench.customers AS SELECT * FROM read_parquet({sql_list(cust_pq)}, hive_partitioning = false)",
    ]

    # fixed per-process overhead of gridata
    log("gridata fixed overhead: sql \"SELECT 1\"")
    ovh_runs = [g.sql("SELECT 1") for _ in range(max(3, args.repeats))]
    overhead_s = min(r["wall_s"] for r in ovh_runs)
    overhead_rss = max(r["max_rss_mib"] for r in ovh_runs)

    # 5. queries
    query_results = []
    for name, query in QUERIES:
        log(f"query {name}: gridata x{args.repeats}")
        gq = time_gridata_query(g, query, args.repeats)
        log(f"query {name}: duckdb x{args.repeats}")
        dq = run_duckdb({"setup": duck_setup, "sql": query, "repeats": args.repeats}, tmpdir, name)
        ok, msg = compare_rows(gq["rows"], dq["rows"])
        if not ok:
            problems.append(f"{name}: gridata and DuckDB disagree: {msg}")
        input_rows = args.rows + (args.customers if name == "join" else 0)
        net = max(gq["best_s"] - overhead_s, 1e-9)
        query_results.append({
            "name": name,
            "sql": query,
            "input_rows": input_rows,
            "gridata": {k: gq[k] for k in ("times_s", "best_s", "cpu_s_best", "max_rss_mib", "header", "rows")},
            "gridata_net_s": net,
            "duckdb": {k: dq[k] for k in ("times_s", "best_s", "max_rss_mib", "baseline_rss_mib", "rows")},
            "ratio": gq["best_s"] / dq["best_s"],
            "net_ratio": net / dq["best_s"],
            "rows_per_s_gridata": input_rows / gq["best_s"],
            "rows_per_s_duckdb": input_rows / dq["best_s"],
            "results_match": ok,
            "compare": msg,
            "target_ratio": QUERY_TARGET_RATIO,
            "target_met": gq["best_s"] / dq["best_s"] <= QUERY_TARGET_RATIO,
        })

    # ground truth: what the import stored equals what the CSV says
    scan = next(q for q in query_results if q["name"] == "scan")
    if scan["gridata"]["rows"]:
        n, total = scan["gridata"]["rows"][0][:2]
        truth = data["truth"]
        if n != truth["rows"]:
            problems.append(f"scan: gridata counts {n:,} rows, the CSV files hold {truth['rows']:,}")
        if not values_equal(float(total), float(truth["sum_amount"])):
            problems.append(f"scan: gridata sum(amount) {total} != {truth['sum_amount']} summed from the CSV files")

    # 6. report
    per_core = imp_mb_s / ncores
    import_target_met = per_core >= IMPORT_TARGET_MB_S_PER_CORE
    result = {
        "benchmark": "lakehouse-core",
        "started_utc": started.isoformat(),
        "environment": env,
        "duckdb": {"version": duck_imp["duckdb_version"], "threads": duck_imp["threads"],
                   "baseline_rss_mib": duck_imp["baseline_rss_mib"]},
        "params": {"rows": args.rows, "files": len(orders_files), "customers": args.customers,
                   "repeats": args.repeats},
        "data": {k: data[k] for k in ("orders_csv_bytes", "customers_csv_bytes", "truth", "generate_s")},
        "gridata_overhead": {"sql_select_1_best_s": overhead_s, "times_s": [r["wall_s"] for r in ovh_runs],
                             "max_rss_mib": overhead_rss},
        "import": {
            "gridata": {"wall_s": imp["wall_s"], "user_s": imp["user_s"], "sys_s": imp["sys_s"],
                        "cpu_utilisation_cores": imp_cpu / imp["wall_s"], "max_rss_mib": imp["max_rss_mib"],
                        "output": imp["stdout"].strip()},
            "csv_bytes": csv_bytes,
            "mb_per_s": imp_mb_s,
            "mb_per_s_per_core": per_core,
            "mb_per_cpu_s": csv_bytes / MB / imp_cpu if imp_cpu > 0 else None,
            "rows_per_s": args.rows / imp["wall_s"],
            "parquet_files": len(orders_pq),
            "parquet_bytes": orders_pq_bytes,
            "duckdb_reference": {"what": "COPY read_csv(same files) TO month-partitioned zstd Parquet, no catalog",
                                 "wall_s": duck_imp["best_s"], "max_rss_mib": duck_imp["max_rss_mib"],
                                 "mb_per_s": csv_bytes / MB / duck_imp["best_s"]},
            "ratio_to_duckdb": imp["wall_s"] / duck_imp["best_s"],
            "target_mb_per_s_per_core": IMPORT_TARGET_MB_S_PER_CORE,
            "target_met": import_target_met,
            "customers_wall_s": cimp["wall_s"],
        },
        "queries": query_results,
        "problems": problems,
        "all_results_match": not problems,
        "all_targets_met": import_target_met and all(q["target_met"] for q in query_results),
    }

    print_report(result)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    out_path = out_dir / f"lakehouse-{stamp}.json"
    out_path.write_text(json.dumps(result, indent=2))
    print(f"\nresults written to {out_path}")

    shutil.rmtree(tmpdir, ignore_errors=True)
    if not args.keep_home:
        shutil.rmtree(home, ignore_errors=True)
    else:
        print(f"gridata home kept at {home}")

    if problems:
        return 2
    if args.strict and not result["all_targets_met"]:
        return 1
    return 0


def print_report(r: dict) -> None:
    env, p, imp = r["environment"], r["params"], r["import"]
    ovh = r["gridata_overhead"]["sql_select_1_best_s"]
    print()
    print("=" * 100)
    print(f"Gridata lakehouse-core benchmark: {p['rows']:,} orders in {p['files']} CSV files "
          f"({imp['csv_bytes'] / MB:,.1f} MB), {p['customers']:,} customers")
    print(f"machine: {env.get('cpu_count')} cores ({env.get('cpu_model', '?')}), "
          f"{env.get('mem_total_mib', 0) / 1024:,.1f} GiB RAM")
    print(f"gridata: {env['gridata_bin']} (profile: {env.get('gridata_profile')}, "
          f"{env.get('gridata_version', '?')}, commit {env.get('git_commit', '?')[:12]}"
          f"{' +dirty' if env.get('git_dirty') else ''})")
    print(f"duckdb:  {r['duckdb']['version']} in-process, threads={r['duckdb']['threads']}; "
          f"best of {p['repeats']} runs per query and engine")
    if "debug" in env.get("gridata_profile", ""):
        print("WARNING: debug build of gridata: these numbers say nothing about performance")
    print("=" * 100)

    head = ["phase", "gridata s", "duckdb s", "ratio", "net s", "net ratio", "rows/s (gridata)",
            "peak MiB gridata", "peak MiB duckdb", "result"]
    table = [[
        "import orders", fmt_s(imp["gridata"]["wall_s"]), fmt_s(imp["duckdb_reference"]["wall_s"]),
        fmt_ratio(imp["ratio_to_duckdb"]), "-", "-", fmt_int(imp["rows_per_s"]),
        fmt_mib(imp["gridata"]["max_rss_mib"]), fmt_mib(imp["duckdb_reference"]["max_rss_mib"]), "-",
    ], [
        "overhead SELECT 1", fmt_s(ovh), "-", "-", "-", "-", "-",
        fmt_mib(r["gridata_overhead"]["max_rss_mib"]), "-", "-",
    ]]
    for q in r["queries"]:
        table.append([
            q["name"], fmt_s(q["gridata"]["best_s"]), fmt_s(q["duckdb"]["best_s"]), fmt_ratio(q["ratio"]),
            fmt_s(q["gridata_net_s"]), fmt_ratio(q["net_ratio"]), fmt_int(q["rows_per_s_gridata"]),
            fmt_mib(q["gridata"]["max_rss_mib"]), fmt_mib(q["duckdb"]["max_rss_mib"]),
            "match" if q["results_match"] else "MISMATCH",
        ])
    widths = [max(len(str(row[i])) for row in [head] + table) for i in range(len(head))]
    line = lambda row: "  ".join(  # noqa: E731
        (str(c).ljust(widths[i]) if i == 0 else str(c).rjust(widths[i])) for i, c in enumerate(row))
    print(line(head))
    print("  ".join("-" * w for w in widths))
    for row in table:
        print(line(row))

    print()
    print("notes:")
    print(f"  * gridata s = wall time of a whole `gridata` process (start + catalog open + plan + run + CSV out);")
    print(f"    its fixed cost, `gridata sql \"SELECT 1\"`, is {ovh * 1000:.0f} ms. net s = gridata s minus that.")
    print(f"  * duckdb s = in-process execute+fetchall in a warm Python process (no process start, no catalog),")
    print(f"    over read_parquet() of exactly the Iceberg data files that bench.orders$files lists.")
    print(f"  * import: gridata = CSV -> Iceberg table ({imp['parquet_files']} Parquet files, "
          f"{imp['parquet_bytes'] / MB:,.1f} MB, committed); duckdb = reference only: the same CSV -> "
          f"month-partitioned zstd Parquet, no catalog.")
    print(f"    gridata used {imp['gridata']['cpu_utilisation_cores']:.2f} cores on average "
          f"({imp['mb_per_cpu_s']:,.1f} MB of CSV per CPU-second).")
    print(f"  * peak MiB duckdb = max RSS of the DuckDB worker process, including Python + duckdb "
          f"(~{(r['duckdb']['baseline_rss_mib'] or 0):,.0f} MiB before any query).")
    print(f"  * rows/s = input rows / gridata wall time (orders; join: orders + customers).")

    print()
    print("targets:")
    mark = lambda ok: "PASS" if ok else "MISS"  # noqa: E731
    print(f"  import >= {IMPORT_TARGET_MB_S_PER_CORE:.0f} MB/s of CSV per core: "
          f"{imp['mb_per_s_per_core']:,.1f} MB/s/core ({imp['mb_per_s']:,.1f} MB/s over "
          f"{env.get('cpu_count')} cores)  {mark(imp['target_met'])}")
    for q in r["queries"]:
        print(f"  {q['name']:<8} <= {QUERY_TARGET_RATIO}x DuckDB: {q['ratio']:.2f}x "
              f"(net of process overhead {q['net_ratio']:.2f}x)  {mark(q['target_met'])}")

    print()
    if r["problems"]:
        print("!" * 100)
        print("!!! RESULT MISMATCH / CORRECTNESS PROBLEM: the numbers above are NOT valid")
        for prob in r["problems"]:
            print(f"!!!   {prob}")
        print("!" * 100)
    else:
        print(f"correctness: all {len(r['queries'])} queries return the same answer in gridata and DuckDB; "
              f"the table holds the {r['params']['rows']:,} rows and sum(amount) of the CSV files.")


if __name__ == "__main__":
    sys.exit(main())
