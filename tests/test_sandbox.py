"""Rule expressions are user input: what the compiler refuses, and how it says so."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fraudscreen.cli import app
from fraudscreen.compiler import compile_rule
from fraudscreen.rule import RuleError, load_rule

BASE = """\
id: test.sandbox
version: "1"
family: duplicate_charge
title: t
description: d
severity: low
params:
  limit: {{type: int, default: 3}}
detect:
  kind: filter
  source: fee_lines
  where: {where}
emit:
  amount_at_risk: amount
  message: "{{settlement_id}}"
"""


def rule_file(tmp_path: Path, where: str) -> Path:
    path = tmp_path / "rule.yaml"
    path.write_text(BASE.format(where=where), encoding="utf-8")
    return path


def compile_where(tmp_path: Path, where: str):
    return compile_rule(load_rule(rule_file(tmp_path, where)))


def one_test_of(tmp_path: Path, where: str, test: str):
    """The rule file (``where``) with one test (``test``: its lines after the name, each
    indented four spaces), and what ``rules test`` makes of that test."""
    from fraudscreen.testing import run_test

    path = rule_file(tmp_path, where)
    path.write_text(path.read_text() + f"tests:\n  - name: t\n{test}", encoding="utf-8")
    rule = load_rule(path)
    return path, run_test(rule, rule.tests[0])


@pytest.mark.parametrize(
    "where, says",
    [
        ("\"amount > (SELECT count(*) FROM read_csv('/etc/passwd'))\"", "read_csv"),
        ("\"getenv('HOME') = 'x'\"", "getenv"),
        ("\"amount > (SELECT count(*) FROM '/etc/passwd')\"", "unknown source"),
        ("\"amount > (SELECT count(*) FROM input_fee_lines)\"", "unknown source"),
        ("\"amount > (SELECT count(*) FROM main.fee_lines)\"", "not allowed"),
        ("\"current_date > charge_date\"", "not allowed"),
        ("\"random() > 0.5\"", "not allowed"),
        ("\"any_value(amount) > 0\"", "function any_value() is not allowed"),
        ("\"amount > (SELECT count(*) FROM glob('*'))\"", "not allowed"),
        ("\"item_code = current_setting('home_directory')\"", "not allowed"),
        ("\"sum(amount) > 1\"", "aggregate"),
        # a type from an extension would make DuckDB download and load it
        ("\"TRY_CAST(item_code AS INET) IS NULL\"", "type INET is not allowed"),
        ("\"CAST(item_code AS GEOMETRY) IS NULL\"", "type GEOMETRY is not allowed"),
        # to_char's format would be lost in transpiling: it means another thing
        ("\"to_char(charge_time, '%Y') = '2024'\"", "not allowed"),
        # named as written, with the allowed ones as a rule writes them (found in review)
        ("\"regexp_matches(item_name, 'x')\"", "function regexp_matches() is not allowed"),
        ("\"random() > 0.5\"", "date_diff, date_trunc, day, extract"),
        ("\"random() > 0.5\"", "strpos, substr"),
        ("\"random() > 0.5\"", "upper, with_name, year"),
        # sqlglot writes a type's parameter and a unit back unquoted: SQL hidden in a quoted
        # name or a string there ran (found in review: the settings and a file were read)
        ("'CAST(1 AS DECIMAL(\"1, 0)) = 1 OR amount > (SELECT count(*) FROM read_text(''/etc/"
         "hostname'')) OR CAST(1 AS DECIMAL(1\", 0)) = 1'", "parameters are whole numbers"),
        ("'date_diff(''day FROM charge_time) || 1 || '', charge_time, charge_time) > 0'",
         "is not a date or time unit"),
        ("'EXTRACT(''year FROM charge_time) || 1 || EXTRACT(year'' FROM charge_time) = 1'",
         "is not a date or time unit"),
    ],
)
def test_forbidden_expressions_are_refused(tmp_path, where, says):
    with pytest.raises(RuleError) as err:
        compile_where(tmp_path, where)
    assert says in str(err.value)
    assert str(tmp_path / "rule.yaml") in str(err.value)


def test_statements_are_not_expressions(tmp_path):
    for text in ["ATTACH 'x.db' AS x", "COPY fee_lines TO 'x.csv'", "SET threads = 1",
                 "INSTALL httpfs", "CREATE TABLE x AS SELECT 1"]:
        with pytest.raises(RuleError) as err:
            compile_where(tmp_path, f'"{text}"')
        assert "not allowed" in str(err.value) or "cannot parse" in str(err.value), text


def test_query_kind_refuses_writes_and_files(tmp_path):
    body = BASE.replace("kind: filter\n  source: fee_lines\n  where: {where}\n",
                        "kind: query\n  sql: \"{where}\"\n")
    for sql, says in [("COPY fee_lines TO 'x.csv'", "SELECT"),
                      ("SELECT * FROM read_parquet('x.parquet')", "read_parquet"),
                      ("SELECT * FROM fee_lines, input_settlements", "unknown source")]:
        path = tmp_path / "q.yaml"
        path.write_text(body.format(where=sql), encoding="utf-8")
        with pytest.raises(RuleError) as err:
            compile_rule(load_rule(path))
        assert says in str(err.value), sql


def test_query_kind_reads_sources(tmp_path):
    body = BASE.replace("kind: filter\n  source: fee_lines\n  where: {where}\n",
                        "kind: query\n  sql: \"{where}\"\n")
    path = tmp_path / "q.yaml"
    path.write_text(body.format(
        where="SELECT settlement_id, amount FROM fee_lines WHERE quantity > :limit"),
        encoding="utf-8")
    compiled = compile_rule(load_rule(path))
    assert "quantity > 3" in compiled.sql


def test_misspelt_column_suggests_the_nearest_and_names_the_line(tmp_path):
    with pytest.raises(RuleError) as err:
        compile_where(tmp_path, "unit_prise > 10")
    msg = str(err.value)
    assert "unit_prise" in msg and "did you mean 'unit_price'" in msg
    assert f"{tmp_path / 'rule.yaml'}:12:" in msg  # the `where:` line


def test_unknown_parameter_suggests_the_declared_one(tmp_path):
    with pytest.raises(RuleError) as err:
        compile_where(tmp_path, "quantity > :limt")
    assert "did you mean 'limit'" in str(err.value)


@pytest.mark.parametrize(("where", "at", "says"), [
    ('"amount > 0 AND"', ":12:22:", "cannot parse 'amount > 0 AND' near 'AND': a value is "
                                    "missing: write it as a AND b"),
    ("|\n    amount > 0\n    AND quantity BETWEEN 1", ":14:26:",
     "a value is missing: write it as a BETWEEN b AND c"),
    ('"CASE item_code END = \'x\'"', ":12:30:", "near '=': CASE is incomplete"),
    ("regexp_matches(item_code) = 1", ":12:34:", "near ')': function regexp_matches() is not "
                                                 "allowed in rule expressions (allowed: abs,"),
    # found in review: compared as the text ':limit', the rule ran and matched nothing
    ("quantity > :limit OR item_name = ':limit'", ":12:43:",
     "':limit' is text, not the parameter :limit: write :limit without quotes"),
])
def test_an_incomplete_expression_or_a_quoted_parameter_says_what_to_write(tmp_path, where,
                                                                          at, says):
    """An operator missing a side said "Required keyword: 'expression' missing for <class
    'sqlglot.expressions.core.And'>"."""
    with pytest.raises(RuleError) as err:
        compile_where(tmp_path, where)
    assert str(err.value).startswith(f"{tmp_path / 'rule.yaml'}{at}") and says in \
        str(err.value), str(err.value)


def test_parameters_are_bound_as_literals_not_pasted(tmp_path):
    path = rule_file(tmp_path, "item_code = :code")
    path.write_text(path.read_text().replace(
        "limit: {type: int, default: 3}", "code: {type: string, default: \"x' OR 1=1 --\"}"))
    sql = compile_rule(load_rule(path)).sql
    assert "item_code = 'x'' OR 1=1 --'" in sql


def test_codes_given_as_parameters_stay_text_however_they_look(tmp_path):
    """YAML 1.1 would read 001102000010000 as octal, 01 as 1 and 12:30 as 750."""
    from fraudscreen.ruleset import RuleSet

    path = rule_file(tmp_path, "item_code = :code AND fee_category IN (:cats)")
    path.write_text(path.read_text().replace(
        "limit: {type: int, default: 3}",
        "code: {type: string, default: 0012}\n  cats: {type: list, default: [01, 07]}"))
    rule = load_rule(path)
    assert "item_code = '0012' AND fee_category IN ('01', '07')" in compile_rule(rule).sql
    for value in ("001102000010000", "12:30"):
        rules = RuleSet([rule]).with_params([f"test.sandbox.code={value}"], None)
        compiled = compile_rule(rule, rules.overrides[rule.id])
        assert f"item_code = '{value}'" in compiled.sql


