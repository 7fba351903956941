"""Read a data folder into contract-typed tables, quarantining what cannot be read.

The folder holds one entry per contract table: ``NAME.parquet``, ``NAME.csv`` or a
folder ``NAME/`` of Parquet or CSV parts. Headers may be English contract names,
the Chinese names, national platform field names or a site's own names mapped in a
column-map file. Unusable input (a missing table or required column, an unreadable
file) raises IngestError; a bad value only sends its row to quarantine (see
``fraudscreen.quarantine``). ``docs/ingestion.md`` is the user-facing account.
"""

from __future__ import annotations

import codecs
import difflib
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import yaml

from fraudscreen.contract import INPUT_TABLES, Column, Table
from fraudscreen.quarantine import LINE, PART, check_part, split_duplicate_keys

SUFFIXES = (".csv", ".parquet")
QUARANTINE_COLUMNS = ("table", "file", "line", "column", "value", "reason")
_UTF8 = ("utf-8", "utf-8-sig")
_CHUNK = 1 << 20


class IngestError(Exception):
    """The input cannot be used; the message names the file (and column) at fault."""


@dataclass
class InputFile:
    path: str  # relative to the data folder, as in the quarantine's `file` column
    table: str
    rows: int
    sha256: str


@dataclass
class Ingestion:
    tables: dict[str, pl.DataFrame]  # tables present; contract types and order; clean rows
    files: list[InputFile]
    rows_read: dict[str, int]  # per table: data rows read, kept or quarantined
    quarantine: pl.DataFrame  # table,file,line,column,value,reason
    missing_optional: list[str]
    notes: list[str] = field(default_factory=list)  # ignored files and columns, filled columns
    rows_kept: dict[str, int] = field(default_factory=dict)  # per table: clean rows

    def __post_init__(self) -> None:
        self.rows_kept = self.rows_kept or {n: f.height for n, f in self.tables.items()}


def load_folder(
    data_dir: Path, encoding: str | None = None, column_map: Path | None = None,
    external: frozenset[str] = frozenset(),
) -> Ingestion:
    """Read every contract table in ``data_dir``.

    ``external`` names tables the engine reads elsewhere (Spark catalog tables), so
    their absence here is not an error. ``encoding`` names the CSV encoding; by
    default each CSV file is read as UTF-8 when it is valid UTF-8, else as GB18030
    (a superset of GBK and GB2312).
    """
    data_dir = Path(data_dir)
    codec = _codec(encoding)
    renames = _load_column_map(Path(column_map)) if column_map else {}
    notes: list[str] = []
    entries = _find_tables(data_dir, notes)
    for table in INPUT_TABLES.values():
        if table.required and table.name not in entries and table.name not in external:
            raise IngestError(
                f"{data_dir}: required table {table.name} ({table.zh}) not found; expected "
                f"{table.name}.parquet, {table.name}.csv or a folder {table.name}/ of parts"
            )

    files: list[InputFile] = []
    tables: dict[str, pl.DataFrame] = {}
    rows_read: dict[str, int] = {}
    found: list[pl.DataFrame] = []
    for name, parts in entries.items():
        table = INPUT_TABLES[name]
        clean: list[pl.DataFrame] = []
        for path in parts:
            raw, info = _read_part(path, data_dir, table, codec, renames, notes)
            raw = raw.with_columns(pl.lit(len(files), pl.UInt32).alias(PART))
            good, bad = check_part(raw, table)
            files.append(info)
            clean.append(good)
            found.append(bad)
        kept, repeated = split_duplicate_keys(pl.concat(clean), table)
        found.append(repeated)
        tables[name] = kept.drop(PART, LINE)
        rows_read[name] = sum(f.rows for f in files if f.table == name)

    return Ingestion(
        tables=tables,
        files=files,
        rows_read=rows_read,
        quarantine=_quarantine_table(found, files),
        missing_optional=[
            n for n, t in INPUT_TABLES.items() if not t.required and n not in entries
        ],
        notes=notes,
    )


