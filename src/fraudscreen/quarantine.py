"""Which input rows are quarantined, and why.

Every value is read as its contract type here. A cell that cannot be read, an empty
required cell, a row that breaks a contract rule or repeats a key sends its row to
quarantine with one entry per offending cell, with the cell's original text and the
row's key (its record key), so that ``rows read = rows kept + rows quarantined`` always
holds and nothing vanishes.

All work is column-wise Polars; the only Python loops run over columns and checks.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from functools import reduce
from typing import TYPE_CHECKING

import polars as pl

from fraudscreen.contract import (
    INPUT_TABLES,
    LOCAL_TIME_ZONE,
    RECORD_KEY_SEPARATOR,
    Column,
    ColumnType,
    Table,
)

if TYPE_CHECKING:
    from fraudscreen.ingest import StagedFile

PART, LINE = "__part", "__line"  # which input file (index into Ingestion.files), which line
# The row's key (``Table.record_key``) as read, so that a clerk knows which settlement or
# fee line was refused without opening the file, whose lines a re-export renumbers.
RECORD_KEY = "record_key"
# The columns of an ingestion's quarantine (quarantine.csv adds reason_zh: ``csv_frame``).
COLUMNS = ("table", "file", "line", "column", "value", "reason", RECORD_KEY)
# Cells the public profile does not show in quarantine.csv, and what it shows instead.
PRIVATE, HIDDEN = ("person_id", "birth_date"), "（已隐藏）"
ENTRY_SCHEMA = {
    PART: pl.UInt32,
    LINE: pl.Int64,
    "column": pl.String,
    "value": pl.String,
    "reason": pl.String,
    RECORD_KEY: pl.String,
}

# A reversal row (冲销) names the settlement it cancels in this column. Its reversal stands
# even when the row itself is quarantined: such a row gets one more entry, whose value is
# the settlement it names, and the engines treat that settlement as reversed
# (``quarantined_reversals``), so a reversed settlement never produces a lead.
REVERSED = "reversed_settlement_id"
REVERSAL_STANDS = "quarantined reversal row: the settlement it names is still reversed"
MISSING = "missing value"
SCIENTIFIC = "number in scientific notation (digits lost, e.g. by Excel)"
EMPTY_ROW = "empty row"
DUPLICATE_KEY = "duplicate key"
# The same key with other values: which copy is right, the data does not say (the first
# is kept, as for a plain repeat; this reason tells the copies that need a look).
CONFLICTING_KEY = "duplicate key with other values than the row kept"
BAD_VALUE = {
    ColumnType.TIMESTAMP: "bad timestamp",
    ColumnType.DATE: "bad date",
    ColumnType.MONEY: "bad decimal",
    ColumnType.QUANTITY: "bad decimal",
}

DISCHARGE_BEFORE_ADMISSION = "discharge before admission"
# Contract rules one row can break: table -> (column reported, reason, condition).
# Discharge before admission is judged by calendar date, as the rules judge stays: an
# export giving discharge_time as a date (2024-01-05, midnight) for a stay or visit
# admitted that day at 08:00 is no contradiction, and was quarantined as one.
ROW_RULES: dict[str, tuple[tuple[str, str, pl.Expr], ...]] = {
    "settlements": (
        ("discharge_time", DISCHARGE_BEFORE_ADMISSION,
         pl.col("discharge_time").dt.date() < pl.col("admit_time").dt.date()),
    ),
}
# Each reason in Chinese, for report.html and quarantine.csv's reason_zh; ``reason``
# stays English, the text run.json counts and scripts match. A reason missing here shows
# in English (``reason_zh``), and fails a test (tests/test_ingest.py).
REASON_ZH = {
    REVERSAL_STANDS: "被隔离的冲销行：其所冲销的结算仍按已冲销处理",
    MISSING: "必填值缺失",
    SCIENTIFIC: "数字为科学计数法（位数已丢失，如经 Excel 保存）",
    EMPTY_ROW: "空行",
    DUPLICATE_KEY: "主键重复",
    CONFLICTING_KEY: "主键重复，且其他值与保留的行不同",
    BAD_VALUE[ColumnType.TIMESTAMP]: "时间无法识别",
    BAD_VALUE[ColumnType.DATE]: "日期无法识别",
    BAD_VALUE[ColumnType.MONEY]: "数值无法识别",
    DISCHARGE_BEFORE_ADMISSION: "出院时间早于入院时间",
}

# The first format is tried on every value, the rest only on values it rejects.
TIMESTAMP_FORMATS = (
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y/%m/%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M",
    "%Y%m%d%H%M%S",
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%Y%m%d",
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
)
# A database export often writes a date as midnight of that day: the day is what counts.
DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y%m%d",
                "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y/%m/%d %H:%M:%S%.f",
                "%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z")
# A time with a zone (`Z`, `+08:00`, `+0800`) is an instant: it is read as the wall-clock
# time in China Standard Time, like a zoned Parquet timestamp (`00:30Z` is `08:30`).
_ZONED = "%#z"
FORMATS = {ColumnType.TIMESTAMP: TIMESTAMP_FORMATS, ColumnType.DATE: DATE_FORMATS}
YEARS = (1900, 2099)  # the years a date or time in the contract's tables may have
DECIMALS = (ColumnType.MONEY, ColumnType.QUANTITY)
# Digit-only formats need every digit: chrono would read '2024010203040' as 03:04:00.
_DIGITS_ONLY = {"%Y%m%d%H%M%S": 14, "%Y%m%d": 8}
_DECIMAL_TEXT = r"^[+-]?(?:\d+\.?\d*|\.\d+)$"
# A long number Excel shows as 3.30106E+13: the id or code it was is lost.
_SCIENTIFIC_TEXT = r"^[+-]?\d(?:\.\d+)?[eE]\+\d+$"


# Ids a pandas column with gaps writes as floats (766.0): a reversal naming 766.0 would
# reverse nothing when the settlement it means is 766.
_IDS = ("settlement_id", "reversed_settlement_id", "person_id", "institution_id", "line_id",
        "doctor_id")
_WHOLE_FLOAT = r"^(\d+)\.0$"
# The ids rules join and group by: each of their values is checked for scientific notation.
_KEYS = frozenset(_IDS) - {"doctor_id"}


@dataclass
class CheckedPart:
    clean: pl.DataFrame  # the rows kept, contract-typed, with PART and LINE
    entries: pl.DataFrame  # quarantine entries (ENTRY_SCHEMA)
    zero_padded: dict[str, int]  # column -> codes given back their leading zeros
    whole_floats: dict[str, int] = field(default_factory=dict)  # column -> 766.0 read as 766


def check_part(raw: pl.DataFrame, table: Table, from_floats: frozenset[str] = frozenset()
               ) -> CheckedPart:
    """Type one input file's rows: its clean rows and its quarantine entries.

    ``raw`` holds the table's columns in contract order, each either text or already
    of its contract type, plus PART and LINE. The clean rows keep PART and LINE so
    that duplicate keys across files can still be located. ``from_floats``: text
    columns read from binary floats, whose every value is checked for lost digits (a
    large float may come anywhere, not only in the head Excel would have mangled).
    """
    from_text = [c for c in table.columns if raw.schema[c.name] == pl.String]
    texts = raw.with_columns(_blank_to_null(pl.col(c.name)) for c in from_text)
    # Lengths first: the digits test costs 30 ns a value, and short codes are rare.
    fixed = [c for c in from_text if c.digits]
    short = [c for c, any_short in zip(fixed, texts.select(
        (pl.col(c.name).str.len_bytes() < c.digits).any() for c in fixed).row(0), strict=True)
        if any_short] if fixed else []
    zero_padded = texts.select(_lost_zeros(pl.col(c.name), c.digits).sum().alias(c.name)
                               for c in short).row(0, named=True) if short else {}
    texts = texts.with_columns(pl.when(_lost_zeros(pl.col(c.name), c.digits))
                               .then(pl.col(c.name).str.zfill(c.digits))
                               .otherwise(pl.col(c.name)) for c in short)
    whole_floats = _whole_floats(texts, from_text)
    texts = texts.with_columns(pl.col(c).str.replace(_WHOLE_FLOAT, "${1}")
                               for c in whole_floats)
    # Looked up in the chunk's values: the cheapest exact way to read each column.
    formats = {c.name: _formats(texts[c.name], c.type) for c in from_text if c.type in FORMATS}
    rounded = {c.name for c in from_text
               if c.type in DECIMALS and _more_digits(texts[c.name], c.type.polars.scale)}
    frame = texts.select(  # one select: Polars reads the columns in parallel
        *(_read(pl.col(c.name), c.type, formats.get(c.name), c.name in rounded)
          if c in from_text else c.name for c in table.columns),
        *(pl.col(c.name).is_null().alias(_absent(c.name)) for c in table.columns),
        PART,
        LINE,
    )
    for name, tried in formats.items():
        frame = frame.with_columns(_retry_formats(frame, texts, name, tried[1:]))
    # A year no claim can have (0000, 19999, a text or Parquet default of 0001) is a bad
    # value, not a date: it would stretch the analysis window or break it.
    frame = frame.with_columns(
        pl.when(pl.col(c.name).dt.year().is_between(*YEARS)).then(pl.col(c.name))
        .alias(c.name) for c in table.columns if c.type in FORMATS)

    empty = frame.select(pl.all_horizontal(_absent(c.name) for c in table.columns)).to_series()
    findings: list[tuple[str | None, str, pl.Series]] = [(None, EMPTY_ROW, empty)]
    for c in table.columns:
        absent = frame[_absent(c.name)]
        if not c.nullable:
            findings.append((c.name, MISSING, absent & ~empty))
        if c.type in BAD_VALUE:
            findings.append((c.name, BAD_VALUE[c.type], frame[c.name].is_null() & ~absent))
    for column, reason, condition in ROW_RULES.get(table.name, ()):
        findings.append((column, reason, frame.select(condition.fill_null(False)).to_series()))

    scientific = _scientific(texts, from_text)
    for c in [c for c in from_text if c in scientific or c.name in from_floats]:  # in order
        findings.append((c.name, SCIENTIFIC, texts[c.name].str.contains(_SCIENTIFIC_TEXT)
                         .fill_null(False)))
    bad_row = reduce(operator.or_, (mask for _, _, mask in findings))
    entries = []
    if bad_row.any():
        bad = raw.filter(bad_row)
        keys = _record_keys(bad, _readable(frame, table, findings, bad_row), table)
        bad = bad.with_columns(keys)
        entries = [_entry(bad, column, reason, mask.filter(bad_row))
                   for column, reason, mask in findings if mask.any()]
        if REVERSED in table.column_names:
            entries.append(reversal_entries(frame.filter(bad_row).with_columns(keys)))
    return CheckedPart(frame.filter(~bad_row).select(*table.column_names, PART, LINE),
                       _entries(entries), {k: v for k, v in zero_padded.items() if v},
                       whole_floats)


def key_hashes(clean: pl.DataFrame, table: Table) -> pl.Series:
    """A 64-bit hash of each clean row's key: 8 bytes a row is all that is kept of a
    whole table to find repeated keys (``duplicate_keys``)."""
    if not table.key:
        return pl.Series([], dtype=pl.UInt64)
    return clean.select(_key(table).hash()).to_series()


def duplicate_keys(staged: list[StagedFile], table: Table, hashes: pl.Series) -> pl.DataFrame:
    """Quarantine entries for clean rows whose key an earlier clean row already has
    (in file and line order), across all of a table's staged files: a copy with the kept
    row's values is a ``DUPLICATE_KEY``, one with other values a ``CONFLICTING_KEY``.

    Only rows whose key hash repeats are read back, and their keys compared exactly.
    """
    if hashes.n_unique() == hashes.len():  # the usual case, and several times cheaper
        return _entries([])
    suspects = hashes.filter(hashes.is_duplicated()).unique()
    columns = table.column_names
    located = [
        pl.scan_parquet(f.path, glob=False).select(columns).with_row_index(LINE, offset=1).select(
            *columns, pl.lit(f.part, pl.UInt32).alias(PART), pl.col(LINE).cast(pl.Int64))
        if f.in_place else pl.scan_parquet(f.path, glob=False).select(*columns, PART, LINE)
        for f in staged
    ]
    rows = (pl.concat(located).filter(_key(table).hash().is_in(suspects.implode()))
            .collect().sort(PART, LINE))
    values = pl.struct(columns)
    return repeated_entries(rows.with_columns(  # the row kept is the first of its key
        conflicting=values.ne_missing(values.first().over(table.key))
    ).filter(~_key(table).is_first_distinct()), table)


def repeated_entries(repeated: pl.DataFrame, table: Table) -> pl.DataFrame:
    """Quarantine entries for rows whose key is kept from another row: ``repeated`` holds
    the key, PART, LINE, ``conflicting`` (other values than the row kept) and, for
    settlements, REVERSED, since such a row that reverses a settlement still does (a 冲销
    row often repeats the original's id). The record key is the key as kept (stripped):
    the file's own text is not staged."""
    repeated = repeated.with_columns(_joined(table.record_key))
    return _entries([repeated.select(
        PART,
        LINE,
        column=pl.lit(",".join(table.key)),
        value=pl.concat_str(table.key, separator=","),
        reason=pl.when("conflicting").then(pl.lit(CONFLICTING_KEY))
        .otherwise(pl.lit(DUPLICATE_KEY)),
        record_key=RECORD_KEY,
    ), *([reversal_entries(repeated)] if REVERSED in repeated.columns else [])])


def quarantined_reversals(quarantine: pl.DataFrame) -> list[str]:
    """The settlements that quarantined reversal rows name (sorted, once each): engines
    treat them as reversed, like those named by clean reversal rows."""
    return sorted(quarantine.filter((pl.col("table") == "settlements")
                                    & (pl.col("reason") == REVERSAL_STANDS))["value"].unique())


def reversal_entries(quarantined: pl.DataFrame) -> pl.DataFrame:
    """One entry per quarantined row (with its RECORD_KEY) that names a settlement it
    reverses."""
    return quarantined.filter(pl.col(REVERSED).is_not_null()).select(
        PART, LINE, column=pl.lit(REVERSED), value=REVERSED, reason=pl.lit(REVERSAL_STANDS),
        record_key=RECORD_KEY)


def reason_zh(reason: str) -> str:
    """A reason in Chinese; one without a translation stays English."""
    return REASON_ZH.get(reason, reason)


def csv_frame(quarantine: pl.DataFrame, profile: str = "full") -> pl.DataFrame:
    """quarantine.csv's rows: the entries, then each reason in Chinese (``reason_zh``,
    for the clerk who reads the file in Excel). Under the public profile a bad row's
    person id or birth date is not shown, nor a record key holding one (persons')."""
    frame = quarantine.select(*COLUMNS,
                              reason_zh=pl.col("reason").replace(REASON_ZH))
    if profile != "public":
        return frame
    keyed_by = [t.name for t in INPUT_TABLES.values() if set(t.record_key) & set(PRIVATE)]
    return frame.with_columns(
        pl.when(pl.col("column").is_in(PRIVATE)).then(pl.lit(HIDDEN))
        .otherwise(pl.col("value")).alias("value"),
        pl.when(pl.col("table").is_in(keyed_by) & pl.col(RECORD_KEY).is_not_null())
        .then(pl.lit(HIDDEN)).otherwise(pl.col(RECORD_KEY)).alias(RECORD_KEY))


def _key(table: Table) -> pl.Expr:
    # A one-column key is hashed as it is: wrapping it in a struct is several times slower.
    return pl.col(table.key[0]) if len(table.key) == 1 else pl.struct(table.key)


def _entry(raw: pl.DataFrame, column: str | None, reason: str, mask: pl.Series) -> pl.DataFrame:
    """Quarantine entries for the masked rows (``raw`` with RECORD_KEY), with the cell's
    original text."""
    value = _shown(pl.col(column), raw.schema[column]) if column else pl.lit(None, pl.String)
    return raw.filter(mask).select(PART, LINE, RECORD_KEY, value.alias("value")).select(
        PART, LINE, column=pl.lit(column, pl.String), value="value", reason=pl.lit(reason),
        record_key=RECORD_KEY,
    )


def _readable(frame: pl.DataFrame, table: Table,
              findings: list[tuple[str | None, str, pl.Series]], rows: pl.Series
              ) -> dict[str, pl.Series]:
    """For each record-key column, which of ``rows`` checking could read: not missing,
    not a bad value (both null in ``frame``), no digits lost to scientific notation."""
    readable = {c: frame[c].is_not_null() for c in table.record_key}
    for column, reason, mask in findings:
        if reason == SCIENTIFIC and column in readable:
            readable[column] = readable[column] & ~mask
    return {c: mask.filter(rows) for c, mask in readable.items()}


def _record_keys(raw: pl.DataFrame, readable: dict[str, pl.Series], table: Table
                 ) -> pl.Series:
    """Each row's record key from its cells' original text; a part checking could not
    read is empty (the key null when every part is)."""
    parts = raw.select(pl.when(readable[c]).then(_shown(pl.col(c), raw.schema[c])).alias(c)
                       for c in table.record_key)
    return parts.select(_joined(table.record_key)).to_series()


def _joined(columns: tuple[str, ...]) -> pl.Expr:
    """A record key of one or several columns, as text: the parts joined by
    RECORD_KEY_SEPARATOR, an empty part left empty; null when every part is."""
    if len(columns) == 1:
        return pl.col(columns[0]).cast(pl.String).alias(RECORD_KEY)
    parts = [pl.col(c).cast(pl.String) for c in columns]
    return pl.when(pl.any_horizontal(p.is_not_null() for p in parts)).then(
        pl.concat_str([p.fill_null("") for p in parts], separator=RECORD_KEY_SEPARATOR)
    ).alias(RECORD_KEY)


_YEAR_1, _YEAR_10000 = -719_162, 2_932_897  # days from 1970-01-01 to 0001-01-01, 10000-01-01
_PER_DAY = {"ms": 86_400_000, "us": 86_400_000_000}  # ns cannot leave the years 1677-2262


def _day_scale(dtype: pl.DataType) -> int | None:
    """Stored units a day of ``dtype`` holds; None where any stored value is a date."""
    if dtype == pl.Date:
        return 1
    if isinstance(dtype, pl.Datetime) and dtype.time_unit in _PER_DAY:
        return _PER_DAY[dtype.time_unit]
    return None


def within_calendar(value: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A stored date or time beyond the years 1-9999 (a database's 'infinity', a sentinel
    of 2^63) makes Polars panic when converted; it is read as 9999-12-31, a year no claim
    has, so checking quarantines it as a bad value (shown so in quarantine.csv)."""
    scale = _day_scale(dtype)
    if scale is None:
        return value
    stored = value.to_physical()
    return pl.when(stored.is_null() | stored.is_between(
        _YEAR_1 * scale, _YEAR_10000 * scale, closed="left")).then(value).otherwise(
        pl.lit((_YEAR_10000 - 1) * scale, pl.Int64).cast(dtype))


def _shown(value: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A cell as text. A date or time beyond what Polars can write out (a sentinel of
    2^31 days) would panic as text: it is shown as its stored number, with the unit."""
    scale = _day_scale(dtype)
    if scale is None:
        return value.cast(pl.String)
    stored = value.to_physical()
    unit = "days" if scale == 1 else f"{dtype.time_unit} since 1970"
    writable = stored.is_between(_YEAR_1 * scale, _YEAR_10000 * scale, closed="left")
    return pl.when(writable).then(value).cast(pl.String).fill_null(
        stored.cast(pl.String) + pl.lit(f" ({unit})"))


def _entries(frames: list[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat(frames) if frames else pl.DataFrame(schema=ENTRY_SCHEMA)


def _absent(name: str) -> str:
    return f"{name} is absent"


def _scientific(texts: pl.DataFrame, from_text: list[Column]) -> list[Column]:
    """Text columns to check value by value for numbers in scientific notation: every id
    column that joins or groups rows (a mangled id merges persons or settlements, and
    whether it is found must not depend on where it stands: 16 ms a million values), and
    any other text column whose first thousand values show one (Excel mangles a whole
    column of long numbers at once, so the head shows it)."""
    text = [c for c in from_text if c.type is ColumnType.STRING and c.name not in _KEYS]
    head = texts.head(1000).select(pl.col(c.name).str.contains(_SCIENTIFIC_TEXT).any()
                                   for c in text).row(0) if text else ()
    shown = {c.name for c, found in zip(text, head, strict=True) if found}
    return [c for c in from_text if c.name in _KEYS or c.name in shown]


def _whole_floats(texts: pl.DataFrame, from_text: list[Column]) -> dict[str, int]:
    """Id columns holding whole numbers written as floats (766.0, as pandas writes a
    column with gaps), and how many: each such value is read as the integer, wherever it
    stands (2.8 ms a million values to rule out, by the suffix alone)."""
    found = {}
    for c in from_text:
        if c.name in _IDS and texts[c.name].str.ends_with(".0").any():
            count = texts[c.name].str.contains(_WHOLE_FLOAT).sum()
            if count:
                found[c.name] = count
    return found


def _lost_zeros(text: pl.Expr, digits: int) -> pl.Expr:
    """A code written with fewer digits than it has (``1`` for fee category ``01``)."""
    return text.str.contains(r"^\d+$") & (text.str.len_bytes() < digits)


# What database dumps write for an empty cell (SQL Server and Oracle `NULL`, MySQL `\N`),
# and what pandas writes for one after `astype(str)` (`nan`, `None`, `NaT`, `<NA>`): read
# as text, `NULL` or `nan` in reversed_settlement_id made every settlement a reversal.
# MySQL's zero date is its "no date" in a column that may not be NULL: as a bad timestamp
# it quarantined every outpatient visit of a dump whose discharge_time held it.
NULL_TEXTS = ("", "NULL", "null", "\\N", "nan", "NaN", "None", "NaT", "<NA>",
              "0000-00-00 00:00:00", "0000-00-00")


def _blank_to_null(text: pl.Expr) -> pl.Expr:
    # Stripped once: `when(stripped != "").then(stripped)` strips twice outside lazy mode.
    return text.str.strip_chars().replace(NULL_TEXTS, None).alias(text.meta.output_name())


def _read(text: pl.Expr, ctype: ColumnType, formats: tuple[str, ...] | None,
          rounded: bool) -> pl.Expr:
    """Stripped text as its contract type; null where it cannot be read (or, for a date
    or time, is not in the first of ``formats``: see _retry_formats). ``rounded``: some
    decimal in the chunk has more digits than the contract scale."""
    if ctype in FORMATS:
        return _strptime(text, ctype.polars, formats[0])
    if ctype in DECIMALS:
        return _decimal(text, ctype.polars, rounded)
    return text


def _formats(texts: pl.Series, ctype: ColumnType) -> tuple[str, ...]:
    """The date or time formats to try, the one most of the column's first hundred values
    are in first: an export writes one format, and parsing every value twice (first
    format, then the rest) cost 0.45 s a million ISO 'T' timestamps."""
    sample = texts.drop_nulls().head(100).to_frame()
    parsed = sample.select(_strptime(pl.col(texts.name), ctype.polars, f).is_not_null().sum()
                           .alias(str(i)) for i, f in enumerate(FORMATS[ctype])).row(0)
    best = FORMATS[ctype][max(range(len(parsed)), key=lambda i: (parsed[i], -i))]
    return (best, *(f for f in FORMATS[ctype] if f != best))


def _decimal(text: pl.Expr, dtype: pl.Decimal, rounded: bool) -> pl.Expr:
    """Exact decimal, rounded half away from zero to the contract scale.

    Polars' own string cast rounds half to even, so when some value has more digits
    than the scale, the text is first cut one digit past the scale (exact), cast there,
    and rounded by the one digit that decides. Otherwise the cast is exact as it is
    (and 2.4 times cheaper).
    """
    valid = text.str.contains(_DECIMAL_TEXT)
    if not rounded:
        return pl.when(valid).then(text).cast(dtype, strict=False)
    dot = text.str.find(".", literal=True)
    cut = pl.when(dot.is_null()).then(text).otherwise(text.str.head(dot + dtype.scale + 2))
    wide = pl.when(valid).then(cut).cast(pl.Decimal(38, dtype.scale + 1), strict=False)
    return wide.round(dtype.scale, mode="half_away_from_zero").cast(dtype, strict=False)


def _more_digits(texts: pl.Series, scale: int) -> bool:
    """Whether any value has more digits after its point than ``scale``."""
    digits = texts.str.len_bytes() - texts.str.find(".", literal=True) - 1
    return bool((digits > scale).any())


def _retry_formats(
    frame: pl.DataFrame, texts: pl.DataFrame, name: str, formats: tuple[str, ...]
) -> pl.Series:
    """The column, with the values its first format rejected parsed by ``formats``."""
    parsed = frame[name]
    rejected = parsed.is_null() & ~frame[_absent(name)]
    if not rejected.any():
        return parsed
    dtype = parsed.dtype
    retry = texts.filter(rejected).select(
        pl.coalesce(_strptime(pl.col(name), dtype, f) for f in formats)
    )
    return parsed.scatter(rejected.arg_true(), retry.to_series())


def _strptime(text: pl.Expr, dtype: pl.DataType, fmt: str) -> pl.Expr:
    if fmt.endswith(_ZONED):
        local = (text.str.strptime(pl.Datetime("us", "UTC"), fmt, strict=False, exact=True)
                 .dt.convert_time_zone(LOCAL_TIME_ZONE).dt.replace_time_zone(None))
        return local.dt.date() if dtype == pl.Date else local.cast(dtype)
    parsed = text.str.strptime(dtype, fmt, strict=False, exact=True)
    width = _DIGITS_ONLY.get(fmt)
    return parsed if width is None else pl.when(text.str.contains(rf"^\d{{{width}}}$")).then(parsed)
