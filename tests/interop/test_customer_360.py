"""analytics.customer_360 checked against an independent DuckDB computation.

Gridata generates a small e-commerce data set, loads it with the shipped
pipelines and builds ``analytics.customer_360``. The test reads the input
tables (``ecommerce.customers``, ``ecommerce.orders``,
``ecommerce.clickstream``) with PyIceberg, computes the same profile in DuckDB
from the formulas in docs/ecommerce.md, and compares both row by row.

It also checks the orders pipeline: every input row is written or rejected,
every day's orders are kept, and a rerun leaves the tables as they were.

All tests share one home, built once per module: one generate and ten
pipeline runs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Iterator

import duckdb
import pytest
from pyiceberg.catalog.sql import SqlCatalog

from conftest import Gridata

START = date(2026, 11, 18)
DAYS = 3
DATES = [START + timedelta(days=d) for d in range(DAYS)]
LAST_DATE = DATES[-1]

# 3,000 orders give 375 customers; 3% of the rows carry a defect.
GENERATE = (
    "generate", "ecommerce",
    "--orders", 3000, "--days", DAYS, "--start", START, "--seed", 11,
    "--defect-rate", 0.03, "--format", "csv",
)  # fmt: skip

# The two input files of each ecommerce_orders run.
ORDER_FILES = ("orders.csv", "order_items.csv")

CUSTOMER_360 = "analytics.customer_360"
CUSTOMER_360_COLUMNS = [
    "customer_id", "full_name", "email", "country", "signup_ts",
    "order_count", "lifetime_value", "avg_order_value", "first_order_ts", "last_order_ts",
    "recency_days", "r_score", "f_score", "m_score", "rfm_score", "segment",
    "activity_status", "churn_risk_score", "page_views", "sessions", "add_to_cart_events",
    "browse_to_cart_rate", "cart_to_order_rate", "as_of_date", "_run_id",
]  # fmt: skip
TIMESTAMP_COLUMNS = ("signup_ts", "first_order_ts", "last_order_ts")
# Compared within TOLERANCE; every other column must be equal.
APPROX_COLUMNS = frozenset(
    {"lifetime_value", "avg_order_value", "churn_risk_score", "browse_to_cart_rate", "cart_to_order_rate"}
)
TOLERANCE = 1e-6

# Columns that differ between two runs over the same input.
RUN_COLUMNS = frozenset({"_run_id", "_ingested_at"})

# customer_360 from docs/ecommerce.md, written from the formulas alone.
# $as_of is `date + 1 day` at 00:00, $as_of_date the `date` parameter.
# ROUND is SQL's: halves go away from zero (ties such as 5/32 = 0.15625 occur
# in the rates).
REFERENCE_SQL = """
WITH
horizon AS (
    SELECT $as_of::TIMESTAMP AS as_of
),
customer AS (
    SELECT customer_id, full_name, email, country, signup_ts
    FROM customers, horizon
    WHERE signup_ts < as_of
),
purchases AS (  -- completed orders before as_of, per customer
    SELECT
        customer_id,
        count(*) AS order_count,
        sum(order_total) AS lifetime_value,
        min(order_ts) AS first_order_ts,
        max(order_ts) AS last_order_ts,
        -- whole days: floor(microseconds / microseconds per day)
        (epoch_us(as_of) - epoch_us(max(order_ts))) // 86400000000 AS recency_days
    FROM orders, horizon
    WHERE is_completed AND order_ts < as_of
    GROUP BY customer_id, as_of
),
scores AS (  -- RFM quintiles among the customers who have orders
    SELECT
        customer_id,
        ntile(5) OVER (ORDER BY recency_days DESC, customer_id) AS r_score,
        ntile(5) OVER (ORDER BY order_count, customer_id) AS f_score,
        ntile(5) OVER (ORDER BY lifetime_value, customer_id) AS m_score
    FROM purchases
    JOIN customer USING (customer_id)
),
clicks AS (
    SELECT
        customer_id,
        count(*) FILTER (WHERE event_type IN ('page_view', 'product_view')) AS page_views,
        count(DISTINCT session_id) AS sessions,
        count(*) FILTER (WHERE event_type = 'add_to_cart') AS add_to_cart_events
    FROM clickstream, horizon
    WHERE event_ts < as_of AND customer_id IS NOT NULL
    GROUP BY customer_id
),
profile AS (
    SELECT
        c.*,
        coalesce(p.order_count, 0) AS order_count,
        coalesce(p.lifetime_value, 0) AS lifetime_value,
        p.first_order_ts,
        p.last_order_ts,
        p.recency_days,
        s.r_score,
        s.f_score,
        s.m_score,
        coalesce(s.r_score + s.f_score + s.m_score, 0) AS score_sum,
        coalesce(k.page_views, 0) AS page_views,
        coalesce(k.sessions, 0) AS sessions,
        coalesce(k.add_to_cart_events, 0) AS add_to_cart_events
    FROM customer c
    LEFT JOIN purchases p USING (customer_id)
    LEFT JOIN scores s USING (customer_id)
    LEFT JOIN clicks k USING (customer_id)
)
SELECT
    customer_id, full_name, email, country, signup_ts,
    order_count,
    lifetime_value,
    -- lifetime_value / order_count rounded half away from zero on the exact
    -- decimal (DuckDB would divide decimals in DOUBLE), so in whole cents:
    -- floor(cents / n + 1/2). Totals are never negative (an error check of
    -- ecommerce_orders).
    CASE WHEN order_count > 0
         THEN (CAST(lifetime_value * 100 AS HUGEINT) * 2 + order_count) // (order_count * 2) / 100
    END AS avg_order_value,
    first_order_ts,
    last_order_ts,
    recency_days,
    r_score,
    f_score,
    m_score,
    coalesce(r_score * 100 + f_score * 10 + m_score, 0) AS rfm_score,
    CASE
        WHEN score_sum >= 13 THEN 'VIP'
        WHEN score_sum >= 10 THEN 'High Value'
        WHEN score_sum >= 6 THEN 'Medium Value'
        ELSE 'Low Value'
    END AS segment,
    CASE
        WHEN recency_days <= 30 THEN 'Active'
        WHEN recency_days <= 90 THEN 'At Risk'
        WHEN recency_days <= 180 THEN 'Dormant'
        ELSE 'Churned'
    END AS activity_status,
    coalesce(
        round(0.6::DOUBLE * least(recency_days, 365) / 365 + 0.4::DOUBLE * (5 - f_score) / 4, 4),
        1.0
    ) AS churn_risk_score,
    page_views,
    sessions,
    add_to_cart_events,
    CASE WHEN page_views = 0 THEN 0
         ELSE round(add_to_cart_events / page_views, 4)
    END AS browse_to_cart_rate,
    CASE WHEN add_to_cart_events = 0 THEN 0
         ELSE round(least(order_count / add_to_cart_events, 1), 4)
    END AS cart_to_order_rate,
    $as_of_date::DATE AS as_of_date
