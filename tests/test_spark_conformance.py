"""DuckDB and Spark give the same suspicions: every rule's inline cases and a sample run.

One SparkSession (local, small) serves the whole module; every engine the tests
make (``run_test(..., 'spark')``, ``make_engine('spark')``) reuses it. The
comparison is of the finished suspicion frames — ids, keys, amounts (exact
decimals), messages and evidence — so any difference in meaning between the two
SQL renderings shows up here, not in a report.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import polars as pl
import pytest
import sqlglot
from sqlglot import exp

from fraudscreen import testing
from fraudscreen.compiler import compile_rule
from fraudscreen.ruleset import RuleSet
from fraudscreen.screen import make_engine, screen

pytestmark = pytest.mark.spark

pytest.importorskip("pyspark", reason="pyspark is not installed: pip install 'fraudscreen[spark]'")
if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
    pytest.skip("no Java runtime for Spark (Debian: apt-get install openjdk-17-jre-headless)",
                allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_claims" / "data"
RULES = RuleSet.load().rules
CASES = [(r, t) for r in RULES for t in r.tests]

# Tiny inputs: one shuffle partition and no code generation keep a query well under
# a second; the engine's own defaults are for real data.
TEST_CONFIG = {
    "spark.sql.shuffle.partitions": "1",
    "spark.default.parallelism": "1",
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.adaptive.enabled": "false",
}


def spark_cannot_run(rule) -> bool:
    """Spark refuses a correlated subquery in a join condition that reads both sides.

    The correlate kind puts its ``match`` in the join's ON; a match with EXISTS
    (duplicate_charge.exclusive_items) then fails on Spark — loudly, as a failed
    rule (Spark 4: UNSUPPORTED_CORRELATED_EXPRESSION_IN_JOIN_CONDITION; Spark 3.5:
    an internal ClassCastException at planning). Moving ``match`` to WHERE (same
    meaning for an inner join) is the proposed compiler fix; once it is in, this is
    False and the rule is compared.
    """
    tree = sqlglot.parse_one(compile_rule(rule).sql, read="duckdb")
    return any(j.args.get("on") is not None and j.args["on"].find(exp.Exists)
               for j in tree.find_all(exp.Join))


BLOCKED = {r.id for r in RULES if spark_cannot_run(r)}


@pytest.fixture(scope="module")
def started_in(tmp_path_factory):
    """The working directory the session was started from (see the warehouse test)."""
    return tmp_path_factory.mktemp("spark-cwd")


@pytest.fixture(scope="module")
def spark(started_in):
    from fraudscreen.engine_spark import SparkEngine, SparkUnavailable, build_session

    here = Path.cwd()
    os.chdir(started_in)
    try:
        session = build_session("local[2]", TEST_CONFIG)
    except SparkUnavailable as err:
        pytest.skip(str(err))
    finally:
        os.chdir(here)
    yield session
    SparkEngine(session=session).stop()


@pytest.fixture
def recorded(monkeypatch):
    """The screenings ``run_test`` makes, by engine dialect, for comparing them."""
    seen: dict[str, pl.DataFrame] = {}

    def recording_screen(tables, ruleset, engine, *args, **kwargs):
        result = screen(tables, ruleset, engine, *args, **kwargs)
        seen["spark" if "spark" in engine.dialect else engine.dialect] = result.suspicions
        return result

    monkeypatch.setattr(testing, "screen", recording_screen)
    return seen


@pytest.fixture
def without_integrity_counts(monkeypatch):
    """Screenings that skip the thirteen integrity counts, for tests that compare only
    suspicions. On Spark the counts are thirteen jobs, half of a rule test's time, and
    nothing here reads them; a count never changes a suspicion. Both engines' counts are
    compared in test_integrity_counts_of_codes_outside_the_contract_agree and in the
    sample run."""
    from fraudscreen import integrity

    monkeypatch.setattr(integrity, "count", lambda engine: {})


def assert_same(duck: pl.DataFrame, spark: pl.DataFrame) -> None:
    assert spark.schema == duck.schema
    key = ["suspicion_id"]
    only_duck = duck.join(spark, on=key, how="anti")["suspicion_id"].to_list()
    only_spark = spark.join(duck, on=key, how="anti")["suspicion_id"].to_list()
    assert not only_duck and not only_spark, (
        f"suspicions only on DuckDB: {only_duck[:10]}; only on Spark: {only_spark[:10]}")
    both = duck.join(spark, on=key, suffix="_spark")
    for column in duck.columns:
        if column in key:
            continue
        differ = both.filter(pl.col(column).ne_missing(pl.col(f"{column}_spark")))
        assert differ.is_empty(), (
            f"{column} differs for {differ.height} suspicion(s), e.g. "
            f"{differ.select('suspicion_id', column, f'{column}_spark').head(5).to_dicts()}")
    assert spark.equals(duck)  # and in the same order


@pytest.mark.parametrize("rule, case", CASES, ids=[f"{r.id}::{t.name}" for r, t in CASES])
def test_inline_case_on_spark_as_on_duckdb(spark, recorded, without_integrity_counts,
                                            rule, case):
    on_spark = testing.run_test(rule, case, "spark")
    if rule.id in BLOCKED:
        assert not on_spark.passed and on_spark.diff[0].startswith("rule failed"), \
            on_spark.diff
        pytest.xfail("correlated EXISTS in a join condition: Spark refuses it (the rule "
                     "fails, never answers wrongly); fix: correlate's match in WHERE")
    assert on_spark.passed, "\n".join(on_spark.diff)
    on_duckdb = testing.run_test(rule, case, "duckdb")
    assert on_duckdb.passed, "\n".join(on_duckdb.diff)
    assert_same(recorded["duckdb"], recorded["spark"])


@pytest.mark.parametrize("text", ["GROUPED_QUERY", "STEPPED_QUERY", "TIED_PICKS",
                                  "WINDOW_OVER_LINES", "NAMED_ITEMS"])
def test_analyst_shaped_rules_on_spark_as_on_duckdb(spark, recorded, without_integrity_counts,
                                                    tmp_path, text):
    """A query that groups, a query with WITH steps, rank() and UNION ALL, arg_min and
    arg_max over ties and NULL orderings, a window over fee lines (several lines of a
    settlement among the members), and with_name over a NULL, a blank and a present name
    and a NULL code: test_compiler's rules, each inline case on both engines."""
    import test_compiler
    from fraudscreen.rule import load_rule

    path = tmp_path / "rule.yaml"
    path.write_text(getattr(test_compiler, text), encoding="utf-8")
    rule = load_rule(path)
    for case in rule.tests:
        for engine in ("spark", "duckdb"):
            result = testing.run_test(rule, case, engine)
            assert result.passed, (engine, case.name, result.diff)
        assert_same(recorded["duckdb"], recorded["spark"])


