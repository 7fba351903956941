"""The nightly store: one embedded DuckDB file holding everything a bureau's nights need.

=============  ===================================================================
table          holds
=============  ===================================================================
meta           ``schema_version`` (and nothing else yet)
files          every input file ever ingested: sha256 (key), table, path in the
               inbox, size and mtime (a cache: an unchanged file is not hashed
               again), rows read, the night that ingested it
settlements,   the contract's input tables (columns and types from
fee_lines, …   ``fraudscreen.contract``), clean rows only, plus ``ingest_night``
quarantine     rows that could not be used, as ``validate`` reports them (its
               ``record_key`` empty on nights before it existed), plus the night; rows
               whose key was already stored are ``duplicate key``
suspicions     the contract's suspicion columns plus ``status`` (open, retracted,
               superseded), ``reason``, ``first_night``, ``last_night`` (last night
               a screening found it), ``status_night``, ``reported_night`` (night it
               was last shown as a lead; null = not yet), ``changed_night`` (last
               night its figures changed) and ``changes`` (JSON list
               of events: new, changed with before/after, retracted, superseded,
               reopened)
feedback       investigators' 核查结果, one row per suspicion per import
suppressions   rule × entity (institution, person, item) × expiry, with reason and
               owner
nights         one row per night that changed the store, with its counts, the
               rule-set fingerprint and whether its outputs were written
=============  ===================================================================

Every change a night makes is one transaction (see ``fraudscreen.nightly``).
``docs/nightly.md`` is the user-facing account.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from fraudscreen.contract import INPUT_TABLES, SUSPICIONS, Table
from fraudscreen.expressions import sql_string
from fraudscreen.ingest import StagedTable

SCHEMA_VERSION = "1"
CATALOG = "store"  # the name the store file is attached under
STATUSES = ("open", "retracted", "superseded")
INGEST_NIGHT = "ingest_night"


class StoreError(Exception):
    """The store cannot be used; the message says why."""


def _columns(table: Table) -> str:
    return ", ".join(f'"{c.name}" {c.type.sql}' for c in table.columns)


SUSPICION_EXTRA = {
    "status": "VARCHAR NOT NULL",
    "reason": "VARCHAR",
    "first_night": "INTEGER NOT NULL",
    "last_night": "INTEGER NOT NULL",
    "status_night": "INTEGER NOT NULL",
    "reported_night": "INTEGER",
    "changed_night": "INTEGER",
    "changes": "VARCHAR NOT NULL",
}

DDL = [
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    'CREATE TABLE IF NOT EXISTS files (sha256 VARCHAR PRIMARY KEY, "table" VARCHAR NOT NULL, '
    "path VARCHAR NOT NULL, size BIGINT NOT NULL, mtime_ns BIGINT NOT NULL, "
    "rows BIGINT NOT NULL, night INTEGER NOT NULL)",
    *(f'CREATE TABLE IF NOT EXISTS "{t.name}" ({_columns(t)}, {INGEST_NIGHT} INTEGER NOT NULL)'
      for t in INPUT_TABLES.values()),
    'CREATE TABLE IF NOT EXISTS quarantine ("table" VARCHAR, file VARCHAR, line BIGINT, '
    '"column" VARCHAR, value VARCHAR, reason VARCHAR, night INTEGER NOT NULL, '
    "record_key VARCHAR)",
    # A store made before record_key gets it, empty for the nights it already holds.
    "ALTER TABLE quarantine ADD COLUMN IF NOT EXISTS record_key VARCHAR",
    # No PRIMARY KEY: a night rewrites the table inside its transaction, and uniqueness
    # of suspicion_id holds by construction (fraudscreen.nightly.merge).
    f"CREATE TABLE IF NOT EXISTS suspicions ({_columns(SUSPICIONS)}, "
    + ", ".join(f"{k} {v}" for k, v in SUSPICION_EXTRA.items()) + ")",
    "CREATE TABLE IF NOT EXISTS feedback (import_id INTEGER NOT NULL, row_no INTEGER NOT NULL, "
    "suspicion_id VARCHAR NOT NULL, lead_id VARCHAR, result VARCHAR NOT NULL, "
    "amount_recovered DECIMAL(16,2), note VARCHAR, reviewer VARCHAR, source VARCHAR, "
    "imported_at TIMESTAMP NOT NULL)",
    "CREATE TABLE IF NOT EXISTS suppressions (suppression_id INTEGER PRIMARY KEY, "
    "rule_id VARCHAR NOT NULL, entity_kind VARCHAR NOT NULL, entity_id VARCHAR NOT NULL, "
    "reason VARCHAR NOT NULL, owner VARCHAR NOT NULL, until DATE NOT NULL, "
    "created TIMESTAMP NOT NULL)",
    "CREATE TABLE IF NOT EXISTS nights (night INTEGER PRIMARY KEY, night_date DATE NOT NULL, "
    "started TIMESTAMP NOT NULL, finished TIMESTAMP, inbox VARCHAR, out VARCHAR, "
    "files INTEGER NOT NULL, rows_kept BIGINT NOT NULL, rows_quarantined BIGINT NOT NULL, "
    "new INTEGER NOT NULL, changed INTEGER NOT NULL, retracted INTEGER NOT NULL, "
    "superseded INTEGER NOT NULL, reopened INTEGER NOT NULL, open_total INTEGER NOT NULL, "
    "ruleset_hash VARCHAR NOT NULL, rules_failed INTEGER NOT NULL, "
    "outputs_written BOOLEAN NOT NULL)",
]

# Columns that differ between two correct histories of the same nights (wall-clock
# times); everything else must be equal. See ``snapshot``.
VOLATILE = {"nights": ("started", "finished", "out"), "feedback": ("imported_at",),
            "suppressions": ("created",)}
TABLES = ("meta", "files", *INPUT_TABLES, "quarantine", "suspicions", "feedback",
          "suppressions", "nights")


def open_store(path: Path, create: bool = True, read_only: bool = False
               ) -> duckdb.DuckDBPyConnection:
    """Connect to the store (creating it when asked), with its schema in place."""
    from fraudscreen.output import resolved

    path = Path(path)
    try:
        resolved(path, "--store")
    except ValueError as err:
        raise StoreError(str(err)) from None
    if not path.exists() and not create:
        raise StoreError(f"{path}: no such store. The first night makes it: `fraudscreen "
                         "nightly --new-store`; if the store moved or its disk is not "
                         "mounted, give its path (a new store would report every lead "
                         "again as new)")
    if path.exists() and path.is_dir():
        raise StoreError(f"{path}: is a folder, not a store file")
    path.parent.mkdir(parents=True, exist_ok=True)
    # The store is attached to an in-memory database, so that a screening on a cursor
    # of this connection reads the store's tables while creating its own scratch
    # relations in memory, never in the store (see ``StoredTable``).
    con = duckdb.connect()
    # TYPE DUCKDB: without it DuckDB takes a .parquet or .csv path for another kind of
    # database, an in-memory one, and a night "committed" to it would be lost.
    mode = ", READ_ONLY" if read_only and path.exists() else ""
    try:
        con.execute(f"ATTACH {sql_string(str(path.resolve()))} AS {CATALOG} (TYPE DUCKDB{mode})")
        con.execute(f"USE {CATALOG}")
    except duckdb.IOException as err:
        held = "lock" in str(err).lower()  # DuckDB: "Could not set lock on file"
        raise StoreError(f"{path}: cannot open the store ({_first_line(err)})"
                         + ("; another process has it open: a night still running, or a "
                            "duckdb shell or BI tool left connected (query a copy instead)"
                            if held else "")
                         ) from None
    except duckdb.Error as err:
        raise StoreError(f"{path}: not a fraudscreen store ({_first_line(err)})") from None
    if read_only:
        _check_version(con, path)
        return con
    with transaction(con):
        for statement in DDL:
            con.execute(statement)
        con.execute("INSERT INTO meta SELECT 'schema_version', ? WHERE NOT EXISTS "
                    "(SELECT 1 FROM meta WHERE key = 'schema_version')", [SCHEMA_VERSION])
    _check_version(con, path)
    return con


def _check_version(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    try:
        rows = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
        row = rows[0] if rows else None
    except duckdb.Error:
        raise StoreError(f"{path}: not a fraudscreen store (no meta table)") from None
    if row is None or row[0] != SCHEMA_VERSION:
        raise StoreError(f"{path}: store schema version {row and row[0]!r}; this fraudscreen "
                         f"reads version {SCHEMA_VERSION}")


@dataclass(frozen=True)
class StoredTable:
    """An input table as the store holds it, plus the night's new rows (not yet stored):
    what a night screens, scanned in place rather than loaded."""

    name: str
    con: duckdb.DuckDBPyConnection  # a cursor on the store's connection
    new: StagedTable | None = None
    where: str | None = None  # keep only these rows (a nightly re-screen of some persons)

    def sql(self) -> str:
        cols = ", ".join(f'"{c}"' for c in INPUT_TABLES[self.name].column_names)
        stored = f'SELECT {cols} FROM {CATALOG}.main."{self.name}"'
        rows = stored if self.new is None else f"{stored} UNION ALL {self.new.sql()}"
        return rows if self.where is None else f"SELECT * FROM ({rows}) WHERE {self.where}"

    def frame(self) -> pl.DataFrame:
        got = self.con.sql(self.sql()).pl()
        return got.select(pl.col(c.name).cast(c.type.polars)
                          for c in INPUT_TABLES[self.name].columns)


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """The block's statements in one transaction: committed at its end, rolled back on
    any error, which is the one raised. A COMMIT that failed (disk full) has already
    ended the transaction, and ROLLBACK's own error would hide the cause."""
    con.execute("BEGIN")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise


