"""Lead lists, the workbook, the HTML report and the privacy profiles.

The suspicions are built by hand in the contract schema, so every expected figure
(ranks, totals, pseudonyms) is worked out here independently of the code under test.
The Chromium test opens report.html in headless Chromium (Debian ``chromium``) and
is skipped when it is not installed. Set FRAUDSCREEN_UPDATE_SCREENSHOT=1 to copy
its screenshot to docs/report-screenshot.png.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import io
import json
import os
import re
import shutil
import subprocess
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import openpyxl
import polars as pl
import pytest

from fraudscreen.contract import FAMILIES
from fraudscreen.leads import by_month
from fraudscreen.privacy import apply_profile, pseudonym
from fraudscreen.report import report_folder, write_reports
from fraudscreen.suspicion import SCHEMA
from outputs import output_bytes

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SECRET = "test-site-secret"

PA, PB, PC, PD = "350902000010000101", "350902000010000202", "350902000010000303", \
    "350902000010000404"
PERSONS = (PA, PB, PC, PD)


def sus(sid, family, rule, severity, inst, person, amount, message, *, period=None,
        evidence=None, settlement=None):
    return {"suspicion_id": sid, "rule_id": f"{family}.{rule}", "rule_version": "1.0",
            "family": family, "severity": severity, "institution_id": inst,
            "person_id": person, "settlement_id": settlement, "related_settlement_ids": [],
            "item_code": None, "period_start": period, "period_end": None,
            "amount_at_risk": Decimal(amount), "message": message,
            "evidence": json.dumps(evidence or {}, ensure_ascii=False)}


# Institutions, by design (amount at risk, highest severity, suspicions):
#   H35090200001 6000.00 high 2      -> 1
#   H35090200004 2000.00 high 1      -> 2 (severity beats count)
#   H35090200002 2000.00 medium 3    -> 3 (count)
#   H35090200003 2000.00 medium 2    -> 4 (id beats H35090200007)
#   H35090200007 2000.00 medium 2    -> 5
#   P35090200005  350.00 medium 2    -> 6
ROWS = [
    sus("S01", "split_hospitalisation", "readmission", "high", "H35090200001", PA, "4800.00",
        f"参保人{PA}于2024-01-05从H35090200001出院，5天后（2024-01-10）再次入院，两次主要诊断同属"
        "J18类目，疑似分解住院；本次基金支付4800元。",
        evidence={"gap_days": 5, "admit_date": "2024-01-10", "fund_amount": "4800"},
        settlement="B1"),
    sus("S02", "bed_holding", "idle_stay", "high", "H35090200001", PB, "1200.00",
        f"参保人{PB}在H35090200001住院9天，其中6天仅有床位、诊察、护理费用或无费用，疑似挂床住院；"
        "空闲日费用1200元。", evidence={"los": 9, "admit_date": "2024-02-03"}),
    sus("S03", "duplicate_charge", "daily_cap", "low", "H35090200002", PA, "300.00",
        "结算C7中项目X在2024-03-02收费数量5，超过日最大数量2，超出部分300元。",
        period=dt.date(2024, 3, 2)),
    sus("S04", "duplicate_charge", "over_price_cap", "medium", "H35090200002", PC, "700.00",
        "结算C8中项目Y单价120元，高于最高限价50元，数量10，超标准收费700元。",
        evidence={"charge_time": "2024-03-15 10:00"}),
    sus("S05", "duplicate_charge", "repeated_line", "low", "H35090200002", None, "1000.00",
        "结算C9中项目Z在2024-04-01 09:00以相同数量1、单价1000收费2次，疑似重复收费；"
        "重复部分1000元。",
        evidence={"charge_time": "2024-04-01 09:00"}),
    sus("S06", "item_substitution", "billed_more_than_bought", "medium", "H35090200003", None,
        "1500.00", "H35090200003在2024-01-01至2024-06-30结算项目D1数量900，同期进货仅600。",
        period=dt.date(2024, 1, 1)),
    sus("S07", "item_substitution", "wrong_gender", "low", "H35090200003", PD, "500.00",
        f"项目G1限定性别2，却在结算C10中收费给性别为1的参保人{PD}，金额500元。",
        evidence={"gender": "1"}),
    sus("S08", "key_item_growth", "monthly_growth", "medium", "H35090200007", None, "1200.00",
        "重点监控项目K1在H35090200007于2024-05-01所在月结算3000元，上月1800元，增长异常。",
        period=dt.date(2024, 5, 1)),
    sus("S09", "key_item_growth", "monthly_growth", "low", "H35090200007", None, "800.00",
        "重点监控项目K2在H35090200007于2024-06-01所在月结算2000元，上月1200元，增长异常。",
        period=dt.date(2024, 6, 1)),
    sus("S10", "duplicate_charge", "exclusive_items", "high", "H35090200004", PC, "2000.00",
        "结算C11在2024-02-20同时收取互斥项目M1与M2，疑似重复收费；较低一项2000元。",
        period=dt.date(2024, 2, 20)),
    sus("S11", "pharmacy_card_skimming", "hoarding", "medium", "P35090200005", PB, "200.00",
        f"参保人{PB}在2024-04-02至2024-04-20间4次在药店购买D9，疑似超量购药或倒卖；首次以外金额200元。",
        evidence={"first_time": "2024-04-02 10:00"}),
    sus("S12", "pharmacy_card_skimming", "impossible_travel", "low", "P35090200005", PB,
        "150.00", f"参保人{PB}于2024-04-25 08:00在统筹区3509结算后，又在统筹区3501的"
        "P35090200005结算，间隔不足3小时，疑似冒名或套刷；基金支付150元。",
        evidence={"earlier_time": "2024-04-25 08:00"}),
]
INSTITUTION_ORDER = ["H35090200001", "H35090200004", "H35090200002", "H35090200003",
                     "H35090200007", "P35090200005"]
# Persons: PA 5100 high; PC 2700 high; PB 1550 high; PD 500 low.
PERSON_ORDER = [PA, PC, PB, PD]

MANIFEST = {
    "tool": "fraudscreen", "version": "0.1.0", "engine": "duckdb",
    "started": "2024-07-01T09:30:00", "data": "/data/prefecture",
    "window": {"start": "2024-01-01", "end": "2024-06-30", "given": False},
    "inputs": [{"table": "settlements", "path": "settlements.csv", "rows": 1200, "sha256": "x"},
               {"table": "fee_lines", "path": "fee_lines.csv", "rows": 52000, "sha256": "y"}],
    "rows_read": {"settlements": 1200, "fee_lines": 52000},
    "rows_kept": {"settlements": 1195, "fee_lines": 52000},
    "missing_optional_tables": ["purchases"],
    "quarantine": [{"table": "settlements", "reason": "bad timestamp", "rows": 5, "cells": 5}],
    "rules": [
        {"id": "split_hospitalisation.readmission", "version": "1.0",
         "family": "split_hospitalisation", "status": "ran", "reason": "", "hits": 1,
         "amount_at_risk": "4800.00", "seconds": 0.12},
        {"id": "item_substitution.billed_more_than_bought", "version": "1.0",
         "family": "item_substitution", "status": "skipped",
         "reason": "needs table purchases", "hits": 0, "amount_at_risk": "0.00",
         "seconds": 0.0},
    ],
    "suspicions": len(ROWS),
    # one institution not in the institutions table: its lead has no name
    "institution_names": {"H35090200001": "宁德市第一医院", "H35090200004": "周宁县中医院",
                          "H35090200003": "古田县医院", "H35090200007": "屏南县医院",
                          "P35090200005": "福鼎市某大药房"},
    "timings_seconds": {"ingest": 0.8, "rules": 2.4},
}
FAMILY_SHEETS = [zh.replace("/", "／") for zh in FAMILIES.values()]


def frame(rows=ROWS) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")


@pytest.fixture
def written(tmp_path) -> Path:
    out = tmp_path / "full"
    out.mkdir()
    write_reports(out, frame(), MANIFEST, "full")
    return out


def read_csv(path: Path) -> list[dict]:
    text = path.read_bytes().decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text[1:])))


def expected_totals(key: str) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for r in ROWS:
        if r[key] is not None:
            totals[r[key]] += r["amount_at_risk"]
    return dict(totals)


# ---- leads.csv ---------------------------------------------------------------------

def test_leads_csv_has_bom_english_headers_and_ranks_with_tie_breaks(written):
    raw = (written / "leads.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = read_csv(written / "leads.csv")
    assert list(rows[0])[:5] == ["lead_type", "rank", "lead_id", "lead_name", "suspicions"]
    assert {f"amount_{f}" for f in FAMILIES} <= set(rows[0])
    inst = [r for r in rows if r["lead_type"] == "institution"]
    pers = [r for r in rows if r["lead_type"] == "person"]
    assert [r["lead_id"] for r in inst] == INSTITUTION_ORDER
    assert [r["rank"] for r in inst] == [str(i) for i in range(1, len(inst) + 1)]
    assert [r["lead_id"] for r in pers] == PERSON_ORDER
    assert len(rows) == len(inst) + len(pers)  # institutions first, then persons


def test_a_lead_counts_the_settlements_more_than_one_suspicion_rests_on(tmp_path):
    """Found in an inspector's review: three equal CT lines are a repeat and over the
    daily cap, and the lead summed ¥342 twice with no word. The sum stays (each rule's
    figure is right); the lead says how many settlements carry more than one."""
    rows = [sus("A1", "duplicate_charge", "repeated_line", "low", "H1", PA, "342.00", "m",
                settlement="C9"),
            sus("A2", "duplicate_charge", "daily_cap", "low", "H1", PA, "342.00", "m",
                settlement="C9"),
            sus("A3", "duplicate_charge", "over_price_cap", "low", "H1", PB, "10.00", "m",
                settlement="C10"),
            sus("A4", "key_item_growth", "monthly_growth", "low", "H1", None, "5.00", "m"),
            sus("A5", "key_item_growth", "monthly_growth", "low", "H1", None, "6.00", "m")]
    write_reports(tmp_path, frame(rows), MANIFEST, "full")
    got = {(r["lead_type"], r["lead_id"]): (r["amount_at_risk"], r["overlapping_settlements"])
           for r in read_csv(tmp_path / "leads.csv")}
    assert got == {("institution", "H1"): ("705.00", "1"), ("person", PA): ("684.00", "1"),
                   ("person", PB): ("10.00", "0")}
    sheet = openpyxl.load_workbook(tmp_path / "leads.xlsx").worksheets[0]
    assert "多条疑点的结算数" in [c.value for c in sheet[1]]


def test_leads_csv_rolls_up_amounts_families_rules_and_ids(written):
    rows = {(r["lead_type"], r["lead_id"]): r for r in read_csv(written / "leads.csv")}
    for inst, total in expected_totals("institution_id").items():
        assert Decimal(rows["institution", inst]["amount_at_risk"]) == total
    for person, total in expected_totals("person_id").items():
        assert Decimal(rows["person", person]["amount_at_risk"]) == total
    h2 = rows["institution", "H35090200002"]
    assert h2["suspicions"] == "3" and h2["persons"] == "2"
    assert h2["families"] == "重复收费" and h2["family_count"] == "1"
    assert h2["rules"].split(";") == sorted(["duplicate_charge.daily_cap",
                                             "duplicate_charge.over_price_cap",
                                             "duplicate_charge.repeated_line"])
    assert h2["max_severity"] == "medium"
    assert Decimal(h2["amount_duplicate_charge"]) == Decimal("2000.00")
    assert Decimal(h2["amount_bed_holding"]) == 0
    # suspicions inside a lead: amount at risk first
    assert h2["suspicion_ids"].split(";") == ["S05", "S04", "S03"]
    assert h2["top_messages"].split(" | ")[0].startswith("结算C9")
    pa = rows["person", PA]
    assert pa["families"] == "分解住院、重复收费"  # contract order, joined by 、
    assert pa["institutions"] == "2"
    assert sum(int(r["suspicions"]) for (t, _), r in rows.items() if t == "institution") \
        == len(ROWS)


def test_institution_leads_are_named_from_the_manifest_and_person_leads_are_not(tmp_path):
    """Found in an inspector's review: a lead said only H35090200001; the hospital is
    looked up by its name. Names come from run.json, so `report` needs no input tables;
    one without a name (or an older run.json without any) leaves the cell empty."""
    names = MANIFEST["institution_names"]
    write_reports(tmp_path, frame(), MANIFEST, "full")
    rows = read_csv(tmp_path / "leads.csv")
    got = {r["lead_id"]: r["lead_name"] for r in rows if r["lead_type"] == "institution"}
    assert got == {i: names.get(i, "") for i in INSTITUTION_ORDER}
    assert {r["lead_name"] for r in rows if r["lead_type"] == "person"} == {""}
    wb = openpyxl.load_workbook(tmp_path / "leads.xlsx")
    inst = wb["机构线索"]
    assert [(row[1].value, row[2].value) for row in inst.iter_rows(min_row=2)] == [
        (i, names.get(i)) for i in INSTITUTION_ORDER]
    assert "机构名称" not in [c.value for c in wb["人员线索"][1]]
    sheet = wb["重复收费"]  # a family sheet: the name after the institution's id
    header = [c.value for c in sheet[1]]
    at = header.index("定点医药机构编号")
    assert header[at + 1] == "机构名称"
    assert {(r[at].value, r[at + 1].value) for r in sheet.iter_rows(min_row=2)} == {
        ("H35090200002", None), ("H35090200004", "周宁县中医院")}
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert re.search(r'H35090200001</td><td>宁德市第一医院</td>', page)
    assert re.search(r'H35090200002</td><td></td>', page)
    chart = page[page.index("涉嫌金额前20的定点医药机构"):]  # bars by name, else by id
    assert chart.index(">宁德市第一医院</text>") < chart.index(">周宁县中医院</text>") \
        < chart.index(">H35090200002</text>")
    older = {k: v for k, v in MANIFEST.items() if k != "institution_names"}
    write_reports(tmp_path, frame(), older, "full")
    assert {r["lead_name"] for r in read_csv(tmp_path / "leads.csv")} == {""}


# ---- leads.xlsx --------------------------------------------------------------------

def test_xlsx_sheets_headers_frozen_filter_money_and_totals(written):
    wb = openpyxl.load_workbook(written / "leads.xlsx")
    assert wb.sheetnames == ["机构线索", "人员线索", *FAMILY_SHEETS]
    inst = wb["机构线索"]
    header = [c.value for c in inst[1]]
    assert header[:5] == ["排名", "定点医药机构编号", "机构名称", "疑点数", "涉及人员数"]
    assert "涉嫌金额合计" in header and "分解住院金额" in header and "异地/药店套刷金额" in header
    assert [c.value for c in wb["人员线索"][1]][1] == "人员编号"
    for ws in wb.worksheets:
        assert ws.freeze_panes == "A2", ws.title
        assert ws.auto_filter.ref and ws.auto_filter.ref.startswith("A1:"), ws.title
    total_col = header.index("涉嫌金额合计")
    got = {row[1].value: row[total_col] for row in inst.iter_rows(min_row=2)}
    expected = expected_totals("institution_id")
    assert set(got) == set(expected)
    for inst_id, cell in got.items():
        assert isinstance(cell.value, (int, float))
        assert Decimal(str(cell.value)).quantize(Decimal("0.01")) == expected[inst_id]
        assert cell.number_format == '"¥"#,##0.00'
    assert [row[1].value for row in inst.iter_rows(min_row=2)] == INSTITUTION_ORDER
    # the lead sheets say their ids, Chinese severities and column widths fit Chinese
    assert inst.cell(2, header.index("最高严重程度") + 1).value == "高"
    width = inst.column_dimensions["B"].width
    assert width >= len("定点医药机构编号") * 2


def test_xlsx_family_sheets_hold_every_suspicion_with_its_amount(written):
    wb = openpyxl.load_workbook(written / "leads.xlsx")
    seen, total = set(), Decimal(0)
    for family, zh in FAMILIES.items():
        ws = wb[zh.replace("/", "／")]
        header = [c.value for c in ws[1]]
        assert header[:2] == ["疑点编号", "规则编号"] and "疑点描述" in header
        amount = header.index("涉嫌金额")
        for row in ws.iter_rows(min_row=2, values_only=True):
            seen.add(row[0])
            total += Decimal(str(row[amount])).quantize(Decimal("0.01"))
            assert next(r for r in ROWS if r["suspicion_id"] == row[0])["family"] == family
    assert seen == {r["suspicion_id"] for r in ROWS}
    assert total == sum(r["amount_at_risk"] for r in ROWS)
    period = wb["重点药品耗材异常增长"]
    col = [c.value for c in period[1]].index("期间起") + 1
    assert period.cell(2, col).value == dt.datetime(2024, 5, 1)


# ---- report.html -------------------------------------------------------------------

def test_report_html_is_self_contained_with_svg_charts(written):
    html = (written / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"https?://", html), "no external references (offline, no CDN)"
    assert not re.search(r"<(script|link|img|iframe)\b", html)
    assert html.count('<svg class="chart"') == 3  # family, top institutions, monthly trend
    for heading in ("运行概况", "各类别涉嫌金额", "重点机构", "重点人员", "疑点月度趋势",
                    "疑点明细"):
        assert heading in html
    assert "Noto Sans CJK SC" in html
    for r in ROWS:  # every suspicion's message, escaped or not
        assert r["suspicion_id"] in html and r["message"] in html
    assert "¥14,350.00" in html  # total at risk
    assert "运行 1 条，跳过 1 条" in html and "needs table purchases" in html


def test_report_says_how_many_suspicions_no_lead_holds(tmp_path, written):
    assert 'id="unled"' not in (written / "report.html").read_text(encoding="utf-8")
    lone = sus("S90", "duplicate_charge", "site_rule", "low", None, None, "180.00", "z")
    write_reports(tmp_path, frame([*ROWS, lone]), MANIFEST, "full")
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert re.search(r'id="unled">另有 1 条疑点（¥180.00）既无机构也无人员', html)
    assert "S90" not in (tmp_path / "leads.csv").read_text(encoding="utf-8-sig")


def test_monthly_trend_uses_period_or_evidence_date_and_fills_gaps():
    months = by_month(frame()).rows()
    # S07 (wrong gender) has neither a period nor a date in its evidence: 未知, last
    assert [m for m, *_ in months] == ["2024-01", "2024-02", "2024-03", "2024-04", "2024-05",
                                       "2024-06", "未知"]
    assert sum(n for _, n, _ in months) == len(ROWS)
    extra = frame([*ROWS, sus("S99", "bed_holding", "idle_stay", "low", "H9", None, "1.00",
                                "x"), sus("S98", "bed_holding", "idle_stay", "low", "H9",
                                          None, "1.00", "y", period=dt.date(2024, 9, 9))])
    months = {m: n for m, n, _ in by_month(extra).rows()}
    assert months["2024-07"] == 0 and months["2024-09"] == 1 and months["未知"] == 2


def test_a_suspicion_is_dated_by_its_own_settlement_not_the_first_date_in_its_evidence():
    """Regression (found in review): a readmission was counted in the month of the
    earlier stay's discharge, a hoarding run at its first purchase, not the flagged last."""
    rows = [sus("R1", "split_hospitalisation", "readmission", "high", "H1", PA, "1.00", "r",
                evidence={"earlier_discharge_date": "2024-04-29", "admit_date": "2024-05-03"}),
            sus("H1", "pharmacy_card_skimming", "hoarding", "medium", "P1", PB, "1.00", "h",
                evidence={"first_time": "2024-03-29 18:30", "last_time": "2024-04-18 19:05"})]
    assert [(m, n) for m, n, _ in by_month(frame(rows)).rows()] == [
        ("2024-04", 1), ("2024-05", 1)]