def test_bad_parameter_value_is_a_clear_error(tmp_path):
    path = rule_file(tmp_path, "quantity > :limit")
    with pytest.raises(RuleError) as err:
        compile_rule(load_rule(path), {"limit": "many"})
    assert "parameter limit: expected int" in str(err.value)


def test_yaml_errors_name_file_line_and_column(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("id: a.b\nversion: [1\n", encoding="utf-8")
    with pytest.raises(RuleError) as err:
        load_rule(path)
    assert str(path) in str(err.value) and ":3:" in str(err.value)


@pytest.mark.parametrize(("edit", "says"), [
    (lambda t: t.replace("  source: fee_lines", "\tsource: fee_lines"),
     ":11:1: not valid YAML: found a tab character that violates indentation "
     "(a tab: YAML indents with spaces only)"),
    (lambda t: t.replace("  source: fee_lines", "   source: fee_lines"),
     ":11:10: not valid YAML: mapping values are not allowed in this context (a value "
     "holding ': ' must be quoted, and a nested key indented under its parent)"),
    (lambda t: t.replace("emit:\n  amount_at_risk", "emit:\n  amount_at_risk: x\n amount"),
     "check the indentation"),
    # found in review: "could not find expected ':'", on the line after the key
    (lambda t: t.replace("  where:", "  where："),
     ":12:8: not valid YAML: full-width '：' after a key: write ASCII ':' (switch the input "
     "method to half-width, 半角)"),
    # a full-width colon in a description's text is text: the tab is the slip
    (lambda t: t.replace("description: d", "description: |\n  注意：d").replace(
        "  source: fee_lines", "\tsource: fee_lines"), ":12:1: not valid YAML: found a tab"),
])
def test_yaml_slips_say_what_to_look_at(tmp_path, edit, says):
    """Found in review: a tab or a misindented key gave PyYAML's words alone."""
    path = rule_file(tmp_path, "amount > 1")
    path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
    result = CliRunner().invoke(app, ["rules", "lint", "--rules", str(path), "--no-builtin"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert says in result.output


def test_a_rule_file_not_in_utf8_is_an_error_at_its_first_bad_byte(tmp_path):
    """Found in review: a rule file saved as GBK (Notepad's ANSI) crashed lint, test,
    show and list with a traceback, and run without naming the file."""
    path = rule_file(tmp_path, "amount > 1")
    path.write_bytes(path.read_text(encoding="utf-8").replace("title: t", "title: 重复收费")
                     .encode("gbk"))
    for args in (["rules", "lint", "--no-builtin"], ["rules", "list"],
                 ["run", "--data", str(tmp_path), "--out", str(tmp_path / "out")]):
        result = CliRunner().invoke(app, [*args, "--rules", str(path)])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert f"{path}:4:8: not UTF-8 (byte 0xd6)" in result.output, result.output


def test_schema_errors_name_the_field_and_line(tmp_path):
    path = rule_file(tmp_path, "amount > 1")
    path.write_text(path.read_text().replace("severity: low", "severity: extreme"))
    with pytest.raises(RuleError) as err:
        load_rule(path)
    assert "severity" in str(err.value) and f"{path}:6:" in str(err.value)


@pytest.mark.parametrize(("edit", "says"), [
    (lambda t: t.replace("params:", "param:"),
     ":7:1: param: unknown key 'param'; did you mean 'params'?"),
    (lambda t: t.replace("  where: {where}", "  where: {where}\n  measures: {{n: count(*)}}"),
     ":13:3: detect.measures: 'measures' does not belong here"),
    # found in review: each said "did you mean 'count'?", a key of another section
    (lambda t: t + "tests:\n  - {{name: n, given: {{}}, expect: [{{amount: 1}}]}}\n",
     "tests.0.expect.0.amount: unknown key 'amount'; did you mean 'amount_at_risk'?"),
    (lambda t: t.replace("  where: {where}", "  wher: {where}"),
     "detect.wher: unknown key 'wher'; did you mean 'where'?"),
])
def test_a_key_out_of_place_is_named_with_the_nearest_one(tmp_path, edit, says):
    """Found in an analyst's review: pydantic's 'Extra inputs are not permitted'."""
    path = tmp_path / "rule.yaml"
    path.write_text(edit(BASE).format(where="amount > 1"), encoding="utf-8")
    with pytest.raises(RuleError) as err:
        load_rule(path)
    assert says in str(err.value)


@pytest.mark.parametrize(("edit", "says"), [
    (lambda t: t.replace("kind: filter", "kind: filtr"),
     ":10:3: detect.kind: unknown kind 'filtr'; did you mean 'filter'? (kinds: filter, "
     "aggregate, sequence, correlate, window, period_change, query)"),
    # a misspelt key was named as the key it misses: "severity: Field required" at 1:1
    (lambda t: t.replace("severity: low", "severty: low"),
     ":6:1: severty: unknown key 'severty'; did you mean 'severity'?"),
    (lambda t: t.replace("title: t\n", ""), ":1:1: title: missing: add it (title: …)"),
    (lambda t: t.replace("severity: low", "severity: critical"),
     ":6:1: severity: write 'low', 'medium' or 'high', not 'critical'"),
    (lambda t: t.replace("limit: {{type: int,", "limit: {{type: integer,"),
     ":8:11: params.limit.type: write 'int', 'decimal', 'string', 'date', 'bool' or "
     "'list', not 'integer'"),
    (lambda t: t + "  key: settlement_id\n",
     ":16:3: emit.key: write a list, [settlement_id], not 'settlement_id'"),
    (lambda t: t.replace("limit: {{type: int, default: 3}}",
                         "limit: {{type: int, default: 3, min: 5, max: 1}}"),
     ":8:3: params.limit: min 5 is above max 1"),  # not "Value error, min 5 …"
    (lambda t: t + "tests:\n  - name: n\n    given: {{fee_lines: {{amount: 1}}}}\n"
                   "    expect: []\n",
     ":18:13: tests.0.given.fee_lines: write a list: [a, b], or a line '- …' for each item"),
    (lambda t: t + "tests:\n  - {{name: n, given: {{}}}}\n",
     ":17:5: tests.0.expect: missing: add it (expect: …)"),
    (lambda t: t.replace("limit: {{type: int, default: 3}}",
                         "limit: {{type: int, default: 3, range: 5}}"),
     ":8:34: params.limit.range: unknown key 'range'; write one of default, description, "
     "max, min, type"),
    # found in review: pydantic's "Unable to extract tag using discriminator 'kind'"
    (lambda t: t.replace("  kind: filter\n", ""),
     ":9:1: detect.kind: missing: add it (kind: one of filter, aggregate, sequence, "
     "correlate, window, period_change, query)"),
    # found in review: read as no where at all, every fee line a hit
    (lambda t: t.replace("  where: {where}", "  where:"),
     ":12:3: detect.where: is empty: write its value, or leave the key out"),
])
def test_a_rule_file_slip_says_what_to_write_where_it_is(tmp_path, edit, says):
    """Found in review: pydantic's own words ("Input tag 'magic' found using 'kind' does
    not match any of the expected tags", "Field required", "Input should be a valid
    list"), an unknown kind placed at `detect:`, and a misspelt key named as the one
    it misses."""
    path = tmp_path / "rule.yaml"
    path.write_text(edit(BASE).format(where="amount > 1"), encoding="utf-8")
    with pytest.raises(RuleError) as err:
        load_rule(path)
    assert str(err.value) == f"{path}{says}", str(err.value)


def test_cli_reports_rule_errors_without_traceback(tmp_path):
    path = rule_file(tmp_path, "getenv('HOME') = 'x'")
    result = CliRunner().invoke(app, ["compile", "test.sandbox", "--rules", str(path)])
    assert result.exit_code == 2
    assert "getenv" in result.output and "Traceback" not in result.output


def test_duplicate_rule_ids_are_refused(tmp_path):
    a = rule_file(tmp_path, "amount > 1")
    b = tmp_path / "copy.yaml"
    b.write_text(a.read_text())
    result = CliRunner().invoke(app, ["rules", "list", "--rules", str(tmp_path)])
    assert result.exit_code == 2 and "duplicate rule id" in result.output


def test_all_builtin_rules_compile_for_duckdb_and_spark():
    from fraudscreen.ruleset import RuleSet

    for rule in RuleSet.load().rules:
        compiled = compile_rule(rule)
        assert compiled.sql_for("spark")
        assert "input_" not in compiled.sql


@pytest.mark.parametrize("text", [
    "amount > 1 AND item_code LIKE 'X%'",
    "coalesce(doctor_id, '') <> '' OR date_diff('day', admit_date, charge_date) > :limit",
    "CASE WHEN fee_category IN ('01', '02') THEN amount ELSE 0 END > 5",
    "date_trunc('month', charge_date) = DATE '2024-01-01' AND CAST(amount AS DECIMAL(16, 2)) > 1",
])
def test_ordinary_expressions_pass(tmp_path, text):
    compiled = compile_where(tmp_path, f'"{text}"')
    assert re.search(r"\"fee_line(s|_rows)\"", compiled.sql)


def test_message_placeholders_must_exist(tmp_path):
    path = rule_file(tmp_path, "amount > 1")
    path.write_text(path.read_text().replace('"{settlement_id}"', '"{setlement_id}"'))
    with pytest.raises(RuleError) as err:
        compile_rule(load_rule(path))
    assert "did you mean 'settlement_id'" in str(err.value)



def test_the_engine_never_fetches_or_loads_an_extension():
    from fraudscreen.engine_duckdb import connect

    con = connect()
    settings = dict(con.execute(
        "SELECT name, value FROM duckdb_settings() WHERE name IN "
        "('autoinstall_known_extensions', 'autoload_known_extensions')").fetchall())
    assert settings == {"autoinstall_known_extensions": "false",
                        "autoload_known_extensions": "false"}


def test_a_parameter_may_not_take_the_runs_window_names(tmp_path):
    path = rule_file(tmp_path, "charge_date >= :window_start")
    path.write_text(path.read_text().replace("limit: {type: int, default: 3}",
                                             "window_start: {type: date, default: 2024-05-01}"))
    with pytest.raises(RuleError, match="'window_start' is the run's own"):
        load_rule(path)


@pytest.mark.parametrize("placeholder", ["{人员编号}", "{ amount }", "{person_id }"])
def test_a_message_placeholder_must_be_a_name(tmp_path, placeholder):
    path = rule_file(tmp_path, "amount > 1")
    path.write_text(path.read_text().replace('"{settlement_id}"', f'"{placeholder}"'))
    with pytest.raises(RuleError, match="is not a name"):
        compile_rule(load_rule(path))


def test_a_decimal_parameter_must_be_a_number(tmp_path):
    from fraudscreen.rule import Param

    for value in ("NaN", "Infinity", "-inf"):
        with pytest.raises(ValueError, match="expected decimal"):
            Param(type="decimal", default=1).coerce(value)


def test_params_files_and_values_that_cannot_be_read_are_errors_not_tracebacks(tmp_path):
    from fraudscreen.ruleset import RuleSet

    rules = RuleSet.load()
    for text in ("split_hospitalisation.readmission: 5\n", "a: [\n"):
        (tmp_path / "p.yaml").write_text(text, encoding="utf-8")
        with pytest.raises(RuleError, match="params file") as err:
            rules.with_params([], tmp_path / "p.yaml")
        assert str(tmp_path / "p.yaml") in str(err.value)
    with pytest.raises(RuleError, match="cannot read the value"):
        rules.with_params(["split_hospitalisation.readmission.max_gap_days='a"], None)


@pytest.mark.parametrize(("param", "says"), [
    # found in review: accepted, then the rule failed at run time on a DuckDB
    # ConversionException (or bound 123456789012345678.5 as ...680, through a float)
    ("bed_holding.idle_stay.min_idle_share=12345678901234567890123456789012345678901.5",
     "min_idle_share: 12345678901234567890123456789012345678901.5 does not fit: a decimal "
     "parameter has at most 18 digits before the point and 12 after it"),
    ("bed_holding.idle_stay.min_idle_share=1e-38", "1E-38 does not fit"),
    ("key_item_growth.monthly_growth.min_increase=-1e30", "-1E+30 does not fit"),
    ("key_item_growth.monthly_growth.min_increase=1234567890123456789.5", "does not fit"),
    ("duplicate_charge.over_price_cap.price_tolerance=0.0000000000001", "does not fit"),
    # list values were stringified: ["None"], ["Z51", "None", "{'a': 1}"]
    ("split_hospitalisation.readmission.planned_categories=",
     "planned_categories: expected list, got None: names or codes"),
    ("split_hospitalisation.readmission.planned_categories=[Z51, null]", "expected list"),
    ("split_hospitalisation.readmission.planned_categories=[Z51, {a: 1}]", "expected list"),
    ("split_hospitalisation.readmission.planned_categories=[Z51, [Z52]]", "expected list"),
    ("split_hospitalisation.readmission.planned_categories=[1.50]", "expected list"),
    ("split_hospitalisation.readmission.planned_categories=Z51,,Z52", "expected list"),
    ("duplicate_charge.over_price_cap.price_tolerance=", "expected decimal, got None"),
    # a negative gap was accepted, and the rule could never hit
    ("split_hospitalisation.readmission.max_gap_days=-5",
     "parameter split_hospitalisation.readmission.max_gap_days: -5 is below its minimum, 0"),
    ("bed_holding.idle_stay.min_idle_share=1.5", "1.5 is above its maximum, 1"),
    ("pharmacy_card_skimming.impossible_travel.min_hours=100000000000000",
     "is above its maximum, 8784"),
    # found in review: compiled to IN ('“11”') and found nothing
    ("split_hospitalisation.readmission.planned_categories=“Z51”",
     "planned_categories: “Z51” is in full-width quotes (a Chinese input method's), which "
     "would be compared as part of the value and match nothing: remove them (Z51)"),
    ("split_hospitalisation.readmission.planned_categories=“Z51,Z49”", "remove them (Z51,Z49)"),
    ("split_hospitalisation.readmission.planned_categories=[Z51, 「Z49」]", "remove them (Z49)"),
])
def test_a_parameter_value_the_rule_cannot_run_with_is_refused_when_read(param, says):
    from fraudscreen.ruleset import RuleSet

    with pytest.raises(RuleError) as err:
        RuleSet.load().with_params([param], None)
    assert says in str(err.value)


def test_parameter_values_that_fit_are_taken_as_written():
    from fraudscreen.compiler import resolve_params
    from fraudscreen.ruleset import RuleSet

    rules = RuleSet.load().with_params([
        "key_item_growth.monthly_growth.min_increase=999999999999999999.999999999999",
        "split_hospitalisation.readmission.planned_categories=[Z51, 8]",
        "split_hospitalisation.readmission.max_gap_days=0"], None)
    values = {rule_id: resolve_params(rules.get(rule_id), rules.overrides[rule_id], {})
              for rule_id in rules.overrides}
    assert str(values["key_item_growth.monthly_growth"]["min_increase"]) == \
        "999999999999999999.999999999999"
    assert values["split_hospitalisation.readmission"]["planned_categories"] == ["Z51", "8"]
    assert values["split_hospitalisation.readmission"]["max_gap_days"] == 0


def test_a_params_file_names_where_a_value_is_wrong(tmp_path):
    """Found in review: a key given twice kept the last value silently."""
    from fraudscreen.ruleset import RuleSet

    path = tmp_path / "p.yaml"
    rules = RuleSet.load()
    for text, says in [
        ("split_hospitalisation.readmission:\n  max_gap_days: 1\n"
         "split_hospitalisation.readmission:\n  max_gap_days: 30\n",
         ":3:1: params file: not valid YAML: key 'split_hospitalisation.readmission' is given "
         "twice"),
        ("split_hospitalisation.readmission:\n  max_gap_days: 1\n  max_gap_days: 3\n",
         ":3:3: params file: not valid YAML: key 'max_gap_days' is given twice"),
        ("split_hospitalisation.readmission:\n  max_gap_days: -1\n",
         ":2:3: parameter split_hospitalisation.readmission.max_gap_days: -1 is below"),
        ("split_hospitalisation.readmission:\n  max_gap: 1\n",
         ":2:3: rule split_hospitalisation.readmission has no parameter 'max_gap'"),
        ("key_item_growth.monthly_growth:\n  min_increase: !!float .inf\n",
         ":2:17: params file: not valid YAML: '.inf' is not a decimal number"),
        ("split_hospitalisation.readmision:\n  max_gap_days: 1\n",
         ":1:1: no rule 'split_hospitalisation.readmision'; did you mean"),
        ("split_hospitalisation.readmission:\n  planned_categories: [Z51, ‘Z49’]\n",
         ":2:3: parameter split_hospitalisation.readmission.planned_categories: ‘Z49’ is in "
         "full-width quotes"),
    ]:
        path.write_text(text, encoding="utf-8")
        with pytest.raises(RuleError) as err:
            rules.with_params([], path)
        assert str(err.value).startswith(f"{path}{says}"), str(err.value)


@pytest.mark.parametrize(("bounds", "says"), [
    ("type: list, default: [a], min: 0", "min and max bound an int or decimal parameter only"),
    ("type: int, default: 3, min: 0.5", "expected int, got"),
    ("type: int, default: 3, min: 5, max: 4", "min 5 is above max 4"),
])
def test_a_parameter_s_bounds_must_make_sense(tmp_path, bounds, says):
    path = rule_file(tmp_path, "amount > 1")
    path.write_text(path.read_text().replace("limit: {type: int, default: 3}",
                                             f"limit: {{{bounds}}}"))
    with pytest.raises(RuleError, match=says) as err:
        load_rule(path)
    assert str(err.value).startswith(f"{path}:"), str(err.value)


def test_a_default_outside_its_bounds_is_an_error_naming_the_parameter(tmp_path):
    path = rule_file(tmp_path, "amount > :limit")
    path.write_text(path.read_text().replace("limit: {type: int, default: 3}",
                                             "limit: {type: int, default: 3, min: 4}"))
    with pytest.raises(RuleError, match="parameter limit: 3 is below its minimum, 4"):
        compile_rule(load_rule(path))


def test_an_impossible_date_in_a_rule_names_the_file(tmp_path):
    path = rule_file(tmp_path, "amount > 1")
    path.write_text(path.read_text().replace("limit: {type: int, default: 3}",
                                             "since: {type: date, default: 2024-13-01}"))
    with pytest.raises(RuleError) as err:
        load_rule(path)
    assert str(err.value) == f"{path}:8:32: not valid YAML: 2024-13-01 is not a date (month " \
        "must be in 1..12): dates are YYYY-MM-DD", str(err.value)  # was: no line, no column


@pytest.mark.parametrize(("given", "says"), [
    ("fee_line: [{settlement_id: S1}]", "no table 'fee_line'; did you mean 'fee_lines'?"),
    ("fee_lines: [{settlement_id: S1, amonut: 5}]",
     "fee_lines row 1 has no column 'amonut'; did you mean 'amount'?"),
    ("fee_lines: [{settlement_id: S1, amount: 5y}]", "cannot be read as its column's type"),
])
def test_a_test_whose_data_is_wrong_fails_saying_why(tmp_path, given, says):
    path, result = one_test_of(tmp_path, "amount > 1",
                          f"    given: {{{given}}}\n    expect: []\n")
    assert not result.passed and says in result.diff[0]
    assert result.diff[0].startswith(f"{path}:18:")  # the test's `given:` line


@pytest.mark.parametrize(("params", "says"), [
    ("{limt: 5}", ":18:14: rule test.sandbox: unknown parameter 'limt'; did you mean 'limit'?"),
    ("{limit: five}", ":18:14: rule test.sandbox: parameter limit: expected int, got 'five'"),
])
def test_a_test_s_wrong_params_are_named_where_the_test_gives_them(tmp_path, params, says):
    """Found in review: placed at the rule's own `params:`, which has no `limt`."""
    path, result = one_test_of(tmp_path, "amount > :limit",
                          f"    params: {params}\n    given: {{}}\n    expect: []\n")
    assert not result.passed and result.diff == [f"{path}{says}"], result.diff


def test_a_rule_that_fails_when_it_runs_names_its_detection(tmp_path):
    """`rules test` and `run` named the file alone ("rule.yaml: BinderException: …"),
    where lint names the line."""
    path, result = one_test_of(tmp_path, "amount > item_code", "    given: {}\n    expect: []\n")
    assert result.diff[0].startswith(f"rule failed: {path}:9:1: ") and "Cannot compare " \
        "values of type DECIMAL(16,2) and type VARCHAR" in result.diff[0], result.diff


AGGREGATE = """\
id: test.per_doctor
version: "1"
family: custom
title: t
description: d
severity: low
detect:
  kind: aggregate
  source: fee_lines
  group_by: [doctor_id]
  measures:
    lines: {measure}
  having: lines > 1
emit:
  amount_at_risk: "0"
  evidence: {{doctor: doctor_id}}
  message: "{{doctor}}"
  key: [doctor]
"""


@pytest.mark.parametrize(("measure", "ok"), [
    ("quantity", False), ("sum(quantity) + amount", False), ("count(*)", True),
    ("count(*) FILTER (WHERE amount > 0)", True), ("coalesce(doctor_id, '') || 'x'", True),
])
def test_an_aggregate_measure_reads_other_columns_only_through_an_aggregate(
        tmp_path, measure, ok):
    path = tmp_path / "r.yaml"
    path.write_text(AGGREGATE.format(measure=measure), encoding="utf-8")
    if ok:
        compile_rule(load_rule(path))
        return
    with pytest.raises(RuleError, match="outside an aggregate") as err:
        compile_rule(load_rule(path))
    assert f"{path}:12:" in str(err.value)  # the measure's line


def test_hints_for_two_usual_slips(tmp_path):
    with pytest.raises(RuleError, match="text goes in single quotes: 'X001'"):
        compile_where(tmp_path, """'item_code = "X001"'""")
    path = rule_file(tmp_path, "amount > 1")
    path.write_text(path.read_text().replace('"{settlement_id}"', "结算: {settlement_id}"))
    with pytest.raises(RuleError, match="must be quoted"):
        load_rule(path)


def test_a_skip_counts_only_columns_it_groups_by(tmp_path):
    path = tmp_path / "rule.yaml"
    path.write_text(BASE.format(where="true").replace("""  kind: filter
  source: fee_lines
  where: true
""", """  kind: aggregate
  source: fee_lines
  group_by: [institution_id, item_code]
  measures: {total: sum(amount)}
  having: total > 0
  skip:
    when: total IS NULL
    reason: r
    count: [person_id]
""").replace("amount_at_risk: amount", "amount_at_risk: total").replace(
        "{settlement_id}", "{item_code}"), encoding="utf-8")
    with pytest.raises(RuleError) as err:
        compile_rule(load_rule(path))
    assert "unknown column 'person_id'" in str(err.value)
    assert f"{path}:18:" in str(err.value)  # the `count:` line


@pytest.mark.parametrize("where", ["amount AS x", "SELECT amount FROM fee_lines", "'*'"])
def test_what_is_not_a_value_is_refused_where_a_value_is_wanted(tmp_path, where):
    """Found in review: these compiled, then broke the SQL of the run (a traceback that
    lost every rule's result)."""
    with pytest.raises(RuleError) as err:
        compile_where(tmp_path, where)
    assert "is not a value" in str(err.value) and f"{tmp_path / 'rule.yaml'}:12:" in str(err.value)


@pytest.mark.parametrize(("where", "says"), [
    ("amount > 0 ；", "full-width '；' at column 12 of 'amount > 0 ；': write ASCII ';'"),
    ("fee_category = ‘08’", "full-width '‘' at column 16"),
    ("quantity，amount > 1", "full-width '，' at column 9"),
    ("amount >＝ 1", "full-width '＝' at column 9"),
])
def test_full_width_punctuation_is_named_with_its_ascii(tmp_path, where, says):
    """Found in an analyst's review: 'quantity，amount' read as one unknown column
    ("did you mean 'quantity'?") and ‘08’ as a name."""
    with pytest.raises(RuleError) as err:
        compile_where(tmp_path, where)
    assert says in str(err.value) and f"{tmp_path / 'rule.yaml'}:12:" in str(err.value)


@pytest.mark.parametrize("where", [
    "item_name LIKE '%（%'",                      # a string
    "item_name <> '' -- 门诊（普通门诊），备注",       # a comment (found in review)
    "item_name <> '' /* 注释，x */",
])
def test_full_width_punctuation_in_strings_and_comments_is_text(tmp_path, where):
    assert compile_where(tmp_path, where).sql


def test_a_full_width_slip_in_a_multi_line_expression_names_its_line():
    from fraudscreen import expressions as ex

    with pytest.raises(ex.ExpressionError, match="full-width '；' at line 2, column 5"):
        ex.parse("x =\n  1 ；")
    ex.parse('"次数（次）" > 2')  # a quoted name may hold any text


@pytest.mark.parametrize("text, says", [
    ("  where: amount > 0\n  where: amount < 0\n", "key 'where' is given twice"),
    ("  where: item_code IN (:p)\nx: &a [1, 2]\ny: *a\n", "aliases (*name) are not allowed"),
])
def test_rule_files_refuse_repeated_keys_and_aliases(tmp_path, text, says):
    """A key given twice kept only the last silently; nested aliases in 1 KB expanded to
    gigabytes in `rules lint` (found in review)."""
    path = tmp_path / "rule.yaml"
    path.write_text(BASE.format(where="true").replace("  where: true\n", text),
                    encoding="utf-8")
    with pytest.raises(RuleError) as err:
        load_rule(path)
    assert says in str(err.value) and str(path) in str(err.value)


def test_a_subquery_column_that_names_the_rule_row_too_must_be_qualified(tmp_path):
    """Found in review: `p.person_id = person_id` inside EXISTS bound both sides to the
    subquery's table, so every fee line matched."""
    with pytest.raises(RuleError) as err:
        compile_where(tmp_path, "EXISTS (SELECT 1 FROM persons AS p "
                                "WHERE p.person_id = person_id AND p.gender = '2')")
    assert "'person_id' inside the subquery is its own table's column" in str(err.value)
    # found in review: the hint showed what was refused, `person_id IN (SELECT person_id
    # FROM …)`; it shows the form that works
    with pytest.raises(RuleError) as err:
        compile_where(tmp_path, "person_id IN (SELECT person_id FROM persons WHERE "
                                "gender = '2')")
    hint = "person_id IN (SELECT t.person_id FROM persons AS t WHERE t.…)"
    assert hint in str(err.value)
    compiled = compile_where(tmp_path, hint.replace("…", "gender = '2'"))
    assert "persons" in compiled.sql


@pytest.mark.parametrize(("where", "says"), [
    ("gender = '2'", "unknown column 'gender'; 'gender' is a column of persons, not of this "
                     "row: bring it in with a lookup, lookups: {gender: {source: persons, on: "
                     "[person_id], value: max(gender)}}, then use gender"),
    ("item_code IS NOT NULL AND kind = 'pharmacy'", "'kind' is a column of institutions, not "
                                                    "of this row: bring it in with a lookup"),
])
def test_a_column_of_another_table_says_which_and_how_to_bring_it_in(tmp_path, where, says):
    """Found in review: `gender` in a fee-line rule said only "unknown column 'gender'"."""
    with pytest.raises(RuleError) as err:
        compile_where(tmp_path, where)
    assert says in str(err.value)
    path = rule_file(tmp_path, where)
    path.write_text(path.read_text(encoding="utf-8").replace("  where:", re.search(
        r"lookups: (\{.*\}), then", str(err.value))[1].join(["  lookups: ", "\n  where:"])),
        encoding="utf-8")
    compile_rule(load_rule(path))  # the lookup shown works


def test_a_column_of_another_table_in_a_having_is_not_offered_a_lookup(tmp_path):
    """A lookup adds a column to the rows, not to a group: the hint would loop."""
    path = rule_file(tmp_path, "amount > 0\n  group_by: [person_id]\n  measures: "
                               "{n: count(*)}\n  having: n > 1 AND gender = '2'")
    path.write_text(path.read_text(encoding="utf-8").replace("kind: filter", "kind: aggregate")
                    .replace('"{settlement_id}"', '"{person_id}"\n  key: [person_id]'),
                    encoding="utf-8")
    with pytest.raises(RuleError) as err:
        compile_rule(load_rule(path))
    assert str(err.value).endswith("detect.having: unknown column 'gender'; 'gender' is a "
                                   "column of persons, not of this row"), str(err.value)


def test_an_empty_expression_is_refused_at_its_line(tmp_path):
    """Found in review: `where: ""` filtered nothing, so the rule flagged every row."""
    with pytest.raises(RuleError) as err:
        load_rule(rule_file(tmp_path, '""'))
    assert "detect.where: is empty: write an expression" in str(err.value)
    assert f"{tmp_path / 'rule.yaml'}:12:" in str(err.value)


@pytest.mark.parametrize(("a", "b", "says"), [
    (("site_a", "囤药"), ("site_a", "超量开药"), "family site_a is titled '囤药' in"),
    (("site_a", "囤药"), ("bed_holding", "挂床"), "bed_holding is a built-in family, named"),
    (("site_a", "囤药"), ("site_b", "   "), "family_title is empty"),
    (("site_a", "囤药"), ("site_b", "囤药"), "would be shown as '囤药', as family site"),
    (("site_a", "囤药"), ("site_b", "重复收费"),
     "family site_b would be shown as '重复收费', as family duplicate_charge is"),
    (("site_a", "囤药"), ("重复收费", None),  # an id written in Chinese, as before titles
     "family 重复收费 would be shown as '重复收费', as family duplicate_charge is"),
    (("site_a", "site_b"), ("site_b", None), "family site_a would be shown as 'site_b'"),
])
def test_a_family_has_one_title_and_a_built_in_one_keeps_its_own(tmp_path, a, b, says):
    """Found in review: two rules of one family titled differently gave a report whose
    rules table and family sections disagreed."""
    from fraudscreen.ruleset import RuleSet

    for i, (family, title) in enumerate((a, b)):
        text = BASE.format(where="amount > 1").replace("id: test.sandbox", f"id: test.r{i}")
        titled = f"\nfamily_title: '{title}'" if title is not None else ""
        (tmp_path / f"r{i}.yaml").write_text(text.replace(
            "family: duplicate_charge", f"family: {family}{titled}"), encoding="utf-8")
    with pytest.raises(RuleError) as err:
        RuleSet.load([tmp_path])  # with the built-in rules, as a run loads them
    assert says in str(err.value), str(err.value)


def test_names_are_compared_as_shown_whatever_the_file_order(tmp_path):
    """Found in review: a title was compared with the ids of families titled later."""
    from fraudscreen.ruleset import RuleSet

    for i, (family, title) in enumerate([("site_a", "site_b"), ("site_b", "乙类")]):
        text = BASE.format(where="amount > 1").replace("id: test.sandbox", f"id: test.r{i}")
        (tmp_path / f"r{i}.yaml").write_text(text.replace(
            "family: duplicate_charge", f"family: {family}\nfamily_title: '{title}'"),
            encoding="utf-8")
    titles = RuleSet.load([tmp_path]).family_titles()
    assert titles == {"site_a": "site_b", "site_b": "乙类"}


def test_a_rule_of_a_titled_family_shows_the_title_in_lint_and_its_page(tmp_path):
    """Found in review: lint said FS005 ('shown by its id') and `rules show` printed
    （—） for a rule whose family another rule titles."""
    from fraudscreen.lint import lint
    from fraudscreen.rule_docs import page
    from fraudscreen.ruleset import RuleSet

    for i, title in enumerate(["囤药", None]):
        text = BASE.format(where="amount > 1").replace("id: test.sandbox", f"id: test.r{i}")
        titled = f"\nfamily_title: '{title}'" if title else ""
        (tmp_path / f"r{i}.yaml").write_text(text.replace(
            "family: duplicate_charge", f"family: site_a{titled}"), encoding="utf-8")
    untitled = RuleSet.load([tmp_path], builtin=False).get("test.r1")
    assert "FS005" not in {f.code for f in lint(untitled)}
    assert "（囤药）" in page(untitled)


@pytest.mark.parametrize(("text", "says"), [
    ("item_name LIKE '%，%' AND a，b", "full-width '，' at column 27"),
    ("/* ， */ x，y", "full-width '，' at column 10"),
    ("\nx，y", "full-width '，' at line 2, column 2"),
    ("item_name = 'abc", "a quote is left open (the ' here is never closed)"),
])
def test_full_width_and_open_quotes_are_placed_exactly(text, says):
    """Found in review: the column was that of the first same character on the line,
    even inside a string or a comment; an open quote escaped as a TokenError."""
    from fraudscreen import expressions as ex

    with pytest.raises(ex.ExpressionError, match=re.escape(says)):
        ex.parse(text)


@pytest.mark.parametrize(("where", "place"), [
    # a literal block: the line within it, and the column past its indentation
    ("|\n    fee_category = '01'\n    AND amount > 100\n    AND quantiy > 3", ":15:9:"),
    # folded and plain blocks join their lines with spaces: still the line of the word
    (">-\n    fee_category = '01'\n    AND quantiy > 3", ":14:9:"),
    ("fee_category = '01'\n    AND quantiy > 3", ":13:9:"),
    # on the key's line, past the quote; the earlier 'quantiy' inside a string is not it
    ("\"item_name = 'quantiy' OR quantiy > 3\"", ":12:36:"),
    ("\"quantity > 1 AND (amount\"", ":12:29:"),  # a parse error: at its token
    ("|\n    amount > 0\n    AND getenv('HOME') = 'x'", ":14:9:"),
    ("|\n    amount > 0\n    AND quantity > :limt", ":14:20:"),
    # found in review: no offset from sqlglot on these; a quote that never closes
    ("|\n    amount > 0\n    AND charge_date < current_date", ":14:23:"),
    ("|\n    amount > 0\n    AND CAST(item_code AS INET) IS NULL", ":14:27:"),
    ("|\n    amount > 0\n    AND item_name = 'abc", ":14:21:"),
    # a double-quoted value: its opening quote and its escapes are not the text
    ('"amount > 0 AND \\"itme code\\" = \'x\'"', ":12:27:"),
    ('"item_name = \'a\\tb\' AND t > 0"', ":12:34:"),
])
def test_an_error_inside_a_multi_line_expression_names_its_own_line(tmp_path, where, place):
    """An unknown column on the third line of a `where: |` block was placed at the
    `where:` key (12:3), the parse error at 'column 28' of the whole block."""
    with pytest.raises(RuleError) as err:
        compile_where(tmp_path, where)
    assert str(err.value).startswith(f"{tmp_path / 'rule.yaml'}{place}"), str(err.value)


def test_a_parse_error_in_a_block_names_the_token_not_the_whole_block(tmp_path):
    with pytest.raises(RuleError) as err:
        compile_where(tmp_path, "|\n    amount > 0\n    AND (quantity > 3")
    assert f"{tmp_path / 'rule.yaml'}:14:" in str(err.value)
    assert "cannot parse near '3': Expecting )" in str(err.value), str(err.value)


def test_an_error_in_a_query_block_or_an_evidence_expression_names_its_line(tmp_path):
    path = rule_file(tmp_path, "amount > 0")
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("  message:", "  evidence:\n    n: quantity +\n"
                                 "      amout\n  message:"), encoding="utf-8")
    with pytest.raises(RuleError) as err:
        compile_rule(load_rule(path))
    assert str(err.value).startswith(f"{path}:17:7: rule test.sandbox: emit.evidence.n: "
                                     "unknown column 'amout'"), str(err.value)
    path.write_text(text.replace(
        "  kind: filter\n  source: fee_lines\n  where: amount > 0\n",
        "  kind: query\n  sql: |\n    SELECT settlement_id, sum(amount) AS amount\n"
        "    FROM fee_lines\n    GROUP BY settlment_id\n"), encoding="utf-8")
    with pytest.raises(RuleError) as err:
        compile_rule(load_rule(path))
    assert str(err.value).startswith(f"{path}:14:14: rule test.sandbox: detect.sql: "
                                     "unknown column 'settlment_id'"), str(err.value)


QUERY = BASE.replace("kind: filter\n  source: fee_lines\n  where: {where}\n",
                     "kind: query\n  sql: |\n    {where}\n")
STEP = "WITH s AS (SELECT settlement_id, amount FROM fee_lines) "


@pytest.mark.parametrize(("sql", "says"), [
    ("WITH RECURSIVE s AS (SELECT 1 AS n) SELECT n FROM s", "WITH RECURSIVE is not allowed"),
    ("SELECT settlement_id FROM (WITH s AS (SELECT settlement_id FROM fee_lines) "
     "SELECT settlement_id FROM s) AS x", "WITH goes once, at the start of the query"),
    ("WITH fee_lines AS (SELECT 1 AS amount) SELECT amount FROM fee_lines",
     "may not be named 'fee_lines': a source"),
    # a step reads only the steps before it: a later name would be a database table
    ("WITH a AS (SELECT * FROM b), b AS (SELECT amount FROM fee_lines) SELECT * FROM a",
     "unknown source 'b'"),
    ("WITH input_fee_lines AS (SELECT * FROM input_fee_lines) SELECT * FROM input_fee_lines",
     "unknown source 'input_fee_lines'"),
    (STEP + "SELECT * FROM s, read_csv('/etc/passwd')", "read_csv"),
    (STEP + "SELECT s.settlement_id, s.amont FROM s", "unknown column 's.amont'; did you mean"),
    ("SELECT x.settlement_id, x.amout FROM (SELECT settlement_id, amount FROM fee_lines) AS x",
     "unknown column 'x.amout'; did you mean 'amount'"),
    (STEP + "SELECT settlement_id, lag(amount) OVER (ORDER BY amount) AS before FROM s",
     "lag() is not allowed: it picks a row by its place"),
    (STEP + "SELECT settlement_id, row_number() OVER () AS n FROM s", "row_number()"),
    (STEP + "SELECT settlement_id, sum(amount) OVER (ORDER BY amount ROWS BETWEEN 1 "
     "PRECEDING AND CURRENT ROW) AS s2 FROM s", "a ROWS frame counts rows"),
    (STEP + "SELECT settlement_id FROM s ORDER BY amount", "ORDER BY: a query's rows are hits"),
    (STEP + "SELECT settlement_id FROM s LIMIT 5", "not allowed"),
    ("WITH hits AS (SELECT settlement_id FROM fee_lines) SELECT * FROM hits",
     "may not be named 'hits'"),
    ("WITH fee_line_rows AS (SELECT settlement_id FROM fee_lines) SELECT * FROM fee_line_rows",
     "may not be named 'fee_line_rows'"),
    # found in review: engines match names in any case
    ("WITH HITS AS (SELECT settlement_id FROM fee_lines) SELECT * FROM HITS",
     "may not be named 'HITS'"),
    ("WITH Settlements AS (SELECT settlement_id FROM fee_lines) SELECT * FROM settlements",
     "may not be named 'Settlements'"),
    ("WITH a AS (SELECT amount FROM fee_lines), A AS (SELECT amount FROM fee_lines) "
     "SELECT * FROM a", "may not be named 'A'"),
    # found in review: forms whose answer is not fixed, or that Spark cannot run
    ("SELECT DISTINCT ON (person_id) person_id, item_code FROM fee_lines", "DISTINCT ON"),
    ("SELECT s.settlement_id FROM settlements AS s ASOF JOIN fee_lines AS f "
     "ON s.person_id = f.person_id AND s.admit_time >= f.charge_time", "ASOF JOIN"),
    ("SELECT settlement_id FROM settlements POSITIONAL JOIN persons", "POSITIONAL JOIN"),
    ("SELECT settlement_id FROM settlements NATURAL JOIN fee_lines", "NATURAL JOIN"),
    ("SELECT settlement_id FROM settlements UNION BY NAME SELECT settlement_id FROM fee_lines",
     "UNION BY NAME"),

])
def test_a_query_s_steps_windows_and_unions_stay_in_the_sandbox(tmp_path, sql, says):
    path = tmp_path / "q.yaml"
    path.write_text(QUERY.format(where=sql), encoding="utf-8")
    with pytest.raises(RuleError) as err:
        compile_rule(load_rule(path))
    assert says in str(err.value), str(err.value)
    assert str(err.value).startswith(f"{path}:12:"), str(err.value)  # its line in the block


@pytest.mark.parametrize(("where", "at"), [
    ("amount > avg(amount) OVER (PARTITION BY item_code)", ":12:19:"),
    ("|\n    amount > 0\n    AND rank() OVER (ORDER BY amount) = 1", ":14:9:"),
])
def test_window_functions_stay_in_the_query_kind(tmp_path, where, at):
    """It said "Window ('RANK() OVER (ORDER BY amount)') is not allowed", sqlglot's class
    name and no way out."""
    with pytest.raises(RuleError) as err:
        compile_where(tmp_path, where)
    assert str(err.value).startswith(f"{tmp_path / 'rule.yaml'}{at}") and "a window " \
        "function (… OVER …) is allowed only in the query kind's sql: compare a row with " \
        "its neighbours with the sequence or window kind, or write the rule as a query" in \
        str(err.value), str(err.value)


AMBIGUOUS = ("SELECT settlement_id, count(*) AS lines FROM settlements AS s JOIN fee_lines AS f "
             "ON s.settlement_id = f.settlement_id GROUP BY settlement_id")


def test_a_query_duckdb_cannot_bind_is_a_rule_error_not_a_traceback(tmp_path):
    """Found in review: an ambiguous column crashed lint, and run lost every rule's
    results with a traceback."""
    path = tmp_path / "q.yaml"
    path.write_text(QUERY.format(where=AMBIGUOUS), encoding="utf-8")
    says = "detect.sql: Binder Error: Ambiguous reference to column name \"settlement_id\""
    with pytest.raises(RuleError, match=re.escape(f"{path}:11:3: rule test.sandbox: {says}")):
        compile_rule(load_rule(path))
    result = CliRunner().invoke(app, ["rules", "lint", str(path)])
    assert result.exit_code == 1 and f"{path}:11:3: FS004" in result.output, result.output
    data = Path(__file__).resolve().parents[1] / "sample_claims" / "data"
    result = CliRunner().invoke(app, ["run", "--data", str(data), "--out", str(tmp_path / "o"),
                                      "--rules", str(path), "--only", "test.sandbox"])
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.exception
    import json

    outcome = json.loads((tmp_path / "o" / "run.json").read_text(encoding="utf-8"))["rules"][0]
    assert outcome["status"] == "failed" and says in outcome["reason"], outcome


def test_a_key_that_is_a_mapping_is_a_yaml_error_not_a_traceback(tmp_path):
    """Found in review: `limit: {{type: int, default: 3}}` (braces doubled) crashed
    loading with 'unhashable type'."""
    path = tmp_path / "rule.yaml"
    path.write_text(BASE.format(where="amount > 1").replace("{type: int", "{{type: int")
                    .replace("default: 3}", "default: 3}}"), encoding="utf-8")
    with pytest.raises(RuleError, match=re.escape(f"{path}:8:11: not valid YAML: a key must "
                                                  "be a name")):
        load_rule(path)


def test_a_parameter_may_open_a_select_list_or_sit_in_parentheses(tmp_path):
    """Found in review: sqlglot read `SELECT :limit AS n` as DuckDB's `alias: value` and
    `(:limit)` not at all: valid queries refused with sqlglot's words."""
    path = tmp_path / "q.yaml"
    path.write_text(QUERY.format(where="SELECT :limit AS n, settlement_id, (:limit + 1) AS m, "
                                       "amount FROM fee_lines WHERE quantity > (:limit)"),
                    encoding="utf-8")
    sql = compile_rule(load_rule(path)).sql
    assert "SELECT 3 AS n, settlement_id, (3 + 1) AS m" in sql and "quantity > (3)" in sql


@pytest.mark.parametrize(("where", "compiled"), [
    ("quantity > least(:limit,:limit)", "quantity > LEAST(3, 3)"),
    ("quantity IN (:limit,:limit)", "quantity IN (3, 3)"),
    ("quantity > :limit-:limit", "quantity > 3 - 3"),
    ("quantity BETWEEN :limit AND:limit", "quantity BETWEEN 3 AND 3"),
    # text holding no declared parameter stays text (':limit' is refused: above)
    ("item_code = ':lim' AND quantity>:limit", "item_code = ':lim' AND quantity > 3"),
])
def test_parameters_next_to_punctuation_are_read_as_before(tmp_path, where, compiled):
    """Found in review: reading `:a` as `$a` made `least(:a,:b)` a $-quoted string."""
    assert compiled in compile_where(tmp_path, f'"{where}"').sql


@pytest.mark.parametrize("where", [
    "\"EXTRACT(year FROM charge_time) = 2024 AND date_diff('day', charge_time, charge_time)"
    " < 1\"",
    "\"charge_time > TIMESTAMP '2024-01-01' - INTERVAL 3 DAY\"",
    "\"CAST(amount AS DECIMAL(16, 2)) > 0 AND date_trunc('month', charge_time) IS NOT NULL\"",
])
def test_units_and_type_parameters_as_rules_write_them_are_allowed(tmp_path, where):
    for dialect in ("duckdb", "spark"):
        assert "hits" in compile_where(tmp_path, where).sql_for(dialect)


def test_the_statement_an_engine_runs_is_checked_too(tmp_path):
    """Defence in depth: what reaches the engine is parsed again in its dialect, and a
    table function or an unknown table there fails the rule (it was an AssertionError
    that ended the run)."""
    compiled = compile_where(tmp_path, "amount > 0")
    for read in ("read_text('/etc/hostname')", "input_fee_lines", "main.fee_lines"):
        compiled.sql = f"WITH hits AS (SELECT * FROM {read}) SELECT * FROM hits"
        for dialect in ("duckdb", "spark"):
            with pytest.raises(RuleError, match="refused: the compiled SQL reads"):
                compiled.sql_for(dialect)


def test_an_expression_nested_too_deeply_fails_its_rule_not_the_run(tmp_path):
    with pytest.raises(RuleError, match="nested too deeply"):
        compile_where(tmp_path, '"' + "(" * 3000 + "amount > 0" + ")" * 3000 + '"')


def test_an_engines_database_is_sealed_once_its_inputs_are_registered(tmp_path):
    """Defence in depth (found in review: SQL that slipped the checks read a file): after
    registering, the run's database reads no file outside the inputs' folders and
    changes no setting, while the inputs themselves still read."""
    import duckdb
    import polars as pl

    from fraudscreen import sources
    from fraudscreen.engine_duckdb import DuckDBEngine
    from fraudscreen.ingest import load_folder
    from fraudscreen.testing import table

    secret = tmp_path / "elsewhere" / "secret.csv"
    secret.parent.mkdir()
    secret.write_text("a\n1\n", encoding="utf-8")
    data = tmp_path / "data"
    data.mkdir()
    for name in ("settlements", "fee_lines"):
        table(name, []).write_parquet(data / f"{name}.parquet")
    engine = DuckDBEngine()
    with load_folder(data) as ingestion:
        engine.register(ingestion.tables)
        assert engine.query("SELECT count(*) AS n FROM input_fee_lines").item() == 0
        for statement in (f"SELECT * FROM read_csv('{secret}')", "SET threads = 1"):
            with pytest.raises(duckdb.Error, match="disabled|locked"):
                engine.query(statement)
    engine.close()
    with pytest.raises(ValueError, match="disabled"):  # binding a query rule's SQL
        sources.describe(f"SELECT * FROM read_csv('{secret}')")
    assert pl.read_csv(secret)["a"].to_list() == [1]  # the file is there


def test_evidence_names_that_differ_only_in_case_are_an_error_naming_them(tmp_path):
    """Found in review: `evidence: {Qty: quantity, qty: amount}` failed at run time with a
    bare KeyError."""
    path = tmp_path / "rule.yaml"
    path.write_text(BASE.format(where='"amount > 0"').replace(
        "  amount_at_risk: amount\n",
        "  amount_at_risk: amount\n  evidence: {Qty: quantity, qty: amount}\n"),
        encoding="utf-8")
    with pytest.raises(RuleError, match="'Qty' and 'qty' differ only in letter case") as err:
        load_rule(path)
    assert f"{path}:" in str(err.value)


@pytest.mark.parametrize("name", ["amount", "AMOUNT", "Amount"])
def test_a_lookup_named_as_a_source_column_in_any_letter_case_is_an_error(tmp_path, name):
    """Found in review: a lookup `AMOUNT` on fee_lines was silently the line's `amount`
    (SQL names ignore letter case)."""
    path = tmp_path / "rule.yaml"
    path.write_text(BASE.format(where='"amount > 0"').replace(
        "  source: fee_lines\n",
        f"  source: fee_lines\n  lookups:\n    {name}:\n      source: catalog\n"
        "      on: [item_code]\n      value: max(price_cap)\n"), encoding="utf-8")
    with pytest.raises(RuleError, match=f"lookup '{name}' hides a source column"):
        compile_rule(load_rule(path))


@pytest.mark.parametrize("name", ["__t", "prev__amount"])
def test_a_lookup_named_like_the_compilers_own_columns_is_an_error(tmp_path, name):
    """The compiler's columns hold '__' (a window's __t, a sequence's prev__amount):
    a lookup of that name beside one would be read as the other."""
    path = tmp_path / "rule.yaml"
    path.write_text(BASE.format(where='"amount > 0"').replace(
        "  source: fee_lines\n",
        f"  source: fee_lines\n  lookups:\n    {name}:\n      source: catalog\n"
        "      on: [item_code]\n      value: max(price_cap)\n"), encoding="utf-8")
    with pytest.raises(RuleError) as err:
        compile_rule(load_rule(path))
    assert str(err.value).startswith(f"{path}:13:5: ") and f"lookup {name!r} holds '__', as " \
        "the compiler's own columns do (__run, prev__amount …): rename the lookup" in \
        str(err.value), str(err.value)


def test_query_columns_that_differ_only_in_case_are_an_error(tmp_path):
    """Found in review: `quantity AS "A", amount AS a` compiled, and emit's `a` read the
    quantity."""
    path = tmp_path / "rule.yaml"
    path.write_text(BASE.format(where='"x"').replace(
        "  kind: filter\n  source: fee_lines\n  where: \"x\"\n",
        "  kind: query\n  sql: 'SELECT settlement_id, quantity AS \"A\", amount AS a FROM "
        "fee_lines'\n"), encoding="utf-8")
    with pytest.raises(RuleError, match="columns 'A', 'a' differ only in letter case"):
        compile_rule(load_rule(path))
    # the same name twice (s.*, f.*) is one column to emit, as it was
    path.write_text(path.read_text(encoding="utf-8").replace(
        'settlement_id, quantity AS "A", amount AS a FROM fee_lines',
        "s.settlement_id, f.settlement_id, f.amount FROM fee_lines AS f JOIN "
        "settlements AS s ON s.settlement_id = f.settlement_id"), encoding="utf-8")
    assert "s.settlement_id" in path.read_text(encoding="utf-8")
    assert "hits" in compile_rule(load_rule(path)).sql


def test_a_statement_in_an_expression_is_refused_without_sqlglots_log_line(tmp_path):
    """Found in review: linting `CALL …` also printed sqlglot's "Falling back to parsing as
    a 'Command'" to the analyst."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "fraudscreen.cli", "rules", "lint",
         str(rule_file(tmp_path, '"CALL pragma_version()"'))], capture_output=True, text=True)
    said = result.stdout + result.stderr
    assert "Command ('CALL pragma_version()') is not allowed" in said
    assert "Falling back" not in said


@pytest.mark.parametrize(("where", "at", "says"), [
    ("item_code = 250403067", ":12:22:", "item_code is text and 250403067 a number: quote the "
                                         "code, '250403067'"),
    ("fee_category = 01", ":12:25:", "quote the code, '01'"),
    ("amount > 0 AND fee_category IN ('02', 7)", ":12:48:", "quote the code, '7'"),
    ("settlement_id > 0", ":12:26:", "settlement_id is text and 0 a number"),
])
def test_a_code_compared_with_an_unquoted_number_is_refused_where_it_is(tmp_path, where, at,
                                                                         says):
    """Found in review: no finding, and `item_code = 250403067` failed on the night's data
    with a ConversionException naming no place."""
    with pytest.raises(RuleError) as err:
        compile_where(tmp_path, where)
    assert str(err.value).startswith(f"{tmp_path / 'rule.yaml'}{at}") and says in \
        str(err.value), str(err.value)


def test_a_number_compared_with_a_number_is_no_code(tmp_path):
    compile_where(tmp_path, "quantity > 2 AND amount BETWEEN 1 AND 5 AND item_code = '01'")


NAMED_LIKE_A_CODE = """\
id: site.level_lookup
version: "1"
family: site
family_title: 站点
title: 三级医院门诊次数
description: 测试。
severity: low
status: experimental
references: [x]
scope: institution
{detect}emit:
  amount_at_risk: "0"
  evidence: {{visits: visits}}
  message: "{{institution_id}} {{visits}}"
  key: [institution_id]
"""


@pytest.mark.parametrize("detect", [
    """\
detect:
  kind: aggregate
  source: settlements
  lookups:
    level: {source: institutions, on: [institution_id], value: max(CAST(level AS INTEGER))}
  where: level >= 3
  group_by: [institution_id]
  measures: {visits: count(*)}
  having: visits > 1
""",
    """\
detect:
  kind: query
  sql: |
    WITH inst AS (
      SELECT institution_id, CAST(level AS INTEGER) AS level FROM institutions
    )
    SELECT s.institution_id, count(*) AS visits
    FROM settlements AS s JOIN inst AS i ON i.institution_id = s.institution_id
    WHERE i.level >= 3
    GROUP BY s.institution_id
""",
    """\
detect:
  kind: query
  sql: |
    WITH both_kinds AS (
      SELECT institution_id, 1 AS kind FROM settlements WHERE medical_type = '21'
      UNION ALL
      SELECT institution_id, 2 AS kind FROM settlements WHERE medical_type = '11'
    )
    SELECT institution_id, count(*) AS visits FROM both_kinds WHERE kind = 1
    GROUP BY institution_id
""",
], ids=["lookup", "with-step", "union-column"])
def test_a_value_of_the_rules_own_named_like_a_code_is_no_code(tmp_path, detect):
    """Found in review: a lookup `level` holding max(CAST(level AS INTEGER)), a WITH step's
    `CAST(level AS INTEGER) AS level` and a union's `1 AS kind` were refused as text
    compared with a number, and the rule failed every night."""
    path = tmp_path / "rule.yaml"
    path.write_text(NAMED_LIKE_A_CODE.format(detect=detect), encoding="utf-8")
    assert "visits" in compile_rule(load_rule(path)).sql


@pytest.mark.parametrize(("where", "at", "says"), [
    ("with_name(item_code) = 'X'", ":12:10:",
     "with_name() takes 2 arguments, not 1: write it as with_name(item_code, item_name)"),
    ("amount > 0 AND 'X' = with_name(item_code, item_name, line_id)", ":12:31:", "not 3"),
    ("amount > 0 AND 'X' = with_name(item_code, amount)", ":12:52:",
     "with_name() takes text, an item's code and its name, and amount is DECIMAL"),
    ("with_name(1, item_name) = 'X'", ":12:20:", "and 1 is INT: cast it to VARCHAR"),
    ("|\n    amount > 0\n    AND with_name(item_code, CAST(item_name AS DATE)) = 'X'",
     ":14:35:", "and CAST(item_name AS DATE) is DATE"),
])
def test_a_wrong_call_of_with_name_is_refused_where_it_is(tmp_path, where, at, says):
    """with_name counts its arguments and refuses one known not to be text (as the code,
    DuckDB's CASE would fail on the night's data; as the name, each engine would write the
    number its own way), naming the file, line and column, as a refused function is."""
    with pytest.raises(RuleError) as err:
        compile_where(tmp_path, where)
    assert str(err.value).startswith(f"{tmp_path / 'rule.yaml'}{at}") and says in \
        str(err.value), str(err.value)


@pytest.mark.parametrize(("where", "at", "says"), [
    ("nullif(amount) > 0", ":12:10:", "nullif() takes 2 arguments, not 1: write it as "
                                      "nullif(quantity, 0)"),
    ("amount > 0 AND coalesce() > 0", ":12:25:", "coalesce() takes at least 1 argument, "
                                                 "not 0: write it as coalesce(price_cap, 0)"),
    ("date_diff('day', charge_date) > 0", ":12:10:",
     "date_diff() takes 3 arguments, not 2: write it as date_diff('day', admit_date, "
     "discharge_date)"),
    ("round() > 0", ":12:10:", "round() takes 1 or 2 arguments, not 0"),
    ("least(amount) > 0", ":12:10:", "least() takes at least 2 arguments, not 1"),
    ("extract(year) > 2023", ":12:10:", "write it as extract(year FROM charge_date)"),
    # sqlglot read these as floor(amount, 1) and substring(item_code): no error, another rule
    ("floor(amount, 1, 2) > 0", ":12:10:", "floor() takes 1 argument, not 3"),
    ("substr(item_code) = 'x'", ":12:10:", "substr() takes 2 or 3 arguments, not 1"),
    # named as written, inside a block, an alias, a call nested in another
    ("|\n    amount > 0\n    AND NULLIF(quantity) > 0", ":14:9:", "NULLIF() takes 2 arguments"),
    ("ifnull() IS NULL", ":12:10:", "ifnull() takes at least 1 argument, not 0: write it as "
                                    "coalesce("),
    ("abs(round(amount, 2, 3)) > 0", ":12:14:", "round() takes 1 or 2 arguments, not 3"),
])
def test_an_allowed_function_with_too_few_or_too_many_arguments_is_refused_where_it_is(
        tmp_path, where, at, says):
    """Found in review: `nullif(a)` said "Required keyword: 'expression' missing for <class
    'sqlglot.expressions.Nullif'>", and `floor(amount, 1, 2)` compiled without its third."""
    with pytest.raises(RuleError) as err:
        compile_where(tmp_path, where)
    assert str(err.value).startswith(f"{tmp_path / 'rule.yaml'}{at}") and says in \
        str(err.value), str(err.value)


@pytest.mark.parametrize("where", [
    "extract(year FROM charge_date) > 2023", "substring(item_code FROM 1 FOR 2) = '25'",
    "trim(BOTH ' ' FROM item_name) <> ''", "count_if(item_code IN ('a', 'b')) > 0",
    "coalesce((SELECT max(c.price_cap) FROM catalog AS c WHERE c.item_code = '1'), 0) > 0",
    "position('注射' IN item_name) > 0", "strpos(item_name, '注射') > 0",
    "position('注' IN trim(BOTH ' ' FROM item_name)) > count_if(item_code IN ('a', 'b'))",
])
def test_arguments_are_counted_as_sql_separates_them(where):
    """FROM and FOR separate arguments in SQL's spellings, as IN does POSITION's (found in
    review: `position('注射' IN item_name)`, strpos as SQL spells it, was refused as
    "position() takes 2 arguments, not 1"); a subquery's and an IN list's commas are
    theirs."""
    from fraudscreen import expressions as ex

    scope = ex.Scope(columns={"": {"charge_date", "item_code", "item_name"}},
                     tables={"catalog": {"item_code", "price_cap"}}, aggregates=True)
    ex.check(ex.parse(where), scope)


def test_the_call_a_refusal_shows_is_one_a_rule_may_write():
    """Each allowed function's example, which a call with too few or too many arguments
    is told to copy, passes the checks and is read as a function that takes as many."""
    from fraudscreen import expressions as ex

    scope = ex.Scope(columns={"": {"amount", "quantity", "item_code", "item_name",
                                   "charge_date", "charge_time", "price_cap", "person_id",
                                   "admit_date", "discharge_date", "related_settlement_ids"}},
                     aggregates=True)
    for takes in ex._FUNCTIONS.values():  # date_trunc is read as TimestampTrunc
        assert ex._FUNCTIONS[type(ex.check(ex.parse(takes.call), scope))] == takes, takes.call


def test_with_name_takes_text_it_cannot_type_and_the_rules_own_names():
    """A value only the engine can type (an aggregate, a parameter) and a measure named
    like a number column are no refusal: the check refuses only what is known."""
    from fraudscreen import expressions as ex

    scope = ex.Scope(columns={"": {"item_code", "item_name", "amount"}}, params={"label"},
                     aggregates=True, named={"amount"})
    for text in ("with_name(item_code, min(item_name))", "with_name(item_code, :label)",
                 "with_name(item_code, amount)", "with_name(item_code, NULL)"):
        assert isinstance(ex.check(ex.parse(text), scope), ex.WithName), text
