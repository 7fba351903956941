"""Compiler shortcuts keep the answer: what they recognise, and what they leave alone."""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudscreen.compiler import _decimal_quotients, _late_join, _min_group_rows, compile_rule
from fraudscreen.rule import Aggregate, Filter, Lookup, Rule, RuleError, load_rule
from fraudscreen.ruleset import RuleSet
from fuzz import examples


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
@pytest.mark.parametrize("count, skipped", [(["institution_id"], 1), ([], 2)])
def test_groups_not_judged_are_counted_with_or_without_hits(bought, hits, count, skipped):
    """The count of a ``skip``'s groups rides on the hit rows; with none, it is asked for
    on its own. Either way: P2 keeps no stock records, so its items X and Y are not
    judged: one institution (the built-in rule's ``count``), two groups (the default)."""
    from fraudscreen.engine_duckdb import DuckDBEngine
    from fraudscreen.screen import screen
    from fraudscreen.testing import table

    rule = RuleSet.load().get("item_substitution.billed_more_than_bought")
    skip = rule.detect.skip.model_copy(update={"count": count})
    rule = rule.model_copy(update={"detect": rule.detect.model_copy(update={"skip": skip})})
    tables = {
        "purchases": table("purchases", [{"institution_id": "P1", "item_code": "X",
                                          "purchase_date": "2024-03-01", "quantity": bought}]),
        "settlements": table("settlements", [
            {"settlement_id": s, "person_id": "A", "institution_id": i, "medical_type": "41",
             "admit_time": "2024-03-01 09:00:00"} for s, i in (("S1", "P1"), ("S2", "P2"))]),
        "fee_lines": table("fee_lines", [
            {"line_id": f"{s}{item}", "settlement_id": s, "item_code": item,
             "fee_category": "08", "charge_time": "2024-03-01 09:00:00", "quantity": 100,
             "unit_price": 2, "amount": 200} for s, item in (("S1", "X"), ("S2", "X"),
                                                              ("S2", "Y"))]),
    }
    engine = DuckDBEngine()
    try:
        result = screen(tables, RuleSet([rule], {}), engine)
    finally:
        engine.close()
    outcome = result.outcomes[0]
    assert (outcome.status, outcome.hits, outcome.skipped) == ("ran", hits, skipped)
    assert "__skipped" not in result.suspicions.columns


# -- attached columns joined after the kind's own step ---------------------------------

def detection(kind: str = "aggregate", **fields) -> Filter | Aggregate:
    if kind == "filter":
        return Filter(kind="filter", source=fields.pop("source", "fee_lines"), **fields)
    base = {"source": "fee_lines", "group_by": ["settlement_id", "person_id", "item_code"],
            "measures": {"total": "sum(amount)"}, "having": "total > 0"}
    return Aggregate(kind="aggregate", **{**base, **fields})


@pytest.mark.parametrize("det, late", [
    (detection(), True),
    (detection(group_by=["person_id", "item_code"]), False),       # not by the key
    (detection(where="medical_type = '41'"), False),               # reads one before
    (detection(measures={"first": "min(admit_time)"}, having="first IS NOT NULL"), False),
    (detection(measures={"p": "min(person_id)"}, having="p IS NOT NULL",
               group_by=["settlement_id", "item_code"]), False),
    (detection(lookups={"gender": Lookup(source="persons", on=["person_id"],
                                         value="max(gender)")}), False),
    (detection(lookups={"cap": Lookup(source="catalog", on=["item_code"],
                                      value="max(price_cap)")}, where="cap IS NOT NULL"),
     True),
    (detection("filter", where="amount > 100"), True),
    (detection("filter", where="amount > 100 AND off_site"), False),
    (detection("filter", source="settlements", where="total_amount > 100"), False),
])
def test_late_join_only_when_nothing_reads_the_attached_columns_first(det, late):
    assert (_late_join(det) is not None) is late


def _two_plans(group_by: list[str], late: bool) -> Rule:
    """One aggregate over fee lines written two ways: grouped on the attached person
    and institution (late join) or taking them as min() of the group (plain join)."""
    measures = {"total": "sum(amount)", "lines": "count(*)", "first": "min(line_id)"}
    keys = ["settlement_id", *group_by]
    if late:
        keys[1:1] = ["person_id", "institution_id"]
    else:
        measures |= {"person_id": "min(person_id)", "institution_id": "min(institution_id)"}
    return Rule.model_validate({
        "id": f"test.{'late' if late else 'plain'}", "version": "1",
        "family": "duplicate_charge", "title": "t", "description": "d", "severity": "low",
        "detect": {"kind": "aggregate", "source": "fee_lines", "where": "quantity > 1",
                   "group_by": keys, "measures": measures, "having": "lines >= 2"},
        "emit": {"amount_at_risk": "total", "message": "{settlement_id}",
                 "period_start": "charge_date" if "charge_date" in group_by else None,
                 "evidence": {"first": "first", "lines": "lines"},
                 "key": ["settlement_id", "item_code", "period_start"]}})


SETTLEMENTS = ["S1", "S2", "S3", "S4"]


