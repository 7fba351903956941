"""Lead lists and the HTML report (being built: see issue 4)."""

from __future__ import annotations

from pathlib import Path

import polars as pl


def write_reports(folder: Path, suspicions: pl.DataFrame, manifest: dict, profile: str) -> None:
    """Write leads.csv, leads.xlsx and report.html beside the suspicions."""
