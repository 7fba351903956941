"""The Spark engine: the same compiled rules, transpiled to Spark SQL, on a SparkSession.

It mirrors ``engine_duckdb``: the run's tables become temp views ``input_<name>``
(absent optional tables empty but contract-typed, shipped reference data where the
data brings none), the shared sources become temp views, and every compiled rule
runs as one statement whose result comes back through Arrow as a polars frame with
the types DuckDB gives (decimals stay decimals). Tables may also come from Spark
itself — a catalog table or a Parquet path per input (``spark_tables``) — so a
cluster reads its own data instead of the driver shipping it.

SQL is transpiled with ``fraudscreen.dialects.FraudscreenSpark`` (sqlglot's Spark
with DuckDB's meaning for date_diff, epoch, generate_series and division). The
session is pinned to what those semantics need: time zone UTC and ANSI mode (an
overflow or a bad cast fails the rule instead of becoming NULL).

pyspark is an optional extra: ``pip install 'fraudscreen[spark]'`` and a Java 17+
runtime.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import sqlglot

from fraudscreen import expressions as ex
from fraudscreen.contract import INPUT_TABLES, ColumnType
from fraudscreen.dialects import SPARK
from fraudscreen.reference import Table, resolve_inputs
from fraudscreen.screen import QueryTimeout
from fraudscreen.sources import QUARANTINED_REVERSALS

DEFAULT_MASTER = "local[*]"
# Settings the transpiled SQL relies on; applied to every session, ours or given.
SEMANTICS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.ansi.enabled": "true",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # A product whose exact type needs more than 38 digits keeps its scale (as DuckDB
    # does), instead of being rounded to 6 places first: a sum of quantities times a
    # price at 4 places each, rounded twice, came out a fen high (found in review).
    "spark.sql.decimalOperations.allowPrecisionLoss": "false",
}
# What a rule's SQL must not reach, whatever slipped the checks: `${env:HOME}` in a string
# is substituted before Spark parses it, and parquet.`/path` reads a file (found in review).
SEALED = {
    "spark.sql.variable.substitute": "false",
    "spark.sql.runSQLOnFiles": "false",
}
# A small local session (2 cores, a few GB): set only when we start a local session.
LOCAL_DEFAULTS = {
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "4",
    "spark.driver.memory": "2g",
    "spark.sql.adaptive.enabled": "true",
    "spark.ui.showConsoleProgress": "false",
    # Spark's default is ./spark-warehouse, made the first time the catalog is asked
    # about a view: a stray folder in the user's working directory after every run.
    "spark.sql.warehouse.dir": str(Path(tempfile.gettempdir()) / "fraudscreen-spark-warehouse"),
}


# Below this many rows a table goes to Spark as a local relation, above as Parquet.
LOCAL_ROWS = 20_000


def _pyspark_major() -> int:
    try:
        from pyspark import __version__
    except ImportError:
        return 0
    return int(__version__.split(".")[0])


_PYSPARK_4 = _pyspark_major() >= 4

# Source views created per session: name → Spark SQL (see create_sources).
_SOURCE_VIEWS: dict[int, dict[str, str]] = {}


class SparkUnavailable(RuntimeError):
    """pyspark or Java is missing; the message says how to install them."""


def _require_pyspark():
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise SparkUnavailable(
            "the Spark engine needs pyspark: pip install 'fraudscreen[spark]' "
            "(and a Java 17+ runtime, e.g. Debian openjdk-17-jre-headless)") from None


def spark_type(ctype: ColumnType):
    from pyspark.sql import types as T

    if ctype is ColumnType.STRING:
        return T.StringType()
    if ctype is ColumnType.TIMESTAMP:
        return T.TimestampNTZType()  # DuckDB TIMESTAMP is wall-clock; sqlglot says NTZ
    if ctype is ColumnType.DATE:
        return T.DateType()
    if ctype is ColumnType.MONEY:
        return T.DecimalType(16, 2)
    if ctype is ColumnType.QUANTITY:
        return T.DecimalType(16, 4)
    if ctype is ColumnType.STRING_LIST:
        return T.ArrayType(T.StringType())
    raise ValueError(ctype)


def _arrow_type(ctype: ColumnType) -> pa.DataType:
    return {
        ColumnType.STRING: pa.string(),
        ColumnType.TIMESTAMP: pa.timestamp("us"),
        ColumnType.DATE: pa.date32(),
        ColumnType.MONEY: pa.decimal128(16, 2),
        ColumnType.QUANTITY: pa.decimal128(16, 4),
        ColumnType.STRING_LIST: pa.list_(pa.string()),
    }[ctype]


def contract_schema(name: str):
    from pyspark.sql import types as T

    return T.StructType([T.StructField(c.name, spark_type(c.type), True)
                         for c in INPUT_TABLES[name].columns])


def under_spark_submit() -> bool:
    """True when spark-submit started this Python (it then owns master and resources)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_session(master: str | None = "local[*]", config: dict[str, str] | None = None):
    """A SparkSession for fraudscreen: small local defaults, the semantics it needs.

    ``master=None`` leaves the master (and resources) to spark-submit or
    ``spark-defaults.conf``.
    """
    _require_pyspark()
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("fraudscreen")
    if master is not None:
        builder = builder.master(master)
    defaults = LOCAL_DEFAULTS if master and master.startswith("local") else {}
    for key, value in {**defaults, **SEMANTICS, **SEALED, **(config or {})}.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as err:  # most often: no Java runtime
        raise SparkUnavailable(f"cannot start Spark ({master}): {err}. Is Java 17+ "
                               "installed (Debian: openjdk-17-jre-headless)?") from err
    session.sparkContext.setLogLevel("WARN")
    return session