@st.composite
def claims(draw):
    setts = [{"settlement_id": s, "person_id": draw(st.sampled_from("AB")),
              "institution_id": draw(st.sampled_from(["H1", "H2"])), "medical_type": "11",
              "admit_time": "2024-03-01 09:00:00"} for s in SETTLEMENTS]
    reversed_ = draw(st.sets(st.sampled_from(SETTLEMENTS), max_size=2))
    setts += [{**s, "settlement_id": f"R{s['settlement_id']}",
               "reversed_settlement_id": s["settlement_id"]}
              for s in setts if s["settlement_id"] in reversed_]
    lines = [{"line_id": f"L{i:03d}",
              "settlement_id": draw(st.sampled_from(SETTLEMENTS + ["RS1", "S9"])),
              "item_code": draw(st.sampled_from("XY")),
              "charge_time": f"2024-03-0{draw(st.integers(1, 3))} 10:00:00",
              "quantity": draw(st.integers(1, 3)), "unit_price": 5,
              "amount": draw(st.integers(1, 50))} for i in range(draw(st.integers(0, 14)))]
    return setts, lines


@settings(max_examples=examples(30), deadline=None)
@given(data=claims(), group_by=st.sampled_from([["item_code"], ["item_code", "charge_date"]]),
       window=st.booleans())
def test_late_join_finds_what_the_plain_join_finds(data, group_by, window):
    """Same suspicions either way, reversed settlements (and lines of no settlement)
    included in the data, with and without a --from/--to window."""
    from fraudscreen.engine_duckdb import DuckDBEngine
    from fraudscreen.screen import screen
    from fraudscreen.testing import table

    setts, lines = data
    tables = {"settlements": table("settlements", setts), "fee_lines": table("fee_lines", lines)}
    late, plain = _two_plans(group_by, True), _two_plans(group_by, False)
    assert "fee_line_rows" in compile_rule(late).sql
    assert "fee_line_rows" not in compile_rule(plain).sql
    span = (dt.date(2024, 3, 2), dt.date(2024, 3, 3)) if window else (None, None)
    found = []
    for rule in (late, plain):
        engine = DuckDBEngine()
        try:
            result = screen(tables, RuleSet([rule], {}), engine, *span)
        finally:
            engine.close()
        assert result.outcomes[0].status == "ran", result.outcomes[0].reason
        # Suspicion ids differ with the rule id; everything else must not.
        found.append(sorted(result.suspicions.select(
            "settlement_id", "person_id", "institution_id", "item_code", "period_start",
            "amount_at_risk", "evidence").rows()))
    late_rows, plain_rows = found
    assert late_rows == plain_rows
    gone = {s["reversed_settlement_id"] for s in setts if s.get("reversed_settlement_id")}
    assert not {r[0] for r in late_rows} & (gone | {"RS1", "S9"})


def test_rows_before_the_join_cannot_be_named_in_a_rule(tmp_path):
    """fee_line_rows holds lines of reversed settlements: compiled rules read it, never
    a rule's own text."""
    for detect in ({"kind": "filter", "source": "fee_line_rows", "where": "amount > 1"},
                   {"kind": "filter", "source": "fee_lines",
                    "where": "line_id IN (SELECT line_id FROM fee_line_rows)"}):
        rule = Rule.model_validate({
            "id": "test.rows", "version": "1", "family": "duplicate_charge", "title": "t",
            "description": "d", "severity": "low", "detect": detect,
            "emit": {"amount_at_risk": "amount", "message": "{settlement_id}"}})
        with pytest.raises(RuleError, match="fee_line_rows"):
            compile_rule(rule)


def test_a_measure_named_like_an_attached_column_is_the_measure():
    """Only the attached group keys are joined back: a measure called ``off_site`` (not
    grouped on) keeps its own value instead of meeting the settlement's column."""
    from fraudscreen.engine_duckdb import DuckDBEngine
    from fraudscreen.screen import screen
    from fraudscreen.testing import table

    rule = Rule.model_validate({
        "id": "test.named", "version": "1", "family": "duplicate_charge", "title": "t",
        "description": "d", "severity": "low",
        "detect": {"kind": "aggregate", "source": "fee_lines",
                   "group_by": ["settlement_id", "person_id"],
                   "measures": {"off_site": "count(*)"}, "having": "off_site >= 1"},
        "emit": {"amount_at_risk": "off_site", "message": "{settlement_id}",
                 "evidence": {"lines": "off_site"}}})
    sql = compile_rule(rule).sql
    # Two columns of one name would be ambiguous on Spark (DuckDB renames the second).
    assert 'a."person_id"' in sql and 'a."off_site"' not in sql
    tables = {
        "settlements": table("settlements", [{
            "settlement_id": "S1", "person_id": "A", "institution_id": "H",
            "medical_type": "11", "admit_time": "2024-03-01 09:00:00",
            "insured_region": "110101", "visit_region": "310101"}]),
        "fee_lines": table("fee_lines", [{
            "line_id": f"L{i}", "settlement_id": "S1", "item_code": "X",
            "charge_time": "2024-03-01 10:00:00", "quantity": 1, "unit_price": 1,
            "amount": 1} for i in range(3)])}
    engine = DuckDBEngine()
    try:
        result = screen(tables, RuleSet([rule], {}), engine)
    finally:
        engine.close()
    assert result.outcomes[0].status == "ran", result.outcomes[0].reason
    assert result.suspicions["amount_at_risk"].to_list() == [Decimal("3.00")]
    assert result.suspicions["person_id"].to_list() == ["A"]