def test_money_keeps_its_scale_where_a_product_needs_more_than_38_digits(
        spark, recorded, without_integrity_counts):
    """Found in review: sum(quantity) × a 4-place price needs DECIMAL(44, 8); Spark cut it
    to 6 places and rounded twice: 1.3333 × 30.0045 = 40.00499985 came out 40.01."""
    from fraudscreen.rule import RuleTest

    rule = next(r for r in RULES if r.id == "duplicate_charge.bed_days_beyond_stay")
    case = RuleTest.model_validate({
        "name": "4.3333 bed days at 30.0045 for a 3-day stay",
        "given": {"settlements": [dict(
            settlement_id="S1", person_id="P1", institution_id="H1", medical_type="21",
            admit_time="2024-03-01 10:00:00", discharge_time="2024-03-04 10:00:00",
            fund_amount=200)],
            "fee_lines": [dict(settlement_id="S1", item_code="BED1", fee_category="01",
                               charge_time="2024-03-01 10:00:00", quantity="4.3333",
                               unit_price="30.0045", amount="130.02")]},
        "expect": [{"settlement_id": "S1", "amount_at_risk": "40.00"}]})
    for engine in ("spark", "duckdb"):
        result = testing.run_test(rule, case, engine)
        assert result.passed, (engine, result.diff)
    assert_same(recorded["duckdb"], recorded["spark"])


