"""What a night re-screens, and how: the part of ``fraudscreen nightly`` that decides
how little may be screened again and runs it (see ``Rule.scope`` and docs/nightly.md).

A night's screening is either *full* (every rule over all the data) or *scoped*: rules
over all the data only where they must be (global scope, a kind whose every member was
touched, a rule that depends on the analysis window), person rules over the persons the
night's rows touched and institution rules over the institutions they touched, each with
the window of all the data. A hit rests only on its person's (institution's) rows, so
these give exactly what a full screening gives for them; ``Scope.judged`` says which
stored suspicions the night judged afresh.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import duckdb
import polars as pl

from fraudscreen import store, suspicion
from fraudscreen.compiler import compile_rule
from fraudscreen.contract import INPUT_TABLES
from fraudscreen.ingest import StagedTable
from fraudscreen.rule import Rule
from fraudscreen.ruleset import RuleSet
from fraudscreen.runner import ScreenOptions
from fraudscreen.screen import RuleOutcome, Screening, make_engine, screen


def all_tables(con: duckdb.DuckDBPyConnection, view: duckdb.DuckDBPyConnection,
               new: dict[str, StagedTable]) -> dict[str, store.StoredTable]:
    """Every present table: what the store holds and the night's new rows, read in place
    on ``view``, the cursor the screening runs on."""
    present = set(store.present_tables(con)) | set(new)
    return {name: store.StoredTable(name, view, new.get(name)) for name, table
            in INPUT_TABLES.items() if name in present or table.required}


def _screen(tables: dict[str, store.StoredTable], ruleset: RuleSet, opts: ScreenOptions,
            view: duckdb.DuckDBPyConnection, reversed_ids: list[str],
            data_window: tuple[dt.date, dt.date] | None = None,
            on_rule: Callable[[RuleOutcome], None] | None = None) -> Screening:
    """Screen on ``view`` (DuckDB: it spills where the night set its connection to) or on
    Spark, which gets the tables as frames."""
    options = ({"memory_limit": opts.memory_limit, "threads": opts.threads,
                "spill_limit": opts.spill_limit, "connection": view}
               if opts.engine == "duckdb" else {})
    engine = make_engine(opts.engine, **options)
    try:
        return screen(tables, ruleset, engine, None, None, opts.watchlists, on_rule,
                      data_window=data_window, quarantined_reversals=reversed_ids,
                      rule_timeout=opts.rule_timeout or None)
    finally:
        engine.close()


# Tables whose new rows may change any hit: a night that brings them re-screens everything.
# A second, restricted pass costs its own shared sources: it pays only when the touched
# persons (institutions) hold a small share of the settlements. Measured on the sample
# (benchmarks/nightly.py): at ~30 % it was slower than one full pass, at ~3 % faster.
RESTRICT_BELOW = 0.25
SHARED_TABLES = ("institutions", "catalog", "item_pairs", "watchlist")
AFFECTED = {"person": "nightly_affected_persons", "institution": "nightly_affected_institutions"}


@dataclass
class Scope:
    """What a night re-screens. ``full``: every rule over all the data. Otherwise global
    rules over all the data, person rules over the persons the new data touched and
    institution rules over the institutions it touched (see ``Rule.scope``)."""

    full: bool
    persons: set[str] = field(default_factory=set)
    institutions: set[str] = field(default_factory=set)
    # Kinds whose touched entities hold RESTRICT_BELOW or more of the settlements: their
    # rules run with the global ones, over all the data.
    whole_kinds: set[str] = field(default_factory=set)

    def plan(self, ruleset: RuleSet) -> dict[str, str]:
        """Each rule's id → what it runs over tonight: "all" the data, or the touched
        "person"s or "institution"s."""
        return {r.id: "all" if (self.full or r.scope == "global" or r.scope in self.whole_kinds
                                or uses_window(r, ruleset.overrides.get(r.id))) else r.scope
                for r in ruleset.rules}

    def judged(self, over: str, row: dict) -> bool:
        """Whether a stored suspicion of a rule that ran ``over`` (see ``plan``) was
        judged afresh tonight."""
        if over == "all":
            return True
        if over == "person":
            return row["person_id"] in self.persons
        return row["institution_id"] in self.institutions

    def doc(self) -> dict:
        return {"full": self.full, "persons": len(self.persons),
                "institutions": len(self.institutions), "whole": sorted(self.whole_kinds)}


def touched(con: duckdb.DuckDBPyConnection, view: duckdb.DuckDBPyConnection,
            tables: dict[str, store.StoredTable], new: dict[str, StagedTable],
            reversed_tonight: list[str] = ()) -> Scope:
    """The persons and institutions whose data the night's new rows add to or reverse
    (``reversed_tonight``: settlements the night's quarantined reversal rows name)."""
    if any(name in new for name in SHARED_TABLES):
        return Scope(full=True)
    settlements = []
    if reversed_tonight:
        view.register("nightly_quarantined_reversals", pl.DataFrame(
            {"settlement_id": list(reversed_tonight)}, schema={"settlement_id": pl.String}))
        settlements.append("SELECT settlement_id FROM nightly_quarantined_reversals")
    if "settlements" in new:
        rows = new["settlements"].sql()
        settlements += [f"SELECT settlement_id FROM ({rows})",
                        f"SELECT reversed_settlement_id FROM ({rows}) "
                        "WHERE reversed_settlement_id IS NOT NULL"]
    if "fee_lines" in new:
        settlements.append(f"SELECT settlement_id FROM ({new['fee_lines'].sql()})")
    hit = (f"SELECT * FROM ({tables['settlements'].sql()}) SEMI JOIN "
           f"({' UNION '.join(settlements)}) AS t(settlement_id) USING (settlement_id)"
           if settlements else None)
    persons = [f"SELECT person_id FROM ({hit})"] if hit else []
    institutions = [f"SELECT institution_id FROM ({hit})"] if hit else []
    if "persons" in new:
        persons.append(f"SELECT person_id FROM ({new['persons'].sql()})")
    if "purchases" in new:
        institutions.append(f"SELECT institution_id FROM ({new['purchases'].sql()})")
    found, whole_kinds = {}, set()
    for kind, parts in (("person", persons), ("institution", institutions)):
        column = f"{kind}_id"
        body = " UNION ".join(parts) or f"SELECT CAST(NULL AS VARCHAR) AS {column} WHERE false"
        view.execute(f"CREATE OR REPLACE TABLE memory.main.{AFFECTED[kind]} AS "
                     f"SELECT DISTINCT {column} FROM ({body}) WHERE {column} IS NOT NULL")
        found[kind] = {r[0] for r in view.sql(
            f"SELECT {column} FROM memory.main.{AFFECTED[kind]}").fetchall()}
        share = view.sql(
            f"SELECT count(*) FILTER (WHERE {column} IN (SELECT {column} FROM "
            f"memory.main.{AFFECTED[kind]})) / greatest(count(*), 1) "
            f"FROM ({tables['settlements'].sql()})").fetchall()[0][0]
        if share >= RESTRICT_BELOW:
            whole_kinds.add(kind)
    return Scope(full=False, persons=found["person"], institutions=found["institution"],
                 whole_kinds=whole_kinds)


def uses_window(rule: Rule, overrides: dict | None) -> bool:
    """Whether a rule's hits depend on the analysis window of all the data (a stock
    balance over the whole period, months counted from its start): then a day that
    lengthens the window changes hits of every institution, and the rule runs over
    all the data. Found by compiling it for two windows."""
    sql = [compile_rule(rule, overrides, {"window_start": start, "window_end": end,
                                           "filter_window": False, "data_start": start}).sql
           for start, end in ((dt.date(2000, 1, 1), dt.date(2000, 12, 31)),
                              (dt.date(2001, 2, 2), dt.date(2001, 11, 30)))]
    return sql[0] != sql[1]


@dataclass(frozen=True)
class Kept:
    """A table of a restricted re-screen, copied once into the screening's memory (every
    rule scans it; filtering the store again for each would cost more than the copy)."""

    name: str
    con: duckdb.DuckDBPyConnection
    relation: str  # memory.main.<name>

    def sql(self) -> str:
        return f"SELECT * FROM {self.relation}"

    def frame(self) -> pl.DataFrame:
        return self.con.sql(self.sql()).pl()


def restricted(view: duckdb.DuckDBPyConnection, tables: dict[str, store.StoredTable],
               kind: str) -> dict[str, store.StoredTable | Kept]:
    """The tables as a re-screen of the touched persons (or institutions) sees them: their
    settlements, those settlements' fee lines (and the institutions' purchases)."""
    column, affected = f"{kind}_id", f"memory.main.{AFFECTED[kind]}"
    keep = f"{column} IN (SELECT {column} FROM {affected})"
    out: dict[str, store.StoredTable | Kept] = dict(tables)
    settlements = replace(tables["settlements"], where=keep)
    parts = {"settlements": settlements,
             "fee_lines": replace(tables["fee_lines"], where=(
                 f"settlement_id IN (SELECT settlement_id FROM ({settlements.sql()}))"))}
    if kind == "institution" and "purchases" in tables:
        parts["purchases"] = replace(tables["purchases"], where=keep)
    for name, table in parts.items():
        relation = f"memory.main.nightly_{kind}_{name}"
        view.execute(f"CREATE OR REPLACE TABLE {relation} AS {table.sql()}")
        out[name] = Kept(name, view, relation)
    return out


def screen_night(con: duckdb.DuckDBPyConnection, tables: dict[str, store.StoredTable],
                 ruleset: RuleSet, opts: ScreenOptions, plan: dict[str, str],
                 reversed_ids: list[str],
                 on_rule: Callable[[RuleOutcome], None] | None = None) -> Screening:
    """The night's screening (``plan``: ``Scope.plan``): the rules that run over all the
    data first, then person and institution rules over what the night touched, with the
    same window. ``reversed_ids``: the settlements quarantined reversal rows name, on
    any night so far. ``on_rule``: told as each rule is done (progress)."""
    by_kind = {kind: [r for r in ruleset.rules if plan[r.id] == kind]
               for kind in ("all", "person", "institution")}
    whole = _screen(tables, RuleSet(by_kind["all"], ruleset.overrides, ruleset.titles), opts,
                    con.cursor(), reversed_ids, on_rule=on_rule)
    parts = [whole]
    for kind in ("person", "institution"):
        if by_kind[kind]:
            parts.append(_screen(restricted(con.cursor(), tables, kind),
                                 RuleSet(by_kind[kind], ruleset.overrides, ruleset.titles), opts,
                                 con.cursor(), reversed_ids, data_window=whole.window,
                                 on_rule=on_rule))
    outcomes = {o.rule.id: o for part in parts for o in part.outcomes}
    return Screening(suspicion.order(pl.concat([p.suspicions for p in parts])),
                     [outcomes[r.id] for r in ruleset.rules], whole.window, whole.origins,
                     whole.integrity)