@pytest.mark.parametrize("measures, says", [
    ({"increase": "max(amount)"}, "measure 'increase' is already a column of the month"),
    ({"item_code": "min(item_code)"}, "measure 'item_code' is already a column of the month"),
    ({"name": "item_name"}, "measure 'name' uses item_name outside an aggregate"),
])
def test_a_period_change_measure_is_an_aggregate_under_a_name_of_its_own(measures, says):
    """A month's measures sit beside its value, previous value and increase: one named
    like them would be two columns of one name."""
    rule = Rule.model_validate({
        "id": "test.growth", "version": "1", "family": "key_item_growth", "title": "t",
        "description": "d", "severity": "low",
        "detect": {"kind": "period_change", "source": "fee_lines",
                   "group_by": ["institution_id", "item_code"], "time": "charge_date",
                   "value": "sum(amount)", "having": "increase > 0", "measures": measures},
        "emit": {"amount_at_risk": "increase", "message": "{item_code}"}})
    with pytest.raises(RuleError, match=re.escape(says)):
        compile_rule(rule)


# A detection of each kind that takes measures, its measure named NAME.
MEASURED = {
    "aggregate": """
  kind: aggregate
  source: fee_lines
  group_by: [settlement_id, quantity]
  measures:
    lines: count(*)
    NAME: sum(amount)
  having: lines > 1""",
    "correlate": """
  kind: correlate
  source: settlements
  with: {source: settlements, on: [person_id]}
  match: other.settlement_id <> settlement_id
  measures:
    NAME: sum(other.fund_amount)""",
    "window": """
  kind: window
  source: settlement_items
  partition_by: [person_id, item_code]
  time: admit_time
  span: {days: 30}
  having: count(*) >= 2
  anchor: last
  measures:
    NAME: sum(amount)""",
    "period_change": """
  kind: period_change
  source: fee_lines
  group_by: [institution_id, item_code]
  time: charge_date
  value: sum(amount)
  having: increase > 0
  measures:
    NAME: sum(quantity)""",
}


def _measured(tmp_path, kind: str, name: str):
    """The rule file of ``kind`` with its measure named ``name``, and the line the
    measure is written on."""
    from fraudscreen.rule import load_rule

    text = ('id: t.measured\nversion: "1"\nfamily: t\ntitle: t\ndescription: d\n'
            f'severity: low\ndetect:{MEASURED[kind].replace("NAME", name)}\n'
            'emit:\n  amount_at_risk: "0"\n  message: "{institution_id}"\n')
    path = tmp_path / f"{kind}.yaml"
    path.write_text(text, encoding="utf-8")
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.startswith(f"    {name}:"))
    return load_rule(path), f"{path}:{line}:5:"


@pytest.mark.parametrize("kind, name, says", [
    # Found in review: DuckDB read the source's column (a window's sum of amounts was the
    # anchor's own amount), Spark refused the name as ambiguous.
    ("window", "amount", "is already a column of the hit (the settlement_items row"),
    ("window", "first_time", "is already a column of the hit"),
    ("correlate", "fund_amount", "is already a column of the hit (the settlements row"),
    ("correlate", "related_settlement_ids", "is already a column of the hit"),
    # A group's row holds its keys: a measure named like one made no hit on DuckDB.
    ("aggregate", "quantity", "is already a column of the group (group_by)"),
    ("aggregate", "QUANTITY", "('quantity': SQL names ignore letter case)"),
    ("period_change", "item_code", "is already a column of the month"),
    ("period_change", "Increase", "('increase': SQL names ignore letter case)"),
    ("aggregate", "LINES", "is already another measure's name ('lines'"),
    # Found in review: a window's measure __run or __t was silently the window's own
    # column (a sum of amounts read 0.00, or a day count).
    ("window", "__run", "holds '__', as the compiler's own columns do"),
    ("window", "__t", "holds '__'"),
    ("aggregate", "lines__2", "holds '__'"),
])
def test_a_measure_named_like_a_column_of_its_hit_is_refused_where_it_is_written(
        tmp_path, kind, name, says):
    """A measure sits beside the columns its hit already has: named like one, in any
    letter case, the hit would have two columns of one name."""
    rule, where = _measured(tmp_path, kind, name)
    with pytest.raises(RuleError) as err:
        compile_rule(rule)
    assert str(err.value).startswith(where), str(err.value)
    assert f"measure {name!r} " in str(err.value) and says in str(err.value)
    assert "rename the measure" in str(err.value)