def test_window_runs_across_time_bucket_edges_agree(spark):
    """The window kind's band join is bucketed on the time axis (601 s buckets for a
    10-minute span, 30 days for 30): bursts and hoarding runs on either side of an edge,
    and a span one microsecond or one day too long, on both engines."""
    from fraudscreen.testing import table

    epoch = dt.datetime(1970, 1, 1)
    edge = epoch + dt.timedelta(seconds=601 * 2_844_072)  # 2024-03-01 10:01:12
    day_edge = epoch + dt.timedelta(days=30 * 659, hours=9)  # 2024-02-17 09:00
    settlements, lines = [], []
    for i, before in enumerate([0, 1e-6, 1, 300, 599.5, 600, 601]):
        for span, tag in ((600, "in"), (600.000001, "out")):
            first = edge - dt.timedelta(seconds=before)
            settlements += [{"settlement_id": f"B{i}{tag}{k}", "person_id": f"P{k}",
                             "institution_id": f"X{i}{tag}", "medical_type": "41",
                             "insured_region": "330100", "fund_amount": 10,
                             "admit_time": first + dt.timedelta(seconds=span * k / 4)}
                            for k in range(5)]
    for i, before in enumerate([0, 1, 10, 29, 30]):
        for last, tag in ((29, "in"), (30, "out")):
            for k, d in enumerate([0, 10, 20, last]):
                sid, when = f"D{i}{tag}{k}", day_edge + dt.timedelta(days=d - before)
                settlements.append({"settlement_id": sid, "person_id": f"A{i}{tag}",
                                    "institution_id": "P1", "medical_type": "41",
                                    "admit_time": when})
                lines.append({"settlement_id": sid, "item_code": "X", "charge_time": when,
                              "amount": 10})
    tables = {"settlements": table("settlements", settlements),
              "fee_lines": table("fee_lines", lines)}
    ruleset = RuleSet([r for r in RULES if r.detect.kind == "window"])
    found = {}
    for name in ("duckdb", "spark"):
        engine = make_engine(name)
        try:
            found[name] = screen(tables, ruleset, engine).suspicions
        finally:
            engine.close()
    assert sorted(found["duckdb"]["settlement_id"]) == sorted(
        [f"B{i}in0" for i in range(7)] + [f"D{i}in3" for i in range(5)])
    assert_same(found["duckdb"], found["spark"])


@pytest.fixture(scope="module")
def sample_tables(tmp_path_factory):
    """sample_claims/data when it is there, else a small generated prefecture: the
    tables as ingestion stages them, which each engine reads its own way."""
    from fraudscreen.ingest import load_folder

    folder = SAMPLE
    if not (folder.is_dir() and any(folder.iterdir())):
        from typer.testing import CliRunner

        from fraudscreen.cli import app

        folder = tmp_path_factory.mktemp("sample") / "data"
        result = CliRunner().invoke(app, ["sample", "--out", str(folder), "--scale", "0.02"])
        if result.exit_code != 0:
            pytest.skip(f"no sample_claims/data and `fraudscreen sample` failed: "
                        f"{result.output[-500:]} {result.exception!r}")
    with load_folder(folder) as ingestion:
        yield ingestion.tables


def test_sample_run_gives_identical_suspicions(spark, sample_tables):
    """With a settlement named by a quarantined reversal row, too: both engines leave
    out what rests on it."""
    ruleset = RuleSet.load()
    engine = make_engine("duckdb")
    try:
        plain = screen(sample_tables, ruleset, engine).suspicions
    finally:
        engine.close()
    reversed_ = plain.drop_nulls("settlement_id")["settlement_id"][0]
    runs = {}
    for name in ("duckdb", "spark"):
        engine = make_engine(name)
        try:
            runs[name] = screen(sample_tables, ruleset, engine,
                                quarantined_reversals=[reversed_])
        finally:
            engine.close()
    duck, on_spark = runs["duckdb"], runs["spark"]
    assert reversed_ not in set(duck.suspicions["settlement_id"])
    assert duck.suspicions.height < plain.height
    assert all(o.status == "ran" for o in duck.outcomes), \
        [(o.rule.id, o.reason) for o in duck.outcomes if o.status != "ran"]
    assert duck.suspicions.height > 0
    assert on_spark.window == duck.window
    assert on_spark.integrity == duck.integrity
    for a, b in zip(duck.outcomes, on_spark.outcomes, strict=True):
        assert a.rule.id == b.rule.id
        if a.rule.id in BLOCKED:  # fails loudly on Spark; see spark_cannot_run
            assert b.status == "failed", (b.status, b.reason)
            continue
        assert (b.status, b.reason, b.hits, b.amount, b.skipped) == \
            (a.status, a.reason, a.hits, a.amount, a.skipped), a.rule.id
    compared = ~pl.col("rule_id").is_in(sorted(BLOCKED))
    assert_same(duck.suspicions.filter(compared), on_spark.suspicions.filter(compared))


