"""Writing a run's output folder: all of it, or none of it.

Everything is written into a temporary sibling folder first and moved into place
at the end, so a crash or a full disk never leaves a half-written result where an
inspector (or the next tool) would read it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import polars as pl

BOM = "\ufeff"


@contextlib.contextmanager
def staged(out_dir: Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``out_dir`` whole."""
    out_dir = out_dir.resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_csv(frame: pl.DataFrame, path: Path) -> None:
    """CSV that Excel opens with Chinese intact: UTF-8 with a BOM."""
    flat = frame.with_columns(
        pl.col(c).list.join(";") for c, t in frame.schema.items() if isinstance(t, pl.List)
    )
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write(BOM)
        flat.write_csv(fh)


def write_suspicions(frame: pl.DataFrame, folder: Path) -> None:
    frame.write_parquet(folder / "suspicions.parquet", statistics=False)
    write_csv(frame, folder / "suspicions.csv")


def write_json(doc: dict, path: Path) -> None:
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=2, default=str) + "\n",
                    encoding="utf-8")