FROM profile
ORDER BY customer_id
"""


# ---------------------------------------------------------------------------
# building the data set
# ---------------------------------------------------------------------------
@dataclass
class Shop:
    """A home holding the generated data set, loaded by the shipped pipelines."""

    gridata: Gridata
    catalog: SqlCatalog
    # --json output of each ecommerce_orders run, by date.
    orders_runs: dict[date, dict[str, Any]]
    # Data lines (after the header, malformed ones included) of each raw
    # orders file, counted before the pipelines ran: {(date, file name): n}.
    raw_lines: dict[tuple[date, str], int]


def run_pipeline(g: Gridata, pipeline: str, day: date) -> dict[str, Any]:
    """Runs a pipeline for one date; returns its --json summary (fails the test on a non-zero exit)."""
    summary = g.json("run", pipeline, "--param", f"date={day.isoformat()}", "--json")
    assert isinstance(summary, dict), f"`gridata run {pipeline} --json` should print a JSON object, got: {summary!r}"
    for key in ("run_id", "tasks", "files"):
        assert key in summary, f"`gridata run {pipeline} --json` has no {key!r}: {summary!r}"
    return summary


def raw_data_lines(g: Gridata, day: date, file_name: str) -> int:
    path = g.warehouse / "raw" / "ecommerce" / "orders" / day.isoformat() / file_name
    with path.open(encoding="utf-8") as f:
        return sum(1 for _ in f) - 1  # minus the header


def open_catalog(g: Gridata) -> SqlCatalog:
    """The home opened as conftest's ``catalog`` fixture opens it."""
    return SqlCatalog(
        "gridata",
        uri=f"sqlite:///{g.catalog_db}",
        warehouse=f"file://{g.warehouse}/curated",
        init_catalog_tables="false",
    )