class SparkEngine:
    """The engine interface ``fraudscreen.screen`` drives, on Spark."""

    dialect = SPARK

    def __init__(self, master: str = DEFAULT_MASTER, spark_tables: dict[str, str] | None = None,
                 session=None, config: dict[str, str] | None = None,
                 temp_dir: Path | None = None, local_rows: int = LOCAL_ROWS):
        _require_pyspark()
        unknown = set(spark_tables or {}) - set(INPUT_TABLES)
        if unknown:
            raise ValueError(f"--spark-table: unknown input table(s) {', '.join(sorted(unknown))}"
                             f" (tables: {', '.join(INPUT_TABLES)})")
        self.spark_tables = dict(spark_tables or {})
        if session is None:
            from pyspark.sql import SparkSession

            if master == DEFAULT_MASTER and under_spark_submit():
                master = None  # spark-submit --master … decides
            session = SparkSession.getActiveSession()
            if session is not None and master not in (None, DEFAULT_MASTER,
                                                      session.sparkContext.master):
                session = None  # a different cluster was asked for
        self.spark = session or build_session(master, config)
        for key, value in {**SEMANTICS, **SEALED}.items():
            self.spark.conf.set(key, value)
        self._views: list[str] = []
        self._temp_dir = temp_dir
        self._made_temp: Path | None = None
        self.local_rows = local_rows

    # -- inputs ----------------------------------------------------------------------

    def register(self, tables: dict[str, Table], watchlists: list[Path] | None = None,
                 quarantined_reversals: Sequence[str] = ()) -> dict[str, str]:
        from pyspark.sql import types as T

        self._view(QUARANTINED_REVERSALS, self.spark.createDataFrame(
            [(i,) for i in quarantined_reversals],
            T.StructType([T.StructField("reversed_settlement_id", T.StringType())])))
        frames, origin = resolve_inputs(tables, watchlists, set(self.spark_tables))
        for name, frame in frames.items():
            if frame is not None and not isinstance(frame, pl.DataFrame):
                frame = frame.frame()  # a driver-side copy; large inputs: --spark-table
            df = self._from_polars(name, frame) if frame is not None else None
            if name in self.spark_tables:
                ref = self.spark_tables[name]
                if name != "watchlist" and tables.get(name) is not None:  # rows twice
                    raise ValueError(f"--spark-table {name}={ref}: table {name} is given "
                                     "twice (also among the tables read from the data)")
                external = self._external(name, ref)
                df = external if df is None else df.unionByName(external)
                origin[name] = (f"spark:{ref}" if name != "watchlist"
                                else f"drug_watchlists + spark:{ref}")
            if df is None:
                df = self.spark.createDataFrame([], contract_schema(name))
            self._view(f"input_{name}", df)
        return origin

    def _from_polars(self, name: str, frame: pl.DataFrame):
        spec = INPUT_TABLES[name]
        arrow = frame.select(spec.column_names).to_arrow()
        target = pa.schema([pa.field(c.name, _arrow_type(c.type)) for c in spec.columns])
        arrow = arrow.cast(target)
        if arrow.num_rows == 0:
            return self.spark.createDataFrame([], contract_schema(name))
        local = self.spark.sparkContext.master.startswith("local")
        if _PYSPARK_4 and (arrow.num_rows < self.local_rows or not local):
            # On a cluster the driver's temp folder is not the executors': ship the rows
            # (large inputs on a cluster belong in spark_tables, read where they live).
            return self.spark.createDataFrame(arrow, schema=contract_schema(name))
        # A large frame as a driver-side local relation is slow to build and to scan;
        # as Parquet Spark reads it natively and in parallel. (pyspark 3.5 takes no
        # Arrow table at all, so it always goes this way.)
        path = self._spill_dir() / f"{name}.parquet"
        pq.write_table(arrow, path)
        return self.spark.read.schema(contract_schema(name)).parquet(str(path))

    def _spill_dir(self) -> Path:
        if self._temp_dir is not None:
            self._temp_dir.mkdir(parents=True, exist_ok=True)
            return self._temp_dir
        if self._made_temp is None:
            self._made_temp = Path(tempfile.mkdtemp(prefix="fraudscreen-spark-"))
        return self._made_temp

    def _external(self, name: str, ref: str):
        """A catalog table or a Parquet path, renamed and cast to the contract."""
        from pyspark.sql import functions as F
        from pyspark.sql.utils import AnalysisException

        is_path = "/" in ref or ref.endswith(".parquet") or ":" in ref
        local = self.spark.sparkContext.master.startswith("local")
        if (is_path and local and "://" not in ref and not any(c in ref for c in "*?[{")
                and not Path(ref.removeprefix("file:")).exists()):
            # Checked here: Spark would first log a Java stack trace about it. (On a
            # cluster a path without a scheme is on its file system, not the driver's.)
            raise ValueError(f"--spark-table {name}={ref}: no such file or folder")
        try:
            df = self.spark.read.parquet(ref) if is_path else self.spark.table(ref)
        except AnalysisException as err:  # no such table, view or path
            first = str(err).strip().splitlines()[0]
            raise ValueError(f"--spark-table {name}={ref}: Spark cannot read it as "
                             f"{'a Parquet path' if is_path else 'a catalog table or view'}"
                             f": {first}") from None
        spec = INPUT_TABLES[name]
        aliases = {k.lower(): v for k, v in spec.header_aliases().items()}
        present = {aliases[c.lower()]: c for c in df.columns if c.lower() in aliases}
        missing = [c.name for c in spec.columns if c.name not in present and not c.nullable]
        if missing:
            raise ValueError(f"spark table {ref} for {name}: missing column(s) "
                             f"{', '.join(missing)}")
        cols = [(F.col(f"`{present[c.name]}`") if c.name in present else F.lit(None))
                .cast(spark_type(c.type)).alias(c.name) for c in spec.columns]
        return df.select(*cols)

    def _view(self, name: str, df) -> None:
        df.createOrReplaceTempView(name)
        self._views.append(name)

    # -- sources and queries ---------------------------------------------------------

    def create_sources(self, window: dict[str, Any] | None) -> None:
        """Create the shared sources as temp views, with the run window bound.

        A view reads its inputs by name when queried, so a view whose SQL is unchanged
        since an earlier run on this session is kept: creating (analysing) fourteen
        views costs a second or more, which small runs and rule tests feel.
        """
        from fraudscreen.compiler import transpile
        from fraudscreen.sources import SOURCES

        values = window or {"window_start": dt.date(2000, 1, 1),
                            "window_end": dt.date(2099, 12, 31), "filter_window": False}
        created = _SOURCE_VIEWS.setdefault(id(self.spark), {})
        for source in SOURCES:
            body = source.sql or f'SELECT * FROM "input_{source.name}"'
            tree = ex.bind(sqlglot.parse_one(body, read="duckdb"), values)
            sql = transpile(tree.sql("duckdb"), self.dialect, pretty=False)
            if created.get(source.name) == sql and self._is_temp_view(source.name):
                continue
            self.spark.sql(f"CREATE OR REPLACE TEMP VIEW `{source.name}` AS {sql}")
            created[source.name] = sql

    def _is_temp_view(self, name: str) -> bool:
        try:
            return bool(self.spark.catalog.getTable(name).isTemporary)
        except Exception:  # AnalysisException: no such table or view
            return False

    def query(self, sql: str, timeout: float | None = None) -> pl.DataFrame:
        """The statement's rows; past ``timeout`` seconds its jobs are cancelled and
        ``QueryTimeout`` raised. The watchdog goes on cancelling until the statement
        gives up: a job submitted after the first cancel (planning can take longer than
        a short timeout) would otherwise run to its end."""
        if not timeout:
            return to_polars(self.spark.sql(sql))
        sc, group = self.spark.sparkContext, f"fraudscreen-{uuid.uuid4().hex}"
        sc.setJobGroup(group, "fraudscreen rule", interruptOnCancel=True)
        done, fired = threading.Event(), threading.Event()

        def watchdog() -> None:
            if done.wait(timeout):
                return
            fired.set()
            while not done.is_set():
                sc.cancelJobGroup(group)
                done.wait(0.5)

        threading.Thread(target=watchdog, name="fraudscreen-timeout", daemon=True).start()
        try:
            return to_polars(self.spark.sql(sql))
        except Exception:
            if fired.is_set():
                raise QueryTimeout(timeout) from None
            raise
        finally:
            done.set()

    def close(self) -> None:
        """Drop this run's inputs; the session (and the source views) stay for the next run."""
        for name in reversed(self._views):
            self.spark.catalog.dropTempView(name)
        self._views = []
        if self._made_temp is not None:
            shutil.rmtree(self._made_temp, ignore_errors=True)
            self._made_temp = None

    def stop(self) -> None:
        self.close()
        _SOURCE_VIEWS.pop(id(self.spark), None)
        self.spark.stop()


def to_polars(df) -> pl.DataFrame:
    """A Spark result as polars with DuckDB's types: decimals, dates, naive times, lists."""
    if hasattr(df, "toArrow"):  # pyspark >= 4
        table = df.toArrow()
    else:  # pyspark 3.5
        from pyspark.sql.pandas.types import to_arrow_schema

        batches = df._collect_as_arrow()
        table = pa.Table.from_batches(batches, schema=to_arrow_schema(df.schema))
    return pl.from_arrow(_normalise(table))


def _normalise(table: pa.Table) -> pa.Table:
    fields = []
    for f in table.schema:
        t = f.type
        if pa.types.is_timestamp(t):
            t = pa.timestamp("us")  # Spark hands NTZ back naive; an LTZ value is UTC
        elif pa.types.is_large_string(t):
            t = pa.string()
        elif pa.types.is_large_list(t):
            t = pa.list_(t.value_type)
        fields.append(pa.field(f.name, t))
    target = pa.schema(fields)
    return table if target.equals(table.schema) else table.cast(target)
