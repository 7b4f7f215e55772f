"""Test data and row comparison for the interop tests.

Rows are compared in a canonical Python form decided by the table's Iceberg
schema (as PyIceberg sees it), so that PyIceberg's Arrow values, Gridata's JSON
values and the expected rows written in the tests can be compared with ``==``:

    long/int -> int, double/float -> float, decimal(p, s) -> Decimal with s places,
    date -> date, timestamp -> naive datetime, timestamptz -> UTC datetime,
    string -> str, boolean -> bool, NULL -> None
"""

from __future__ import annotations

import csv
import json
import re
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable

from pyiceberg.catalog import Catalog
from pyiceberg.schema import Schema
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IcebergType,
    IntegerType,
    LongType,
    StringType,
    TimestampType,
    TimestamptzType,
)

# The table most tests use.
SCHEMA = "id long not null, name string, amount double, ts timestamptz"


def utc(text: str) -> datetime:
    """utc("2024-01-05T09:30:00") -> that instant as an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def row(id: int, name: str | None, amount: float | None, ts: str) -> dict[str, Any]:
    return {"id": id, "name": name, "amount": amount, "ts": utc(ts)}


# Two months of rows; amounts are exact in binary floating point, one is NULL.
JANUARY = [
    row(1, "alice", 10.5, "2024-01-05T09:30:00"),
    row(2, "bob", 99.25, "2024-01-20T17:00:00"),
    row(3, "carol", None, "2024-01-31T23:59:59"),
]
FEBRUARY = [
    row(4, "dave", 42.0, "2024-02-01T00:00:00"),
    row(5, "erin", 250.75, "2024-02-14T12:00:00"),
]


# ---------------------------------------------------------------------------
# writing input files
# ---------------------------------------------------------------------------
def _text(value: Any) -> str:
    """How a value is written in a CSV or JSON input file."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        text = value.strftime("%Y-%m-%dT%H:%M:%S")
        if value.microsecond:
            text += f".{value.microsecond:06d}"
        if value.tzinfo is not None:
            assert value.utcoffset() == timezone.utc.utcoffset(None), "write UTC timestamps only"
            text += "Z"
        return text
    if isinstance(value, (date, Decimal)):
        return str(value)
    return str(value)


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str] | None = None) -> Path:
    """A CSV file with a header row; NULL is an empty field."""
    columns = columns or list(rows[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow([_text(r.get(c)) for c in columns])
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Newline-delimited JSON; NULL is JSON null, timestamps are RFC 3339 strings."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for r in rows:
            obj = {
                k: (v if v is None or isinstance(v, (bool, int, float, str)) else _text(v))
                for k, v in r.items()
            }
            f.write(json.dumps(obj) + "\n")
    return path


# ---------------------------------------------------------------------------
# canonical values
# ---------------------------------------------------------------------------
_FRACTION = re.compile(r"^(.*T\d\d:\d\d:\d\d)\.(\d+)(.*)$")


def _parse_datetime(text: str) -> datetime:
    s = text.strip().replace(" ", "T", 1)
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    m = _FRACTION.match(s)
    if m:  # Python wants at most 6 fractional digits
        s = f"{m.group(1)}.{m.group(2)[:6].ljust(6, '0')}{m.group(3)}"
    return datetime.fromisoformat(s)


def canonical(value: Any, typ: IcebergType) -> Any:
    """One value in canonical form for an Iceberg type (see module docstring)."""
    if value is None:
        return None
    if isinstance(typ, (IntegerType, LongType)):
        return int(value)
    if isinstance(typ, (FloatType, DoubleType)):
        v = float(value)
        # float columns go through 32 bits on one side: compare at float precision.
        return float(f"{v:.7g}") if isinstance(typ, FloatType) else v
    if isinstance(typ, DecimalType):
        return Decimal(str(value)).quantize(Decimal(1).scaleb(-typ.scale))
    if isinstance(typ, BooleanType):
        if isinstance(value, str):
            assert value.lower() in ("true", "false"), f"not a boolean: {value!r}"
            return value.lower() == "true"
        return bool(value)
    if isinstance(typ, DateType):
        if isinstance(value, datetime):
            return value.date()
        return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
    if isinstance(typ, TimestamptzType):
        dt = value if isinstance(value, datetime) else _parse_datetime(str(value))
        if dt.tzinfo is None:  # a timestamptz printed without offset is UTC
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.astimezone(timezone.utc)
    if isinstance(typ, TimestampType):
        dt = value if isinstance(value, datetime) else _parse_datetime(str(value))
        assert dt.tzinfo is None or dt.utcoffset().total_seconds() == 0, f"timestamp (no zone) printed with an offset: {value!r}"
        return dt.replace(tzinfo=None)
    if isinstance(typ, StringType):
        assert isinstance(value, str), f"expected a string, got {value!r}"
        return value
    if isinstance(typ, BinaryType):
        return bytes(value) if not isinstance(value, str) else value
    return value


def canonical_rows(rows: Iterable[dict[str, Any]], schema: Schema, who: str) -> list[dict[str, Any]]:
    """Rows in canonical form, with exactly the schema's columns, sorted by id."""
    names = [f.name for f in schema.fields]
    out = []
    for r in rows:
        extra = set(r) - set(names)
        assert not extra, f"{who}: unexpected columns {sorted(extra)} (table columns: {names}) in row {r}"
        # A JSON writer may leave out NULL columns: a missing key is NULL.
        out.append({f.name: canonical(r.get(f.name), f.field_type) for f in schema.fields})
    return sorted(out, key=lambda r: r["id"])


# ---------------------------------------------------------------------------
# reading a table both ways
# ---------------------------------------------------------------------------
def pyiceberg_rows(catalog: Catalog, table: str) -> list[dict[str, Any]]:
    t = catalog.load_table(table)
    return canonical_rows(t.scan().to_arrow().to_pylist(), t.schema(), "PyIceberg")


def gridata_rows(gridata, catalog: Catalog, table: str) -> list[dict[str, Any]]:
    schema = catalog.load_table(table).schema()
    return canonical_rows(gridata.sql(f"SELECT * FROM {table} ORDER BY id"), schema, "gridata sql")


def _show(r: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {v!s}" if v is not None else f"{k}: NULL" for k, v in r.items()) + "}"


def _rows_diff(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> str:
    lines = [f"  missing:    {_show(r)}" for r in want if r not in got]
    lines += [f"  unexpected: {_show(r)}" for r in got if r not in want]
    if not lines:  # same rows, different multiplicity
        lines = [f"  got:  {_show(r)}" for r in got] + [f"  want: {_show(r)}" for r in want]
    return "\n".join(lines)


def assert_rows(gridata, catalog: Catalog, table: str, expected: list[dict[str, Any]]) -> None:
    """PyIceberg's scan and Gridata's SQL both return exactly ``expected`` for ``table``."""
    schema = catalog.load_table(table).schema()
    want = canonical_rows(expected, schema, "expected")
    got = pyiceberg_rows(catalog, table)
    if got != want:
        raise AssertionError(f"PyIceberg's scan of {table} differs from the expected rows:\n{_rows_diff(got, want)}")
    got = gridata_rows(gridata, catalog, table)
    if got != want:
        raise AssertionError(f"`gridata sql` on {table} differs from the expected rows:\n{_rows_diff(got, want)}")


def data_file_count(catalog: Catalog, table: str) -> int:
    """How many data files a full scan of the current snapshot reads."""
    return len(list(catalog.load_table(table).scan().plan_files()))
