"""Suspicions rolled up into ranked leads, and the other summaries the report shows.

All of it is Polars expressions over the suspicions table; money stays Decimal.

Ranking (per lead type): amount at risk, high first; then the highest severity
(high > medium > low); then the number of suspicions, most first; then the id.
Inside a lead, its suspicions (ids, top messages) are in the same order:
amount at risk, severity, suspicion id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from fraudscreen.contract import FAMILIES, SEVERITIES

SEVERITY_RANK = {s: i + 1 for i, s in enumerate(SEVERITIES)}  # low 1, medium 2, high 3
SEVERITY_ZH = {"low": "低", "medium": "中", "high": "高"}
LEAD_TYPES = {"institution": "institution_id", "person": "person_id"}
TOP_MESSAGES = 3
MONEY = pl.Decimal(38, 2)
LIST_SEPARATORS = {"families": "、", "top_messages": " | "}


def separator(column: str) -> str:
    """How a list column is joined in CSV and Excel cells (default ``;``)."""
    return LIST_SEPARATORS.get(column, ";")


@dataclass(frozen=True)
class LeadColumn:
    name: str   # CSV header
    zh: str     # xlsx / HTML header
    kind: str   # text | int | money | list


Titles = Mapping[str, str]  # a site family's Chinese name (a rule's family_title)


def families(suspicions: pl.DataFrame, titles: Titles | None = None) -> dict[str, str]:
    """Every contract family (in contract order), then any other family present, by its
    rule's ``family_title`` when it has one, else by its id."""
    extra = sorted(set(suspicions.get_column("family").unique().drop_nulls()) - set(FAMILIES))
    return {**FAMILIES, **{f: family_name(f, titles) for f in extra}}


def family_name(family: str, titles: Titles | None = None) -> str:
    """How the leads and the report name a family: its Chinese name, else its id."""
    return FAMILIES.get(family) or (titles or {}).get(family) or family


def family_titles(manifest: dict) -> dict[str, str]:
    """The ``family_title`` of each site family, from a run's manifest (``run.json``)."""
    titles = manifest.get("family_titles")
    if isinstance(titles, dict):
        return {str(k): str(v) for k, v in titles.items()}
    return {r["family"]: r["family_title"] for r in manifest.get("rules") or []  # older
            if isinstance(r, dict) and r.get("family_title") and r.get("family")}


def rule_titles(manifest: dict) -> dict[str, str]:
    """Each rule's Chinese title by id, from a run's manifest: shown beside the id (an
    inspector reads 床位费天数超过住院天数, not duplicate_charge.bed_days_beyond_stay)."""
    return {str(r["id"]): str(r.get("title") or "") for r in manifest.get("rules") or []
            if isinstance(r, dict) and "id" in r}


def institution_names(institutions: pl.DataFrame, suspicions: pl.DataFrame) -> dict[str, str]:
    """The name of each institution the suspicions name, by id (ids in order), from the
    institutions table (``institution_id``, ``name``; the first row of an id counts): an
    inspector looks a hospital up by its name, not by H35092500002. Kept in run.json, so
    ``fraudscreen report`` shows them without the input tables."""
    named = (institutions.select("institution_id", "name")
             .filter(pl.col("institution_id").is_in(suspicions.get_column("institution_id")
                                                    .drop_nulls().implode())
                     & pl.col("name").is_not_null())
             .unique("institution_id", keep="first", maintain_order=True)
             .sort("institution_id"))
    return dict(zip(named["institution_id"].to_list(), named["name"].to_list(), strict=True))


def names_in(manifest: dict) -> dict[str, str]:
    """The institution names a run's manifest (``run.json``) carries; none in older runs."""
    names = manifest.get("institution_names")
    return {str(k): str(v) for k, v in names.items()} if isinstance(names, dict) else {}


