"""Read a data folder into contract-typed tables, quarantining what cannot be read.

The folder holds one entry per contract table: ``NAME.parquet``, ``NAME.csv``,
``NAME.csv.gz`` or a folder ``NAME/`` of such parts (in Hive partition folders
``KEY=VALUE/`` too, as Spark's ``partitionBy`` writes them). Headers may be English
contract names, the Chinese names, national platform field names or a site's own names
mapped in a column-map file. Unusable input (a missing table or required column, an
unreadable file) raises IngestError; a bad value only sends its row to quarantine (see
``fraudscreen.quarantine``). ``docs/ingestion.md`` is the user-facing account.

Ingestion streams: each file is read and checked in chunks of ``CHUNK_ROWS`` rows
and the clean rows are written, contract-typed, to Parquet files in a work folder
(a ``StagedTable`` per table), which the engines scan in place. So memory holds one
chunk, not the input; a Parquet file is read chunk by chunk, a CSV file whole.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import gzip
import hashlib
import os
import re
import shutil
import tempfile
import time
import unicodedata
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from fraudscreen.contract import INPUT_TABLES, LOCAL_TIME_ZONE, Column, Table
from fraudscreen.expressions import sql_string
from fraudscreen.output import excel_text
from fraudscreen.quarantine import (
    COLUMNS,
    LINE,
    PART,
    check_part,
    csv_frame,
    duplicate_keys,
    key_hashes,
    within_calendar,
)
from fraudscreen.rule import read_plain_yaml

SUFFIXES = (".csv.gz", ".csv", ".parquet")  # the kinds of part, matched in this order
_UTF8 = ("utf-8", "utf-8-sig")
_CHUNK = 1 << 20
CHUNK_ROWS = 1 << 20  # rows checked and staged at a time: bounds ingestion's memory
# Polars' streaming CSV reader parses ahead of its consumer, a few batches' worth: its
# batches are kept smaller (a 1.3 GB CSV peaked at 0.9 GB in the reader alone with
# 1 M-row batches, 0.54 GB with these).
CSV_BATCH_ROWS = CHUNK_ROWS // 4
# Parquet codecs cheap enough to decode that a file is scanned in place, once per rule
# that reads it; a file compressed harder (ZSTD, GZIP) is staged as LZ4: decoding ZSTD
# on every scan cost the rules as much as the copy (docs/performance.md).
FAST_CODECS = {"UNCOMPRESSED", "SNAPPY", "LZ4", "LZ4_RAW"}


class IngestError(Exception):
    """The input cannot be used; the message names the file (and column) at fault."""


@dataclass
class InputFile:
    path: str  # relative to the data folder, as in the quarantine's `file` column
    table: str
    rows: int
    sha256: str


@dataclass(frozen=True)
class StagedFile:
    path: Path
    part: int  # index into Ingestion.files
    # True: the input file itself, scanned in place (in contract form and every row
    # clean). False: a chunk of clean rows written by ingestion, with PART and LINE.
    in_place: bool = False


@dataclass(frozen=True)
class StagedTable:
    """One table's clean rows as contract-typed Parquet files, in file and line order.
    Engines scan the files; ``frame()`` loads them."""

    name: str
    files: tuple[StagedFile, ...]
    rows: int

    def sql(self) -> str:
        columns = INPUT_TABLES[self.name].columns
        if not self.files:
            typed = ", ".join(f'CAST(NULL AS {c.type.sql}) AS "{c.name}"' for c in columns)
            return f"SELECT {typed} WHERE false"
        names = ", ".join(f'"{c.name}"' for c in columns)
        files = ", ".join(sql_string(str(f.path.resolve())) for f in self.files)
        # Not hive_partitioning: DuckDB would take month=1/ in a path scanned in place as
        # a column, overriding the file's own (and typing it: fee_category=01/ as 1).
        return (f"SELECT {names} FROM read_parquet([{files}], union_by_name = true, "
                "hive_partitioning = false)")

    def frame(self) -> pl.DataFrame:
        columns = INPUT_TABLES[self.name].column_names
        if not self.files:
            return pl.DataFrame(schema={c.name: c.type.polars
                                        for c in INPUT_TABLES[self.name].columns})
        return pl.concat([pl.read_parquet(f.path, columns=columns, glob=False) for f in self.files])


@dataclass
class Ingestion:
    tables: dict[str, StagedTable]  # tables present; clean rows, staged in work_dir
    files: list[InputFile]
    rows_read: dict[str, int]  # per table: data rows read, kept or quarantined
    quarantine: pl.DataFrame  # table,file,line,column,value,reason,record_key
    missing_optional: list[str]
    work_dir: Path
    notes: list[str] = field(default_factory=list)  # ignored files and columns, filled columns
    owns_work_dir: bool = False  # made by load_folder: close() removes it

    def unusable(self) -> str | None:
        """Why a required table has no usable row, or None. Such a table is a failed
        export, not a quiet night: with no fee lines every stay would look idle."""
        for name in ("settlements", "fee_lines"):
            read = self.rows_read.get(name)
            if read is not None and not self.rows_kept.get(name):
                why = (f"all {read:,} of its rows were quarantined" if read
                       else "it has no rows")
                return f"table {name} has no usable row ({why})"
        return None

    @property
    def rows_kept(self) -> dict[str, int]:
        return {name: t.rows for name, t in self.tables.items()}

    def table(self, name: str) -> pl.DataFrame:
        """A table's clean rows in memory (small tables, tests; engines scan the files)."""
        return self.tables[name].frame()

    def close(self) -> None:
        if self.owns_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> Ingestion:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_folder(
    data_dir: Path, encoding: str | None = None, column_map: Path | None = None,
    external: frozenset[str] = frozenset(), work_dir: Path | None = None,
    in_place: bool = True, on_file: Callable[[InputFile, float], None] | None = None,
) -> Ingestion:
    """Read every contract table in ``data_dir``, staging the clean rows in ``work_dir``.

    ``external`` names tables the engine reads elsewhere (Spark catalog tables), so
    their absence here is not an error, and their presence is (every row would be read
    twice; a watch list, whose rows are added to the shipped lists, excepted).
    ``encoding`` names the CSV encoding; by default each CSV file is read as UTF-8 when
    it is valid UTF-8, else as GB18030 (a superset of GBK and GB2312). Without
    ``work_dir`` a temporary folder is made, removed by ``Ingestion.close()``.
    ``in_place=False`` stages every clean row, even of files that could be scanned where
    they are. ``on_file(file, seconds)`` is told
    as each file has been read and checked (progress on a long ingestion).
    """
    data_dir = Path(data_dir)
    codec = _codec(encoding)
    renames = _load_column_map(Path(column_map)) if column_map else {}
    notes: list[str] = []
    try:
        entries = _find_tables(data_dir, notes)
    except OSError as err:
        raise _unlistable(data_dir, err) from None
    for name in entries:
        if name in external and name != "watchlist":
            # The engine would read both and screen every row twice (found measuring
            # --spark-table: 5 M fee lines read twice gave 74 569 suspicions for 2 420).
            # A watch list in both is the one table whose rows are added together.
            raise IngestError(
                f"{data_dir}: table {name} is given twice (in the data folder and as "
                f"--spark-table {name}): remove one of them")
    for table in INPUT_TABLES.values():
        if table.required and table.name not in entries and table.name not in external:
            near = _near_misses(data_dir, table)
            raise IngestError(
                f"{data_dir}: required table {table.name} ({table.zh}) not found; expected "
                f"{table.name}.parquet, {table.name}.csv, {table.name}.csv.gz or a folder "
                f"{table.name}/ of parts" + (f"; found instead: {', '.join(near)}" if near else "")
            )

    owns = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="fraudscreen-ingest-")) if owns else Path(work_dir)
    try:
        files: list[InputFile] = []
        tables: dict[str, StagedTable] = {}
        found: list[pl.DataFrame] = []
        for name, parts in entries.items():
            reader = _PartReader(data_dir, INPUT_TABLES[name], codec, renames.get(name, {}),
                                 work / "tables" / name, len(files), on_file)
            table, table_files, entries_ = reader.stage(parts, in_place, notes)
            if reader.lost_lines_of:
                notes.append(f"fee_lines: {len(reader.lost_lines_of):,} settlement(s) lost fee "
                             "lines to quarantine: the rules judge them without those lines "
                             "(a stay may read as idle); see quarantine.csv")
            files += table_files
            found += entries_
            tables[name] = table
    except BaseException:
        if owns:
            shutil.rmtree(work, ignore_errors=True)
        raise
    notes += [_no_rows(name) for name, table in tables.items()
              if not INPUT_TABLES[name].required and table.rows == 0]

    return Ingestion(
        tables=tables,
        files=files,
        rows_read={n: sum(f.rows for f in files if f.table == n) for n in entries},
        quarantine=_quarantine_table(found, files),
        missing_optional=[
            n for n, t in INPUT_TABLES.items() if not t.required and n not in entries
        ],
        work_dir=work,
        notes=notes,
        owns_work_dir=owns,
    )


