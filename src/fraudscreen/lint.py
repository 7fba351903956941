"""``fraudscreen rules lint``: problems a rule can have that still let it load.

Each check has a code and a severity, like a linter's registry, so a site's CI can
gate on errors and read warnings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import sqlglot
from sqlglot import exp
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify

from fraudscreen import sources
from fraudscreen.compiler import compile_rule
from fraudscreen.contract import FAMILIES
from fraudscreen.expressions import parse, start
from fraudscreen.rule import Rule, RuleError, location
from fraudscreen.testing import missing_cases

_PARAM = re.compile(r":([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str  # error | warning | info
    rule_id: str
    message: str
    where: str = ""

    def __str__(self) -> str:
        at = f"{self.where}: " if self.where else ""
        return f"{at}{self.code} [{self.severity}] {self.rule_id}: {self.message}"


CHECKS = {
    "FS001": ("warning", "no references: name the legal basis and the 专项整治 plan"),
    "FS002": ("error", "tests must include a case with a hit and a case with no hit"),
    "FS003": ("warning", "parameter declared but never used"),
    "FS004": ("error", "rule does not compile"),
    "FS005": ("info", "a new family without family_title: the leads and the report show "
                      "its id; give its Chinese name (e.g. family_title: 超量开药)"),
    "FS006": ("warning", "amount_basis missing: say how amount_at_risk is computed"),
    "FS007": ("warning", "scope not kept together by the detection: a nightly store could "
                         "drift from one run"),
    "FS008": ("warning", "suspicions name neither an institution nor a person, so no lead "
                         "holds them (leads roll up per institution and per person)"),
    "FS009": ("warning", "a person id is emitted where the public profile cannot find it: it "
                         "pseudonymises the person_id field's ids wherever they appear whole; "
                         "emit person_id as it is, and never inside text or a sum"),
    "FS010": ("warning", "a parameter's value holds full-width quotes (“08”): it is compared "
                         "as written, quotes included, so it likely matches nothing"),
    "FS011": ("error", "a text value compared with a number, date or time cannot be read as "
                       "one"),
    "FS012": ("warning", "a join ties its sides by no equality of a column of each, so every "
                         "row meets every row and each pair is a hit"),
    "FS013": ("warning", "a window's span parameter allows a value below 1 (declare min: 1): "
                         "a site that sets it so fails the rule at run time, not where the "
                         "value is given"),
}

# Columns that keep one hit's rows within one person (institution): the entity's own id,
# or a settlement's, since a settlement belongs to one person and one institution.
_SCOPE_KEYS = {"person": {"person_id", "settlement_id"},
               "institution": {"institution_id", "settlement_id"}}


# Typed by a Chinese input method for quotes; a value never holds them (a name may hold
# full-width parentheses or commas: 人血白蛋白（20%）).
_FULL_WIDTH = set("“”‘’")


def _finding(code: str, rule: Rule, detail: str = "", *path) -> Finding:
    severity, text = CHECKS[code]
    return Finding(code, severity, rule.id, f"{text}{': ' + detail if detail else ''}",
                   rule.where(*path))


def lint(rule: Rule) -> list[Finding]:
    found: list[Finding] = []
    if not rule.references:
        found.append(_finding("FS001", rule, "", "references"))
    missing = missing_cases(rule)
    if missing:
        found.append(_finding("FS002", rule, missing, "tests"))
    text = rule.model_dump_json(include={"detect", "emit"}, by_alias=True)
    used = set(_PARAM.findall(text))
    for name, param in rule.params.items():
        if name not in used:
            found.append(_finding("FS003", rule, name, "params", name))
        try:
            param.coerce(param.default)
        except ValueError:  # refused, in quotes or not: FS004 says why
            continue
        values = param.default if isinstance(param.default, list) else [param.default]
        if any(isinstance(v, str) and set(v) & _FULL_WIDTH for v in values):
            found.append(_finding("FS010", rule, f"{name} = {param.default!r}",
                                  "params", name, "default"))
    try:
        compiled = compile_rule(rule)
    except RuleError as err:  # shown where the error is, not at the rule's first line
        finding = _finding("FS004", rule, err.message.removeprefix(f"rule {rule.id}: "))
        found.append(replace(finding, where=err.where or finding.where))
    else:
        bind_error = _binds(compiled.sql)
        if bind_error:
            found.append(_finding("FS004", rule, bind_error, "detect"))
        found += _unreadable_literals(rule, compiled.sql)
        if not any(getattr(rule.emit, n) is not None or n in compiled.hit_columns
                   for n in ("institution_id", "person_id")):
            found.append(_finding("FS008", rule, "emit institution_id or person_id", "emit"))
    if rule.family not in FAMILIES and not rule.family_title:
        found.append(_finding("FS005", rule, rule.family, "family"))
    if not rule.amount_basis:
        found.append(_finding("FS006", rule))
    scope = _scope_problem(rule)
    if scope:
        found.append(_finding("FS007", rule, scope, "scope"))
    for path in _hidden_person_ids(rule):
        found.append(_finding("FS009", rule, ".".join(path), *path))
    for unit, name in _unbounded_spans(rule):
        found.append(_finding("FS013", rule, f"{name} (span {unit})", "params", name))
    for detail, offset in _untied_joins(rule):
        path = ("detect", "with", "on") if offset is None else ("detect", "sql")
        found.append(replace(_finding("FS012", rule, detail, *path), where=location(
            rule.path, *rule.position(*path, within=(getattr(rule.detect, "sql", ""), offset)))))
    return found


def _unbounded_spans(rule: Rule) -> list[tuple[str, str]]:
    """(unit, parameter) of a window span bound to a parameter whose ``min`` is not ≥ 1."""
    span = getattr(rule.detect, "span", None)
    given = span.model_dump(exclude_none=True).items() if span else ()
    named = [(unit, value[1:]) for unit, value in given
             if isinstance(value, str) and value.startswith(":")]
    return [(unit, name) for unit, name in named if name in rule.params
            and (rule.params[name].min is None or rule.params[name].min < 1)]


def _untied_joins(rule: Rule) -> list[tuple[str, int | None]]:
    """Joins of a query whose sides no equality of a column of each side ties (a comma
    join without one in WHERE, an ON without one), and a correlate with an empty
    ``with.on``: what is wrong and its offset in the SQL. An explicit CROSS JOIN is meant
    (a one-row aggregate beside each row)."""
    det = rule.detect
    if det.kind == "correlate":
        return [] if det.with_.on else [(
            "with.on is empty: tie each row to its matches, with.on: [person_id]", None)]
    if det.kind != "query":
        return []
    try:
        tree = parse(det.sql)
    except Exception:  # compile reports it (FS004)
        return []
    found = []
    for select in tree.find_all(exp.Select):
        first = select.args.get("from_")
        seen = {first.this.alias_or_name} if first else set()
        where = select.args.get("where")
        for join in select.args.get("joins") or []:
            side = join.this.alias_or_name
            conditions = [c for c in (join.args.get("on"), where and where.this) if c]
            if not (join.args.get("kind") == "CROSS" or join.args.get("using") or any(
                    _ties(eq, side, seen) for c in conditions for eq in c.find_all(exp.EQ))):
                other = min(seen, default="other")
                found.append((f"{join.this.sql('duckdb')}: tie it to {other} with ON "
                              f"{side}.x = {other}.x (a column both hold), or write CROSS JOIN "
                              "if one side is a single row", start(join.this)))
            seen.add(side)
    return found


def _ties(eq: exp.EQ, side: str, others: set[str]) -> bool:
    """Whether ``eq`` sets a column of ``side`` equal to one of ``others`` (a bare column
    could be either)."""
    left, right = ({c.table for c in s.find_all(exp.Column)} for s in (eq.this, eq.expression))
    return any(a and b and (side in a or "" in a) and (b & others or "" in b)
               for a, b in ((left, right), (right, left)))


def _hidden_person_ids(rule: Rule) -> list[tuple[str, ...]]:
    """Emit fields that carry a person id the public profile would miss: the person_id
    field itself set to something else (the ids elsewhere are then in no mapping), or a
    person id worked into another value (concat, a sum, a cast)."""
    e = rule.emit
    fields = {("emit", n): getattr(e, n) for n in (
        "settlement_id", "institution_id", "item_code", "related_settlement_ids",
        "period_start", "period_end", "amount_at_risk")}
    fields.update({("emit", "evidence", n): v for n, v in e.evidence.items()})
    replaced = e.person_id is not None and e.person_id.strip() != "person_id"
    hidden = []
    for path, text in fields.items():
        if text is None or text.startswith(":"):
            continue
        try:
            tree = parse(text)
        except Exception:  # compile reports it (FS004)
            continue
        bare = isinstance(tree, exp.Column) and path[1] == "evidence" and not replaced
        if not bare and any(c.name == "person_id" for c in tree.find_all(exp.Column)):
            hidden.append(path)
    return hidden


def _binds(sql: str) -> str:
    """Why DuckDB cannot bind the rule's statement over the contract's (empty) tables —
    a type mismatch such as ``amount > item_code`` — or ''. Run-time conversions
    (``CAST(item_name AS DECIMAL)``) only fail on data."""
    try:
        sources.describe(sql)
    except ValueError as err:
        return str(err)
    return ""


_TYPED = (*exp.DataType.NUMERIC_TYPES, *exp.DataType.TEMPORAL_TYPES)


def _unreadable_literals(rule: Rule, sql: str) -> list[Finding]:
    """Text compared with a number, date or time that cannot be read as one
    (``price_cap > '0x'``, ``charge_date >= '2024-13-01'``): DuckDB converts it only when
    a row reaches it, so binding over empty tables passes it, and the rule would fail on
    the night's data."""
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
        tree = annotate_types(qualify(tree, schema=sources.types(), dialect="duckdb",
                                      validate_qualify_columns=False),
                              schema=sources.types(), dialect="duckdb")
    except sqlglot.errors.SqlglotError:
        return []  # the bind check above speaks for a statement sqlglot cannot type
    found: dict[str, Finding] = {}  # by place: the compiled SQL may read a literal twice

    def unreadable(text: exp.Literal, kind: str, column: str = "") -> None:
        if sources.converts(text.this, kind):
            return
        where = _place(rule, text, column)
        found.setdefault(where, replace(_finding(
            "FS011", rule, f"{text.sql('duckdb')} cannot be read as {kind}"
            f"{f' (compared with {column})' if column else ''}, so the rule would fail on "
            "the first row that reaches it: write dates YYYY-MM-DD, times YYYY-MM-DD "
            "HH:MM:SS, numbers without separators"), where=where))

    for node in tree.find_all(exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE,
                              exp.Between, exp.In):
        sides = [node.this, *(node.expressions if isinstance(node, exp.In) else
                              (node.args.get("low"), node.args.get("high"))
                              if isinstance(node, exp.Between) else (node.expression,))]
        # A column's own type only: sqlglot types `a - b` of dates as a date, DuckDB not.
        typed = [s for s in sides if isinstance(s, exp.Column) and s.type
                 and s.type.is_type(*_TYPED)]
        for text in (s for s in sides if isinstance(s, exp.Literal) and s.is_string):
            for column in typed:
                unreadable(text, column.type.sql("duckdb"), column.name)
    for cast in tree.find_all(exp.Cast):  # DATE '2024-02-30', CAST('1,000' AS DECIMAL)
        if isinstance(cast.this, exp.Literal) and cast.this.is_string and \
                cast.to.is_type(*_TYPED):
            unreadable(cast.this, cast.to.sql("duckdb"))
    return list(found.values())