@pytest.mark.parametrize("kind, written, says", [
    ("window", "total: amount", "measure 'total' uses amount outside an aggregate: a group "
     "has many rows; write e.g. min(amount) or sum(amount), or add amount to partition_by"),
    ("correlate", "total: other.fund_amount", "measure 'total' uses fund_amount outside an "
     "aggregate: a group has many rows; write e.g. min(fund_amount) or sum(fund_amount)"),
    ("period_change", "value: amount", "value uses amount outside an aggregate: a group has "
     "many rows; write e.g. min(amount) or sum(amount), or add amount to group_by"),
])
def test_an_aggregate_of_a_window_correlate_or_month_that_is_none_is_refused_where_it_is(
        tmp_path, kind, written, says):
    """Found in review: DuckDB's 'Binder Error: column "amount" must appear in the GROUP
    BY clause', with no line (`rules test` named the file alone)."""
    rule, _ = _measured(tmp_path, kind, "measured")
    key = written.split(":")[0]
    text = re.sub(rf"(?m)^(\s+){'measured' if key == 'total' else key}: .*$",
                  lambda m: m[1] + written, Path(rule.path).read_text(encoding="utf-8"))
    Path(rule.path).write_text(text, encoding="utf-8")
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.strip() == written)
    col = len(text.splitlines()[line - 1]) - len(written) + 1
    with pytest.raises(RuleError) as err:
        compile_rule(load_rule(Path(rule.path)))
    assert str(err.value) == f"{rule.path}:{line}:{col}: rule t.measured: {says}"


@pytest.mark.parametrize("kind, name", [
    *((kind, "measured") for kind in MEASURED),
    # An aggregate's row holds its group keys only: the source's other columns are free.
    ("aggregate", "amount"),
])
def test_a_measure_under_a_name_of_its_own_is_accepted(tmp_path, kind, name):
    rule, _ = _measured(tmp_path, kind, name)
    assert f'AS "{name}"' in compile_rule(rule).sql


WINDOW_OVER_LINES = """
id: t.window_lines
version: "1"
family: t
title: t
description: d
severity: low
detect:
  kind: window
  source: fee_lines
  partition_by: [person_id, item_code]
  time: charge_time
  span: {days: 30}
  having: sum(quantity) > 90
  anchor: last
emit:
  amount_at_risk: "0"
  message: "{settlement_id}"
  key: [person_id, item_code, settlement_id]
tests:
  - name: a settlement with several member lines is named once, never its own hit's
    given:
      settlements:
        - {settlement_id: S1, person_id: A, institution_id: H1, admit_time: 2024-03-01 09:00:00}
        - {settlement_id: S2, person_id: A, institution_id: H1, admit_time: 2024-03-15 09:00:00}
      fee_lines:
        - {settlement_id: S1, item_code: D, charge_time: 2024-03-01 09:00:00, quantity: 30}
        - {settlement_id: S1, item_code: D, charge_time: 2024-03-01 09:05:00, quantity: 30}
        - {settlement_id: S2, item_code: D, charge_time: 2024-03-15 09:00:00, quantity: 20}
        - {settlement_id: S2, item_code: D, charge_time: 2024-03-15 09:05:00, quantity: 11}
    expect:
      - {settlement_id: S2, related_settlement_ids: [S1]}
  - name: every member line in the hit's own settlement leaves no related settlement
    given:
      settlements:
        - {settlement_id: S1, person_id: A, institution_id: H1, admit_time: 2024-03-01 09:00:00}
      fee_lines:
        - {settlement_id: S1, item_code: D, charge_time: 2024-03-01 09:00:00, quantity: 50}
        - {settlement_id: S1, item_code: D, charge_time: 2024-03-01 10:00:00, quantity: 41}
    expect:
      - {settlement_id: S1, related_settlement_ids: []}
"""


def test_a_window_over_fee_lines_names_each_other_settlement_once(tmp_path):
    """Found in an analyst's review: members are rows, so a window over fee lines listed
    a settlement once per line, and the hit's own settlement among its related ones."""
    from fraudscreen.rule import load_rule
    from fraudscreen.testing import run_test

    path = tmp_path / "rule.yaml"
    path.write_text(WINDOW_OVER_LINES, encoding="utf-8")
    rule = load_rule(path)
    for case in rule.tests:
        result = run_test(rule, case)
        assert result.passed, (case.name, result)


GROUPED_QUERY = """
id: t.grouped_query
version: "1"
family: t
title: t
description: d
severity: low
params:
  max_visits: {type: int, default: 2}
detect:
  kind: query
  sql: >
    SELECT institution_id, admit_date, count(*) AS visits, sum(fund_amount) AS fund
    FROM settlements WHERE medical_type = '11'
    GROUP BY institution_id, admit_date HAVING count(*) > :max_visits
emit:
  amount_at_risk: fund
  evidence: {day: admit_date, visits: visits}
  message: "{institution_id} {day} {visits}"
  key: [institution_id, day]
tests:
  - name: three outpatient visits in a day at one institution are flagged, two are not
    given:
      settlements:
        - {settlement_id: S1, person_id: A, institution_id: H1, fund_amount: 10,
           admit_time: 2024-03-01 09:00:00}
        - {settlement_id: S2, person_id: B, institution_id: H1, fund_amount: 20,
           admit_time: 2024-03-01 10:00:00}
        - {settlement_id: S3, person_id: C, institution_id: H1, fund_amount: 30,
           admit_time: 2024-03-01 11:00:00}
        - {settlement_id: S4, person_id: A, institution_id: H2, fund_amount: 10,
           admit_time: 2024-03-01 09:00:00}
        - {settlement_id: S5, person_id: B, institution_id: H2, fund_amount: 20,
           admit_time: 2024-03-01 10:00:00}
      fee_lines:
        - {settlement_id: S1, item_code: X, charge_time: 2024-03-01 09:00:00}
    expect:
      - {institution_id: H1, amount_at_risk: 60}
"""


