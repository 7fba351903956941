"""leads.xlsx: the lead lists and the suspicions per family, for inspectors in Excel.

Sheets: 机构线索 (institution leads), 人员线索 (person leads), then one sheet per
family (Chinese family name) with its suspicions. Every sheet: Chinese headers, a
frozen header row, an autofilter, money as numbers formatted ``¥#,##0.00``, column
widths that fit Chinese text. The workbook's creation date is fixed by the caller,
so the same input gives the same file.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Mapping
from pathlib import Path

import polars as pl
import xlsxwriter

from fraudscreen.contract import SUSPICIONS
from fraudscreen.leads import (
    SEVERITY_ZH,
    LeadColumn,
    Titles,
    families,
    lead_columns,
    ordered,
    separator,
)

MONEY_FORMAT = '"¥"#,##0.00'
DATE_FORMAT = "yyyy-mm-dd"
MAX_ROWS = 1_048_576          # Excel's limit, header included
MAX_CELL = 32_767             # Excel's longest text in one cell
MAX_WIDTH = {"text": 60, "list": 80}
SHEET_NAMES = {"institution": "机构线索", "person": "人员线索"}
_BAD_SHEET_CHARS = str.maketrans({"/": "／", "\\": "＼", "?": "？", "*": "＊", ":": "：",
                                  "[": "［", "]": "］"})

# Family sheets: suspicion columns (the family is the sheet).
SUSPICION_COLUMNS = [
    LeadColumn(c.name, c.zh, {"amount_at_risk": "money", "period_start": "date",
                              "period_end": "date", "related_settlement_ids": "list"}
               .get(c.name, "text"))
    for c in SUSPICIONS.columns if c.name != "family"
]
# The rule's Chinese title after its id, the institution's name after its id (not contract
# columns: the workbook is for people).
for _after, _column in (("rule_id", LeadColumn("rule_title", "规则名称", "text")),
                        ("institution_id", LeadColumn("institution_name", "机构名称", "text"))):
    _at = next(i for i, c in enumerate(SUSPICION_COLUMNS) if c.name == _after) + 1
    SUSPICION_COLUMNS.insert(_at, _column)


def sheet_name(name: str, taken: set[str] | None = None) -> str:
    """An Excel-safe sheet name (``异地/药店套刷`` → ``异地／药店套刷``), not one of
    ``taken`` (compared as Excel does, ignoring case): a site family titled like another
    sheet gets ``（2）`` after it, never a workbook that cannot be written."""
    def valid(text: str) -> str:  # no apostrophe at either end, not blank
        return text.strip().strip("'") or "Sheet"

    base = valid(name.translate(_BAD_SHEET_CHARS))
    taken = taken if taken is not None else set()
    candidate, n = valid(base[:31]), 1
    while candidate.lower() in taken or candidate.lower() == "history":  # Excel's own
        n += 1
        suffix = f"（{n}）"
        candidate = valid(base[:31 - len(suffix)]) + suffix
    taken.add(candidate.lower())
    return candidate


def display_width(text: str) -> int:
    """Columns a text needs: CJK and full-width characters count two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def write_workbook(path: Path, lead_table: pl.DataFrame, suspicions: pl.DataFrame,
                   created: dt.datetime, titles: Titles | None = None,
                   rule_titles: Titles | None = None,
                   names: Mapping[str, str] | None = None) -> None:
    """``names``: institution names by id (run.json's ``institution_names``)."""
    fams = families(suspicions, titles)
    # constant_memory: rows go to disk as they are written (in order), so a big run
    # does not hold every cell in memory.
    wb = xlsxwriter.Workbook(str(path), {"constant_memory": True,
                                         "strings_to_numbers": False,
                                         "strings_to_formulas": False,
                                         "strings_to_urls": False})
    wb.set_properties({"title": "医保基金疑点线索", "subject": "fraudscreen leads",
                       "author": "fraudscreen", "created": created})
    fmt = _Formats(wb)
    taken = {name.lower() for name in SHEET_NAMES.values()}
    for lead_type, name in SHEET_NAMES.items():
        rows = lead_table.filter(pl.col("lead_type") == lead_type).with_columns(
            pl.col("max_severity").replace_strict(SEVERITY_ZH, default=pl.col("max_severity")))
        _sheet(wb, fmt, name, lead_columns(fams, lead_type), rows)
    by_order = ordered(suspicions).with_columns(
        pl.col("severity").replace_strict(SEVERITY_ZH, default=pl.col("severity")),
        rule_title=pl.col("rule_id").replace_strict(rule_titles or {}, default=None,
                                                    return_dtype=pl.String),
        institution_name=pl.col("institution_id").replace_strict(names or {}, default=None,
                                                                 return_dtype=pl.String))
    for family, zh in fams.items():
        _sheet(wb, fmt, sheet_name(zh, taken), SUSPICION_COLUMNS,
               by_order.filter(pl.col("family") == family))
    wb.close()