def lead_columns(fams: dict[str, str], lead_type: str | None = None) -> list[LeadColumn]:
    """The lead table's columns; ``lead_type`` names the id column in Chinese."""
    id_zh = {"institution": "定点医药机构编号", "person": "人员编号"}.get(lead_type, "线索对象编号")
    cols = [] if lead_type else [LeadColumn("lead_type", "线索类型", "text")]
    cols += [
        LeadColumn("rank", "排名", "int"),
        LeadColumn("lead_id", id_zh, "text"),
        # the contract has no person names: a person lead's is empty, and its sheet omits it
        LeadColumn("lead_name", "机构名称", "text"),
        LeadColumn("suspicions", "疑点数", "int"),
        LeadColumn("persons", "涉及人员数", "int"),
        LeadColumn("institutions", "涉及机构数", "int"),
    ]
    # An institution lead has one institution, a person lead one person: say only
    # the other count in the per-type tables.
    cols = [c for c in cols if (lead_type, c.name) not in (("institution", "institutions"),
                                                            ("person", "persons"),
                                                            ("person", "lead_name"))]
    cols += [
        LeadColumn("family_count", "类别数", "int"),
        LeadColumn("families", "规则类别", "list"),
        LeadColumn("rule_count", "规则数", "int"),
        LeadColumn("rules", "命中规则", "list"),
        LeadColumn("amount_at_risk", "涉嫌金额合计", "money"),
        # Two rules may see the same lines (three equal CT lines: a repeat and over the
        # daily cap) or the same stay (idle and elsewhere): their amounts are summed
        # above, so the lead says how many of its settlements carry more than one.
        LeadColumn("overlapping_settlements", "多条疑点的结算数", "int"),
    ]
    cols += [LeadColumn(f"amount_{f}", f"{zh}金额", "money") for f, zh in fams.items()]
    cols += [
        LeadColumn("max_severity", "最高严重程度", "text"),
        LeadColumn("top_messages", "主要疑点描述", "list"),
        LeadColumn("suspicion_ids", "疑点编号", "list"),
    ]
    return cols


def _severity_rank() -> pl.Expr:
    return pl.col("severity").replace_strict(SEVERITY_RANK, default=0, return_dtype=pl.Int8)


# Evidence fields that date the settlement a suspicion is about, best first: its admission,
# its charge, the last purchase of a run (the one flagged). An earlier stay's discharge in
# the same evidence must not date a readmission.
WHEN_FIELDS = ("admit_date", "admit_time", "charge_date", "charge_time", "last_time")


def month_expr() -> pl.Expr:
    """The month a suspicion belongs to: its period start, else the date in the first of
    WHEN_FIELDS its evidence has, else the first date in its evidence."""
    dates = [pl.col("evidence").str.extract(rf'"{name}":\s*"(\d{{4}}-\d{{2}}-\d{{2}})', 1)
             for name in WHEN_FIELDS]
    dates.append(pl.col("evidence").str.extract(r'"(\d{4}-\d{2}-\d{2})', 1))
    return pl.coalesce(pl.col("period_start"), pl.coalesce(dates).str.to_date(
        "%Y-%m-%d", strict=False)).dt.truncate("1mo")


def ordered(suspicions: pl.DataFrame) -> pl.DataFrame:
    """Suspicions in lead order: amount at risk, severity (``_sev``), id."""
    return (suspicions.with_columns(_sev=_severity_rank())
            .sort(["amount_at_risk", "_sev", "suspicion_id"],
                  descending=[True, True, False], nulls_last=True))