def test_a_query_may_group_and_filter_its_groups(tmp_path):
    """Found in an analyst's review: the escape hatch refused GROUP BY, so the usual
    'escape' (a count per institution and day) could not be written."""
    from fraudscreen.rule import load_rule
    from fraudscreen.testing import run_test

    path = tmp_path / "rule.yaml"
    path.write_text(GROUPED_QUERY, encoding="utf-8")
    rule = load_rule(path)
    assert "HAVING COUNT(*) > 2" in compile_rule(rule).sql_for("duckdb", pretty=False)
    result = run_test(rule, rule.tests[0])
    assert result.passed, result


def _people(funds: list[int]) -> str:
    """Outpatient settlements at H1, one per person P1, P2, … with these fund amounts."""
    return "".join(f"        - {{settlement_id: S{i}, person_id: P{i}, institution_id: H1, "
                   f"medical_type: \"11\", fund_amount: {f}}}\n"
                   for i, f in enumerate(funds, 1))


STEPPED_QUERY = f"""
id: t.stepped_query
version: "1"
family: t
title: t
description: d
severity: low
params:
  times: {{type: decimal, default: 3}}
detect:
  kind: query
  sql: |
    WITH per_person AS (
      SELECT institution_id, person_id, sum(fund_amount) AS fund
      FROM settlements WHERE medical_type = '11'
      GROUP BY institution_id, person_id
    ), ranked AS (
      SELECT p.*, rank() OVER (PARTITION BY institution_id ORDER BY fund DESC) AS place,
             avg(fund) OVER (PARTITION BY institution_id) AS mean_fund
      FROM per_person AS p
    )
    SELECT institution_id, person_id, fund, mean_fund, 'top' AS why
    FROM (SELECT * FROM ranked WHERE place = 1) AS top
    WHERE top.fund > :times * top.mean_fund
    UNION ALL
    SELECT institution_id, person_id, fund, mean_fund, 'runner-up' AS why
    FROM ranked WHERE place > 1 AND fund > :times * mean_fund
emit:
  amount_at_risk: fund - mean_fund
  evidence: {{why: why}}
  message: "{{person_id}} {{why}}"
  key: [institution_id, person_id]
tests:
  - name: the top spender at nine times the others is exactly three times the mean, not flagged
    given:
      settlements:
{_people([90, 10, 10, 10])}
    expect: []
  - name: one fen more is flagged, at the fund above the mean
    given:
      settlements:
{_people([91, 10, 10, 10])}
    expect:
      - {{person_id: P1, amount_at_risk: 60.75}}
  - name: a runner-up above three times the mean is flagged too, people who tie share a place
    given:
      settlements:
{_people([200, 200, 150, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])}
    expect:
      - {{person_id: P1}}
      - {{person_id: P2}}
      - {{person_id: P3}}
"""


TIED_PICKS = """
id: t.tied_picks
version: "1"
family: t
title: t
description: d
severity: low
detect:
  kind: aggregate
  source: fee_lines
  lookups:
    cap: {source: catalog, on: [item_code], value: max(price_cap)}
  group_by: [settlement_id, person_id, institution_id]
  measures:
    lines: count(*)
    first_item: arg_min(item_code, charge_date)
    last_item: arg_max(item_code, charge_date)
    top_item: arg_max(item_code, cap)
    cheapest_item: arg_min(item_code, cap)
  having: lines >= 2
emit:
  amount_at_risk: "0"
  evidence: {first: first_item, last: last_item, top: top_item, cheapest: cheapest_item}
  message: "{first} {last} {top} {cheapest}"
tests:
  - name: lines of one day tie, and the item breaks the tie; an item without a cap is no pick
    given:
      settlements:
        - {settlement_id: S1, person_id: P1, institution_id: H1}
      fee_lines:
        - {settlement_id: S1, item_code: B, charge_time: 2024-03-01 10:00:00}
        - {settlement_id: S1, item_code: C, charge_time: 2024-03-01 10:00:00}
        - {settlement_id: S1, item_code: A, charge_time: 2024-03-01 10:00:00}
      catalog:
        - {item_code: A, price_cap: 10}
        - {item_code: B, price_cap: 50}
    expect:
      - {settlement_id: S1, message: "A C B A"}
  - name: one line is no group
    given:
      settlements:
        - {settlement_id: S1, person_id: P1, institution_id: H1}
      fee_lines:
        - {settlement_id: S1, item_code: B, charge_time: 2024-03-01 10:00:00}
      catalog:
        - {item_code: B, price_cap: 50}
    expect: []
"""


def test_arg_min_and_arg_max_settle_ties_and_skip_null_orderings(tmp_path):
    """Found in review: arg_min(item_code, charge_date) picked among one day's lines in
    no fixed order (the evidence changed from run to run); the first tie-break then let
    an item without a cap (NULL) win arg_max on DuckDB and arg_min on Spark."""
    from fraudscreen.rule import load_rule
    from fraudscreen.testing import run_test

    path = tmp_path / "rule.yaml"
    path.write_text(TIED_PICKS, encoding="utf-8")
    rule = load_rule(path)
    for case in rule.tests:
        result = run_test(rule, case)
        assert result.passed, (case.name, result.diff)