class _Formats:
    def __init__(self, wb: xlsxwriter.Workbook) -> None:
        self.header = wb.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1,
                                     "valign": "vcenter"})
        self.money = wb.add_format({"num_format": MONEY_FORMAT})
        self.date = wb.add_format({"num_format": DATE_FORMAT})
        self.note = wb.add_format({"italic": True, "font_color": "#7F7F7F"})


def _sheet(wb, fmt: _Formats, name: str, columns: list[LeadColumn],
           frame: pl.DataFrame) -> None:
    ws = wb.add_worksheet(name)
    room = MAX_ROWS - 2  # header + a possible note row
    cells = frame.head(room).select(_cell(c) for c in columns)
    for j, c in enumerate(columns):
        width = min(_width(cells.get_column(c.name), c.kind), MAX_WIDTH.get(c.kind, 60))
        ws.set_column(j, j, max(display_width(c.zh) + 4, width + 2))  # + the filter button
        ws.write_string(0, j, c.zh, fmt.header)
    writers = [_writer(ws, fmt, c.kind) for c in columns]
    for i, row in enumerate(cells.iter_rows(), start=1):
        for j, value in enumerate(row):
            if value is not None:
                writers[j](i, j, value)
    last = cells.height
    if frame.height > room:
        ws.write_string(last + 1, 0, f"（另有 {frame.height - room} 行未列出，"
                        "完整内容见 suspicions.csv / leads.csv）", fmt.note)
    ws.freeze_panes(1, 0)
    ws.autofilter(0, 0, max(last, 1), len(columns) - 1)


def _cell(c: LeadColumn) -> pl.Expr:
    """A column as the workbook shows it: lists joined, money as float, text capped."""
    col = pl.col(c.name)
    if c.kind == "money":
        return col.cast(pl.Float64)
    if c.kind in ("int", "date"):
        return col
    if c.kind == "list":
        col = pl.when(col.list.len() > 0).then(col.list.join(separator(c.name)))
    col = col.cast(pl.String)
    tail = "…（过长，完整内容见 leads.csv）"
    return (pl.when(col.str.len_chars() > MAX_CELL)
            .then(col.str.slice(0, MAX_CELL - len(tail)) + tail)
            .otherwise(col).alias(c.name))


def _width(values: pl.Series, kind: str) -> int:
    """Display columns the widest value needs (CJK counts two)."""
    if values.is_empty() or values.null_count() == values.len():
        return 0
    if kind == "money":
        return len(f"¥{max(abs(values.min()), abs(values.max())):,.2f}") + 1
    if kind == "date":
        return 10
    if kind == "int":
        return len(str(values.max()))
    # UTF-8: ASCII is 1 byte and 1 column, CJK 3 bytes and 2 columns.
    return int(((values.str.len_bytes() + values.str.len_chars()) // 2).max())


def _writer(ws, fmt: _Formats, kind: str):
    if kind == "money":
        return lambda i, j, v: ws.write_number(i, j, v, fmt.money)
    if kind == "int":
        return ws.write_number
    if kind == "date":
        return lambda i, j, v: ws.write_datetime(i, j, v, fmt.date)
    return ws.write_string
