"""A sample cut into monthly export drops, the way a bureau's nightly inbox fills up.

Used by the nightly tests (six drops must equal one run) and ``benchmarks/nightly.py``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl

REFERENCE = ("persons", "institutions", "catalog")  # delivered once, with the first drop


def monthly_drops(data: Path, out: Path, months: int = 6, last_days: int = 0) -> list[Path]:
    """Drop folders (contract layout, tables as folders of parts) partitioning ``data``:
    ``months`` by settlement month (the last takes any later months), then, when
    ``last_days`` is given, each of the data's last ``last_days`` days as a drop of its
    own, as a bureau's daily exports. A fee line goes with its settlement."""
    s = pl.read_parquet(data / "settlements.parquet")
    p = pl.read_parquet(data / "purchases.parquet")
    last = s["settle_time"].max().date()
    first = s["settle_time"].dt.year().min() * 12 + s["settle_time"].dt.month().min()

    def drop(moment: pl.Expr) -> pl.Expr:
        month = moment.dt.year() * 12 + moment.dt.month() - first + 1
        days_left = (pl.lit(last) - moment.dt.date()).dt.total_days()
        return (pl.when(days_left < last_days).then(months + last_days - days_left)
                .otherwise(month.clip(1, months)).cast(pl.Int64))

    s = s.with_columns(drop=drop(pl.col("settle_time")))
    p = p.with_columns(drop=drop(pl.col("purchase_date").cast(pl.Datetime("us"))))
    f = pl.read_parquet(data / "fee_lines.parquet").join(
        s.select("settlement_id", "drop"), on="settlement_id", how="left"
    ).with_columns(pl.col("drop").fill_null(1))
    drops = []
    for n in range(1, months + last_days + 1):
        folder = Path(out) / f"{n:02d}"
        for name, frame in (("settlements", s), ("fee_lines", f), ("purchases", p)):
            (folder / name).mkdir(parents=True)
            frame.filter(pl.col("drop") == n).drop("drop").write_parquet(
                folder / name / f"part-{n:02d}.parquet")
        if n == 1:
            for name in REFERENCE:
                (folder / name).mkdir()
                shutil.copy(data / f"{name}.parquet", folder / name / "part-00.parquet")
        drops.append(folder)
    return drops