# ---- determinism, empty, report_folder ----------------------------------------------

def test_same_suspicions_give_the_same_bytes(tmp_path, written):
    again = tmp_path / "again"
    again.mkdir()
    shuffled = frame().sample(fraction=1.0, shuffle=True, seed=3)
    write_reports(again, shuffled, MANIFEST, "full")
    for name in ("leads.csv", "report.html", "leads.xlsx"):
        assert (again / name).read_bytes() == (written / name).read_bytes(), name


def test_no_suspicions_gives_empty_leads_and_says_so(tmp_path):
    write_reports(tmp_path, frame([]), {**MANIFEST, "suspicions": 0}, "full")
    rows = read_csv(tmp_path / "leads.csv")
    assert rows == []
    header = (tmp_path / "leads.csv").read_text(encoding="utf-8-sig").splitlines()[0]
    assert header.startswith("lead_type,rank,lead_id")
    wb = openpyxl.load_workbook(tmp_path / "leads.xlsx")
    assert wb.sheetnames == ["机构线索", "人员线索", *FAMILY_SHEETS]
    assert wb["机构线索"].max_row == 1 and wb["机构线索"]["A1"].value == "排名"
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "没有发现疑点" in html and "<svg" not in html


def test_report_folder_regenerates_from_an_output_folder(tmp_path, written):
    out = tmp_path / "run"
    out.mkdir()
    frame().write_parquet(out / "suspicions.parquet")
    (out / "run.json").write_text(json.dumps(MANIFEST, ensure_ascii=False), encoding="utf-8")
    report_folder(out)
    for name in ("leads.csv", "report.html", "leads.xlsx"):
        assert (out / name).read_bytes() == (written / name).read_bytes(), name
    assert sorted(p.name for p in out.iterdir()) == [
        "leads.csv", "leads.xlsx", "report.html", "run.json", "suspicions.parquet"]
    with pytest.raises(FileNotFoundError, match="suspicions.parquet not found"):
        report_folder(tmp_path / "full")