def write_quarantine(ingestion: Ingestion, out_dir: Path) -> Path:
    """Write ``out_dir/quarantine.csv``: UTF-8 with BOM so Excel shows the Chinese.

    Written to a temporary file first, so a reader never sees half a file.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "quarantine.csv"
    tmp = out_dir / f".quarantine.csv.{os.getpid()}.tmp"
    try:
        ingestion.quarantine.write_csv(tmp, include_bom=True)
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
    for name, frame in ingestion.tables.items():
        read = ingestion.rows_read[name]
        reasons = counts.filter(pl.col("table") == name)
        grid.add_row(
            f"{name} ({INPUT_TABLES[name].zh})",
            str(sum(f.table == name for f in ingestion.files)),
            f"{read:,}",
            f"{frame.height:,}",
            f"{read - frame.height:,}",
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
        return codecs.lookup(encoding).name
    except LookupError:
        raise IngestError(f"unknown encoding {encoding!r}; use utf-8, gb18030 or gbk") from None


def _load_column_map(path: Path) -> dict[str, str]:
    """The site's ``column_map: {源列名: contract_name}``; each target a contract column."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise IngestError(f"column map {path}: cannot read it: {err}") from None
    mapping = doc.get("column_map") if isinstance(doc, dict) else None
    if not isinstance(mapping, dict):
        raise IngestError(
            f"column map {path}: expected a mapping 'column_map: {{源列名: contract_name}}'"
        )
    known = sorted({c.name for t in INPUT_TABLES.values() for c in t.columns})
    for source, target in mapping.items():
        if target not in known:
            guess = difflib.get_close_matches(str(target), known, n=1)
            hint = f"; did you mean {guess[0]!r}?" if guess else ""
            raise IngestError(
                f"column map {path}: {source!r} maps to {target!r}, "
                f"which is no contract column{hint}"
            )
    return {str(source).strip(): target for source, target in mapping.items()}


def _find_tables(data_dir: Path, notes: list[str]) -> dict[str, list[Path]]:
    """Each table present -> its files, in contract table order; parts sorted by name."""
    if not data_dir.is_dir():
        raise IngestError(f"{data_dir}: no such data folder")
    entries: dict[str, Path] = {}
    for entry in sorted(data_dir.iterdir()):
        if entry.name.startswith((".", "_")):
            continue
        name = entry.name if entry.is_dir() else entry.stem
        if name not in INPUT_TABLES or not (entry.is_dir() or entry.suffix.lower() in SUFFIXES):
            notes.append(f"ignored {entry.name}: not a contract table")
        elif name in entries:
            raise IngestError(
                f"{data_dir}: table {name} is given twice ({entries[name].name} and {entry.name})"
            )
        else:
            entries[name] = entry
    return {name: _parts(entries[name], notes) for name in INPUT_TABLES if name in entries}


def _parts(entry: Path, notes: list[str]) -> list[Path]:
    if entry.is_file():
        return [entry]
    parts = []
    for part in sorted(entry.iterdir()):
        if part.name.startswith((".", "_")):
            continue
        if part.is_file() and part.suffix.lower() in SUFFIXES:
            parts.append(part)
        else:
            notes.append(f"ignored {entry.name}/{part.name}: not a .csv or .parquet part")
    if not parts:
        raise IngestError(f"{entry}: folder holds no .csv or .parquet parts")
    return parts


def _read_part(
    path: Path, data_dir: Path, table: Table, codec: str | None,
    renames: dict[str, str], notes: list[str],
) -> tuple[pl.DataFrame, InputFile]:
    """One file as the table's columns in contract order (text or contract-typed) plus LINE."""
    shown = path.relative_to(data_dir).as_posix()
    if path.suffix.lower() == ".csv":
        frame, sha256 = _read_csv(path, table, codec, renames, notes, shown)
    else:
        frame, sha256 = _read_parquet(path, table, renames, notes, shown), _sha256(path)
    frame = frame.select(
        *(c.name if c.name in frame.columns else pl.lit(None, pl.String).alias(c.name)
          for c in table.columns),
        LINE,
    )
    return frame, InputFile(shown, table.name, frame.height, sha256)