def test_a_windowed_run_gives_identical_suspicions(spark, sample_tables):
    """With --from/--to in mid-month: the rows around the window (a sequence's earlier
    stays, a window's members, a correlate's other side) and the whole-month rule of
    period_change read the same on both engines."""
    window = (dt.date(2024, 2, 10), dt.date(2024, 4, 20))
    runs = {}
    for name in ("duckdb", "spark"):
        engine = make_engine(name)
        try:
            runs[name] = screen(sample_tables, RuleSet.load(), engine, *window)
        finally:
            engine.close()
    duck, on_spark = runs["duckdb"], runs["spark"]
    assert duck.suspicions.height > 0 and on_spark.window == duck.window == window
    compared = ~pl.col("rule_id").is_in(sorted(BLOCKED))
    assert_same(duck.suspicions.filter(compared), on_spark.suspicions.filter(compared))


def test_inputs_read_by_spark_itself_give_the_same_suspicions(spark, tmp_path):
    """--spark-table NAME=TABLE: a catalog table, or a Parquet path with Chinese headers."""
    from fraudscreen.contract import INPUT_TABLES
    from fraudscreen.engine_spark import SparkEngine

    rule = next(r for r in RULES if r.id == "split_hospitalisation.readmission")
    case = rule.tests[0]
    tables = {name: testing.table(name, rows) for name, rows in case.given.items()}
    tables.setdefault("fee_lines", testing.table("fee_lines", []))
    zh = {c.name: c.zh for c in INPUT_TABLES["settlements"].columns}
    path = tmp_path / "结算记录.parquet"
    tables["settlements"].rename(zh).write_parquet(path)
    tables["fee_lines"].write_parquet(tmp_path / "fee.parquet")
    spark.read.parquet(str(tmp_path / "fee.parquet")).createOrReplaceTempView("raw_fee")
    ruleset = RuleSet([rule])

    engine = SparkEngine(session=spark, spark_tables={"settlements": str(path),
                                                      "fee_lines": "raw_fee"})
    try:
        on_spark = screen({}, ruleset, engine)
    finally:
        engine.close()
        spark.catalog.dropTempView("raw_fee")
    duck_engine = make_engine("duckdb")
    try:
        duck = screen(tables, ruleset, duck_engine)
    finally:
        duck_engine.close()
    assert on_spark.origins["settlements"] == f"spark:{path}"
    assert on_spark.origins["fee_lines"] == "spark:raw_fee"
    assert duck.suspicions.height > 0
    assert_same(duck.suspicions, on_spark.suspicions)


def test_a_table_given_and_read_by_spark_too_is_refused_not_counted_twice(spark, tmp_path):
    """The engine unioned a table it was given with the same table read by Spark: every
    fee line twice (found measuring --spark-table). Only a watch list adds up."""
    from fraudscreen.engine_spark import SparkEngine

    lines = testing.table("fee_lines", [])
    lines.write_parquet(tmp_path / "fee.parquet")
    engine = SparkEngine(session=spark, spark_tables={"fee_lines": str(tmp_path / "fee.parquet")})
    try:
        with pytest.raises(ValueError, match="table fee_lines is given twice"):
            engine.register({"fee_lines": lines})
    finally:
        engine.close()


