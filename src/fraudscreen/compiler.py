"""Rule → one set-based SQL statement (DuckDB dialect; sqlglot transpiles it).

Every detection compiles to the same pipeline of CTEs:

    src   the source rows, lookups joined, ``where`` applied
    ...   the kind's own steps (group, lag, band join, month join …)
    hits  one row per hit
    →     the emit SELECT: contract fields, amount_at_risk, evidence columns

User text only enters through ``fraudscreen.expressions`` (parsed, checked against
the scope of that place in the pipeline, parameters bound as literal nodes) and
is regenerated from its syntax tree. The finished statement is parsed once more
and every table it names must be a rule source or one of its own CTEs.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp

from fraudscreen import expressions as ex
from fraudscreen import sources
from fraudscreen.dialects import for_engine
from fraudscreen.rule import (
    Aggregate,
    Correlate,
    Filter,
    PeriodChange,
    Query,
    Rule,
    RuleError,
    Sequence,
    Window,
)

OUTPUT_FIELDS = ("settlement_id", "person_id", "institution_id", "item_code",
                 "period_start", "period_end")
SKIPPED = "__skipped"  # column of the hits: groups a ``skip`` left unjudged
# Columns the window and period_change kinds give a hit beside its source's and measures.
WINDOW_COLUMNS = frozenset({"member_seq", "member_count", "related_settlement_ids",
                            "first_time", "last_time"})
MONTH_COLUMNS = frozenset({"period_start", "period_end", "value", "previous_value",
                           "increase", "previous_start"})
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass
class CompiledRule:
    rule: Rule
    params: dict[str, Any]
    sql: str
    needs: set[str]
    evidence: list[str]
    # With a ``skip``: each hit row carries the count in SKIPPED; this query counts
    # it when there is no hit.
    skip_sql: str | None = None
    hit_columns: list[str] = field(default_factory=list)

    def sql_for(self, dialect: str = "duckdb", pretty: bool = True) -> str:
        """The statement for an engine's dialect; a construct it cannot express is a
        RuleError naming this rule — never a wrong answer."""
        return self._for_engine(self.sql, dialect, pretty)

    def skip_sql_for(self, dialect: str) -> str:
        """The ``skip`` count's own statement for an engine's dialect (as ``sql_for``)."""
        return self._for_engine(self.skip_sql, dialect, pretty=False)

    def _for_engine(self, statement: str, dialect: str, pretty: bool) -> str:
        try:
            sql = transpile(statement, dialect, pretty)
        except sqlglot.errors.UnsupportedError as err:
            raise self.rule.error(f"cannot be expressed in {dialect}: {err}") from None
        try:  # what the engine runs is checked, not only what was compiled
            _assert_reads_sources(sql, dialect)
        except ValueError as err:
            raise self.rule.error(f"refused: {err}") from None
        return sql


def transpile(sql: str, dialect: str, pretty: bool = True) -> str:
    """DuckDB SQL for another engine, with fraudscreen's dialect corrections."""
    if dialect == "duckdb":
        return sqlglot.transpile(sql, read="duckdb", write="duckdb", pretty=pretty)[0]
    return sqlglot.transpile(sql, read="duckdb", write=for_engine(dialect), pretty=pretty,
                             unsupported_level=sqlglot.ErrorLevel.RAISE)[0]


def _q(name: str) -> str:
    """A quoted identifier for a name the compiler already checked."""
    return exp.to_identifier(name, quoted=True).sql("duckdb")


def _cols(names: list[str] | tuple[str, ...], alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + _q(n) for n in names)


def _join_on(left: str, right: str, names: list[str] | tuple[str, ...]) -> str:
    return " AND ".join(f"{left}.{_q(n)} = {right}.{_q(n)}" for n in names) or "TRUE"


def resolve_params(rule: Rule, overrides: dict[str, Any], run: dict[str, Any],
                   written: tuple = ("params",)) -> dict[str, Any]:
    """Declared defaults, then overrides, each coerced to its declared type. ``written``:
    where the rule file holds the overrides (a test's params), for an error to point at."""
    values: dict[str, Any] = {}
    for name in overrides:
        if name not in rule.params:
            known = set(rule.params)
            raise rule.error(f"unknown parameter {name!r}{ex.suggest(name, known)}",
                             *written, name)
    for name, param in rule.params.items():
        raw = overrides.get(name, param.default)
        try:
            values[name] = param.coerce(raw)
        except ValueError as err:
            raise rule.error(f"parameter {name}: {err}",
                             *(written if name in overrides else ("params",)), name) from None
    values.update(run)
    return values


def default_run_params() -> dict[str, Any]:
    """Run parameters for compiling without data (``compile``, docs)."""
    return {"window_start": dt.date(2000, 1, 1), "window_end": dt.date(2099, 12, 31),
            "filter_window": False, "data_start": dt.date(2000, 1, 1)}


