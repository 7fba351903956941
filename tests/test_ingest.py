"""Ingestion: every good row kept exactly, every bad row quarantined with its line and reason."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import gzip
import hashlib
import io
import re
import tempfile
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from fraudscreen import contract, quarantine
from fraudscreen.cli import app
from fraudscreen.contract import FEE_LINES, SETTLEMENTS, ColumnType, Table
from fraudscreen.ingest import IngestError, load_folder, write_quarantine
from fraudscreen.quarantine import (
    BAD_VALUE,
    CONFLICTING_KEY,
    DUPLICATE_KEY,
    REASON_ZH,
    REVERSAL_STANDS,
    ROW_RULES,
    SCIENTIFIC,
    csv_frame,
    quarantined_reversals,
    reason_zh,
)
from fuzz import examples

T0 = dt.datetime(2024, 3, 1, 8, 30, 0)


def settlement(key: str, **values: str) -> dict[str, str]:
    row = {
        "settlement_id": key, "person_id": "P001", "institution_id": "H35090200001",
        "insurance_type": "310", "medical_type": "21", "insured_region": "350902",
        "visit_region": "350902", "admit_time": "2024-03-01 08:30:00",
        "discharge_time": "2024-03-05 10:00:00", "settle_time": "2024-03-05 11:00:00",
        "diagnosis_code": "J18.900", "department_code": "", "total_amount": "1200.50",
        "fund_amount": "900.00", "reversed_settlement_id": "",
    }
    return row | values


def fee_line(key: str, **values: str) -> dict[str, str]:
    row = {
        "line_id": key, "settlement_id": "S1", "item_code": "XJ01CAA040A001010100001",
        "item_name": "阿莫西林胶囊", "fee_category": "09", "charge_time": "2024-03-02 09:00:00",
        "quantity": "2", "unit_price": "12.5", "amount": "25.00", "doctor_id": "D01",
    }
    return row | values


def write_csv(
    path: Path, table: Table, rows: list[dict[str, str]], header: str = "name",
    encoding: str = "utf-8",
) -> Path:
    """A CSV of ``rows`` with headers as contract names, Chinese names or national fields."""
    names = {"name": lambda c: c.name, "zh": lambda c: c.zh,
             "national": lambda c: c.national or c.name}[header]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([names(c) for c in table.columns])
    writer.writerows([row[c.name] for c in table.columns] for row in rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out.getvalue().encode(encoding))
    return path


def folder(tmp_path: Path, settlements: list[dict], fees: list[dict], **kw) -> Path:
    write_csv(tmp_path / "settlements.csv", SETTLEMENTS, settlements, **kw)
    write_csv(tmp_path / "fee_lines.csv", FEE_LINES, fees, **kw)
    return tmp_path


def gzipped(path: Path, name: str | None = None) -> Path:
    """``path`` gzipped beside it (as ``name``, else ``path.name + '.gz'``), in its place."""
    target = path.with_name(name or f"{path.name}.gz")
    target.write_bytes(gzip.compress(path.read_bytes()))
    path.unlink()
    return target


def validate(data: Path, out: Path, *flags: str):
    return CliRunner().invoke(app, ["validate", "--data", str(data), "--out", str(out), *flags])


def found(ingestion) -> set[tuple]:
    return set(ingestion.quarantine.select("table", "line", "column", "reason").iter_rows())


# --- the property: good rows kept exactly, bad rows quarantined, nothing else ----------

TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y/%m/%d %H:%M:%S", "%Y%m%d%H%M%S")
BAD = {
    ColumnType.TIMESTAMP: ("2024-13-01 00:00:00", "2024-02-30", "yesterday", "2024-01-01 25:00"),
    ColumnType.MONEY: ("abc", "1e3", "1,234.50", "12.3.4", "¥5"),
}
BAD[ColumnType.QUANTITY] = BAD[ColumnType.MONEY]


@st.composite
def cell(draw, column, key: str):
    """(text in the file, value expected in the table) for one good cell."""
    if column.name in ("settlement_id", "line_id"):
        return key, key
    if column.nullable and draw(st.booleans()):
        return draw(st.sampled_from(["", "  "])), None
    if column.type is ColumnType.TIMESTAMP:
        value = draw(st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2030, 12, 31)))
        value = value.replace(microsecond=0)
        return value.strftime(draw(st.sampled_from(TIME_FORMATS))), value
    if column.type in (ColumnType.MONEY, ColumnType.QUANTITY):
        scale = column.type.polars.scale
        value = draw(st.decimals(-10**6, 10**6, places=scale + 2))
        return str(value), value.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
    code = draw(st.text("0123456789ABX.", min_size=1, max_size=8))
    read = code.zfill(column.digits) if column.digits and code.isdigit() else code
    return draw(st.sampled_from(["{}", " {} "])).format(code), read


@st.composite
def table_file(draw):
    """A table, its rows as text, the rows expected kept, and the quarantine expected."""
    table = draw(st.sampled_from([SETTLEMENTS, FEE_LINES]))
    (key,) = table.key
    kinds = ["good", "bad value", "missing", "duplicate"]
    if table is SETTLEMENTS:
        kinds.append("discharge before admission")
    rows, kept, kept_text, quarantined = [], [], [], set()
    for i, kind in enumerate(draw(st.lists(st.sampled_from(kinds), max_size=12))):
        line = i + 2
        pairs = {c.name: draw(cell(c, f"K{i:03d}")) for c in table.columns}
        if table is SETTLEMENTS and pairs["discharge_time"][1] is not None:
            stay = dt.timedelta(hours=draw(st.integers(0, 500)))
            end = pairs["admit_time"][1] + stay
            pairs["discharge_time"] = (end.strftime("%Y-%m-%d %H:%M:%S"), end)
        text = {name: pair[0] for name, pair in pairs.items()}
        bad = kind != "good" and (kind != "duplicate" or bool(kept))
        if bad and pairs.get("reversed_settlement_id", (None, None))[1] is not None:
            # a quarantined reversal row still names the settlement it reverses
            quarantined.add((table.name, line, "reversed_settlement_id", REVERSAL_STANDS))
        if kind == "bad value":
            column = draw(st.sampled_from([c for c in table.columns if c.type in BAD]))
            text[column.name] = draw(st.sampled_from(BAD[column.type]))
            quarantined.add((table.name, line, column.name, "bad " + (
                "timestamp" if column.type is ColumnType.TIMESTAMP else "decimal")))
        elif kind == "missing":
            column = draw(st.sampled_from([c for c in table.columns if not c.nullable]))
            text[column.name] = draw(st.sampled_from(["", "   "]))
            quarantined.add((table.name, line, column.name, "missing value"))
        elif kind == "duplicate" and kept:
            j = draw(st.integers(0, len(kept) - 1))
            if draw(st.booleans()):  # the same row sent twice
                text = dict(kept_text[j])
                stands = (table.name, line, "reversed_settlement_id", REVERSAL_STANDS)
                quarantined.discard(stands)
                if kept[j].get("reversed_settlement_id") is not None:
                    quarantined.add(stands)
            text[key] = kept[j][key]
            typed = {name: pair[1] for name, pair in pairs.items()} | {key: kept[j][key]}
            same = text == kept_text[j] or typed == kept[j]
            quarantined.add((table.name, line, key,
                             "duplicate key" if same else CONFLICTING_KEY))
        elif kind == "discharge before admission":
            day_before = pairs["admit_time"][1] - dt.timedelta(days=1)
            text["discharge_time"] = day_before.isoformat()
            quarantined.add((table.name, line, "discharge_time", kind))
        else:
            kept.append({name: pair[1] for name, pair in pairs.items()})
            kept_text.append(text)
        rows.append(text)
    return table, rows, kept, quarantined


@given(table_file())
@settings(max_examples=examples(40), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
def test_good_rows_kept_and_bad_rows_quarantined_by_line_and_reason(case):
    table, rows, kept, quarantined = case
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        other = FEE_LINES if table is SETTLEMENTS else SETTLEMENTS
        write_csv(data / f"{table.name}.csv", table, rows)
        write_csv(data / f"{other.name}.csv", other, [])
        ingestion = load_folder(data)
    assert ingestion.table(table.name).to_dicts() == kept
    assert found(ingestion) == quarantined
    assert ingestion.rows_read[table.name] == len(rows)
    assert ingestion.quarantine["file"].unique().to_list() in ([], [f"{table.name}.csv"])


# --- encodings and headers -------------------------------------------------------------


@pytest.mark.parametrize("encoding", [None, "gbk", "gb18030"])
def test_gbk_csv_with_chinese_headers(tmp_path, encoding):
    data = folder(tmp_path, [settlement("S1", diagnosis_code="肺炎")], [fee_line("L1")],
                  header="zh", encoding="gbk")
    ingestion = load_folder(data, encoding=encoding)
    assert ingestion.table("fee_lines")["item_name"].to_list() == ["阿莫西林胶囊"]
    assert ingestion.table("settlements")["diagnosis_code"].to_list() == ["肺炎"]
    assert ingestion.quarantine.is_empty()


def test_utf8_with_bom_and_padded_headers(tmp_path):
    path = write_csv(tmp_path / "settlements.csv", SETTLEMENTS, [settlement("S1")])
    text = path.read_text(encoding="utf-8").replace("settlement_id,", " settlement_id ,", 1)
    path.write_bytes("\ufeff".encode() + text.encode())
    write_csv(tmp_path / "fee_lines.csv", FEE_LINES, [fee_line("L1")])
    ingestion = load_folder(tmp_path)
    assert ingestion.table("settlements")["settlement_id"].to_list() == ["S1"]
    assert ingestion.table("settlements").columns == SETTLEMENTS.column_names


def test_national_field_names_with_any_letter_case(tmp_path):
    folder(tmp_path, [settlement("S1")], [fee_line("L1")], header="national")
    path = tmp_path / "fee_lines.csv"
    text = path.read_text(encoding="utf-8").replace("bkkp_sn", "BKKP_SN")
    path.write_text(text, encoding="utf-8")
    ingestion = load_folder(tmp_path)
    assert ingestion.table("fee_lines")["line_id"].to_list() == ["L1"]
    assert ingestion.table("settlements")["total_amount"].to_list() == [Decimal("1200.50")]


def test_a_national_extract_of_every_table_loads_without_a_mapping(tmp_path):
    """The contract says a national platform extract loads with no mapping file, but
    names no national field for institutions' kind and region nor the catalog's
    fee_category: an extract with the national fields alone must still load (it had
    stopped the run: "table institutions needs column kind")."""
    folder(tmp_path, [settlement("S1")], [fee_line("L1")], header="national")
    national = {
        "persons": "psn_no,gend,brdy,insu_admdvs\nP001,1,1980-01-01,350902\n",
        "institutions": "fixmedins_code,fixmedins_name,hosp_lv\n"
                        "H35090200001,张掖市人民医院,3\n",
        "catalog": "hilist_code,hilist_name\nXJ01CAA040A001010100001,阿莫西林胶囊\n",
    }
    for name, text in national.items():
        (tmp_path / f"{name}.csv").write_text(text, encoding="utf-8")
    ingestion = load_folder(tmp_path)
    assert ingestion.quarantine.is_empty()
    assert ingestion.table("institutions").select("institution_id", "name", "kind",
                                                  "region").row(0) == (
        "H35090200001", "张掖市人民医院", None, None)
    assert ingestion.table("catalog").select("item_name", "fee_category").row(0) == (
        "阿莫西林胶囊", None)
    assert any("institutions.csv: no column kind, region; left empty" in n
               for n in ingestion.notes), ingestion.notes


def test_column_map_renames_site_headers(tmp_path):
    folder(tmp_path, [settlement("S1")], [fee_line("L1")])
    path = tmp_path / "fee_lines.csv"
    text = path.read_text(encoding="utf-8").replace("line_id", "流水号").replace("amount", "金额")
    path.write_text(text, encoding="utf-8")
    mapping = tmp_path / "map.yaml"
    mapping.write_text("column_map:\n  流水号: line_id\n  金额: amount\n", encoding="utf-8")
    ingestion = load_folder(tmp_path, column_map=mapping)
    fees = ingestion.table("fee_lines")
    assert fees.select("line_id", "amount").row(0) == ("L1", Decimal("25.00"))
    with pytest.raises(IngestError, match="did you mean 'amount'"):
        mapping.write_text("column_map:\n  金额: amont\n", encoding="utf-8")
        load_folder(tmp_path, column_map=mapping)


def test_a_column_map_gives_a_table_its_own_names_where_one_name_means_two_columns(tmp_path):
    """`编号` is the institution's code in one export and the item's in another: one flat
    map cannot say both (a key given twice is an error), so a table may have its own."""
    folder(tmp_path, [settlement("S1")], [fee_line("L1")])
    fees = tmp_path / "fee_lines.csv"
    fees.write_text(fees.read_text(encoding="utf-8").replace("line_id", "流水号"),
                    encoding="utf-8")
    (tmp_path / "institutions.csv").write_text(
        "编号,name,kind,level,region\nH1,第一医院,hospital,3,350902\n", encoding="utf-8")
    (tmp_path / "catalog.csv").write_text(
        "编号,item_name,generic_name,fee_category,price_cap,gender_limit,max_daily_quantity\n"
        "X,阿莫西林胶囊,阿莫西林,09,,,\n", encoding="utf-8")
    mapping = tmp_path / "map.yaml"
    mapping.write_text("column_map:\n  流水号: line_id\n  编号: institution_id\n"
                       "  catalog:\n    编号: item_code\n", encoding="utf-8")
    with load_folder(tmp_path, column_map=mapping) as ingestion:
        assert ingestion.table("institutions")["institution_id"].to_list() == ["H1"]
        assert ingestion.table("catalog")["item_code"].to_list() == ["X"]
        assert ingestion.table("fee_lines")["line_id"].to_list() == ["L1"]
    mapping.write_text("column_map:\n  catalog:\n    编号: code\n", encoding="utf-8")
    with pytest.raises(IngestError, match=r"'编号' maps to 'code' \(in catalog\), which is no "
                                          r"contract column; did you mean 'item_code'\?"):
        load_folder(tmp_path, column_map=mapping)
    mapping.write_text("column_map:\n  catalogue:\n    编号: item_code\n", encoding="utf-8")
    with pytest.raises(IngestError, match="'catalogue' holds a mapping, but is no contract "
                                          "table"):
        load_folder(tmp_path, column_map=mapping)


def test_a_column_map_saved_as_gbk_or_naming_a_header_twice_is_an_error_saying_so(tmp_path):
    """Found in review: a GBK-saved map said only "'utf-8' codec can't decode byte 0xbe",
    and a header mapped twice kept the last mapping silently."""
    folder(tmp_path, [settlement("S1")], [fee_line("L1")])
    mapping = tmp_path / "map.yaml"
    mapping.write_bytes("column_map:\n  金额: amount\n".encode("gbk"))
    with pytest.raises(IngestError, match=r"not UTF-8 \(saved as GBK\?\): save it as UTF-8"):
        load_folder(tmp_path, column_map=mapping)
    mapping.write_text("column_map:\n  金额: amount\n  金额: total_amount\n", encoding="utf-8")
    with pytest.raises(IngestError, match="key '金额' is given twice"):
        load_folder(tmp_path, column_map=mapping)


def test_the_specs_other_chinese_names_are_headers_too(tmp_path):
    write_csv(tmp_path / "settlements.csv", SETTLEMENTS,
              [settlement("S1"), settlement("S2", reversed_settlement_id="S1")], header="zh")
    text = (tmp_path / "settlements.csv").read_text(encoding="utf-8")
    text = text.replace("入院时间", "就诊时间").replace("原结算ID", "原结算ID (冲销)")
    (tmp_path / "settlements.csv").write_text(text, encoding="utf-8")
    write_csv(tmp_path / "fee_lines.csv", FEE_LINES, [])
    ingestion = load_folder(tmp_path)
    assert ingestion.table("settlements")["reversed_settlement_id"].to_list() == [None, "S1"]
    assert not ingestion.notes


@pytest.mark.parametrize("sep", [" / ", "/"])
def test_the_specs_two_chinese_names_together_are_a_header_too(tmp_path, sep):
    """Found in review: a header copied from the contract's table as it stands
    ('最高限价 / 支付标准') was ignored, and every price cap was empty."""
    write_csv(tmp_path / "settlements.csv", SETTLEMENTS, [settlement("S1")], header="zh")
    text = (tmp_path / "settlements.csv").read_text(encoding="utf-8")
    (tmp_path / "settlements.csv").write_text(
        text.replace("入院时间", f"入院时间{sep}就诊时间"), encoding="utf-8")
    write_csv(tmp_path / "fee_lines.csv", FEE_LINES, [])
    (tmp_path / "catalog.csv").write_text(
        f"医保目录编码,名称,收费项目类别,最高限价{sep}支付标准\nX,x,09,12.5\n", encoding="utf-8")
    ingestion = load_folder(tmp_path)
    assert ingestion.table("catalog")["price_cap"].to_list() == [Decimal("12.5")]
    assert ingestion.table("settlements")["admit_time"].null_count() == 0
    assert not [n for n in ingestion.notes if "price_cap" in n or "admit_time" in n]


def test_a_repeated_header_is_an_error_naming_it(tmp_path):
    folder(tmp_path, [settlement("S1")], [fee_line("L1")])
    lines = (tmp_path / "fee_lines.csv").read_text(encoding="utf-8").splitlines()
    lines = [lines[0] + ",amount", lines[1] + ",99"]
    (tmp_path / "fee_lines.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(IngestError, match="header 'amount' appears more than once"):
        load_folder(tmp_path)


def test_unknown_columns_dropped_and_absent_nullable_columns_filled(tmp_path):
    folder(tmp_path, [settlement("S1")], [])
    rows = "line_id,settlement_id,item_code,item_name,fee_category,charge_time,quantity,"
    rows += "unit_price,amount,备注\nL1,S1,X,药,01,2024-01-01,1,1,1,note\n"
    (tmp_path / "fee_lines.csv").write_text(rows, encoding="utf-8")
    ingestion = load_folder(tmp_path)
    assert ingestion.table("fee_lines").columns == FEE_LINES.column_names
    assert ingestion.table("fee_lines")["doctor_id"].to_list() == [None]
    assert any("备注" in note for note in ingestion.notes)
    assert any("doctor_id" in note for note in ingestion.notes)


@pytest.mark.parametrize("token", ["NULL", "null", "\\N", " NULL ",
                                   "nan", "NaN", "None", "NaT", "<NA>"])
def test_database_dump_null_tokens_are_empty_values(tmp_path, token):
    """Found in review: a dump's `NULL` in reversed_settlement_id made every settlement a
    reversal (no lead at all), and in discharge_time a bad timestamp. Likewise pandas'
    `nan`/`None`/`NaT`/`<NA>`, which a frame saved after `astype(str)` writes."""
    outpatient = settlement("S1", medical_type="11", discharge_time=token,
                            reversed_settlement_id=token, department_code=token)
    folder(tmp_path, [outpatient], [fee_line("L1", doctor_id=token)])
    ingestion = load_folder(tmp_path)
    assert ingestion.quarantine.is_empty()
    kept = ingestion.table("settlements")
    assert kept.select("discharge_time", "reversed_settlement_id", "department_code").row(0) \
        == (None, None, None)
    assert ingestion.table("fee_lines")["doctor_id"].to_list() == [None]


@pytest.mark.parametrize("zero", ["0000-00-00 00:00:00", "0000-00-00"])
def test_mysql_zero_date_is_no_date(tmp_path, zero):
    """Found building messy exports: a MySQL dump's outpatient visits carry the zero date
    as discharge_time, and every one was quarantined as a bad timestamp."""
    folder(tmp_path, [settlement("S1", medical_type="11", discharge_time=zero),
                      settlement("S2", admit_time=zero)], [fee_line("L1")])
    ingestion = load_folder(tmp_path)
    assert ingestion.table("settlements")["discharge_time"].to_list() == [None]
    assert ingestion.quarantine.select("line", "column", "value", "reason").rows() == [
        (3, "admit_time", zero, "missing value")]


def test_a_required_value_given_as_null_token_is_a_missing_value(tmp_path):
    folder(tmp_path, [settlement("S1", person_id="NULL")], [])
    quarantine = load_folder(tmp_path).quarantine
    assert quarantine.select("column", "value", "reason").rows() == [
        ("person_id", "NULL", "missing value")]


def test_an_optional_table_with_no_rows_is_noted_and_empty_item_pairs_say_what_they_do(
        tmp_path):
    """Found in review: a header-only item_pairs.csv replaced the shipped pairs, and the
    mutually-exclusive rule paired nothing, without a word."""
    folder(tmp_path, [settlement("S1")], [fee_line("L1")])
    (tmp_path / "item_pairs.csv").write_text("item_code_a,item_code_b,relation\n")
    (tmp_path / "persons.csv").write_text("person_id,gender,birth_date,insured_region\n")
    notes = load_folder(tmp_path).notes
    assert "persons: no rows kept" in notes
    assert any(n.startswith("item_pairs: no rows kept") and "replaces the shipped pairs" in n
               for n in notes)
    assert not any(n.startswith(("settlements:", "fee_lines:")) for n in notes)


# --- the acceptance case: a GBK export with three bad rows, through the CLI ------------


def gbk_export(tmp_path: Path) -> Path:
    rows = [settlement(f"S{i:03d}", medical_type="01") for i in range(1, 11)]
    rows[2]["total_amount"] = "一百"  # line 4
    rows[5]["admit_time"] = "2024-02-30 08:00:00"  # line 7
    rows[8]["person_id"] = ""  # line 10
    data = tmp_path / "data"
    return folder(data, rows, [fee_line("L1", settlement_id="S001")], header="zh", encoding="gbk")


def test_validate_quarantines_exactly_the_three_bad_lines(tmp_path):
    data, out = gbk_export(tmp_path), tmp_path / "out"
    result = validate(data, out)
    assert result.exit_code == 0, result.output
    raw = (out / "quarantine.csv").read_bytes()
    # columns only ever added at the end: other tools read the first ones by name
    assert raw.startswith(
        b"\xef\xbb\xbftable,file,line,column,value,reason,record_key,reason_zh\n")
    quarantine = pl.read_csv(raw, infer_schema=False)
    assert quarantine.drop("table").rows() == [
        ("settlements.csv", "4", "total_amount", "一百", "bad decimal", "S003", "数值无法识别"),
        ("settlements.csv", "7", "admit_time", "2024-02-30 08:00:00", "bad timestamp", "S006",
         "时间无法识别"),
        ("settlements.csv", "10", "person_id", None, "missing value", "S009", "必填值缺失"),
    ]
    kept = load_folder(data).table("settlements")
    assert kept["settlement_id"].to_list() == [f"S{i:03d}" for i in (1, 2, 4, 5, 7, 8, 10)]

    strict = validate(data, out, "--strict")
    assert strict.exit_code == 1
    assert "3 row(s) quarantined" in strict.output


# --- quarantine.csv names each record and says why in Chinese ---------------------------


def test_each_quarantined_row_names_its_record_by_its_key_as_read(tmp_path):
    """Found in an inspector's review: a quarantine line gave only file and line, which a
    re-export renumbers. record_key is the key's original text; empty where the key is
    missing or unreadable; the keyless tables' columns joined by '|', an unreadable part
    left empty."""
    write_csv(tmp_path / "settlements.csv", SETTLEMENTS, [
        settlement(" S1 ", total_amount="x"),  # line 2: the text as it stands
        settlement("NULL"),  # the missing value: no key to show
        settlement("3.30106E+13"),  # a key Excel mangled: no key either
        settlement("S4", person_id="", reversed_settlement_id="S9"),  # its reversal entry too
        settlement("S5"), settlement("S5", total_amount="1"),  # a repeat, as kept
    ])
    write_csv(tmp_path / "fee_lines.csv", FEE_LINES, [fee_line("L1", amount="")])
    (tmp_path / "persons.csv").write_text(
        "person_id,gender,birth_date,insured_region\nP1,1,1980-02-30,350902\n")
    (tmp_path / "purchases.csv").write_text(
        "institution_id,item_code,purchase_date,quantity\n"
        "H1,X1,2024/03/01,many\nH1,,2024/03/02,1\nH1,X2,2024-13-01,1\n,,,\n")
    (tmp_path / "item_pairs.csv").write_text("item_code_a,item_code_b,relation\nA1,B1,\n")
    (tmp_path / "watchlist.csv").write_text("list_name,item_code,generic_name\n,X1,\n")
    (tmp_path / "catalog.csv").write_text(
        "item_code,item_name,generic_name,fee_category,price_cap,gender_limit,"
        "max_daily_quantity\nX1,阿莫西林,,09,lots,,\n")
    (tmp_path / "institutions.csv").write_text("institution_id,name,kind,level,region\n"
                                               "H1,,hospital,3,350902\n")
    with load_folder(tmp_path) as ingestion:
        keys = ingestion.quarantine.select("table", "line", "reason", "record_key").rows()
    assert keys == [
        ("catalog", 2, "bad decimal", "X1"),
        ("fee_lines", 2, "missing value", "L1"),
        ("institutions", 2, "missing value", "H1"),
        ("item_pairs", 2, "missing value", "A1|B1"),
        ("persons", 2, "bad date", "P1"),
        ("purchases", 2, "bad decimal", "H1|X1|2024/03/01"),
        ("purchases", 3, "missing value", "H1||2024/03/02"),
        ("purchases", 4, "bad date", "H1|X2|"),
        ("purchases", 5, "empty row", None),
        ("settlements", 2, "bad decimal", " S1 "),
        ("settlements", 3, "missing value", None),
        ("settlements", 4, SCIENTIFIC, None),
        ("settlements", 5, "missing value", "S4"),
        ("settlements", 5, REVERSAL_STANDS, "S4"),
        ("settlements", 7, CONFLICTING_KEY, "S5"),
        ("watchlist", 2, "missing value", "|X1|"),
    ]


def test_every_quarantine_reason_has_its_chinese_text():
    """report.html and quarantine.csv's reason_zh show a reason in Chinese. Every
    reason constant of fraudscreen.quarantine counts (any new text constant is taken for
    one), and those kept in its tables."""
    not_reasons = {"PART", "LINE", "REVERSED", "RECORD_KEY", "HIDDEN", *vars(contract)}
    constants = {value for name, value in vars(quarantine).items()
                 if name.isupper() and not name.startswith("_") and isinstance(value, str)
                 and name not in not_reasons}
    in_tables = {*BAD_VALUE.values(),
                 *(reason for rules in ROW_RULES.values() for _, reason, _ in rules)}
    assert len(constants) >= 7
    assert sorted((constants | in_tables) - set(REASON_ZH)) == []
    assert all(zh and zh != en for en, zh in REASON_ZH.items())


def test_a_reason_without_chinese_text_shows_in_english():
    entries = pl.DataFrame({c: ["x"] for c in quarantine.COLUMNS}).with_columns(
        line=pl.lit(2), reason=pl.lit("a reason added later"))
    assert csv_frame(entries)["reason_zh"].to_list() == ["a reason added later"]
    assert reason_zh("a reason added later") == "a reason added later"
    assert reason_zh(DUPLICATE_KEY) == "主键重复"


def test_validate_warns_of_fee_lines_and_reversals_naming_no_settlement(tmp_path):
    folder(tmp_path / "data", [settlement("S1"), settlement("R1", reversed_settlement_id="S9")],
           [fee_line("L1"), fee_line("L2", settlement_id="S7"), fee_line("L3", settlement_id="S8")])
    result = validate(tmp_path / "data", tmp_path / "out")
    assert result.exit_code == 0
    said = " ".join(result.output.split())
    assert "warning: 2 fee line(s) name a settlement that is not among the settlements kept" \
        in said
    assert "warning: 1 reversal row(s) name a settlement that is not among the settlements " \
           "kept" in said


def test_validate_exits_2_naming_a_missing_required_table(tmp_path):
    write_csv(tmp_path / "fee_lines.csv", FEE_LINES, [fee_line("L1")])
    result = validate(tmp_path, tmp_path / "out")
    assert result.exit_code == 2
    assert "required table settlements" in result.output
    assert "Traceback" not in result.output


def test_validate_exits_2_naming_a_missing_required_column(tmp_path):
    folder(tmp_path, [settlement("S1")], [fee_line("L1")], header="zh")
    path = tmp_path / "settlements.csv"
    path.write_text(path.read_text(encoding="utf-8").replace("医疗费总额", "医疗费总金额"),
                    encoding="utf-8")
    result = validate(tmp_path, tmp_path / "out")
    assert result.exit_code == 2
    assert "settlements.csv" in result.output and "total_amount" in result.output
    assert "did you mean '医疗费总金额'" in result.output
    assert "Traceback" not in result.output


def test_settlements_that_lost_fee_lines_to_quarantine_are_noted(tmp_path):
    """Found in review: a stay whose treatment lines had a bad date was judged on its bed
    fees alone and flagged as idle, without a word that lines were missing."""
    folder(tmp_path, [settlement("S1"), settlement("S2")],
           [fee_line("L1", settlement_id="S1", charge_time="2024/13/01"),
            fee_line("L2", settlement_id=" S1 ", amount="x"), fee_line("L3", settlement_id="S2"),
            fee_line("L4", settlement_id="S2")])
    notes = load_folder(tmp_path).notes
    assert ("fee_lines: 1 settlement(s) lost fee lines to quarantine: the rules judge them "
            "without those lines (a stay may read as idle); see quarantine.csv") in notes


def test_a_title_line_above_the_header_is_an_error_showing_the_header_read(tmp_path):
    """Found in review: an export titled 结算记录导出 2024-06-30 on its first line said only
    that settlement_id was missing."""
    folder(tmp_path, [settlement("S1")], [fee_line("L1")], header="zh")
    path = tmp_path / "settlements.csv"
    path.write_text("结算记录导出 2024-06-30\n" + path.read_text(encoding="utf-8"),
                    encoding="utf-8")
    result = validate(tmp_path, tmp_path / "out")
    assert result.exit_code == 2
    assert "The header read was: 结算记录导出 2024-06-30" in " ".join(result.output.split())


def test_full_width_letters_in_a_header_read_as_plain_ones(tmp_path):
    """Found in review: 结算ＩＤ (full-width ID, as some input methods type it) was not
    recognised as 结算ID."""
    folder(tmp_path, [settlement("S1")], [fee_line("L1")], header="zh")
    path = tmp_path / "settlements.csv"
    path.write_text(path.read_text(encoding="utf-8").replace("结算ID", "结算ＩＤ", 1),
                    encoding="utf-8")
    assert load_folder(tmp_path).table("settlements")["settlement_id"].to_list() == ["S1"]


def test_unusable_encodings_are_ingest_errors(tmp_path):
    folder(tmp_path, [settlement("S1", diagnosis_code="肺炎")], [fee_line("L1")], encoding="gbk")
    with pytest.raises(IngestError, match="unknown encoding"):
        load_folder(tmp_path, encoding="klingon")
    with pytest.raises(IngestError, match=r"settlements\.csv.*not valid UTF-8"):
        load_folder(tmp_path, encoding="utf-8")
    utf8 = write_csv(tmp_path / "settlements.csv", SETTLEMENTS,
                     [settlement(f"S{i}", diagnosis_code="肺炎") for i in range(50)])
    stray = utf8.stat().st_size - 10
    raw = utf8.read_bytes()
    utf8.write_bytes(raw[:stray] + b"\xff" + raw[stray:])
    line = raw[:stray].count(b"\n") + 1  # where a person looks for it
    with pytest.raises(IngestError, match=rf"neither UTF-8 \(invalid start byte at line {line} "
                                          rf"\(byte {stray:,}\)\) nor GB18030 \(at line "
                                          rf"{line} \(byte [\d,]+\)\)"):
        load_folder(tmp_path)


# --- values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "money", "quantity"),
    [
        ("0.105", "0.11", "0.1050"),
        ("12.345", "12.35", "12.3450"),
        ("-0.105", "-0.11", "-0.1050"),
        ("0.0049", "0.00", "0.0049"),
        ("0.00005", "0.00", "0.0001"),
        ("+.5", "0.50", "0.5000"),
        ("1234.", "1234.00", "1234.0000"),
        ("99999999999999.994", "99999999999999.99", None),
        ("99999999999999.995", None, None),
        ("1e3", None, None),
        ("1,000", None, None),
        ("12.5元", None, None),
    ],
)
def test_decimals_are_exact_and_round_half_away_from_zero(tmp_path, text, money, quantity):
    folder(tmp_path, [settlement("S1")], [fee_line("L1", amount=text, quantity=text)])
    ingestion = load_folder(tmp_path)
    fees = ingestion.table("fee_lines")
    assert fees.schema["amount"] == pl.Decimal(16, 2)
    expected = {("fee_lines", 2, "amount", "bad decimal")} if money is None else set()
    if quantity is None:
        expected.add(("fee_lines", 2, "quantity", "bad decimal"))
    assert found(ingestion) == expected
    if money and quantity:
        assert fees.select("amount", "quantity").row(0) == (Decimal(money), Decimal(quantity))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-01 08:30:00", T0),
        ("2024-03-01T08:30:00", T0),
        ("2024/03/01 08:30:00", T0),
        ("2024/3/1 8:30", T0),
        ("2024-03-01 08:30", T0),
        ("20240301083000", T0),
        ("2024-03-01 08:30:00.250", T0.replace(microsecond=250000)),
        ("2024-03-01", dt.datetime(2024, 3, 1)),
        ("20240301", dt.datetime(2024, 3, 1)),
        ("2024030108300", None),
        ("2024-03-01 08:30:00 x", None),
        ("2024-02-30 08:30:00", None),
        ("01/03/2024 08:30", None),
        # a zone makes an instant, read as China Standard Time (as zoned Parquet is)
        ("2024-03-01T08:30:00+08:00", T0),
        ("2024-03-01 08:30:00+0800", T0),
        ("2024-03-01T00:30:00Z", T0),
        ("2024-03-01T00:30:00.250Z", T0.replace(microsecond=250000)),
        ("2024-02-29T19:30:00-05:00", T0),
        ("2024-03-01T08:30+08:00", None),
        # years outside 1900-2099 (found in review: year 0 passed, then broke the run)
        ("1900-01-01 00:00:00", dt.datetime(1900, 1, 1)),
        ("2099-12-31 23:59:59", dt.datetime(2099, 12, 31, 23, 59, 59)),
        ("1899-12-31 23:59:59", None),
        ("0000-01-01 00:00:00", None),
        ("12024-03-01 08:30:00", None),
        ("2100-01-01", None),
    ],
)
def test_timestamp_formats(tmp_path, text, expected):
    folder(tmp_path, [settlement("S1")], [fee_line("L1", charge_time=text)])
    ingestion = load_folder(tmp_path)
    if expected is None:
        assert found(ingestion) == {("fee_lines", 2, "charge_time", "bad timestamp")}
    else:
        assert ingestion.table("fee_lines")["charge_time"].to_list() == [expected]


def test_a_column_mixing_formats_reads_each_value_whichever_format_comes_first(tmp_path):
    """The format most of a column's first values are in is tried first on every value
    (one parse each for a one-format export); the others still read what it rejects."""
    texts = ["2024-03-01T08:30:00", "2024-03-01 08:30", "", "20240301083000", "bad",
             "2024/3/1 8:30"]
    folder(tmp_path, [settlement("S1")],
           [fee_line(f"L{i}", charge_time=t) for i, t in enumerate(texts)])
    ingestion = load_folder(tmp_path)
    assert ingestion.table("fee_lines")["charge_time"].to_list() == [T0] * 4
    assert found(ingestion) == {("fee_lines", 4, "charge_time", "missing value"),
                                ("fee_lines", 6, "charge_time", "bad timestamp")}

def test_dates(tmp_path):
    folder(tmp_path, [settlement("S1")], [fee_line("L1")])
    persons = "人员编号,性别,出生日期,参保地医保区划\nP1,1,1980-01-31,010101\n"
    persons += "P2,2,1980/1/31,350902\nP3,1,19800131,350902\nP4,2,1980-02-30,350902\n"
    persons += "P5,1,1980-01-31T00:00:00,350902\nP6,1,1980-01-31 00:00:00.000,350902\n"
    persons += "P7,1,1980-01-30T16:00:00Z,350902\n"  # midnight in China Standard Time
    (tmp_path / "persons.csv").write_text(persons, encoding="utf-8")
    ingestion = load_folder(tmp_path)
    assert ingestion.table("persons")["birth_date"].to_list() == [dt.date(1980, 1, 31)] * 6
    assert ingestion.table("persons")["insured_region"][0] == "010101"
    assert found(ingestion) == {("persons", 5, "birth_date", "bad date")}
    assert "persons" not in ingestion.missing_optional and "catalog" in ingestion.missing_optional


def test_codes_keep_leading_zeros(tmp_path):
    fees = [fee_line(f"L{i}", fee_category=code, item_code="0012") for i, code in
            enumerate(["01", "09", "010"])]
    folder(tmp_path, [settlement("S1", medical_type="01", insured_region="010101")], fees)
    ingestion = load_folder(tmp_path)
    assert ingestion.table("fee_lines")["fee_category"].to_list() == ["01", "09", "010"]
    assert ingestion.table("fee_lines")["item_code"].to_list() == ["0012"] * 3
    assert ingestion.table("settlements").select("medical_type", "insured_region").row(0) == (
        "01", "010101")


def test_fee_categories_that_lost_their_leading_zero_get_it_back_and_are_noted(tmp_path):
    codes = ["1", "7", " 9 ", "01", "123", "1a", "14"]
    fees = [fee_line(f"L{i}", fee_category=code) for i, code in enumerate(codes)]
    folder(tmp_path, [settlement("S1", medical_type="1")], fees)
    ingestion = load_folder(tmp_path)
    assert ingestion.table("fee_lines")["fee_category"].to_list() == [
        "01", "07", "09", "01", "123", "1a", "14"]
    assert ingestion.table("settlements")["medical_type"].to_list() == ["1"]  # no fixed width
    assert [n for n in ingestion.notes if "leading" in n] == [
        "fee_lines.csv: fee_category: 3 code(s) given back their leading zeros, "
        "read as 2 digits (1 → 01)"]


def test_codes_in_integer_or_float_parquet_columns_read_as_their_integers(tmp_path):
    write_csv(tmp_path / "settlements.csv", SETTLEMENTS, [settlement("S1")])
    pl.DataFrame({
        "line_id": ["L1", "L2", "L3"], "settlement_id": ["S1"] * 3,
        "item_code": [12.0, 1.5, -3.0], "item_name": ["a"] * 3,
        "fee_category": [1, 9, 14], "charge_time": [T0] * 3, "quantity": [1] * 3,
        "unit_price": [1] * 3, "amount": [1] * 3, "doctor_id": [float("nan"), 7.0, None],
    }).write_parquet(tmp_path / "fee_lines.parquet")
    fees = load_folder(tmp_path).table("fee_lines")
    assert fees.select("item_code", "fee_category", "doctor_id").rows() == [
        ("12", "01", None), ("1.5", "09", "7"), ("-3", "14", None)]


@pytest.mark.parametrize("dtype, limit", [(pl.Float64, 2**53), (pl.Float32, 2**24)])
def test_float_ids_that_have_lost_digits_are_quarantined_wherever_they_come(
        tmp_path, dtype, limit):
    """Found in review: three 18-digit person ids in a Float64 column all came out as one
    person, 350925198001011264, and were kept; then, such a value after the first thousand
    rows of a chunk (where Excel's damage is looked for) was kept too."""
    big = [350925198001011234.0, 350925198001011250.0, float(limit), float(limit - 1)]
    ids = [float(i) for i in range(1500)] + big  # the lost ones after the first thousand
    write_csv(tmp_path / "fee_lines.csv", FEE_LINES, [fee_line("L1")])
    pl.DataFrame([settlement(f"S{i}") for i in range(len(ids))]).with_columns(
        person_id=pl.Series(ids, dtype=dtype)).write_parquet(tmp_path / "settlements.parquet")
    ingestion = load_folder(tmp_path)
    assert ingestion.table("settlements")["person_id"].to_list()[-1] == str(limit - 1)
    assert ingestion.quarantine.filter(pl.col("column") == "person_id").select(
        "line", "reason").rows() == [(1501, SCIENTIFIC), (1502, SCIENTIFIC), (1503, SCIENTIFIC)]


def test_float_amounts_read_through_their_shortest_text_also_when_tiny(tmp_path):
    write_csv(tmp_path / "settlements.csv", SETTLEMENTS, [settlement("S1")])
    pl.DataFrame({
        "line_id": ["L1", "L2", "L3", "L4"], "settlement_id": ["S1"] * 4, "item_code": ["X"] * 4,
        "item_name": ["a"] * 4, "fee_category": ["09"] * 4, "charge_time": [T0] * 4,
        "quantity": [1e-7, 5e-5, 0.105, 1e16], "unit_price": [1.0] * 4, "amount": [1.0] * 4,
    }).write_parquet(tmp_path / "fee_lines.parquet")
    ingestion = load_folder(tmp_path)
    assert ingestion.table("fee_lines")["quantity"].to_list() == [
        Decimal("0.0000"), Decimal("0.0001"), Decimal("0.1050")]
    assert ingestion.quarantine.select("line", "reason").rows() == [(4, "bad decimal")]


def test_a_file_in_contract_form_whose_codes_lost_zeros_is_staged_and_noted_once(tmp_path):
    write_csv(tmp_path / "settlements.csv", SETTLEMENTS, [settlement("S1")])
    contract_parquet(tmp_path / "fee_lines.parquet", FEE_LINES,
                     [fee_line("L1"), fee_line("L2", fee_category="2")])
    with load_folder(tmp_path) as ingestion:
        assert not any(f.in_place for f in ingestion.tables["fee_lines"].files)
        assert ingestion.table("fee_lines")["fee_category"].to_list() == ["09", "02"]
        assert sum("leading zeros" in n for n in ingestion.notes) == 1
        assert sum("extra" in n for n in ingestion.notes) == 1  # header notes not repeated


def test_ids_that_excel_turned_into_scientific_notation_are_quarantined(tmp_path):
    settlements = [settlement("S1", person_id="3.30106E+13"), settlement("S2"),
                   settlement("S3", person_id="3.3E+13"), settlement("S4", person_id="E+1")]
    folder(tmp_path, settlements, [fee_line("L1")])
    ingestion = load_folder(tmp_path)
    assert ingestion.table("settlements")["settlement_id"].to_list() == ["S2", "S4"]
    assert ingestion.quarantine.select("line", "column", "value", "reason").rows() == [
        (2, "person_id", "3.30106E+13", SCIENTIFIC), (4, "person_id", "3.3E+13", SCIENTIFIC)]


def test_duplicate_keys_and_discharge_before_admission(tmp_path):
    settlements = [
        settlement("S1"),
        settlement("S2", admit_time="2024-03-05 08:00:00", discharge_time="2024-03-04 08:00:00"),
        settlement("S1", person_id="P999"),
        settlement("S3", discharge_time=""),
    ]
    folder(tmp_path, settlements, [fee_line("L1"), fee_line("L1")])
    ingestion = load_folder(tmp_path)
    assert found(ingestion) == {
        ("settlements", 3, "discharge_time", "discharge before admission"),
        ("settlements", 4, "settlement_id", CONFLICTING_KEY),  # another person
        ("fee_lines", 3, "line_id", "duplicate key"),  # the same line sent twice
    }
    assert ingestion.table("settlements").select("settlement_id", "person_id").rows() == [
        ("S1", "P001"), ("S3", "P001")]


def test_discharge_before_admission_is_judged_by_calendar_date(tmp_path):
    """Found building messy exports: a discharge_time given as a date (midnight) for a
    visit or stay admitted at 08:00 that day was quarantined as discharge before
    admission; the rules judge stays by date, so only an earlier day contradicts."""
    settlements = [
        settlement("S1", medical_type="11", admit_time="2024-03-05 08:00:00",
                   discharge_time="2024-03-05"),
        settlement("S2", admit_time="2024-03-05 08:00:00", discharge_time="2024-03-05 07:00"),
        settlement("S3", admit_time="2024-03-05 08:00:00", discharge_time="2024-03-04 23:59"),
    ]
    folder(tmp_path, settlements, [fee_line("L1")])
    ingestion = load_folder(tmp_path)
    assert ingestion.table("settlements")["settlement_id"].to_list() == ["S1", "S2"]
    assert found(ingestion) == {("settlements", 4, "discharge_time", "discharge before admission")}


# --- a reversal row that is quarantined still reverses -------------------------------

def reversal(key: str, of: str, **values: str) -> dict[str, str]:
    return settlement(key, reversed_settlement_id=of, total_amount="-1200.50",
                      fund_amount="-900.00", **values)


@pytest.mark.parametrize("broken, column, reason", [
    ({"settle_time": ""}, "settle_time", "missing value"),
    ({"admit_time": "2024-03-20 08:00:00"}, "discharge_time", "discharge before admission"),
    ({"settlement_id": "S2"}, "settlement_id", CONFLICTING_KEY),
])
def test_a_quarantined_reversal_row_names_the_settlement_it_still_reverses(
        tmp_path, broken, column, reason):
    folder(tmp_path, [settlement("S1"), settlement("S2"), reversal("R1", "S1", **broken),
                      settlement("S3", settle_time="")], [fee_line("L1")])
    with load_folder(tmp_path) as ingestion:
        assert ingestion.table("settlements")["settlement_id"].to_list() == ["S1", "S2"]
        assert found(ingestion) == {
            ("settlements", 4, "reversed_settlement_id", REVERSAL_STANDS),
            ("settlements", 4, column, reason),
            ("settlements", 5, "settle_time", "missing value")}
        assert quarantined_reversals(ingestion.quarantine) == ["S1"]


def test_no_lead_on_a_settlement_whose_reversal_row_was_quarantined(tmp_path):
    """A readmission 5 days after discharge is a lead, unless the later stay was reversed
    (冲销) — also when the reversal row itself is quarantined (found in review)."""
    stays = [settlement("A", admit_time="2024-03-01 08:30:00"),
             settlement("B", admit_time="2024-03-10 08:30:00",
                        discharge_time="2024-03-12 10:00:00", settle_time="2024-03-12 11:00:00")]
    fees = [fee_line("L1", settlement_id="A"), fee_line("L2", settlement_id="B",
                                                         charge_time="2024-03-11 09:00:00")]
    leads = {}
    for case, extra in (("plain", []), ("reversed", [reversal("BR", "B", settle_time="")])):
        data = folder(tmp_path / case / "data", stays + extra, fees)
        out = tmp_path / case / "out"
        result = CliRunner().invoke(app, ["run", "--data", str(data), "--out", str(out),
                                          "--quiet"])
        assert result.exit_code == 0, result.output
        leads[case] = pl.read_parquet(out / "suspicions.parquet").filter(
            pl.col("rule_id") == "split_hospitalisation.readmission")["settlement_id"].to_list()
    assert leads == {"plain": ["B"], "reversed": []}


def test_two_bad_cells_give_two_entries_but_one_row_and_empty_rows_one_entry(tmp_path):
    folder(tmp_path, [settlement("S1", total_amount="x", settle_time="y")], [fee_line("L1")])
    with (tmp_path / "settlements.csv").open("a", encoding="utf-8") as f:
        f.write(",,,,,,,,,,,,,,\n\n")
    ingestion = load_folder(tmp_path)
    assert found(ingestion) == {
        ("settlements", 2, "settle_time", "bad timestamp"),
        ("settlements", 2, "total_amount", "bad decimal"),
        ("settlements", 3, None, "empty row"),
        ("settlements", 4, None, "empty row"),
    }
    assert ingestion.rows_read["settlements"] == 3 and ingestion.table("settlements").is_empty()


def test_line_numbers_count_quoted_line_breaks(tmp_path):
    fees = [fee_line("L1", item_name="阿莫西林\n胶囊\n0.25g"), fee_line("L2", amount="bad")]
    folder(tmp_path, [settlement("S1")], fees)
    ingestion = load_folder(tmp_path)
    assert found(ingestion) == {("fee_lines", 5, "amount", "bad decimal")}
    assert ingestion.table("fee_lines")["item_name"].to_list() == ["阿莫西林\n胶囊\n0.25g"]


# --- layouts: parts and Parquet -------------------------------------------------------


def test_an_empty_csv_part_is_a_part_without_rows(tmp_path):
    write_csv(tmp_path / "settlements.csv", SETTLEMENTS, [settlement("S1")])
    write_csv(tmp_path / "fee_lines" / "a.csv", FEE_LINES, [fee_line("L1")])
    (tmp_path / "fee_lines" / "b.csv").write_bytes(b"")
    ingestion = load_folder(tmp_path)
    assert ingestion.table("fee_lines")["line_id"].to_list() == ["L1"]
    assert [(f.path, f.rows) for f in ingestion.files if f.table == "fee_lines"] == [
        ("fee_lines/a.csv", 1), ("fee_lines/b.csv", 0)]
    assert "fee_lines/b.csv: empty file (not even a header): no rows" in ingestion.notes


def test_folder_of_parts_read_in_name_order_with_duplicates_across_parts(tmp_path):
    write_csv(tmp_path / "settlements.csv", SETTLEMENTS, [settlement("S1")])
    parts = tmp_path / "fee_lines"
    write_csv(parts / "part-2.csv", FEE_LINES, [fee_line("L3"), fee_line("L1")], header="zh")
    write_csv(parts / "part-1.csv", FEE_LINES, [fee_line("L1"), fee_line("L2")])
    (parts / "_SUCCESS").write_text("")
    ingestion = load_folder(tmp_path)
    assert ingestion.table("fee_lines")["line_id"].to_list() == ["L1", "L2", "L3"]
    assert ingestion.quarantine.select("file", "line", "reason").rows() == [
        ("fee_lines/part-2.csv", 3, "duplicate key")]
    assert [f.path for f in ingestion.files] == [
        "settlements.csv", "fee_lines/part-1.csv", "fee_lines/part-2.csv"]
    assert all(len(f.sha256) == 64 for f in ingestion.files)
    assert ingestion.rows_read == {"settlements": 1, "fee_lines": 4}


def test_parquet_typed_and_text_columns(tmp_path):
    write_csv(tmp_path / "settlements.csv", SETTLEMENTS, [settlement("S1")])
    pl.DataFrame(
        {
            "明细流水号": ["L1", "L2", "L3"],
            "setl_id": ["S1", "S1", "S1"],
            "item_code": ["X1", "X2", "X3"],
            "item_name": ["a", "b", "c"],
            "fee_category": ["01", "09", "14"],
            "charge_time": pl.Series([T0, T0, T0]).dt.replace_time_zone("Asia/Shanghai"),
            "quantity": [1, 2, 3],
            "unit_price": pl.Series(["0.5", "oops", "1"]),
            "amount": [0.105, 1.0, 2.0],
            "extra": [1, 2, 3],
        }
    ).write_parquet(tmp_path / "fee_lines.parquet")
    ingestion = load_folder(tmp_path)
    fees = ingestion.table("fee_lines")
    assert fees.schema == {c.name: c.type.polars for c in FEE_LINES.columns}
    assert fees.select("line_id", "charge_time", "quantity", "amount").rows() == [
        ("L1", T0, Decimal("1.0000"), Decimal("0.11")),
        ("L3", T0, Decimal("3.0000"), Decimal("2.00")),
    ]
    assert ingestion.quarantine.select("file", "line", "column", "value", "reason").rows() == [
        ("fee_lines.parquet", 2, "unit_price", "oops", "bad decimal")]


def test_a_nan_in_a_parquet_float_amount_is_a_gap(tmp_path):
    """Found building messy exports: a catalog written from a frame with gaps held NaN in
    price_cap and max_daily_quantity, and every row was quarantined as a bad decimal
    ("NaN"). A float goes to a decimal through its text, and "NaN" is an empty-cell
    spelling like pandas' "nan"; a required amount with NaN is a missing value."""
    folder(tmp_path, [settlement("S1")], [fee_line("L1")])
    pl.DataFrame({"item_code": ["X1", "X2"], "item_name": ["a", "b"],
                  "fee_category": ["09", "09"], "price_cap": [float("nan"), 2.5],
                  "max_daily_quantity": [float("nan"), float("nan")]},
                 ).write_parquet(tmp_path / "catalog.parquet")
    pl.DataFrame({"item_code": ["X1"], "institution_id": ["H1"],
                  "purchase_date": [dt.date(2024, 3, 1)], "quantity": [float("nan")]},
                 ).write_parquet(tmp_path / "purchases.parquet")
    ingestion = load_folder(tmp_path)
    assert ingestion.table("catalog").select("price_cap", "max_daily_quantity").rows() == [
        (None, None), (Decimal("2.5000"), None)]
    assert ingestion.quarantine.select("line", "column", "value", "reason").rows() == [
        (1, "quantity", "NaN", "missing value")]


def test_parquet_instants_are_read_as_china_standard_time(tmp_path):
    write_csv(tmp_path / "settlements.csv", SETTLEMENTS, [settlement("S1")])
    beijing = pl.Series([T0]).dt.replace_time_zone("Asia/Shanghai")  # 08:30 in Beijing
    (tmp_path / "fee_lines").mkdir()
    for part, zone in (("a", "UTC"), ("b", "Asia/Tokyo"), ("c", "Asia/Shanghai")):
        pl.DataFrame({
            "line_id": [f"L{part}"], "settlement_id": ["S1"], "item_code": ["X"],
            "item_name": ["a"], "fee_category": ["09"],
            "charge_time": beijing.dt.convert_time_zone(zone),  # 00:30Z, 09:30 Tokyo
            "quantity": [1], "unit_price": [1], "amount": [1],
        }).write_parquet(tmp_path / "fee_lines" / f"{part}.parquet")
    assert load_folder(tmp_path).table("fee_lines")["charge_time"].to_list() == [T0] * 3


@pytest.mark.parametrize("writer, expected",
                         [("spark", T0), ("impala", T0 - dt.timedelta(hours=8))])
def test_int96_timestamps_written_by_spark_are_utc_instants(tmp_path, writer, expected):
    """Found in review: Spark's default INT96 timestamps (UTC, no zone marked) were read
    as local times, 8 hours early: charges crossed midnight and made false daily leads.
    Impala and pyarrow write INT96 as the local time itself: read as it says."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_csv(tmp_path / "settlements.csv", SETTLEMENTS, [settlement("S1")])
    utc = T0 - dt.timedelta(hours=8)  # 00:30Z is 08:30 in Beijing
    lines = pa.table({
        "line_id": ["L1"], "settlement_id": ["S1"], "item_code": ["X"], "item_name": ["a"],
        "fee_category": ["09"], "charge_time": pa.array([utc], pa.timestamp("us")),
        "quantity": [1], "unit_price": [1], "amount": [1],
    })
    if writer == "spark":  # what Spark writes beside its rows
        lines = lines.replace_schema_metadata({"org.apache.spark.version": "3.5.1"})
    pq.write_table(lines, tmp_path / "fee_lines.parquet", use_deprecated_int96_timestamps=True)
    assert pq.ParquetFile(tmp_path / "fee_lines.parquet").schema.column(5).physical_type \
        == "INT96"
    ingestion = load_folder(tmp_path)
    assert ingestion.table("fee_lines")["charge_time"].to_list() == [expected]
    noted = any("charge_time: INT96 timestamps" in note for note in ingestion.notes)
    assert noted == (writer == "spark")


def test_write_quarantine_replaces_the_file_whole(tmp_path):
    data = gbk_export(tmp_path)
    out = tmp_path / "new" / "out"
    path = write_quarantine(load_folder(data), out)
    assert path == out / "quarantine.csv"
    assert [p.name for p in out.iterdir()] == ["quarantine.csv"]
    assert path.read_text(encoding="utf-8-sig").count("\n") == 4


def test_chunked_parquet_keeps_lines_rounds_decimals_and_finds_keys_across_chunks(
        tmp_path, monkeypatch):
    """Files are checked and staged a few rows at a time: line numbers, exact decimals
    and repeated keys must not notice the chunk boundaries."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fraudscreen import ingest

    monkeypatch.setattr(ingest, "CHUNK_ROWS", 2)
    write_csv(tmp_path / "settlements.csv", SETTLEMENTS, [settlement("S1")])
    amounts = ["0.105", "-0.105", "1.000", "2.000", "99999999999999999.000", "3.000", "4.000"]
    table = pa.table({
        "line_id": ["L1", "L2", "L3", "L4", "L5", "L1", "L7"],
        "settlement_id": ["S1"] * 7,
        "item_code": ["X"] * 7,
        "item_name": ["x"] * 7,
        "fee_category": ["09"] * 7,
        "charge_time": pa.array([T0] * 7, pa.timestamp("us")),
        "quantity": pa.array([1, 2, 3, 4, 5, 6, 7], pa.int64()),
        "unit_price": pa.array([Decimal(1)] * 7, pa.decimal128(16, 4)),
        "amount": pa.array([Decimal(a) for a in amounts], pa.decimal128(20, 3)),
    })
    pq.write_table(table, tmp_path / "fee_lines.parquet", row_group_size=3)
    with load_folder(tmp_path) as ingestion:
        fees = ingestion.table("fee_lines")
        staged = ingestion.tables["fee_lines"].files
        assert len(staged) > 2 and all(f.path.exists() and not f.in_place for f in staged)
    assert not any(f.path.exists() for f in staged)  # close() removed the work folder
    assert fees["line_id"].to_list() == ["L1", "L2", "L3", "L4", "L7"]
    assert fees["amount"].to_list() == [Decimal(a) for a in
                                        ("0.11", "-0.11", "1.00", "2.00", "4.00")]
    assert fees["quantity"].to_list() == [Decimal(q) for q in (1, 2, 3, 4, 7)]
    assert ingestion.quarantine.select("line", "column", "reason").rows() == [
        (5, "amount", "bad decimal"), (6, "line_id", CONFLICTING_KEY)]
    assert ingestion.rows_read["fee_lines"] == 7 and ingestion.rows_kept["fee_lines"] == 5


def test_chunked_csv_keeps_file_line_numbers(tmp_path, monkeypatch):
    from fraudscreen import ingest

    monkeypatch.setattr(ingest, "CSV_BATCH_ROWS", 2)
    write_csv(tmp_path / "settlements.csv", SETTLEMENTS, [settlement("S1")])
    rows = [fee_line(f"L{i}") for i in range(1, 6)]
    rows[3]["quantity"] = "two"
    rows[4]["line_id"] = "L2"
    write_csv(tmp_path / "fee_lines.csv", FEE_LINES, rows)
    with load_folder(tmp_path) as ingestion:
        assert ingestion.table("fee_lines")["line_id"].to_list() == ["L1", "L2", "L3"]
        assert ingestion.quarantine.select("line", "reason").rows() == [
            (5, "bad decimal"), (6, "duplicate key")]



def test_chunked_csv_counts_quoted_line_breaks_across_chunks(tmp_path, monkeypatch):
    """CSV files are read CSV_BATCH_ROWS rows at a time: a value spanning lines in one
    chunk moves the line numbers of every later chunk."""
    from fraudscreen import ingest

    monkeypatch.setattr(ingest, "CSV_BATCH_ROWS", 2)
    write_csv(tmp_path / "settlements.csv", SETTLEMENTS, [settlement("S1")])
    rows = [fee_line(f"L{i}") for i in range(1, 7)]
    rows[0]["item_name"] = "阿莫西林\n胶囊"        # line 2-3
    rows[2]["item_name"] = "头孢\n克肟\n片"         # line 5-7
    rows[3]["amount"] = "bad"                        # line 8
    rows[5]["quantity"] = "two"                      # line 10
    write_csv(tmp_path / "fee_lines.csv", FEE_LINES, rows)
    with load_folder(tmp_path) as ingestion:
        assert found(ingestion) == {("fee_lines", 8, "amount", "bad decimal"),
                                    ("fee_lines", 10, "quantity", "bad decimal")}
        assert ingestion.rows_read["fee_lines"] == 6


def test_gbk_csv_is_transcoded_in_chunks_and_a_bad_byte_is_located(tmp_path, monkeypatch):
    """A CSV not in UTF-8 is decoded a few bytes at a time into a UTF-8 copy (removed
    after reading): a character split between two reads survives, and an undecodable
    byte is reported where it is in the file."""
    from fraudscreen import ingest

    monkeypatch.setattr(ingest, "_CHUNK", 5)
    folder(tmp_path, [settlement("S1", diagnosis_code="肺炎")],
           [fee_line("L1", item_name="阿莫西林胶囊")], header="zh", encoding="gbk")
    work = tmp_path / "work"
    with load_folder(tmp_path, encoding="gbk", work_dir=work) as ingestion:
        assert ingestion.table("fee_lines")["item_name"].to_list() == ["阿莫西林胶囊"]
        assert ingestion.table("settlements")["diagnosis_code"].to_list() == ["肺炎"]
        assert not list(work.rglob("*.utf-8.csv"))
    data = (tmp_path / "fee_lines.csv").read_bytes()
    at = data.index("阿".encode("gbk"))
    (tmp_path / "fee_lines.csv").write_bytes(data[:at] + b"\x80\xff" + data[at:])
    bad_byte = rf"fee_lines\.csv: cannot be read as gbk: .* at line 2 \(byte {at}\)$"
    with pytest.raises(IngestError, match=bad_byte):
        load_folder(tmp_path, encoding="gbk", work_dir=tmp_path / "work2")
    assert not list((tmp_path / "work2").rglob("*.utf-8.csv"))


# --- files in contract form are scanned in place ---------------------------------------


def contract_parquet(path: Path, table: Table, rows: list[dict[str, str]],
                     compression: str = "snappy") -> Path:
    """A Parquet file in contract form: contract names and types, as an export may be."""
    frame = pl.DataFrame(rows, schema={c.name: pl.String for c in table.columns})
    typed = frame.with_columns(
        pl.col(c.name).cast(c.type.polars) if c.type != ColumnType.TIMESTAMP
        else pl.col(c.name).str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S")
        for c in table.columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    typed.with_columns(pl.lit(1).alias("extra")).write_parquet(path, compression=compression)
    return path


def test_clean_file_in_contract_form_is_scanned_in_place(tmp_path):
    import duckdb

    write_csv(tmp_path / "settlements.csv", SETTLEMENTS, [settlement("S1")])
    part = contract_parquet(tmp_path / "fee_lines" / "a.parquet", FEE_LINES,
                            [fee_line("L1"), fee_line("L2", doctor_id=None)])
    before = part.read_bytes()
    padded = contract_parquet(tmp_path / "fee_lines" / "b.parquet", FEE_LINES,
                              [fee_line("L3", item_name=" 阿莫西林胶囊\u3000")])
    slow = contract_parquet(tmp_path / "fee_lines" / "c.parquet", FEE_LINES,
                            [fee_line("L4")], compression="zstd")
    with load_folder(tmp_path) as ingestion:
        staged = ingestion.tables["fee_lines"]
        assert [(f.path == part, f.in_place) for f in staged.files] == [
            (True, True), (False, False), (False, False)]
        fees = ingestion.table("fee_lines")
        scanned = duckdb.sql(staged.sql()).pl()
    assert part.read_bytes() == before
    assert fees.columns == FEE_LINES.column_names and scanned.columns == fees.columns
    assert fees["line_id"].to_list() == ["L1", "L2", "L3", "L4"]
    assert fees["item_name"].to_list() == ["阿莫西林胶囊"] * 4  # b.parquet's was stripped
    assert scanned.sort("line_id").equals(fees)
    assert padded.exists() and slow.exists()


def test_a_parquet_time_outside_the_years_is_a_bad_timestamp(tmp_path):
    write_csv(tmp_path / "settlements.csv", SETTLEMENTS, [settlement("S1")])
    contract_parquet(tmp_path / "fee_lines.parquet", FEE_LINES,
                     [fee_line("L1"), fee_line("L2", charge_time="0001-01-01 00:00:00")])
    with load_folder(tmp_path) as ingestion:
        assert not any(f.in_place for f in ingestion.tables["fee_lines"].files)
        assert ingestion.table("fee_lines")["line_id"].to_list() == ["L1"]
        assert found(ingestion) == {("fee_lines", 2, "charge_time", "bad timestamp")}


@pytest.mark.parametrize("bad", [{"settlement_id": None}, {"item_code": "  "}])
def test_file_in_contract_form_with_a_bad_row_is_staged_and_quarantined(tmp_path, bad):
    write_csv(tmp_path / "settlements.csv", SETTLEMENTS, [settlement("S1")])
    contract_parquet(tmp_path / "fee_lines.parquet", FEE_LINES,
                     [fee_line("L1"), fee_line("L2", **bad)])
    with load_folder(tmp_path) as ingestion:
        assert not any(f.in_place for f in ingestion.tables["fee_lines"].files)
        assert ingestion.table("fee_lines")["line_id"].to_list() == ["L1"]
        assert ingestion.quarantine.select("line", "column", "reason").rows() == [
            (2, next(iter(bad)), "missing value")]


def test_key_repeated_across_files_in_contract_form_is_quarantined_without_touching_them(
        tmp_path):
    write_csv(tmp_path / "settlements.csv", SETTLEMENTS, [settlement("S1")])
    first = contract_parquet(tmp_path / "fee_lines" / "1.parquet", FEE_LINES,
                             [fee_line("L1"), fee_line("L2")])
    second = contract_parquet(tmp_path / "fee_lines" / "2.parquet", FEE_LINES,
                              [fee_line("L3"), fee_line("L1", amount="99.00")])
    contents = first.read_bytes(), second.read_bytes()
    with load_folder(tmp_path) as ingestion:
        assert not any(f.in_place for f in ingestion.tables["fee_lines"].files)
        fees = ingestion.table("fee_lines")
        assert ingestion.quarantine.select("file", "line", "reason").rows() == [
            ("fee_lines/2.parquet", 2, CONFLICTING_KEY)]  # another amount
        assert ingestion.rows_kept["fee_lines"] == 3
    assert fees["line_id"].to_list() == ["L1", "L2", "L3"]
    assert fees["amount"].to_list() == [Decimal("25.00")] * 3
    assert (first.read_bytes(), second.read_bytes()) == contents


@pytest.mark.parametrize("groups, chunks", [
    ([3, 3, 3, 3], [9, 3]),            # small groups read together, up to CHUNK_ROWS
    ([10, 10], [10, 10]),              # a group of exactly CHUNK_ROWS is one chunk
    ([25, 3, 0, 4, 12], [12, 13, 7, 12]),  # a large group cut; never split across chunks
    ([0], []),
])
def test_parquet_chunks_follow_row_groups(monkeypatch, groups, chunks):
    from fraudscreen import ingest

    monkeypatch.setattr(ingest, "CHUNK_ROWS", 10)
    assert list(ingest._chunk_lengths(groups)) == chunks


@pytest.mark.parametrize("encoding", [None, "gbk"])
def test_unreadable_csv_is_an_error_and_the_input_is_left_alone(tmp_path, encoding):
    data = folder(tmp_path / "data", [settlement("S1")], [fee_line("L1")])
    (data / "settlements.csv").write_bytes(b"\"a\nb")  # a quote never closed: no header
    work = tmp_path / "work"
    with pytest.raises(IngestError, match=r"settlements\.csv: table settlements needs column"):
        load_folder(data, encoding=encoding, work_dir=work)
    assert (data / "settlements.csv").exists() and (data / "fee_lines.csv").exists()
    assert not list(work.rglob("*.utf-8.csv"))


@pytest.mark.parametrize(("tail", "where"), [
    ('L2,S1,X,x,09,2024-03-02 09:00:00,1,1,1,D1,extra\n',
     r"at line 3 \(11 fields; the header has 10\)"),
    ('"L2,S1,X,x,09,2024-03-02 09:00:00,1,1,1,D1\nL3,S1\n', r"in the row starting at line 3"),
])
def test_a_csv_that_breaks_is_an_error_naming_the_line(tmp_path, tail, where):
    folder(tmp_path, [settlement("S1")], [fee_line("L1")])
    with (tmp_path / "fee_lines.csv").open("a", encoding="utf-8") as f:
        f.write(tail)
    with pytest.raises(IngestError, match=rf"fee_lines\.csv: cannot read as CSV {where}"):
        load_folder(tmp_path)


def test_the_format_tried_first_is_the_one_most_sampled_values_are_in():
    from fraudscreen.contract import ColumnType
    from fraudscreen.quarantine import TIMESTAMP_FORMATS, _formats

    odd_first = pl.Series("t", ["bad", "2024/3/1 8:30", *["2024-03-01T08:30:00"] * 3])
    tried = _formats(odd_first, ColumnType.TIMESTAMP)
    assert tried[0] == "%Y-%m-%dT%H:%M:%S%.f" and sorted(tried) == sorted(TIMESTAMP_FORMATS)
    assert _formats(pl.Series("t", [], pl.String), ColumnType.TIMESTAMP) == TIMESTAMP_FORMATS


@given(st.lists(st.from_regex(r"\A[+-]?\d{0,16}(\.\d{0,4})?\Z", fullmatch=True), max_size=50),
       st.sampled_from([2, 4]))
def test_a_chunk_whose_decimals_fit_the_scale_is_cast_directly_with_the_same_values(
        texts, scale):
    """When no value has more digits than the scale, the text is cast as it is (no cut
    and round): the values must be exactly those of the cut-and-round reading."""
    from fraudscreen.quarantine import _decimal, _more_digits

    values = pl.Series("v", texts, dtype=pl.String)
    if _more_digits(values, scale):
        return
    frame = values.to_frame()
    direct, rounded = (frame.select(_decimal(pl.col("v"), pl.Decimal(16, scale), r)).to_series()
                       for r in (False, True))
    assert direct.to_list() == rounded.to_list()


def test_a_table_written_by_spark_is_a_folder_of_parts(tmp_path):
    """Spark writes fee_lines.parquet/ as a folder of part files beside _SUCCESS and .crc
    files (found in review: it was 'required table fee_lines not found')."""
    write_csv(tmp_path / "settlements.csv", SETTLEMENTS, [settlement("S1")])
    spark = tmp_path / "fee_lines.parquet"
    contract_parquet(spark / "part-00000-x.snappy.parquet", FEE_LINES, [fee_line("L1")])
    contract_parquet(spark / "part-00001-x.snappy.parquet", FEE_LINES, [fee_line("L2")])
    (spark / "_SUCCESS").touch()
    (spark / ".part-00000-x.snappy.parquet.crc").write_bytes(b"crc")
    with load_folder(tmp_path) as ingestion:
        assert ingestion.table("fee_lines")["line_id"].to_list() == ["L1", "L2"]
        assert [f.path for f in ingestion.files if f.table == "fee_lines"] == [
            "fee_lines.parquet/part-00000-x.snappy.parquet",
            "fee_lines.parquet/part-00001-x.snappy.parquet"]
        assert not any("ignored fee_lines.parquet" in n or "_SUCCESS" in n or ".crc" in n
                       for n in ingestion.notes)


def test_trailing_columns_with_no_header_are_ignored_and_noted(tmp_path):
    """An export's trailing empty columns (`…,doctor_id,,`) had been 'header '' appears
    more than once' (found in review)."""
    folder(tmp_path, [settlement("S1")], [fee_line("L1")])
    path = tmp_path / "fee_lines.csv"
    path.write_text("\n".join(line + ",," for line in path.read_text(encoding="utf-8")
                               .splitlines()) + "\n", encoding="utf-8")
    with load_folder(tmp_path) as ingestion:
        assert ingestion.table("fee_lines")["line_id"].to_list() == ["L1"]
        assert "fee_lines.csv: ignored 2 column(s) with no header" in ingestion.notes


def test_a_tab_separated_file_is_an_error_that_says_so(tmp_path):
    folder(tmp_path, [settlement("S1")], [fee_line("L1")])
    path = tmp_path / "fee_lines.csv"
    path.write_text(path.read_text(encoding="utf-8").replace(",", "\t"), encoding="utf-8")
    with pytest.raises(IngestError, match="separated by tabs, semicolons or bars"):
        load_folder(tmp_path)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_a_utf16_file_with_its_byte_order_mark_is_read(tmp_path, encoding):
    """Found in review: Excel's "Unicode Text" (UTF-16 with a byte-order mark) was "neither
    UTF-8 nor GB18030"; read as UTF-16, comma-separated it loads, and tab-separated (as
    Excel saves it) gets the tab hint."""
    folder(tmp_path, [settlement("S1")], [fee_line("L1", item_name="阿莫西林")])
    path = tmp_path / "fee_lines.csv"
    text = path.read_text(encoding="utf-8")
    bom = "\ufeff" if encoding == "utf-16-be" else ""  # utf-16 writes its own
    path.write_bytes((bom + text).encode(encoding))
    assert load_folder(tmp_path).table("fee_lines")["item_name"].to_list() == ["阿莫西林"]
    path.write_bytes((bom + text.replace(",", "\t")).encode(encoding))
    with pytest.raises(IngestError, match="separated by tabs, semicolons or bars"):
        load_folder(tmp_path)


def test_ids_written_as_whole_floats_by_pandas_are_read_as_integers(tmp_path):
    """Found in review: pandas writes an id column with gaps as floats, so a reversal named
    766.0 while the settlement was 766: the reversed settlement was screened as a claim."""
    rows = [settlement("766", diagnosis_code="K35.0"),
            settlement("767", reversed_settlement_id="766.0"),
            settlement("768", person_id="P.0")]
    folder(tmp_path, rows, [fee_line("L1", settlement_id="766")])
    ingestion = load_folder(tmp_path)
    kept = ingestion.table("settlements")
    assert kept["reversed_settlement_id"].to_list() == [None, "766", None]
    assert kept["diagnosis_code"].to_list()[0] == "K35.0"  # a code, not an id
    assert kept["person_id"].to_list()[2] == "P.0"  # not a whole number
    assert ("settlements.csv: reversed_settlement_id: 1 id(s) written as whole floats, read "
            "as the integers they hold (766.0 → 766)") in ingestion.notes
    assert quarantined_reversals(ingestion.quarantine) == []


@pytest.mark.parametrize("first", [True, False])
def test_a_whole_float_id_is_read_as_its_integer_among_plain_ids_wherever_it_stands(
        tmp_path, first):
    """Found in review (session 11): 766.0 was read as 766 only when every id of its chunk
    was a whole float, so how a table was split into parts, or where a row stood in a large
    file, decided whether its lines found their settlement."""
    plain = [fee_line(f"L{i}", settlement_id="766") for i in range(1, 1500)]
    odd = fee_line("L0", settlement_id="766.0")
    folder(tmp_path, [settlement("766")], [odd, *plain] if first else [*plain, odd])
    with load_folder(tmp_path) as ingestion:
        lines = ingestion.table("fee_lines")
        assert lines.height == 1500 and set(lines["settlement_id"]) == {"766"}
        assert ("fee_lines.csv: settlement_id: 1 id(s) written as whole floats, read as the "
                "integers they hold (766.0 → 766)") in ingestion.notes


@pytest.mark.parametrize("first", [True, False])
def test_an_id_in_scientific_notation_is_quarantined_wherever_it_stands(tmp_path, first):
    """Found in review (session 11): only the first thousand values of a chunk were looked
    at, so two persons Excel turned into one 3.50925E+17 were kept, and made a false
    impossible journey, when their rows stood further down."""
    plain = [settlement(f"S{i}", person_id=f"P{i}") for i in range(1, 1500)]
    mangled = [settlement(f"X{i}", person_id="3.50925E+17") for i in (1, 2)]
    folder(tmp_path, [*mangled, *plain] if first else [*plain, *mangled], [fee_line("L1")])
    with load_folder(tmp_path) as ingestion:
        assert ingestion.table("settlements").height == 1499
        assert ingestion.quarantine.filter(pl.col("reason") == SCIENTIFIC)["value"].to_list() \
            == ["3.50925E+17"] * 2


def test_dates_and_times_beyond_any_calendar_are_bad_values_not_a_crash(tmp_path):
    """Found in review (session 11): a DuckDB export's 'infinity' for a stay not yet
    discharged (2^63 - 1 microseconds), a 2^63 - 1 in milliseconds or a 2^31 - 1 day count
    made Polars panic: a traceback. Each is now a bad value in quarantine."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fraudscreen.testing import table

    big = 2**63 - 1
    stays = table("settlements", [settlement("S1"), settlement("S2")]).to_arrow()
    stays = stays.set_column(stays.schema.get_field_index("discharge_time"), "discharge_time",
                             pa.array([big, None], pa.int64()).cast(pa.timestamp("us")))
    pq.write_table(stays, tmp_path / "settlements.parquet")
    lines = table("fee_lines", [fee_line("L1"), fee_line("L2", settlement_id="S2")]).to_arrow()
    times = pa.array([big, 1_704_067_200_000], pa.int64()).cast(pa.timestamp("ms", "UTC"))
    lines = lines.set_column(lines.schema.get_field_index("charge_time"), "charge_time", times)
    pq.write_table(lines, tmp_path / "fee_lines.parquet")
    persons = pa.table({"person_id": ["P001"], "gender": ["1"], "insured_region": ["350902"],
                        "birth_date": pa.array([2**31 - 1], pa.int32()).cast(pa.date32())})
    pq.write_table(persons, tmp_path / "persons.parquet")
    with load_folder(tmp_path) as ingestion:
        assert ingestion.table("settlements")["settlement_id"].to_list() == ["S2"]
        assert ingestion.table("fee_lines")["line_id"].to_list() == ["L2"]
        assert ingestion.table("persons").is_empty()
        assert sorted(ingestion.quarantine.select("column", "value", "reason").rows()) == [
            ("birth_date", "2147483647 (days)", "bad date"),
            ("charge_time", "9999-12-31 08:00:00.000000", "bad timestamp"),
            ("discharge_time", "9223372036854775807 (us since 1970)", "bad timestamp")]


@pytest.mark.parametrize("zone", ["Asia/Beijing", "CST", "GMT+8"])
def test_a_time_zone_polars_does_not_know_is_an_error_naming_the_column(tmp_path, zone):
    """Found in review: such a zone made Polars panic on reading the file's schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fraudscreen.testing import table

    folder(tmp_path, [settlement("S1")], [])
    lines = table("fee_lines", [fee_line("L1")]).to_arrow()
    at = lines.schema.get_field_index("charge_time")
    lines = lines.set_column(at, "charge_time",
                             pa.array([0], pa.int64()).cast(pa.timestamp("us", zone)))
    pq.write_table(lines, tmp_path / "fee_lines.parquet")
    (tmp_path / "fee_lines.csv").unlink()
    with pytest.raises(IngestError, match=rf"fee_lines\.parquet: column 'charge_time' holds "
                                          rf"times in zone '{re.escape(zone)}', which is no "
                                          r"time-zone name \(write Asia/Shanghai or \+08:00"):
        load_folder(tmp_path)


@pytest.mark.parametrize("column, values, says", [
    ("amount", "decimal256", r"column 'amount' is decimal256\(40, 2\): it holds decimals "
                             r"wider than 38 digits"),
    ("charge_time", "time64", r"column 'charge_time' is time64\[us\]: it holds times of day"),
    ("item_name", "list", r"column 'item_name' is list<element: string>: it holds lists"),
    ("item_name", "gbk", r"column\(s\) item_name hold bytes that are not UTF-8 text \(GBK\?\)"),
])
def test_a_parquet_column_of_a_type_no_contract_column_reads_is_an_error_naming_it(
        tmp_path, column, values, says):
    """Found in review (session 11): these were Polars' own words, naming no column."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from fraudscreen.testing import table

    folder(tmp_path, [settlement("S1")], [])
    lines = table("fee_lines", [fee_line("L1", item_name="阿莫西林")]).to_arrow()
    made = {"decimal256": lambda c: pc.cast(c, pa.decimal256(40, 2)),
            "time64": lambda c: pa.array([dt.time(8)], pa.time64("us")),
            "list": lambda c: pa.array([[v] for v in c.to_pylist()]),
            "gbk": lambda c: pa.array([v.encode("gbk") for v in c.to_pylist()], pa.binary())}
    at = lines.schema.get_field_index(column)
    pq.write_table(lines.set_column(at, column, made[values](lines[column])),
                   tmp_path / "fee_lines.parquet")
    (tmp_path / "fee_lines.csv").unlink()
    with pytest.raises(IngestError, match=rf"fee_lines\.parquet: {says}"):
        load_folder(tmp_path)


def test_validate_refuses_what_run_refuses_and_reads_an_excel_empty_sheet_as_empty(tmp_path):
    """Found in review (session 11): `validate` passed a fee_lines table with no rows,
    which `run` refuses; wrote quarantine.csv into the data folder; and called a CSV
    holding only a byte-order mark (Excel's empty sheet) unreadable."""
    data = folder(tmp_path / "data", [settlement("S1")], [])
    result = validate(data, tmp_path / "check")
    assert result.exit_code == 2 and "table fee_lines has no usable row (it has no rows)" \
        in result.output
    assert (tmp_path / "check" / "quarantine.csv").exists()
    result = validate(data, data)
    assert result.exit_code == 2 and "is the data folder" in result.output
    assert not (data / "quarantine.csv").exists()
    result = validate(data / "settlements.csv", tmp_path / "check")
    assert result.exit_code == 2 and "is a file; --data names the folder" in result.output
    folder(tmp_path / "ok", [settlement("S1")], [fee_line("L1")])
    (tmp_path / "ok" / "persons.csv").write_bytes(codecs.BOM_UTF8 + b"\r\n")
    with load_folder(tmp_path / "ok") as ingestion:
        assert "persons.csv: empty file (not even a header): no rows" in ingestion.notes


# --- layouts: Hive partition folders, gzipped CSV, names that miss -------------------


def test_a_partitioned_table_is_read_whole_and_names_each_part_by_its_path(tmp_path):
    """Spark's partitionBy("year", "month") writes fee_lines/year=2024/month=1/part-….
    Found in review: those folders were ignored with a note and only the loose part was
    read, so settlements lost their fee lines (and became false idle-stay leads)."""
    write_csv(tmp_path / "settlements.csv", SETTLEMENTS, [settlement("S1")])
    parts = tmp_path / "fee_lines"
    write_csv(parts / "part-a.csv", FEE_LINES, [fee_line("L1")])
    year = parts / "year=2024"
    for month, rows in (("month=1", [fee_line("L2")]),
                        ("month=2", [fee_line("L3"), fee_line("L4", amount="12,5")])):
        (year / month).mkdir(parents=True)
        pl.DataFrame(rows).write_parquet(year / month / "part-0.parquet")  # all text
    (year / "month=2" / "_SUCCESS").touch()
    (year / "month=2" / ".part-0.parquet.crc").write_bytes(b"crc")
    write_csv(parts / "archive" / "old.csv", FEE_LINES, [fee_line("L9")])
    with load_folder(tmp_path) as ingestion:
        assert ingestion.table("fee_lines")["line_id"].to_list() == ["L1", "L2", "L3"]
        assert [f.path for f in ingestion.files if f.table == "fee_lines"] == [
            "fee_lines/part-a.csv", "fee_lines/year=2024/month=1/part-0.parquet",
            "fee_lines/year=2024/month=2/part-0.parquet"]
        assert ingestion.quarantine.select("file", "line", "column", "reason").rows() == [
            ("fee_lines/year=2024/month=2/part-0.parquet", 2, "amount", "bad decimal")]
        assert [n for n in ingestion.notes if "ignored fee_lines" in n] == [
            "ignored fee_lines/archive: a folder but no partition (KEY=VALUE)"]


def test_a_folder_of_only_partition_folders_is_a_table(tmp_path):
    """Found in review: it was 'folder holds no .csv or .parquet parts'."""
    write_csv(tmp_path / "settlements.csv", SETTLEMENTS, [settlement("S1")])
    spark = tmp_path / "fee_lines.parquet"
    contract_parquet(spark / "month=2" / "part-00000-x.snappy.parquet", FEE_LINES,
                     [fee_line("L2")])
    contract_parquet(spark / "month=1" / "part-00000-x.snappy.parquet", FEE_LINES,
                     [fee_line("L1")])
    (spark / "_SUCCESS").touch()
    with load_folder(tmp_path) as ingestion:
        assert ingestion.table("fee_lines")["line_id"].to_list() == ["L1", "L2"]
        assert [f.path for f in ingestion.files if f.table == "fee_lines"] == [
            "fee_lines.parquet/month=1/part-00000-x.snappy.parquet",
            "fee_lines.parquet/month=2/part-00000-x.snappy.parquet"]
        assert not [n for n in ingestion.notes if n.startswith("ignored")]


def test_a_partition_key_that_is_also_a_column_keeps_the_files_values(tmp_path):
    """A file scanned in place under fee_category=9/: DuckDB would read the folder name
    as the column (9, not the file's 09) unless told not to."""
    import duckdb

    write_csv(tmp_path / "settlements.csv", SETTLEMENTS, [settlement("S1")])
    contract_parquet(tmp_path / "fee_lines" / "fee_category=9" / "part-0.parquet", FEE_LINES,
                     [fee_line("L1", fee_category="09")])
    with load_folder(tmp_path) as ingestion:
        staged = ingestion.tables["fee_lines"]
        assert staged.files[0].in_place
        assert duckdb.sql(staged.sql()).pl()["fee_category"].to_list() == ["09"]


def test_a_gzipped_csv_part_is_read_with_its_lines_and_checksum(tmp_path):
    """Found in review: fee_lines/2024-01.csv.gz beside 2024-02.csv was ignored with a note."""
    write_csv(tmp_path / "settlements.csv", SETTLEMENTS, [settlement("S1")])
    parts = tmp_path / "fee_lines"
    packed = gzipped(write_csv(parts / "2024-01.csv", FEE_LINES,
                               [fee_line("L1"), fee_line("L2", amount="abc")]),
                     "2024-01.CSV.GZ")
    write_csv(parts / "2024-02.csv", FEE_LINES, [fee_line("L3")])
    work = tmp_path / "work"
    with load_folder(tmp_path, work_dir=work) as ingestion:
        assert ingestion.table("fee_lines")["line_id"].to_list() == ["L1", "L3"]
        assert ingestion.quarantine.select("file", "line", "column", "reason").rows() == [
            ("fee_lines/2024-01.CSV.GZ", 3, "amount", "bad decimal")]
        assert ingestion.files[1].path == "fee_lines/2024-01.CSV.GZ"
        # The checksum of the file as delivered: nightly finds it again by it.
        assert ingestion.files[1].sha256 == hashlib.sha256(packed.read_bytes()).hexdigest()
        assert not [n for n in ingestion.notes if n.startswith("ignored")]
        assert not list(work.rglob("*.utf-8.csv"))  # the decompressed copy is removed


@pytest.mark.parametrize("encoding", [None, "gbk"])
def test_a_gzipped_gbk_csv_is_decoded_as_a_plain_one(tmp_path, monkeypatch, encoding):
    from fraudscreen import ingest

    monkeypatch.setattr(ingest, "_CHUNK", 5)  # characters split between reads survive
    folder(tmp_path, [settlement("S1", diagnosis_code="肺炎")],
           [fee_line("L1", item_name="阿莫西林胶囊")], header="zh", encoding="gbk")
    gzipped(tmp_path / "fee_lines.csv")
    with load_folder(tmp_path, encoding=encoding) as ingestion:
        assert ingestion.table("fee_lines")["item_name"].to_list() == ["阿莫西林胶囊"]
        assert ingestion.files[1].path == "fee_lines.csv.gz"


def test_a_gzipped_csv_is_a_table_at_the_top_level(tmp_path):
    """Found in review: settlements.csv.gz was 'not a contract table', so 'not found'."""
    folder(tmp_path, [settlement("S1"), settlement("S2", total_amount="")], [fee_line("L1")])
    gzipped(tmp_path / "settlements.csv")
    with load_folder(tmp_path) as ingestion:
        assert ingestion.table("settlements")["settlement_id"].to_list() == ["S1"]
        assert ingestion.quarantine.select("file", "line", "reason").rows() == [
            ("settlements.csv.gz", 3, "missing value")]


@pytest.mark.parametrize("damage", [
    lambda raw: b"settlement_id,person_id\n",  # not gzip at all
    lambda raw: raw[:len(raw) // 2],  # cut short
    lambda raw: raw[:12] + bytes(b ^ 0xFF for b in raw[12:20]) + raw[20:],  # bad data
    lambda raw: raw[:-8] + bytes(8),  # bad checksum
])
def test_a_corrupt_gzip_file_is_an_error_naming_it(tmp_path, damage):
    folder(tmp_path, [settlement(f"S{i}") for i in range(50)], [fee_line("L1")])
    packed = gzipped(tmp_path / "settlements.csv")
    packed.write_bytes(damage(packed.read_bytes()))
    work = tmp_path / "work"
    with pytest.raises(IngestError, match=r"settlements\.csv\.gz: cannot be decompressed"):
        load_folder(tmp_path, work_dir=work)
    result = validate(tmp_path, tmp_path / "out")
    assert result.exit_code == 2 and "settlements.csv.gz" in result.output
    assert "Traceback" not in result.output
    assert not list(work.rglob("*.utf-8.csv"))


def test_a_missing_table_error_names_the_entries_that_look_meant_as_it(tmp_path):
    """A table under another letter case, suffix or its Chinese name is not read; the
    error says what was found instead, so the user sees why."""
    write_csv(tmp_path / "fee_lines.csv", FEE_LINES, [fee_line("L1")])
    write_csv(tmp_path / "Settlements.parquet", SETTLEMENTS, [settlement("S1")])
    (tmp_path / "settlements.xlsx").write_bytes(b"PK")
    write_csv(tmp_path / "结算记录.csv", SETTLEMENTS, [settlement("S1")])
    with pytest.raises(IngestError, match=r"required table settlements \(结算记录\) not found; .*; "
                       r"found instead: Settlements\.parquet, settlements\.xlsx, 结算记录\.csv$"):
        load_folder(tmp_path)
    for near in ("Settlements.parquet", "settlements.xlsx", "结算记录.csv"):
        (tmp_path / near).unlink()
    with pytest.raises(IngestError, match=r"of parts$"):
        load_folder(tmp_path)


def test_a_full_disk_while_staging_is_an_os_error_not_a_polars_one():
    """Found in review: Polars reports a full disk as a ComputeError, which the
    commands did not catch (a traceback). Staged as an OSError, it is one line."""
    from fraudscreen.ingest import _write_staged

    with pytest.raises(OSError, match="No space left on device"):
        _write_staged(pl.DataFrame({"a": list(range(100_000))}), Path("/dev/full"))
