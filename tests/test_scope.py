"""Each built-in rule's ``scope`` is true of its hits: screening only some persons' (or
institutions') data, with the window of all the data, finds exactly the full run's hits
for those persons (institutions). ``fraudscreen nightly`` relies on this."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from fraudscreen.ingest import load_folder
from fraudscreen.ruleset import RuleSet
from fraudscreen.screen import make_engine, screen

SAMPLE = Path(__file__).resolve().parent.parent / "sample_claims" / "data"


@pytest.fixture(scope="module")
def sample():
    with load_folder(SAMPLE) as ingestion:
        tables = {name: ingestion.table(name) for name in ingestion.tables}
    engine = make_engine("duckdb")
    try:
        full = screen(tables, RuleSet.load(), engine)
    finally:
        engine.close()
    return tables, full


def half(values: pl.Series) -> set[str]:
    """Every other value, in sorted order: a fixed, arbitrary half."""
    return set(values.unique().sort().gather_every(2).to_list())


@pytest.mark.parametrize("kind", ["person", "institution"])
def test_rules_find_the_same_hits_from_their_scope_alone(sample, kind):
    tables, full = sample
    ruleset = RuleSet.load()
    rules = [r for r in ruleset.rules if r.scope == kind]
    assert rules
    column = f"{kind}_id"
    keep = half(tables["settlements"][column])
    part = dict(tables)
    part["settlements"] = tables["settlements"].filter(pl.col(column).is_in(keep))
    part["fee_lines"] = tables["fee_lines"].filter(
        pl.col("settlement_id").is_in(part["settlements"]["settlement_id"].implode()))
    if kind == "institution":
        part["purchases"] = tables["purchases"].filter(pl.col(column).is_in(keep))
    engine = make_engine("duckdb")
    try:
        got = screen(part, RuleSet(rules, ruleset.overrides), engine,
                     data_window=full.window).suspicions
    finally:
        engine.close()
    ids = {r.id for r in rules}
    mine = full.suspicions.filter(pl.col("rule_id").is_in(ids))
    nameless = mine.filter(pl.col(column).is_null())["rule_id"].unique().to_list()
    assert not nameless, f"hits of these {kind} rules name no {kind}: {nameless}"
    expected = mine.filter(pl.col(column).is_in(keep))
    assert expected["rule_id"].n_unique() > len(rules) // 2  # hits of most rules to compare
    assert got.sort("suspicion_id").equals(expected.sort("suspicion_id"))


@pytest.mark.parametrize("days", [11, 31])
def test_consecutive_windows_find_each_case_once_as_one_run_does(sample, days):
    """Rules that judge a row by the rows around it (sequence, window, correlate) read
    those across a --from/--to window's edges and flag the rows in it, and a period change
    sums whole months and judges those whose first day is in the window: screening the data
    window by window gives exactly the whole run's suspicions (found in review: month by
    month, a readmission, a hoarding run or a journey across a month's end was lost, and
    growth was never found)."""
    tables, full = sample
    rules = RuleSet.load().select(["split_hospitalisation", "pharmacy_card_skimming",
                                   "bed_holding.elsewhere_during_stay", "key_item_growth"])
    whole = full.suspicions.filter(pl.col("rule_id").is_in([r.id for r in rules.rules]))
    assert whole.height and set(whole["rule_id"]) == {r.id for r in rules.rules}
    parts, start = [], full.window[0]
    while start <= full.window[1]:
        end = start + dt.timedelta(days=days - 1)
        engine = make_engine("duckdb")
        try:
            parts.append(screen(tables, rules, engine, start, end).suspicions)
        finally:
            engine.close()
        start = end + dt.timedelta(days=1)
    assert pl.concat(parts).sort("suspicion_id").equals(whole.sort("suspicion_id"))