def _no_rows(name: str) -> str:
    """An optional table that is there but empty is not reported as missing: say so."""
    if name == "item_pairs":  # and it still replaces the shipped pairs
        return "item_pairs: no rows kept (a data folder's item_pairs, even empty, replaces " \
               "the shipped pairs: no items are paired)"
    return f"{name}: no rows kept"


@dataclass
class _PartReader:
    """Reads, checks and stages one table's files (``load_folder``'s inner loop)."""

    data_dir: Path
    table: Table
    codec: str | None
    renames: dict[str, str]
    folder: Path  # where this table's chunks are staged
    first_part: int  # index of its first file in Ingestion.files
    on_file: Callable[[InputFile, float], None] | None = None
    # The settlements whose quarantined fee lines the rules will not see.
    lost_lines_of: set[str] = field(default_factory=set)

    def stage(self, parts: list[Path], in_place: bool, notes: list[str]
              ) -> tuple[StagedTable, list[InputFile], list[pl.DataFrame]]:
        """The table staged, its files and its quarantine entries (``notes`` gets what
        was ignored or filled).

        A file in contract form whose rows are all clean is not copied: the engine
        scans it in place. Should the table's keys repeat across such files, it is
        staged again without that shortcut, since only staged rows can be dropped.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        staged: list[StagedFile] = []
        files: list[InputFile] = []
        found: list[pl.DataFrame] = []
        hashes: list[pl.Series] = []
        for offset, path in enumerate(parts):
            began = time.perf_counter()
            info, part_files, entries, part_hashes = self._part(path, self.first_part + offset,
                                                                in_place, notes)
            if self.on_file:
                self.on_file(info, time.perf_counter() - began)
            files.append(info)
            staged += part_files
            found += entries
            hashes += part_hashes
        repeated = duplicate_keys(staged, self.table, pl.concat(hashes) if hashes
                                  else pl.Series([], dtype=pl.UInt64))
        if not repeated.is_empty() and any(f.in_place for f in staged):
            shutil.rmtree(self.folder)
            return self.stage(parts, False, [])  # already noted on the first reading
        drop_rows(staged, repeated)
        found.append(repeated)
        rows = sum(pq.ParquetFile(f.path).metadata.num_rows for f in staged)
        return StagedTable(self.table.name, tuple(staged), rows), files, found

    def _part(self, path: Path, index: int, in_place: bool, notes: list[str]
              ) -> tuple[InputFile, list[StagedFile], list[pl.DataFrame], list[pl.Series]]:
        try:
            shown, sha256, chunks, contract_form, from_floats = _read_part(
                path, self.data_dir, self.table, self.codec, self.renames, notes,
                self.folder / f"{index:05d}.utf-8.csv")
        except PermissionError as err:
            raise IngestError(f"{path}: cannot be read ({err.strerror})") from None
        in_place = in_place and contract_form
        staged, found, hashes, rows = [], [], [], 0
        zero_padded: dict[str, int] = {}
        whole_floats: dict[str, int] = {}
        # One chunk is written while the next is read and checked (Polars releases the
        # GIL), so both cores stay busy; at most two chunks are held.
        with ThreadPoolExecutor(max_workers=1) as writer:
            written = None
            for n, raw in enumerate(chunks):
                rows += raw.height
                checked = check_part(raw.with_columns(pl.lit(index, pl.UInt32).alias(PART)),
                                     self.table, from_floats)
                good, bad = checked.clean, checked.entries
                if in_place and not (bad.is_empty() and _unchanged(raw, good, self.table)):
                    # Not clean after all: read this file again, staging its clean rows
                    # (its headers are noted already).
                    again: list[str] = []
                    part = self._part(path, index, False, again)
                    notes += [note for note in again if note not in notes]
                    return part
                for column, count in checked.zero_padded.items():
                    zero_padded[column] = zero_padded.get(column, 0) + count
                for column, count in checked.whole_floats.items():
                    whole_floats[column] = whole_floats.get(column, 0) + count
                if self.table.name == "fee_lines" and not bad.is_empty():
                    lost = raw.join(bad.select(LINE), on=LINE, how="semi")["settlement_id"]
                    self.lost_lines_of.update(lost.cast(pl.String).str.strip_chars()
                                              .drop_nulls().to_list())
                found.append(bad)
                hashes.append(key_hashes(good, self.table))
                if good.height and not in_place:
                    if written:
                        written.result()
                    staged.append(StagedFile(self.folder / f"{index:05d}-{n:05d}.parquet", index))
                    written = writer.submit(_write_staged, good, staged[-1].path)
            if written:
                written.result()
        if in_place:
            staged = [StagedFile(path, index, in_place=True)]
        for column, count in zero_padded.items():
            digits = self.table.column(column).digits
            notes.append(f"{shown}: {column}: {count:,} code(s) given back their leading "
                         f"zeros, read as {digits} digits (1 → {'1'.zfill(digits)})")
        for column, count in whole_floats.items():
            notes.append(f"{shown}: {column}: {count:,} id(s) written as whole floats, read "
                         "as the integers they hold (766.0 → 766)")
        return InputFile(shown, self.table.name, rows, sha256), staged, found, hashes


def _unchanged(raw: pl.DataFrame, good: pl.DataFrame, table: Table) -> bool:
    """Whether checking kept every row and value as read (nothing stripped or emptied)."""
    return good.height == raw.height and all(
        good[c].equals(raw[c]) for c in table.column_names if raw.schema[c] == pl.String)


def _write_staged(frame: pl.DataFrame, path: Path) -> None:
    """Stage clean rows. Polars reports a full disk as a ComputeError ("underlying IO
    error"): raised here as the OSError it is, which the commands report in a line."""
    try:
        frame.write_parquet(path, compression="lz4", statistics=False)
    except pl.exceptions.ComputeError as err:
        if "IO error" not in str(err):
            raise
        raise OSError(f"{path.parent}: {err}") from None


def drop_rows(staged: list[StagedFile], rows: pl.DataFrame) -> None:
    """Rewrite the staged chunks holding ``rows`` (PART, LINE) without them."""
    if rows.is_empty():
        return
    parts = set(rows[PART].to_list())
    for f in staged:
        if f.part in parts:
            assert not f.in_place, "an input file is never rewritten"
            frame = pl.read_parquet(f.path, glob=False)
            kept = frame.join(rows.select(PART, LINE), on=[PART, LINE], how="anti",
                              maintain_order="left")
            if kept.height != frame.height:
                _write_staged(kept, f.path)


def write_quarantine(ingestion: Ingestion, out_dir: Path) -> Path:
    """Write ``out_dir/quarantine.csv``: UTF-8 with BOM so Excel shows the Chinese.

    Written to a temporary file first, so a reader never sees half a file.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "quarantine.csv"
    tmp = out_dir / f".quarantine.csv.{os.getpid()}.tmp"
    try:
        excel_text(csv_frame(ingestion.quarantine)).write_csv(tmp, include_bom=True)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def print_summary(ingestion: Ingestion, console=None) -> None:
    """Per table: rows read, kept and quarantined (by reason); then what was absent or ignored."""
    from rich.console import Console
    from rich.table import Table as RichTable

    console = console or Console()
    q = ingestion.quarantine
    counts = (
        q.group_by("table", "reason")
        .agg(pl.struct("file", "line").n_unique().alias("rows"))
        .sort("table", "reason")
    )
    grid = RichTable(title="Input tables")
    for heading in ("table", "files", "rows read", "rows kept", "quarantined", "by reason"):
        numeric = heading in ("rows read", "rows kept", "quarantined")
        grid.add_column(heading, justify="right" if numeric else "left")
    for name, staged in ingestion.tables.items():
        read = ingestion.rows_read[name]
        reasons = counts.filter(pl.col("table") == name)
        grid.add_row(
            f"{name} ({INPUT_TABLES[name].zh})",
            str(sum(f.table == name for f in ingestion.files)),
            f"{read:,}",
            f"{staged.rows:,}",
            f"{read - staged.rows:,}",
            "\n".join(f"{r['reason']}: {r['rows']:,}" for r in reasons.iter_rows(named=True)),
        )
    console.print(grid)
    if ingestion.missing_optional:
        console.print("Optional tables absent (rules that need them are skipped): "
                      + ", ".join(ingestion.missing_optional))
    for note in ingestion.notes:
        console.print(f"note: {note}", markup=False, highlight=False)


def _codec(encoding: str | None) -> str | None:
    if encoding is None:
        return None
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        info = None
    if info is None or not getattr(info, "_is_text_encoding", True):  # base64, rot13
        raise IngestError(f"unknown encoding {encoding!r}; use utf-8, gb18030 or gbk")
    return info.name


def _load_column_map(path: Path) -> dict[str, dict[str, str]]:
    """The site's ``column_map: {源列名: contract_name}``, as each table's renames.

    A key that names a table and holds a mapping is that table's own names, tried before
    the others: ``catalog: {名称: item_name}`` beside ``institutions: {名称: name}``, where
    one name means a column of each. Every target must be a contract column (of that
    table, in a table's own names)."""
    try:
        doc = read_plain_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise IngestError(f"column map {path}: not UTF-8 (saved as GBK?): save it as UTF-8"
                          ) from None
    except (OSError, yaml.YAMLError) as err:  # a source name given twice, too
        raise IngestError(f"column map {path}: cannot read it: {err}") from None
    mapping = doc.get("column_map") if isinstance(doc, dict) else None
    if not isinstance(mapping, dict):
        raise IngestError(
            f"column map {path}: expected a mapping 'column_map: {{源列名: contract_name}}'"
        )
    common = {k: v for k, v in mapping.items() if not isinstance(v, dict)}
    own = {k: v for k, v in mapping.items() if isinstance(v, dict)}
    for name in own:
        if name not in INPUT_TABLES:
            raise IngestError(f"column map {path}: {name!r} holds a mapping, but is no "
                              f"contract table ({', '.join(INPUT_TABLES)})")
    _check_targets(path, common, sorted({c.name for t in INPUT_TABLES.values()
                                         for c in t.columns}), "")
    for name, names in own.items():
        _check_targets(path, names, INPUT_TABLES[name].column_names, f" (in {name})")
    return {name: {str(source).strip(): target
                   for source, target in (common | own.get(name, {})).items()}
            for name in INPUT_TABLES}


def _check_targets(path: Path, mapping: dict, known: list[str], where: str) -> None:
    for source, target in mapping.items():
        if target not in known:
            guess = difflib.get_close_matches(str(target), known, n=1)
            hint = f"; did you mean {guess[0]!r}?" if guess else ""
            raise IngestError(
                f"column map {path}: {source!r} maps to {target!r}{where}, "
                f"which is no contract column{hint}"
            )


def part_suffix(name: str) -> str:
    """The kind of part a file name says (one of SUFFIXES, letter case ignored), or ''."""
    return next((s for s in SUFFIXES if name.lower().endswith(s)), "")


def table_of(entry: Path) -> str | None:
    """The contract table a data folder's entry holds: ``NAME.csv``, ``NAME.csv.gz``,
    ``NAME.parquet``, a folder ``NAME/``, or ``NAME.parquet/`` as Spark writes a table."""
    suffix = part_suffix(entry.name)
    if not (suffix or entry.is_dir()):
        return None
    name = entry.name[:len(entry.name) - len(suffix)]
    return name if name in INPUT_TABLES else None


def _near_misses(data_dir: Path, table: Table) -> list[str]:
    """Entries that look meant as ``table`` but are not read as it, to name in the error:
    its name in another letter case or with another suffix, or its Chinese name."""
    try:
        listed = sorted(data_dir.iterdir())
    except OSError:
        return []
    return [e.name for e in listed
            if e.name.split(".")[0].casefold() in (table.name, table.zh)]


def _find_tables(data_dir: Path, notes: list[str]) -> dict[str, list[Path]]:
    """Each table present -> its files, in contract table order; parts sorted by path."""
    if data_dir.is_file():
        raise IngestError(f"{data_dir}: is a file; --data names the folder that holds the "
                          "tables")
    if not data_dir.is_dir():
        raise IngestError(f"{data_dir}: no such data folder")
    entries: dict[str, Path] = {}
    for entry in sorted(data_dir.iterdir()):
        if entry.name.startswith((".", "_")):
            continue
        name = table_of(entry)
        if name is None and entry.name.split(".")[0] in INPUT_TABLES:
            check_link(entry)  # a broken link named as a table is that table gone missing
        if name is None:
            notes.append(f"ignored {entry.name}: not a contract table")
        elif name in entries:
            raise IngestError(
                f"{data_dir}: table {name} is given twice ({entries[name].name} and {entry.name})"
            )
        else:
            entries[name] = entry
    return {name: _parts(entries[name], data_dir, notes)
            for name in INPUT_TABLES if name in entries}


def _parts(entry: Path, data_dir: Path, notes: list[str]) -> list[Path]:
    check_link(entry)
    if entry.is_file():
        return [entry]
    parts = folder_parts(entry, data_dir, notes)
    if not parts:
        raise IngestError(f"{entry}: folder holds no .csv, .csv.gz or .parquet parts")
    return parts


def check_link(path: Path) -> None:
    """A link to nothing (an unmounted share, a moved file), or one that leads back to
    itself, is a table or part gone missing."""
    if path.is_symlink() and not path.exists():
        try:
            path.resolve(strict=True)
        except RuntimeError:
            raise IngestError(f"{path}: a symbolic link that leads back to itself") from None
        except OSError:
            pass
        raise IngestError(f"{path}: a link to {os.readlink(path)}, which does not exist")


def folder_parts(folder: Path, data_dir: Path, notes: list[str]) -> list[Path]:
    """A table folder's parts, sorted by their path in it. Hive partition folders
    (``month=2/``, nested to any depth) are read too: Spark's ``partitionBy`` spreads a
    table over them, and skipping one loses its rows. Other entries are noted as
    ignored (``data_dir``: what the notes' paths are relative to); a dangling link is
    an error, being a part gone missing."""
    parts = []
    try:
        listed = sorted(folder.iterdir())
    except OSError as err:
        raise _unlistable(folder, err) from None
    for part in listed:
        if part.name.startswith((".", "_")):  # Spark's _SUCCESS and .crc files
            continue
        check_link(part)
        if part.is_file() and part_suffix(part.name):
            parts.append(part)
        elif part.is_dir() and re.fullmatch(r"[^=]+=[^=]*", part.name):
            parts += folder_parts(part, data_dir, notes)
        else:
            why = ("a folder but no partition (KEY=VALUE)" if part.is_dir()
                   else "not a .csv, .csv.gz or .parquet part")
            notes.append(f"ignored {part.relative_to(data_dir).as_posix()}: {why}")
    return sorted(parts, key=lambda p: p.relative_to(folder).as_posix())


def _read_part(
    path: Path, data_dir: Path, table: Table, codec: str | None,
    renames: dict[str, str], notes: list[str], scratch: Path,
) -> tuple[str, str, Iterator[pl.DataFrame], bool]:
    """One file: its path as the quarantine shows it; its SHA-256; its rows in chunks,
    each as the table's columns in contract order (text or contract-typed) plus LINE;
    and whether the file is already in contract form (Parquet with every contract column
    under its own name and type, compressed with a fast codec), so that it can be
    scanned in place when its rows turn out clean. ``scratch``: where a CSV file not in
    UTF-8, or gzipped, is decoded to, while it is read."""
    shown = path.relative_to(data_dir).as_posix()
    contract_form, from_floats = False, frozenset()
    if part_suffix(path.name) == ".parquet":
        chunks, contract_form, from_floats = _read_parquet(path, table, renames, notes, shown)
        sha256 = file_sha256(path)
    else:
        sha256, chunks = _read_csv(path, table, codec, renames, notes, shown, scratch)

    def ordered(chunks: Iterator[pl.DataFrame]) -> Iterator[pl.DataFrame]:
        for chunk in chunks:
            yield chunk.select(
                *(c.name if c.name in chunk.columns else pl.lit(None, pl.String).alias(c.name)
                  for c in table.columns),
                LINE,
            )

    return shown, sha256, ordered(chunks), contract_form, from_floats


def _read_csv(
    path: Path, table: Table, codec: str | None, renames: dict[str, str], notes: list[str],
    shown: str, scratch: Path,
) -> tuple[str, Iterator[pl.DataFrame]]:
    """The file's SHA-256 and its rows in chunks of CSV_BATCH_ROWS: every column as text, so
    codes keep their leading zeros; LINE is the file line. Headers are checked before
    any row is read. A file not in UTF-8, or gzipped (``.csv.gz``), is first decoded to
    a UTF-8 copy in ``scratch``, streamed; the SHA-256 is of the file as delivered."""
    gzipped = part_suffix(path.name) == ".csv.gz"
    opener = gzip.open if gzipped else open
    try:
        digest, utf8_error, quoted, size = _scan(path, codec in (None, *_UTF8), opener)
        if gzipped:  # the compressed bytes: what nightly de-duplicates files by
            digest = file_sha256(path)
        if _blank(path, size, opener):  # a night's part with nothing in it
            notes.append(f"{shown}: empty file (not even a header): no rows")
            return digest, iter(())
        if codec in _UTF8 and utf8_error:
            raise IngestError(f"{path}: not valid UTF-8 ({utf8_error})")
        if codec is None and utf8_error and _utf16(path, opener):
            codec = "utf-16"  # Excel's "Unicode Text" (its byte-order mark says so)
        source = path  # Polars reads UTF-8 (with or without BOM) itself, but not gzip
        if gzipped or codec not in (None, *_UTF8) or utf8_error:
            codec = codec or (None if utf8_error else "utf-8")
            source = _transcode(path, codec, scratch, utf8_error, opener)
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:  # EOFError: cut short
        scratch.unlink(missing_ok=True)
        raise IngestError(f"{path}: cannot be decompressed as gzip ({err})") from None
    scan = pl.scan_csv(source, infer_schema=False, glob=False)
    try:
        headers = _csv_headers(scan, path, table, renames, shown, notes)
    except IngestError:
        if source != path:  # the transcoded copy; never the input
            source.unlink(missing_ok=True)
        raise

    def chunks() -> Iterator[pl.DataFrame]:
        line = 2  # of the next row: line 1 is the header
        try:
            for frame in scan.collect_batches(chunk_size=CSV_BATCH_ROWS):
                # A quoted value may span lines: count its line breaks in.
                inner = (frame.select(pl.sum_horizontal(
                    pl.col(c).str.count_matches("\n", literal=True) for c in frame.columns)
                ).to_series() if quoted else pl.zeros(frame.height, pl.Int64, eager=True))
                lines = pl.int_range(line, line + frame.height, dtype=pl.Int64, eager=True)
                yield frame.select(*_renamed(headers),
                                   (lines + inner.cum_sum() - inner).alias(LINE))
                line += frame.height + int(inner.sum())
        except (pl.exceptions.PolarsError, OSError) as err:
            raise _unreadable(path, "CSV", err, _locate(source)) from None
        finally:
            if source != path:
                source.unlink(missing_ok=True)

    return digest, chunks()


def _csv_headers(scan: pl.LazyFrame, path: Path, table: Table, renames: dict[str, str],
                 shown: str, notes: list[str]) -> dict[str, str]:
    """Contract column -> the CSV file's header for it (see ``_match_headers``)."""
    try:
        columns = scan.collect_schema().names()
    except (pl.exceptions.PolarsError, OSError) as err:
        raise _unreadable(path, "CSV", err) from None
    # Polars names a repeated header H_duplicated_N; blank ones (an export's trailing
    # empty columns) are not a question of which column is meant.
    repeated = [c for c in columns if (m := re.fullmatch(r"(.*)_duplicated_\d+", c))
                and m[1] in columns and m[1].strip()]
    if repeated:
        base = re.fullmatch(r"(.*)_duplicated_\d+", repeated[0])[1]
        raise IngestError(f"{path}: header {base.strip()!r} appears more than once; "
                          "which column is meant?")
    return _match_headers(columns, table, renames, path, shown, notes)


def _blank(path: Path, size: int, opener: Callable = open) -> bool:
    """Whether a file holds nothing, or only a byte-order mark and line breaks (what
    Excel saves for an empty sheet)."""
    if size > 16:
        return False
    with opener(path, "rb") as f:
        return not f.read().removeprefix(codecs.BOM_UTF8).strip()


def _utf16(path: Path, opener: Callable = open) -> bool:
    """Whether the file starts with a UTF-16 byte-order mark."""
    with opener(path, "rb") as f:
        return f.read(2) in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def _transcode(path: Path, codec: str | None, target: Path, utf8_error: str = "",
               opener: Callable = open) -> Path:
    """A UTF-8 copy of a CSV file in the named codec, else GB18030, decoded in chunks
    (``utf8_error``: why it is not UTF-8, for the message if GB18030 fails too;
    ``opener``: ``gzip.open`` for a gzipped file, which is decompressed on the way)."""
    if codec in _UTF8:  # a gzipped file found to be UTF-8: only decompressed (faster)
        with opener(path, "rb") as raw, target.open("wb") as out:
            shutil.copyfileobj(raw, out, _CHUNK)
        return target
    decoder = codecs.getincrementaldecoder(codec or "gb18030")()
    offset = start = 0  # bytes read; where the bytes being decoded begin
    try:
        with opener(path, "rb") as raw, target.open("w", encoding="utf-8", newline="") as out:
            while chunk := raw.read(_CHUNK):
                start = offset - len(decoder.getstate()[0])  # a split character's bytes
                out.write(decoder.decode(chunk))
                offset += len(chunk)
            start = offset - len(decoder.getstate()[0])
            out.write(decoder.decode(b"", final=True))
    except UnicodeError as err:  # UTF-16 without a BOM raises the base class
        target.unlink(missing_ok=True)
        at = start + getattr(err, "start", 0)
        # A UTF-16 character may hold the byte 0x0A: no line count there.
        at = f"near byte {at:,}" if (codec or "").startswith("utf-16") else _where(path, at, opener)
        if codec:
            raise IngestError(f"{path}: cannot be read as {codec}: "
                              f"{getattr(err, 'reason', err)} {at}") from None
        raise IngestError(
            f"{path}: neither UTF-8 ({utf8_error}) nor GB18030 ({at}); "
            "name the encoding with --encoding"
        ) from None
    return target


def _read_parquet(
    path: Path, table: Table, renames: dict[str, str], notes: list[str], shown: str
) -> tuple[Iterator[pl.DataFrame], bool]:
    """The table's columns in chunks: typed ones cast to the contract, the rest as text
    to check; and whether the file is in contract form. Headers are checked before any
    row is read."""
    try:
        parquet = pq.ParquetFile(path)
        metadata, arrow = parquet.metadata, parquet.schema_arrow
        _check_zones(path, arrow)
    except (pa.ArrowException, OSError) as err:
        raise _unreadable(path, "Parquet", err) from None
    headers = _match_headers(arrow.names, table, renames, path, shown, notes)
    _check_types(path, arrow, headers)
    try:
        schema = pl.scan_parquet(path, glob=False).collect_schema()
    except (pl.exceptions.PolarsError, OSError) as err:
        raise _unreadable(path, "Parquet", err) from None
    targets = {name: table.column(name).type.polars for name in headers}
    int96 = _int96_columns(metadata, headers)
    if int96:
        notes.append(f"{shown}: {', '.join(int96)}: INT96 timestamps (as Spark writes them) "
                     "read as UTC instants, in China Standard Time")
    scan = pl.scan_parquet(path, glob=False).select(_renamed(headers)).with_columns(
        _parquet_cast(name, schema[header], targets[name], utc=name in int96)
        for name, header in headers.items()
        if schema[header] not in (pl.String, targets[name]) or name in int96)
    groups = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]

    def chunks() -> Iterator[pl.DataFrame]:
        offset = 0
        try:
            for length in _chunk_lengths(groups):
                frame = scan.slice(offset, length).collect()
                yield frame.with_columns(pl.int_range(offset + 1, offset + frame.height + 1,
                                                      dtype=pl.Int64).alias(LINE))
                offset += length
        except (pl.exceptions.PolarsError, OSError) as err:
            binary = [h for h in headers.values() if pa.types.is_binary(arrow.field(h).type)
                      or pa.types.is_large_binary(arrow.field(h).type)]
            if binary and "utf8" in str(err):
                raise IngestError(f"{path}: column(s) {', '.join(binary)} hold bytes that are "
                                  "not UTF-8 text (GBK?): write them as UTF-8 strings") from None
            raise _unreadable(path, "Parquet", err) from None

    codecs_used = {metadata.row_group(g).column(c).compression
                   for g in range(metadata.num_row_groups) for c in range(metadata.num_columns)}
    contract_form = codecs_used <= FAST_CODECS and not int96 and all(
        headers.get(c.name) == c.name and schema[c.name] == targets[c.name]
        for c in table.columns)
    from_floats = frozenset(name for name, header in headers.items()
                            if schema[header].is_float() and targets[name] == pl.String)
    return chunks(), contract_form, from_floats


def _check_types(path: Path, schema: pa.Schema, headers: dict[str, str]) -> None:
    """A contract column must hold single values that read as its type: not lists or
    structs, not a time of day or a duration, not a decimal wider than 38 digits."""
    for name, header in headers.items():
        kind = schema.field(header).type
        nested = pa.types.is_nested(kind)
        if nested or pa.types.is_time(kind) or pa.types.is_duration(kind) or (
                pa.types.is_decimal(kind) and kind.precision > 38):
            what = ("lists or structs, not single values" if nested else
                    "decimals wider than 38 digits" if pa.types.is_decimal(kind) else
                    "times of day without a date" if pa.types.is_time(kind) else "durations")
            named = f"{header!r}" if header == name else f"{header!r} ({name})"
            raise IngestError(f"{path}: column {named} is {kind}: it holds {what}, which "
                              "cannot be read as the contract's column")


def _check_zones(path: Path, schema: pa.Schema) -> None:
    """A time column's zone must be one Polars knows (Asia/Shanghai, +08:00): an unknown
    one (Asia/Beijing, CST) makes Polars panic on reading the file's schema."""
    for field_ in schema:
        zone = getattr(field_.type, "tz", None)
        if zone is None:
            continue
        try:
            pl.Series([], dtype=pl.Int64).cast(pl.Datetime("us", zone))
        except pl.exceptions.PolarsError:
            raise IngestError(
                f"{path}: column {field_.name!r} holds times in zone {zone!r}, which is no "
                "time-zone name (write Asia/Shanghai or +08:00; CST is ambiguous)") from None


def _int96_columns(metadata: pq.FileMetaData, headers: dict[str, str]) -> list[str]:
    """The contract columns stored as INT96 by Spark or Hive (parquet-mr): their default
    timestamp, an instant in UTC that carries no zone, so read as the local time it says
    it would be 8 hours early. Impala and pyarrow write INT96 as the local time itself."""
    by_spark = (metadata.created_by or "").startswith("parquet-mr") or \
        b"org.apache.spark.version" in (metadata.metadata or {})
    stored = {metadata.schema.column(i).path for i in range(metadata.num_columns)
              if metadata.schema.column(i).physical_type == "INT96"}
    return [name for name, header in headers.items() if header in stored] if by_spark else []


def _chunk_lengths(row_groups: list[int]) -> Iterator[int]:
    """Chunks along row-group boundaries, so no group is decoded twice: consecutive
    groups together up to CHUNK_ROWS (a DuckDB export has 122,880-row groups: one chunk
    each would stage hundreds of small files), a group larger than that cut into
    pieces of about CHUNK_ROWS."""
    pending = 0
    for rows in row_groups:
        if pending and pending + rows > CHUNK_ROWS:
            yield pending
            pending = 0
        if rows <= CHUNK_ROWS:
            pending += rows
            continue
        pieces = round(rows / CHUNK_ROWS)
        for i in range(pieces):
            yield rows * (i + 1) // pieces - rows * i // pieces
    if pending:
        yield pending


def _parquet_cast(name: str, source: pl.DataType, target: pl.DataType,
                  utc: bool = False) -> pl.Expr:
    """A typed column converts directly when that is exact and cannot fail: dates and
    times, and decimals or integers whose every value fits the contract decimal
    (rounded half away from zero). Anything else, binary floats and values that may not
    fit included, goes through text and is checked like a CSV cell; a whole float bound
    for a text column goes as the integer it holds. ``utc``: a time without a zone that
    is a UTC instant all the same (INT96)."""
    column = pl.col(name)
    if target == pl.String and source.is_float():
        # A code kept as a float (a pandas column with gaps) is its integer: 1.0 -> "1";
        # NaN is a gap, not the code "NaN". From 2^53 on (2^24 for a Float32) a float has
        # lost digits (18-digit ids became one), so it is written in scientific notation,
        # 3.5e+17, which checking quarantines (check_part's from_floats).
        whole = column.cast(pl.Int64, strict=False)
        exact = 2.0**24 if source == pl.Float32 else 2.0**53
        return (pl.when(column.is_nan()).then(None)
                .when(column.is_finite() & (column.abs() >= exact)).then(_scientific_text(column))
                .when(whole == column).then(whole.cast(pl.String))
                .otherwise(column.cast(pl.String)).alias(name))
    if source.is_temporal() and target.is_temporal():
        column = within_calendar(column, source)
        zoned = getattr(source, "time_zone", None)
        if utc and not zoned:
            column = column.dt.replace_time_zone("UTC")
        if utc or zoned:
            # An instant (Spark writes UTC): its wall-clock time where the care happened.
            column = column.dt.convert_time_zone(LOCAL_TIME_ZONE).dt.replace_time_zone(None)
        return column.cast(target)
    if isinstance(target, pl.Decimal) and source.is_float():
        # Shortest text, except that below 1e-5 Polars writes an exponent (9.9e-6), which
        # the decimal check refuses; such a value is 0 at any contract scale (4 places).
        text = column.cast(pl.String)
        return pl.when(text.str.contains("e-", literal=True)).then(pl.lit("0")).otherwise(
            text).alias(name)
    if isinstance(target, pl.Decimal) and _integer_digits(source) <= (
            target.precision - target.scale):
        if isinstance(source, pl.Decimal) and source.scale > target.scale:
            column = column.round(target.scale, mode="half_away_from_zero")
        return column.cast(target)
    return column.cast(pl.String)


def _scientific_text(column: pl.Expr) -> pl.Expr:
    """``3.5092519800101125e+17``: a finite float of 1 or more as d.ddd…e+N."""
    exponent = column.abs().log10().floor().cast(pl.Int64, strict=False)  # 0, NaN: unused
    mantissa = column.cast(pl.Float64) / pl.lit(10.0).pow(exponent)
    # log10 rounds: 1e23 came out 10.0e+22
    over = mantissa.abs() >= 10
    return pl.format("{}e+{}", pl.when(over).then(mantissa / 10).otherwise(mantissa),
                     pl.when(over).then(exponent + 1).otherwise(exponent))


def _integer_digits(dtype: pl.DataType) -> float:
    """How many digits before the point a value of ``dtype`` may have (inf: a type that
    is never converted directly)."""
    if isinstance(dtype, pl.Decimal):
        return dtype.precision - dtype.scale
    if dtype.is_integer():
        return _INT_DIGITS.get(dtype, 20)
    return float("inf")


_INT_DIGITS = {pl.Int8: 3, pl.UInt8: 3, pl.Int16: 5, pl.UInt16: 5, pl.Int32: 10, pl.UInt32: 10}


def _renamed(headers: dict[str, str]) -> list[pl.Expr]:
    return [pl.col(header).alias(name) for name, header in headers.items()]


def _match_headers(
    headers: list[str], table: Table, renames: dict[str, str], path: Path, shown: str,
    notes: list[str],
) -> dict[str, str]:
    """Contract column -> the file's header for it; IngestError when a required one is absent."""
    aliases = {alias.casefold(): name for alias, name in table.header_aliases().items()}
    matched: dict[str, str] = {}
    unknown: list[str] = []
    blank = 0
    for header in headers:
        clean = header.replace("\ufeff", "").strip()
        if not clean or re.fullmatch(r"_duplicated_\d+", clean):
            blank += 1
            continue
        name = renames.get(clean)
        if name not in table.column_names:
            # Full-width letters (结算ＩＤ, as some input methods type them) read as plain.
            name = aliases.get(clean.casefold(),
                               aliases.get(unicodedata.normalize("NFKC", clean).casefold()))
        if name is None:
            unknown.append(clean)
        elif name in matched:
            raise IngestError(
                f"{path}: headers {matched[name]!r} and {header!r} both mean {table.name}.{name}"
            )
        else:
            matched[name] = header
    if not matched and len(unknown) == 1 and re.search(r"[\t;|]", unknown[0]):
        raise IngestError(f"{path}: the header is one column ({unknown[0][:60]!r}): is the "
                          "file separated by tabs, semicolons or bars? Save it as "
                          "comma-separated CSV")
    for column in table.columns:
        if column.name not in matched and not column.nullable:
            accepted = ", ".join(a for a in (column.name, column.zh, column.national) if a)
            read = ", ".join(h.strip() for h in headers[:8]) + (", …" if len(headers) > 8 else "")
            raise IngestError(
                f"{path}: table {table.name} needs column {column.name} (header {accepted})"
                f"{_did_you_mean(column, unknown)}; map other names with --column-map. The "
                f"header read was: {read} (a title line above the header would be read so)"
            )
    if unknown:
        notes.append(f"{shown}: ignored columns not in the contract: {', '.join(unknown)}")
    if blank:
        notes.append(f"{shown}: ignored {blank} column(s) with no header")
    filled = [c.name for c in table.columns if c.name not in matched]
    if filled:
        notes.append(f"{shown}: no column {', '.join(filled)}; left empty")
    return matched


def _did_you_mean(column: Column, headers: list[str]) -> str:
    for alias in (column.name, column.zh, column.national):
        close = difflib.get_close_matches(alias, headers, n=1, cutoff=0.6) if alias else []
        if close:
            return f"; did you mean {close[0]!r}?"
    return ""


def _scan(path: Path, check_utf8: bool, opener: Callable = open) -> tuple[str, str, bool, int]:
    """One streamed pass: SHA-256, the first UTF-8 error ('' if none), whether the
    file holds a double quote (without one, no value spans lines), and its size; of the
    content as ``opener`` gives it (``gzip.open``: decompressed)."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    error, quoted, offset = "", False, 0
    with opener(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            quoted = quoted or b'"' in chunk
            if check_utf8 and not error:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as err:
                    error = f"{err.reason} {_where(path, offset + err.start, opener)}"
            offset += len(chunk)
    if check_utf8 and not error:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as err:
            error = f"{err.reason} at the end"
    return digest.hexdigest(), error, quoted, offset


def _where(path: Path, offset: int, opener: Callable = open) -> str:
    """A byte offset as the line a person finds it on (read again, only on failure)."""
    lines, left = 1, offset
    with opener(path, "rb") as f:
        while left > 0 and (chunk := f.read(min(_CHUNK, left))):
            lines += chunk.count(b"\n")
            left -= len(chunk)
    return f"at line {lines:,} (byte {offset:,})"


def _unreadable(path: Path, kind: str, err: Exception, where: str = "") -> IngestError:
    return IngestError(f"{path}: cannot read as {kind}{where}: {str(err).splitlines()[0]}")


def _unlistable(folder: Path, err: OSError) -> IngestError:
    return IngestError(f"{folder}: cannot list the folder ({err.strerror or err})")


def _locate(source: Path) -> str:
    """Where a CSV file stops being CSV, for the error message (read only on failure):
    the first row with more fields than the header, or where quoting breaks."""
    start = 1  # the line the row being read starts on
    try:
        with source.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, strict=True)
            width = len(next(reader, []))
            start = reader.line_num + 1
            for record in reader:
                if len(record) > width:  # a short row is quarantined; a long one is not CSV
                    return (f" at line {start} ({len(record)} fields; the header "
                            f"has {width})")
                start = reader.line_num + 1
    except csv.Error as err:
        return f" in the row starting at line {start} ({err})"
    except (OSError, UnicodeDecodeError):
        return ""
    return ""


def file_sha256(path: Path) -> str:
    """A file's SHA-256, read in chunks."""
    return _scan(path, check_utf8=False)[0]


def _quarantine_table(found: list[pl.DataFrame], files: list[InputFile]) -> pl.DataFrame:
    origin = pl.DataFrame(
        {
            PART: pl.Series(range(len(files)), dtype=pl.UInt32),
            "table": [f.table for f in files],
            "file": [f.path for f in files],
        }
    )
    return (
        pl.concat(found)
        .join(origin, on=PART, how="left")
        .rename({LINE: "line"})
        .select(COLUMNS)
        .sort("table", "file", "line", "column", nulls_last=False)
    )
