"""Inline rule tests: given tables, expected suspicions, a readable diff.

A test names only the columns that matter to it; the rest take the defaults
below, so a readmission test is a few lines of YAML. Each test runs its rule
alone on a fresh engine, exactly as ``run`` would.
"""

from __future__ import annotations

import datetime as dt
import difflib
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import polars as pl

from fraudscreen.compiler import default_run_params, resolve_params
from fraudscreen.contract import INPUT_TABLES, ColumnType
from fraudscreen.rule import Rule, RuleError, RuleTest
from fraudscreen.ruleset import RuleSet
from fraudscreen.screen import make_engine, screen

DEFAULTS: dict[str, dict[str, Any]] = {
    "settlements": {"insurance_type": "310", "medical_type": "11",
                    "insured_region": "350902", "visit_region": "350902",
                    "fund_amount": 0},
    "fee_lines": {"fee_category": "09", "quantity": 1, "unit_price": 0, "amount": 0},
    "persons": {"gender": "1", "birth_date": dt.date(1970, 1, 1), "insured_region": "350902"},
    "institutions": {"kind": "hospital", "region": "350902", "name": ""},
    "catalog": {"fee_category": "09"},
    "item_pairs": {"relation": "exclusive"},
    "watchlist": {"list_name": "test"},
}


def missing_cases(rule: Rule) -> str:
    """What a rule's tests lack of the standard, a case with a hit and one without, and
    how to add it; or ''. Without both, its tests pass whatever the rule finds."""
    if not rule.tests:
        return ("no tests: add a case the rule should flag (expect: the suspicions it "
                "finds) and one it should not (expect: [])")
    if not any(t.expect for t in rule.tests):
        return ("no test expects a hit, so the tests pass even if the rule finds nothing: add "
                "a case the rule should flag, with the suspicions it finds under expect")
    if all(t.expect for t in rule.tests):
        return ("no test expects no hit, so the tests pass even if the rule flags everything: "
                "add a case the rule should not flag, with expect: []")
    return ""


def _value(value: Any, ctype: ColumnType) -> Any:
    if value is None:
        return None
    if ctype in (ColumnType.MONEY, ColumnType.QUANTITY):
        return Decimal(str(value))
    if ctype is ColumnType.TIMESTAMP and isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    if ctype is ColumnType.TIMESTAMP and type(value) is dt.date:
        return dt.datetime.combine(value, dt.time())
    if ctype is ColumnType.DATE and isinstance(value, str):
        return dt.date.fromisoformat(value)
    if ctype is ColumnType.STRING:
        return str(value)
    return value


def _given(name: str, rows: list[dict[str, Any]]) -> pl.DataFrame:
    if name not in INPUT_TABLES:
        close = difflib.get_close_matches(name, list(INPUT_TABLES), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"no table {name!r}{hint}")
    try:
        return table(name, rows)
    except (ArithmeticError, TypeError) as err:
        raise ValueError(f"{name}: a value cannot be read as its column's type ({err!r})"
                         ) from None


def table(name: str, rows: list[dict[str, Any]]) -> pl.DataFrame:
    """A contract-typed frame from test rows, defaults filled in."""
    spec = INPUT_TABLES[name]
    filled = []
    for i, row in enumerate(rows):
        unknown = sorted(set(row) - set(spec.column_names))
        if unknown:
            close = difflib.get_close_matches(unknown[0], spec.column_names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{name} row {i + 1} has no column "
                             f"{', '.join(map(repr, unknown))}{hint}")
        full = {**DEFAULTS.get(name, {}), **row}
        if name == "settlements":
            full.setdefault("settle_time", full.get("discharge_time") or full.get("admit_time"))
            full.setdefault("total_amount", full["fund_amount"])  # the fund pays part of it
        if name == "fee_lines":
            full.setdefault("line_id", f"L{i + 1}")
            full.setdefault("item_name", full.get("item_code"))
        if name == "catalog":
            full.setdefault("item_name", full.get("item_code"))
        filled.append({c.name: _value(full.get(c.name), c.type) for c in spec.columns})
    schema = {c.name: c.type.polars for c in spec.columns}
    return pl.DataFrame(filled, schema=schema, orient="row")


@dataclass
class TestResult:
    rule: Rule
    test: RuleTest
    passed: bool
    diff: list[str]


def run_test(rule: Rule, test: RuleTest, engine: str = "duckdb") -> TestResult:
    index = next((i for i, t in enumerate(rule.tests) if t is test), None)
    try:
        tables = {name: _given(name, rows) for name, rows in test.given.items()}
    except (ValueError, ArithmeticError, TypeError) as err:  # the test's data, not the rule
        where = rule.where("tests", index, "given")
        return TestResult(rule, test, False, [f"{where + ': ' if where else ''}given: {err}"])
    try:  # the test's params, refused where the test gives them
        resolve_params(rule, test.params, default_run_params(), ("tests", index, "params"))
    except RuleError as err:
        return TestResult(rule, test, False, [str(err)])
    for required in ("settlements", "fee_lines"):
        tables.setdefault(required, table(required, []))
    ruleset = RuleSet([rule], {rule.id: test.params} if test.params else {})
    eng = make_engine(engine)
    try:
        result = screen(tables, ruleset, eng)
    finally:
        eng.close()
    outcome = result.outcomes[0]
    if outcome.status != "ran":
        return TestResult(rule, test, False, [f"rule {outcome.status}: {outcome.reason}"])
    actual = result.suspicions.to_dicts()
    return TestResult(rule, test, *_compare(test, actual))


def _compare(test: RuleTest, actual: list[dict]) -> tuple[bool, list[str]]:
    """Match expected to actual suspicions on the fields each expectation gives."""
    diff, left = [], list(actual)
    for exp in test.expect:
        want = exp.model_dump(exclude_none=True)
        match = next((a for a in left if all(_same(a.get(k), v) for k, v in want.items())),
                     None)
        if match is None:
            diff.append(f"- expected {_shown(want)}")
        else:
            left.remove(match)
    for a in left:
        shown = {k: a[k] for k in ("settlement_id", "person_id", "institution_id", "item_code",
                                   "related_settlement_ids", "period_start", "period_end",
                                   "amount_at_risk")
                 if a.get(k) not in (None, [])}
        diff.append(f"+ unexpected {_shown(shown)}  ({a['message']})")
    return not diff, diff


def _shown(fields: dict[str, Any]) -> str:
    """Fields as a test writes them (YAML flow style), not as Python reprs."""
    def text(v: Any) -> str:
        return f"[{', '.join(map(text, v))}]" if isinstance(v, list) else str(v)
    return "{" + ", ".join(f"{k}: {text(v)}" for k, v in fields.items()) + "}"


def _same(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, Decimal):
        return actual is not None and Decimal(actual) == wanted
    if isinstance(wanted, list):
        return sorted(actual or []) == sorted(wanted)
    return actual == wanted
