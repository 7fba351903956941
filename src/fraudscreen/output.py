"""Writing a run's output folder: all of it, or none of it.

Everything is written into a temporary sibling folder first and moved into place
at the end, so a crash or a full disk never leaves a half-written result where an
inspector (or the next tool) would read it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from fraudscreen.contract import SUSPICIONS

BOM = "\ufeff"
FORMULA_START = r"^[=+\-@\t\r]"


MARKER = "run.json"  # every output folder has one: what makes it safe to replace


def check_out(out_dir: Path, inputs: list[Path]) -> None:
    """Refuse an output folder whose replacement would destroy something else: the
    data (``--out`` naming the data folder or a folder above it), a file, or a folder
    that is not an earlier output. Checked before any work is done."""
    out = resolved(out_dir, "--out")
    for given in inputs:
        path = resolved(given, "input")
        if path == out or out in path.parents:
            raise ValueError(f"--out {out_dir} holds the input {given}: the output folder is "
                             "replaced whole, so it must be another folder")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out_dir} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ValueError(f"--out {out_dir} is a folder with other files in it (no {MARKER}): "
                         "the output folder is replaced whole; name a new or empty folder, "
                         "or an earlier output folder")


def resolved(path: Path, what: str) -> Path:
    """The real path; a loop of symbolic links is a ValueError naming it (Python raises
    RuntimeError)."""
    try:
        return Path(path).resolve()
    except RuntimeError:
        raise ValueError(f"{what} {path}: a symbolic link that leads back to itself") from None


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
    _flush(tmp)
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    _flush_entry(out_dir.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _flush(folder: Path) -> None:
    """Every file of ``folder``, then the folder, on disk before it is published: a night
    marks its leads reported in the store (durable) once its report is in place, and a
    power cut must not keep the mark and lose the report."""
    for path in sorted(folder.rglob("*")):
        _flush_entry(path)
    _flush_entry(folder)


def _flush_entry(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:
        # Some file systems refuse fsync on a folder (as PostgreSQL's fsync_fname allows)
        if not (path.is_dir() and err.errno in (errno.EINVAL, errno.EBADF, errno.ENOTSUP)):
            raise
    finally:
        os.close(fd)


def write_csv(frame: pl.DataFrame, path: Path) -> None:
    """CSV that Excel opens with Chinese intact (UTF-8 with a BOM) and never runs: see
    ``excel_text``."""
    flat = excel_text(frame.with_columns(
        pl.col(c).list.join(";") for c, t in frame.schema.items() if isinstance(t, pl.List)
    ))
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write(BOM)
        flat.write_csv(fh)


def excel_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Text cells Excel would run as a formula (starting with = + - @, a tab or a return)
    get a leading apostrophe. Ids, names and the quarantine's raw cells come from the
    claims data, which a hospital writes; ``=HYPERLINK(...)`` there must stay text when
    an inspector opens the CSV (OWASP, CSV injection). Parquet keeps the values as they
    are."""
    return frame.with_columns(
        pl.when(pl.col(c).str.contains(FORMULA_START)).then("'" + pl.col(c))
        .otherwise(pl.col(c)).alias(c)
        for c, t in frame.schema.items() if t == pl.String)


def write_suspicions(frame: pl.DataFrame, folder: Path) -> None:
    write_parquet(frame, folder / "suspicions.parquet")
    write_csv(frame, folder / "suspicions.csv")


def write_parquet(frame: pl.DataFrame, path: Path) -> None:
    """Suspicions (with any columns after the contract's) as Parquet whose schema says
    what the contract says: a column it does not declare nullable is ``required``, so a
    reader can rely on it (and a null there fails here, not downstream)."""
    table = frame.to_arrow()
    required = {c.name for c in SUSPICIONS.columns if not c.nullable}
    schema = pa.schema([f.with_nullable(f.name not in required) for f in table.schema])
    pq.write_table(table.cast(schema), path, write_statistics=False)


def write_json(doc: dict, path: Path) -> None:
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=2, default=str) + "\n",
                    encoding="utf-8")