def test_report_folder_regenerates_a_folder_named_with_brackets(tmp_path, written):
    """'[' is a glob to Polars: `fraudscreen report 'out[1]'`, a folder `run --out` writes
    (tests/test_run.py), said it "cannot be read as the run's suspicions"."""
    out = tmp_path / "导出[" / "2024]"
    out.mkdir(parents=True)
    frame().write_parquet(out / "suspicions.parquet")
    (out / "run.json").write_text(json.dumps(MANIFEST, ensure_ascii=False), encoding="utf-8")
    report_folder(out)
    assert (out / "leads.csv").read_bytes() == (written / "leads.csv").read_bytes()


def test_quarantine_reasons_show_in_chinese_with_the_english_beside(tmp_path):
    """Found in an inspector's review: the Chinese page showed 'bad timestamp'. A reason
    with no Chinese text (one a newer version wrote) still shows, in English."""
    manifest = {**MANIFEST, "quarantine": [
        {"table": "settlements", "reason": "bad timestamp", "rows": 5, "cells": 5},
        {"table": "settlements", "reason": "a reason added later", "rows": 1, "cells": 1}]}
    write_reports(tmp_path, frame(), manifest, "full")
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert ('<td>结算记录（settlements）</td><td>时间无法识别 '
            '<span class="en" lang="en">bad timestamp</span></td>') in html
    assert "<td>a reason added later</td>" in html


