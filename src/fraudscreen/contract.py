"""The data contract (`shared/spec/data-contract.md`) in code, declared once.

Ingestion, validation, the rule compiler, the sample generator and the docs read
these declarations; no other module repeats a column list.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# "Dates are compared as calendar dates in local time": the contract's timestamps are
# wall-clock times in China Standard Time. A Parquet timestamp that is an instant (with a
# time zone, as Spark writes them, in UTC) is read as its time here.
LOCAL_TIME_ZONE = "Asia/Shanghai"
# Joins the parts of a record key of several columns (quarantine.csv's record_key): codes
# and dates do not hold it, so a clerk can split on it.
RECORD_KEY_SEPARATOR = "|"


class ColumnType(StrEnum):
    """Contract types; each maps to one DuckDB and one Polars type."""

    STRING = "string"
    TIMESTAMP = "timestamp"
    DATE = "date"
    MONEY = "decimal(16,2)"
    QUANTITY = "decimal(16,4)"
    STRING_LIST = "list<string>"

    @property
    def sql(self) -> str:
        return {
            "string": "VARCHAR",
            "timestamp": "TIMESTAMP",
            "date": "DATE",
            "decimal(16,2)": "DECIMAL(16,2)",
            "decimal(16,4)": "DECIMAL(16,4)",
            "list<string>": "VARCHAR[]",
        }[self.value]

    @property
    def polars(self):
        import polars as pl

        return {
            "string": pl.String,
            "timestamp": pl.Datetime("us"),
            "date": pl.Date,
            "decimal(16,2)": pl.Decimal(16, 2),
            "decimal(16,4)": pl.Decimal(16, 4),
            "list<string>": pl.List(pl.String),
        }[self.value]


S, TS, D, M, Q = (
    ColumnType.STRING,
    ColumnType.TIMESTAMP,
    ColumnType.DATE,
    ColumnType.MONEY,
    ColumnType.QUANTITY,
)


@dataclass(frozen=True)
class Column:
    name: str
    zh: str
    type: ColumnType
    nullable: bool = False
    national: str | None = None  # field name on the national 医保信息平台 extracts
    meaning: str = ""
    # A code of exactly this many digits, whose leading zeros an integer column or a
    # spreadsheet (which reads 01 as 1) may have dropped: ingestion restores them.
    digits: int | None = None
    zh_other: tuple[str, ...] = ()  # the spec's other Chinese names for the column


@dataclass(frozen=True)
class Table:
    name: str
    zh: str
    required: bool
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    # A keyless table's columns that tell a reader which row it is (quarantine.csv's
    # record_key). Not a key: two rows may share them, and no repeat is quarantined.
    row_label: tuple[str, ...] = ()

    @property
    def record_key(self) -> tuple[str, ...]:
        """The columns quarantine.csv's ``record_key`` shows: the key, else the label."""
        return self.key or self.row_label

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def header_aliases(self) -> dict[str, str]:
        """Every header this table accepts (English, Chinese, national) → contract name."""
        aliases: dict[str, str] = {}
        for c in self.columns:
            aliases[c.name] = c.name
            aliases[c.zh] = c.name
            for other in c.zh_other:
                aliases[other] = c.name
            if c.national:
                aliases[c.national] = c.name
        return aliases


