"""The hand-written DuckDB baseline: one plain query per sub-rule, one connection.

``run.py`` starts this in a subprocess so that its peak RSS is its own:

    python benchmarks/baseline.py --data DIR --out DIR [--memory-limit 1.5GB]

The queries are ``baseline/RULE_ID.sql``; they read the data folder's Parquet files
(``'DATA/…'`` in the text) and two small reference tables registered here the way an
analyst would load them: ``watchlist`` (the shipped watch lists, plus the data's own
table) and ``item_pairs`` (the data's table, else the shipped default). Each query is
timed from execution to the last row in Arrow; its hits are then written to
``OUT/hits/RULE_ID.parquet`` and the timings to ``OUT/timings.json`` (untimed).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq

from fraudscreen.reference import default_item_pairs, shipped_watchlist

QUERIES = Path(__file__).resolve().parent / "baseline"


def queries(data: Path) -> dict[str, str]:
    """Rule id → SQL with the data folder filled in."""
    folder = str(data.resolve()).replace("'", "''")
    return {path.stem: path.read_text(encoding="utf-8").replace("'DATA/", f"'{folder}/")
            for path in sorted(QUERIES.glob("*.sql"))}


def reference_tables(data: Path) -> dict[str, pl.DataFrame]:
    pairs = data / "item_pairs.parquet"
    watch = data / "watchlist.parquet"
    watchlist = shipped_watchlist()
    if watch.exists():
        watchlist = pl.concat([watchlist, pl.read_parquet(watch)], how="vertical_relaxed")
    return {"item_pairs": pl.read_parquet(pairs) if pairs.exists() else default_item_pairs(),
            "watchlist": watchlist}


def connect(data: Path, spill: Path, memory_limit: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={"memory_limit": memory_limit,
                                 "preserve_insertion_order": False,
                                 "temp_directory": str(spill)})
    for name, frame in reference_tables(data).items():
        con.register(name, frame.to_arrow())
    return con


def run(data: Path, out: Path, memory_limit: str) -> dict:
    (out / "hits").mkdir(parents=True, exist_ok=True)
    con = connect(data, out / ".spill", memory_limit)
    seconds = {}
    for rule_id, sql in queries(data).items():
        start = time.perf_counter()
        table = con.sql(sql).to_arrow_table()
        seconds[rule_id] = time.perf_counter() - start
        pq.write_table(table, out / "hits" / f"{rule_id}.parquet")
    con.close()
    return {"queries_s": sum(seconds.values()), "seconds": seconds}


def scan_once(data: Path, memory_limit: str) -> float:
    """Seconds for DuckDB to decode every value of every input table once (``min`` of
    each column): the floor under any tool that reads all the data, however it screens.
    ``run.py`` measures it in its own process, apart from the timed runs."""
    con = duckdb.connect(config={"memory_limit": memory_limit})
    start = time.perf_counter()
    for path in sorted(data.glob("*.parquet")):
        source = str(path.resolve()).replace("'", "''")
        mins = ", ".join(f'min("{c}")' for c in pq.ParquetFile(path).schema_arrow.names)
        con.sql(f"SELECT count(*), {mins} FROM read_parquet('{source}')").fetchall()
    seconds = time.perf_counter() - start
    con.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--memory-limit", default="1.5GB")
    args = parser.parse_args()
    timings = run(args.data, args.out, args.memory_limit)
    (args.out / "timings.json").write_text(json.dumps(timings, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
