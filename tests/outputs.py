"""An output folder as searchable bytes, for the tests that prove a raw id is nowhere in it."""

from __future__ import annotations

import zipfile
from pathlib import Path

import polars as pl


def output_bytes(folder: Path) -> dict[str, bytes]:
    """Every file's content: the workbook's zip members decompressed, a Parquet file's
    rows as text (its pages may be compressed)."""
    found = {}
    for path in sorted(folder.iterdir()):
        if path.suffix == ".xlsx":
            with zipfile.ZipFile(path) as z:
                found.update({f"{path.name}:{n}": z.read(n) for n in z.namelist()})
        elif path.suffix == ".parquet":
            found[path.name] = str(pl.read_parquet(path).to_dicts()).encode("utf-8")
        else:
            found[path.name] = path.read_bytes()
    return found


def naming(folder: Path, text: str) -> list[str]:
    """The files of ``folder`` (workbook parts apart) whose content holds ``text``."""
    return [name for name, content in output_bytes(folder).items()
            if text.encode("utf-8") in content]
