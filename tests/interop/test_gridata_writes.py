"""Gridata writes, PyIceberg reads.

Every test changes a table with the gridata CLI, then checks that PyIceberg's
``table.scan().to_arrow()`` and ``gridata sql`` both return the expected rows.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from interop_support import (
    FEBRUARY,
    JANUARY,
    SCHEMA,
    assert_rows,
    data_file_count,
    row,
    utc,
    write_csv,
    write_jsonl,
)

TABLE = "sales.orders"


@pytest.fixture
def orders(gridata):
    """An empty, unpartitioned sales.orders table."""
    gridata("namespace", "create", "sales")
    gridata("table", "create", TABLE, "--schema", SCHEMA)
    return TABLE


def current_snapshot_id(catalog, table: str) -> int:
    snapshot = catalog.load_table(table).current_snapshot()
    assert snapshot is not None, f"{table} has no current snapshot"
    return snapshot.snapshot_id


def test_append_csv(gridata, catalog, orders, tmp_path):
    gridata("table", "import", orders, write_csv(tmp_path / "jan.csv", JANUARY))
    assert_rows(gridata, catalog, orders, JANUARY)

    gridata("table", "import", orders, write_csv(tmp_path / "feb.csv", FEBRUARY), "--mode", "append")
    assert_rows(gridata, catalog, orders, JANUARY + FEBRUARY)
    assert len(catalog.load_table(orders).snapshots()) == 2


def test_import_jsonl_and_parquet(gridata, catalog, orders, tmp_path):
    with_null_name = [row(10, None, 1.25, "2024-03-01T08:00:00"), row(11, "zoe", 2.5, "2024-03-02T08:00:00")]
    gridata("table", "import", orders, write_jsonl(tmp_path / "march.jsonl", with_null_name))

    arrow = pa.table(
        {
            "id": pa.array([20, 21], pa.int64()),
            "name": pa.array(["yann", None], pa.string()),
            "amount": pa.array([None, 3.75], pa.float64()),
            "ts": pa.array([utc("2024-04-01T00:00:00"), utc("2024-04-30T23:00:00")], pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(arrow, tmp_path / "april.parquet")
    gridata("table", "import", orders, tmp_path / "april.parquet", "--format", "parquet")

    assert_rows(gridata, catalog, orders, with_null_name + arrow.to_pylist())


def test_overwrite(gridata, catalog, orders, tmp_path):
    gridata("table", "import", orders, write_csv(tmp_path / "jan.csv", JANUARY))
    first = current_snapshot_id(catalog, orders)
    gridata("table", "import", orders, write_csv(tmp_path / "feb.csv", FEBRUARY), "--mode", "overwrite")

    assert_rows(gridata, catalog, orders, FEBRUARY)
    # The overwrite made new snapshot(s) and kept the old one in the history.
    table = catalog.load_table(orders)
    assert table.current_snapshot().snapshot_id != first
    assert first in [s.snapshot_id for s in table.snapshots()]


def test_overwrite_partitions_replaces_only_months_in_the_file(gridata, catalog, tmp_path):
    gridata("namespace", "create", "sales")
    gridata("table", "create", TABLE, "--schema", SCHEMA, "--partition", "month(ts)")
    gridata("table", "import", TABLE, write_csv(tmp_path / "jan_feb.csv", JANUARY + FEBRUARY))

    # New February rows (replacing the old February) and a first March row.
    new_rows = [
        row(6, "frank", 7.0, "2024-02-10T10:00:00"),
        row(7, "grace", 8.5, "2024-03-03T03:03:03"),
    ]
    gridata("table", "import", TABLE, write_csv(tmp_path / "feb_mar.csv", new_rows), "--mode", "overwrite-partitions")

    # January is not in the new file, so it survives; old February is gone.
    assert_rows(gridata, catalog, TABLE, JANUARY + new_rows)


def test_delete_where(gridata, catalog, orders, tmp_path):
    rows = JANUARY + FEBRUARY
    gridata("table", "import", orders, write_csv(tmp_path / "orders.csv", rows))
    gridata("table", "delete", orders, "--where", "amount > 50")

    # SQL semantics: the row whose amount is NULL is not deleted.
    kept = [r for r in rows if r["amount"] is None or r["amount"] <= 50]
    assert [r["id"] for r in kept] == [1, 3, 4]
    assert_rows(gridata, catalog, orders, kept)


def test_rollback_to_first_snapshot(gridata, catalog, orders, tmp_path):
    gridata("table", "import", orders, write_csv(tmp_path / "jan.csv", JANUARY))
    first = current_snapshot_id(catalog, orders)
    gridata("table", "import", orders, write_csv(tmp_path / "feb.csv", FEBRUARY))
    gridata("table", "delete", orders, "--where", "id = 1")
    assert current_snapshot_id(catalog, orders) != first

    # Gridata and PyIceberg agree on the snapshot ids. The metadata file's
    # snapshot list has no defined order, so compare sets; Gridata lists
    # them in commit order.
    ours = gridata.snapshots(orders)
    assert sorted(int(s["snapshot_id"]) for s in ours) == sorted(
        s.snapshot_id for s in catalog.load_table(orders).snapshots()
    )
    assert [s["timestamp_ms"] for s in ours] == sorted(s["timestamp_ms"] for s in ours)

    gridata("table", "rollback", orders, "--to", first)

    assert current_snapshot_id(catalog, orders) == first
    assert_rows(gridata, catalog, orders, JANUARY)


def test_schema_evolution_add_rename_drop(gridata, catalog, orders, tmp_path):
    gridata("table", "import", orders, write_csv(tmp_path / "jan.csv", JANUARY))

    gridata("table", "evolve", orders, "add", "note", "string")
    gridata("table", "evolve", orders, "rename", "name", "customer")
    gridata("table", "evolve", orders, "drop", "amount")

    schema = catalog.load_table(orders).schema()
    assert [f.name for f in schema.fields] == ["id", "customer", "ts", "note"]
    assert str(schema.find_field("note").field_type) == "string"

    # Old data files are read through the new schema: renamed column keeps its
    # values, the dropped one is gone, the added one is NULL.
    old_rows = [{"id": r["id"], "customer": r["name"], "ts": r["ts"], "note": None} for r in JANUARY]
    assert_rows(gridata, catalog, orders, old_rows)

    # New data written with the new schema.
    new_rows = [{"id": 8, "customer": "heidi", "ts": utc("2024-02-02T02:00:00"), "note": "vip"}]
    gridata("table", "import", orders, write_csv(tmp_path / "new.csv", new_rows))
    assert_rows(gridata, catalog, orders, old_rows + new_rows)


def test_widen_column_types(gridata, catalog, tmp_path):
    gridata("namespace", "create", "shop")
    gridata("table", "create", "shop.stock", "--schema", "id long not null, qty int, price float")
    rows = [{"id": 1, "qty": 2147483647, "price": 1.5}, {"id": 2, "qty": -3, "price": None}]
    gridata("table", "import", "shop.stock", write_csv(tmp_path / "stock.csv", rows))

    gridata("table", "evolve", "shop.stock", "widen", "qty", "long")
    gridata("table", "evolve", "shop.stock", "widen", "price", "double")

    schema = catalog.load_table("shop.stock").schema()
    assert [(f.name, str(f.field_type)) for f in schema.fields] == [
        ("id", "long"),
        ("qty", "long"),
        ("price", "double"),
    ]
    assert_rows(gridata, catalog, "shop.stock", rows)


def test_compaction_keeps_rows(gridata, catalog, orders, tmp_path):
    rows = JANUARY + FEBRUARY
    for r in rows:  # one small data file per import
        gridata("table", "import", orders, write_csv(tmp_path / f"order-{r['id']}.csv", [r]))
    before = data_file_count(catalog, orders)
    assert before >= len(rows)

    gridata("table", "compact", orders)

    assert data_file_count(catalog, orders) <= before
    assert_rows(gridata, catalog, orders, rows)


def test_expire_keeps_only_the_last_snapshot(gridata, catalog, orders, tmp_path):
    gridata("table", "import", orders, write_csv(tmp_path / "jan.csv", JANUARY))
    gridata("table", "import", orders, write_csv(tmp_path / "feb.csv", FEBRUARY))
    gridata("table", "delete", orders, "--where", "id = 2")
    assert len(catalog.load_table(orders).metadata.snapshots) == 3
    last = current_snapshot_id(catalog, orders)

    gridata("table", "expire", orders, "--older-than", "0d", "--retain-last", "1")

    table = catalog.load_table(orders)
    assert [s.snapshot_id for s in table.metadata.snapshots] == [last]
    assert [int(s["snapshot_id"]) for s in gridata.snapshots(orders)] == [last]
    # Expiring history does not change the data.
    assert_rows(gridata, catalog, orders, [r for r in JANUARY + FEBRUARY if r["id"] != 2])


def test_all_types_roundtrip(gridata, catalog, tmp_path):
    schema = (
        "id long not null, flag boolean, small int, big long, ratio float, score double, "
        "price decimal(10,2), day date, local_ts timestamp, utc_ts timestamptz, label string"
    )
    gridata("namespace", "create", "types")
    gridata("table", "create", "types.everything", "--schema", schema)

    rows = [
        {
            "id": 1,
            "flag": True,
            "small": -2147483648,
            "big": 9007199254740993,  # not exact as a double: must stay an integer
            "ratio": 0.25,
            "score": -1234.5625,
            "price": Decimal("12345678.90"),
            "day": date(2024, 2, 29),
            "local_ts": datetime(2024, 3, 1, 12, 34, 56, 123456),
            "utc_ts": utc("2024-03-01T12:34:56.123456"),
            "label": "héllo, \"world\"",
        },
        {
            "id": 2,
            "flag": False,
            "small": 0,
            "big": -1,
            "ratio": None,
            "score": 0.0,
            "price": Decimal("-0.50"),
            "day": date(1970, 1, 1),
            "local_ts": datetime(1999, 12, 31, 23, 59, 59),
            "utc_ts": utc("2000-01-01T00:00:00"),
            "label": "plain",
        },
    ]
    gridata("table", "import", "types.everything", write_csv(tmp_path / "everything.csv", rows))

    table = catalog.load_table("types.everything")
    assert [str(f.field_type) for f in table.schema().fields] == [
        "long", "boolean", "int", "long", "float", "double",
        "decimal(10, 2)", "date", "timestamp", "timestamptz", "string",
    ]  # fmt: skip
    assert_rows(gridata, catalog, "types.everything", rows)
