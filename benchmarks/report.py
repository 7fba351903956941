"""The benchmark's JSON as Markdown tables (what docs/performance.md shows)."""

from __future__ import annotations


def _n(value: float | None, places: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{places}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "--:" for i in range(len(header))) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _yes(flag: bool) -> str:
    return "yes" if flag else "**NO**"


def _totals(run: dict) -> list[str]:
    e, b, r = run["engine"], run["baseline"], run["ratio"]
    return _table(
        ["", "wall s", "CPU s", "rules phase s", "rows/s (wall)", "rows/s (rules phase)",
         "peak RSS MB"],
        [["engine: `fraudscreen run`", _n(e["wall_s"]), _n(e["cpu_s"]), _n(e["rules_s"]),
          _n(e["rows_per_s_wall"]), _n(e["rows_per_s_rules"]), _n(e["peak_rss_mb"], 0)],
         ["baseline: 14 queries", _n(b["wall_s"]), _n(b["cpu_s"]), _n(b["queries_s"]),
          _n(b["rows_per_s_wall"]), _n(b["rows_per_s_queries"]), _n(b["peak_rss_mb"], 0)],
         ["ratio engine / baseline", _n(r["wall"]), _n(r["cpu"]), _n(r["rules"]), "", "", ""]])


def _rules(run: dict) -> list[str]:
    rows = [[f"`{r['rule_id']}`", _n(r["engine_s"]), _n(r["baseline_s"]), _n(r["ratio"]),
             f"{r['engine_hits']:,} / {r['baseline_hits']:,}", _yes(r["keys_agree"]),
             _yes(r["amounts_agree"])]
            for r in sorted(run["rules"], key=lambda r: -r["engine_s"])]
    return _table(["rule (slowest first)", "engine s", "baseline s", "ratio",
                   "hits engine / baseline", "keys agree", "amounts agree"], rows)


def _run(run: dict, cpus: int) -> list[str]:
    e, scan = run["engine"], run["scan_once"]
    title = (f"## Scale {run['scale']:g}: {run['input_rows_total']:,} input rows "
             f"({run['input_rows'].get('fee_lines', 0):,} fee lines)")
    note = (f"Seed {run['seed']}, median of {run['repeats']} alternated run(s), peak RSS the "
            f"maximum. Engine wall = start-up {_n(e['startup_s'])} s + ingestion "
            f"{_n(e['ingest_s'])} s + rules phase {_n(e['rules_s'])} s + writing outputs "
            f"{_n(e['output_s'])} s. One DuckDB scan decoding every input value once takes "
            f"{_n(scan['seconds'])} s ({_n(scan['rows_per_s'])} rows/s): the floor under any "
            f"tool that reads all the data. Highest 1-minute load average seen: "
            f"{run['max_load_average']} on {cpus} CPUs.")
    lines = [title, "", note, ""]
    lines += _totals(run) + [""] + _rules(run) + [""]
    if run["engine_rules_not_run"]:
        lines += [f"Rules the engine did not run: {', '.join(run['engine_rules_not_run'])}.", ""]
    return lines


def _curve(steps: list[dict]) -> list[str]:
    columns = ["engine_wall", "engine_cpu", "engine_rules", "baseline_wall", "baseline_cpu",
               "baseline_queries"]
    rows = [[f"{s['from_scale']:g} → {s['to_scale']:g}", _n(s["rows"])]
            + [_n(s[c]) for c in columns] for s in steps]
    return ["## Scale curve (time ratio per step)", ""] + _table(
        ["step", "input rows ×", "engine wall ×", "engine CPU ×", "engine rules phase ×",
         "baseline wall ×", "baseline CPU ×", "baseline queries ×"], rows) + [""]


def markdown(doc: dict) -> str:
    env = doc["environment"]
    commit = env["commit"] + (" + uncommitted changes" if env["uncommitted_changes"] else "")
    setting = (f"{doc['generated']} · fraudscreen {env['fraudscreen']} ({commit}) · "
               f"Python {env['python']} · DuckDB {env['duckdb']} · {env['cpus']} CPUs, "
               f"{env['memory_gb']} GB · DuckDB memory limit {env['memory_limit']} (both sides)")
    lines = ["# fraudscreen benchmark" + (" (smoke)" if doc["smoke"] else ""), "", setting, "",
             f"Hit keys agree on every rule: {_yes(doc['keys_agree'])}.", ""]
    for run in doc["runs"]:
        lines += _run(run, env["cpus"])
    if doc["curve"]:
        lines += _curve(doc["curve"])
    return "\n".join(lines)
