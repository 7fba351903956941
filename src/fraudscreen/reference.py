"""Reference data the project ships: watch lists and exclusive item pairs.

A data folder may bring its own ``item_pairs`` (it replaces the default) and
``watchlist`` (added to the active shipped lists).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Protocol

import polars as pl
import yaml

from fraudscreen.contract import INPUT_TABLES
from fraudscreen.resources import shipped


class ScannedTable(Protocol):
    """A table engines read where it lies (ingestion's staged Parquet, the nightly store)."""

    def sql(self) -> str:
        """A DuckDB SELECT of the table's contract columns, in contract types."""

    def frame(self) -> pl.DataFrame:
        """The rows in memory, for engines that cannot run ``sql()``."""


# An input table as engines take it: a frame in memory, or scanned in place.
Table = pl.DataFrame | ScannedTable


def _typed(rows: list[dict], table: str) -> pl.DataFrame:
    schema = {c.name: c.type.polars for c in INPUT_TABLES[table].columns}
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(
        schema=schema)


def default_item_pairs() -> pl.DataFrame:
    path = shipped("rules") / "reference" / "item_pairs.csv"
    frame = pl.read_csv(path, infer_schema=False, encoding="utf8")
    return frame.select(INPUT_TABLES["item_pairs"].column_names)


def watchlist_files(extra: list[Path] | None = None) -> list[Path]:
    """The shipped lists, then any the run names (files or folders of YAML)."""
    files = sorted(shipped("drug_watchlists").glob("*.yaml"))
    for path in extra or []:
        files += sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    return files


def load_watchlist(path: Path) -> list[dict]:
    """Rows (list_name, item_code, generic_name) of one list; none when inactive."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not doc.get("active", True):
        return []
    rows = []
    for entry in doc.get("entries", []):
        for code in entry.get("item_codes", []) or []:
            rows.append({"list_name": doc["list_name"], "item_code": str(code),
                         "generic_name": None})
        for name in entry.get("generic_names", []) or []:
            rows.append({"list_name": doc["list_name"], "item_code": None,
                         "generic_name": str(name)})
    return rows


def shipped_watchlist(extra: list[Path] | None = None) -> pl.DataFrame:
    files = tuple(watchlist_files(extra))
    return _watchlist_rows(files, tuple(p.stat().st_mtime_ns for p in files))


@cache
def _watchlist_rows(files: tuple[Path, ...], stamps: tuple[int, ...]) -> pl.DataFrame:
    """Parsed once per set of list files (and their modification times)."""
    rows = [row for path in files for row in load_watchlist(path)]
    return _typed(rows, "watchlist").unique(maintain_order=True)


def resolve_inputs(tables: dict[str, Table], watchlists: list[Path] | None,
                   external: set[str] = frozenset()
                   ) -> tuple[dict[str, Table | None], dict[str, str]]:
    """Each input table (None: absent) and where it came from, for every engine.

    The data's own table, else the shipped default (item pairs); watch lists are the
    shipped ones plus the data's.

    ``external`` names tables the engine reads itself (a Spark table or path); a
    watch list there is still added to the shipped lists.
    """
    frames: dict[str, pl.DataFrame | None] = {}
    origin: dict[str, str] = {}
    for name in INPUT_TABLES:
        frame = tables.get(name)
        if name == "item_pairs" and frame is None and name not in external:
            frame, origin[name] = default_item_pairs(), "rules/reference/item_pairs.csv"
        elif name == "watchlist":
            shipped = shipped_watchlist(watchlists)
            if frame is not None and not isinstance(frame, pl.DataFrame):
                frame = frame.frame()
            frame = shipped if frame is None else pl.concat([shipped, frame], how="vertical")
            given = name in tables or name in external
            origin[name] = "drug_watchlists" + (" + data" if given else "")
        frames[name] = frame
        if frame is None and name not in external:
            origin[name] = "absent"
        else:
            origin.setdefault(name, "data")
    return frames, origin
