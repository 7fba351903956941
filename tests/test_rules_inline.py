"""Every built-in rule's own inline cases (hit and no-hit at each boundary) pass."""

from __future__ import annotations

import pytest

from fraudscreen.lint import lint
from fraudscreen.ruleset import RuleSet
from fraudscreen.testing import run_test

RULES = RuleSet.load().rules
CASES = [(r, t) for r in RULES for t in r.tests]


@pytest.mark.parametrize("rule, case", CASES, ids=[f"{r.id}::{t.name}" for r, t in CASES])
def test_inline_case(rule, case):
    result = run_test(rule, case)
    assert result.passed, "\n".join(result.diff)


@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_rule_is_lint_clean(rule):
    assert [str(f) for f in lint(rule)] == []


def test_every_sub_rule_of_the_spec_is_built_in():
    assert {r.id for r in RULES} >= {
        "split_hospitalisation.readmission", "bed_holding.idle_stay",
        "bed_holding.elsewhere_during_stay", "duplicate_charge.repeated_line",
        "duplicate_charge.bed_days_beyond_stay", "duplicate_charge.daily_cap",
        "duplicate_charge.exclusive_items", "duplicate_charge.over_price_cap",
        "item_substitution.billed_more_than_bought", "item_substitution.wrong_gender",
        "key_item_growth.monthly_growth", "pharmacy_card_skimming.offsite_burst",
        "pharmacy_card_skimming.hoarding", "pharmacy_card_skimming.impossible_travel",
    }


def test_a_failing_expectation_is_reported_with_a_diff():
    rule = next(r for r in RULES if r.id == "split_hospitalisation.readmission")
    case = rule.tests[0].model_copy(update={"params": {"max_gap_days": 14}})
    result = run_test(rule, case)
    assert not result.passed
    assert any(line.startswith("- expected") for line in result.diff)
    # as a test writes its rows, not Python reprs (Decimal('2500.50'), datetime.date(…))
    assert not any("Decimal(" in line or "datetime" in line for line in result.diff)
    assert any("related_settlement_ids: [" in line for line in result.diff), result.diff


def test_a_scope_the_detection_does_not_keep_together_is_flagged():
    burst = next(r for r in RULES if r.id == "pharmacy_card_skimming.offsite_burst")
    assert lint(burst) == []  # institution: it partitions by institution_id
    wrong = burst.model_copy(update={"scope": "person"})
    found = [f for f in lint(wrong) if f.code == "FS007"]
    assert len(found) == 1 and "partition_by ['institution_id']" in found[0].message
    assert found[0].where.endswith(":18:1")  # the scope line of offsite_burst.yaml


def test_suspicions_that_no_lead_would_hold_are_flagged():
    """A rule whose hits name neither an institution nor a person (here: grouped by item
    alone) gives suspicions that neither roll-up of the lead list holds."""
    repeated = next(r for r in RULES if r.id == "duplicate_charge.repeated_line")
    by_item = repeated.model_copy(update={
        "scope": "global",
        "detect": repeated.detect.model_copy(update={"group_by": ["item_code"]}),
        "emit": repeated.emit.model_copy(update={
            "key": ["item_code"], "evidence": {"copies": "copies"},
            "message": "项目{item_code}重复{copies}次"})})
    assert [f.code for f in lint(by_item)] == ["FS008"]
    named = by_item.model_copy(update={"emit": by_item.emit.model_copy(update={
        "institution_id": "'H1'"})})
    assert [f.code for f in lint(named)] == []


def test_a_rule_whose_sql_cannot_bind_is_a_lint_error():
    """Found in review: `amount > item_code` passed lint and failed every run."""
    repeated = next(r for r in RULES if r.id == "duplicate_charge.repeated_line")
    typed = repeated.model_copy(update={
        "detect": repeated.detect.model_copy(update={"where": "amount > item_code"})})
    found = [f for f in lint(typed) if f.code == "FS004"]
    assert len(found) == 1 and "Cannot compare" in found[0].message
    assert found[0].where == typed.where("detect")  # its detection, not the file's first line


def test_a_parameter_typed_with_full_width_quotes_is_a_lint_warning():
    """Found in an analyst's review: a default of “08” raised nothing, and the rule
    silently matched no fee line. A value wrapped in them is refused (FS004); one that
    holds them elsewhere is FS010."""
    from fraudscreen.rule import Param

    rule = next(r for r in RULES if r.id == "split_hospitalisation.readmission")
    for default, codes in [("“08”", ["FS004"]), (["Z51", "‘Z29’"], ["FS004"]),
                           ("08”", ["FS010"]), (["Z51", "Z“29"], ["FS010"])]:
        typed = rule.model_copy(update={"params": {
            **rule.params, "planned_categories": Param(type="list" if isinstance(
                default, list) else "string", default=default)}})
        assert [f.code for f in lint(typed)] == codes, default
    assert [f.code for f in lint(rule)] == []
    named = rule.model_copy(update={"params": {**rule.params, "planned_categories": Param(
        type="list", default=["人血白蛋白（20%）", "复方，制剂"])}})
    assert [f.code for f in lint(named)] == []  # a name may hold full-width punctuation


def test_a_rule_that_does_not_compile_is_shown_where_the_mistake_is():
    """Found in an analyst's review: FS004 was placed at the rule's first line (1:1),
    with the real position and 'rule ID:' repeated inside its message."""
    readmission = next(r for r in RULES if r.id == "split_hospitalisation.readmission")
    typo = readmission.model_copy(update={"detect": readmission.detect.model_copy(update={
        "match": readmission.detect.match.replace("diagnosis_category =",
                                                  "diagnosis_categry =")})})
    [found] = [f for f in lint(typo) if f.code == "FS004"]
    line, col = readmission.position("detect", "match")
    assert found.where == f"{readmission.path}:{line}:{col}" and line > 1
    assert found.message.startswith("rule does not compile: detect.match: unknown column "
                                    "'diagnosis_categry'; did you mean 'diagnosis_category'?")


@pytest.mark.parametrize("emit, flagged", [
    ({"person_id": "NULL", "evidence": {"who": "person_id"}}, "emit.evidence.who"),
    ({"evidence": {"who": "concat('x', person_id)"}}, "emit.evidence.who"),
    ({"amount_at_risk": "CAST(person_id AS DECIMAL(38, 0))"}, "emit.amount_at_risk"),
    ({"evidence": {"who": "person_id"}}, None),  # whole, beside the person_id field
])
def test_person_ids_the_public_profile_cannot_find_are_flagged(emit, flagged):
    """Found in review: a site rule could carry person ids past --profile public by
    emitting them under another name, inside text, or as a number."""
    repeated = next(r for r in RULES if r.id == "duplicate_charge.repeated_line")
    changed = repeated.model_copy(update={"emit": repeated.emit.model_copy(update={
        **emit, "evidence": {**repeated.emit.evidence, **emit.get("evidence", {})}})})
    found = [f.message.rsplit(": ", 1)[-1] for f in lint(changed) if f.code == "FS009"]
    assert found == ([flagged] if flagged else [])
