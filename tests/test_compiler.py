"""Compiler shortcuts keep the answer: what they recognise, and what they leave alone."""

from __future__ import annotations

import pytest

from fraudscreen.compiler import _min_group_rows, compile_rule
from fraudscreen.rule import Aggregate
from fraudscreen.ruleset import RuleSet


def aggregate(measures: dict[str, str], having: str) -> Aggregate:
    return Aggregate(kind="aggregate", source="fee_lines", group_by=["settlement_id"],
                     measures=measures, having=having)


@pytest.mark.parametrize("measures, having, rows", [
    ({"copies": "count(*)"}, "copies >= 2", 2),
    ({"copies": "count(*)"}, "copies > 2", 3),
    ({"copies": "count(*)", "total": "sum(amount)"}, "total > 10 AND copies >= 4", 4),
    ({"copies": "count(*)"}, "copies >= 2 OR copies = 0", 0),   # not a plain AND term
    ({"copies": "count(DISTINCT item_code)"}, "copies >= 2", 0),  # not count(*)
    ({"lines": "count(*)"}, "lines > 0", 1),
])
def test_min_group_rows(measures, having, rows):
    assert _min_group_rows(aggregate(measures, having)) == rows


def test_repeated_line_uses_the_candidate_shortcut_and_others_do_not():
    rules = {r.id: r for r in RuleSet.load().rules}
    assert "cand AS" in compile_rule(rules["duplicate_charge.repeated_line"]).sql
    assert "cand AS" not in compile_rule(rules["item_substitution.wrong_gender"]).sql


@pytest.mark.parametrize("bought, hits", [(100, 0), (50, 1)])
def test_groups_not_judged_are_counted_with_or_without_hits(bought, hits):
    """The count of a ``skip``'s groups rides on the hit rows; with none, it is asked for
    on its own. Either way: P2 keeps no stock records, so its item is not judged."""
    from fraudscreen.engine_duckdb import DuckDBEngine
    from fraudscreen.screen import screen
    from fraudscreen.testing import table

    rule = RuleSet.load().get("item_substitution.billed_more_than_bought")
    tables = {
        "purchases": table("purchases", [{"institution_id": "P1", "item_code": "X",
                                          "purchase_date": "2024-03-01", "quantity": bought}]),
        "settlements": table("settlements", [
            {"settlement_id": s, "person_id": "A", "institution_id": i, "medical_type": "41",
             "admit_time": "2024-03-01 09:00:00"} for s, i in (("S1", "P1"), ("S2", "P2"))]),
        "fee_lines": table("fee_lines", [
            {"settlement_id": s, "item_code": "X", "fee_category": "08",
             "charge_time": "2024-03-01 09:00:00", "quantity": 100, "unit_price": 2,
             "amount": 200} for s in ("S1", "S2")]),
    }
    engine = DuckDBEngine()
    try:
        result = screen(tables, RuleSet([rule], {}), engine)
    finally:
        engine.close()
    outcome = result.outcomes[0]
    assert (outcome.status, outcome.hits, outcome.skipped_groups) == ("ran", hits, 1)
    assert "__skipped" not in result.suspicions.columns