SETTLEMENTS = Table(
    "settlements",
    "结算记录",
    required=True,
    key=("settlement_id",),
    columns=(
        Column("settlement_id", "结算ID", S, national="setl_id", meaning="unique key"),
        Column("person_id", "人员编号", S, national="psn_no", meaning="insured person"),
        Column("institution_id", "定点医药机构编号", S, national="fixmedins_code",
               meaning="hospital (H…) or retail pharmacy (P…)"),
        Column("insurance_type", "险种类型", S, national="insutype",
               meaning="310 职工基本医疗保险, 390 城乡居民基本医疗保险"),
        Column("medical_type", "医疗类别", S, national="med_type",
               meaning="11 普通门诊, 14 门诊慢特病, 21 普通住院, 41 定点药店购药"),
        Column("insured_region", "参保地医保区划", S, national="insu_admdvs",
               meaning="6-digit region where the person is insured"),
        Column("visit_region", "就医地医保区划", S, national="fix_blng_admdvs",
               meaning="6-digit region where the care or purchase happened"),
        Column("admit_time", "入院时间", TS, national="begndate",
               zh_other=("就诊时间", "入院时间 / 就诊时间", "入院时间/就诊时间"),
               meaning="start of stay, visit, or purchase time"),
        Column("discharge_time", "出院时间", TS, nullable=True, national="enddate",
               meaning="end of an inpatient stay"),
        Column("settle_time", "结算时间", TS, national="setl_time"),
        Column("diagnosis_code", "主要诊断代码", S, nullable=True,
               national="dscg_maindiag_code", meaning="ICD-10 (医保版)"),
        Column("department_code", "科室代码", S, nullable=True),
        Column("total_amount", "医疗费总额", M, national="medfee_sumamt"),
        Column("fund_amount", "基金支付总额", M, national="fund_pay_sumamt"),
        Column("reversed_settlement_id", "原结算ID", S, nullable=True,
               zh_other=("原结算ID (冲销)", "原结算ID(冲销)", "原结算ID（冲销）"),
               national="init_setl_id", meaning="set on a reversal (冲销) row"),
    ),
)

FEE_LINES = Table(
    "fee_lines",
    "费用明细",
    required=True,
    key=("line_id",),
    columns=(
        Column("line_id", "明细流水号", S, national="bkkp_sn", meaning="unique key"),
        Column("settlement_id", "结算ID", S, national="setl_id"),
        Column("item_code", "医保目录编码", S, national="hilist_code"),
        Column("item_name", "医疗目录名称", S, national="hilist_name"),
        Column("fee_category", "收费项目类别", S, national="med_chrgitm_type",
               meaning="01 床位费 … 14 其他费", digits=2),
        Column("charge_time", "费用发生时间", TS, national="fee_ocur_time"),
        Column("quantity", "数量", Q, national="cnt"),
        Column("unit_price", "单价", Q, national="pric"),
        Column("amount", "明细项目费用总额", M, national="det_item_fee_sumamt"),
        Column("doctor_id", "开单医师编码", S, nullable=True, national="bilg_dr_codg"),
    ),
)

PERSONS = Table(
    "persons",
    "参保人员",
    required=False,
    key=("person_id",),
    columns=(
        Column("person_id", "人员编号", S, national="psn_no"),
        Column("gender", "性别", S, national="gend", meaning="1 male, 2 female"),
        Column("birth_date", "出生日期", D, national="brdy"),
        Column("insured_region", "参保地医保区划", S, national="insu_admdvs"),
    ),
)

INSTITUTIONS = Table(
    "institutions",
    "定点医药机构",
    required=False,
    key=("institution_id",),
    columns=(
        Column("institution_id", "定点医药机构编号", S, national="fixmedins_code"),
        Column("name", "机构名称", S, national="fixmedins_name"),
        # kind and region: nullable, though the contract does not say so, because the
        # national extract it says loads as it is has no such fields (docs/readings.md).
        Column("kind", "机构类型", S, nullable=True, meaning="hospital or pharmacy"),
        Column("level", "医院等级", S, nullable=True, national="hosp_lv"),
        Column("region", "医保区划", S, nullable=True),
    ),
)

CATALOG = Table(
    "catalog",
    "医保目录",
    required=False,
    key=("item_code",),
    columns=(
        Column("item_code", "医保目录编码", S, national="hilist_code"),
        Column("item_name", "名称", S, national="hilist_name"),
        Column("generic_name", "通用名", S, nullable=True),
        # Nullable for the same reason as institutions' kind.
        Column("fee_category", "收费项目类别", S, nullable=True, digits=2),
        Column("price_cap", "最高限价", Q, nullable=True, meaning="yuan per unit",
               zh_other=("支付标准", "最高限价 / 支付标准", "最高限价/支付标准")),
        Column("gender_limit", "限定性别", S, nullable=True),
        Column("max_daily_quantity", "日最大数量", Q, nullable=True),
    ),
)