class _Compiler:
    def __init__(self, rule: Rule, values: dict[str, Any]):
        self.rule = rule
        self.values = values
        self.params = set(values)
        self.catalog = sources.columns()
        self.needs: set[str] = set()
        self.ctes: list[tuple[str, str]] = []
        # What the kind adds for the emit stage: extra qualifiers (``prev``) and what
        # they are rewritten to (``_requalify``).
        self.extra_scope: dict[str, set[str]] = {}
        self.requalified: dict[str, str] = {}
        self.skip_count: str | None = None  # the query counting what a ``skip`` left out
        # The source's attached columns, when they are joined after the kind's own step.
        self.late: sources.Attached | None = None
        # Names the rule gives values of its own (see ``ex.Scope.named``).
        det = rule.detect
        self.named = (set(getattr(det, "lookups", {})) | set(getattr(det, "measures", {}))
                      | set(rule.emit.evidence))

    # -- expressions -----------------------------------------------------------------

    def expr(self, text: str, path: tuple, columns: dict[str, set[str]],
             aggregates: bool = False,
             rewrite: Callable[[exp.Expression], exp.Expression] | None = None,
             money: bool = False, rows: bool = False) -> str:
        tree = self.tree(text, path, columns, aggregates, rows)
        if rewrite:
            tree = tree.transform(rewrite)
        if money:
            tree = _decimal_quotients(tree)
        return tree.sql("duckdb")

    def tree(self, text: str, path: tuple, columns: dict[str, set[str]],
             aggregates: bool = False, rows: bool = False,
             earlier: dict[str, exp.Expression] | None = None) -> exp.Expression:
        """``text`` parsed, checked against ``columns`` and with its parameters bound.

        ``earlier``: evidence entries above this one, by name; a column of that name
        (unqualified, and not a column of ``columns``) stands for the entry's expression.
        """
        earlier = earlier or {}
        scope = ex.Scope(columns={**columns, "": columns.get("", set()) | set(earlier)},
                         tables={k: set(v) for k, v in self.catalog.items()},
                         params=self.params, aggregates=aggregates, rows=rows,
                         named=self.named)
        try:
            tree = ex.check(ex.parse(text), scope)
            tree = _inline(ex.bind(tree, self.values), earlier)
        except ex.ExpressionError as err:
            raise self.rule.error(f"{'.'.join(map(str, path))}: {err}", *path,
                                  within=(text, err.offset(text))) from None
        for table in tree.find_all(exp.Table):
            self.needs.update(sources.BY_NAME[table.name].needs)
        return tree

    def source(self, name: str, path: tuple) -> set[str]:
        if name not in self.catalog:
            raise self.rule.error(
                f"unknown source {name!r}{ex.suggest(name, set(self.catalog))}"
                f" (sources: {', '.join(sorted(self.catalog))})", *path)
        self.needs.update(sources.BY_NAME[name].needs)
        return set(self.catalog[name])

    def names(self, names: list[str], available: set[str], path: tuple) -> None:
        for i, n in enumerate(names):
            if n not in available:
                raise self.rule.error(f"unknown column {n!r}{ex.suggest(n, available)}",
                                      *path, i)

    # -- stages ----------------------------------------------------------------------

    def src(self, det) -> set[str]:
        """CTE ``src``: source rows with lookups joined and ``where`` applied."""
        base = ("detect",)
        cols = self.source(det.source, base + ("source",))
        # A sequence, window or period change reading the rows around the window reads
        # its lookups around it too; a rule over a source with no context reads the
        # window's only.
        around = (isinstance(det, (Sequence, Window, PeriodChange))
                  and self._around(det.source) != det.source)
        joins, picked = [], []
        for name, lk in det.lookups.items():
            path = base + ("lookups", name)
            self.not_ours(name, "lookup", path)
            if name.casefold() in {c.casefold() for c in cols}:  # SQL ignores letter case
                raise self.rule.error(f"lookup {name!r} hides a source column", *path)
            lk_cols = self.source(lk.source, path + ("source",))
            self.names(lk.on, cols & lk_cols, path + ("on",))
            value = self.expr(lk.value, path + ("value",), {"": lk_cols}, aggregates=True)
            where = (f" WHERE {self.expr(lk.where, path + ('where',), {'': lk_cols})}"
                     if lk.where else "")
            alias = _q(f"lk_{name}")
            joins.append(
                f" LEFT JOIN (SELECT {_cols(lk.on)}, {value} AS {_q(name)}"
                f" FROM {_q(self._around(lk.source) if around else lk.source)}{where}"
                f" GROUP BY {_cols(lk.on)}) AS {alias} ON {_join_on('s', alias, lk.on)}")
            picked.append(f", {alias}.{_q(name)}")
        cols = cols | set(det.lookups)
        self.late = _late_join(det)
        rows = self.late.rows if self.late else det.source
        if around:  # _judged keeps the flagged rows to the window's
            rows = self._around(det.source)
        inner = f"SELECT s.*{''.join(picked)} FROM {_q(rows)} AS s{''.join(joins)}"
        where = (f" WHERE {self.expr(det.where, base + ('where',), {'': cols}, rows=True)}"
                 if det.where else "")
        self.ctes.append(("src", f"SELECT * FROM ({inner}) AS j{where}"))
        return cols

    def filter(self, det: Filter, cols: set[str]) -> set[str]:
        hits = self.late.join("src", self.late.columns) if self.late else "SELECT * FROM src"
        self.ctes.append(("hits", hits))
        return cols

    def not_ours(self, name: str, what: str, path: tuple) -> None:
        """Refuse a name the rule gives a column of its own (a lookup, a measure) that
        holds ``__``, as the compiler's own columns do (a window's ``__run``, a sequence's
        ``prev__amount``): beside one of them, either could be read as the other."""
        if "__" in name:
            raise self.rule.error(f"{what} {name!r} holds '__', as the compiler's own columns "
                                  f"do (__run, prev__amount …): rename the {what}", *path)

    def measures_apart(self, det: Aggregate | Correlate | Window | PeriodChange,
                       row: set[str], what: str) -> None:
        """Refuse a measure named like a column of the ``row`` it is set beside (``what``
        says which row), or like another measure: the hit would have two columns of one
        name, which DuckDB reads as the first (the column, silently: the measure is lost)
        and Spark refuses as ambiguous. SQL names ignore letter case, so neither may
        ``Amount`` beside ``amount``."""
        taken = {c.casefold(): (c, f"a column of {what}") for c in row}
        for n in det.measures:
            self.not_ours(n, "measure", ("detect", "measures", n))
            if n.casefold() in taken:
                name, of = taken[n.casefold()]
                spelt = "" if name == n else f" ({name!r}: SQL names ignore letter case)"
                raise self.rule.error(f"measure {n!r} is already {of}{spelt}: rename the "
                                      "measure (two columns of one name: DuckDB would read "
                                      "the wrong one, Spark refuse the name as ambiguous)",
                                      "detect", "measures", n)
            taken[n.casefold()] = (n, "another measure's name")

    def grouped_measures(self, det: Aggregate | PeriodChange, cols: set[str]) -> list[str]:
        """``det.measures`` as select items of its grouping by ``det.group_by``."""
        p = ("detect",)
        measures = [self.expr(m, p + ("measures", n), {"": cols}, aggregates=True, rows=True)
                    + f" AS {_q(n)}" for n, m in det.measures.items()]
        for n, m in det.measures.items():
            self.aggregated(m, f"measure {n!r}", ("detect", "measures", n), "group_by",
                            det.group_by)
        return measures

    def aggregated(self, text: str, what: str, path: tuple, field: str | None,
                   keys: list[str]) -> None:
        """Refuse an aggregate expression (a measure, a month's value) reading a column
        outside any aggregate, save the ``keys`` its rows are grouped by (the rule's
        ``field``, if it names them): DuckDB's binder would refuse the statement, at no
        line of the rule file."""
        loose = ex.outside_aggregates(ex.parse(text)) - set(keys)
        if loose:
            name = sorted(loose)[0]
            raise self.rule.error(
                f"{what} uses {name} outside an aggregate: a group has many rows; write "
                f"e.g. min({name}) or sum({name})"
                + (f", or add {name} to {field}" if field else ""), *path)

    def aggregate(self, det: Aggregate, cols: set[str]) -> set[str]:
        p = ("detect",)
        self.names(det.group_by, cols, p + ("group_by",))
        self.measures_apart(det, set(det.group_by), "the group (group_by)")
        measures = self.grouped_measures(det, cols)
        keys = [k for k in det.group_by if not (self.late and k in self.late.columns)]
        rows = _min_group_rows(det)
        if rows > 1 and not det.skip:
            # Most groups have one row (e.g. fee lines that are not repeats): find the
            # few with enough rows on a hash of the keys first, then aggregate only those.
            # A hash collision only lets an extra group through to the real grouping.
            # The candidates read src's rows afresh (its body, not its name): DuckDB
            # materialises a CTE named twice, and a copy of 20 M fee lines spills past
            # the memory limit, which costs more than scanning them twice.
            key = f"hash({_cols(keys)})"
            self.ctes.append(("cand", f"SELECT {key} AS __h FROM ({dict(self.ctes)['src']})"
                                      f" AS c GROUP BY {key} HAVING count(*) >= {rows}"))
            self.ctes.append(("src_c", f"SELECT * FROM src WHERE {key} IN"
                                       " (SELECT __h FROM cand)"))
        source = "src_c" if rows > 1 and not det.skip else "src"
        grouped = (f"SELECT {_cols(keys)}, {', '.join(measures)} FROM {source}"
                   f" GROUP BY {_cols(keys)}")
        if self.late:  # the attached group keys, from the key they depend on
            self.ctes.append(("agg_rows", grouped))
            grouped = self.late.join("agg_rows", [k for k in det.group_by if k not in keys])
        self.ctes.append(("agg", grouped))
        out = set(det.group_by) | set(det.measures)
        having = self.expr(det.having, p + ("having",), {"": out})
        judged = "TRUE"
        if det.skip:
            skip = self.expr(det.skip.when, p + ("skip", "when"), {"": out})
            judged = f"NOT coalesce({skip}, FALSE)"
            self.names(det.skip.count, set(det.group_by), p + ("skip", "count"))
            self.skip_count = (f"SELECT count(*) FROM (SELECT DISTINCT {_cols(det.skip.count)}"
                               f" FROM agg WHERE {skip}) AS s" if det.skip.count
                               else f"SELECT count(*) FROM agg WHERE {skip}")
        self.ctes.append(("hits", f"SELECT * FROM agg WHERE {judged} AND ({having})"))
        return out

    def sequence(self, det: Sequence, cols: set[str]) -> set[str]:
        p = ("detect",)
        self.names(det.partition_by, cols, p + ("partition_by",))
        self.names(det.order_by, cols, p + ("order_by",))
        over = f"OVER (PARTITION BY {_cols(det.partition_by)} ORDER BY {_cols(det.order_by)})"
        lagged = sorted(({"settlement_id"} & cols) | self._prev_columns(det) & cols)
        lags = "".join(f", LAG({_q(c)}) {over} AS {_q('prev__' + c)}" for c in lagged)
        self.ctes.append(("seq", f"SELECT src.*, LAG(TRUE) {over} AS __has_prev{lags}"
                                 f" FROM src"))
        self.requalified = {"prev": "prev__"}
        match = self.expr(det.match, p + ("match",), {"": cols, "prev": cols},
                          rewrite=_requalify(self.requalified), rows=True)
        related = ("[prev__settlement_id]" if "settlement_id" in cols
                   else "CAST([] AS VARCHAR[])")
        self.ctes.append(("hits", f"SELECT *, {related} AS related_settlement_ids FROM seq"
                                  f" WHERE __has_prev{self._judged(det, 'seq')} AND ({match})"))
        self.extra_scope = {"prev": cols}
        return cols | {"prev__" + c for c in cols} | {"related_settlement_ids"}

    def _around(self, source: str) -> str:
        """The relation a kind reads the rows it judges others by from: under a
        --from/--to window the source's context, when it has one (``Source.context``)."""
        context = sources.BY_NAME[source].context
        return context if context and self.values.get("filter_window") else source

    def _judged(self, det, rows: str) -> str:
        """The condition keeping ``rows`` (read from the source's context) to those of the
        windowed source: the rows a rule may flag."""
        if self._around(det.source) == det.source:
            return ""
        key = sources.BY_NAME[det.source].key
        return (f" AND EXISTS (SELECT 1 FROM {_q(det.source)} AS w"
                f" WHERE {_join_on('w', rows, key)})")

    def _prev_columns(self, det: Sequence) -> set[str]:
        """Columns read as ``prev.x`` anywhere in the rule: only those are lagged."""
        e = self.rule.emit
        texts = [det.match, e.amount_at_risk, *e.evidence.values(),
                 *(getattr(e, f) for f in (*OUTPUT_FIELDS, "related_settlement_ids"))]
        used: set[str] = set()
        for text in filter(None, texts):
            try:
                used |= ex.columns_used(ex.parse(text), "prev")
            except ex.ExpressionError:
                pass  # reported where the expression is compiled
        return used

    def correlate(self, det: Correlate, cols: set[str]) -> set[str]:
        p = ("detect",)
        key = list(sources.BY_NAME[det.source].key)
        if not key:
            raise self.rule.error(f"source {det.source!r} has no key to correlate from", *p)
        other = det.with_
        o_cols = self.source(other.source, p + ("with", "source"))
        self.names(other.on, cols & o_cols, p + ("with", "on"))
        o_where = (f" WHERE {self.expr(other.where, p + ('with', 'where'), {'': o_cols})}"
                   if other.where else "")
        # the other side may be outside the window
        self.ctes.append(("oth", f"SELECT * FROM {_q(self._around(other.source))}{o_where}"))
        self.measures_apart(det, cols | {"related_settlement_ids"},
                            f"the hit (the {det.source} row, its lookups, "
                            "related_settlement_ids)")
        scope = {"": cols, "this": cols, "other": o_cols}
        rw = _requalify({"this": "t.", "other": "o.", "": "t."})
        match = self.expr(det.match, p + ("match",), scope, rewrite=rw, rows=True)
        measures = "".join(
            ", " + self.expr(m, p + ("measures", n), scope, aggregates=True, rewrite=rw,
                             rows=True) + f" AS {_q(n)}" for n, m in det.measures.items())
        for n, m in det.measures.items():  # over a row's matches
            self.aggregated(m, f"measure {n!r}", p + ("measures", n), None, key)
        self.ctes.append((
            "m",
            f"SELECT {_cols(key, 't')}, list_sort(list(DISTINCT o.settlement_id))"
            f" AS related_settlement_ids{measures}"
            # The match goes in WHERE, not ON: the same for an inner join, and Spark
            # refuses a correlated subquery reading both sides of a join condition.
            f" FROM src AS t JOIN oth AS o ON {_join_on('t', 'o', other.on)} WHERE ({match})"
            f" GROUP BY {_cols(key, 't')}"))
        picked = "".join(f", m.{_q(n)}" for n in det.measures)
        self.ctes.append(("hits", f"SELECT src.*, m.related_settlement_ids{picked}"
                                  f" FROM src JOIN m ON {_join_on('src', 'm', key)}"))
        return cols | set(det.measures) | {"related_settlement_ids"}

    def window(self, det: Window, cols: set[str]) -> set[str]:
        p = ("detect",)
        self.names(det.partition_by, cols, p + ("partition_by",))
        self.names([det.time], cols, p + ("time",))
        self.measures_apart(det, cols | WINDOW_COLUMNS,
                            f"the hit (the {det.source} row, its lookups, first_time, "
                            "member_seq …)")
        key = list(sources.BY_NAME[det.source].key)
        t, width, length = self._span(det)
        part = det.partition_by
        # Members are ordered by their real time (ties by key); spans are measured on __t.
        order = ", ".join([_q(det.time)] + [_q(k) for k in key])
        # The band joins below pair rows at most `width` apart on __t. Joined on the
        # partition alone, every row of a partition meets every other (a pharmacy's year
        # of cards, N² pairs, in one task on Spark). __b cuts the time axis into buckets
        # wider than the span, so a row's partners are in its own bucket or the next: the
        # join's equality holds the bucket too, and each pair is still found exactly once.
        bucket = width + 1
        self.ctes.append(("ev", f"SELECT e.*, CAST(floor(e.__t / {bucket}) AS BIGINT) AS __b"
                                f" FROM (SELECT src.*, {t} AS __t FROM src) AS e"))
        having = self.expr(det.having, p + ("having",), {"": cols}, aggregates=True,
                           rewrite=_requalify({"": "e."}), rows=True)
        self.ctes.append((  # each row under its own bucket and the one before
            "ev_k", "SELECT ev.*, k.__k FROM ev, unnest([ev.__b, ev.__b - 1]) AS k(__k)"))
        self.ctes.append((
            "starts",
            f"SELECT DISTINCT {_cols(part)}, __start, __sb FROM (SELECT {_cols(part, 's')},"
            f" s.__t AS __start, s.__b AS __sb FROM ev AS s JOIN ev_k AS e"
            f" ON {_join_on('s', 'e', part)} AND e.__k = s.__b"
            f" AND e.__t BETWEEN s.__t AND s.__t + {width}"
            f" GROUP BY {_cols(list(dict.fromkeys(part + key)), 's')}, s.__t, s.__b"
            f" HAVING {having}) AS w"))
        self.ctes.append((  # each start under its own bucket and the next
            "starts_k", "SELECT starts.*, k.__k FROM starts,"
                        " unnest([starts.__sb, starts.__sb + 1]) AS k(__k)"))
        self.ctes.append((
            "members",
            f"SELECT ev.* FROM ev WHERE EXISTS (SELECT 1 FROM starts_k AS st WHERE"
            f" {_join_on('st', 'ev', part)} AND st.__k = ev.__b AND ev.__t BETWEEN st.__start"
            f" AND st.__start + {width})"))
        by_part = f"PARTITION BY {_cols(part)} ORDER BY {order}"
        # A member starts a new run when a window cannot hold it and the one before (a
        # gap wider than the span), or when it is not closer than the window to the one
        # before and the window opening there is no burst: a burst is never cut in two.
        self.ctes.append((
            "runs",
            f"SELECT g.*, sum(CASE WHEN g.__gap > {width} OR (g.__gap >= {length} AND NOT"
            f" g.__opens) THEN 1 ELSE 0 END) OVER ({by_part}"
            f" ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS __run FROM"
            f" (SELECT p.*, st.__start IS NOT NULL AS __opens FROM (SELECT members.*,"
            f" __t - LAG(__t) OVER ({by_part}) AS __gap, LAG(__t) OVER ({by_part}) AS __prev"
            f" FROM members) AS p LEFT JOIN starts AS st ON {_join_on('p', 'st', part)}"
            f" AND st.__start = p.__prev) AS g"))
        # The anchor's settlement: the other members' settlements are its related ones
        # (a settlement with several member rows, e.g. fee lines, is named once).
        anchor_order = order if det.anchor == "first" else ", ".join(
            f"{c} DESC" for c in [_q(det.time)] + [_q(k) for k in key])
        self.ctes.append((
            "seqd",
            f"SELECT runs.*, row_number() OVER (PARTITION BY {_cols(part)}, __run ORDER BY"
            f" {order}) AS member_seq, count(*) OVER (PARTITION BY {_cols(part)}, __run)"
            f" AS member_count, first_value(settlement_id) OVER (PARTITION BY {_cols(part)},"
            f" __run ORDER BY {anchor_order}) AS __anchor_settlement FROM runs"))
        anchor = "1" if det.anchor == "first" else "member_count"  # seqd's own column
        scope = {"": cols | {"member_seq", "member_count"}}
        for n, m in det.measures.items():  # over a run's members, by partition
            self.aggregated(m, f"measure {n!r}", p + ("measures", n), "partition_by", part)
        measures = "".join(
            ", " + self.expr(m, p + ("measures", n), scope, aggregates=True, rows=True)
            + f" AS {_q(n)}"
            for n, m in det.measures.items())
        self.ctes.append((
            "agg",
            f"SELECT {_cols(part)}, __run, coalesce(list_sort(list(DISTINCT settlement_id)"
            f" FILTER (WHERE settlement_id <> __anchor_settlement)), CAST([] AS VARCHAR[]))"
            f" AS related_settlement_ids,"
            f" min({_q(det.time)}) AS first_time, max({_q(det.time)}) AS last_time{measures}"
            f" FROM seqd GROUP BY {_cols(part)}, __run"))
        picked = "".join(f", agg.{_q(n)}" for n in det.measures)
        self.ctes.append((
            "hits",
            f"SELECT seqd.*, agg.related_settlement_ids, agg.first_time, agg.last_time{picked}"
            f" FROM seqd JOIN agg ON {_join_on('seqd', 'agg', part)}"
            f" AND seqd.__run = agg.__run WHERE seqd.member_seq = {anchor}"
            f"{self._judged(det, 'seqd')}"))
        return cols | set(det.measures) | WINDOW_COLUMNS

    def _span(self, det: Window) -> tuple[str, int, int]:
        """The numeric time axis, the inclusive width of the span on it (a span of N
        days holds dates at most N - 1 apart, of N minutes times at most N minutes apart),
        and its length: members at least that far apart are not "closer than the window"
        and start a new run (unless one burst window holds both)."""
        given = {k: v for k, v in det.span.model_dump().items() if v is not None}
        if len(given) != 1:
            raise self.rule.error("span takes exactly one of minutes, hours, days",
                                  "detect", "span")
        unit, raw = next(iter(given.items()))
        if isinstance(raw, str) and raw.startswith(":"):
            if raw[1:] not in self.values:
                raise self.rule.error(f"unknown parameter {raw}", "detect", "span", unit)
            raw = self.values[raw[1:]]
        try:
            n = int(raw)
        except (TypeError, ValueError):
            raise self.rule.error(f"span {unit}: {raw!r} is not a whole number", "detect",
                                  "span", unit) from None
        if n < 1:
            raise self.rule.error("span must be at least 1", "detect", "span", unit)
        time = _q(det.time)
        if unit == "days":
            return f"date_diff('day', DATE '1970-01-01', CAST({time} AS DATE))", n - 1, n
        seconds = n * (60 if unit == "minutes" else 3600)
        return f"epoch(CAST({time} AS TIMESTAMP))", seconds, seconds

    def period_change(self, det: PeriodChange, cols: set[str]) -> set[str]:
        p = ("detect",)
        self.names(det.group_by, cols, p + ("group_by",))
        self.names([det.time], cols, p + ("time",))
        value = self.expr(det.value, p + ("value",), {"": cols}, aggregates=True, rows=True)
        self.aggregated(det.value, "value", p + ("value",), "group_by", det.group_by)
        self.measures_apart(det, MONTH_COLUMNS | set(det.group_by),
                            "the month (group_by, period_start, value …)")
        measures = "".join(f", {m}" for m in self.grouped_measures(det, cols))
        month = f"CAST(date_trunc('month', {_q(det.time)}) AS DATE)"
        self.ctes.append(("per", f"SELECT {_cols(det.group_by)}, {month} AS period_start,"
                                 f" {value} AS value{measures} FROM src"
                                 f" GROUP BY {_cols(det.group_by)}, {month}"))
        self.ctes.append((
            "pc",
            "SELECT c.*, coalesce(p.value, 0) AS previous_value,"
            " c.value - coalesce(p.value, 0) AS increase,"
            " CAST(c.period_start - INTERVAL 1 MONTH AS DATE) AS previous_start,"
            " CAST(c.period_start + INTERVAL 1 MONTH - INTERVAL 1 DAY AS DATE) AS period_end"
            f" FROM per AS c LEFT JOIN per AS p ON {_join_on('c', 'p', det.group_by)}"
            " AND p.period_start = CAST(c.period_start - INTERVAL 1 MONTH AS DATE)"))
        out = set(det.group_by) | MONTH_COLUMNS | set(det.measures)
        having = self.expr(det.having, p + ("having",), {"": out})
        first = ex.literal(self._first_month(det)).sql("duckdb")
        judged = ""
        if self._around(det.source) != det.source:
            start, end = (ex.literal(self.values[k]).sql("duckdb")
                          for k in ("window_start", "window_end"))
            judged = f" AND period_start BETWEEN {start} AND {end}"
        self.ctes.append(("hits", f"SELECT * FROM pc WHERE previous_start >= {first}"
                                  f"{judged} AND ({having})"))
        return out

    def _first_month(self, det: PeriodChange) -> dt.date:
        """The first month a period change may compare against (its month m-1).

        The spec: not before the month of the earliest fee line in the data, even when
        the data starts in mid-month. Under a --from/--to window a source with a context
        sums whole months from all the data, and a month is judged in the window that
        holds its first day: windows one after another judge each month once, as one run
        does. A source without one sums the window's rows only, and a month a --from cut
        short would pass for a month's billing (¥1 against ¥30,000): then the first month
        compared against is the window's first whole one.
        """
        start, data_start = self.values["window_start"], self.values["data_start"]
        if self._around(det.source) != det.source or start <= data_start:
            return data_start.replace(day=1)
        first = start.replace(day=1)
        return first if start.day == 1 else (first + dt.timedelta(days=31)).replace(day=1)

    def query(self, det: Query) -> set[str]:
        scope = ex.Scope(columns={}, tables={k: set(v) for k, v in self.catalog.items()},
                         params=self.params, aggregates=True,
                         reserved={"hits", *sources.BY_NAME})  # internal relations too
        try:
            tree = ex.parse(det.sql)
            if not isinstance(tree, (exp.Select, exp.Union)):
                raise ex.ExpressionError("the query kind takes one SELECT statement")
            tree = ex.bind(ex.check(tree, scope, statement=True), self.values)
        except ex.ExpressionError as err:
            raise self.rule.error(f"detect.sql: {err}", "detect", "sql",
                                  within=(det.sql, err.offset(det.sql))) from None
        for table in tree.find_all(exp.Table):
            if table.name in sources.BY_NAME:  # not one of the query's own WITH steps
                self.needs.update(sources.BY_NAME[table.name].needs)
        sql = tree.sql("duckdb")
        self.ctes.append(("hits", sql))
        try:
            columns = sources.describe(sql)
        except ValueError as err:  # DuckDB's binder: an ambiguous column, types that clash
            raise self.rule.error(f"detect.sql: {err}", "detect", "sql") from None
        spellings: dict[str, set[str]] = {}
        for c in columns:
            spellings.setdefault(c.casefold(), set()).add(c)
        twice = sorted(c for names in spellings.values() if len(names) > 1 for c in names)
        if twice:  # emit would read one of them by either name (found in review)
            raise self.rule.error(f"detect.sql: columns {', '.join(map(repr, twice))} differ "
                                  "only in letter case, which SQL does not tell apart",
                                  "detect", "sql")
        return set(columns)

    # -- emit ------------------------------------------------------------------------

    def emit(self, hit_cols: set[str]) -> tuple[str, list[str]]:
        e = self.rule.emit
        # ``hit.x``: the hit's column where a subquery's table has an ``x`` of its own.
        scope = {"": hit_cols, "hit": hit_cols, **self.extra_scope}
        rw = _requalify({**self.requalified, "hit": "hits."})

        def field(name: str, cast: str) -> str:
            text = getattr(e, name)
            if text is None:
                return f"CAST({_q(name) if name in hit_cols else 'NULL'} AS {cast})"
            return f"CAST({self.expr(text, ('emit', name), scope, rewrite=rw)} AS {cast})"

        selects = [f"{field(n, 'DATE' if n.startswith('period') else 'VARCHAR')} AS {_q(n)}"
                   for n in OUTPUT_FIELDS]
        related = field("related_settlement_ids", "VARCHAR[]")
        if e.related_settlement_ids is None and "related_settlement_ids" not in hit_cols:
            related = "CAST([] AS VARCHAR[])"
        selects.append(f"coalesce({related}, CAST([] AS VARCHAR[])) AS related_settlement_ids")
        amount = self.expr(e.amount_at_risk, ("emit", "amount_at_risk"), scope, rewrite=rw,
                           money=True)
        # Any other number (an integer, a double from a function) becomes a decimal before
        # it is rounded half away from zero at the fen.
        selects.append(f"CAST(round(greatest(CAST({amount} AS DECIMAL(38,10)), 0), 2)"
                       " AS DECIMAL(16,2)) AS amount_at_risk")
        earlier: dict[str, exp.Expression] = {}  # an entry may name those above it
        for name, text in e.evidence.items():
            path = ("emit", "evidence", name)
            below = [n for n in e.evidence if n not in earlier and n != name
                     and n not in hit_cols]
            self._above(text, path, below, name)
            tree = self.tree(text, path, scope, earlier=earlier)
            if name not in hit_cols:  # else the name reads the hit's column
                earlier[name] = tree
            ev = tree.transform(rw).sql("duckdb")
            selects.append(f"{ev} AS {_q('ev__' + name)}")
        known = set(OUTPUT_FIELDS) | set(e.evidence) | {"amount_at_risk"}
        # A Chinese input method's braces would be kept as text: ｛amount｝ printed as is.
        wide = re.search(r"｛(\w*)[}｝]|\{(\w*)｝|[｛｝]", e.message)
        if wide:
            at = wide.start() if wide[0][0] == "｛" else wide.end() - 1
            raise self.rule.error(
                f"full-width {e.message[at]!r} in the message: type the placeholder's braces "
                f"half-width, {{{wide[1] or wide[2] or 'person_id'}}} (switch the input "
                "method to half-width, 半角)", "emit", "message", within=(e.message, at))
        # A brace with no partner is printed as it stands: {amt元 shows no amount.
        lone = re.search(r"[{}]", re.sub(r"\{[^{}]*\}", lambda m: " " * len(m[0]), e.message))
        if lone:
            raise self.rule.error(
                f"a {lone[0]!r} without its {'}' if lone[0] == '{' else '{'!r} in the message: "
                "a placeholder is a name in braces, {amount}", "emit", "message",
                within=(e.message, lone.start()))
        for odd in re.findall(r"\{([^{}]*)\}", e.message):
            if not _PLACEHOLDER.fullmatch(f"{{{odd}}}"):
                raise self.rule.error(
                    f"message placeholder {{{odd}}} is not a name: write an output field or "
                    f"an evidence name in braces, e.g. {{person_id}}"
                    f"{ex.suggest(odd.strip(), known)}", "emit", "message")
        for name in _PLACEHOLDER.findall(e.message):
            if name not in known:
                raise self.rule.error(
                    f"message placeholder {{{name}}} is neither an output field nor evidence"
                    f"{ex.suggest(name, known)}", "emit", "message")
        for i, name in enumerate(e.key):
            if name not in known:
                raise self.rule.error(f"key {name!r} is neither an output field nor evidence"
                                      f"{ex.suggest(name, known)}", "emit", "key", i)
        return ", ".join(selects), list(e.evidence)

    def _above(self, text: str, path: tuple, below: list[str], name: str) -> None:
        """An evidence entry names only entries above it (no cycles, read top-down)."""
        try:
            named = {c.name for c in ex.parse(text).find_all(exp.Column) if not c.table}
        except ex.ExpressionError:
            return  # ``tree`` reports it, with its position
        for later in below:
            if later in named:
                raise self.rule.error(
                    f"{'.'.join(path)}: evidence {later!r} is written below {name!r}; an "
                    f"evidence entry may name only the entries above it: move {later!r} "
                    "up", *path)

    def build(self) -> CompiledRule:
        det = self.rule.detect
        if isinstance(det, Query):
            hit_cols = self.query(det)
        else:
            cols = self.src(det)
            kind = {Filter: self.filter, Aggregate: self.aggregate, Sequence: self.sequence,
                    Correlate: self.correlate, Window: self.window,
                    PeriodChange: self.period_change}[type(det)]
            hit_cols = kind(det, cols)
        select, evidence = self.emit(hit_cols)
        skip_sql = None
        if self.skip_count:
            # Counted in the hits' own query (one pass over the source, not two); the
            # count alone is needed only when there is no hit to carry it.
            select += f", ({self.skip_count}) AS {SKIPPED}"
            skip_sql = _with([c for c in self.ctes if c[0] != "hits"], self.skip_count)
        sql = _with(self.ctes, f"SELECT {select} FROM hits")
        _assert_reads_sources(sql)
        return CompiledRule(self.rule, self.values, sql, self.needs, evidence, skip_sql,
                            sorted(hit_cols))


