"""The benchmark harness runs end to end on tiny data, and its hand-written baseline
flags exactly what the engine flags, rule by rule. No timing is asserted."""

import json
import subprocess
import sys
from pathlib import Path

from fraudscreen.ruleset import RuleSet

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke", "--out", str(tmp_path)],
        check=False, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    doc = json.loads((tmp_path / "smoke.json").read_text(encoding="utf-8"))
    assert (tmp_path / "smoke.md").read_text(encoding="utf-8").startswith("# fraudscreen benchmark")
    assert {"generated", "environment", "runs", "curve", "keys_agree"} <= doc.keys()
    (run,) = doc["runs"]
    assert {"scale", "input_rows", "input_rows_total", "engine", "baseline", "ratio",
            "rules", "keys_agree"} <= run.keys()
    assert run["input_rows_total"] > 0
    assert {"wall_s", "ingest_s", "rules_s", "peak_rss_mb", "rows_per_s_wall",
            "rows_per_s_rules"} <= run["engine"].keys()
    assert {"wall_s", "queries_s", "peak_rss_mb", "rows_per_s_wall",
            "rows_per_s_queries"} <= run["baseline"].keys()
    assert {"wall", "rules"} <= run["ratio"].keys()

    rules = {r["rule_id"]: r for r in run["rules"]}
    assert set(rules) == {rule.id for rule in RuleSet.load([]).rules}
    for rule in rules.values():
        assert {"engine_s", "baseline_s", "ratio", "engine_hits", "baseline_hits",
                "keys_agree", "amounts_agree"} <= rule.keys()
    disagreeing = {i: (r["only_engine"], r["only_baseline"])
                   for i, r in rules.items() if not r["keys_agree"]}
    assert not disagreeing
    assert doc["keys_agree"] is True
