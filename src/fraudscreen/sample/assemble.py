"""From internal frames to the contract's tables: reversals, money, ids, stock.

- Reversal (冲销) rows copy the settlement they cancel, with their own id, negative
  amounts and negative mirror lines.
- Amounts are exact: quantity × price in integers, rounded half up to the fen.
- Settlement ids follow settlement time and line ids follow their settlement, so
  injected cases are not recognisable by their ids; person ids are shuffled too.
- Purchases (进货) cover 1.3 × each month's billed quantity of every drug and
  material at every institution, except where the cases set the stock by hand and
  at the pharmacies that have no stock data at all.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import polars as pl

from fraudscreen.contract import INPUT_TABLES
from fraudscreen.sample.background import US, Background, spread_offsite
from fraudscreen.sample.draft import Draft
from fraudscreen.sample.reference import ITEMS
from fraudscreen.sample.world import World

STOCK_CATEGORIES = ("08", "09", "10", "11")
# Percent of the total paid by the fund, by medical type and insurance type.
FUND_PERCENT = {("21", "310"): 85, ("21", "390"): 65, ("14", "310"): 75, ("14", "390"): 60,
                ("11", "310"): 70, ("11", "390"): 55, ("41", "310"): 70, ("41", "390"): 50}


def _ids(prefix: str, n: int) -> pl.Expr:
    """prefix + 11-digit sequence number 1 … n, in row order."""
    return pl.concat_str(pl.lit(prefix), pl.int_range(1, n + 1).cast(pl.String).str.zfill(11))


def _decimal(column: str, scale: int) -> pl.Expr:
    """An integer column counted in 10^-scale as a decimal of that scale."""
    unit = pl.lit(Decimal(1).scaleb(-scale), dtype=pl.Decimal(16, scale))
    return (pl.col(column).cast(pl.Decimal(16, scale)) * unit).cast(pl.Decimal(16, scale))


def _contract(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    """The table's columns, in contract order, with contract types."""
    t = INPUT_TABLES[table]
    return frame.select([pl.col(c.name).cast(c.type.polars) for c in t.columns])


def _reversals(bg: Background, draft: Draft, rng: np.random.Generator,
               settlements: pl.DataFrame) -> pl.DataFrame:
    """orig, new, settle: the draft's reversals plus 0.4 % of reversible background ones."""
    pool = np.concatenate(bg.reversible)
    chosen = np.sort(pool[rng.random(pool.size) < 0.004])
    first = draft.first_skey + len(draft.settlements) + len(draft.reversals)
    settle = (settlements.filter(pl.col("skey").is_in(chosen)).sort("skey")["settle"]
              .to_numpy() + rng.integers(1, 48, chosen.size) * 3600 * US)
    background = pl.DataFrame({"orig": chosen, "new": np.arange(first, first + chosen.size),
                               "settle": settle}, schema={"orig": pl.Int64, "new": pl.Int64,
                                                          "settle": pl.Int64})
    cases = pl.DataFrame(draft.reversals, schema=background.schema, orient="row")
    return pl.concat([cases, background])