NAMED_ITEMS = """
id: t.named_items
version: "1"
family: t
title: t
description: d
severity: low
detect:
  kind: filter
  source: fee_lines
  where: amount > 0
emit:
  amount_at_risk: amount
  evidence: {item_zh: "with_name(item_code, item_name)"}
  message: "{settlement_id}:{item_zh}"
tests:
  - name: a named item reads code（name）, one without a name (NULL or blank) its code alone
    given:
      settlements:
        - {settlement_id: S1, person_id: P1, institution_id: H1}
        - {settlement_id: S2, person_id: P1, institution_id: H1}
        - {settlement_id: S3, person_id: P1, institution_id: H1}
        - {settlement_id: S4, person_id: P1, institution_id: H1}
      fee_lines:
        - {settlement_id: S1, item_code: X1, item_name: 彩色多普勒超声检查, amount: 1,
           charge_time: 2024-03-01 10:00:00}
        - {settlement_id: S2, item_code: X2, item_name: null, amount: 1,
           charge_time: 2024-03-01 10:00:00}
        - {settlement_id: S3, item_code: X3, item_name: "", amount: 1,
           charge_time: 2024-03-01 10:00:00}
        - {settlement_id: S4, item_code: null, item_name: 头孢曲松钠, amount: 1,
           charge_time: 2024-03-01 10:00:00}
    expect:
      - {settlement_id: S1, message: "S1:X1（彩色多普勒超声检查）"}
      - {settlement_id: S2, message: "S2:X2"}
      - {settlement_id: S3, message: "S3:X3"}
      - {settlement_id: S4, message: "S4:"}
  - name: no amount, no hit
    given:
      settlements:
        - {settlement_id: S1, person_id: P1, institution_id: H1}
      fee_lines:
        - {settlement_id: S1, item_code: X1, charge_time: 2024-03-01 10:00:00}
    expect: []
"""


def test_with_name_names_an_item_by_its_code_and_a_name_it_has(tmp_path):
    """with_name(code, name): code（name）, the code alone for a NULL or blank name (never
    code（）), and nothing without a code, as the CASE seven rules wrote out did (a NULL
    code made it NULL too). test_spark_conformance runs the same cases on Spark."""
    from fraudscreen.rule import load_rule
    from fraudscreen.testing import run_test

    path = tmp_path / "rule.yaml"
    path.write_text(NAMED_ITEMS, encoding="utf-8")
    rule = load_rule(path)
    for case in rule.tests:
        result = run_test(rule, case)
        assert result.passed, (case.name, result.diff)


def test_a_query_may_name_its_steps_rank_and_unite(tmp_path):
    """WITH steps, a subquery in FROM, rank() and avg() OVER a partition, UNION ALL: the
    escape hatch refused them all, so a rule comparing a person with the others at the
    same institution could not be written."""
    from fraudscreen.rule import load_rule
    from fraudscreen.testing import run_test

    path = tmp_path / "rule.yaml"
    path.write_text(STEPPED_QUERY, encoding="utf-8")
    rule = load_rule(path)
    for case in rule.tests:
        result = run_test(rule, case)
        assert result.passed, (case.name, result.diff)


@pytest.mark.parametrize("amount, compiled", [
    ("a / b", "TRY_CAST(a / b AS DECIMAL(38, 6))"),
    ("least(x, a / (b / c))",
     "LEAST(x, TRY_CAST(a / (TRY_CAST(b / c AS DECIMAL(38, 6))) AS DECIMAL(38, 6)))"),
    ("a * b - c", "a * b - c"),
])
def test_every_quotient_of_an_amount_is_a_decimal_of_six_places(amount, compiled):
    """A division at the root of amount_at_risk, or inside another, is read back as a
    decimal too (DuckDB divides decimals as doubles)."""
    assert _decimal_quotients(sqlglot.parse_one(amount, read="duckdb")).sql("duckdb") == compiled


def _window_hits(rule_id: str, settlements: list[dict], fee_lines: list[dict]) -> list:
    from fraudscreen.engine_duckdb import DuckDBEngine
    from fraudscreen.screen import screen
    from fraudscreen.testing import table

    engine = DuckDBEngine()
    try:
        found = screen({"settlements": table("settlements", settlements),
                        "fee_lines": table("fee_lines", fee_lines)},
                       RuleSet([RuleSet.load().get(rule_id)]), engine).suspicions
    finally:
        engine.close()
    return [(r["settlement_id"], r["related_settlement_ids"]) for r in found.to_dicts()]


EPOCH = dt.datetime(1970, 1, 1)


@pytest.mark.parametrize("before_edge", [
    dt.timedelta(0), dt.timedelta(microseconds=1), dt.timedelta(seconds=1),
    dt.timedelta(seconds=300), dt.timedelta(seconds=599), dt.timedelta(seconds=600),
    dt.timedelta(seconds=601), dt.timedelta(seconds=900)])
@pytest.mark.parametrize("span, hit", [(dt.timedelta(minutes=10), True),
                                       (dt.timedelta(minutes=10, microseconds=1), False)])
