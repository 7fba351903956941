"""The default engine: one embedded DuckDB connection per run.

Ingested tables are scanned where ingestion staged them (Parquet), frames given in
memory are registered as Arrow (no copy through Python rows), absent
optional tables as empty contract-typed tables, shipped reference data where the
data brings none; the shared sources are created once; then every compiled rule
runs as one statement. DuckDB gets a memory limit and a spill directory so a large
input spills to disk instead of failing.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import sqlglot

from fraudscreen import expressions as ex
from fraudscreen.contract import INPUT_TABLES
from fraudscreen.reference import Table, resolve_inputs
from fraudscreen.screen import QueryTimeout
from fraudscreen.sources import QUARANTINED_REVERSALS


def connect(memory_limit: str = "1.5GB", temp_dir: Path | None = None,
            threads: int | None = None,
            con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
    """A new in-memory database, or ``con`` (a cursor on one), set up for screening."""
    if con is None:
        con = duckdb.connect()
    con.execute("USE memory")  # what the engine creates is scratch, never a store's
    con.execute(f"SET memory_limit = {ex.sql_string(str(memory_limit))}")
    con.execute("SET preserve_insertion_order = false")
    # Nothing a rule writes may fetch or load code (a cast to an extension's type would).
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    if temp_dir is not None:
        temp_dir.mkdir(parents=True, exist_ok=True)
        con.execute(f"SET temp_directory = {ex.sql_string(str(temp_dir.resolve()))}")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


def _empty_sql(name: str) -> str:
    cols = ", ".join(f'"{c.name}" {c.type.sql}' for c in INPUT_TABLES[name].columns)
    return f'CREATE OR REPLACE TABLE "input_{name}" ({cols})'


def register_empty(con: duckdb.DuckDBPyConnection) -> None:
    """Every input table, empty: enough to create the sources and describe them."""
    for name in INPUT_TABLES:
        con.execute(_empty_sql(name))
    register_reversals(con, [])


def register_reversals(con: duckdb.DuckDBPyConnection, settlement_ids: Sequence[str]
                       ) -> None:
    """The settlements quarantined reversal rows name (``sources.QUARANTINED_REVERSALS``)."""
    frame = pl.DataFrame({"reversed_settlement_id": list(settlement_ids)}, schema={
        "reversed_settlement_id": pl.String})
    con.register(QUARANTINED_REVERSALS, frame.to_arrow())


def register_inputs(con: duckdb.DuckDBPyConnection, tables: dict[str, Table],
                    watchlists: list[Path] | None = None,
                    quarantined_reversals: Sequence[str] = ()) -> dict[str, str]:
    """Register the run's tables; returns where each came from (for run.json)."""
    register_reversals(con, quarantined_reversals)
    frames, origin = resolve_inputs(tables, watchlists)
    for name, frame in frames.items():
        if frame is None:
            con.execute(_empty_sql(name))
        elif not isinstance(frame, pl.DataFrame):
            # Scanned where it lies (staged Parquet, the store): none of it held in memory.
            con.execute(f'CREATE OR REPLACE VIEW "input_{name}" AS {frame.sql()}')
        else:
            # Zero-copy: DuckDB scans the Arrow buffers in place. (Copying into DuckDB's
            # own storage was measured slower overall: the copy costs more than it saves.)
            con.register(f"input_{name}", frame.to_arrow())
    return origin


def create_sources(con: duckdb.DuckDBPyConnection, window: dict[str, Any] | None) -> None:
    """Create the shared sources as views, with the run window bound."""
    from fraudscreen.sources import SOURCES

    values = window or {"window_start": dt.date(2000, 1, 1),
                        "window_end": dt.date(2099, 12, 31), "filter_window": False}
    for source in SOURCES:
        body = source.sql or f'SELECT * FROM "input_{source.name}"'
        tree = ex.bind(sqlglot.parse_one(body, read="duckdb"), values)
        kind = "TABLE" if source.materialize else "VIEW"
        con.execute(f'CREATE OR REPLACE {kind} "{source.name}" AS {tree.sql("duckdb")}')


class DuckDBEngine:
    """The engine interface ``fraudscreen.screen`` drives (Spark has the same)."""

    dialect = "duckdb"

    def __init__(self, memory_limit: str = "1.5GB", temp_dir: Path | None = None,
                 threads: int | None = None, connection: duckdb.DuckDBPyConnection | None = None):
        """``connection``: a cursor on a database whose tables the inputs read (the nightly
        store, attached); the engine's own relations still go to its in-memory catalog."""
        self.con = connect(memory_limit, temp_dir, threads, connection)

    def register(self, tables: dict[str, Table], watchlists: list[Path] | None = None,
                 quarantined_reversals: Sequence[str] = ()) -> dict[str, str]:
        return register_inputs(self.con, tables, watchlists, quarantined_reversals)

    def create_sources(self, window: dict[str, Any]) -> None:
        create_sources(self.con, window)

    def query(self, sql: str, timeout: float | None = None) -> pl.DataFrame:
        """The statement's rows; past ``timeout`` seconds it is interrupted and
        ``QueryTimeout`` raised (a runaway rule must not hold the night forever)."""
        if not timeout:
            return pl.from_arrow(self.con.sql(sql).to_arrow_table())
        watchdog = threading.Timer(timeout, self.con.interrupt)
        watchdog.start()
        try:
            return pl.from_arrow(self.con.sql(sql).to_arrow_table())
        except duckdb.InterruptException:
            if watchdog.finished.is_set():  # ours, not a Ctrl-C
                raise QueryTimeout(timeout) from None
            raise
        finally:
            watchdog.cancel()

    def close(self) -> None:
        self.con.close()
