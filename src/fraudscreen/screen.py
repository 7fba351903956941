"""Screening: every selected rule over one set of tables, on one engine.

This is what ``run``, ``rules test`` and the benchmarks share: register the
tables, create the shared sources once, fix the analysis window, then compile and
run each rule, skipping a rule whose tables are absent and recording, never
raising, a rule that fails.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from fraudscreen import integrity, leads, stop, suspicion
from fraudscreen.compiler import SKIPPED, compile_rule, transpile
from fraudscreen.rule import Rule, RuleError
from fraudscreen.ruleset import RuleSet


@dataclass
class RuleOutcome:
    rule: Rule
    status: str  # ran | skipped | failed
    reason: str = ""
    # A failure's kind (its exception's class name): all a public output shows of reason,
    # which can quote the data (privacy.shown_error).
    kind: str = ""
    hits: int = 0
    amount: str = "0.00"
    seconds: float = 0.0
    skipped: int | None = None  # what a ``skip`` left unjudged (its ``unit()``)
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Screening:
    suspicions: pl.DataFrame
    outcomes: list[RuleOutcome]
    window: tuple[dt.date | None, dt.date | None]
    origins: dict[str, str]
    integrity: dict[str, int] = field(default_factory=dict)
    institution_names: dict[str, str] = field(default_factory=dict)  # of the suspicions'


class QueryTimeout(Exception):
    """An engine's statement ran longer than it was allowed to (engines raise it)."""

    def __init__(self, seconds: float):
        super().__init__(f"stopped after {seconds:g} s (--rule-timeout)")


class OutOfMemory(Exception):
    """An engine ran out of its memory limit and of its spill space (engines raise it,
    with what to raise in the message)."""


MAX_HITS = 1_000_000  # a rule's hits beyond this fail it (see _run_rule)
RULE_TIMEOUT = 3600.0  # seconds a rule's statement may run (--rule-timeout; 0: no limit)

def make_engine(name: str, **options):
    if name == "duckdb":
        from fraudscreen.engine_duckdb import DuckDBEngine

        return DuckDBEngine(**options)
    if name == "spark":
        from fraudscreen.engine_spark import SparkEngine

        return SparkEngine(**options)
    raise ValueError(f"unknown engine {name!r} (duckdb, spark)")


def screen(tables: dict[str, pl.DataFrame], ruleset: RuleSet, engine,
           window_from: dt.date | None = None, window_to: dt.date | None = None,
           watchlists: list[Path] | None = None,
           on_rule: Callable[[RuleOutcome], None] | None = None,
           data_window: tuple[dt.date, dt.date] | None = None,
           quarantined_reversals: Sequence[str] = (),
           rule_timeout: float | None = RULE_TIMEOUT) -> Screening:
    """``data_window``: the analysis window of a larger data set these tables are a part
    of (a nightly re-screen of some persons), used as it is and filtering nothing.
    ``quarantined_reversals``: settlements that reversal rows left out of ``tables``
    (quarantined) name; they are reversed all the same."""
    origins = engine.register(tables, watchlists, quarantined_reversals)
    if data_window:
        run_params = {"window_start": data_window[0], "window_end": data_window[1],
                      "filter_window": False, "data_start": data_window[0]}
        engine.create_sources(run_params)
    else:
        run_params = _create_sources(engine, window_from, window_to)
    start, end = run_params["window_start"], run_params["window_end"]

    counts = integrity.count(engine)
    present = {name for name, origin in origins.items() if origin != "absent"}
    frames, outcomes = [], []
    for rule in ruleset.rules:
        outcome, frame = _run_rule(rule, ruleset.overrides.get(rule.id, {}), run_params,
                                   present, engine, rule_timeout)
        if frame is not None:
            frames.append(frame)
        outcomes.append(outcome)
        if on_rule:
            on_rule(outcome)
    found = (pl.concat(frames) if frames
             else pl.DataFrame(schema=suspicion.SCHEMA))
    names = leads.institution_names(engine.query(transpile(
        "SELECT institution_id, name FROM institutions", engine.dialect, pretty=False)),
        found) if "institutions" in present and found.height else {}
    return Screening(suspicion.order(found), outcomes, (start, end), origins, counts, names)