def test_no_shuffle_sends_every_null_reversal_id_to_one_task(spark):
    """A join on reversed_settlement_id that is not broadcast (a cluster's settlements)
    hash-partitions it; without `IS NOT NULL` every settlement's NULL went to one task
    (found measuring Spark: 99.7 % of 717 k settlements in one of 200 partitions)."""
    from fraudscreen import integrity
    from fraudscreen.compiler import transpile
    from fraudscreen.engine_spark import SparkEngine

    tables = {"settlements": testing.table("settlements", [dict(
        settlement_id=s, person_id="P1", institution_id="H1", reversed_settlement_id=r,
        admit_time="2024-03-01 10:00:00") for s, r in (("S1", None), ("S2", None),
                                                       ("R2", "S2"))]),
        "fee_lines": testing.table("fee_lines", [])}
    engine = SparkEngine(session=spark, local_rows=0)  # read as Parquet, as at scale
    before = spark.conf.get("spark.sql.autoBroadcastJoinThreshold")
    spark.conf.set("spark.sql.autoBroadcastJoinThreshold", "-1")
    try:
        engine.register(tables)
        engine.create_sources(None)
        for sql in ("SELECT * FROM effective_settlements", transpile(
                integrity.CHECKS["removed_by_reversal"].sql, "spark", pretty=False)):
            plan = spark.sql(sql)._jdf.queryExecution().executedPlan().toString()
            lines = plan.splitlines()
            shuffles = [i for i, line in enumerate(lines)
                        if "Exchange hashpartitioning(reversed_settlement_id" in line]
            assert shuffles, plan  # (not broadcast: the join is shuffled)
            for i in shuffles:
                depth = len(lines[i]) - len(lines[i].lstrip(" :|+-"))
                below = []
                for line in lines[i + 1:]:
                    if len(line) - len(line.lstrip(" :|+-")) <= depth:
                        break
                    below.append(line)
                assert any("isnotnull(reversed_settlement_id" in b for b in below), plan
    finally:
        spark.conf.set("spark.sql.autoBroadcastJoinThreshold", before)
        engine.close()


def test_a_statement_past_its_timeout_is_cancelled_and_the_session_goes_on(spark):
    """--rule-timeout on Spark: the statement's jobs are cancelled, the rule fails with
    QueryTimeout, and the next rule runs on the same session."""
    import time

    from fraudscreen.engine_spark import SparkEngine
    from fraudscreen.screen import QueryTimeout

    engine = SparkEngine(session=spark)
    started = time.monotonic()
    with pytest.raises(QueryTimeout):
        engine.query("SELECT sum(id % 7) AS n FROM range(0, 100000000000, 1, 2)", timeout=2)
    assert time.monotonic() - started < 60
    assert engine.query("SELECT 1 AS one", timeout=30).to_dicts() == [{"one": 1}]


def test_integrity_counts_of_codes_outside_the_contract_agree(spark, tmp_path):
    """The counts are SQL transpiled per engine (a regex match on DuckDB is RLIKE on
    Spark): the same odd codes give the same counts on both."""
    from fraudscreen.ingest import load_folder
    from fraudscreen.testing import table

    stay = dict(person_id="P1", institution_id="H1", admit_time=dt.datetime(2024, 1, 1),
                settle_time=dt.datetime(2024, 1, 2))
    line = dict(item_code="X", item_name="x", charge_time=dt.datetime(2024, 1, 1))
    rows = {
        "settlements": [dict(stay, settlement_id="A", insured_region="3509"),
                        dict(stay, settlement_id="B", visit_region="福州市",
                             medical_type="普通住院"),
                        dict(stay, settlement_id="C", total_amount=-5)],
        "fee_lines": [dict(line, line_id="L1", settlement_id="A", fee_category="001"),
                      dict(line, line_id="L2", settlement_id="B", fee_category="14"),
                      dict(line, line_id="L3", settlement_id="C", fee_category="15"),
                      dict(line, line_id="L4", settlement_id="C", fee_category="14",
                           charge_time=dt.datetime(2014, 1, 1))],
        "persons": [dict(person_id="P1", gender="M"), dict(person_id="P2", gender="2")],
        "item_pairs": [dict(item_code_a="X", item_code_b="Y", relation="互斥")],
    }
    for name, table_rows in rows.items():
        table(name, table_rows).write_parquet(tmp_path / f"{name}.parquet")
    counts = {}
    with load_folder(tmp_path) as ingestion:
        assert ingestion.quarantine.is_empty()
        for name in ("duckdb", "spark"):
            engine = make_engine(name)
            try:
                counts[name] = screen(ingestion.tables, RuleSet.load(), engine).integrity
            finally:
                engine.close()
    assert counts["spark"] == counts["duckdb"]
    assert {name: n for name, n in counts["duckdb"].items() if n} == {
        "fee_lines_category_not_coded": 2, "settlements_region_not_6_digits": 2,
        "settlements_medical_type_not_coded": 1, "negative_settlements_not_linked": 1,
        "fee_lines_outside_settlements": 1, "persons_gender_not_coded": 1,
        "item_pairs_not_exclusive": 1}


