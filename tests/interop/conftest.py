"""Fixtures for the PyIceberg <-> Gridata interop tests.

* ``gridata``: runs the Gridata binary ($GRIDATA_BIN) against a fresh, initialised
  home directory (``gridata --home DIR init`` has already run).
* ``catalog``: a PyIceberg ``SqlCatalog`` opened on that same home, the way any
  Iceberg client would open a Gridata lakehouse.

Run them with ``scripts/test.sh``, which builds the binary and sets GRIDATA_BIN.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pyiceberg.catalog.sql import SqlCatalog

# Plain `assert`s in the shared helpers get pytest's detailed failure messages too.
pytest.register_assert_rewrite("interop_support")

HOW_TO_RUN = (
    "run the interop tests through scripts/test.sh (it builds target/debug/gridata and "
    "sets GRIDATA_BIN), or set GRIDATA_BIN to a built gridata binary"
)

# One gridata command should never take long on the tiny tables used here.
COMMAND_TIMEOUT_S = 120


class Gridata:
    """Runs ``gridata --home HOME ARGS...``; returns stdout, fails the test on a non-zero exit."""

    def __init__(self, binary: Path, home: Path):
        self.binary = binary
        self.home = home

    @property
    def catalog_db(self) -> Path:
        return self.home / "catalog.db"

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse"

    def run(self, *args: Any) -> subprocess.CompletedProcess[str]:
        """Runs gridata without checking the exit code."""
        cmd = [str(self.binary), "--home", str(self.home), *(str(a) for a in args)]
        env = dict(os.environ, NO_COLOR="1", RUST_BACKTRACE="1")
        try:
            return subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                env=env,
                timeout=COMMAND_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired as e:
            pytest.fail(
                f"`{shlex.join(cmd)}` did not finish in {COMMAND_TIMEOUT_S}s\n"
                f"--- stdout ---\n{e.stdout}\n--- stderr ---\n{e.stderr}",
                pytrace=False,
            )

    def __call__(self, *args: Any) -> str:
        proc = self.run(*args)
        if proc.returncode != 0:
            pytest.fail(
                f"`{shlex.join(proc.args)}` exited with {proc.returncode}\n"
                f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}",
                pytrace=False,
            )
        return proc.stdout

    def json(self, *args: Any) -> Any:
        """Runs a command that prints JSON (``--format json``) and parses its stdout."""
        out = self(*args)
        if not out.strip():
            # Tolerate an empty result set printed as nothing at all.
            return []
        try:
            return json.loads(out)
        except json.JSONDecodeError as e:
            pytest.fail(
                f"`gridata {shlex.join(str(a) for a in args)}` did not print valid JSON ({e}):\n{out}",
                pytrace=False,
            )

    def sql(self, query: str) -> list[dict[str, Any]]:
        rows = self.json("sql", query, "--format", "json")
        assert isinstance(rows, list), f"`gridata sql` should print a JSON array, got: {rows!r}"
        return rows

    def snapshots(self, table: str) -> list[dict[str, Any]]:
        snaps = self.json("table", "snapshots", table, "--format", "json")
        assert isinstance(snaps, list), f"`gridata table snapshots` should print a JSON array, got: {snaps!r}"
        return snaps


@pytest.fixture(scope="session")
def gridata_bin() -> Path:
    value = os.environ.get("GRIDATA_BIN")
    if not value:
        pytest.fail(f"GRIDATA_BIN is not set: {HOW_TO_RUN}", pytrace=False)
    path = Path(value)
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(f"GRIDATA_BIN={value} is not an executable file: {HOW_TO_RUN}", pytrace=False)
    return path


@pytest.fixture
def gridata(gridata_bin: Path, tmp_path: Path) -> Gridata:
    g = Gridata(gridata_bin, tmp_path / "home")
    g("init")
    return g


@pytest.fixture
def catalog(gridata: Gridata):
    cat = SqlCatalog(
        "gridata",
        uri=f"sqlite:///{gridata.catalog_db}",
        warehouse=f"file://{gridata.warehouse}/curated",
        # Use the tables that `gridata init` made; don't let PyIceberg create them.
        init_catalog_tables="false",
    )
    yield cat
    cat.engine.dispose()
