"""Reference data the project ships: watch lists and exclusive item pairs.

A data folder may bring its own ``item_pairs`` (it replaces the default) and
``watchlist`` (added to the active shipped lists).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Protocol

import polars as pl

from fraudscreen.contract import INPUT_TABLES
from fraudscreen.resources import shipped, yaml_files
from fraudscreen.rule import RuleError, place, read_text, read_yaml_file, yaml_positions


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
    frame = pl.read_csv(path, infer_schema=False, encoding="utf8", glob=False)
    return frame.select(INPUT_TABLES["item_pairs"].column_names)


def watchlist_files(extra: list[Path] | None = None) -> list[Path]:
    """The shipped lists, then any the run names (files, or folders of YAML files as
    ``yaml_files`` finds them: a folder without one is an error, not no list)."""
    files = yaml_files(shipped("drug_watchlists"))
    for path in extra or []:
        found = yaml_files(path) if path.is_dir() else [path]
        if not found:
            raise RuleError(f"no watch lists (*.yaml or *.yml) in the folder {path}")
        files += found
    return files


def load_watchlist(path: Path) -> list[dict]:
    """Rows (list_name, item_code, generic_name) of one list; none when inactive.

    A list the engine would misread is a RuleError naming the file, line and entry
    (a string split into characters, a null read as "None", keys given twice).
    """
    node, doc = read_yaml_file(read_text(path, "watch list"), str(path))
    places = yaml_positions(node) if node is not None else {}

    def error(message: str, *key: str | int) -> RuleError:
        return RuleError(f"watch list: {message}", str(path), *place(places, *key))

    if not isinstance(doc, dict):
        raise error(("the file is empty" if doc is None else "not a YAML mapping")
                    + ": a watch list gives list_name and entries")
    name, active, entries = doc.get("list_name"), doc.get("active", True), doc.get("entries")
    if not isinstance(name, str) or not name.strip():
        raise error(f"list_name: give the list's name as text (got {name!r})"
                    if "list_name" in doc else "list_name is missing", "list_name")
    if not isinstance(active, bool):
        raise error(f"active: write true or false (got {active!r})", "active")
    if not isinstance(entries, list):
        raise error(f"entries: give a YAML list of entries (got {entries!r})"
                    if "entries" in doc else "entries is missing", "entries")
    rows = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise error(f"entry {i + 1}: a mapping with generic_names or item_codes is "
                        f"expected (got {entry!r})", "entries", i)
        found = {key: _values(entry, key, lambda m, *at, i=i, key=key: error(
                     f"entry {i + 1}: {key}: {m}", "entries", i, key, *at))
                 for key in ("item_codes", "generic_names")}
        if not any(found.values()):
            raise error(f"entry {i + 1} gives no generic_names or item_codes: it would "
                        "match nothing", "entries", i)
        rows += [{"list_name": name, "item_code": code, "generic_name": None}
                 for code in found["item_codes"]]
        rows += [{"list_name": name, "item_code": None, "generic_name": generic}
                 for generic in found["generic_names"]]
    return rows if active else []


def _values(entry: dict, key: str, error) -> list[str]:
    """An entry's codes or names: a list of text (or whole numbers), or one on its own
    (``generic_names: 阿莫西林`` is that one name, not its characters). Nothing that
    would match every item (an empty name, a bare ``*``) and no null."""
    given = entry.get(key, [])
    values = given if isinstance(given, list) else [given]
    for j, value in enumerate(values):
        at = (j,) if isinstance(given, list) else ()
        if not isinstance(value, str | int) or isinstance(value, bool):
            shown = "an empty value (null)" if value is None else repr(value)
            raise error(f"{shown} is not a name or a code: write text (quoted if need be)",
                        *at)
        if str(value).strip() in ("", "*"):
            raise error(f"{str(value)!r} would match every item", *at)
    return [str(v) for v in values]


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
