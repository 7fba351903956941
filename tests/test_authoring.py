"""Writing a rule: starting one from another, and testing and linting the files an
analyst names."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from fraudscreen.cli import app
from fraudscreen.resources import shipped
from fraudscreen.rule import load_rule
from fraudscreen.ruleset import RuleSet
from fraudscreen.testing import run_test
from test_sandbox import rule_file

BUILT_IN = RuleSet.load().rules


@pytest.mark.parametrize("rule", BUILT_IN, ids=[r.id for r in BUILT_IN])
def test_a_new_rule_is_its_model_under_a_new_id(tmp_path, rule):
    result = CliRunner().invoke(app, ["rules", "new", "site_a.copy", "--like", rule.id,
                                      "--out", str(tmp_path / "site")])
    assert result.exit_code == 0, result.output
    path = tmp_path / "site" / "copy.yaml"
    new = load_rule(path)
    assert (new.id, new.family, new.version, new.status) == (
        "site_a.copy", "site_a", "1", "experimental")
    assert new.model_dump(exclude={"id", "family", "version", "status"}) == \
        rule.model_dump(exclude={"id", "family", "version", "status"})
    assert [p.name for p in path.parent.iterdir()] == ["copy.yaml"]  # no partial file left


@pytest.mark.parametrize("model", ["split_hospitalisation.readmission",
                                   "pharmacy_card_skimming.hoarding"])
def test_a_new_rule_passes_its_model_s_tests_before_it_is_changed(tmp_path, model):
    CliRunner().invoke(app, ["rules", "new", "site_a.copy", "--like", model, "--out",
                             str(tmp_path)])
    new = load_rule(tmp_path / "copy.yaml")
    assert new.tests and all(run_test(new, t).passed for t in new.tests)


@pytest.mark.parametrize(("args", "says"), [
    (["Site.x", "--like", "bed_holding.idle_stay"], "write FAMILY.NAME in lower-case"),
    (["bed_holding.idle_stay", "--like", "bed_holding.idle_stay"], "exists already"),
    (["site_a.y", "--like", "bed_holding.idle_sty"], "did you mean 'bed_holding.idle_stay'"),
    (["site_a.taken", "--like", "bed_holding.idle_stay"], "taken.yaml exists"),
])
def test_a_new_rule_is_refused_with_a_reason(tmp_path, args, says):
    (tmp_path / "taken.yaml").write_text("kept", encoding="utf-8")
    result = CliRunner().invoke(app, ["rules", "new", *args, "--out", str(tmp_path)])
    assert result.exit_code == 2 and says in result.output, result.output
    assert [p.name for p in tmp_path.iterdir()] == ["taken.yaml"]
    assert (tmp_path / "taken.yaml").read_text(encoding="utf-8") == "kept"


def test_a_new_rule_from_an_odd_file_is_refused_and_leaves_nothing(tmp_path):
    """Found in review: a value on the line after its key named a deleted scratch file,
    `--out` naming a file gave '[Errno 17]', and a refused copy left its folder behind."""
    path = rule_file(tmp_path, "amount > 1")
    path.write_text(path.read_text(encoding="utf-8").replace(
        'version: "1"', 'version:\n  "1"'), encoding="utf-8")
    out = tmp_path / "new"
    result = CliRunner().invoke(app, ["rules", "new", "site_a.x", "--like", "test.sandbox",
                                      "--rules", str(path), "--out", str(out)])
    assert result.exit_code == 2 and f"{path}:2:1: rule test.sandbox: version: its value is " \
        "not on the key's line" in result.output, result.output
    assert not out.exists()
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    result = CliRunner().invoke(app, ["rules", "new", "site_a.x", "--like",
                                      "bed_holding.idle_stay", "--out", str(tmp_path / "afile")])
    assert result.exit_code == 2 and "is a file: name a folder" in result.output


def test_a_rule_named_twice_is_tested_once(tmp_path):
    path = tmp_path / "Copy.YAML"
    CliRunner().invoke(app, ["rules", "new", "site_a.copy", "--like",
                             "split_hospitalisation.readmission", "--out", str(tmp_path)])
    (tmp_path / "copy.yaml").rename(path)
    result = CliRunner().invoke(app, ["rules", "test", str(path), "site_a.copy"])
    assert result.exit_code == 0, result.output
    ran = [line for line in result.output.splitlines() if " :: " in line]
    assert len(ran) == len(load_rule(path).tests), result.output


def test_a_family_title_goes_only_with_its_family(tmp_path):
    path = rule_file(tmp_path, "amount > 1")
    text = path.read_text(encoding="utf-8").replace(
        "family: duplicate_charge", "family: site_b\nfamily_title: 超量开药")
    path.write_text(text.replace('version: "1"\n', 'version: "3"\n'), encoding="utf-8")
    for new_id, title in [("site_b.other", "超量开药"), ("site_c.other", None)]:
        out = tmp_path / new_id
        result = CliRunner().invoke(app, ["rules", "new", new_id, "--like", "test.sandbox",
                                          "--rules", str(path), "--out", str(out)])
        assert result.exit_code == 0, result.output
        new = load_rule(out / "other.yaml")
        assert (new.family_title, new.version, new.status) == (title, "1", "experimental")



def test_lint_and_test_take_the_rule_files_an_analyst_names(tmp_path):
    """`fraudscreen rules lint my_rule.yaml` was 'unexpected extra argument', and
    `rules test my_rule.yaml` 'no rule'."""
    path = rule_file(tmp_path, "|\n    amount > 0\n    AND quantiy > 3")
    result = CliRunner().invoke(app, ["rules", "lint", str(path)])
    assert result.exit_code == 1, result.output
    assert f"{path}:14:9: FS004 [error] test.sandbox: rule does not compile" in result.output
    assert "duplicate_charge." not in result.output  # only the named file's findings
    assert result.output.rstrip().endswith("error(s)")
    result = CliRunner().invoke(app, ["rules", "test", str(path)])
    assert result.exit_code == 1 and f"FAIL test.sandbox: {path}:1:1: no tests: add a case " \
        "the rule should flag" in result.output, result.output
    # the built-ins are loaded too: an id taken by a built-in rule is an error
    path.write_text(path.read_text(encoding="utf-8").replace(
        "id: test.sandbox", "id: duplicate_charge.daily_cap"), encoding="utf-8")
    result = CliRunner().invoke(app, ["rules", "lint", str(path)])
    assert result.exit_code == 2 and "duplicate rule id" in result.output, result.output


def test_a_built_in_rule_named_by_its_file_is_tested_once():
    path = shipped("rules") / "duplicate_charge" / "daily_cap.yaml"
    result = CliRunner().invoke(app, ["rules", "test", str(path),
                                      "split_hospitalisation.readmission"])
    assert result.exit_code == 0, result.output
    ran = [line.split(" :: ")[0] for line in result.output.splitlines() if " :: " in line]
    assert set(ran) == {"PASS duplicate_charge.daily_cap", "PASS split_hospitalisation.readmission"}
    assert ran.count("PASS duplicate_charge.daily_cap") == len(
        load_rule(path).tests), result.output



@pytest.mark.parametrize("name", ["site/idle.yml", "site/IDLE.YAML", "site/sub/idle.Yml",
                                  "reference/site_rules/idle.yaml",
                                  "site/reference/idle.yaml"])
def test_a_rules_folder_gives_every_yaml_file_in_it(tmp_path, name):
    """Found in review: `--rules FOLDER` skipped *.yml and *.YAML files, and any file with
    a folder named `reference` on its path: `rules test` passed having tested nothing,
    and `run` screened without the analyst's rule."""
    CliRunner().invoke(app, ["rules", "new", "site_a.idle", "--like", "bed_holding.idle_stay",
                             "--out", str(tmp_path / "made")])
    path = tmp_path / name
    path.parent.mkdir(parents=True)
    (tmp_path / "made" / "idle.yaml").rename(path)
    root = tmp_path / name.split("/")[0]
    (root / ".github").mkdir()
    (root / ".github" / "ci.yml").write_text("on: push\n", encoding="utf-8")  # not a rule
    assert [r.id for r in RuleSet.load([root], builtin=False).rules] == ["site_a.idle"]
    result = CliRunner().invoke(app, ["rules", "test", str(root)])
    assert result.exit_code == 0 and "PASS site_a.idle" in result.output, result.output