def _late_join(det) -> sources.Attached | None:
    """The source's attached columns, when the detection may join them after its own
    step: it filters, or groups by their key, and reads none of them before that (in
    ``where``, a lookup's ``on`` or a measure). Any expression that does not parse keeps
    the plain plan (its error is reported where it is compiled)."""
    att = sources.BY_NAME[det.source].attached
    if att is None or not isinstance(det, (Filter, Aggregate)):
        return None
    if isinstance(det, Aggregate) and att.key not in det.group_by:
        return None
    used = {c for lk in det.lookups.values() for c in lk.on}
    texts = [det.where, *(det.measures.values() if isinstance(det, Aggregate) else ())]
    for text in filter(None, texts):
        try:
            used |= {c.name for c in ex.parse(text).find_all(exp.Column)}
        except ex.ExpressionError:
            return None
    return None if used & set(att.columns) else att


def _min_group_rows(det: Aggregate) -> int:
    """The row count a group needs to be a hit, when ``having`` demands one.

    Recognises ``m >= N`` / ``m > N`` (as a top-level AND term) on a measure that is
    exactly ``count(*)``; otherwise 0 (no shortcut).
    """
    counts = {n for n, m in det.measures.items()
              if ex.parse(m).sql("duckdb").lower() == "count(*)"}
    try:
        having = ex.parse(det.having)
    except ex.ExpressionError:
        return 0
    terms = having.flatten() if isinstance(having, exp.And) else [having]
    best = 0
    for term in terms:
        if (isinstance(term, (exp.GTE, exp.GT)) and isinstance(term.this, exp.Column)
                and term.this.name in counts and not term.this.table
                and isinstance(term.expression, exp.Literal) and term.expression.is_int):
            best = max(best, int(term.expression.name) + isinstance(term, exp.GT))
    return best


