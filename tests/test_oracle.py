"""Differential check of the 14 built-in sub-rules against an independent oracle.

`tests/oracle.py` implements each sub-rule in plain Python straight from the spec
(`shared/spec/rule-families.md` with its "Precise readings (v1.1)") and, where the spec
is silent, `docs/readings.md`. Hypothesis builds small worlds whose values sit on the
boundaries the spec names; the real engine (DuckDB) screens them, and both must give
the same suspicions: rule, keys, related settlements, periods and amount at risk in fen.

The two departures from the spec this file found are kept at the end as hand-made
minimal cases: a burst cut in two at a gap of exactly the window, and an average-price
amount divided in binary floating point (the generated amounts stay below where that
showed). Both were fixed in the compiler (`docs/readings.md`).
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import oracle
from fraudscreen.ruleset import RuleSet
from fraudscreen.screen import make_engine, screen
from fraudscreen.testing import table
from fuzz import examples

D = Decimal
CENT = D("0.01")
DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)
MINUTE = dt.timedelta(minutes=1)
BASE = dt.datetime(2024, 3, 1)

# The same 30 worlds each run (derandomized): they catch every one of 36 seeded
# boundary faults in the 14 rules (>= for >, a threshold one off, an amount uncapped)
# that 60 caught, the last of them at the 19th world; FRAUDSCREEN_FUZZ_SCALE searches
# further (tests/fuzz.py).
SETTINGS = settings(max_examples=examples(30), derandomize=True, deadline=None,
                    database=None, suppress_health_check=list(HealthCheck))

# The output columns each sub-rule's spec entry defines (compared field by field).
FIELDS = {
    "split_hospitalisation.readmission":
        ("settlement_id", "person_id", "institution_id", "related_settlement_ids",
         "amount_at_risk"),
    "bed_holding.idle_stay": ("settlement_id", "person_id", "institution_id", "amount_at_risk"),
    "bed_holding.elsewhere_during_stay":
        ("settlement_id", "person_id", "institution_id", "related_settlement_ids",
         "amount_at_risk"),
    "duplicate_charge.repeated_line":
        ("settlement_id", "person_id", "institution_id", "item_code", "amount_at_risk"),
    "duplicate_charge.bed_days_beyond_stay":
        ("settlement_id", "person_id", "institution_id", "amount_at_risk"),
    "duplicate_charge.daily_cap":
        ("settlement_id", "person_id", "institution_id", "item_code", "period_start",
         "period_end", "amount_at_risk"),
    "duplicate_charge.exclusive_items":
        ("settlement_id", "person_id", "institution_id", "item_code", "period_start",
         "period_end", "related_settlement_ids", "amount_at_risk"),
    "duplicate_charge.over_price_cap":
        ("settlement_id", "person_id", "institution_id", "item_code", "amount_at_risk"),
    "item_substitution.billed_more_than_bought":
        ("institution_id", "item_code", "period_start", "period_end", "amount_at_risk"),
    "item_substitution.wrong_gender":
        ("settlement_id", "person_id", "institution_id", "item_code", "amount_at_risk"),
    "key_item_growth.monthly_growth":
        ("institution_id", "item_code", "period_start", "period_end", "amount_at_risk"),
    "pharmacy_card_skimming.offsite_burst":
        ("institution_id", "person_id", "settlement_id", "related_settlement_ids",
         "amount_at_risk"),
    "pharmacy_card_skimming.hoarding":
        ("person_id", "item_code", "settlement_id", "related_settlement_ids",
         "amount_at_risk"),
    "pharmacy_card_skimming.impossible_travel":
        ("settlement_id", "person_id", "institution_id", "related_settlement_ids",
         "amount_at_risk"),
}

ALL_RULES = RuleSet.load()
assert {r.id for r in ALL_RULES.rules} == set(FIELDS), "the 14 built-in sub-rules"


# ------------------------------------------------------------------ plumbing ------

def run_engine(world: dict[str, list[dict]], rule_ids: set[str]):
    tables = {name: table(name, rows) for name, rows in world.items()}
    rules = [r for r in ALL_RULES.rules if r.id in rule_ids]
    engine = make_engine("duckdb")
    try:
        result = screen(tables, RuleSet(rules), engine)
    finally:
        engine.close()
    bad = [(o.rule.id, o.status, o.reason) for o in result.outcomes if o.status != "ran"]
    assert not bad, bad
    return result


def _norm(rule: str, row: dict) -> tuple:
    out = [rule]
    for name in FIELDS[rule]:
        value = row.get(name)
        if name == "related_settlement_ids":
            value = tuple(sorted(value or []))
        elif name == "amount_at_risk":
            value = D(value).quantize(CENT, ROUND_HALF_UP)
        out.append(value)
    return tuple(out)


def engine_rows(result) -> list[tuple]:
    return sorted(_norm(r["rule_id"], r) for r in result.suspicions.to_dicts())


def oracle_rows(found: list[dict]) -> list[tuple]:
    for row in found:
        assert set(row) == {"rule_id", *FIELDS[row["rule_id"]]}, row
    return sorted(_norm(r["rule_id"], r) for r in found)


def check(world: dict, rule_ids: set[str], expected: list[dict]):
    result = run_engine(world, rule_ids)
    got, want = engine_rows(result), oracle_rows(expected)
    if got != want:
        missing = [w for w in want if w not in got]
        extra = [g for g in got if g not in want]
        raise AssertionError(f"engine and oracle disagree\nonly oracle: {missing}\n"
                             f"only engine: {extra}\nworld: {world}")
    return result


def S(sid, person, inst, mtype, admit, discharge=None, diag=None, fund="100",
      total=None, insured="350902", visit="350902", reverses=None) -> dict:
    """A settlement row with every column the oracle reads."""
    fund = D(fund)
    return dict(settlement_id=sid, person_id=person, institution_id=inst,
                insurance_type="310", medical_type=mtype, insured_region=insured,
                visit_region=visit, admit_time=admit, discharge_time=discharge,
                settle_time=discharge or admit, diagnosis_code=diag,
                total_amount=fund if total is None else D(total), fund_amount=fund,
                reversed_settlement_id=reverses)


def F(lid, sid, item, when, qty="1", price="0", amount=None, cat="09", name=None) -> dict:
    qty, price = D(qty), D(price)
    amount = (qty * price).quantize(CENT, ROUND_HALF_UP) if amount is None else D(amount)
    return dict(line_id=lid, settlement_id=sid, item_code=item, item_name=name or item,
                fee_category=cat, charge_time=when, quantity=qty, unit_price=price,
                amount=amount, doctor_id=None)


def reverse(draw, settlements: list[dict], lines: list[dict], share: float = 0.15,
            keep: tuple[str, ...] = ()) -> None:
    """Reverse some settlements: a reversal row (with a negative line of its own) that,
    with its target, must take part in no rule; sometimes a reversal of nothing."""
    for s in list(settlements):
        if s["settlement_id"] in keep or s["reversed_settlement_id"] is not None:
            continue
        if draw(st.integers(0, 99)) < share * 100:
            r = dict(s, settlement_id="R" + s["settlement_id"],
                     reversed_settlement_id=s["settlement_id"],
                     fund_amount=-s["fund_amount"], total_amount=-s["total_amount"])
            settlements.append(r)
            mine = [f for f in lines if f["settlement_id"] == s["settlement_id"]]
            if mine:
                f = mine[0]
                lines.append(dict(f, line_id="R" + f["line_id"], settlement_id=r["settlement_id"],
                                  quantity=-f["quantity"], amount=-f["amount"]))
    if draw(st.booleans()):
        settlements.append(S("RGHOST", "P1", "H1", "11", BASE, reverses="GHOST"))


def money_st(values=("0", "100", "250.50", "1000", "3000.01")):
    return st.sampled_from([D(v) for v in values])


# ------------------------------------------------------------------ worlds --------

# A person's stays share a main category often enough to meet the gap boundaries.
CATEGORIES = ["J18.900", "I10.x00", "O85.x00", "J18.900", "I10.x00", "O85.x00", "Z51.100",
              "z49.x", "O80.000", "O84.1"]
# (fee category, item code, quantities, unit prices)
STAY_LINES = [("01", "BED", ["1", "2"], ["40", "60"]), ("01", "BED2", ["1"], ["55.5"]),
              ("02", "EXAM", ["1"], ["20"]), ("07", "NURSE", ["1"], ["30"]),
              ("03", "XRAY", ["1"], ["120"]), ("09", "DRUG", ["2"], ["8.25"])]


@st.composite
def inpatient_world(draw):
    settlements, lines = [], []
    for p in ("P1", "P2", "P3", "P4"):
        main = draw(st.sampled_from(CATEGORIES))
        diagnoses = [main, main, main, main[:3] + ".123", main.lower(), "K35.8", None]
        start = BASE + HOUR * draw(st.integers(0, 23))
        n = draw(st.integers(1, 5))
        for k in range(n):
            sid = f"{p}S{k}"
            inst = draw(st.sampled_from(["H1", "H1", "H1", "H2"]))
            length = draw(st.sampled_from([0, 1, 2, 3, 3, 4, 6]))
            day0 = start.replace(hour=0)
            if length == 0:
                discharge = start + HOUR * draw(st.integers(0, 23 - start.hour))
            else:
                discharge = day0 + DAY * length + HOUR * draw(st.integers(0, 23))
            if k == n - 1 and draw(st.integers(0, 9)) == 0:
                discharge = None  # still in hospital at the export
            fund = draw(money_st())
            total = draw(st.sampled_from([fund, fund + 50, max(fund - D("0.01"), D(0))]))
            settlements.append(S(sid, p, inst, "21", start, discharge,
                                 draw(st.sampled_from(diagnoses)), fund, total))
            for d in range(-1, length + 1):
                for cat, item, qtys, prices in draw(st.lists(st.sampled_from(STAY_LINES),
                                                             max_size=3)):
                    when = day0 + DAY * d + HOUR * draw(st.sampled_from([0, 9, 23]))
                    lines.append(F(f"L{len(lines) + 1}", sid, item, when,
                                   draw(st.sampled_from(qtys)), draw(st.sampled_from(prices)),
                                   cat=cat))
            for j in range(draw(st.integers(0, 2))):
                offset = draw(st.sampled_from(sorted({0, 1, max(length - 1, 0), length,
                                                      length + 1})))
                when = day0 + DAY * offset + HOUR * draw(st.sampled_from([0, 12, 23]))
                mtype = draw(st.sampled_from(["11", "14", "41", "21", "12"]))
                settlements.append(S(f"{sid}o{j}", p, draw(st.sampled_from(["H1", "H2", "X1"])),
                                     mtype, when, when + 30 * MINUTE if mtype == "21" else None,
                                     fund=draw(money_st())))
            gap = draw(st.sampled_from([-1, 0, 1, 14, 15, 15, 16, 16, 40]))
            end = (discharge or start).replace(hour=0)
            start = end + DAY * gap + HOUR * draw(st.integers(0, 23))
    reverse(draw, settlements, lines)
    return {"settlements": settlements, "fee_lines": lines}


NURSE1, NURSE2, NURSE3 = "001201000010000", "001201000020000", "001201000030000"
DIALYSIS1, DIALYSIS2 = "003104000010000", "003104000020000"
CATALOG = [
    dict(item_code="A", item_name="A", generic_name=None, fee_category="09",
         price_cap=D("10"), gender_limit="1", max_daily_quantity=D("3")),
    dict(item_code="B", item_name="B", generic_name=None, fee_category="08",
         price_cap=D("100.00"), gender_limit="2", max_daily_quantity=D("2")),
    dict(item_code="C", item_name="C", generic_name=None, fee_category="09",
         price_cap=None, gender_limit=None, max_daily_quantity=None),
    dict(item_code=NURSE1, item_name="一级护理", generic_name=None, fee_category="07",
         price_cap=D("30"), gender_limit=None, max_daily_quantity=D("1")),
    dict(item_code=NURSE2, item_name="二级护理", generic_name=None, fee_category="07",
         price_cap=None, gender_limit=None, max_daily_quantity=None),
    dict(item_code=DIALYSIS1, item_name="血液透析", generic_name=None, fee_category="05",
         price_cap=D("400"), gender_limit="2", max_daily_quantity=None),
]
PRICES = {"A": ["10", "10.10", "10.1001", "10.11", "9.99", "12.345"],
          "B": ["100", "101", "101.0001", "150"], "C": ["5", "20"],
          NURSE1: ["30", "30.3", "30.31"], NURSE2: ["20", "30"], NURSE3: ["25"],
          DIALYSIS1: ["400", "404", "404.01"], DIALYSIS2: ["420"]}
# Exclusive partners in the shipped pairs or in the data's item_pairs below.
PARTNERS = {"A": ["B", NURSE1], "B": ["A"], NURSE1: [NURSE2, NURSE3, "A"],
            NURSE2: [NURSE1, NURSE3], NURSE3: [NURSE1, NURSE2], DIALYSIS1: [DIALYSIS2],
            DIALYSIS2: [DIALYSIS1]}
LINE_TIMES = [BASE + 8 * HOUR, BASE + 8 * HOUR, BASE + DAY - dt.timedelta(seconds=1),
              BASE + DAY]


@st.composite
def line_world(draw):
    persons = [dict(person_id="P1", gender="1", birth_date=dt.date(1970, 1, 1),
                    insured_region="350902"),
               dict(person_id="P2", gender="2", birth_date=dt.date(1980, 1, 1),
                    insured_region="350902"),
               dict(person_id="P3", gender=draw(st.sampled_from(["0", "9"])),
                    birth_date=dt.date(1990, 1, 1), insured_region="350902")]
    settlements = [S(f"S{k}", draw(st.sampled_from(["P1", "P2", "P3", "P4"])),
                     draw(st.sampled_from(["H1", "H2"])),
                     draw(st.sampled_from(["11", "21", "41"])), BASE)
                   for k in range(1, draw(st.integers(1, 4)) + 1)]
    lines = []
    for _ in range(draw(st.integers(1, 12))):
        lid = f"L{len(lines) + 1}"
        if lines and draw(st.integers(0, 3)) == 0:  # a copy, perhaps at another amount
            f = dict(draw(st.sampled_from(lines)), line_id=lid)
            if draw(st.booleans()):
                f["amount"] = draw(money_st(("0.10", "0.30", "7", "20.2")))
            lines.append(f)
            continue
        if lines and draw(st.integers(0, 3)) == 0:  # an exclusive partner, same day
            f = draw(st.sampled_from(lines))
            partner = draw(st.sampled_from(PARTNERS.get(f["item_code"], ["C"])))
            lines.append(dict(f, line_id=lid, item_code=partner, item_name=partner,
                              amount=draw(st.sampled_from([f["amount"], f["amount"] + 1]))))
            continue
        item = draw(st.sampled_from(sorted(PRICES)))
        qty = draw(st.sampled_from(["1", "2", "3", "0.5", "1.5"]))
        price = draw(st.sampled_from(PRICES[item]))
        amount = draw(st.sampled_from([None, None, "0.10", "0.30", "1.30", "0.70"]))
        lines.append(F(lid, draw(st.sampled_from(settlements))["settlement_id"], item,
                       draw(st.sampled_from(LINE_TIMES)), qty, price, amount))
    reverse(draw, settlements, lines, 0.1)
    world = {"settlements": settlements, "fee_lines": lines, "persons": persons,
             "catalog": CATALOG}
    if draw(st.booleans()):
        world["item_pairs"] = [
            dict(item_code_a="A", item_code_b="B", relation="exclusive"),
            dict(item_code_a=NURSE1, item_code_b="A", relation="exclusive"),
            dict(item_code_a="C", item_code_b="A", relation="included")]
    return world


STOCK_ITEMS = {"D1": "09", "D2": "08", "D3": "11", "D4": "10", "SV": "03"}


@st.composite
def stock_world(draw):
    start = BASE + DAY * draw(st.integers(0, 3))
    length = draw(st.sampled_from([0, 5, 20]))
    settlements = [S("A0", "P9", "H1", "11", start)]
    lines = [F("L0a", "A0", "SV", start + 9 * HOUR, "1", "5", cat="03"),
             F("L0b", "A0", "SV", start + DAY * length + 23 * HOUR, "1", "5", cat="03")]
    for k in range(draw(st.integers(1, 6))):
        sid = f"S{k}"
        settlements.append(S(sid, f"P{k % 3}", draw(st.sampled_from(["H1", "H2", "H3"])),
                             draw(st.sampled_from(["11", "41", "21"])), start))
        for _ in range(draw(st.integers(1, 3))):
            item = draw(st.sampled_from(sorted(STOCK_ITEMS)))
            lines.append(F(f"L{len(lines)}", sid, item,
                           start + DAY * draw(st.integers(0, length)) + 10 * HOUR,
                           draw(st.sampled_from(["1", "2", "3", "0.5", "5", "10", "11"])),
                           draw(st.sampled_from(["1", "2.5", "0.33", "0.07"])),
                           cat=STOCK_ITEMS[item]))
    reverse(draw, settlements, lines, keep=("A0",))
    e = oracle.Effective({"settlements": settlements, "fee_lines": lines})
    first, last = e.window
    billed: dict[tuple, Decimal] = {}
    for f in e.lines:
        key = (e.by_id[f["settlement_id"]]["institution_id"], f["item_code"])
        billed[key] = billed.get(key, D(0)) + f["quantity"]
    dates = [first - DAY * 31, first - DAY * 30, first - DAY * 29, first, first, last,
             last, last + DAY]
    purchases = []
    for inst in ("H1", "H2"):
        for item in sorted(STOCK_ITEMS):
            b = billed.get((inst, item), D(0))
            for _ in range(draw(st.integers(0, 2))):
                at = (b / D("1.1")).quantize(D("0.0001"))  # b is exactly 10 % more when exact
                qty = draw(st.sampled_from([at, at - D("0.0001"), at - D("0.0001"), b, b - 1,
                                            D("0.5"), D(100)]))
                purchases.append(dict(institution_id=inst, item_code=item,
                                      purchase_date=draw(st.sampled_from(dates)),
                                      quantity=max(qty, D(0))))
    return {"settlements": settlements, "fee_lines": lines, "purchases": purchases}


# Watched items: by code (W1), by prefix (WP*), by catalog generic name (G1), by a
# billed name containing the generic name (N1), by the shipped 张掖 list (AT); Z1 is not.
GROWTH_ITEMS = {"W1": "W1 tabs", "WP7": "WP7 caps", "G1": "G1 inj", "N1": "GXX tablet",
                "AT": "阿托伐他汀钙片", "Z1": "plain tabs"}
WATCHLIST = [dict(list_name="t", item_code="W1", generic_name=None),
             dict(list_name="t", item_code="WP*", generic_name=None),
             dict(list_name="t", item_code=None, generic_name="GXX")]
SHIPPED = [dict(item_code=None, generic_name="阿托伐他汀")]


@st.composite
def growth_world(draw):
    settlements, lines = [], []
    early = draw(st.sampled_from([None, dt.datetime(2023, 12, 31, 23, 59),
                                  dt.datetime(2024, 1, 15), dt.datetime(2024, 2, 29, 12)]))
    if early:
        settlements.append(S("E0", "P0", "H1", "11", early))
        lines.append(F("L0", "E0", "Z1", early, "1", "3", name=GROWTH_ITEMS["Z1"]))
    pairs = draw(st.lists(st.tuples(st.sampled_from(["H1", "H2"]),
                                    st.sampled_from(sorted(GROWTH_ITEMS))),
                          min_size=1, max_size=4, unique=True))
    for inst, item in pairs:
        prev = D(0)
        for month in range(draw(st.sampled_from([1, 2])), 5):
            value = draw(st.sampled_from([
                D(0), prev * D("1.5"), prev * D("1.5") - CENT, prev + 10000,
                prev + D("9999.99"), max(prev * D("1.5"), prev + 10000), D(10000),
                D(20000), D("20000.02"), D(5000)])).quantize(CENT)
            prev = value
            if value == 0:
                continue
            last = 29 if month == 2 else 31 if month in (1, 3) else 30
            sid = f"{inst}{item}{month}"
            settlements.append(S(sid, "P1", inst, "11", dt.datetime(2024, month, 1)))
            days = draw(st.sampled_from([[1], [last], [1, last], [15]]))
            part = (value / len(days)).quantize(CENT)
            for i, day in enumerate(days):
                when = dt.datetime(2024, month, day) + (
                    dt.timedelta(hours=23, minutes=59, seconds=59) if day == last else
                    dt.timedelta())
                amount = part if i < len(days) - 1 else value - part * (len(days) - 1)
                name = GROWTH_ITEMS[item]
                if item == "N1" and i:
                    name = "other name"  # an item matched by one billed name counts whole
                lines.append(F(f"L{len(lines) + 1}", sid, item, when, "1", amount, amount,
                               name=name))
    reverse(draw, settlements, lines, 0.1)
    catalog = [dict(item_code="G1", item_name="G1", generic_name="GXX", fee_category="09",
                    price_cap=None, gender_limit=None, max_daily_quantity=None)]
    return {"settlements": settlements, "fee_lines": lines, "catalog": catalog,
            "watchlist": WATCHLIST}


OFF_SITE = ["330100", "350100"]
# Card times inside a cluster (from its first card) and between clusters (last to first).
OFFSETS = [dt.timedelta(0), MINUTE, 2 * MINUTE, 3 * MINUTE, 5 * MINUTE, 5 * MINUTE,
           10 * MINUTE - dt.timedelta(seconds=1), 10 * MINUTE, 10 * MINUTE,
           10 * MINUTE + dt.timedelta(microseconds=1), 12 * MINUTE]
BETWEEN = [MINUTE, 10 * MINUTE - dt.timedelta(seconds=1), 10 * MINUTE, 10 * MINUTE,
           10 * MINUTE, 10 * MINUTE + dt.timedelta(microseconds=1), 30 * MINUTE]
TRAVEL_GAPS = [dt.timedelta(0), HOUR, 3 * HOUR - dt.timedelta(microseconds=1), 3 * HOUR,
               3 * HOUR + dt.timedelta(seconds=1), 5 * HOUR]


@st.composite
def pharmacy_world(draw):
    settlements, lines = [], []
    people = [f"P{c}" for c in "ABCDEF"]
    for shop in ("X1", "X2"):  # card bursts
        when, k = BASE + 10 * HOUR, 0
        for _ in range(draw(st.integers(1, 3))):
            offsets = sorted(draw(st.lists(st.sampled_from(OFFSETS), min_size=5, max_size=8)))
            offsets = [o - offsets[0] for o in offsets]  # the cluster starts at its first card
            for offset in offsets:
                k += 1
                person = people[k % len(people)] if draw(st.integers(0, 4)) else "PA"
                fund = draw(money_st(("10", "20.5", "0", "33.33")))
                settlements.append(S(
                    f"{shop}b{k}", person, shop,
                    draw(st.sampled_from(["41"] * 12 + ["11"])), when + offset, fund=fund,
                    total=draw(st.sampled_from([fund, fund - D("0.01")])),
                    insured=draw(st.sampled_from(OFF_SITE * 8 + ["350901", "350902"]))))
                if draw(st.integers(0, 3)) == 0:
                    lines.append(F(f"L{len(lines) + 1}", settlements[-1]["settlement_id"],
                                   "M1", when + offset, "1", "12.5"))
            when += offsets[-1] + draw(st.sampled_from(BETWEEN))
    for p in ("PA", "PB"):  # purchases of one drug
        when = BASE + 2 * DAY + HOUR * draw(st.integers(0, 23))
        for k in range(draw(st.integers(0, 9))):
            # three gaps of 9/10/19/20/29/30 days put 4 purchases 29 or 30 days apart
            gap = draw(st.sampled_from([0, 1, 9, 10, 10, 19, 20, 29, 30, 31]))
            when += DAY * gap if k else DAY * 0
            sid = f"{p}h{k}"
            settlements.append(S(sid, p, draw(st.sampled_from(["X1", "X2", "X3"])),
                                 draw(st.sampled_from(["41"] * 6 + ["11"])),
                                 when + MINUTE * k, fund="15"))
            for item in draw(st.lists(st.sampled_from(["M1", "M1", "M2"]), min_size=1,
                                      max_size=3)):
                lines.append(F(f"L{len(lines) + 1}", sid, item, when,
                               draw(st.sampled_from(["1", "2"])),
                               draw(st.sampled_from(["12.5", "7.01"]))))
    for p in ("PA", "PC", "PT"):  # travel
        when = BASE + 5 * DAY + HOUR * draw(st.integers(0, 23))
        for k in range(draw(st.integers(0, 4))):
            when += draw(st.sampled_from(TRAVEL_GAPS)) if k else dt.timedelta(0)
            fund = draw(money_st(("40", "0", "99.99")))
            settlements.append(S(
                f"{p}t{k}", p, draw(st.sampled_from(["H1", "X1", "H9"])),
                draw(st.sampled_from(["11", "21", "41", "14"])), when, fund=fund,
                total=draw(st.sampled_from([fund, fund + 1, fund - D("0.01")])),
                visit=draw(st.sampled_from(["350902", "350903", "330100", "440300"]))))
    reverse(draw, settlements, lines)
    return {"settlements": settlements, "fee_lines": lines}


# ------------------------------------------------------------------ the tests -----

INPATIENT = {"split_hospitalisation.readmission", "bed_holding.idle_stay",
             "bed_holding.elsewhere_during_stay", "duplicate_charge.bed_days_beyond_stay"}
LINES = {"duplicate_charge.repeated_line", "duplicate_charge.daily_cap",
         "duplicate_charge.exclusive_items", "duplicate_charge.over_price_cap",
         "item_substitution.wrong_gender"}
PHARMACY = {"pharmacy_card_skimming.offsite_burst", "pharmacy_card_skimming.hoarding",
            "pharmacy_card_skimming.impossible_travel"}


@SETTINGS
@given(inpatient_world())
def test_inpatient_rules_agree_with_the_oracle(world):
    e = oracle.Effective(world)
    check(world, INPATIENT, oracle.readmission(e) + oracle.idle_stay(e)
          + oracle.elsewhere_during_stay(e) + oracle.bed_days_beyond_stay(e))


@SETTINGS
@given(line_world())
def test_fee_line_rules_agree_with_the_oracle(world):
    e = oracle.Effective(world)
    check(world, LINES, oracle.repeated_line(e) + oracle.daily_cap(e)
          + oracle.exclusive_items(e) + oracle.over_price_cap(e) + oracle.wrong_gender(e))


@SETTINGS
@given(stock_world())
def test_billed_more_than_bought_agrees_with_the_oracle(world):
    e = oracle.Effective(world)
    result = check(world, {"item_substitution.billed_more_than_bought"},
                   oracle.billed_more_than_bought(e))
    assert result.outcomes[0].skipped == oracle.skipped_institutions(e)
    assert result.window == e.window


@SETTINGS
@given(growth_world())
def test_monthly_growth_agrees_with_the_oracle(world):
    e = oracle.Effective(world)
    check(world, {"key_item_growth.monthly_growth"},
          oracle.monthly_growth(e, world["watchlist"] + SHIPPED))


# At X1, four cards and a fifth exactly the window later: one burst; at X2, two bursts
# whose nearest cards are exactly the window apart, the window opening at the first of
# them no burst: two.
TWO_BURSTS = {"settlements": [
    *[S(f"A{k}", f"P{k}", "X1", "41", BASE + 10 * HOUR, insured="330100") for k in range(4)],
    S("A4", "P4", "X1", "41", BASE + 10 * HOUR + 10 * MINUTE, insured="330100"),
    *[S(f"C{k}", f"P{k}", "X2", "41", BASE + 10 * HOUR + k * MINUTE, insured="330100")
      for k in range(5)],
    *[S(f"D{k}", f"Q{k}", "X2", "41", BASE + 10 * HOUR + (14 + k) * MINUTE, insured="330100")
      for k in range(5)],
], "fee_lines": []}


@SETTINGS
@given(pharmacy_world())
@example(TWO_BURSTS)
def test_pharmacy_rules_agree_with_the_oracle(world):
    e = oracle.Effective(world)
    check(world, PHARMACY, oracle.offsite_burst(e) + oracle.hoarding(e)
          + oracle.impossible_travel(e))


def test_the_oracle_covers_every_sub_rule():
    """One hand-made world on which each of the 14 sub-rules fires at least once, so an
    oracle that finds nothing cannot pass by agreeing with an engine that finds nothing."""
    world = {
        "settlements": [
            S("A", "P1", "H1", "21", BASE, BASE + 4 * DAY, "J18.9", "300"),
            S("B", "P1", "H1", "21", BASE + 19 * DAY, BASE + 22 * DAY, "J18.0", "200"),
            S("O", "P1", "X1", "41", BASE + 20 * DAY + HOUR, fund="5"),
            *[S(f"Q{k}", f"Z{k}", "X2", "41", BASE + 2 * DAY + k * MINUTE, fund="1",
                insured="330100") for k in range(5)],
            *[S(f"H{k}", "P2", "X1", "41", BASE + k * 9 * DAY, fund="1") for k in range(4)],
            S("T", "P2", "X3", "11", BASE + 27 * DAY + 2 * HOUR, visit="440300", fund="9"),
            S("G", "P3", "H2", "11", BASE + 33 * DAY),
        ],
        "fee_lines": [
            F("L1", "A", "BED", BASE, "5", "40", cat="01"),
            F("L2", "B", "A", BASE + 19 * DAY, "4", "10.2"),
            F("L3", "B", "A", BASE + 19 * DAY, "4", "10.2"),
            F("L4", "B", "B", BASE + 19 * DAY, "1", "90"),
            *[F(f"M{k}", f"H{k}", "M1", BASE + k * 9 * DAY, "1", "3") for k in range(4)],
            F("W1", "G", "W1", BASE + 33 * DAY, "1", "12000"),
        ],
        "catalog": CATALOG,
        "persons": [dict(person_id="P1", gender="1", birth_date=dt.date(1970, 1, 1),
                         insured_region="350902")],
        "purchases": [dict(institution_id="H1", item_code="A", purchase_date=BASE.date(),
                           quantity=D(1))],
        "item_pairs": [dict(item_code_a="A", item_code_b="B", relation="exclusive")],
        "watchlist": WATCHLIST,
    }
    found = oracle.all_suspicions(world, WATCHLIST + SHIPPED)
    assert {f["rule_id"] for f in found} == set(FIELDS)
    check(world, set(FIELDS), found)


# ------------------------------------------------------------------ deviations ----

def _cards(*spec: tuple[str, str, dt.timedelta]) -> dict:
    """Off-site pharmacy (41) settlements at one pharmacy, ¥100 each."""
    return {"settlements": [S(sid, person, "X1", "41", BASE + 10 * HOUR + at,
                              insured="330100") for sid, person, at in spec],
            "fee_lines": []}


FOUR_AT_TEN = [(f"B{k}", f"P{k}", dt.timedelta(0)) for k in range(1, 5)]


@pytest.mark.parametrize("world, expected", [
    # Four cards at 10:00, the fifth at 10:10: five persons within 10 minutes.
    (_cards(*FOUR_AT_TEN, ("B5", "P5", 10 * MINUTE)),
     [("B1", ("B2", "B3", "B4", "B5"), D("500.00"))]),
    # ... and four more at 10:20: the burst of 10:10-10:20 shares B5, so they overlap.
    (_cards(*FOUR_AT_TEN, ("B5", "P5", 10 * MINUTE),
            *[(f"C{k}", f"P{k}", 20 * MINUTE) for k in range(1, 5)]),
     [("B1", ("B2", "B3", "B4", "B5", "C1", "C2", "C3", "C4"), D("900.00"))]),
], ids=["five-cards-last-at-exactly-10-min", "two-bursts-sharing-a-card"])
def test_a_burst_is_not_cut_at_a_gap_of_the_window(world, expected):
    e = oracle.Effective(world)
    assert [(r["settlement_id"], r["related_settlement_ids"], r["amount_at_risk"])
            for r in oracle.offsite_burst(e)] == expected  # the oracle reads the spec so
    result = run_engine(world, {"pharmacy_card_skimming.offsite_burst"})
    found = [(r["settlement_id"], tuple(r["related_settlement_ids"]), r["amount_at_risk"])
             for r in result.suspicions.sort("settlement_id").to_dicts()]
    # until offsite_burst 1.2: [("B1", ("B2", "B3", "B4"), 400.00), ("B5", (), 100.00)]
    assert found == expected


@pytest.mark.parametrize("rule", ["item_substitution.billed_more_than_bought",
                                  "duplicate_charge.daily_cap"])
def test_an_average_price_amount_is_exact_at_half_a_fen(rule):
    # 4 units billed for ¥700,634.42; 1 bought (billed_more_than_bought), or a daily cap
    # of 1 (daily_cap): 3 units too many at the average price.
    world = {"settlements": [S("S1", "P1", "H1", "11", BASE)],
             "fee_lines": [F("L1", "S1", "D1", BASE, "4", "175158.605", "700634.42")],
             "purchases": [dict(institution_id="H1", item_code="D1",
                                purchase_date=BASE.date(), quantity=D(1))],
             "catalog": [dict(CATALOG[2], item_code="D1", max_daily_quantity=D(1))]}
    e = oracle.Effective(world)
    expected = [r for r in oracle.billed_more_than_bought(e) + oracle.daily_cap(e)
                if r["rule_id"] == rule]
    assert [r["amount_at_risk"] for r in expected] == [D("525475.82")]
    check(world, {rule}, expected)  # until session 9, on DuckDB: 525475.81
