"""Benchmark the built-in rule set (``fraudscreen run``) against hand-written DuckDB SQL.

    python benchmarks/run.py                          # scale 1 (≈ 0.93 M fee lines), once
    python benchmarks/run.py --scale 1 --repeat 3     # median of 3 alternated runs
    python benchmarks/run.py --scale 5.5 --curve      # scales 5.5, 11, 22 (20.5 M fee lines)
    python benchmarks/run.py --smoke                  # CI: tiny, seconds

For each scale: sample data is generated once and cached under
``benchmarks/.cache/scale-S-seed-N/``; then, alternately, ``fraudscreen run`` (as a
user runs it) and the baseline (``baseline.py``: one plain query per sub-rule) run as
child processes, each measured for wall time, CPU time and peak RSS. Per-rule engine
seconds come from the run's ``run.json``. The baseline's hits are checked against the
engine's suspicions, rule by rule. Results: ``OUT/NAME.json`` and ``OUT/NAME.md``.

Exit 0 when every run completed and the baseline agrees with the engine on every
rule's hit keys; 1 on a disagreement; a crash raises. Timings never fail the run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import agreement
import baseline
import duckdb
import polars as pl
import report
from measure import BENCH, CACHE, input_rows, measure, sample_data, tool

from fraudscreen import __version__
from fraudscreen.ruleset import RuleSet

MEMORY_LIMIT = "1.5GB"  # the engine's default; the baseline gets the same
SMOKE_SCALE = 0.02


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[1:]))
    p.add_argument("--scale", type=float, default=1.0,
                   help="sample scale; 1 ≈ one million fee lines (default 1)")
    p.add_argument("--seed", type=int, default=7, help="sample seed (default 7)")
    p.add_argument("--repeat", type=int, default=1,
                   help="alternate engine and baseline N times; report medians (default 1)")
    p.add_argument("--curve", action="store_true", help="run scales S, 2S and 4S")
    p.add_argument("--smoke", action="store_true",
                   help=f"tiny (scale {SMOKE_SCALE:g}), once: checks it runs and agrees")
    p.add_argument("--out", type=Path, default=None,
                   help="results folder (default benchmarks/results/; "
                        "--smoke: benchmarks/.cache/results/)")
    args = p.parse_args(argv)
    if args.smoke:
        args.scale, args.repeat, args.curve = SMOKE_SCALE, 1, False
    if args.out is None:
        args.out = CACHE / "results" if args.smoke else BENCH / "results"
    if args.repeat < 1 or args.scale <= 0:
        p.error("--repeat must be ≥ 1 and --scale > 0")
    return args


# -- one engine run, one baseline run -------------------------------------------------

def run_engine(data: Path, work: Path) -> dict:
    out = work / "engine"
    measured = measure([tool(), "run", "--data", str(data), "--out", str(out), "--quiet",
                        "--memory-limit", MEMORY_LIMIT], work / "engine.log")
    doc = json.loads((out / "run.json").read_text(encoding="utf-8"))
    t = doc["timings_seconds"]
    return {**vars(measured), "ingest_s": t["ingest"], "rules_s": t["rules"],
            "output_s": t["total"] - t["ingest"] - t["rules"],
            "startup_s": measured.wall_s - t["total"],
            "rule_s": {r["id"]: r["seconds"] for r in doc["rules"]},
            "not_run": [r["id"] for r in doc["rules"] if r["status"] != "ran"]}


def run_baseline(data: Path, work: Path) -> dict:
    out = work / "baseline"
    shutil.rmtree(out, ignore_errors=True)
    measured = measure([sys.executable, str(BENCH / "baseline.py"), "--data", str(data),
                        "--out", str(out), "--memory-limit", MEMORY_LIMIT],
                       work / "baseline.log")
    shutil.rmtree(out / ".spill", ignore_errors=True)
    doc = json.loads((out / "timings.json").read_text(encoding="utf-8"))
    return {**vars(measured), "queries_s": doc["queries_s"], "rule_s": doc["seconds"]}


# -- one scale --------------------------------------------------------------------------

def _median(samples: list[dict], key: str) -> float:
    return statistics.median(s[key] for s in samples)


def _rule_median(samples: list[dict], rule_id: str) -> float:
    return statistics.median(s["rule_s"].get(rule_id, 0.0) for s in samples)


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def _engine_side(samples: list[dict], rows: int) -> dict:
    wall, rules = _median(samples, "wall_s"), _median(samples, "rules_s")
    return {"wall_s": round(wall, 3), "cpu_s": round(_median(samples, "cpu_s"), 3),
            "startup_s": round(_median(samples, "startup_s"), 3),
            "ingest_s": round(_median(samples, "ingest_s"), 3), "rules_s": round(rules, 3),
            "output_s": round(_median(samples, "output_s"), 3),
            "peak_rss_mb": round(max(s["peak_rss_mb"] for s in samples), 1),
            "rows_per_s_wall": round(rows / wall), "rows_per_s_rules": round(rows / rules)}


def _baseline_side(samples: list[dict], rows: int) -> dict:
    wall, queries = _median(samples, "wall_s"), _median(samples, "queries_s")
    return {"wall_s": round(wall, 3), "cpu_s": round(_median(samples, "cpu_s"), 3),
            "queries_s": round(queries, 3),
            "peak_rss_mb": round(max(s["peak_rss_mb"] for s in samples), 1),
            "rows_per_s_wall": round(rows / wall), "rows_per_s_queries": round(rows / queries)}


def alternate(data: Path, work: Path, repeat: int, label: str) -> tuple[list, list]:
    """Engine and baseline runs, alternated ABBA so neither always gets warm caches."""
    engine, base = [], []
    for i in range(repeat):
        order = [("engine", run_engine, engine), ("baseline", run_baseline, base)]
        for name, run, samples in (order if i % 2 == 0 else order[::-1]):
            samples.append(run(data, work))
            print(f"{label} run {i + 1}/{repeat}: {name} {samples[-1]['wall_s']:.1f} s, "
                  f"peak RSS {samples[-1]['peak_rss_mb']:.0f} MB", flush=True)
    return engine, base


def per_rule(rules: list, engine: list[dict], base: list[dict], work: Path) -> list[dict]:
    """Median seconds of each rule on both sides, and whether they flag the same."""
    suspicions = pl.read_parquet(work / "engine" / "suspicions.parquet")
    rows = []
    for rule in rules:
        e, b = _rule_median(engine, rule.id), _rule_median(base, rule.id)
        hits = work / "baseline" / "hits" / f"{rule.id}.parquet"
        rows.append({"rule_id": rule.id, "engine_s": round(e, 3), "baseline_s": round(b, 3),
                     "ratio": _ratio(e, b), **agreement.compare(rule, suspicions, hits)})
    return rows


def bench_scale(scale: float, args: argparse.Namespace, rules: list) -> dict:
    data = sample_data(scale, args.seed)
    rows = input_rows(data)
    total_rows = sum(rows.values())
    work = CACHE / "work" / f"scale-{scale:g}-seed-{args.seed}"
    engine, base = alternate(data, work, args.repeat, f"scale {scale:g}")
    rule_rows = per_rule(rules, engine, base, work)
    eng, bas = _engine_side(engine, total_rows), _baseline_side(base, total_rows)
    scan = statistics.median(baseline.scan_once(data, MEMORY_LIMIT) for _ in range(args.repeat))
    loads = [s[k] for s in engine + base for k in ("load_before", "load_after")]
    return {
        "scale": scale, "seed": args.seed, "repeats": args.repeat,
        "input_rows": rows, "input_rows_total": total_rows,
        "engine": eng, "baseline": bas,
        "scan_once": {"seconds": round(scan, 3), "rows_per_s": round(total_rows / scan)},
        "ratio": {"wall": _ratio(eng["wall_s"], bas["wall_s"]),
                  "cpu": _ratio(eng["cpu_s"], bas["cpu_s"]),
                  "rules": _ratio(eng["rules_s"], bas["queries_s"])},
        "engine_rules_not_run": sorted({r for s in engine for r in s["not_run"]}),
        "max_load_average": round(max(loads), 2),
        "keys_agree": all(r["keys_agree"] for r in rule_rows),
        "rules": rule_rows,
    }


def curve(runs: list[dict]) -> list[dict]:
    """Time ratio between consecutive scales (each doubling the rows)."""
    steps = []
    for a, b in itertools.pairwise(runs):
        steps.append({
            "from_scale": a["scale"], "to_scale": b["scale"],
            "rows": _ratio(b["input_rows_total"], a["input_rows_total"]),
            **{f"{side}_{what}": _ratio(b[side][f"{what}_s"], a[side][f"{what}_s"])
               for side, what in (("engine", "wall"), ("engine", "cpu"), ("engine", "rules"),
                                  ("baseline", "wall"), ("baseline", "cpu"),
                                  ("baseline", "queries"))},
        })
    return steps


# -- the whole benchmark ----------------------------------------------------------------

def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(BENCH), *args], check=False, capture_output=True,
                          text=True).stdout.strip()


def environment() -> dict:
    """What was measured, on what: taken before the runs (the code may change meanwhile)."""
    changed = _git("status", "--porcelain", "--untracked-files=no", "--", "../src", "../rules")
    return {"fraudscreen": __version__, "commit": _git("rev-parse", "--short", "HEAD") or None,
            "uncommitted_changes": bool(changed),
            "python": platform.python_version(), "duckdb": duckdb.__version__,
            "polars": pl.__version__, "cpus": os.cpu_count(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
            "platform": platform.platform(), "memory_limit": MEMORY_LIMIT}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rules = RuleSet.load([]).rules
    written = {path.stem for path in (BENCH / "baseline").glob("*.sql")}
    if written != {rule.id for rule in rules}:
        sys.exit(f"error: baseline/*.sql and the built-in rules differ: "
                 f"{sorted(written ^ {rule.id for rule in rules})}")
    scales = [args.scale * k for k in (1, 2, 4)] if args.curve else [args.scale]
    started, env = dt.datetime.now().isoformat(timespec="seconds"), environment()
    runs = [bench_scale(s, args, rules) for s in scales]
    doc = {"generated": started, "smoke": args.smoke, "environment": env, "runs": runs,
           "curve": curve(runs), "keys_agree": all(r["keys_agree"] for r in runs)}
    name = "smoke" if args.smoke else f"scale-{args.scale:g}" + ("-curve" if args.curve else "")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False),
                                           encoding="utf-8")
    markdown = report.markdown(doc)
    (args.out / f"{name}.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    print(f"results: {args.out / name}.json, .md")
    if not doc["keys_agree"]:
        print("error: the baseline and the engine disagree on hit keys (see the JSON)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