def test_a_rules_folder_without_a_rule_file_is_an_error(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "idle.yaml.txt").write_text("x", encoding="utf-8")
    for command in (["rules", "test"], ["rules", "lint"], ["rules", "list", "--rules"]):
        result = CliRunner().invoke(app, [*command, str(tmp_path / "site")])
        assert result.exit_code == 2 and "no rule files (*.yaml or *.yml) in the folder " \
            f"{tmp_path / 'site'}" in result.output, (command, result.output)


def test_the_shipped_rules_reference_data_is_not_read_as_rules(tmp_path, monkeypatch):
    from fraudscreen import ruleset

    (tmp_path / "rules" / "site").mkdir(parents=True)
    rule_file(tmp_path / "rules" / "site", "amount > 1")
    (tmp_path / "rules" / "reference").mkdir()
    (tmp_path / "rules" / "reference" / "pairs.yaml").write_text("- [a, b]\n",
                                                                 encoding="utf-8")
    monkeypatch.setattr(ruleset, "shipped", lambda name: tmp_path / name)
    assert [p.name for p in ruleset.rule_files(tmp_path / "rules")] == ["rule.yaml"]


LOOKUP = """  lookups:
    price_cap: {source: catalog, on: [item_code], value: max(price_cap)}
"""


@pytest.mark.parametrize(("where", "says"), [
    ("price_cap > '0x'", ":14:49: FS011 [error] test.sandbox: a text value compared with a "
                         "number, date or time cannot be read as one: '0x' cannot be read "
                         "as DECIMAL(16, 4) (compared with price_cap)"),
    ("charge_date >= '2024-13-01'", ":14:52: FS011"),
    ("charge_date BETWEEN '2024-01-01' AND '2024-02-30'", ":14:74: FS011"),
    ("quantity IN (1, 'two')", ":14:53: FS011"),
    ("charge_time > '2024-03-01 25:00'", ":14:51: FS011"),
    ("charge_date >= :since", ":8:34: FS011"),  # the parameter's value, where it is written
    # found in review: the same text twice is placed at the one after its column
    ("item_code = '0x' AND amount > '0x'", ":14:67: FS011"),
    ("item_name = 'it''s' AND quantity > 'it''s'", ":14:72: FS011"),
    # found in review: a typed literal passed lint and failed on the night's first row
    ("charge_date >= DATE '2024-02-30'", ":14:57: FS011 [error] test.sandbox: a text value "
     "compared with a number, date or time cannot be read as one: '2024-02-30' cannot be "
     "read as DATE, so the rule"),
    ("amount > CAST('1,000' AS DECIMAL(16, 2))", ":14:51: FS011"),
])
def test_text_that_cannot_be_read_as_its_column_s_type_is_a_lint_error(tmp_path, where, says):
    """Found in review: `price_cap > '0x'` passed lint (DuckDB converts it only when a row
    reaches it) and failed the night's run."""
    path = rule_file(tmp_path, f"price_cap IS NOT NULL AND {where}")
    path.write_text(path.read_text(encoding="utf-8").replace(
        "  where:", LOOKUP + "  where:").replace(
        "  limit: {type: int, default: 3}", "  since: {type: string, default: '2024-02-30'}"),
        encoding="utf-8")
    result = CliRunner().invoke(app, ["rules", "lint", str(path)])
    assert result.exit_code == 1 and f"{path}{says}" in result.output, result.output