def test_a_burst_is_found_wherever_it_falls_on_the_time_buckets(before_edge, span, hit):
    """The window kind's band join is bucketed (601 s buckets for a 10-minute span): a
    burst must be found whether it sits in one bucket or straddles an edge, and its last
    card exactly the span after the first is still in it (found measuring Spark: joined
    on the pharmacy alone, a pharmacy's cards were all paired in one task, N²)."""
    edge = EPOCH + dt.timedelta(seconds=601 * 2_844_072)  # 2024-03-01 10:01:12
    first = edge - before_edge
    cards = [first + span * k / 4 for k in range(5)]
    settlements = [{"settlement_id": f"B{k + 1}", "person_id": f"P{k}", "institution_id": "X",
                    "medical_type": "41", "insured_region": "330100", "admit_time": when}
                   for k, when in enumerate(cards)]
    expected = [("B1", ["B2", "B3", "B4", "B5"])] if hit else []
    assert _window_hits("pharmacy_card_skimming.offsite_burst", settlements, []) == expected


@pytest.mark.parametrize("before_edge", [0, 1, 10, 28, 29, 30, 45])
@pytest.mark.parametrize("last, hit", [(29, True), (30, False)])
def test_hoarding_is_found_wherever_it_falls_on_the_day_buckets(before_edge, last, hit):
    """The same for a span of days (30-day buckets for a 30-day span): four purchases with
    29 days from first to last are one run, 30 days are not."""
    edge = EPOCH + dt.timedelta(days=30 * 659)  # 2024-02-17
    days = [0, 10, 20, last]
    times = [edge + dt.timedelta(days=d - before_edge, hours=9) for d in days]
    settlements = [{"settlement_id": f"D{k + 1}", "person_id": "A", "institution_id": "P1",
                    "medical_type": "41", "admit_time": t} for k, t in enumerate(times)]
    lines = [{"settlement_id": f"D{k + 1}", "item_code": "X", "charge_time": t, "amount": 10}
             for k, t in enumerate(times)]
    expected = [("D4", ["D1", "D2", "D3"])] if hit else []
    assert _window_hits("pharmacy_card_skimming.hoarding", settlements, lines) == expected


def test_the_window_kinds_band_joins_hold_the_time_bucket_in_their_equality():
    """Without it the join's only equality is the partition (a pharmacy, a person and
    drug): Spark pairs all the partition's rows in one task."""
    for rule in RuleSet.load().rules:
        if rule.detect.kind != "window":
            continue
        tree = sqlglot.parse_one(compile_rule(rule).sql, read="duckdb")
        ctes = {c.alias: c.this for c in tree.find_all(sqlglot.exp.CTE)}
        join = ctes["starts"].find(sqlglot.exp.Join)
        assert "e.__k = s.__b" in join.args["on"].sql("duckdb"), rule.id
        exists = ctes["members"].find(sqlglot.exp.Exists)
        assert "st.__k = ev.__b" in exists.sql("duckdb"), rule.id


def _nullable_keys_unguarded(sql: str) -> list[str]:
    """Columns an EXISTS subquery over a contract table equates with the outer row that
    may be NULL and that its WHERE does not first keep to NOT NULL."""
    from fraudscreen.contract import INPUT_TABLES

    found = []
    for exists in sqlglot.parse_one(sql, read="duckdb").find_all(sqlglot.exp.Exists):
        select = exists.this
        tables = {t.alias_or_name: t.name.removeprefix("input_")
                  for t in select.find_all(sqlglot.exp.Table)}
        where = select.args.get("where")
        guarded = {n.this.this.sql("duckdb") for n in where.find_all(sqlglot.exp.Not)
                   if isinstance(n.this, sqlglot.exp.Is)
                   and isinstance(n.this.expression, sqlglot.exp.Null)} if where else set()
        for eq in (where.find_all(sqlglot.exp.EQ) if where else ()):
            for col in (eq.this, eq.expression):
                table = INPUT_TABLES.get(tables.get(getattr(col, "table", None), ""))
                if (table and isinstance(col, sqlglot.exp.Column)
                        and any(c.name == col.name and c.nullable for c in table.columns)
                        and col.sql("duckdb") not in guarded):
                    found.append(col.sql("duckdb"))
    return found


def test_a_subquery_matching_on_a_column_that_may_be_null_keeps_it_to_not_null():
    """Spark does not infer `IS NOT NULL` for the inner side of a NOT EXISTS: matched on
    reversed_settlement_id (NULL but on reversals), a shuffle sent every settlement's NULL
    to one task (found measuring Spark). Each source and integrity count says it."""
    from fraudscreen import integrity
    from fraudscreen.sources import SOURCES

    statements = {s.name: s.sql for s in SOURCES if s.sql}
    statements |= {f"integrity {n}": c.sql for n, c in integrity.CHECKS.items()}
    assert "r.reversed_settlement_id" in _nullable_keys_unguarded(
        "SELECT 1 FROM input_settlements AS s WHERE NOT EXISTS (SELECT 1 FROM "
        "input_settlements AS r WHERE r.reversed_settlement_id = s.settlement_id)")
    for name, sql in statements.items():
        assert not _nullable_keys_unguarded(sql.replace(":filter_window", "TRUE")
                                            .replace(":window_start", "NULL")
                                            .replace(":window_end", "NULL")), name