@pytest.fixture(scope="module")
def shop(gridata_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    g = Gridata(gridata_bin, tmp_path_factory.mktemp("customer_360") / "home")
    g("init")
    g(*GENERATE)
    raw_lines = {(day, name): raw_data_lines(g, day, name) for day in DATES for name in ORDER_FILES}

    # Day by day, in dependency order; products only has a file on the first day.
    orders_runs = {}
    for day in DATES:
        run_pipeline(g, "ecommerce_customers", day)
        if day == START:
            run_pipeline(g, "ecommerce_products", day)
        run_pipeline(g, "ecommerce_clickstream", day)
        orders_runs[day] = run_pipeline(g, "ecommerce_orders", day)

    catalog = open_catalog(g)
    yield Shop(g, catalog, orders_runs, raw_lines)
    catalog.engine.dispose()


# ---------------------------------------------------------------------------
# reading and comparing
# ---------------------------------------------------------------------------
def reference_customer_360(catalog: SqlCatalog, day: date) -> list[dict[str, Any]]:
    """customer_360 for ``day``, computed by DuckDB from the input tables."""
    con = duckdb.connect()
    try:
        for name in ("customers", "orders", "clickstream"):
            con.register(name, catalog.load_table(f"ecommerce.{name}").scan().to_arrow())
        as_of = datetime.combine(day + timedelta(days=1), time())
        con.execute(REFERENCE_SQL, {"as_of": as_of, "as_of_date": day})
        columns = [d[0] for d in con.description]
        return [dict(zip(columns, values)) for values in con.fetchall()]
    finally:
        con.close()


def as_date(value: Any) -> Any:
    """as_of_date may come back as a date, a midnight timestamp or text."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, str):
        return date.fromisoformat(value[:10])
    return value


# How a Gridata value is read before comparing (default: as is).
NORMALIZE = {"as_of_date": as_date, "_run_id": str}


def same_value(column: str, got: Any, want: Any) -> bool:
    if got is None or want is None:
        return got is None and want is None
    if column in APPROX_COLUMNS:
        return abs(float(got) - float(want)) <= TOLERANCE
    return got == want


def show(value: Any) -> str:
    if value is None:
        return "NULL"
    return repr(value) if isinstance(value, str) else str(value)


def profile_differences(got: list[dict[str, Any]], want: list[dict[str, Any]], limit: int = 5) -> list[str]:
    """Human-readable differences between Gridata's rows and the reference, keyed on customer_id."""
    got_by_id = {r["customer_id"]: r for r in got}
    want_by_id = {r["customer_id"]: r for r in want}
    lines = []
    missing = sorted(want_by_id.keys() - got_by_id.keys())
    extra = sorted(got_by_id.keys() - want_by_id.keys())
    if missing:
        lines.append(f"{len(missing)} customers missing from Gridata's table, e.g. {missing[:limit]}")
    if extra:
        lines.append(f"{len(extra)} customers only in Gridata's table, e.g. {extra[:limit]}")

    per_column: Counter[str] = Counter()
    shown = 0
    for customer_id in sorted(got_by_id.keys() & want_by_id.keys()):
        g, w = got_by_id[customer_id], want_by_id[customer_id]
        bad = [c for c in w if not same_value(c, NORMALIZE.get(c, lambda v: v)(g.get(c)), w[c])]
        per_column.update(bad)
        if bad and shown < limit:
            shown += 1
            lines.append(f"customer {customer_id}:")
            lines += [f"    {c}: gridata {show(g.get(c))}, duckdb {show(w[c])}" for c in bad]
    if per_column:
        summary = ", ".join(f"{c} ({n})" for c, n in per_column.most_common())
        lines.insert(0, f"customers differing per column: {summary}")
    return lines


# Orders span the last three days, so a profile taken N days after the last
# date sees recency_days in {N, N+1, N+2}: each case straddles one boundary of
# activity_status (30, 90 and 180 days) or churn_risk_score's 365-day cap.
# Customers without completed orders are "Churned" in every case.
AS_OF_CASES = [
    pytest.param(0, {"Active", "Churned"}, id="last-date"),
    pytest.param(29, {"Active", "At Risk", "Churned"}, id="active-at-risk"),
    pytest.param(89, {"At Risk", "Dormant", "Churned"}, id="at-risk-dormant"),
    pytest.param(179, {"Dormant", "Churned"}, id="dormant-churned"),
    pytest.param(364, {"Churned"}, id="recency-cap"),
]


# ---------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(("days_after", "statuses"), AS_OF_CASES)
def test_customer_360_matches_duckdb(shop: Shop, days_after: int, statuses: set[str]):
    day = LAST_DATE + timedelta(days=days_after)
    run = run_pipeline(shop.gridata, "ecommerce_customer_360", day)

    table = shop.catalog.load_table(CUSTOMER_360)
    fields = {f.name: f for f in table.schema().fields}
    assert set(fields) == set(CUSTOMER_360_COLUMNS), (
        f"{CUSTOMER_360} columns: missing {sorted(set(CUSTOMER_360_COLUMNS) - set(fields))}, "
        f"unexpected {sorted(set(fields) - set(CUSTOMER_360_COLUMNS))}"
    )
    for name in TIMESTAMP_COLUMNS:
        assert str(fields[name].field_type) == "timestamp", f"{name} is {fields[name].field_type}, not timestamp"

    got = table.scan().to_arrow().to_pylist()
    want = reference_customer_360(shop.catalog, day)
    for r in want:
        r["_run_id"] = str(run["run_id"])  # every row carries the run that wrote it

    ids = Counter(r["customer_id"] for r in got)
    duplicated = sorted(i for i, n in ids.items() if n > 1)
    assert not duplicated, f"{CUSTOMER_360} repeats customers: {duplicated[:10]}"
    differences = profile_differences(got, want)
    assert not differences, (
        f"{CUSTOMER_360} for {day} differs from DuckDB ({len(got)} rows vs {len(want)}):\n" + "\n".join(differences)
    )
    assert len(got) == len(want)

    # The data exercises the formulas: many customers, several segments, and
    # the activity statuses this as-of date must produce.
    assert len(got) >= 100, f"only {len(got)} customers"
    segments = Counter(r["segment"] for r in got)
    assert len(segments) >= 3, f"too few segments: {dict(segments)}"
    seen = Counter(r["activity_status"] for r in got)
    assert statuses <= set(seen), f"expected activity statuses {sorted(statuses)}, got {dict(seen)}"


def file_counts(summary: dict[str, Any]) -> dict[str, tuple[int, int, int]]:
    """{file name: (rows_read, rows_rejected, rows_written)} of a run's --json summary."""
    return {
        f["source_file"].rstrip("/").rsplit("/", 1)[-1]: (f["rows_read"], f["rows_rejected"], f["rows_written"])
        for f in summary["files"]
    }


def test_orders_runs_conserve_rows(shop: Shop):
    for day, summary in shop.orders_runs.items():
        for f in summary["files"]:
            assert f["rows_read"] == f["rows_written"] + f["rows_rejected"], f"{day}: rows not conserved in {f}"
        counts = file_counts(summary)
        for name in ORDER_FILES:
            assert name in counts, f"{day}: the run reports no {name}: {summary['files']}"
            read = counts[name][0]
            assert read > 0, f"{day}: nothing read from {name}"
            # Every line of the file is counted, malformed ones included.
            assert read == shop.raw_lines[(day, name)], (
                f"{day}: {name} has {shop.raw_lines[(day, name)]} data lines, the run read {read}"
            )


def test_orders_keep_every_day(shop: Shop):
    """Each daily run adds its orders; it must not drop the earlier days of the same month."""
    orders = shop.catalog.load_table("ecommerce.orders").scan().to_arrow()
    days = sorted({ts.date() for ts in orders.column("order_ts").to_pylist()})
    assert days == DATES, f"ecommerce.orders holds orders of {days}, expected {DATES}"
    written = sum(file_counts(s)["orders.csv"][2] for s in shop.orders_runs.values())
    assert orders.num_rows == written, f"ecommerce.orders has {orders.num_rows} rows, the runs wrote {written}"


def table_contents(catalog: SqlCatalog, table: str) -> tuple[list[str], Counter[tuple[Any, ...]]]:
    """A table's columns (without the run's own) and its rows as a multiset."""
    arrow = catalog.load_table(table).scan().to_arrow()
    columns = [c for c in arrow.column_names if c not in RUN_COLUMNS]
    rows = arrow.select(columns).to_pylist()
    return columns, Counter(tuple(r[c] for c in columns) for r in rows)


def contents_differences(columns: list[str], before: Counter, after: Counter, limit: int = 5) -> list[str]:
    def describe(values: tuple[Any, ...]) -> str:
        return "{" + ", ".join(f"{c}: {show(v)}" for c, v in zip(columns, values)) + "}"

    gone = list((before - after).elements())
    new = list((after - before).elements())
    lines = [f"{len(gone)} rows gone, {len(new)} rows new"]
    lines += [f"  gone: {describe(r)}" for r in gone[:limit]]
    lines += [f"  new:  {describe(r)}" for r in new[:limit]]
    return lines


def test_orders_rerun_leaves_tables_unchanged(shop: Shop):
    tables = ("ecommerce.orders", "ecommerce.order_items")
    before = {t: table_contents(shop.catalog, t) for t in tables}

    rerun = run_pipeline(shop.gridata, "ecommerce_orders", LAST_DATE)

    for t in tables:
        columns, rows = before[t]
        columns_after, rows_after = table_contents(shop.catalog, t)
        assert sum(rows.values()) > 0, f"{t} is empty"
        assert columns_after == columns, f"{t} columns changed: {columns} -> {columns_after}"
        assert rows_after == rows, f"rerunning ecommerce_orders for {LAST_DATE} changed {t}:\n" + "\n".join(
            contents_differences(columns, rows, rows_after)
        )
    # Same input, same counts; and still every row written or rejected.
    for f in rerun["files"]:
        assert f["rows_read"] == f["rows_written"] + f["rows_rejected"], f"rerun: rows not conserved in {f}"
    assert file_counts(rerun) == file_counts(shop.orders_runs[LAST_DATE])