def _read_csv(
    path: Path, table: Table, codec: str | None, renames: dict[str, str], notes: list[str],
    shown: str,
) -> tuple[pl.DataFrame, str]:
    """Every column as text, so codes keep their leading zeros; LINE is the file line."""
    digest, utf8_error, line_breaks = _scan(path, check_utf8=codec in (None, *_UTF8))
    if codec in _UTF8 and utf8_error:
        raise IngestError(f"{path}: not valid UTF-8 ({utf8_error})")
    if codec in (None, *_UTF8) and not utf8_error:
        source: Path | bytes = path  # Polars reads UTF-8 (with or without BOM) itself
    else:
        source = _decode(path, codec).encode("utf-8")
    try:
        frame = pl.read_csv(source, infer_schema=False)
    except (pl.exceptions.PolarsError, OSError) as err:
        raise IngestError(f"{path}: cannot read as CSV: {str(err).splitlines()[0]}") from None
    headers = _match_headers(frame.columns, table, renames, path, shown, notes)
    line = pl.int_range(2, frame.height + 2, dtype=pl.Int64)
    if line_breaks > frame.height + 1:  # some quoted values span lines: count them in
        inner = pl.sum_horizontal(
            pl.col(c).str.count_matches("\n", literal=True) for c in frame.columns
        )
        line = line + inner.cum_sum() - inner
    return frame.select(*_renamed(headers), line.alias(LINE)), digest


def _decode(path: Path, codec: str | None) -> str:
    """Text of a CSV that is not UTF-8: in the named codec, else GB18030."""
    data = path.read_bytes()
    try:
        return data.decode(codec or "gb18030")
    except UnicodeDecodeError as err:
        if codec:
            raise IngestError(
                f"{path}: cannot be read as {codec}: {err.reason} at byte {err.start}"
            ) from None
        raise IngestError(
            f"{path}: neither UTF-8 nor GB18030 (byte {err.start}); "
            "name the encoding with --encoding"
        ) from None


def _read_parquet(
    path: Path, table: Table, renames: dict[str, str], notes: list[str], shown: str
) -> pl.DataFrame:
    """The table's columns only: typed ones cast to the contract, the rest as text to check."""
    try:
        schema = pl.read_parquet_schema(path)
        headers = _match_headers(list(schema), table, renames, path, shown, notes)
        frame = pl.read_parquet(path, columns=list(headers.values())).select(_renamed(headers))
        targets = {name: table.column(name).type.polars for name in headers}
        return frame.with_columns(
            *(_parquet_cast(name, dtype, targets[name])
              for name, dtype in frame.schema.items() if dtype not in (pl.String, targets[name])),
            pl.int_range(1, frame.height + 1, dtype=pl.Int64).alias(LINE),
        )
    except (pl.exceptions.PolarsError, OSError) as err:
        raise IngestError(f"{path}: cannot read as Parquet: {str(err).splitlines()[0]}") from None


def _parquet_cast(name: str, source: pl.DataType, target: pl.DataType) -> pl.Expr:
    """Dates and times convert directly; anything else goes through text, where decimals
    are rounded exactly and every value is checked like a CSV cell."""
    column = pl.col(name)
    if not (source.is_temporal() and target.is_temporal()):
        return column.cast(pl.String)
    if getattr(source, "time_zone", None):
        column = column.dt.replace_time_zone(None)  # keep the local wall-clock time
    return column.cast(target)


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
    for header in headers:
        clean = header.replace("\ufeff", "").strip()
        name = renames.get(clean)
        if name not in table.column_names:
            name = aliases.get(clean.casefold())
        if name is None:
            unknown.append(clean)
        elif name in matched:
            raise IngestError(
                f"{path}: headers {matched[name]!r} and {header!r} both mean {table.name}.{name}"
            )
        else:
            matched[name] = header
    for column in table.columns:
        if column.name not in matched and not column.nullable:
            accepted = ", ".join(a for a in (column.name, column.zh, column.national) if a)
            raise IngestError(
                f"{path}: table {table.name} needs column {column.name} (header {accepted})"
                f"{_did_you_mean(column, unknown)}; map other names with --column-map"
            )
    if unknown:
        notes.append(f"{shown}: ignored columns not in the contract: {', '.join(unknown)}")
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


def _scan(path: Path, check_utf8: bool) -> tuple[str, str, int]:
    """One streamed pass: SHA-256, the first UTF-8 error ('' if none), line-break count."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    error, line_breaks, offset = "", 0, 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            line_breaks += chunk.count(b"\n")
            if check_utf8 and not error:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as err:
                    error = f"{err.reason} near byte {offset + err.start}"
            offset += len(chunk)
    if check_utf8 and not error:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as err:
            error = f"{err.reason} at the end"
    return digest.hexdigest(), error, line_breaks


def _sha256(path: Path) -> str:
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
        .select(QUARANTINE_COLUMNS)
        .sort("table", "file", "line", "column", nulls_last=False)
    )