def rollup(suspicions: pl.DataFrame, lead_type: str, titles: Titles | None = None,
           names: Mapping[str, str] | None = None) -> pl.DataFrame:
    """One row per institution (or person) with at least one suspicion, ranked;
    ``names``: institution names by id (:func:`institution_names`)."""
    key = LEAD_TYPES[lead_type]
    fams = families(suspicions, titles)
    order = list(fams)
    base = ordered(suspicions).filter(pl.col(key).is_not_null()).with_columns(
        _ford=pl.col("family").replace_strict({f: i for i, f in enumerate(order)},
                                              return_dtype=pl.Int32),
        _shared=pl.col("settlement_id").is_not_null()
        & (pl.len().over([key, "settlement_id"]) > 1))
    agg = base.group_by(key).agg(
        pl.len().cast(pl.Int64).alias("suspicions"),
        pl.col("person_id").drop_nulls().n_unique().cast(pl.Int64).alias("persons"),
        pl.col("institution_id").drop_nulls().n_unique().cast(pl.Int64).alias("institutions"),
        # by id: two families are two even where their names look alike
        pl.col("family").sort_by("_ford").unique(maintain_order=True).alias("families"),
        pl.col("rule_id").unique().sort().alias("rules"),
        pl.col("amount_at_risk").sum().cast(MONEY).alias("amount_at_risk"),
        pl.col("settlement_id").filter(pl.col("_shared")).n_unique().cast(pl.Int64)
        .alias("overlapping_settlements"),
        *[pl.col("amount_at_risk").filter(pl.col("family") == f).sum().cast(MONEY)
          .alias(f"amount_{f}") for f in order],
        pl.col("_sev").max().alias("_max_sev"),
        # base is in lead order, and a group keeps the order of its rows
        pl.col("message").head(TOP_MESSAGES).alias("top_messages"),
        pl.col("suspicion_id").alias("suspicion_ids"),
    )
    ranked = (agg.rename({key: "lead_id"})
              .sort(["amount_at_risk", "_max_sev", "suspicions", "lead_id"],
                    descending=[True, True, True, False])
              .with_columns(
                  rank=pl.int_range(1, pl.len() + 1, dtype=pl.Int64),
                  family_count=pl.col("families").list.len().cast(pl.Int64),
                  families=pl.col("families").list.eval(
                      pl.element().replace_strict(fams, return_dtype=pl.String)),
                  lead_name=pl.col("lead_id").replace_strict(
                      dict(names or {}) if lead_type == "institution" else {},
                      default=None, return_dtype=pl.String),
                  rule_count=pl.col("rules").list.len().cast(pl.Int64),
                  max_severity=pl.col("_max_sev").replace_strict(
                      {v: k for k, v in SEVERITY_RANK.items()}, default=None,
                      return_dtype=pl.String)))
    return ranked.select(c.name for c in lead_columns(fams) if c.name != "lead_type")


def leads(suspicions: pl.DataFrame, titles: Titles | None = None,
          names: Mapping[str, str] | None = None) -> pl.DataFrame:
    """Institution leads, then person leads, each ranked from 1."""
    fams = families(suspicions, titles)
    parts = [rollup(suspicions, t, titles, names).select(pl.lit(t).alias("lead_type"), pl.all())
             for t in LEAD_TYPES]
    return pl.concat(parts).select(c.name for c in lead_columns(fams))


def csv_frame(lead_table: pl.DataFrame) -> pl.DataFrame:
    """leads.csv: families joined by 、, messages by ' | ', other lists by ';'."""
    return lead_table.with_columns(
        pl.col(name).list.join(separator(name))
        for name, dtype in lead_table.schema.items() if isinstance(dtype, pl.List))


def by_family(suspicions: pl.DataFrame, titles: Titles | None = None) -> pl.DataFrame:
    """Suspicions and amount at risk per family, every family listed (contract order)."""
    fams = families(suspicions, titles)
    totals = suspicions.group_by("family").agg(
        pl.len().cast(pl.Int64).alias("suspicions"),
        pl.col("amount_at_risk").sum().cast(MONEY).alias("amount_at_risk"))
    names = pl.DataFrame({"family": list(fams), "family_zh": list(fams.values())})
    return (names.join(totals, on="family", how="left", maintain_order="left")
            .with_columns(pl.col("suspicions").fill_null(0),
                          pl.col("amount_at_risk").fill_null(0).cast(MONEY)))


def by_month(suspicions: pl.DataFrame) -> pl.DataFrame:
    """Suspicions and amount at risk per month (``YYYY-MM``; 未知 when no date), in order."""
    counted = (suspicions.with_columns(month=month_expr())
               .group_by("month")
               .agg(pl.len().cast(pl.Int64).alias("suspicions"),
                    pl.col("amount_at_risk").sum().cast(MONEY).alias("amount_at_risk")))
    dated = counted.get_column("month").drop_nulls()
    if dated.len():  # every month from the first to the last, quiet months as 0
        span = pl.DataFrame({"month": pl.date_range(dated.min(), dated.max(), "1mo",
                                                    eager=True)})
        counted = pl.concat([
            span.join(counted, on="month", how="left").with_columns(
                pl.col("suspicions").fill_null(0),
                pl.col("amount_at_risk").fill_null(0).cast(MONEY)),
            counted.filter(pl.col("month").is_null()),
        ])
    return counted.select(pl.col("month").dt.strftime("%Y-%m").fill_null("未知"),
                          "suspicions", "amount_at_risk")