PURCHASES = Table(
    "purchases",
    "进货记录",
    required=False,
    key=(),
    row_label=("institution_id", "item_code", "purchase_date"),
    columns=(
        Column("institution_id", "定点医药机构编号", S),
        Column("item_code", "医保目录编码", S),
        Column("purchase_date", "进货日期", D),
        Column("quantity", "数量", Q),
    ),
)

ITEM_PAIRS = Table(
    "item_pairs",
    "项目互斥",
    required=False,
    key=(),
    row_label=("item_code_a", "item_code_b"),
    columns=(
        Column("item_code_a", "项目A编码", S),
        Column("item_code_b", "项目B编码", S),
        Column("relation", "关系", S, meaning="exclusive"),
    ),
)

WATCHLIST = Table(
    "watchlist",
    "重点药品耗材清单",
    required=False,
    key=(),
    row_label=("list_name", "item_code", "generic_name"),
    columns=(
        Column("list_name", "清单名称", S),
        Column("item_code", "医保目录编码", S, nullable=True, meaning="code or prefix*"),
        Column("generic_name", "通用名", S, nullable=True),
    ),
)

INPUT_TABLES: dict[str, Table] = {
    t.name: t
    for t in (SETTLEMENTS, FEE_LINES, PERSONS, INSTITUTIONS, CATALOG, PURCHASES,
              ITEM_PAIRS, WATCHLIST)
}

SUSPICIONS = Table(
    "suspicions",
    "疑点",
    required=True,
    key=("suspicion_id",),
    columns=(
        Column("suspicion_id", "疑点编号", S),
        Column("rule_id", "规则编号", S),
        Column("rule_version", "规则版本", S),
        Column("family", "规则类别", S),
        Column("severity", "严重程度", S),
        Column("institution_id", "定点医药机构编号", S, nullable=True),
        Column("person_id", "人员编号", S, nullable=True),
        Column("settlement_id", "结算ID", S, nullable=True),
        Column("related_settlement_ids", "关联结算ID", ColumnType.STRING_LIST),
        Column("item_code", "医保目录编码", S, nullable=True),
        Column("period_start", "期间起", D, nullable=True),
        Column("period_end", "期间止", D, nullable=True),
        Column("amount_at_risk", "涉嫌金额", M),
        Column("message", "疑点描述", S),
        Column("evidence", "证据", S),
    ),
)

FAMILIES: dict[str, str] = {
    "split_hospitalisation": "分解住院",
    "bed_holding": "挂床住院",
    "duplicate_charge": "重复收费",
    "item_substitution": "串换",
    "key_item_growth": "重点药品耗材异常增长",
    "pharmacy_card_skimming": "异地/药店套刷",
}

SEVERITIES = ("low", "medium", "high")


def pooling_area(region: str) -> str:
    """Two regions share a pooling area (统筹区) when their first 4 digits agree."""
    return region[:4]


def markdown() -> str:
    """The contract as the docs page ``docs/data-contract.md`` (generated, not edited)."""
    out = ["# Data contract", "",
           "Generated from `src/fraudscreen/contract.py` by `fraudscreen rules docs`. "
           "The spec is `shared/spec/data-contract.md`; this page is what the code declares.",
           ""]
    for table in (*INPUT_TABLES.values(), SUSPICIONS):
        need = "required" if table.required else "optional"
        if table is SUSPICIONS:
            need = "output"
        out += [f"## {table.name} ({table.zh}) — {need}", "",
                "| column | 中文 | type | nullable | national field | meaning |",
                "|---|---|---|---|---|---|"]
        out += [f"| `{c.name}` | {c.zh} | {c.type.value} | {'yes' if c.nullable else ''} | "
                f"{c.national or ''} | {c.meaning} |" for c in table.columns]
        if table.key:
            out += ["", f"Key: {', '.join(table.key)}."]
        elif table.row_label:
            out += ["", "No key; quarantine.csv's record_key names a row by "
                    f"`{RECORD_KEY_SEPARATOR.join(table.row_label)}` (not unique)."]
        out.append("")
    return "\n".join(out)