def test_report_folder_regenerates_a_folder_older_than_record_key(tmp_path):
    """A folder whose quarantine.csv lacks record_key and reason_zh: report reads only
    run.json, and its page shows the reasons in Chinese all the same."""
    out = tmp_path / "run"
    out.mkdir()
    frame().write_parquet(out / "suspicions.parquet")
    (out / "run.json").write_text(json.dumps(MANIFEST, ensure_ascii=False), encoding="utf-8")
    old = ("\ufefftable,file,line,column,value,reason\n"
           "settlements,s.csv,4,admit_time,x,bad timestamp\n")
    (out / "quarantine.csv").write_text(old, encoding="utf-8")
    report_folder(out)
    assert "时间无法识别" in (out / "report.html").read_text(encoding="utf-8")
    assert (out / "quarantine.csv").read_text(encoding="utf-8") == old


def test_report_folder_will_not_rehash_an_already_public_folder(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    apply_profile(frame(), "public", SECRET).write_parquet(out / "suspicions.parquet")
    (out / "run.json").write_text(json.dumps({**MANIFEST, "suspicions_profile": "public"}),
                                  encoding="utf-8")
    with pytest.raises(ValueError, match="pseudonymised"):
        report_folder(out, "full")
    report_folder(out, "public")  # no secret needed: nothing left to pseudonymise
    ids = {r["lead_id"] for r in read_csv(out / "leads.csv") if r["lead_type"] == "person"}
    assert ids == {pseudonym(p, SECRET) for p in PERSONS}


def test_end_to_end_run_writes_the_reports(tmp_path):
    from fraudscreen.runner import RunOptions, load_rules, run
    from fraudscreen.testing import table

    data = tmp_path / "data"
    data.mkdir()
    stay = {"person_id": "P1", "institution_id": "H1", "medical_type": "21",
            "diagnosis_code": "J18.900"}
    table("settlements", [
        dict(stay, settlement_id="A", admit_time="2024-01-01 08:00:00",
             discharge_time="2024-01-05 10:00:00", fund_amount=3000),
        dict(stay, settlement_id="B", admit_time="2024-01-10 08:00:00",
             discharge_time="2024-01-12 10:00:00", fund_amount=1000),
    ]).write_parquet(data / "settlements.parquet")
    table("fee_lines", [
        {"line_id": "L1", "settlement_id": "A", "item_code": "X",
         "charge_time": "2024-01-01 09:00:00", "quantity": 1, "unit_price": 10, "amount": 10},
    ]).write_parquet(data / "fee_lines.parquet")
    opts = RunOptions(data=data, out=tmp_path / "out")
    result = run(opts, load_rules(opts))
    found = pl.read_parquet(tmp_path / "out" / "suspicions.parquet")
    assert found.height >= 1
    rows = read_csv(tmp_path / "out" / "leads.csv")
    h1 = next(r for r in rows if r["lead_type"] == "institution" and r["lead_id"] == "H1")
    assert Decimal(h1["amount_at_risk"]) == found.filter(
        pl.col("institution_id") == "H1")["amount_at_risk"].sum()
    assert result.manifest["suspicions"] == found.height
    assert "疑点月度趋势" in (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    before = {n: (tmp_path / "out" / n).read_bytes()
              for n in ("leads.csv", "leads.xlsx", "report.html")}
    report_folder(tmp_path / "out")  # `fraudscreen report OUT` on a real run folder
    for name, content in before.items():
        assert (tmp_path / "out" / name).read_bytes() == content, name


# ---- privacy profiles ----------------------------------------------------------------

def test_public_profile_pseudonymises_everywhere_and_keeps_institutions(tmp_path, monkeypatch):
    monkeypatch.setenv("FRAUDSCREEN_SITE_SECRET", SECRET)
    out = tmp_path / "public"
    out.mkdir()
    write_reports(out, frame(), MANIFEST, "public")
    files = output_bytes(out)
    assert any(name.startswith("leads.xlsx:xl/") for name in files)
    for pid in PERSONS:
        for name, content in files.items():
            assert pid.encode() not in content, f"{pid} leaks in {name}"
    expected = {p: "P" + hmac.new(SECRET.encode(), p.encode(), hashlib.sha256).hexdigest()[:16]
                for p in PERSONS}
    rows = read_csv(out / "leads.csv")
    persons = [r["lead_id"] for r in rows if r["lead_type"] == "person"]
    assert persons == [expected[p] for p in PERSON_ORDER]  # same ranks, pseudonymised
    inst = [r["lead_id"] for r in rows if r["lead_type"] == "institution"]
    assert inst == INSTITUTION_ORDER
    h1 = next(r for r in rows if r["lead_id"] == "H35090200001")
    assert f"参保人{expected[PA]}于2024-01-05从H35090200001出院" in h1["top_messages"]
    html = (out / "report.html").read_text(encoding="utf-8")
    for p in PERSONS:
        assert expected[p] in html
    wb = openpyxl.load_workbook(out / "leads.xlsx")
    assert [r[1] for r in wb["人员线索"].iter_rows(min_row=2, values_only=True)] == \
        [expected[p] for p in PERSON_ORDER]
    # suspicion ids keyed too: a plain id hashes the rule's key, person id included
    ids = {r["suspicion_id"] for r in ROWS}
    public_ids = set(pl.read_csv(out / "leads.csv")["suspicion_ids"].str.split(";")
                     .explode())
    assert public_ids == {"S" + hmac.new(SECRET.encode(), s.encode(), hashlib.sha256)
                          .hexdigest()[:20] for s in ids}
    assert not any(s.encode() in content for s in ids for content in files.values())
    # consistent: another run with the same secret, the same pseudonyms
    again = tmp_path / "again"
    again.mkdir()
    write_reports(again, frame(), MANIFEST, "public")
    assert (again / "leads.csv").read_bytes() == (out / "leads.csv").read_bytes()


def test_public_profile_needs_a_secret(tmp_path, monkeypatch):
    monkeypatch.delenv("FRAUDSCREEN_SITE_SECRET", raising=False)
    with pytest.raises(ValueError, match="FRAUDSCREEN_SITE_SECRET"):
        write_reports(tmp_path, frame(), MANIFEST, "public")
    with pytest.raises(ValueError, match="FRAUDSCREEN_SITE_SECRET"):
        apply_profile(frame([]), "public")
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="unknown profile"):
        write_reports(tmp_path, frame(), MANIFEST, "secret")


def test_pseudonyms_replace_whole_ids_only():
    rows = [sus("S1", "bed_holding", "idle_stay", "low", "P19", "P1", "1.00",
                "参保人P1在P19购药，P1再次出现；P10不是P1。", evidence={"other": "P1"})]
    out = apply_profile(frame(rows), "public", SECRET).row(0, named=True)
    p1 = pseudonym("P1", SECRET)
    assert out["person_id"] == p1 and out["institution_id"] == "P19"
    assert out["message"] == f"参保人{p1}在P19购药，{p1}再次出现；P10不是{p1}。"
    assert json.loads(out["evidence"]) == {"other": p1}


def test_profiles_drop_sensitive_evidence_fields_and_mask_them_in_messages():
    rows = [sus("S1", "bed_holding", "idle_stay", "high", "H1", PA, "10.00",
                f"参保人{PA}（张三，出生1970-01-02，年龄54岁）在H1住院。",
                evidence={"name": "张三", "birth_date": "1970-01-02", "age": 54,
                          "item_name": "床位费", "los": 9})]
    full = apply_profile(frame(rows), "full").row(0, named=True)
    assert full == frame(rows).row(0, named=True)
    inv = apply_profile(frame(rows), "investigator").row(0, named=True)
    assert inv["person_id"] == PA
    assert json.loads(inv["evidence"]) == {"name": "张三", "item_name": "床位费", "los": 9}
    assert inv["message"] == f"参保人{PA}（张三，出生＊＊，年龄＊＊岁）在H1住院。"
    pub = apply_profile(frame(rows), "public", SECRET).row(0, named=True)
    assert json.loads(pub["evidence"]) == {"item_name": "床位费", "los": 9}
    p = pseudonym(PA, SECRET)
    assert pub["message"] == f"参保人{p}（＊＊，出生＊＊，年龄＊＊岁）在H1住院。"
    assert pub["institution_id"] == "H1"


# ---- headless Chromium ---------------------------------------------------------------

def chromium(page: Path, tmp: Path, *mode: str) -> subprocess.CompletedProcess:
    profile = tmp / f"chromium-profile-{len(list(tmp.glob('chromium-profile-*')))}"
    return subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
         "--window-size=1280,2000", *mode, page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)