def _with(ctes: list[tuple[str, str]], final: str) -> str:
    return "WITH " + ", ".join(f"{n} AS ({body})" for n, body in ctes) + " " + final


def _decimal_quotients(tree: exp.Expression) -> exp.Expression:
    """Each quotient of an amount as a decimal of 6 places, as Spark divides decimals.

    DuckDB divides decimals as doubles: 3 x ¥700,634.42 / 4 is 525,475.81499999… there,
    which rounded at the fen is .81 where exact arithmetic gives .82. Read back at 6
    places (rounding the double's last bits away) the quotient is 525,475.815000 on both
    engines, and the amount is then rounded once to the fen. A division by zero gives
    NULL on both (DuckDB's infinity cannot be a decimal), which least() passes over.
    """
    for quotient in reversed(list(tree.find_all(exp.Div))):  # the innermost first
        decimal = exp.TryCast(this=quotient.copy(), to=exp.DataType.build("DECIMAL(38, 6)"))
        if quotient is tree:  # the root, found first, comes last
            return decimal
        quotient.replace(decimal)
    return tree


def _inline(tree: exp.Expression, earlier: dict[str, exp.Expression]) -> exp.Expression:
    """Each unqualified column named in ``earlier`` replaced by that expression.

    Not inside a subquery: there the expression's own columns would be read from the
    subquery's tables (``c.item_code = code`` would compare the catalog with itself).
    """
    for column in list(tree.find_all(exp.Column)):
        if column.table or column.name not in earlier:
            continue
        if column.find_ancestor(exp.Select) is not None:
            raise ex.ExpressionError(
                f"evidence {column.name!r} is named inside a subquery, where its own "
                "columns would be read from the subquery's tables: write the subquery "
                "with the hit's columns themselves", ex.start(column))
        replacement = exp.paren(earlier[column.name].copy())
        if column is tree:
            return replacement
        column.replace(replacement)
    return tree


