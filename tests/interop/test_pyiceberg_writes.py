"""PyIceberg writes, Gridata reads (and writes on top)."""

from __future__ import annotations

import pyarrow as pa
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform
from pyiceberg.types import DoubleType, LongType, NestedField, StringType, TimestamptzType

from interop_support import assert_rows, row, utc, write_csv

TABLE = "py.events"

ARROW_SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("amount", pa.float64()),
        pa.field("ts", pa.timestamp("us", tz="UTC")),
    ]
)


def arrow_rows(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=ARROW_SCHEMA)


ROWS = [
    row(1, "alpha", 1.5, "2024-05-01T00:00:00"),
    row(2, None, -2.25, "2024-05-01T12:30:00"),
    row(3, "gamma", None, "2024-05-02T23:59:59"),
]


def test_gridata_reads_a_pyiceberg_table(gridata, catalog):
    catalog.create_namespace("py")
    table = catalog.create_table(TABLE, schema=ARROW_SCHEMA)
    table.append(arrow_rows(ROWS))

    assert_rows(gridata, catalog, TABLE, ROWS)
    assert "py.events" in gridata("table", "list", "--format", "json")


def test_gridata_reads_a_partitioned_pyiceberg_table(gridata, catalog):
    catalog.create_namespace("py")
    schema = Schema(
        NestedField(1, "id", LongType(), required=True),
        NestedField(2, "name", StringType(), required=False),
        NestedField(3, "amount", DoubleType(), required=False),
        NestedField(4, "ts", TimestamptzType(), required=False),
    )
    spec = PartitionSpec(PartitionField(source_id=4, field_id=1000, transform=DayTransform(), name="ts_day"))
    table = catalog.create_table(TABLE, schema=schema, partition_spec=spec)
    table.append(arrow_rows(ROWS))
    assert len(list(table.scan().plan_files())) == 2  # two days, two files

    assert_rows(gridata, catalog, TABLE, ROWS)
    day = gridata.sql("SELECT id FROM py.events WHERE ts >= '2024-05-02T00:00:00Z' ORDER BY id")
    assert [int(r["id"]) for r in day] == [3]


def test_gridata_reads_after_pyiceberg_schema_evolution(gridata, catalog):
    catalog.create_namespace("py")
    table = catalog.create_table(TABLE, schema=ARROW_SCHEMA)
    table.append(arrow_rows(ROWS))

    # Columns are matched by field id, not by name or position.
    with table.update_schema() as update:
        update.rename_column("name", "label")
        update.add_column("score", LongType())

    new = pa.Table.from_pylist(
        [{"id": 4, "label": "delta", "amount": 4.0, "ts": utc("2024-05-03T00:00:00"), "score": 7}],
        schema=catalog.load_table(TABLE).schema().as_arrow(),
    )
    catalog.load_table(TABLE).append(new)

    expected = [
        {"id": r["id"], "label": r["name"], "amount": r["amount"], "ts": r["ts"], "score": None} for r in ROWS
    ] + new.to_pylist()
    assert_rows(gridata, catalog, TABLE, expected)


def test_gridata_appends_to_a_pyiceberg_table(gridata, catalog, tmp_path):
    catalog.create_namespace("py")
    table = catalog.create_table(TABLE, schema=ARROW_SCHEMA)
    table.append(arrow_rows(ROWS))
    pyiceberg_snapshot = table.current_snapshot().snapshot_id

    more = [row(4, "delta", 4.0, "2024-05-03T00:00:00")]
    gridata("table", "import", TABLE, write_csv(tmp_path / "more.csv", more))

    table = catalog.load_table(TABLE)
    assert table.current_snapshot().parent_snapshot_id == pyiceberg_snapshot
    assert_rows(gridata, catalog, TABLE, ROWS + more)

    # And PyIceberg can keep writing after Gridata's commit.
    last = [row(5, "epsilon", 5.0, "2024-05-04T00:00:00")]
    table.append(arrow_rows(last))
    assert_rows(gridata, catalog, TABLE, ROWS + more + last)