def page_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines()
            if "Uncaught" in line or "Refused to" in line
            or ("CONSOLE" in line and "error" in line.lower())]


needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless Chromium not installed (/usr/bin/chromium; apt-get install chromium "
           "fonts-noto-cjk)")


@needs_chromium
def test_chromium_catches_a_page_error(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><p>x</p><script>undefinedFunction();</script>",
                   encoding="utf-8")
    assert page_errors(chromium(bad, tmp_path, "--dump-dom").stderr)


@needs_chromium
def test_report_loads_in_headless_chromium_without_errors(tmp_path, written):
    page = written / "report.html"
    dom = chromium(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert not page_errors(dom.stderr), page_errors(dom.stderr)
    assert dom.stdout.count('<svg class="chart"') == 3
    assert dom.stdout.count("<rect") >= len(FAMILIES) + len(INSTITUTION_ORDER)
    for heading in ("医保基金疑点筛查报告", "运行概况", "各类别涉嫌金额", "疑点月度趋势"):
        assert f">{heading}" in dom.stdout
    png = tmp_path / "report.png"
    shot = chromium(page, tmp_path, f"--screenshot={png}")
    assert shot.returncode == 0 and png.exists(), shot.stderr[-2000:]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 50_000  # a blank page is a few kB
    if os.environ.get("FRAUDSCREEN_UPDATE_SCREENSHOT"):
        shutil.copyfile(png, ROOT / "docs" / "report-screenshot.png")


def test_no_shipped_rule_loses_evidence_under_any_profile():
    from fraudscreen.privacy import DROPPED_KEYS
    from fraudscreen.ruleset import RuleSet

    keys = {k for rule in RuleSet.load([]).rules for k in rule.emit.evidence}
    assert "admit_date" in keys
    for profile, pattern in DROPPED_KEYS.items():
        assert not [k for k in keys if pattern and pattern.search(k)], profile


def test_html_detail_tables_stop_at_the_cap_and_say_so(monkeypatch):
    from fraudscreen import html_report, leads

    monkeypatch.setattr(html_report, "ROWS_PER_FAMILY", 2)
    shown = frame()
    html = html_report.render(shown, leads.leads(shown), MANIFEST, "full")
    assert "本类别另有 2 条涉嫌金额较小的疑点未在此列出" in html  # duplicate_charge: 4 rows
    assert "S05" in html and "S10" in html and "S03" not in html.split('id="details"')[1]


@pytest.mark.parametrize("titles", [
    {"site_a": "重复收费"},                      # a built-in family's name
    {"site_a": "机构线索"},                      # a lead sheet's
    {"site_a": "'囤药'"},                        # apostrophes Excel refuses at the ends
    {"site_a": "History"},                      # Excel's own
    {"site_a": "囤药", "site_b": "囤药"},        # two site families alike
    {"site_a": "超" * 40, "site_b": "超" * 40 + "乙"},  # alike in their first 31
    {"site_a": "超" * 30 + "'乙"},                # an apostrophe where it is cut
])
def test_a_family_title_never_makes_a_workbook_that_cannot_be_written(tmp_path, titles):
    """Found in review: a site family titled like another sheet crashed the whole run
    (xlsxwriter's DuplicateWorksheetName) and left no output folder."""
    from fraudscreen import leads, xlsx

    rows = [dict(suspicion_id=f"s{i}", rule_id=f"{f}.r", rule_version="1", family=f,
                 severity="low", institution_id="H1", person_id=None, settlement_id="S1",
                 related_settlement_ids=[], item_code=None, period_start=None,
                 period_end=None, amount_at_risk=Decimal("1.00"), message="m", evidence="{}")
            for i, f in enumerate(["duplicate_charge", *titles])]
    shown = pl.DataFrame(rows, schema=SCHEMA, orient="row")
    path = tmp_path / "leads.xlsx"
    xlsx.write_workbook(path, leads.leads(shown, titles), shown, dt.datetime(2024, 1, 1),
                        titles)
    names = openpyxl.load_workbook(path).sheetnames
    assert len({n.lower() for n in names}) == len(names)
    assert all(len(n) <= 31 and not n.startswith("'") and n != "History" for n in names)


def test_a_rule_s_note_reads_in_chinese_with_run_json_s_english_beside(tmp_path):
    """Found screening the sample: the Chinese page's 说明 read '1 not judged (distinct
    institution_id): 机构在进货记录中没有任何记录…' and 'needs table purchases'."""
    stocked = {"id": "item_substitution.billed_more_than_bought", "version": "1.1",
               "family": "item_substitution", "status": "ran", "hits": 0, "skipped": 1,
               "skipped_unit": "distinct institution_id", "amount_at_risk": "0.00",
               "reason": "1 not judged (distinct institution_id): 机构在进货记录中没有任何记录",
               "seconds": 0.1}
    write_reports(tmp_path, frame(), {**MANIFEST, "rules": [*MANIFEST["rules"], stocked]},
                  "full")
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert ('<td>1 家机构未判断：机构在进货记录中没有任何记录 <span class="en" lang="en">'
            '1 not judged (distinct institution_id)</span></td>') in html
    assert ('<td>缺少 purchases 表，未运行 <span class="en" lang="en">needs table purchases'
            '</span></td>') in html