def _place(rule: Rule, literal: exp.Literal, column: str) -> str:
    """Where a literal is written in the detection or emit (the one after its column,
    when it is written more than once), or as a parameter's value."""
    written, spots = literal.sql("duckdb"), []
    for path, scalar in rule.scalars.items():
        if path[0] not in ("detect", "emit"):
            continue
        for found in re.finditer(re.escape(written), scalar.value):
            spot = scalar.find(scalar.value, found.start() + 1)
            before = scalar.value[max(0, found.start() - 80):found.start()]
            if spot is not None:
                spots.append((not re.search(rf"(?<!\w){re.escape(column)}(?!\w)", before),
                              spot))
    if spots:
        return location(rule.path, *min(spots)[1])
    for path, scalar in rule.scalars.items():
        if path[0] == "params" and scalar.value == literal.this:
            return location(rule.path, scalar.line, scalar.col)
    return rule.where("detect")


def _scope_problem(rule: Rule) -> str:
    """Why the detection may not keep a hit within one person (institution), or ''.

    Only what can be read off the rule is checked: the columns a hit's rows share (the
    grouping, the partition, the correlation's join). A filter's hit is one row; a query
    cannot be read, so it is reported.
    """
    if rule.scope == "global" or rule.detect.kind == "filter":
        return ""
    det = rule.detect
    if det.kind == "query":
        return f"a query rule cannot be checked for scope {rule.scope}; prefer global"
    shared, field = {
        "aggregate": (getattr(det, "group_by", None), "group_by"),
        "period_change": (getattr(det, "group_by", None), "group_by"),
        "sequence": (getattr(det, "partition_by", None), "partition_by"),
        "window": (getattr(det, "partition_by", None), "partition_by"),
        "correlate": (getattr(getattr(det, "with_", None), "on", None), "with.on"),
    }[det.kind]
    wanted = _SCOPE_KEYS[rule.scope]
    if set(shared or ()) & wanted:
        return ""
    return (f"scope {rule.scope}, but {field} {list(shared or [])} names none of "
            f"{sorted(wanted)}")