def test_a_string_is_text_on_spark_not_a_variable_to_substitute(spark, tmp_path):
    """Found in review: Spark replaced `${env:HOME}` inside a rule's string literal before
    parsing it, so a rule read the environment (DuckDB kept the text)."""
    from fraudscreen.testing import table

    rule = tmp_path / "leak.yaml"
    rule.write_text("""\
id: custom.leak
version: "1"
family: duplicate_charge
title: t
description: d
severity: low
detect: {kind: filter, source: settlements, where: "settlement_id = 'S1'"}
emit:
  amount_at_risk: "0"
  evidence: {home: "'${env:HOME}|${system:user.name}|${spark.master}'"}
  message: "{home}"
""", encoding="utf-8")
    tables = {"settlements": table("settlements", [dict(settlement_id="S1")]),
              "fee_lines": table("fee_lines", [])}
    ruleset = RuleSet.load([rule]).select(["custom.leak"])
    messages = {}
    for name in ("duckdb", "spark"):
        engine = make_engine(name)
        try:
            messages[name] = screen(tables, ruleset, engine).suspicions["message"].to_list()
        finally:
            engine.close()
    assert messages["spark"] == messages["duckdb"] == [
        "${env:HOME}|${system:user.name}|${spark.master}"]



@pytest.mark.parametrize("ref, says", [
    ("no_such_table", "cannot read it as a catalog table or view: [TABLE_OR_VIEW_NOT_FOUND]"),
    ("/no/such/settlements.parquet", "no such file or folder"),
    # a glob is Spark's to expand (and on a cluster a path is on its file system)
    ("/no/such/part-*.parquet", "cannot read it as a Parquet path: [PATH_NOT_FOUND]")])
def test_a_spark_table_that_is_not_there_is_named_in_the_error(spark, started_in, ref, says):
    """--spark-table with a typo gave a traceback; now the option, the table and why.
    Looking a table up in the catalog made ./spark-warehouse where the session was
    started: ours is in the temp directory."""
    from fraudscreen.engine_spark import SparkEngine

    engine = SparkEngine(session=spark, spark_tables={"settlements": ref})
    try:
        with pytest.raises(ValueError) as err:
            engine.register({})
    finally:
        engine.close()
    assert str(err.value).startswith(f"--spark-table settlements={ref}: ")
    assert says in str(err.value)
    assert not (started_in / "spark-warehouse").exists()


