"""The catalog Gridata writes is one PyIceberg's SqlCatalog can use as is."""

from __future__ import annotations

import sqlite3

from interop_support import JANUARY, SCHEMA, write_csv

ZONES = ["raw", "staging", "curated", "archive", "rejected"]


def test_init_creates_catalog_and_zones(gridata):
    assert gridata.catalog_db.is_file(), "gridata init should create HOME/catalog.db"
    for zone in ZONES:
        assert (gridata.warehouse / zone).is_dir(), f"gridata init should create HOME/warehouse/{zone}"

    # The Iceberg JDBC catalog tables, as PyIceberg's SqlCatalog expects them.
    with sqlite3.connect(gridata.catalog_db) as db:
        columns = {
            table: {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
            for table in ("iceberg_tables", "iceberg_namespace_properties")
        }
    assert {
        "catalog_name",
        "table_namespace",
        "table_name",
        "metadata_location",
        "previous_metadata_location",
    } <= columns["iceberg_tables"]
    assert {"catalog_name", "namespace", "property_key", "property_value"} <= columns[
        "iceberg_namespace_properties"
    ]


def test_namespace_is_visible_to_pyiceberg(gridata, catalog):
    gridata("namespace", "create", "sales")
    assert ("sales",) in catalog.list_namespaces()


def test_created_table_schema_location_and_partitioning(gridata, catalog):
    gridata("namespace", "create", "sales")
    gridata(
        "table", "create", "sales.orders",
        "--schema", SCHEMA,
        "--partition", "month(ts)",
        "--partition", "bucket(4, id)",
    )  # fmt: skip

    assert ("sales", "orders") in catalog.list_tables("sales")
    table = catalog.load_table("sales.orders")

    schema = table.schema()
    assert [(f.name, str(f.field_type), f.required) for f in schema.fields] == [
        ("id", "long", True),
        ("name", "string", False),
        ("amount", "double", False),
        ("ts", "timestamptz", False),
    ]
    assert table.location().rstrip("/") == f"file://{gridata.warehouse}/curated/sales/orders"

    spec = [(schema.find_column_name(f.source_id), str(f.transform)) for f in table.spec().fields]
    assert spec == [("ts", "month"), ("id", "bucket[4]")]

    # A new table is empty and has no snapshot yet.
    assert table.current_snapshot() is None
    assert table.scan().to_arrow().num_rows == 0
    assert gridata.sql("SELECT * FROM sales.orders") == []


def test_import_snapshot_summary(gridata, catalog, tmp_path):
    gridata("namespace", "create", "sales")
    gridata("table", "create", "sales.orders", "--schema", SCHEMA)
    gridata("table", "import", "sales.orders", write_csv(tmp_path / "jan.csv", JANUARY))

    # Gridata's view of the snapshot log.
    snaps = gridata.snapshots("sales.orders")
    assert len(snaps) == 1, snaps
    snap = snaps[0]
    assert {"snapshot_id", "parent_id", "timestamp_ms", "operation", "summary"} <= set(snap), snap
    assert snap["parent_id"] is None
    assert snap["operation"] == "append"
    assert "operation" in snap["summary"], snap["summary"]
    assert "added-records" in snap["summary"], snap["summary"]
    assert int(snap["summary"]["added-records"]) == len(JANUARY)

    # PyIceberg reads the same snapshot from the table metadata.
    current = catalog.load_table("sales.orders").current_snapshot()
    assert current is not None
    assert current.snapshot_id == int(snap["snapshot_id"])
    assert current.timestamp_ms == int(snap["timestamp_ms"])
    assert current.summary.operation.value == "append"
    assert current.summary["added-records"] == str(len(JANUARY))
    assert int(current.summary["total-records"]) == len(JANUARY)
