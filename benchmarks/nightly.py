"""What scoped nightly re-screening saves: the sample fed as six monthly drops and
then its last days as daily drops, twice.

    python benchmarks/nightly.py --scale 5.5 --days 3

Once as ``fraudscreen nightly`` runs (person and institution rules re-screen only what a
night touched: see ``Rule.scope``), once with every night forced to a full re-screen.
Prints, per night, the screening seconds of both and whether their suspicions agree.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import tempfile
from pathlib import Path

from measure import sample_data

from fraudscreen import nightly, rescreen, store
from fraudscreen.ruleset import RuleSet
from fraudscreen.sample.drops import monthly_drops


def feed(drops: list[Path], work: Path, full: bool) -> list[tuple[dict, list]]:
    """Each night's manifest and the store's open suspicions after it."""
    touched = rescreen.touched
    if full:
        rescreen.touched = lambda *args: rescreen.Scope(full=True)
    try:
        inbox, st, nights = work / "inbox", work / "store.duckdb", []
        inbox.mkdir(parents=True)
        for n, drop in enumerate(drops, start=1):
            shutil.copytree(drop, inbox, dirs_exist_ok=True)
            opts = nightly.NightOptions(inbox=inbox, store=st, out=work / f"night-{n}",
                                        today=dt.date(2024, 6, 1) + dt.timedelta(days=n))
            doc = nightly.run_night(opts, RuleSet.load()).manifest
            con = store.open_store(st, create=False, read_only=True)
            try:
                rows = store.suspicions(con)
            finally:
                con.close()
            opened = rows.filter(rows["status"] == "open")
            nights.append((doc, sorted(zip(opened["suspicion_id"], opened["amount_at_risk"],
                                           strict=True))))
        return nights
    finally:
        rescreen.touched = touched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--days", type=int, default=3, help="the last days as daily drops")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fraudscreen-nightly-bench-") as tmp:
        root = Path(tmp)
        drops = monthly_drops(sample_data(args.scale, args.seed), root / "drops",
                              last_days=args.days)
        scoped = feed(drops, root / "scoped", full=False)
        full = feed(drops, root / "full", full=True)
    print("| night | scoped screening s | full re-screen s | persons touched | "
          "over all data | open suspicions | same |")
    print("|--:|--:|--:|--:|---|--:|---|")
    for n, ((a, rows_a), (b, rows_b)) in enumerate(zip(scoped, full, strict=True), start=1):
        scope = a["screening_scope"]
        print(f"| {n} | {a['timings_seconds']['rules']:.2f} | {b['timings_seconds']['rules']:.2f}"
              f" | {'all' if scope['full'] else scope['persons']}"
              f" | {', '.join(scope.get('whole', [])) or '—'} | {len(rows_a)}"
              f" | {'yes' if rows_a == rows_b else 'NO'} |")


if __name__ == "__main__":
    main()
