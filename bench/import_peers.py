#!/usr/bin/env python3
"""What the peers reach on the import target of `bench/run.sh` (issue #2: 150 MB/s of CSV per core).

Runs on the CSV files `bench/run.sh` generated and cached (default
~/.cache/gridata/bench/lakehouse/<data-...>/orders-*.csv), one fresh process per variant:

  duckdb-parse    SELECT count(*), sum(amount) FROM read_csv(files)     (parse only, no write)
  duckdb-copy     COPY (read_csv) TO one zstd Parquet file              (no partitioning)
  duckdb-months   COPY (read_csv) TO zstd Parquet PARTITION_BY month    (the benchmark's job)
  polars-months   scan_csv -> sink_parquet partitioned by month, zstd   (the benchmark's job)

Usage (the bench venv has both engines; bench/pipeline.sh creates it):
  ~/.cache/gridata/tools/bench-venv/bin/python bench/import_peers.py [DATA_DIR]
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

SCHEMA = {"order_id": "BIGINT", "customer_id": "BIGINT", "order_ts": "TIMESTAMPTZ", "status": "VARCHAR",
          "quantity": "INTEGER", "amount": "DOUBLE", "country": "VARCHAR"}


def run(variant: str, files: list, out: str) -> None:
    if variant.startswith("duckdb"):
        import duckdb
        con = duckdb.connect()
        cols = "{" + ", ".join(f"'{k}': '{v}'" for k, v in SCHEMA.items()) + "}"
        src = f"read_csv({files!r}, header = true, columns = {cols})"
        if variant == "duckdb-parse":
            con.execute(f"SELECT count(*), sum(amount) FROM {src}").fetchall()
        elif variant == "duckdb-copy":
            con.execute(f"COPY (SELECT * FROM {src}) TO '{out}/orders.parquet' (FORMAT parquet, COMPRESSION zstd)")
        else:
            con.execute(f"COPY (SELECT *, strftime(order_ts, '%Y-%m') AS month FROM {src}) TO '{out}' "
                        f"(FORMAT parquet, COMPRESSION zstd, PARTITION_BY (month))")
    else:
        import polars as pl
        types = {"BIGINT": pl.Int64, "TIMESTAMPTZ": pl.Datetime("us", "UTC"), "VARCHAR": pl.String,
                 "INTEGER": pl.Int32, "DOUBLE": pl.Float64}
        lf = pl.scan_csv(files, schema={k: types[v] for k, v in SCHEMA.items()})
        lf = lf.with_columns(pl.col("order_ts").dt.strftime("%Y-%m").alias("month"))
        lf.sink_parquet(pl.PartitionBy(out + "/", key="month"), compression="zstd", mkdir=True)


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--variant":
        data, variant = sys.argv[2], sys.argv[3]
        files = sorted(glob.glob(os.path.join(data, "orders-*.csv")))
        out = tempfile.mkdtemp(prefix="import-peer-")
        try:
            t = time.perf_counter()
            run(variant, files, out)
            print(f"{time.perf_counter() - t:.3f}")
        finally:
            shutil.rmtree(out, ignore_errors=True)
        return 0
    dirs = sys.argv[1:] or glob.glob(os.path.expanduser("~/.cache/gridata/bench/lakehouse/data-*"))
    if not dirs:
        print("no CSV data: run bench/run.sh first (it caches the files)", file=sys.stderr)
        return 2
    data = dirs[0]
    files = sorted(glob.glob(os.path.join(data, "orders-*.csv")))
    mb = sum(os.path.getsize(f) for f in files) / 1e6
    cores = os.cpu_count() or 1
    print(f"{len(files)} files, {mb:.1f} MB of CSV, {cores} cores ({data})")
    print(f"{'variant':<14} {'wall s':>7} {'MB/s':>7} {'MB/s/core':>10}")
    for variant in ("duckdb-parse", "duckdb-copy", "duckdb-months", "polars-months"):
        p = subprocess.run([sys.executable, __file__, "--variant", data, variant], capture_output=True, text=True)
        if p.returncode != 0:
            print(f"{variant:<14} failed: {p.stderr.strip().splitlines()[-1:]}")
            continue
        wall = float(p.stdout.strip().splitlines()[-1])
        print(f"{variant:<14} {wall:7.2f} {mb / wall:7.1f} {mb / wall / cores:10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
