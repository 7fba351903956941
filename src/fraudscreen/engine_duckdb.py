"""The default engine: one embedded DuckDB connection per run.

Ingested tables are scanned where ingestion staged them (Parquet), frames given in
memory are registered as Arrow (no copy through Python rows), absent
optional tables as empty contract-typed tables, shipped reference data where the
data brings none; the shared sources are created once; then every compiled rule
runs as one statement. DuckDB gets a memory limit and a spill directory so a large
input spills to disk instead of failing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import sqlglot

from fraudscreen import expressions as ex
from fraudscreen.contract import INPUT_TABLES
from fraudscreen.reference import Table, resolve_inputs
from fraudscreen.screen import OutOfMemory, QueryTimeout
from fraudscreen.sources import QUARANTINED_REVERSALS


def connect(memory_limit: str = "1.5GB", temp_dir: Path | None = None,
            threads: int | None = None,
            con: duckdb.DuckDBPyConnection | None = None,
            spill_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """A new in-memory database, or ``con`` (a cursor on one), set up for screening.

    ``spill_limit``: the most the spill folder may hold (DuckDB's default is 90 % of the
    free disk, which a runaway rule on a shared server could take)."""
    if con is None:
        con = duckdb.connect()
    con.execute("USE memory")  # what the engine creates is scratch, never a store's
    con.execute(f"SET memory_limit = {ex.sql_string(str(memory_limit))}")
    con.execute("SET preserve_insertion_order = false")
    # Nothing a rule writes may fetch or load code (a cast to an extension's type would).
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    if temp_dir is not None:
        spill_to(con, temp_dir)
    if spill_limit is not None:
        con.execute(f"SET max_temp_directory_size = {ex.sql_string(str(spill_limit))}")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


def spill_to(con: duckdb.DuckDBPyConnection, folder: Path) -> None:
    """Where DuckDB spills beyond its memory limit (set before ``seal``: not after)."""
    folder.mkdir(parents=True, exist_ok=True)
    con.execute(f"SET temp_directory = {ex.sql_string(str(folder.resolve()))}")


@contextlib.contextmanager
def out_of_memory() -> Iterator[None]:
    """DuckDB's out-of-memory error as ``OutOfMemory``, saying which option to raise
    (its own text names its settings and a web page, not fraudscreen's options)."""
    try:
        yield
    except duckdb.OutOfMemoryException as err:
        text = str(err)
        what = text.splitlines()[0].removeprefix("Out of Memory Error: ").rstrip(".")
        advice = ("the spill folder reached --spill-limit: raise it or --memory-limit"
                  if "max_temp_directory_size" in text else
                  "raise --memory-limit (or --spill-limit, if given), or use --threads 1")
        raise OutOfMemory(f"out of memory: {what}; {advice}") from None


def seal(con: duckdb.DuckDBPyConnection, readable: Sequence[Path] = (),
         lock: bool = True) -> None:
    """After the inputs are registered: no file outside ``readable`` (the folders the
    input views scan), no network, and (``lock``) no setting changed. Rule expressions
    are checked against an allow-list already; this holds should one slip through.
    The spill folder must be set before: it cannot be changed after."""
    if readable:
        folders = ", ".join(ex.sql_string(str(f)) for f in sorted(set(readable)))
        con.execute(f"SET allowed_directories = [{folders}]")
    con.execute("SET enable_external_access = false")
    if lock:
        con.execute("SET lock_configuration = true")


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
                 threads: int | None = None, connection: duckdb.DuckDBPyConnection | None = None,
                 spill_limit: str | None = None):
        """``connection``: a cursor on a database whose tables the inputs read (the nightly
        store, attached); the engine's own relations still go to its in-memory catalog.
        An engine with its own database is sealed once its inputs are registered (the
        store's connection goes on to other work, so it is not)."""
        self.con = connect(memory_limit, temp_dir, threads, connection, spill_limit)
        self.sealable = connection is None
        self.registered = False

    def register(self, tables: dict[str, Table], watchlists: list[Path] | None = None,
                 quarantined_reversals: Sequence[str] = ()) -> dict[str, str]:
        if self.registered:  # a sealed database reads no file but the first inputs'
            raise RuntimeError("an engine registers its inputs once; make a new engine")
        self.registered = True
        origin = register_inputs(self.con, tables, watchlists, quarantined_reversals)
        if self.sealable:
            seal(self.con, [f.path.resolve().parent for t in tables.values()
                            for f in getattr(t, "files", ())])
        return origin

    def create_sources(self, window: dict[str, Any]) -> None:
        with out_of_memory():  # the materialised sources hold the run's largest tables
            create_sources(self.con, window)

    def query(self, sql: str, timeout: float | None = None) -> pl.DataFrame:
        """The statement's rows; past ``timeout`` seconds it is interrupted and
        ``QueryTimeout`` raised (a runaway rule must not hold the night forever).

        It runs in a thread while this one waits: Python handles Ctrl-C and SIGTERM only
        in the main thread, between its own steps, so a statement run here would hold a
        stop until it ended (found in review: a run went on for minutes). The wait
        interrupts the statement and re-raises the stop."""
        done: dict[str, Any] = {}

        def run() -> None:
            try:
                done["rows"] = self.con.sql(sql).to_arrow_table()
            except BaseException as err:  # handed to the waiting thread
                done["error"] = err

        worker = threading.Thread(target=run, name="duckdb-query", daemon=True)
        worker.start()
        deadline = time.monotonic() + timeout if timeout else None
        timed_out = False
        try:
            while worker.is_alive():
                worker.join(0.1)
                if deadline is not None and not timed_out and time.monotonic() > deadline:
                    timed_out = True
                    self.con.interrupt()
        except BaseException:  # a stop: the statement must not outlive it
            self.con.interrupt()
            worker.join()
            raise
        if "error" in done:
            if timed_out and isinstance(done["error"], duckdb.InterruptException):
                raise QueryTimeout(timeout) from None
            with out_of_memory():
                raise done["error"]
        return pl.from_arrow(done["rows"])

    def close(self) -> None:
        self.con.close()