# Every allowed function (expressions._FUNCTIONS) at each argument count it accepts, over
# edge inputs: NULLs, '', negative numbers, half-way rounding, Chinese text, full-width
# spaces, times across midnight and a month's end. Each call is one evidence entry of a
# rule, so one statement per engine runs them all; a call's evidence (its JSON, where 2 and
# 2.0 differ) and its text in the message must read the same on both engines.
ROW_CALLS = {
    "abs": ["abs(amount)", "abs(CAST(amount AS DOUBLE))"],
    "round": ["round(quantity)", "round(2.5)", "round(-2.5)", "round(1.005, 2)",
              "round(unit_price, 2)", "round(CAST(quantity AS DOUBLE))",
              "round(CAST(1.005 AS DOUBLE), 2)", "round(unit_price, -2)"],
    "floor": ["floor(quantity)", "floor(CAST(quantity AS DOUBLE))",
              "floor(CAST(quantity * 2 AS INTEGER))"],
    "ceil": ["ceil(quantity)", "ceil(CAST(amount AS DOUBLE))"],
    "coalesce": ["coalesce(doctor_id)", "coalesce(doctor_id, item_name, 'none')"],
    "greatest": ["greatest(amount, NULL)", "greatest(doctor_id, item_name)",
                 "greatest(amount, quantity, unit_price, NULL)"],
    "least": ["least(amount, NULL)", "least(doctor_id, item_name)",
              "least(amount, quantity, unit_price, NULL)"],
    "nullif": ["nullif(amount, 0)", "nullif(item_name, '')"],
    "substr": ["substr(item_name, 2)", "substr(item_name, -2)", "substr(item_name, 0)",
               "substr(item_name, 2, 3)", "substr(item_name, 0, 2)", "substr(item_name, 2, -1)",
               "substr(item_name, -3, 2)", "substr(item_name, -20, 3)",
               "substring(item_name, 1, length(item_name) - 2)"],
    "upper": ["upper(item_code)", "upper(item_name)"], "lower": ["lower(item_code)"],
    "length": ["length(item_name)", "length(doctor_id)"],
    "trim": ["trim(item_name)", "trim(doctor_id)", "trim(item_name, '注钠')"],
    "concat": ["concat(item_code)", "concat(item_code, doctor_id, item_name)"],
    "starts_with": ["starts_with(item_name, '注射')", "starts_with(doctor_id, '')"],
    "date_diff": [f"date_diff('{unit}', admit_time, charge_time)" for unit in (
        "day", "month", "quarter", "year", "hour", "minute", "second", "millisecond")]
    + ["date_diff('day', discharge_time, charge_time)"],
    "date_trunc": ["date_trunc('month', charge_time)", "date_trunc('month', charge_date)",
                   "date_trunc('day', charge_time)", "date_trunc('quarter', charge_date)",
                   "date_trunc('hour', discharge_time)"],
    "extract": [f"extract({unit} FROM charge_time)" for unit in (
        "year", "quarter", "month", "week", "day", "hour", "minute", "second", "millisecond",
        "microsecond", "dow", "isodow", "doy", "isoyear", "yearweek", "epoch", "decade",
        "century", "millennium", "dayofweek", "weekday", "dayofyear", "dayofmonth",
        "weekofyear", "quarters", "seconds")] + ["extract(year FROM discharge_time)"],
    "year": ["year(charge_time)", "year(charge_date)"], "month": ["month(charge_date)"],
    "day": ["day(discharge_time)"],
    "left": ["left(item_name, 2)", "left(item_name, 0)", "left(item_name, -1)"],
    "right": ["right(item_name, 2)", "right(item_name, -1)", "right(item_name, -20)"],
    "strpos": ["strpos(item_name, '头孢')", "strpos(item_name, '')", "strpos(doctor_id, 'b')"],
    "array_length": ["array_length([1, 2, 3])", "array_length(CAST(NULL AS INTEGER[]))"],
    "with_name": ["with_name(item_code, item_name)"],
}
GROUP_CALLS = {
    "sum": ["sum(quantity)", "sum(CAST(quantity AS DOUBLE))",
            "sum(quantity) FILTER (WHERE quantity > 99)"],
    "count": ["count(*)", "count(doctor_id)"],
    "min": ["min(item_name)", "min(charge_time)"], "max": ["max(charge_date)"],
    "avg": ["avg(quantity)", "avg(unit_price)", "avg(CAST(quantity * 2 AS INTEGER))",
            "avg(quantity) FILTER (WHERE quantity > 99)"],
    # S1's earliest line, and its largest quantity, have no doctor: no engine answers NULL
    "arg_min": ["arg_min(line_id, charge_time)", "arg_min(doctor_id, charge_time)"],
    "arg_max": ["arg_max(line_id, unit_price)", "arg_max(doctor_id, quantity)"],
    "count_if": ["count_if(quantity > 0)"],
}
# Differences found and not fixed, each with why (docs/spark.md).
KNOWN = {
    "upper(item_code)": "Java's full case mapping: upper('ß') is 'SS' on Spark, 'ẞ' on DuckDB",
    "upper(item_name)": "the same: 'straße' is 'STRASSE' on Spark, 'STRAẞE' on DuckDB",
    "count_if(quantity > 0)": "DuckDB's count_if is a HUGEINT, read back as a DECIMAL: '1.00'",
}


