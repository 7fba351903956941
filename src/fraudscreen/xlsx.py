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
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import xlsxwriter

from fraudscreen.contract import SUSPICIONS
from fraudscreen.leads import (SEVERITY_ZH, LeadColumn, families, lead_columns, ordered,
                               separator)

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


def sheet_name(name: str) -> str:
    """An Excel-safe sheet name (``异地/药店套刷`` → ``异地／药店套刷``)."""
    return name.translate(_BAD_SHEET_CHARS)[:31]


def display_width(text: str) -> int:
    """Columns a text needs: CJK and full-width characters count two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def write_workbook(path: Path, lead_table: pl.DataFrame, suspicions: pl.DataFrame,
                   created: dt.datetime) -> None:
    fams = families(suspicions)
    wb = xlsxwriter.Workbook(str(path), {"strings_to_numbers": False,
                                         "strings_to_formulas": False,
                                         "strings_to_urls": False})
    wb.set_properties({"title": "医保基金疑点线索", "subject": "fraudscreen leads",
                       "author": "fraudscreen", "created": created})
    fmt = _Formats(wb)
    for lead_type, name in SHEET_NAMES.items():
        rows = lead_table.filter(pl.col("lead_type") == lead_type)
        _sheet(wb, fmt, name, lead_columns(fams, lead_type), rows)
    by_order = ordered(suspicions).with_columns(
        pl.col("severity").replace_strict(SEVERITY_ZH, default=pl.col("severity")))
    for family, zh in fams.items():
        _sheet(wb, fmt, sheet_name(zh), SUSPICION_COLUMNS,
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
    widths = [display_width(c.zh) + 4 for c in columns]  # + the filter button
    for j, c in enumerate(columns):
        ws.write_string(0, j, c.zh, fmt.header)
    room = MAX_ROWS - 2  # header + a possible note row
    data = frame.select(c.name for c in columns)
    for i, row in enumerate(data.head(room).iter_rows(), start=1):
        for j, (c, value) in enumerate(zip(columns, row)):
            shown = _write(ws, fmt, i, j, c.name, c.kind, value)
            widths[j] = max(widths[j], min(display_width(shown) + 2,
                                           MAX_WIDTH.get(c.kind, 60)))
    last = min(data.height, room)
    if data.height > room:
        ws.write_string(last + 1, 0, f"（另有 {data.height - room} 行未列出，"
                        "完整内容见 suspicions.csv / leads.csv）", fmt.note)
    ws.freeze_panes(1, 0)
    ws.autofilter(0, 0, max(last, 1), len(columns) - 1)
    for j, w in enumerate(widths):
        ws.set_column(j, j, w)


def _write(ws, fmt: _Formats, i: int, j: int, name: str, kind: str, value: Any) -> str:
    """Write one cell; return the text it shows (for the column width)."""
    if value is None:
        return ""
    if kind == "money":
        amount = Decimal(value)
        ws.write_number(i, j, float(amount), fmt.money)
        return f"¥{amount:,.2f}"
    if kind == "int":
        ws.write_number(i, j, int(value))
        return str(value)
    if kind == "date":
        ws.write_datetime(i, j, dt.datetime.combine(value, dt.time()), fmt.date)
        return "0000-00-00"
    if kind == "list":
        value = separator(name).join(value)
    text = str(value)
    if len(text) > MAX_CELL:
        tail = "…（过长，完整内容见 leads.csv）"
        text = text[:MAX_CELL - len(tail)] + tail
    ws.write_string(i, j, text)
    return text