def _create_sources(engine, window_from, window_to) -> dict:
    """Create the shared sources once for the run's window and return its parameters.

    Without ``--from/--to`` the window is the effective fee lines' charge dates and
    nothing is filtered; with both, the sources are created filtered straight away.
    ``data_start`` is the first of those dates whatever the window (the spec's
    "earliest fee line in the data", which ``period_change`` counts months from).
    """
    both = bool(window_from and window_to)
    engine.create_sources({"window_start": window_from if both else dt.date(1900, 1, 1),
                           "window_end": window_to if both else dt.date(2999, 12, 31),
                           "filter_window": both})
    first, last = engine.query(transpile(
        "SELECT min(charge_date) AS a, max(charge_date) AS b FROM all_fee_lines",
        engine.dialect, pretty=False)).row(0)
    params = {"window_start": window_from or first or dt.date(1900, 1, 1),
              "window_end": window_to or last or dt.date(2999, 12, 31),
              "filter_window": bool(window_from or window_to),
              "data_start": first or window_from or dt.date(1900, 1, 1)}
    if params["filter_window"] and not both:  # one bound given: the other is the data's
        engine.create_sources(params)
    return params


def _run_rule(rule: Rule, overrides: dict, run_params: dict, present: set[str],
              engine, rule_timeout: float | None = None
              ) -> tuple[RuleOutcome, pl.DataFrame | None]:
    """Compile and run one rule; its suspicions, or None when it was skipped or failed."""
    began = time.perf_counter()
    try:
        compiled = compile_rule(rule, overrides, run_params)
    except RuleError as err:
        return RuleOutcome(rule, "failed", str(err), kind=type(err).__name__), None
    params = {k: v for k, v in compiled.params.items() if k in rule.params}
    missing = sorted(compiled.needs - present)
    if missing:
        return RuleOutcome(rule, "skipped", f"needs table {', '.join(missing)} (absent)",
                           params=params), None
    try:
        # One row past the cap tells a rule that flags too much, without holding all of
        # its hits (millions of rows would fill the memory the limit promises to keep).
        raw = engine.query(f"SELECT * FROM ({compiled.sql_for(engine.dialect, pretty=False)})"
                           f" AS hits LIMIT {MAX_HITS + 1}", timeout=rule_timeout)
        if raw.height > MAX_HITS:
            raise RuleError(f"{rule.path or rule.id}: more than {MAX_HITS:,} hits: no lead "
                            "list; tighten the rule")
        skipped = None
        if compiled.skip_sql:
            skipped = int(raw[SKIPPED][0] if raw.height else engine.query(
                compiled.skip_sql_for(engine.dialect), timeout=rule_timeout).item())
            raw = raw.drop(SKIPPED)
        frame = suspicion.finalize(rule, compiled.evidence, raw)
    except RuleError as err:  # already names the rule's file and line
        return RuleOutcome(rule, "failed", str(err), kind=type(err).__name__, params=params,
                           seconds=time.perf_counter() - began), None
    except Exception as err:  # a rule's failure is recorded; the run goes on
        if stop.requested():  # DuckDB's error for an interrupted query: stop, not fail
            raise KeyboardInterrupt from err
        where = f"{rule.where('detect')}: " if rule.path else ""  # the statement's rule
        named = "" if isinstance(err, (OutOfMemory, QueryTimeout)) else f"{type(err).__name__}: "
        return RuleOutcome(rule, "failed", f"{where}{named}{err}", kind=type(err).__name__,
                           params=params, seconds=time.perf_counter() - began), None
    amount = sum(frame["amount_at_risk"].to_list(), start=0)
    outcome = RuleOutcome(rule, "ran", hits=frame.height, amount=f"{amount:.2f}",
                          seconds=time.perf_counter() - began, skipped=skipped,
                          params=params)
    if skipped:
        outcome.reason = (f"{skipped} not judged ({rule.detect.skip.unit()}): "
                          f"{rule.detect.skip.reason}")
    return outcome, frame