def build_tables(world: World, bg: Background, draft: Draft, rng: np.random.Generator
                 ) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    """The six contract tables, and the truth with contract keys."""
    b_persons, b_settlements, b_lines = bg.frames()
    d_persons, d_settlements, d_lines = draft.frames()
    persons = pl.concat([b_persons, d_persons])
    settlements = pl.concat([spread_offsite(b_settlements, b_persons, world, rng),
                             d_settlements])
    lines = pl.concat([b_lines, d_lines]).with_row_index("row")
    rev = _reversals(bg, draft, rng, settlements)

    settlements = pl.concat([
        settlements.with_columns(reverses=pl.lit(None, pl.Int64)),
        settlements.join(rev, left_on="skey", right_on="orig")
        .with_columns(skey=pl.col("new"), settle=pl.col("settle_right"),
                      reverses=pl.col("skey")).select(*settlements.columns, "reverses"),
    ])
    mirror = (lines.join(rev.select("orig", "new"), left_on="skey", right_on="orig")
              .with_columns(skey=pl.col("new"), q=-pl.col("q"),
                            row=pl.col("row") + lines.height).select(lines.columns))
    lines = pl.concat([lines, mirror])
    fen = (pl.col("q").abs() * pl.col("p") + 500_000) // 1_000_000
    lines = lines.with_columns(amount=pl.when(pl.col("q") < 0).then(-fen).otherwise(fen))

    # settlements: totals, fund share, region codes, ids in settlement-time order
    region = pl.DataFrame({"inst": np.arange(len(world.inst_id), dtype=np.int32),
                           "institution_id": world.inst_id, "visit_region": world.inst_region})
    person_ids = _person_ids(persons, rng)
    totals = lines.group_by("skey").agg(total=pl.col("amount").sum())
    percent = pl.DataFrame([(m, i, p) for (m, i), p in FUND_PERCENT.items()],
                           schema=["medical_type", "insurance", "percent"], orient="row")
    s = (settlements.join(totals, on="skey", how="left")
         .join(person_ids, on="person", how="left")
         .join(region, on="inst", how="left")
         .join(percent, on=["medical_type", "insurance"], how="left")
         .with_columns(total=pl.col("total").fill_null(0))
         .with_columns(fund=pl.col("total").sign()
                       * (pl.col("total").abs() * pl.col("percent") // 100))
         .sort("settle", "skey")
         .with_columns(settlement_id=_ids("S", settlements.height)))
    s = s.join(s.select(reverses="skey", reversed_settlement_id="settlement_id"),
               on="reverses", how="left", maintain_order="left")
    settlement_table = _contract(s.with_columns(
        insurance_type="insurance", insured_region="region",
        admit_time=pl.col("admit").cast(pl.Datetime("us")),
        discharge_time=pl.col("discharge").cast(pl.Datetime("us")),
        settle_time=pl.col("settle").cast(pl.Datetime("us")),
        diagnosis_code="dx", department_code="dept",
        total_amount=_decimal("total", 2), fund_amount=_decimal("fund", 2)), "settlements")

    # Fee lines take their settlement's id and doctor by position (skeys are 0 … n-1;
    # gathers are much cheaper than joins at scale 20), and line ids in that order.
    rank = np.full(s.height, -1, dtype=np.int64)
    rank[s["skey"].to_numpy()] = np.arange(s.height)
    if (rank < 0).any():
        raise AssertionError("settlement keys are not dense")
    f = (lines.with_columns(rank=rank[lines["skey"].to_numpy()])
         .sort("rank", "charge", "row"))
    at_rank, item = f["rank"].to_numpy(), f["item"].to_numpy()
    doctor = s.select(pl.concat_str(pl.lit("D"), pl.col("doctor").cast(pl.String).str.zfill(8)))
    catalog = world.catalog_frame()
    fee_table = _contract(f.with_columns(
        line_id=_ids("L", f.height),
        settlement_id=s["settlement_id"].gather(at_rank),
        item_code=catalog["item_code"].gather(item),
        item_name=catalog["item_name"].gather(item),
        fee_category=catalog["fee_category"].gather(item),
        doctor_id=doctor.to_series().gather(at_rank),
        charge_time=pl.col("charge").cast(pl.Datetime("us")),
        quantity=_decimal("q", 4), unit_price=_decimal("p", 4),
        amount=_decimal("amount", 2)), "fee_lines")

    tables = {
        "settlements": settlement_table,
        "fee_lines": fee_table,
        "persons": _contract(
            person_ids.join(persons, on="person").sort("person_id").with_columns(
                birth_date=pl.col("birth").cast(pl.Date), insured_region="region"),
            "persons"),
        "institutions": _contract(world.institutions_frame().sort("institution_id"),
                                  "institutions"),
        "catalog": _contract(catalog.with_columns(
            price_cap=_decimal("price_cap", 4),
            max_daily_quantity=_decimal("max_daily_quantity", 4)).sort("item_code"),
            "catalog"),
        "purchases": _purchases(world, draft, lines, settlements),
    }
    return tables, _truth(world, draft, s, person_ids)


def _person_ids(persons: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """Person ids: insured region + 8 digits, numbered in a shuffled order."""
    number = rng.permutation(persons.height) + 1
    return persons.select("person", "region", "insurance").with_columns(
        person_id=pl.concat_str(pl.col("region"),
                                pl.Series(number).cast(pl.String).str.zfill(8)))


def _purchases(world: World, draft: Draft, lines: pl.DataFrame,
               settlements: pl.DataFrame) -> pl.DataFrame:
    """Monthly deliveries of 1.3 × billed, dated in the month's first five days."""
    stocked = [j for j, it in enumerate(ITEMS) if it.category in STOCK_CATEGORIES]
    own = pl.DataFrame(list(draft.own_stock), schema={"inst": pl.Int32, "item": pl.Int32},
                       orient="row")
    month = pl.col("charge").cast(pl.Datetime("us")).dt.truncate("1mo").cast(pl.Date)
    billed = (lines.filter(pl.col("item").is_in(stocked) & (pl.col("q") > 0))
              .join(settlements.select("skey", "inst"), on="skey")
              .filter(~pl.col("inst").is_in(list(draft.no_stock)))
              .join(own, on=["inst", "item"], how="anti")
              .group_by("inst", "item", month.alias("month"))
              .agg(q=pl.col("q").sum()))
    whole = 10_000
    auto = billed.select(
        "inst", "item",
        date=pl.col("month") + pl.duration(days=(pl.col("inst") * 7 + pl.col("item") * 3) % 5),
        q=(pl.col("q") * 13 + 10 * whole - 1) // (10 * whole) * whole)
    by_hand = pl.DataFrame(draft.purchases, schema={"inst": pl.Int32, "item": pl.Int32,
                                                    "date": pl.Date, "q": pl.Int64},
                           orient="row")
    ids = pl.DataFrame({"inst": np.arange(len(world.inst_id), dtype=np.int32),
                        "institution_id": world.inst_id})
    codes = pl.DataFrame({"item": np.arange(len(ITEMS), dtype=np.int32),
                          "item_code": [it.code for it in ITEMS]})
    p = (pl.concat([auto.cast(by_hand.schema), by_hand]).join(ids, on="inst")
         .join(codes, on="item").rename({"date": "purchase_date"})
         .with_columns(quantity=_decimal("q", 4))
         .sort("institution_id", "item_code", "purchase_date", "quantity"))
    return _contract(p, "purchases")


def _truth(world: World, draft: Draft, settlements: pl.DataFrame,
           person_ids: pl.DataFrame) -> pl.DataFrame:
    sid = dict(settlements.filter(pl.col("skey") >= draft.first_skey)
               .select("skey", "settlement_id").iter_rows())
    pid = dict(person_ids.filter(pl.col("person") >= draft.first_person)
               .select("person", "person_id").iter_rows())
    code = {it.name: it.code for it in ITEMS}

    def key(mapping, value):
        return None if value is None else mapping[value]

    rows = [{
        "rule_id": e.rule_id, "expected": e.expected,
        "settlement_id": key(sid, e.settlement),
        "institution_id": key(dict(enumerate(world.inst_id)), e.institution),
        "person_id": key(pid, e.person), "item_code": key(code, e.item),
        "period_start": e.period.isoformat() if isinstance(e.period, dt.date) else None,
        "note": e.note} for e in draft.truth]
    return pl.DataFrame(rows, schema={c: pl.String for c in (
        "rule_id", "expected", "settlement_id", "institution_id", "person_id", "item_code",
        "period_start", "note")})