def _requalify(mapping: dict[str, str]) -> Callable[[exp.Expression], exp.Expression]:
    """Rewrite columns by qualifier: ``prev.x`` → ``prev__x``, ``other.x`` → ``o.x`` …

    Unqualified columns inside a subquery belong to the subquery and are left alone.
    """

    def rewrite(node: exp.Expression) -> exp.Expression:
        if not isinstance(node, exp.Column) or node.table not in mapping:
            return node
        if node.table == "" and node.find_ancestor(exp.Select) is not None:
            return node
        target = mapping[node.table]
        if target.endswith("."):
            return exp.column(node.name, table=target[:-1], quoted=True)
        return exp.column(target + node.name, quoted=True)

    return rewrite


def _assert_reads_sources(sql: str, dialect: str = "duckdb") -> None:
    """Defence in depth: the finished statement reads only sources and its own steps
    (the compiler's and a query rule's, checked where they were compiled), and calls no
    table function. A ValueError says what it reads."""
    tree = sqlglot.parse_one(sql, read=for_engine(dialect))
    allowed = set(sources.BY_NAME) | {cte.alias for cte in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        if table.name not in allowed or table.args.get("db") or not isinstance(
                table.this, exp.Identifier):
            raise ValueError(f"the compiled SQL reads {table.sql(for_engine(dialect))!r}")


def compile_rule(rule: Rule, overrides: dict[str, Any] | None = None,
                 run: dict[str, Any] | None = None) -> CompiledRule:
    values = resolve_params(rule, overrides or {}, run or default_run_params())
    try:
        return _Compiler(rule, values).build()
    except RuleError:
        raise
    except (sqlglot.errors.SqlglotError, ValueError) as err:
        # What the checks above let through and the SQL then refuses: a failed rule,
        # named, never a crash of the run that holds it.
        raise rule.error(f"cannot be compiled: {str(err).splitlines()[0]}") from None
    except RecursionError:
        raise rule.error("cannot be compiled: an expression is nested too deeply") from None
