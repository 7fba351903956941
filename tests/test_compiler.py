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