def frame(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pl.DataFrame:
    return con.sql(sql, params=params).pl() if params else con.sql(sql).pl()


def present_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Tables that at least one ingested file brought (the others count as absent)."""
    have = {r[0] for r in con.execute('SELECT DISTINCT "table" FROM files').fetchall()}
    return [name for name in INPUT_TABLES if name in have]


def suspicions(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    return frame(con, "SELECT * FROM suspicions ORDER BY suspicion_id")


def contract_shape(frame_: pl.DataFrame) -> pl.DataFrame:
    return frame_.select(pl.col(c.name).cast(c.type.polars) for c in SUSPICIONS.columns)


def last_night(con: duckdb.DuckDBPyConnection) -> dict | None:
    rows = frame(con, "SELECT * FROM nights ORDER BY night DESC LIMIT 1")
    return rows.row(0, named=True) if rows.height else None


def active_suppressions(con: duckdb.DuckDBPyConnection, today: dt.date) -> pl.DataFrame:
    return frame(con, "SELECT * FROM suppressions WHERE until >= ? ORDER BY suppression_id",
                 [today])


def suppressed_by(suspicions_: pl.DataFrame, active: pl.DataFrame) -> pl.Series:
    """For each suspicion, the lowest id of an active suppression covering it (or null)."""
    entity_column = {"institution": "institution_id", "person": "person_id",
                     "item": "item_code"}
    ids = suspicions_.select("suspicion_id", "rule_id", *entity_column.values())
    hits = []
    for kind, column in entity_column.items():
        rows = active.filter(pl.col("entity_kind") == kind).select(
            "suppression_id", "rule_id", pl.col("entity_id").alias(column))
        if rows.height:
            hits.append(ids.join(rows, on=["rule_id", column]).select(
                "suspicion_id", "suppression_id"))
    found = (pl.concat(hits).group_by("suspicion_id").agg(pl.col("suppression_id").min())
             if hits else pl.DataFrame(schema={"suspicion_id": pl.String,
                                               "suppression_id": pl.Int32}))
    return (ids.select("suspicion_id")
            .join(found, on="suspicion_id", how="left", maintain_order="left")
            ["suppression_id"].alias("suppressed_by"))


def snapshot(path: Path) -> dict[str, list[tuple]]:
    """Every table's rows, sorted, without wall-clock columns: two stores that went
    through the same nights (however often interrupted) give equal snapshots."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        out = {}
        for name in TABLES:
            cols = [r[0] for r in con.execute(f'DESCRIBE "{name}"').fetchall()
                    if r[0] not in VOLATILE.get(name, ())]
            quoted = ", ".join(f'"{c}"' for c in cols)
            rows = con.execute(f'SELECT {quoted} FROM "{name}"').fetchall()
            out[name] = sorted(rows, key=repr)
        return out
    finally:
        con.close()


# --- export -------------------------------------------------------------------------

def export(con: duckdb.DuckDBPyConnection, out: Path, include_all: bool,
           today: dt.date) -> int:
    """Write the open, unsuppressed suspicions (contract shape) to ``out``.

    With ``include_all`` every stored suspicion is written, retracted, superseded and
    suppressed ones too, with ``status``, ``reason``, ``suppressed_by`` and the night
    columns after the contract's. Parquet, or CSV when ``out`` ends in ``.csv``;
    written aside and moved into place. Returns the number of rows.
    """
    from fraudscreen.output import write_csv, write_parquet
    from fraudscreen.suspicion import order

    rows = suspicions(con)
    rows = rows.with_columns(suppressed_by(rows, active_suppressions(con, today)))
    if include_all:
        extra = ["status", "reason", "suppressed_by", "first_night", "last_night",
                 "status_night", "reported_night", "changed_night", "changes"]
        shaped = order(contract_shape(rows).with_columns(rows.select(extra)))
    else:
        shaped = order(contract_shape(rows.filter(
            (pl.col("status") == "open") & pl.col("suppressed_by").is_null())))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        if out.suffix.lower() == ".csv":
            write_csv(shaped, tmp)
        else:
            write_parquet(shaped, tmp)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return shaped.height


# --- feedback (核查结果) --------------------------------------------------------------

RESULTS = {"属实": "confirmed", "不属实": "dismissed", "confirmed": "confirmed",
           "dismissed": "dismissed"}
FEEDBACK_HEADERS = {
    "suspicion_id": ("suspicion_id", "疑点编号"),
    "lead_id": ("lead_id", "线索对象编号", "线索编号"),
    "lead_type": ("lead_type", "线索类型"),
    "result": ("result", "核查结果"),
    "amount_recovered": ("amount_recovered", "追回金额", "追回金额（元）"),
    "note": ("note", "备注", "核查说明"),
    "reviewer": ("reviewer", "核查人"),
}
LEAD_TYPES = {"institution": "institution_id", "person": "person_id",
              "机构": "institution_id", "人员": "person_id"}


class FeedbackError(ValueError):
    """The feedback file cannot be imported; nothing was."""


def read_feedback(path: Path) -> pl.DataFrame:
    """The CSV as text columns named as in FEEDBACK_HEADERS (UTF-8, UTF-8-BOM or GB18030)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise FeedbackError(f"{path}: cannot read it: {err.strerror or err}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("gb18030")
        except UnicodeDecodeError:
            raise FeedbackError(f"{path}: neither UTF-8 nor GB18030") from None
    try:
        raw = pl.read_csv(text.encode("utf-8"), infer_schema=False)
    except pl.exceptions.PolarsError as err:
        raise FeedbackError(f"{path}: cannot read as CSV: {str(err).splitlines()[0]}") from None
    aliases = {a.casefold(): name for name, names in FEEDBACK_HEADERS.items() for a in names}
    renamed: dict[str, str] = {}
    for header in raw.columns:
        name = aliases.get(header.strip().casefold())
        if name in renamed.values():
            first = next(h for h, n in renamed.items() if n == name)
            raise FeedbackError(f"{path}: headers {first!r} and {header!r} both mean {name}; "
                                "which column is meant?")
        if name:
            renamed[header] = name
    frame = raw.select([pl.col(h).str.strip_chars().alias(n) for h, n in renamed.items()])
    if "result" not in frame.columns:
        raise FeedbackError(f"{path}: needs a column result (核查结果: 属实 / 不属实)")
    if "suspicion_id" not in frame.columns and "lead_id" not in frame.columns:
        raise FeedbackError(f"{path}: needs a column suspicion_id (疑点编号) or lead_id "
                            "(线索对象编号)")
    for name in FEEDBACK_HEADERS:
        if name not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.String).alias(name))
    return frame.with_columns(pl.when(pl.col(c).str.len_chars() > 0).then(pl.col(c))
                              for c in FEEDBACK_HEADERS).with_row_index("row_no", offset=2)


def import_feedback(con: duckdb.DuckDBPyConnection, path: Path) -> dict[str, int]:
    """Import investigators' results, all rows or none; returns counts.

    A row names a suspicion (``suspicion_id``) or a lead (``lead_id``: an institution
    or person id from leads.xlsx; ``lead_type`` institution/person when an id could
    be both). A lead's result applies to every suspicion of that lead that was
    reported; its amount recovered is shared among them in proportion to their
    amount at risk. The latest import wins for a suspicion.
    """
    from decimal import ROUND_DOWN, Decimal, InvalidOperation

    rows = read_feedback(path)
    stored = frame(con, "SELECT suspicion_id, institution_id, person_id, amount_at_risk, "
                        "reported_night FROM suspicions")
    known = set(stored["suspicion_id"].to_list())
    reported = stored.filter(pl.col("reported_night").is_not_null())
    problems: list[str] = []
    unknown: list[str] = []
    out: list[dict] = []
    for r in rows.iter_rows(named=True):
        line = r["row_no"]
        result = RESULTS.get(r["result"] or "")
        if result is None:
            problems.append(f"line {line}: result {r['result']!r} (write 属实 or 不属实)")
            continue
        amount = None
        if r["amount_recovered"] is not None:
            try:
                text = r["amount_recovered"].replace(",", "").strip()
                if not re.fullmatch(r"\d+(\.\d*)?|\.\d+", text):  # no 1e3, no sign
                    raise InvalidOperation
                amount = Decimal(text).quantize(Decimal("0.01"))
                if amount >= Decimal("1e14"):  # beyond DECIMAL(16,2)
                    raise InvalidOperation
            except InvalidOperation:
                problems.append(f"line {line}: amount_recovered {r['amount_recovered']!r} "
                                "is not an amount in yuan")
                continue
        common = {"row_no": line, "result": result, "note": r["note"],
                  "reviewer": r["reviewer"], "lead_id": r["lead_id"]}
        if r["suspicion_id"] is not None:
            if r["suspicion_id"] not in known:
                unknown.append(r["suspicion_id"])
                continue
            if r["lead_id"] is not None and r["lead_id"] not in stored.filter(
                    pl.col("suspicion_id") == r["suspicion_id"]).select(
                    "institution_id", "person_id").row(0):
                problems.append(f"line {line}: suspicion {r['suspicion_id']} is not of lead "
                                f"{r['lead_id']}")
                continue
            out.append({**common, "suspicion_id": r["suspicion_id"], "amount_recovered": amount})
            continue
        if r["lead_id"] is None:
            problems.append(f"line {line}: neither suspicion_id nor lead_id")
            continue
        kinds = ([LEAD_TYPES[r["lead_type"]]] if r["lead_type"] in LEAD_TYPES
                 else list(dict.fromkeys(LEAD_TYPES.values())))
        if r["lead_type"] is not None and r["lead_type"] not in LEAD_TYPES:
            problems.append(f"line {line}: lead_type {r['lead_type']!r} (institution or person)")
            continue
        matches = {k: reported.filter(pl.col(k) == r["lead_id"]) for k in kinds}
        matches = {k: m for k, m in matches.items() if m.height}
        if not matches:
            unknown.append(r["lead_id"])
            continue
        if len(matches) > 1:
            problems.append(f"line {line}: lead {r['lead_id']} is both an institution and a "
                            "person; add a lead_type column")
            continue
        members = next(iter(matches.values())).sort(
            ["amount_at_risk", "suspicion_id"], descending=[True, False])
        shares = [None] * members.height
        if amount is not None:
            weights = [Decimal(a or 0) for a in members["amount_at_risk"].to_list()]
            total = sum(weights)
            shares = [(amount * w / total).quantize(Decimal("0.01"), ROUND_DOWN) if total
                      else Decimal("0.00") for w in weights]
            shares[0] += amount - sum(shares)
        for sid, share in zip(members["suspicion_id"].to_list(), shares, strict=True):
            out.append({**common, "suspicion_id": sid, "amount_recovered": share})
    problems += _contradictions(out)
    if unknown:
        problems.insert(0, "unknown suspicion or lead id(s): "
                        + ", ".join(dict.fromkeys(unknown)))
    if problems:
        raise FeedbackError(f"{path}: nothing imported; " + "; ".join(problems))
    if not out:
        raise FeedbackError(f"{path}: no feedback rows")
    import_id = con.execute(
        "SELECT coalesce(max(import_id), 0) + 1 FROM feedback").fetchall()[0][0]
    now = dt.datetime.now().replace(microsecond=0)
    table = pl.DataFrame(
        [{**row, "import_id": import_id, "source": str(path), "imported_at": now} for row in out],
        schema={"import_id": pl.Int32, "row_no": pl.Int32, "suspicion_id": pl.String,
                "lead_id": pl.String, "result": pl.String, "amount_recovered": pl.Decimal(16, 2),
                "note": pl.String, "reviewer": pl.String, "source": pl.String,
                "imported_at": pl.Datetime("us")}, orient="row")
    with transaction(con):
        con.register("_feedback", table.to_arrow())
        con.execute("INSERT INTO feedback BY NAME SELECT * FROM _feedback")
        con.unregister("_feedback")
    return {"rows": rows.height, "suspicions": table["suspicion_id"].n_unique(),
            "confirmed": table.filter(pl.col("result") == "confirmed").height,
            "dismissed": table.filter(pl.col("result") == "dismissed").height}


def _contradictions(rows: list[dict]) -> list[str]:
    """Suspicions one file calls both 属实 and 不属实 (directly or through their lead):
    which result holds, the file does not say."""
    lines: dict[str, dict[str, list[int]]] = {}
    for row in rows:
        lines.setdefault(row["suspicion_id"], {}).setdefault(row["result"], []).append(
            row["row_no"])
    return [f"suspicion {sid} is both 属实 and 不属实 (lines "
            f"{', '.join(str(n) for n in sorted(n for ns in by.values() for n in ns))})"
            for sid, by in lines.items() if len(by) > 1]


def rule_stats(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Per rule: hits (all suspicions ever stored), open, reviewed (latest feedback per
    suspicion), confirmed, dismissed, precision = confirmed / reviewed, amount recovered."""
    return frame(con, """
        WITH latest AS (
            SELECT * FROM feedback
            QUALIFY row_number() OVER (PARTITION BY suspicion_id
                                       ORDER BY import_id DESC, row_no DESC) = 1)
        SELECT s.rule_id,
               count(*) AS hits,
               count(*) FILTER (WHERE s.status = 'open') AS open,
               count(*) FILTER (WHERE s.status = 'retracted') AS retracted,
               count(*) FILTER (WHERE s.status = 'superseded') AS superseded,
               count(l.suspicion_id) AS reviewed,
               count(*) FILTER (WHERE l.result = 'confirmed') AS confirmed,
               count(*) FILTER (WHERE l.result = 'dismissed') AS dismissed,
               CASE WHEN count(l.suspicion_id) > 0 THEN round(
                   count(*) FILTER (WHERE l.result = 'confirmed') / count(l.suspicion_id), 3)
               END AS precision,
               CAST(coalesce(sum(l.amount_recovered), 0) AS DECIMAL(18,2)) AS amount_recovered,
               CAST(coalesce(sum(s.amount_at_risk) FILTER (WHERE s.status = 'open'), 0)
                    AS DECIMAL(18,2)) AS open_amount_at_risk
        FROM suspicions AS s LEFT JOIN latest AS l USING (suspicion_id)
        GROUP BY s.rule_id ORDER BY s.rule_id""")


# --- suppressions -----------------------------------------------------------------------

ENTITY_KINDS = ("institution", "person", "item")


def add_suppression(con: duckdb.DuckDBPyConnection, rule_id: str, kind: str, entity: str,
                    reason: str, owner: str, until: dt.date, today: dt.date) -> int:
    """Suppress ``rule_id`` for one entity until ``until`` (inclusive); returns its id."""
    if kind not in ENTITY_KINDS:
        raise StoreError(f"entity kind {kind!r}: one of {', '.join(ENTITY_KINDS)}")
    for name, value in (("entity", entity), ("--reason", reason), ("--owner", owner)):
        if not (value or "").strip():
            raise StoreError(f"{name} must not be empty")
    if until < today:
        raise StoreError(f"--until {until} is already past (today is {today})")
    with transaction(con):
        new_id = con.execute(
            "SELECT coalesce(max(suppression_id), 0) + 1 FROM suppressions").fetchall()[0][0]
        con.execute("INSERT INTO suppressions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [new_id, rule_id, kind, entity.strip(), reason.strip(), owner.strip(),
                     until, dt.datetime.now().replace(microsecond=0)])
    return int(new_id)


