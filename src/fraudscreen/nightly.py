"""``fraudscreen nightly``: screen each night's exports, keeping state in one DuckDB file.

One night:

1. **Scan** the inbox (the contract layout; tables as ``NAME/`` folders of parts, in
   partition folders too, or ``NAME.parquet``/``NAME.csv``/``NAME.csv.gz``). A file
   whose content checksum is in the store's ``files`` table was ingested before and is
   skipped (an unchanged path, size and mtime is trusted without hashing again).
2. **Ingest** the new files exactly as ``validate``/``run`` would: they are linked into
   a temporary folder with the contract layout and read by ``load_folder``, so the
   quarantine rules are the same; the clean rows are staged as Parquet. A row whose
   key is already in the store goes to quarantine as ``duplicate key`` with its file
   and line.
3. **Screen** the stored data plus the new rows, both read in place (the engine
   runs on cursors of the store's connection), as much as the night's changes
   require (``fraudscreen.rescreen``): person rules over every row of the persons the
   new data touched, institution rules over the touched institutions, global rules
   (and everything, on a night with new reference rows or new rules) over all the
   data, each with the window of all the data. A hit rests only on its person's (or
   institution's) rows, so this gives for them exactly what one ``run`` over all the
   data gives, and the others' suspicions stand: the store equals that run after any
   sequence of nights. When no file is new and the rules, parameters and watch
   lists are those of the last night, screening is skipped: its result could not
   differ.
4. **Merge** the screening into the store's suspicions (``merge``): new ids open;
   ids whose figures changed keep their id and record the change; open ids no
   longer found are *retracted* when a settlement they rest on has been reversed
   (冲销), whether or not their rule ran tonight, else (among those the night
   re-screened) *superseded*; closed ids found again are *reopened*.
5. **Commit** steps 2–4 (files, rows, quarantine, suspicions, the night's row) in
   ONE transaction. A crash anywhere before COMMIT leaves the store as it was; the
   next run redoes the night.
6. **Report**: the output folder (written aside and moved into place whole) holds
   the leads not yet reported (new, or reopened; suppressed ones held back),
   ``changes.csv``, the night's quarantine and ``run.json``. Only then a second,
   small transaction marks those leads reported and the night's outputs written.
   A crash between the two transactions is repaired by the next run, whose output
   then includes everything not yet reported.

``FRAUDSCREEN_TEST_KILL_AT`` is a **test hook**: set to one of ``KILL_POINTS`` it
makes the process SIGKILL itself at that point, so tests can prove the above.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from fraudscreen import __version__, rescreen, stop, store
from fraudscreen.contract import INPUT_TABLES, SUSPICIONS
from fraudscreen.engine_duckdb import seal, spill_to
from fraudscreen.expressions import sql_string
from fraudscreen.ingest import (
    IngestError,
    Ingestion,
    InputFile,
    StagedTable,
    check_link,
    drop_rows,
    file_sha256,
    folder_parts,
    load_folder,
    table_of,
)
from fraudscreen.leads import institution_names
from fraudscreen.output import check_out, staged, write_csv, write_json, write_suspicions
from fraudscreen.privacy import (
    apply_profile,
    pseudonymise,
    public_suspicion_id,
    shown_error,
    site_secret,
)
from fraudscreen.progress import Progress
from fraudscreen.quarantine import (
    CONFLICTING_KEY,
    DUPLICATE_KEY,
    ENTRY_SCHEMA,
    LINE,
    PART,
    RECORD_KEY,
    REVERSAL_STANDS,
    REVERSED,
    csv_frame,
    quarantined_reversals,
    repeated_entries,
)
from fraudscreen.reference import shipped_watchlist
from fraudscreen.ruleset import RuleSet
from fraudscreen.runner import ScreenOptions
from fraudscreen.screen import Screening

KILL_ENV = "FRAUDSCREEN_TEST_KILL_AT"
KILL_POINTS = ("after_ingest", "before_commit", "after_commit", "after_outputs")
# The figures compared night to night; a difference is recorded as a change.
FIGURES = tuple(c.name for c in SUSPICIONS.columns
                if c.name not in ("suspicion_id", "rule_id", "rule_version"))
NOT_SUPPORTED = "no longer supported by the data"
# Gone on a night whose rules, parameters or watch lists differ from the last night's.
RULES_CHANGED = "no longer found with this night's rules, parameters or watch lists"
# Open on a night whose rule set (without --only) no longer holds the rule.
RULE_RETIRED = "rule {rule} is no longer in the rule set"


@dataclass(kw_only=True)
class NightOptions(ScreenOptions):
    inbox: Path
    store: Path
    out: Path
    today: dt.date | None = None  # the night's date (suppression expiry); default today
    # May the night make the store when there is none? The command asks for --new-store:
    # a mistyped, moved or unmounted path would start a new store and report every lead
    # again as new.
    new_store: bool = True


@dataclass
class NightResult:
    night: int | None  # the store's latest night after this run (None: still empty)
    committed: bool  # this run committed a new night
    manifest: dict
    exit_code: int


@dataclass
class InboxFile:
    table: str
    path: Path  # absolute
    rel: str  # relative to the inbox, as recorded in `files` and the quarantine
    size: int
    mtime_ns: int
    sha256: str = ""


@dataclass
class Merge:
    table: pl.DataFrame  # the whole new suspicions table
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    retracted: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)
    reopened: list[str] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.new or self.changed or self.retracted or self.superseded
                    or self.reopened)


def _hook(point: str) -> None:
    """Test hook: SIGKILL this process at ``point`` when $FRAUDSCREEN_TEST_KILL_AT says so."""
    if os.environ.get(KILL_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


# --- scanning the inbox -----------------------------------------------------------

def scan_inbox(inbox: Path, notes: list[str]) -> list[InboxFile]:
    """The inbox's contract files, in path order: ``NAME.ext`` and ``NAME/part.ext``
    (partition folders ``NAME/month=1/part.ext`` too), found as ``load_folder`` finds
    them; but an empty folder is a night without that table."""
    inbox = Path(inbox)
    if not inbox.is_dir():
        raise IngestError(f"{inbox}: no such inbox folder")
    found: list[tuple[str, Path]] = []
    for entry in sorted(inbox.iterdir()):
        if entry.name.startswith((".", "_")):
            continue
        check_link(entry)
        table = table_of(entry)
        if table and entry.is_dir():
            parts = folder_parts(entry, inbox, notes)
            held = sorted(e.name for e in entry.iterdir() if not e.name.startswith((".", "_")))
            if not parts and held:  # not empty, yet nothing read: a table gone missing
                raise IngestError(f"{entry}: folder holds no .csv, .csv.gz or .parquet parts, "
                                  f"only {', '.join(held[:5])}")
            found += [(table, part) for part in parts]
        elif table and entry.is_file():
            found.append((table, entry))
        else:
            notes.append(f"ignored {entry.name}: not a contract table")
    files = []
    for table, path in found:
        st = path.stat()
        files.append(InboxFile(table, path.resolve(), path.relative_to(inbox).as_posix(),
                               st.st_size, st.st_mtime_ns))
    return files


def unseen(con: duckdb.DuckDBPyConnection, files: list[InboxFile],
           notes: list[str]) -> tuple[list[InboxFile], int]:
    """The files whose content the store has not ingested; and how many were skipped."""
    known = {r[0]: (r[1], r[2], r[3]) for r in con.execute(
        "SELECT sha256, path, size, mtime_ns FROM files").fetchall()}
    by_stat = {v: k for k, v in known.items()}
    paths = {path: night for path, night in con.execute(
        "SELECT path, max(night) FROM files GROUP BY path").fetchall()}
    fresh, seen_now, skipped = [], set(), 0
    for f in files:
        cached = by_stat.get((f.rel, f.size, f.mtime_ns))
        try:
            f.sha256 = cached or file_sha256(f.path)
        except PermissionError as err:  # as load_folder says it
            raise IngestError(f"{f.path}: cannot be read ({err.strerror})") from None
        if f.sha256 in known:
            skipped += 1
        elif f.rel in paths and not INPUT_TABLES[f.table].key:
            # A keyed table's re-sent rows are caught as repeated keys; a table without a
            # key (purchases) would count every row twice.
            raise IngestError(
                f"{f.rel}: ingested on night {paths[f.rel]} with other content, and "
                f"{f.table} has no key, so its rows would be counted twice; deliver a "
                "correction as a new file holding only the new rows, and move this one "
                "out of the inbox")
        elif f.sha256 in seen_now:
            notes.append(f"skipped {f.rel}: same content as another new file")
            skipped += 1
        else:
            seen_now.add(f.sha256)
            fresh.append(f)
            if _cut_short(f.path):
                notes.append(f"{f.rel}: its last line has no line end: was it still being "
                             "written? A row cut short is kept as it reads (the first "
                             "delivery of a key wins); deliver files whole (write under a "
                             "temporary name, then rename)")
    return fresh, skipped


def _cut_short(path: Path) -> bool:
    """A CSV whose last byte is not a line end: maybe read while it was being written."""
    if path.suffix.lower() != ".csv" or path.stat().st_size == 0:
        return False
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) not in (b"\n", b"\r")


# --- ingesting the new files -------------------------------------------------------

def scratch_folder(store_path: Path) -> Path:
    """The night's scratch folder (the inbox's new files linked, their rows staged),
    beside the store: a night killed before it could remove it leaves it where the next
    night, which starts by emptying it, finds it, instead of in /tmp."""
    return Path(store_path).parent / f".{Path(store_path).name}.night"


@dataclass
class Intake:
    files: list[InboxFile]
    ingestion: Ingestion  # its work folder holds the staged rows until the night ends
    tables: dict[str, StagedTable]  # clean rows not yet in the store
    quarantine: pl.DataFrame  # table,file,line,column,value,reason,record_key (inbox paths)
    rows_read: dict[str, int]
    file_rows: dict[str, int]  # sha256 -> rows read


def ingest(con: duckdb.DuckDBPyConnection, files: list[InboxFile], encoding: str | None,
           column_map: Path | None, work: Path,
           on_file: Callable[[InputFile, float], None] | None = None) -> Intake:
    """Read the new files as ``load_folder`` reads a data folder; drop stored keys.

    ``work``: the night's scratch folder (``scratch_folder``); the staged rows stay
    there until the caller removes it when the night is done. ``on_file``: told as each
    inbox file has been read (progress), with its path in the inbox.
    """
    stage = work / "inbox"
    stage.mkdir(parents=True)
    try:
        names: dict[str, InboxFile] = {}
        for i, f in enumerate(files):
            folder = stage / f.table
            folder.mkdir(exist_ok=True)
            target = folder / f"{i:06d}-{f.path.name}"  # keeps the inbox's order
            try:
                target.symlink_to(f.path)
            except OSError:
                shutil.copyfile(f.path, target)
            names[target.relative_to(stage).as_posix()] = f
        placeholders = set()
        for name, table in INPUT_TABLES.items():  # load_folder needs the required tables
            if table.required and not (stage / name).exists():
                pl.DataFrame(schema={c.name: c.type.polars for c in table.columns}
                             ).write_parquet(stage / f"{name}.parquet")
                placeholders.add(f"{name}.parquet")
        def in_inbox(text: str) -> str:
            """A message about a linked copy, about the inbox file instead."""
            for linked, f in names.items():
                text = text.replace(str(stage / linked), f.rel).replace(linked, f.rel)
            return text

        def told(info: InputFile, seconds: float) -> None:
            if info.path in names:  # not a placeholder
                on_file(replace(info, path=names[info.path].rel), seconds)

        # Every row staged (none scanned in place): rows whose key is stored are dropped.
        try:
            ing = load_folder(stage, encoding=encoding, column_map=column_map,
                              in_place=False, work_dir=work / "staged",
                              on_file=told if on_file else None)
        except IngestError as err:
            raise IngestError(in_inbox(str(err))) from None
        ing.notes[:] = [in_inbox(note) for note in ing.notes]
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    try:
        real = [f for f in ing.files if f.path not in placeholders]
        for info in real:
            if info.sha256 != names[info.path].sha256:
                raise IngestError(f"{names[info.path].path}: changed while being read; run "
                                  "again once the export is complete")
        inbox_path = {k: v.rel for k, v in names.items()}
        present = {f.table for f in real}
        tables = {n: t for n, t in ing.tables.items() if n in present}
        found = [ing.quarantine]
        for name, new_rows in tables.items():
            if (resent := _resent_whole(con, new_rows)) is not None:
                f = names[ing.files[resent].path]
                raise IngestError(
                    f"{f.rel}: every row of it is in the store already, and {name} has no "
                    "key, so its rows would be counted twice: a re-export of a file "
                    "ingested before (under another name or format)? Move it out of the "
                    "inbox; deliver only new rows")
            stored = _stored_keys(con, new_rows)
            if stored.height:
                drop_rows(list(new_rows.files), stored)
                dropped = stored.filter(pl.col("reason").is_in([DUPLICATE_KEY,
                                                                 CONFLICTING_KEY])).height
                tables[name] = StagedTable(name, new_rows.files, new_rows.rows - dropped)
                found.append(stored.select(
                    table=pl.lit(name),
                    file=pl.col(PART).replace_strict(
                        {i: f.path for i, f in enumerate(ing.files)}, return_dtype=pl.String),
                    line=LINE, column="column", value="value", reason="reason",
                    record_key=RECORD_KEY))
        quarantine = pl.concat(found).with_columns(
            pl.col("file").replace_strict(inbox_path, default=pl.col("file"))
        ).sort("table", "file", "line", "column", nulls_last=False)
        return Intake(files=[names[f.path] for f in real], ingestion=ing, tables=tables,
                      quarantine=quarantine,
                      rows_read={n: v for n, v in ing.rows_read.items() if n in present},
                      file_rows={names[f.path].sha256: f.rows for f in real})
    except BaseException:
        ing.close()
        raise


def _resent_whole(con: duckdb.DuckDBPyConnection, rows: StagedTable) -> int | None:
    """The part (file index) of a keyless table whose rows are all stored already: the
    same rows re-exported under another name or format (found in review: a month of
    purchases re-sent as CSV counted the stock twice). Repeated keys catch this for a
    keyed table; a keyless one can only be judged by the whole file. Only purchases are
    summed: a watch list or item pairs sent twice match the same items."""
    table = INPUT_TABLES[rows.name]
    if table.key or rows.name != "purchases" or not rows.files:
        return None
    files = ", ".join(sql_string(str(f.path.resolve())) for f in rows.files)
    same = " AND ".join(f's."{c}" IS NOT DISTINCT FROM t."{c}"' for c in table.column_names)
    row = con.execute(
        f"SELECT min(s.{PART}) FROM (SELECT s.{PART}, bool_and(EXISTS (SELECT 1 FROM "
        f'"{rows.name}" AS t WHERE {same})) AS stored FROM read_parquet([{files}]) AS s '
        f"GROUP BY s.{PART}) AS s WHERE stored").fetchone()
    return None if row[0] is None else int(row[0])


def _stored_keys(con: duckdb.DuckDBPyConnection, rows: StagedTable) -> pl.DataFrame:
    """Quarantine entries (PART, LINE, column, value, reason) for staged rows whose key
    the store already holds (``quarantine.repeated_entries``)."""
    table = INPUT_TABLES[rows.name]
    if not table.key or not rows.files:
        return pl.DataFrame(schema=ENTRY_SCHEMA)
    read = [*table.key, *([REVERSED] if REVERSED in table.column_names else [])]
    files = ", ".join(sql_string(str(f.path.resolve())) for f in rows.files)
    cols = ", ".join(f's."{c}"' for c in read)
    key = ", ".join(f'"{c}"' for c in table.key)
    new, old = (", ".join(f'{side}."{c}"' for c in table.column_names) for side in "st")
    found = store.frame(con, f"SELECT {cols}, s.{PART}, s.{LINE}, "
                             f"ROW({new}) IS DISTINCT FROM ROW({old}) AS conflicting "
                             f'FROM read_parquet([{files}]) AS s JOIN "{rows.name}" AS t '
                             f"USING ({key}) ORDER BY s.{PART}, s.{LINE}"
                        ).with_columns(pl.col(PART).cast(pl.UInt32), pl.col(LINE).cast(pl.Int64))
    return repeated_entries(found, table)


# --- screening and merging ----------------------------------------------------------

def fingerprint(ruleset: RuleSet, watchlists: list[Path]) -> str:
    """What the screening depends on besides the data: rules, parameters, watch lists."""
    from fraudscreen.reference import watchlist_files

    doc = {
        "rules": [[r.id, r.version, r.content_hash] for r in ruleset.rules],
        "overrides": ruleset.overrides,
        "watchlists": [file_sha256(p) for p in watchlist_files(watchlists)],
    }
    text = json.dumps(doc, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, (Decimal, dt.date)):
        return str(value)
    return value


def merge(old: pl.DataFrame, found: pl.DataFrame, ran: set[str], versions: dict[str, str],
          reversals: dict[str, str], night: int,
          judged: Callable[[dict], bool] = lambda row: True,
          gone: str = NOT_SUPPORTED, complete: bool = False) -> Merge:
    """The store's suspicions after this night's screening (see the module docstring).

    ``old`` is the stored table, ``found`` the screening's suspicions, ``ran`` the rules
    that ran (suspicions of rules that failed or were skipped are left as they were),
    ``versions`` each rule's current version and ``reversals`` reversed settlement id
    → the id of the reversal row. A stored suspicion the night did not ``judge`` (its
    person or institution untouched: see ``rescreen.Scope``) is left as it was, found or not.
    ``complete``: ``versions`` names every rule in force (no ``--only``), so an open
    suspicion of any other rule is superseded: its rule was taken out of the rule set.
    """
    schema = {**store.contract_shape(found).schema, **_extra_schema()}
    result = Merge(pl.DataFrame(schema=schema))
    previous = {r["suspicion_id"]: r
                for r in (old.select(list(schema)).to_dicts() if old.height else [])}
    rows = []
    for hit in store.contract_shape(found).to_dicts():
        sid = hit["suspicion_id"]
        prev = previous.pop(sid, None)
        if prev is None:
            rows.append({**hit, "status": "open", "reason": None, "first_night": night,
                         "last_night": night, "status_night": night, "reported_night": None,
                         "changed_night": None,
                         "changes": json.dumps([{"night": night, "event": "new"}],
                                                  ensure_ascii=False)})
            result.new.append(sid)
            continue
        events = json.loads(prev["changes"])
        row = {**prev, **hit, "last_night": night}
        diff = {k: [_plain(prev[k]), _plain(hit[k])] for k in FIGURES if prev[k] != hit[k]}
        if diff:
            events.append({"night": night, "event": "changed", "fields": diff})
            row["changed_night"] = night
            result.changed.append(sid)
        if prev["status"] != "open":
            events.append({"night": night, "event": "reopened", "was": prev["status"],
                           "reason": prev["reason"]})
            row.update(status="open", reason=None, status_night=night)
            result.reopened.append(sid)
        row["changes"] = json.dumps(events, ensure_ascii=False)
        rows.append(row)
    for sid, prev in previous.items():
        retired = complete and prev["rule_id"] not in versions
        judged_tonight = prev["rule_id"] in ran and judged(prev)
        resting = [prev["settlement_id"], *(prev["related_settlement_ids"] or [])]
        reversed_ = [s for s in resting if s is not None and s in reversals]
        # A reversal retracts what rests on it whether or not its rule ran tonight (it
        # failed, or --only left it out): found again, it is reopened.
        if prev["status"] != "open" or not (retired or judged_tonight or reversed_):
            rows.append(prev)
            continue
        if reversed_:
            status = "retracted"
            reason = "; ".join(f"冲销: settlement {s} reversed by {reversals[s]}"
                               for s in reversed_)
            result.retracted.append(sid)
        else:
            status = "superseded"
            now = versions.get(prev["rule_id"])
            reason = (RULE_RETIRED.format(rule=prev["rule_id"]) if retired else
                      f"rule {prev['rule_id']} is now version {now} (was {prev['rule_version']})"
                      if now and now != prev["rule_version"] else gone)
            result.superseded.append(sid)
        events = json.loads(prev["changes"])
        events.append({"night": night, "event": status, "reason": reason})
        rows.append({**prev, "status": status, "reason": reason, "status_night": night,
                     "changes": json.dumps(events, ensure_ascii=False)})
    result.table = (pl.DataFrame(rows, schema=schema, orient="row") if rows
                    else result.table).sort("suspicion_id")
    return result


def _extra_schema() -> dict[str, pl.DataType]:
    kinds = {"VARCHAR": pl.String, "INTEGER": pl.Int32}
    return {k: kinds[v.split()[0]] for k, v in store.SUSPICION_EXTRA.items()}


def reversal_map(settlements: store.StoredTable, quarantined: pl.DataFrame
                 ) -> dict[str, str]:
    """Reversed settlement id → the id of (the first) reversal row naming it, or where a
    quarantined reversal row naming it is (``quarantined``: quarantine entries)."""
    rows = settlements.con.sql(
        f"SELECT reversed_settlement_id, min(settlement_id) FROM ({settlements.sql()}) "
        "WHERE reversed_settlement_id IS NOT NULL GROUP BY ALL").fetchall()
    named = (quarantined.filter(pl.col("reason") == REVERSAL_STANDS)
             .sort("file", "line").unique("value", keep="first", maintain_order=True))
    where = {r["value"]: f"a quarantined row ({r['file']} line {r['line']})"
             for r in named.iter_rows(named=True)}
    return where | dict(rows)


def quarantined_reversal_entries(con: duckdb.DuckDBPyConnection, intake: Intake | None
                                 ) -> pl.DataFrame:
    """The quarantine entries, stored and the night's, of reversal rows that still
    reverse (table, file, line, column, value, reason)."""
    stored = store.frame(con, 'SELECT "table", file, line, "column", value, reason '
                              "FROM quarantine WHERE reason = ?", [REVERSAL_STANDS])
    if intake is None:
        return stored
    tonight = intake.quarantine.filter(pl.col("reason") == REVERSAL_STANDS)
    return pl.concat([stored, tonight.select(stored.columns)], how="vertical_relaxed")


# --- one night ------------------------------------------------------------------------

def run_night(opts: NightOptions, ruleset: RuleSet, progress: Progress | None = None
              ) -> NightResult:
    """One night, start to finish; raises IngestError, RuleError or StoreError.
    ``progress``: told what is read and each rule as it is done, as a run's is."""
    began = time.perf_counter()
    check_out(opts.out, [opts.inbox, opts.store])
    # A public night needs its secret before it commits anything (run checks it first too).
    secret = site_secret() if opts.profile == "public" else None
    shipped_watchlist(opts.watchlists)  # a broken list fails before the store is opened
    started = dt.datetime.now().replace(microsecond=0)
    today = opts.today or dt.date.today()
    notes: list[str] = []
    made = not Path(opts.store).exists()
    con = store.open_store(opts.store, create=opts.new_store)
    if made:
        notes.append(f"{opts.store}: no store there, so a new one was made: every lead it "
                     "finds is new to it")
    work = scratch_folder(opts.store)  # emptied only once the store is ours
    shutil.rmtree(work, ignore_errors=True)
    intake: Intake | None = None
    try:
        if (held := _reported_in(con, opts.out)) is not None:
            raise store.StoreError(
                f"{opts.out} holds the report of night {held}, and its leads are marked "
                "reported: it is not replaced, or they would be in no report. Give each "
                "night its own --out folder; nothing was done")
        files = scan_inbox(opts.inbox, notes)
        fresh, skipped = unseen(con, files, notes)
        if progress and fresh:
            progress.reading(opts.inbox)
        intake = (ingest(con, fresh, opts.encoding, opts.column_map, work,
                         progress.file_read if progress else None) if fresh else None)
        if progress and intake:
            progress.read(intake.ingestion, time.perf_counter() - began)
        _hook("after_ingest")
        # From here on the connection reads no file but the night's staged rows, as a
        # run's does (its settings stay open: each screening pass sets its limits).
        spill_to(con, work / "spill")
        seal(con, [work.resolve()], lock=False)
        ingested = time.perf_counter()

        last = store.last_night(con)
        rules_hash = fingerprint(ruleset, opts.watchlists)
        # Nothing new and the same rules as the last night (all of which ran): the
        # screening could not differ, so it is skipped.
        must_screen = intake is not None or (last is not None and (
            last["ruleset_hash"] != rules_hash or last["rules_failed"] > 0))
        screening: Screening | None = None
        merged: Merge | None = None
        night = last["night"] if last else None
        scope: rescreen.Scope | None = None
        if must_screen:
            # The screening reads the store and the staged new rows in place, on cursors
            # of the store's connection (nothing is loaded whole into memory).
            view = con.cursor()
            new = intake.tables if intake else {}
            tables = rescreen.all_tables(con, view, new)
            quarantined = quarantined_reversal_entries(con, intake)
            reversals = reversal_map(tables["settlements"], quarantined)
            # New rules, parameters or watch lists, or rules that failed last night: all.
            scope = (rescreen.touched(con, view, tables, new,
                                      quarantined_reversals(intake.quarantine))
                     if intake is not None and last
                     and last["ruleset_hash"] == rules_hash and not last["rules_failed"]
                     else rescreen.Scope(full=True))
            plan = scope.plan(ruleset)
            screening = rescreen.screen_night(con, tables, ruleset, opts, plan,
                                              quarantined_reversals(quarantined),
                                              progress.rule_done if progress else None)
            ran = {o.rule.id for o in screening.outcomes if o.status == "ran"}
            night = (last["night"] + 1) if last else 1
            merged = merge(store.suspicions(con), screening.suspicions, ran,
                           {r.id: r.version for r in ruleset.rules}, reversals, night,
                           lambda row: scope.judged(plan.get(row["rule_id"], "all"), row),
                           RULES_CHANGED if last and last["ruleset_hash"] != rules_hash
                           else NOT_SUPPORTED, complete=not opts.only)
        screened = time.perf_counter()

        failed = sum(o.status == "failed" for o in screening.outcomes) if screening else 0
        committed = must_screen and (intake is not None or merged.any
                                     or last["ruleset_hash"] != rules_hash
                                     or last["rules_failed"] != failed)
        if committed:
            _commit(con, night, today, started, opts, intake, merged, rules_hash, failed)
        else:
            night = last["night"] if last else None
        _hook("after_commit")

        try:
            doc = _write_outputs(con, opts, secret, night, today, started, intake, screening,
                                 scope, skipped, notes, committed,
                                 {"ingest": ingested - began, "rules": screened - ingested},
                                 began, ruleset.family_titles())
        except BaseException as err:
            if not committed:
                raise
            kept = (f"night {night} was stored, its report not written: the next `nightly` "
                    "writes it (with that night's leads)")
            if isinstance(err, KeyboardInterrupt) or stop.requested():
                raise stop.StoppedAfter(kept) from None
            if isinstance(err, OSError):  # --out not writable, disk full
                raise OSError(f"{err}; {kept}") from None
            raise
        return NightResult(night, committed, doc, doc["status"]["exit_code"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
        con.close()


def _commit(con: duckdb.DuckDBPyConnection, night: int, today: dt.date, started: dt.datetime,
            opts: NightOptions, intake: Intake | None, merged: Merge, rules_hash: str,
            failed: int) -> None:
    """Everything the night learnt, in ONE transaction."""
    with store.transaction(con):
        rows_kept = rows_bad = 0
        if intake is not None:
            files = pl.DataFrame(
                {"sha256": [f.sha256 for f in intake.files],
                 "table": [f.table for f in intake.files],
                 "path": [f.rel for f in intake.files],
                 "size": [f.size for f in intake.files],
                 "mtime_ns": [f.mtime_ns for f in intake.files],
                 "rows": [intake.file_rows[f.sha256] for f in intake.files],
                 "night": [night] * len(intake.files)},
                schema={"sha256": pl.String, "table": pl.String, "path": pl.String,
                        "size": pl.Int64, "mtime_ns": pl.Int64, "rows": pl.Int64,
                        "night": pl.Int32})
            _insert(con, "files", files)
            for name, new_rows in intake.tables.items():
                if new_rows.rows:
                    con.execute(f'INSERT INTO "{name}" BY NAME SELECT *, {int(night)} AS '
                                f"{store.INGEST_NIGHT} FROM ({new_rows.sql()})")
                rows_kept += new_rows.rows
            _insert(con, "quarantine", intake.quarantine.with_columns(
                pl.lit(night, pl.Int32).alias("night")))
            rows_bad = sum(intake.rows_read.values()) - rows_kept
        con.execute("DELETE FROM suspicions")
        _insert(con, "suspicions", merged.table)
        open_total = merged.table.filter(pl.col("status") == "open").height
        con.execute(
            "INSERT INTO nights VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "false)",
            [night, today, started, str(Path(opts.inbox).resolve()), str(Path(opts.out).resolve()),
             len(intake.files) if intake else 0, rows_kept, rows_bad, len(merged.new),
             len(merged.changed), len(merged.retracted), len(merged.superseded),
             len(merged.reopened), open_total, rules_hash, failed])
        _hook("before_commit")


def _insert(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    if frame.is_empty():
        return
    con.register("_rows", frame.to_arrow())
    try:
        con.execute(f'INSERT INTO "{table}" BY NAME SELECT * FROM _rows')
    finally:
        con.unregister("_rows")


# --- the night's output -----------------------------------------------------------

def _write_outputs(con: duckdb.DuckDBPyConnection, opts: NightOptions, secret: str | None,
                   night: int | None,
                   today: dt.date, started: dt.datetime, intake: Intake | None,
                   screening: Screening | None, scope: rescreen.Scope | None, skipped: int,
                   notes: list[str], committed: bool, timings: dict[str, float],
                   began: float, titles: dict[str, str]) -> dict:
    """Write OUT (whole or not at all), then mark what it reported — in that order.

    With ``secret`` (profile public) nothing written names a person or a plain
    suspicion id, as in ``run``."""
    from fraudscreen.report import write_reports

    def public(ids: list[str]) -> list[str]:
        return sorted(_shown_ids(ids, secret))

    pending = [r[0] for r in con.execute(
        "SELECT night FROM nights WHERE NOT outputs_written ORDER BY night").fetchall()]
    rows = store.suspicions(con)
    rows = rows.with_columns(store.suppressed_by(rows, store.active_suppressions(con, today)))
    in_pending = pl.col("status_night").is_in(pending)
    is_open = pl.col("status") == "open"
    reopened = is_open & in_pending & (pl.col("first_night") != pl.col("status_night"))
    leads = rows.filter(is_open & pl.col("suppressed_by").is_null()
                        & (pl.col("reported_night").is_null() | reopened))
    new = leads.filter(pl.col("reported_night").is_null())
    retracted = rows.filter((pl.col("status") == "retracted") & in_pending)
    superseded = rows.filter((pl.col("status") == "superseded") & in_pending)
    changed = rows.filter(pl.col("changed_night").is_in(pending))
    nights = ", ".join(str(int(n)) for n in pending) or "NULL"
    quarantine = store.frame(
        con, 'SELECT "table", file, line, "column", value, reason, record_key FROM quarantine '
             f'WHERE night IN ({nights}) ORDER BY "table", file, line, "column"')

    shown = store.contract_shape(leads).pipe(_order)
    doc = _manifest(opts, night, today, started, intake, screening, scope, skipped, notes,
                    committed, pending, quarantine, timings, titles)
    doc.update({
        "new_suspicions": new.height,
        "new_suspicion_ids": public(new["suspicion_id"].sort().to_list()),
        "reopened_suspicions": leads.filter(reopened).height,
        "reopened_suspicion_ids": public(leads.filter(reopened)["suspicion_id"].sort().to_list()),
        "retracted_suspicions": retracted.height,
        "retracted": _closed(retracted, secret),
        "superseded_suspicions": superseded.height,
        "superseded": _closed(superseded, secret),
        "changed_suspicions": changed.height,
        "changed_suspicion_ids": public(changed["suspicion_id"].sort().to_list()),
        "leads_suspicions": shown.height,
        "open_suspicions": rows.filter(is_open).height,
        "suppressed_open_suspicions": rows.filter(
            is_open & pl.col("suppressed_by").is_not_null()).height,
        "suspicions": shown.height,
        # every night's institutions, as stored (a night's run screens only some of them)
        "institution_names": institution_names(store.frame(
            con, f"SELECT institution_id, name FROM institutions ORDER BY {store.INGEST_NIGHT}"),
            shown),
    })
    # A night killed while writing its report left its temporary folder beside its own
    # --out, which tonight's (another date) would not find.
    for (earlier,) in con.execute("SELECT DISTINCT out FROM nights WHERE NOT outputs_written"
                                  ).fetchall():
        _clean_leftovers(Path(earlier))
    _clean_leftovers(opts.out)
    changes = _changes_frame(rows, pending)
    with staged(opts.out) as folder:
        write_suspicions(apply_profile(shown, "public", secret) if secret else shown, folder)
        write_csv(pseudonymise(changes, secret, ("detail",)) if secret else changes,
                  folder / "changes.csv")
        write_csv(csv_frame(quarantine, opts.profile), folder / "quarantine.csv")
        write_reports(folder, shown, doc, opts.profile, secret)
        doc["timings_seconds"]["total"] = round(time.perf_counter() - began, 3)
        write_json(doc, folder / "run.json")
    _hook("after_outputs")
    marked = leads["suspicion_id"].to_list()
    if night is not None and (marked or pending):
        with store.transaction(con):
            if marked:
                con.register("_marked", pl.DataFrame({"suspicion_id": marked}).to_arrow())
                con.execute("UPDATE suspicions SET reported_night = ? WHERE suspicion_id IN "
                            "(SELECT suspicion_id FROM _marked)", [night])
                con.unregister("_marked")
            con.execute("UPDATE nights SET outputs_written = true, finished = ? "
                        "WHERE NOT outputs_written", [dt.datetime.now().replace(microsecond=0)])
    return doc


def _order(frame: pl.DataFrame) -> pl.DataFrame:
    from fraudscreen.suspicion import order

    return order(frame)


def _shown_ids(ids: list[str], secret: str | None) -> list[str]:
    """Suspicion ids as the night's outputs show them: keyed under the public profile."""
    return [public_suspicion_id(i, secret) for i in ids] if secret else list(ids)


def _closed(frame: pl.DataFrame, secret: str | None) -> list[dict]:
    # The reason names settlements only, never a person.
    closed = frame.select("suspicion_id", "rule_id", "settlement_id", "reason")
    return closed.with_columns(suspicion_id=pl.Series(
        _shown_ids(closed["suspicion_id"].to_list(), secret), dtype=pl.String)
    ).sort("suspicion_id").to_dicts()


def _changes_frame(rows: pl.DataFrame, pending: list[int]) -> pl.DataFrame:
    """One row per event of the reported nights: new, changed, retracted, superseded, reopened.

    ``suppressed_by``: the suppression holding an open suspicion back from the leads, so
    a new or reopened one that is not in them says why."""
    out = []
    for r in rows.select("suspicion_id", "rule_id", "institution_id", "person_id",
                         "settlement_id", "amount_at_risk", "changes", "status",
                         "suppressed_by").iter_rows(named=True):
        for e in json.loads(r["changes"]):
            if e["night"] in pending:
                detail = e.get("reason") or (json.dumps(e["fields"], ensure_ascii=False)
                                             if "fields" in e else "")
                out.append({"night": e["night"], "event": e["event"],
                            "suspicion_id": r["suspicion_id"], "rule_id": r["rule_id"],
                            "institution_id": r["institution_id"], "person_id": r["person_id"],
                            "settlement_id": r["settlement_id"],
                            "amount_at_risk": str(r["amount_at_risk"]), "detail": detail,
                            "suppressed_by": r["suppressed_by"] if r["status"] == "open"
                            else None})
    schema = {"night": pl.Int64, "event": pl.String, "suspicion_id": pl.String,
              "rule_id": pl.String, "institution_id": pl.String, "person_id": pl.String,
              "settlement_id": pl.String, "amount_at_risk": pl.String, "detail": pl.String,
              "suppressed_by": pl.Int32}
    return pl.DataFrame(out, schema=schema, orient="row").sort("night", "event", "suspicion_id")


def _manifest(opts: NightOptions, night: int | None, today: dt.date, started: dt.datetime,
              intake: Intake | None, screening: Screening | None, scope: rescreen.Scope | None,
              skipped: int, notes: list[str], committed: bool, pending: list[int],
              quarantine: pl.DataFrame, timings: dict[str, float], titles: dict[str, str]
              ) -> dict:
    """run.json. ``quarantine``: the rows quarantined on the nights reported (``pending``),
    as quarantine.csv lists them; ``--strict`` judges those. A night delivered by a later
    run (killed once stored) is judged when its report is written, and a run that
    reports no night (an idle or repeated one) has quarantined nothing. ``failed_rules``
    are this run's own, also in a late report: after a night with a failed rule every
    rule is re-screened over all the data (``run_night``), so a rule that failed on the
    stopped night and ran now has its leads in this report."""
    from fraudscreen.runner import options_doc, outcome_doc, quarantine_counts

    ing = intake.ingestion if intake else None
    failed = [o.rule.id for o in screening.outcomes if o.status == "failed"] if screening else []
    strict_fail = opts.strict and quarantine.height > 0
    return {
        "tool": "fraudscreen",
        "version": __version__,
        "mode": "nightly",
        "engine": opts.engine,
        "profile": opts.profile,
        "suspicions_profile": "public" if opts.profile == "public" else "full",
        "started": started.isoformat(timespec="seconds"),
        "night": night,
        "night_date": today,
        "committed": committed,
        "nights_reported": pending,
        "store": str(opts.store),
        "data": str(opts.inbox),
        "out": str(opts.out),
        "window": {"start": screening.window[0] if screening else None,
                   "end": screening.window[1] if screening else None, "given": False},
        "screened": screening is not None,
        # full: every rule over all the data; else how many persons and institutions
        # the night's person and institution rules re-screened (see Rule.scope).
        "screening_scope": scope.doc() if scope else None,
        "inputs": [{"table": f.table, "path": f.rel, "rows": intake.file_rows[f.sha256],
                    "sha256": f.sha256} for f in (intake.files if intake else [])],
        "files_skipped": skipped,
        "rows_read": intake.rows_read if intake else {},
        "rows_kept": {n: t.rows for n, t in intake.tables.items()} if intake else {},
        "missing_optional_tables": [n for n, o in (screening.origins if screening else {}
                                                   ).items() if o == "absent"],
        "quarantine": quarantine_counts(quarantine),
        "notes": notes + (ing.notes if ing else []),
        "reference_data": screening.origins if screening else {},
        **options_doc(opts, screening.origins if screening else {}),
        "integrity": screening.integrity if screening else {},
        "rules": [outcome_doc(o, opts.profile) for o in screening.outcomes]
        if screening else [],
        # from the rule set, so a night that screens nothing still names its families
        "family_titles": titles,
        "timings_seconds": {k: round(v, 3) for k, v in timings.items()},
        # as run's: what the exit code says, and why a night is not a complete screening
        "status": {"exit_code": 1 if failed or strict_fail else 0, "failed_rules": failed,
                   "strict_quarantine": strict_fail},
    }


def record_failure(opts: NightOptions, started: dt.datetime, exit_code: int,
                   error: str, kind: str) -> None:
    """Leave OUT/run.json saying that the night failed and why (``status`` as a report's,
    with ``error``: the message stderr got, or under --profile public only its ``kind``,
    as ``privacy.shown_error`` says), so that a monitoring script or the morning's
    inspector can tell a failed night from one that never ran. Written whole, as any
    output, and only where it replaces no report: OUT absent or empty, or holding an
    earlier failure's record. Where OUT cannot take it (a file, a folder of other files,
    not writable) the message on stderr is all there is."""
    out = Path(opts.out)
    try:
        check_out(out, [opts.inbox, opts.store])
        if not _holds_no_report(out):
            return
        with staged(out) as folder:
            write_json({"tool": "fraudscreen", "version": __version__, "mode": "nightly",
                        "started": started.isoformat(timespec="seconds"),
                        "store": str(opts.store), "data": str(opts.inbox), "out": str(out),
                        "status": {"exit_code": exit_code, "failed_rules": [],
                                   "strict_quarantine": False,
                                   "error": shown_error(error, kind, opts.profile)}},
                       folder / "run.json")
    except (OSError, ValueError):
        pass


def _holds_no_report(out: Path) -> bool:
    """OUT is absent or empty, or holds only a failed night's record (``record_failure``)."""
    if not out.is_dir() or not any(out.iterdir()):
        return True
    try:
        doc = json.loads((out / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and "error" in (doc.get("status") or {})


def _reported_in(con: duckdb.DuckDBPyConnection, out: Path) -> int | None:
    """The night whose report OUT holds, when the store marked its leads reported
    (a re-run into the same folder would replace them with an empty report)."""
    try:
        doc = json.loads((Path(out) / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    night = doc.get("night") if isinstance(doc, dict) and doc.get("mode") == "nightly" else None
    if not isinstance(night, int):
        return None
    row = con.execute("SELECT outputs_written FROM nights WHERE night = ?", [night]).fetchone()
    return night if row and row[0] else None


def _clean_leftovers(out: Path) -> None:
    """Temporary folders a killed run may have left beside OUT."""
    out = Path(out).resolve()
    if out.parent.is_dir():
        for leftover in out.parent.glob(f".{out.name}.*-*"):
            if leftover.is_dir() and (".tmp-" in leftover.name or ".old-" in leftover.name):
                shutil.rmtree(leftover, ignore_errors=True)