def _elsewhere_with(folder, evidence: str, message: str | None = None) -> Rule:
    """``bed_holding.elsewhere_during_stay`` (a correlate: its columns are requalified
    for the emit step) with ``evidence`` lines added below its own."""
    rule = RuleSet.load().get("bed_holding.elsewhere_during_stay")
    text = Path(rule.path).read_text(encoding="utf-8").replace(
        "    total_amount: total_amount\n", "    total_amount: total_amount\n" + evidence, 1)
    if message:
        text = re.sub(r"  message: >-\n(    .*\n)+", f"  message: {message}\n", text, count=1)
    path = folder / "elsewhere_during_stay.yaml"
    path.write_text(text, encoding="utf-8")
    return load_rule(path)


def test_an_evidence_entry_may_name_the_entries_above_it(tmp_path):
    """Found writing readmission's 当天: without it, an entry had to repeat the
    expression of the one above (its date_diff twice). A chain resolves top-down, in
    the emit step of a kind whose columns are requalified (correlate: t.x)."""
    from fraudscreen.engine_duckdb import DuckDBEngine
    from fraudscreen.screen import screen
    from fraudscreen.testing import table

    rule = _elsewhere_with(
        tmp_path,
        "    stay_zh: CAST(admit_date AS VARCHAR) || '至' || CAST(discharge_date AS VARCHAR)\n"
        "    visits_zh: CAST(elsewhere_count AS VARCHAR) || '次，' || stay_zh\n"
        "    shout: upper(visits_zh) || '!'\n",
        message='"{shout}"')
    case = rule.tests[0]
    engine = DuckDBEngine()
    try:
        found = screen({name: table(name, rows) for name, rows in case.given.items()}
                       | {"fee_lines": table("fee_lines", [])},
                       RuleSet([rule]), engine).suspicions
    finally:
        engine.close()
    assert found["message"].to_list() == ["2次，2024-03-01至2024-03-10!"]
    assert '"visits_zh":"2次，2024-03-01至2024-03-10"' in found["evidence"][0]


def test_an_evidence_entry_named_below_is_refused_where_it_is_named(tmp_path):
    with pytest.raises(RuleError, match=r"evidence 'later' is written below 'first'.*move "
                                        r"'later' up") as err:
        compile_rule(_elsewhere_with(tmp_path, "    first: later || 'x'\n    later: 'y'\n"))
    assert re.search(r"elsewhere_during_stay\.yaml:\d+:\d+", str(err.value))


def test_an_evidence_name_that_is_a_column_of_the_hit_reads_the_column(tmp_path):
    """An entry may be named like a column of the hit (hoarding's ``item_name:
    bought_as``); naming it below reads the column, as SQL would, not the entry."""
    rule = _elsewhere_with(tmp_path, "    fund_zh: CAST(fund_amount AS VARCHAR) || '元'\n")
    text = Path(rule.path).read_text(encoding="utf-8").replace(
        "    fund_amount: fund_amount\n", "    fund_amount: total_amount\n", 1)
    Path(rule.path).write_text(text, encoding="utf-8")
    sql = compile_rule(load_rule(Path(rule.path))).sql_for("duckdb", pretty=False)
    assert "CAST(fund_amount AS TEXT) || '元' AS \"ev__fund_zh\"" in sql, sql


def test_an_evidence_entry_named_inside_a_subquery_is_refused(tmp_path):
    """Written in place there, the entry's own columns would be read from the
    subquery's table: ``c.item_code = code`` with ``code: item_code`` would compare the
    catalog's codes with themselves and name every hit by the catalog's greatest name."""
    rule = _elsewhere_with(
        tmp_path, "    code: institution_id\n    named: (SELECT max(i.name) FROM institutions"
                  " AS i WHERE i.institution_id = code)\n")
    with pytest.raises(RuleError, match=r"evidence 'code' is named inside a subquery"
                                        ) as err:
        compile_rule(rule)
    line = next(n for n, text in enumerate(Path(rule.path).read_text().splitlines(), 1)
                if "named:" in text)
    assert f"elsewhere_during_stay.yaml:{line}:" in str(err.value)


def test_a_subquery_in_emit_reads_the_hits_columns_as_hit(tmp_path):
    """``hit.institution_id`` inside a subquery is the hit's, where the subquery's table
    has a column of that name: each hit is named by its own institution, not by one
    name for all (the unqualified name would be refused there)."""
    from fraudscreen.engine_duckdb import DuckDBEngine
    from fraudscreen.screen import screen
    from fraudscreen.testing import table

    rule = _elsewhere_with(tmp_path, "    named: (SELECT max(i.name) FROM institutions AS i"
                                     " WHERE i.institution_id = hit.institution_id)\n")
    given = rule.tests[0].given
    other = [{**row, "settlement_id": row["settlement_id"] + "b", "person_id": "P2",
              "institution_id": {"H1": "H4"}.get(row["institution_id"],
                                                 row["institution_id"])}
             for row in given["settlements"]]
    engine = DuckDBEngine()
    try:
        found = screen({"settlements": table("settlements", given["settlements"] + other),
                        "fee_lines": table("fee_lines", []),
                        "institutions": table("institutions", [
                            {"institution_id": "H1", "name": "甲医院"},
                            {"institution_id": "H4", "name": "乙医院"}])},
                       RuleSet([rule]), engine).suspicions
    finally:
        engine.close()
    named = {r["institution_id"]: json.loads(r["evidence"])["named"]
             for r in found.to_dicts()}
    assert named == {"H1": "甲医院", "H4": "乙医院"}