def _calls_rule(path: Path, kind: str, calls: list[str]) -> Path:
    entries = "".join(f"    e{i}: {json.dumps(c, ensure_ascii=False)}\n"
                      for i, c in enumerate(calls))
    if kind == "filter":
        detect, key = "{kind: filter, source: fee_lines}", "line_id"
    else:
        measures = "".join(f"    m{i}: {json.dumps(c, ensure_ascii=False)}\n"
                           for i, c in enumerate(calls))
        detect = ("\n  kind: aggregate\n  source: fee_lines\n  group_by: [settlement_id]\n"
                  f"  having: 'true'\n  measures:\n{measures}")
        entries = "".join(f"    e{i}: m{i}\n" for i in range(len(calls)))
        key = "settlement_id"
    path.write_text(f"""\
id: custom.{kind}_calls
version: "1"
family: duplicate_charge
title: t
description: d
severity: low
detect: {detect}
emit:
  amount_at_risk: "0"
  evidence:
    key: {key}
{entries}  message: "{'¦'.join(f'{{e{i}}}' for i in range(len(calls)))}"
  key: [key]
""", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def calls_read(spark, tmp_path_factory):
    """Each call's evidence and text per hit key, by engine: {engine: {call: {key: …}}}."""
    from fraudscreen.testing import table

    folder = tmp_path_factory.mktemp("calls")
    t = dt.datetime
    lines = [  # (settlement, item, name, doctor, quantity, unit price, amount, charged)
        ("S1", "25AB", "注射用头孢曲松钠", None, "2.5", "1.005", "-2.50", t(2024, 1, 31, 23, 30)),
        ("S1", "x", "", "", "-2.5", "-1.005", "0", t(2024, 2, 29, 0, 0, 1, 500000)),
        ("S2", "Ab", "\u3000 药品 \u3000", "Ab", "0.5", "2.675", "1.50", t(2023, 12, 31, 23, 59)),
        ("S2", "Z9", None, "d", "-0.5", "1234.5678", "-1.50", t(2024, 3, 1)),
        ("S3", "ß", "straße ΣΑΣ Ａｂ", None, "3", "0", "10.05", t(2024, 12, 31, 12)),
    ]
    tables = {
        "settlements": table("settlements", [
            dict(settlement_id=s, person_id="P1", institution_id="H1", admit_time=a,
                 discharge_time=d) for s, a, d in (
                ("S1", t(2024, 1, 31, 23), t(2024, 2, 1, 1)), ("S2", t(2023, 12, 31, 22), None),
                ("S3", t(2024, 12, 30, 8), t(2025, 1, 2, 8)))]),
        "fee_lines": table("fee_lines", [
            dict(zip(("settlement_id", "item_code", "item_name", "doctor_id", "quantity",
                      "unit_price", "amount", "charge_time"), line, strict=True))
            for line in lines])}
    calls = {"filter": [c for cs in ROW_CALLS.values() for c in cs],
             "aggregate": [c for cs in GROUP_CALLS.values() for c in cs]}
    ruleset = RuleSet.load([_calls_rule(folder / f"{kind}.yaml", kind, kind_calls)
                            for kind, kind_calls in calls.items()]).select(
        [f"custom.{kind}_calls" for kind in calls])
    read = {}
    for name in ("duckdb", "spark"):
        engine = make_engine(name)
        try:
            result = screen(tables, ruleset, engine)
        finally:
            engine.close()
        assert all(o.status == "ran" for o in result.outcomes), \
            [(name, o.rule.id, o.reason) for o in result.outcomes]
        read[name] = {}
        for hit in result.suspicions.iter_rows(named=True):
            evidence = json.loads(hit["evidence"])
            kind_calls = calls[hit["rule_id"].split(".")[1].removesuffix("_calls")]
            texts = hit["message"].split("¦")
            for i, call in enumerate(kind_calls):
                read[name].setdefault(call, {})[evidence["key"]] = (
                    json.dumps(evidence[f"e{i}"], ensure_ascii=False), texts[i])
    return read


@pytest.mark.parametrize("function", [*ROW_CALLS, *GROUP_CALLS])
def test_each_allowed_function_reads_the_same_on_spark(calls_read, function):
    """Found this way: avg of a DECIMAL, floor and ceil, trim of a full-width space,
    extract (Sunday, a second's fraction, units Spark lacks), and left/right/substr with a
    negative count or a start of 0 read differently on Spark; dialects.py now says why."""
    differ = {}
    for call in {**ROW_CALLS, **GROUP_CALLS}[function]:
        duck, on_spark = calls_read["duckdb"][call], calls_read["spark"][call]
        if call in KNOWN:  # still differs: once it does not, take it out of KNOWN
            assert duck != on_spark, call
        elif duck != on_spark:
            differ[call] = {k: (duck[k], on_spark[k]) for k in duck if duck[k] != on_spark[k]}
    assert not differ, differ


def test_every_allowed_function_is_compared():
    from fraudscreen.expressions import _FUNCTIONS

    named = {takes.call.split("(")[0] for takes in _FUNCTIONS.values()}
    assert named <= {*ROW_CALLS, *GROUP_CALLS}, named - {*ROW_CALLS, *GROUP_CALLS}