@pytest.mark.parametrize("where", ["charge_date >= '2024-02-29'", "item_code = '0x'",
                                   "quantity IN (1, '2.5')", "charge_time > '2024-03-01 23:59'",
                                   # found in review: DuckDB reads these as an interval and
                                   # a number; sqlglot types the difference as a time, a date
                                   "charge_time - admit_time > '2 days'",
                                   "discharge_date - admit_date > '3'"])
def test_text_a_column_can_read_is_no_lint_error(tmp_path, where):
    result = CliRunner().invoke(app, ["rules", "lint", str(rule_file(tmp_path, where))])
    assert "FS011" not in result.output and "FS004" not in result.output, result.output


def test_a_rule_page_shows_a_multi_line_expression_as_a_block(tmp_path):
    """It was one escaped string: "amount > 0\\nAND quantity > 3\\n"."""
    from fraudscreen.rule_docs import page

    rule = load_rule(rule_file(tmp_path, "|\n    amount > 0\n    AND quantity > :limit"))
    assert "where: |\n  amount > 0\n  AND quantity > :limit\n" in page(rule)


def test_a_new_rule_keeps_the_comments_on_the_lines_it_rewrites(tmp_path):
    path = rule_file(tmp_path, "amount > 1")
    path.write_text(path.read_text(encoding="utf-8").replace(
        "id: test.sandbox", 'id: "test.sandbox"   # 规则编号').replace(
        'version: "1"', 'version: "7"  # bump me'), encoding="utf-8")
    result = CliRunner().invoke(app, ["rules", "new", "site_a.x", "--like", "test.sandbox",
                                      "--rules", str(path), "--out", str(tmp_path / "new")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "new" / "x.yaml").read_text(encoding="utf-8")
    assert text.startswith('id: site_a.x   # 规则编号\nversion: "1"  # bump me\n'), text


@pytest.mark.parametrize("rule_id", ["Site_A.Night", "site-a.night", "night_outpatient",
                                     "site_a.夜间门诊", "site_a.2night"])
def test_a_malformed_rule_id_says_how_to_write_one(tmp_path, rule_id):
    """Found in review: every one of these was 'id: is empty: write an expression'."""
    path = rule_file(tmp_path, "amount > 1")
    path.write_text(path.read_text(encoding="utf-8").replace(
        "id: test.sandbox", f"id: {rule_id}"), encoding="utf-8")
    result = CliRunner().invoke(app, ["rules", "lint", str(path)])
    assert result.exit_code == 2 and f"{path}:1:1: id: write FAMILY.NAME in lower-case " \
        f"letters, digits and _, each part starting with a letter (e.g. " \
        f"site_a.night_visits), not '{rule_id}'" in result.output, result.output


@pytest.mark.parametrize(("value", "reads"), [
    (30871.195, "30871.19"), (3.5, "3.50"), (2.0, "2.00"), (0.0, "0.00"),
    (1e20, "1" + "0" * 20 + ".00"),
    (0.5, "0.50"), (0.12345, "0.1235"), (-0.0025, "-0.0025"), (0.99996, "1.00"),
    (1e-12, "0.000000000001"),
])
def test_a_double_in_a_message_reads_as_money_or_a_ratio(value, reads):
    """Found in review: avg(fund_amount) OVER … read 均值3.087e+04元."""
    from fraudscreen.suspicion import text

    assert text(value) == reads


@pytest.mark.parametrize(("message", "says"), [
    ('"结算{settlement_id}金额｛amount｝元"', ":15:32: FS004 [error] test.sandbox: rule does not "
     "compile: full-width '｛' in the message: type the placeholder's braces half-width, "
     "{amount} (switch the input method to half-width, 半角)"),
    ("|\n    结算{settlement_id}\n    金额{amount｝元", ":17:14: FS004 [error] test.sandbox: "
     "rule does not compile: full-width '｝'"),
])
def test_full_width_braces_in_a_message_are_refused_where_they_are(tmp_path, message, says):
    """Found in review: ｛total_amount｝ was printed as written, braces and name."""
    path = rule_file(tmp_path, "amount > 1")
    path.write_text(path.read_text(encoding="utf-8").replace(
        'message: "{settlement_id}"', f"message: {message}"), encoding="utf-8")
    result = CliRunner().invoke(app, ["rules", "lint", str(path)])
    assert result.exit_code == 1 and f"{path}{says}" in result.output, result.output


@pytest.mark.parametrize(("message", "says"), [
    ('"结算{settlement_id}金额{amount元"', ":15:32: FS004 [error] test.sandbox: rule does not "
     "compile: a '{' without its '}' in the message: a placeholder is a name in braces, "
     "{amount}"),
    ('"结算{settlement_id}金额amount}元"', ":15:38: FS004 [error] test.sandbox: rule does not "
     "compile: a '}' without its '{'"),
])
def test_a_brace_without_its_partner_in_a_message_is_refused_where_it_is(tmp_path, message,
                                                                         says):
    """Found in review: `{amount元` was printed as written, no amount in it."""
    path = rule_file(tmp_path, "amount > 1")
    path.write_text(path.read_text(encoding="utf-8").replace(
        'message: "{settlement_id}"', f"message: {message}"), encoding="utf-8")
    result = CliRunner().invoke(app, ["rules", "lint", str(path)])
    assert result.exit_code == 1 and f"{path}{says}" in result.output, result.output


@pytest.mark.parametrize(("expects", "says"), [
    ([], "no tests: add a case the rule should flag (expect: the suspicions it finds) and "
         "one it should not (expect: [])"),
    (["[]"], "no test expects a hit, so the tests pass even if the rule finds nothing"),
    (["[{settlement_id: S1}]"], "no test expects no hit, so the tests pass even if the rule "
                                "flags everything: add a case the rule should not flag"),
])
def test_rules_test_fails_a_rule_without_a_case_with_a_hit_and_one_without(tmp_path, expects,
                                                                            says):
    """Found in review: a rule with no tests, or with no-hit cases only, passed (exit 0)."""
    path = rule_file(tmp_path, "amount > 1")
    cases = "".join(f"  - name: case {i}\n    given: {{fee_lines: [{{settlement_id: S1, "
                    f"amount: {1 if e == '[]' else 5}}}]}}\n    expect: {e}\n"
                    for i, e in enumerate(expects))
    with path.open("a", encoding="utf-8") as file:
        file.write("tests:\n" + cases if cases else "")
    result = CliRunner().invoke(app, ["rules", "test", str(path)])
    line = "16:1" if cases else "1:1"
    assert result.exit_code == 1 and f"FAIL test.sandbox: {path}:{line}: {says}" \
        in result.output, result.output
    assert "1 rule(s) without a case with a hit and one without" in result.output


QUERY = """\
id: site_a.pairs
version: "1"
family: site_a
title: t
description: d
severity: low
detect:
  kind: query
  sql: SELECT f.settlement_id, f.amount FROM {joined}
emit:
  amount_at_risk: amount
  message: "{{settlement_id}}"
"""


@pytest.mark.parametrize(("joined", "flagged"), [
    ("fee_lines AS f, settlements AS s", "settlements AS s: tie it to f with ON s.x = f.x"),
    ("fee_lines AS f JOIN settlements AS s ON 1 = 1", "settlements AS s: tie it"),
    ("fee_lines AS f JOIN persons AS p ON f.person_id <> p.person_id", "persons AS p: tie it"),
    ("fee_lines AS f CROSS JOIN (SELECT avg(amount) AS mean FROM fee_lines) AS m", None),
    ("fee_lines AS f JOIN settlements AS s ON s.settlement_id = f.settlement_id", None),
    ("fee_lines AS f, settlements AS s WHERE f.settlement_id = s.settlement_id AND 1 = 1",
     None),
    ("fee_lines AS f JOIN settlements AS s USING (settlement_id)", None),
])
def test_a_join_that_ties_no_column_of_each_side_is_a_lint_warning(tmp_path, joined, flagged):
    """Found in review: `FROM fee_lines AS f, settlements AS s` made ¥8.5 billion of leads
    with no word from lint."""
    path = tmp_path / "pairs.yaml"
    path.write_text(QUERY.format(joined=joined), encoding="utf-8")
    result = CliRunner().invoke(app, ["rules", "lint", str(path)])
    found = [line for line in result.output.splitlines() if "FS012" in line]
    assert "FS004" not in result.output, result.output
    if flagged is None:
        assert found == [], result.output
    else:
        at = 9, 46 + joined.index(flagged.split(" ")[0])
        assert found == [f"{path}:{at[0]}:{at[1]}: FS012 [warning] site_a.pairs: a join ties "
                         "its sides by no equality of a column of each, so every row meets "
                         f"every row and each pair is a hit: {flagged}"
                         + found[0].split(flagged)[1]], result.output


def test_a_correlate_with_nothing_to_tie_on_is_a_lint_warning():
    rule = next(r for r in BUILT_IN if r.detect.kind == "correlate")
    loose = rule.model_copy(update={"detect": rule.detect.model_copy(update={
        "with_": rule.detect.with_.model_copy(update={"on": []})})})
    from fraudscreen.lint import lint

    assert [f.message.split(": ", 1)[1] for f in lint(loose) if f.code == "FS012"] == [
        "with.on is empty: tie each row to its matches, with.on: [person_id]"]
    assert not [f for f in lint(rule) if f.code == "FS012"]


@pytest.mark.parametrize(("bound", "flagged"), [(None, True), (0, True), (1, False)])
def test_a_span_parameter_without_a_minimum_of_one_is_a_lint_warning(bound, flagged):
    """Found in review: offsite_burst's window_minutes took 0, which the compiler then
    refused, so a site's --param failed the rule at run time, not where it was given."""
    from fraudscreen.lint import lint

    rule = RuleSet.load().get("pharmacy_card_skimming.offsite_burst")
    params = {**rule.params, "window_minutes": rule.params["window_minutes"].model_copy(
        update={"min": bound})}
    found = [f for f in lint(rule.model_copy(update={"params": params})) if f.code == "FS013"]
    assert [f.message.split(": ")[-1] for f in found] == (
        ["window_minutes (span minutes)"] if flagged else [])
    if flagged:
        assert re.search(r"offsite_burst\.yaml:\d+:\d+$", found[0].where)


def test_the_schema_goes_where_its_help_says_even_to_a_new_folder(tmp_path):
    """Found following `rules schema --help`: `--out my_rules/rule.schema.json` before
    my_rules/ existed ended in a FileNotFoundError traceback."""
    out = tmp_path / "my_rules" / "rule.schema.json"
    result = CliRunner().invoke(app, ["rules", "schema", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text(encoding="utf-8"))["title"] == "Rule"
    (tmp_path / "taken").write_text("a file", encoding="utf-8")
    result = CliRunner().invoke(app, ["rules", "schema", "--out",
                                      str(tmp_path / "taken" / "rule.schema.json")])
    assert result.exit_code == 2 and "could not write" in result.output
    assert "Traceback" not in result.output