def lift_suppression(con: duckdb.DuckDBPyConnection, suppression_id: int, reason: str,
                     owner: str, today: dt.date) -> dict:
    """End an active suppression before its expiry: it holds until yesterday, and its
    reason keeps who lifted it, when and why. The hits it held back become leads on the
    next night's report. Returns the suppression as it now is."""
    for name, value in (("--reason", reason), ("--owner", owner)):
        if not (value or "").strip():
            raise StoreError(f"{name} must not be empty")
    rows = frame(con, "SELECT * FROM suppressions WHERE suppression_id = ?", [suppression_id])
    if rows.is_empty():
        raise StoreError(f"no suppression {suppression_id} (see `fraudscreen suppress list`)")
    if rows["until"][0] < today:
        raise StoreError(f"suppression {suppression_id} is no longer in force "
                         f"(it held until {rows['until'][0]})")
    note = f" [{today} lifted by {owner.strip()}: {reason.strip()}]"
    with transaction(con):
        con.execute("UPDATE suppressions SET until = ?, reason = reason || ? "
                    "WHERE suppression_id = ?",
                    [today - dt.timedelta(days=1), note, suppression_id])
    return frame(con, "SELECT * FROM suppressions WHERE suppression_id = ?",
                 [suppression_id]).row(0, named=True)


def list_suppressions(con: duckdb.DuckDBPyConnection, today: dt.date,
                      include_expired: bool) -> pl.DataFrame:
    """Suppressions with their state on ``today`` and how many open suspicions each holds."""
    rows = frame(con, "SELECT * FROM suppressions ORDER BY suppression_id")
    rows = rows.with_columns(
        state=pl.when(pl.col("until") >= today).then(pl.lit("active")).otherwise(
            pl.lit("expired")))
    held = suspicions(con).filter(pl.col("status") == "open")
    by = suppressed_by(held, rows.filter(pl.col("state") == "active"))
    counts = (pl.DataFrame({"suppression_id": by}).drop_nulls()
              .group_by("suppression_id").len("holds"))
    rows = rows.join(counts, on="suppression_id", how="left", maintain_order="left"
                     ).with_columns(pl.col("holds").fill_null(0))
    return rows if include_expired else rows.filter(pl.col("state") == "active")
