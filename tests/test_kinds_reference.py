"""Every detection kind against a small reference evaluator in plain Python.

The built-in rules are the specimens of the six kinds:

======================  ===============================================================
kind                    rules checked here
======================  ===============================================================
``sequence``            split_hospitalisation.readmission
``correlate``           bed_holding.elsewhere_during_stay,
                        pharmacy_card_skimming.impossible_travel,
                        duplicate_charge.exclusive_items
``window``              pharmacy_card_skimming.offsite_burst (minutes, distinct persons,
                        anchor first), pharmacy_card_skimming.hoarding (days, count,
                        anchor last)
``aggregate``           duplicate_charge.repeated_line, duplicate_charge.daily_cap,
                        bed_holding.idle_stay, item_substitution.billed_more_than_bought
``period_change``       key_item_growth.monthly_growth (site ``watchlist`` by code,
                        code prefix ``W*`` and generic name)
``filter``              duplicate_charge.over_price_cap
======================  ===============================================================

Each reference (``ref_*``) is written from the text of
``shared/spec/rule-families.md`` and its "Precise readings", not from the compiled
SQL: loops and dicts over the given rows, money in exact ``Decimal``. Hypothesis
generates small tables (two or three persons / institutions, times on a coarse grid
so that exactly 15 days, exactly 10 minutes, exactly 3 hours, exactly 29 days, ×1.5
and +¥10,000 come up often, reversal rows and an orphan reversal in most examples);
the engine runs the one rule through ``screen()`` on a fresh DuckDB engine, and the
multisets of (settlement_id, related_settlement_ids, item_code, institution_id,
person_id, period_start, amount_at_risk) must be equal.

Readings every reference applies:

- A reversal row (``reversed_settlement_id`` set) and the settlement it names take
  part in no rule, and neither do their fee lines; an orphan reversal (naming no
  settlement) is itself removed. The generated reversal rows carry copies of the
  reversed settlement's lines, so a leak shows up as a wrong sum.
- Dates are calendar dates of the timestamps; "within N minutes" is last − first
  ≤ N minutes; "within N days" is last date − first date ≤ N − 1.
- ``amount_at_risk`` = max(x, 0) rounded half-up to 2 decimals, computed exactly.
- Order "in time" is (timestamp, settlement_id): equal times are broken by the id.
- The analysis window is the span of charge dates of the effective fee lines.

Kind-specific readings:

- stays are the effective settlements with ``medical_type`` 21 and a discharge time.
- sequence: each inpatient admission (discharged or not) is paired with the nearest
  earlier one of the same person at the same institution, "earlier" meaning earlier
  ``admit_time`` (ties: smaller id), which must have been discharged; a chain of three
  flags the second and the third. ICD-10 categories compare in upper case.
- a settlement's fund amount at risk is at most its ``total_amount`` (the money billed).
- window, windows: from each event's time t, the events in [t, t + span] (minutes:
  t + N minutes; days: dates t … t + N − 1) form a window; it qualifies when
  ``having`` holds on it (≥ 5 distinct persons; ≥ 4 purchases). Every event of a
  qualifying window is a member — also a repeat card of a person already counted.
- window, merging: the engine orders the members of a partition in time and starts a
  new suspicion where the gap to the previous member is at least the window's length
  (``__gap >= length`` in compiler.window), unless the qualifying window opening at
  the previous member holds both (a gap of exactly 10 minutes inside one burst):
  "members closer than the window to each other are merged", read literally, so
  consecutive members less than ``window_minutes`` apart (burst), or whose dates are
  less than ``window_days`` apart (hoarding), are one suspicion — even when their
  qualifying windows do not themselves overlap; two bursts exactly 10 minutes apart are
  two (see ``test_burst_members_exactly_one_window_apart_are_two_suspicions``), but
  four cards and a fifth exactly 10 minutes later are one burst.
- burst: settlement_id = the first member in time, related = the rest, amount = the
  sum of all members' fund amounts at risk, person_id empty.
- hoarding: one purchase = one (pharmacy settlement, item); its time is the
  settlement's ``admit_time``; settlement_id = the last purchase of the merged run,
  related = the others, amount = every purchase but the first (first and last in time,
  ties by id); institution = that of the last purchase.
- exclusive items: per (settlement, day), every listed exclusive pair billed that day
  flags its cheaper item (equal amounts: the smaller code, as the rule documents);
  amount = that item's amount that day, once per item and day.
- daily cap / billed more than bought: "average billed unit price" = amount ÷
  quantity. The generated lines give each item one price, so that quotient is exact
  and the excess times it a whole number of fen; exact half fen after a division are
  pinned by ``test_*_exact_half_fen_rounds_half_up``.
- monthly growth: a watch-list entry (the shipped lists and the data's) selects
  *items*; the billed amount of a month is every line of the item, whatever name it
  was billed under.

Engine discrepancies this file found (see the tests named): same-day purchases counted
twice by the window kind (fixed in 55a93e4), window members ordered by date instead of
time, watch-list matching by (code, name) pairs, a DOUBLE quotient rounded twice (all
fixed in 76ad4aa); an exact half fen after a division at amounts of ¥100,000 and more
(fixed in session 9: quotients are decimals of 6 places) and a burst cut where a member
is exactly the window after the one before (found by ``tests/test_oracle.py``).

The shipped 张掖 watch list is loaded once per module instead of once per
``screen()`` (it is active in every run; the generated item names are ASCII and
match none of its Chinese generic names).
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import json
from collections import Counter, defaultdict
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path

import polars as pl
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fraudscreen.engine_duckdb as engine_duckdb
from fraudscreen import reference as shipped_reference
from fraudscreen.ruleset import RuleSet
from fraudscreen.screen import make_engine, screen
from fraudscreen.testing import table
from fuzz import examples

RULES = {r.id: r for r in RuleSet.load().rules}

READMISSION = "split_hospitalisation.readmission"
ELSEWHERE = "bed_holding.elsewhere_during_stay"
TRAVEL = "pharmacy_card_skimming.impossible_travel"
EXCLUSIVE = "duplicate_charge.exclusive_items"
BURST = "pharmacy_card_skimming.offsite_burst"
HOARDING = "pharmacy_card_skimming.hoarding"
REPEATED = "duplicate_charge.repeated_line"
DAILY_CAP = "duplicate_charge.daily_cap"
IDLE = "bed_holding.idle_stay"
BOUGHT = "item_substitution.billed_more_than_bought"
GROWTH = "key_item_growth.monthly_growth"
PRICE_CAP = "duplicate_charge.over_price_cap"

CENT = Decimal("0.01")
PROJECT = Path(__file__).resolve().parents[1]
SHIPPED_PAIRS = PROJECT / "rules" / "reference" / "item_pairs.csv"


def _shipped_watchlist_entries() -> list[dict]:
    """The active lists under drug_watchlists/, read straight from their YAML."""
    entries = []
    for path in sorted((PROJECT / "drug_watchlists").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not doc.get("active", True):
            continue
        for entry in doc.get("entries") or []:
            entries += [{"item_code": str(c), "generic_name": None}
                        for c in entry.get("item_codes") or []]
            entries += [{"item_code": None, "generic_name": str(n)}
                        for n in entry.get("generic_names") or []]
    return entries


SHIPPED_WATCHLIST = _shipped_watchlist_entries()
D0 = dt.datetime(2024, 3, 1)  # day 0 of every generated table


# Examples per rule: about 45 per kind, the whole file well under a minute on 2 cores.
# FRAUDSCREEN_FUZZ_SCALE=10 multiplies them for a deeper search (tests/fuzz.py).
def fuzz(n: int):
    return settings(max_examples=examples(n), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module", autouse=True)
def _shipped_watchlist_once():
    """Parse the shipped watch-list YAML once for the module, not once per screen()."""
    once = functools.cache(lambda: shipped_reference.shipped_watchlist(None))

    def cached(extra=None):
        return shipped_reference.shipped_watchlist(extra) if extra else once()

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine_duckdb, "shipped_watchlist", cached, raising=False)
        yield


# ---------------------------------------------------------------------------------------
# rows, the engine, the comparison
# ---------------------------------------------------------------------------------------

def D(x) -> Decimal:
    return Decimal(str(x))


def at(day: int, hour: int = 9, minute: int = 0) -> dt.datetime:
    return D0 + dt.timedelta(days=day, hours=hour, minutes=minute)


def settlement(sid, person, inst, mtype, admit, discharge=None, *, dx=None, fund=0,
               total=None, visit="350902", insured="350902", reversed_of=None) -> dict:
    return {"settlement_id": sid, "person_id": person, "institution_id": inst,
            "medical_type": mtype, "admit_time": admit, "discharge_time": discharge,
            "diagnosis_code": dx, "fund_amount": D(fund),
            "total_amount": D(fund if total is None else total), "visit_region": visit,
            "insured_region": insured, "reversed_settlement_id": reversed_of}


def fund_at_risk(s: dict) -> Decimal:
    """A settlement's fund amount, never more than the money billed (its total)."""
    return min(s["fund_amount"], s["total_amount"])


def line(lid, sid, item, when, qty=1, price=0, amount=None, cat="09", name=None) -> dict:
    qty, price = D(qty), D(price)
    if amount is None:
        amount = (qty * price).quantize(CENT, ROUND_HALF_UP)
    return {"line_id": lid, "settlement_id": sid, "item_code": item,
            "item_name": name or item, "fee_category": cat, "charge_time": when,
            "quantity": qty, "unit_price": price, "amount": D(amount)}


def hit(settlement_id=None, related=(), item_code=None, institution_id=None, person_id=None,
        period_start=None, amount=0) -> tuple:
    with localcontext() as ctx:
        ctx.prec = 60
        amount = max(D(amount), Decimal(0)).quantize(CENT, ROUND_HALF_UP)
    return (settlement_id, tuple(sorted(related)), item_code, institution_id, person_id,
            period_start, amount)


def screened(rule_id: str, given: dict[str, list[dict]]) -> pl.DataFrame:
    """The rule's suspicions on DuckDB (it must have run)."""
    tables = {name: table(name, rows) for name, rows in given.items()}
    for required in ("settlements", "fee_lines"):
        tables.setdefault(required, table(required, []))
    eng = make_engine("duckdb")
    try:
        result = screen(tables, RuleSet([RULES[rule_id]]), eng)
    finally:
        eng.close()
    (outcome,) = result.outcomes
    assert outcome.status == "ran", f"{rule_id} {outcome.status}: {outcome.reason}"
    return result.suspicions


def engine_hits(rule_id: str, given: dict[str, list[dict]]) -> Counter:
    result = screened(rule_id, given)
    return Counter(
        hit(r["settlement_id"], r["related_settlement_ids"] or (), r["item_code"],
            r["institution_id"], r["person_id"], r["period_start"], r["amount_at_risk"])
        for r in result.iter_rows(named=True))


def check(rule_id: str, given: dict[str, list[dict]], reference, expected=None) -> None:
    """Engine == reference (== ``expected`` when a test spells it out)."""
    want = Counter(reference(given))
    if expected is not None:
        assert want == Counter(expected), f"reference evaluator: {sorted(want)}"
    got = engine_hits(rule_id, given)
    missing, extra = want - got, got - want
    assert not missing and not extra, (
        f"{rule_id}\n  missing (reference only): {sorted(missing, key=repr)}"
        f"\n  unexpected (engine only): {sorted(extra, key=repr)}")


# ---------------------------------------------------------------------------------------
# what every rule sees: effective settlements and their fee lines
# ---------------------------------------------------------------------------------------

def effective(given) -> dict[str, dict]:
    """Settlements minus reversal rows and the settlements they name."""
    rows = given.get("settlements", [])
    gone = set()
    for s in rows:
        if s["reversed_settlement_id"] is not None:
            gone |= {s["settlement_id"], s["reversed_settlement_id"]}
    return {s["settlement_id"]: s for s in rows if s["settlement_id"] not in gone}


def effective_lines(given) -> list[dict]:
    setts = effective(given)
    out = []
    for f in given.get("fee_lines", []):
        s = setts.get(f["settlement_id"])
        if s is not None:
            out.append({**f, "person_id": s["person_id"], "institution_id": s["institution_id"],
                        "medical_type": s["medical_type"], "admit_time": s["admit_time"],
                        "charge_date": f["charge_time"].date()})
    return out


def inpatient(given) -> list[dict]:
    return [s for s in effective(given).values() if s["medical_type"] == "21"]


def stays(given) -> list[dict]:
    return [s for s in inpatient(given) if s["discharge_time"] is not None]


def window_of(lines) -> tuple[dt.date, dt.date] | None:
    dates = [f["charge_date"] for f in lines]
    return (min(dates), max(dates)) if dates else None


def divide(a: Decimal, b: Decimal) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 60
        return a / b


# ---------------------------------------------------------------------------------------
# reference evaluators, one per rule, from the spec text
# ---------------------------------------------------------------------------------------

PLANNED = {"Z51", "Z49", "O80", "O81", "O82", "O83", "O84"}


def ref_readmission(given, max_gap_days=15):
    by_place = defaultdict(list)
    for s in inpatient(given):  # a later admission need not be discharged yet
        by_place[s["person_id"], s["institution_id"]].append(s)
    out = []
    for group in by_place.values():
        group.sort(key=lambda s: (s["admit_time"], s["settlement_id"]))
        for earlier, later in zip(group, group[1:], strict=False):  # nearest earlier stay
            if earlier["discharge_time"] is None:
                continue
            gap = (later["admit_time"].date() - earlier["discharge_time"].date()).days
            cat_e = earlier["diagnosis_code"] and earlier["diagnosis_code"][:3].upper()
            cat_l = later["diagnosis_code"] and later["diagnosis_code"][:3].upper()
            if (0 <= gap <= max_gap_days and cat_l and cat_l == cat_e
                    and cat_l not in PLANNED and cat_e not in PLANNED):
                out.append(hit(later["settlement_id"], [earlier["settlement_id"]], None,
                               later["institution_id"], later["person_id"], None,
                               fund_at_risk(later)))
    return out


def ref_elsewhere(given):
    everyone = list(effective(given).values())
    out = []
    for stay in stays(given):
        admit, discharge = stay["admit_time"].date(), stay["discharge_time"].date()
        others = [o["settlement_id"] for o in everyone
                  if o["person_id"] == stay["person_id"]
                  and o["medical_type"] in {"11", "14", "41"}
                  and o["institution_id"] != stay["institution_id"]
                  and admit < o["admit_time"].date() < discharge]
        if others:
            out.append(hit(stay["settlement_id"], others, None, stay["institution_id"],
                           stay["person_id"], None, fund_at_risk(stay)))
    return out


def ref_travel(given, min_hours=3):
    everyone = list(effective(given).values())
    out = []
    for s in everyone:
        earlier = [o["settlement_id"] for o in everyone
                   if o["person_id"] == s["person_id"]
                   and o["visit_region"][:4] != s["visit_region"][:4]
                   and (o["admit_time"], o["settlement_id"]) < (s["admit_time"], s["settlement_id"])
                   and s["admit_time"] - o["admit_time"] < dt.timedelta(hours=min_hours)]
        if earlier:
            out.append(hit(s["settlement_id"], earlier, None, s["institution_id"],
                           s["person_id"], None, fund_at_risk(s)))
    return out


def ref_exclusive(given):
    day_amount = defaultdict(Decimal)
    who = {}
    for f in effective_lines(given):
        k = (f["settlement_id"], f["item_code"], f["charge_date"])
        day_amount[k] += f["amount"]
        who[f["settlement_id"]] = (f["person_id"], f["institution_id"])
    if "item_pairs" in given:  # the data's table replaces the shipped default
        listed = given["item_pairs"]
    else:
        with SHIPPED_PAIRS.open(encoding="utf-8", newline="") as f:
            listed = list(csv.DictReader(f))
    pairs = {frozenset((p["item_code_a"], p["item_code_b"]))
             for p in listed
             if p["relation"] == "exclusive" and p["item_code_a"] != p["item_code_b"]}
    flagged = set()
    for (sid, item, day), amount in day_amount.items():
        for (sid2, item2, day2), amount2 in day_amount.items():
            if (sid2, day2) == (sid, day) and frozenset((item, item2)) in pairs \
                    and (amount, item) < (amount2, item2):  # the cheaper one
                flagged.add((sid, item, day))
    return [hit(sid, [], item, who[sid][1], who[sid][0], day, day_amount[sid, item, day])
            for sid, item, day in flagged]


def merged_runs(events, span_ok, qualifies, gap_ok):
    """Members of qualifying windows, in time order, cut where the gap is too big,
    but never inside one qualifying window.

    ``events`` are sorted in time; a window is every event from one event's time
    to the end of the span (a set within the span always fits one of these)."""
    members = set()
    opens = {}  # event -> the qualifying window that opens at its time
    for first in events:
        window = [e for e in events if span_ok(first, e)]
        if qualifies(window):
            members |= {id(e) for e in window}
            opens[id(first)] = {id(e) for e in window}
    ordered = [e for e in events if id(e) in members]
    runs: list[list] = []
    for e in ordered:
        before = runs[-1][-1] if runs else None
        if runs and (gap_ok(before, e) or id(e) in opens.get(id(before), ())):
            runs[-1].append(e)
        else:
            runs.append([e])
    return runs


def ref_burst(given, min_cards=5, window_minutes=10):
    width = dt.timedelta(minutes=window_minutes)
    by_pharmacy = defaultdict(list)
    for s in effective(given).values():
        if s["medical_type"] == "41" and s["insured_region"][:4] != s["visit_region"][:4]:
            by_pharmacy[s["institution_id"]].append(s)
    out = []
    for pharmacy, events in by_pharmacy.items():
        events.sort(key=lambda s: (s["admit_time"], s["settlement_id"]))
        runs = merged_runs(
            events,
            span_ok=lambda a, b: a["admit_time"] <= b["admit_time"] <= a["admit_time"] + width,
            qualifies=lambda w: len({s["person_id"] for s in w}) >= min_cards,
            gap_ok=lambda a, b: b["admit_time"] - a["admit_time"] < width)  # closer than
        for run in runs:
            out.append(hit(run[0]["settlement_id"], [s["settlement_id"] for s in run[1:]],
                           None, pharmacy, None, None,
                           sum((fund_at_risk(s) for s in run), Decimal(0))))
    return out


def ref_hoarding(given, min_purchases=4, window_days=30):
    purchases = {}
    for f in effective_lines(given):
        if f["medical_type"] != "41":
            continue
        k = (f["settlement_id"], f["item_code"])  # two lines, one purchase
        p = purchases.setdefault(k, {"sid": f["settlement_id"], "item": f["item_code"],
                                     "person": f["person_id"], "inst": f["institution_id"],
                                     "time": f["admit_time"], "amount": Decimal(0)})
        p["amount"] += f["amount"]
    by_key = defaultdict(list)
    for p in purchases.values():
        by_key[p["person"], p["item"]].append(p)

    def days(a, b) -> int:
        return (b["time"].date() - a["time"].date()).days

    out = []
    for (person, item), events in by_key.items():
        events.sort(key=lambda p: (p["time"], p["sid"]))
        runs = merged_runs(
            events,
            span_ok=lambda a, b: 0 <= days(a, b) <= window_days - 1,
            qualifies=lambda w: len(w) >= min_purchases,
            gap_ok=lambda a, b: days(a, b) <= window_days - 1)
        for run in runs:
            last = run[-1]
            out.append(hit(last["sid"], [p["sid"] for p in run[:-1]], item, last["inst"],
                           person, None, sum((p["amount"] for p in run[1:]), Decimal(0))))
    return out


def ref_repeated(given):
    groups = defaultdict(list)
    for f in effective_lines(given):
        groups[f["settlement_id"], f["item_code"], f["charge_time"], f["quantity"],
               f["unit_price"]].append(f)
    out = []
    for (sid, item, *_), copies in groups.items():
        if len(copies) >= 2:
            first = min(copies, key=lambda f: f["line_id"])
            beyond = sum((f["amount"] for f in copies if f is not first), Decimal(0))
            out.append(hit(sid, [], item, first["institution_id"], first["person_id"], None,
                           beyond))
    return out


def ref_daily_cap(given):
    caps = {c["item_code"]: c.get("max_daily_quantity") for c in given.get("catalog", [])}
    days = defaultdict(lambda: [Decimal(0), Decimal(0), None])
    for f in effective_lines(given):
        d = days[f["settlement_id"], f["item_code"], f["charge_date"]]
        d[0] += f["quantity"]
        d[1] += f["amount"]
        d[2] = f
    out = []
    for (sid, item, day), (qty, amount, f) in days.items():
        cap = caps.get(item)
        if cap is not None and qty > cap:
            at_risk = min(divide((qty - cap) * amount, qty), amount)
            out.append(hit(sid, [], item, f["institution_id"], f["person_id"], day, at_risk))
    return out


BASIC = {"01", "02", "07"}


def ref_idle(given, min_los=3, min_idle_days=3, min_idle_share=Decimal("0.5")):
    lines = effective_lines(given)
    out = []
    for s in stays(given):
        admit, discharge = s["admit_time"].date(), s["discharge_time"].date()
        los = (discharge - admit).days
        if los < min_los:
            continue
        idle_days, idle_amount = 0, Decimal(0)
        for k in range(los):  # admit date inclusive, discharge date exclusive
            day = admit + dt.timedelta(days=k)
            of_day = [f for f in lines
                      if f["settlement_id"] == s["settlement_id"] and f["charge_date"] == day]
            if all(f["fee_category"] in BASIC for f in of_day):
                idle_days += 1
                idle_amount += sum((f["amount"] for f in of_day), Decimal(0))
        if idle_days >= min_idle_days and idle_days >= los * min_idle_share:
            out.append(hit(s["settlement_id"], [], None, s["institution_id"], s["person_id"],
                           None, idle_amount))
    return out


def ref_bought(given, purchase_lookback_days=30, tolerance=Decimal("0.10"),
               categories=("08", "09", "10", "11")):
    lines = effective_lines(given)
    window = window_of(lines)
    if window is None:
        return []
    start, end = window
    purchases = given.get("purchases", [])
    keeps_stock = {p["institution_id"] for p in purchases}
    billed = defaultdict(lambda: [Decimal(0), Decimal(0)])
    for f in lines:
        if f["fee_category"] in categories:
            b = billed[f["institution_id"], f["item_code"]]
            b[0] += f["quantity"]
            b[1] += f["amount"]
    out = []
    for (inst, item), (qty, amount) in billed.items():
        if inst not in keeps_stock:
            continue  # not judged: its stock data is missing, not zero
        since = start - dt.timedelta(days=purchase_lookback_days)
        bought = sum((p["quantity"] for p in purchases
                      if p["institution_id"] == inst and p["item_code"] == item
                      and since <= p["purchase_date"] <= end), Decimal(0))
        if qty > bought * (1 + tolerance):
            at_risk = min(divide((qty - bought) * amount, qty), amount)
            out.append(hit(None, [], item, inst, None, start, at_risk))
    return out


def month_of(day: dt.date) -> dt.date:
    return day.replace(day=1)


def previous_month(month: dt.date) -> dt.date:
    return (month - dt.timedelta(days=1)).replace(day=1)


def ref_growth(given, growth_ratio=Decimal("1.5"), min_increase=Decimal("10000")):
    lines = effective_lines(given)
    window = window_of(lines)
    if window is None:
        return []
    first_month = month_of(window[0])
    entries = SHIPPED_WATCHLIST + given.get("watchlist", [])  # shipped lists are active
    generic = {c["item_code"]: c.get("generic_name") for c in given.get("catalog", [])}
    names = defaultdict(set)
    for f in lines:
        names[f["item_code"]].add(f["item_name"] or "")  # a NULL name contains nothing

    def watched(item: str) -> bool:
        for w in entries:
            code, name = w.get("item_code"), w.get("generic_name")
            if code is not None and code.endswith("*") and item.startswith(code.rstrip("*")):
                return True
            if code is not None and not code.endswith("*") and item == code:
                return True
            if name is not None and (generic.get(item) == name
                                     or any(name in n for n in names[item])):
                return True
        return False

    billed = defaultdict(Decimal)
    for f in lines:
        if watched(f["item_code"]):
            billed[f["institution_id"], f["item_code"], month_of(f["charge_date"])] += f["amount"]
    out = []
    for (inst, item, month), value in billed.items():
        prev = previous_month(month)
        if prev < first_month:
            continue
        before = billed.get((inst, item, prev), Decimal(0))
        if value >= before * growth_ratio and value - before >= min_increase:
            out.append(hit(None, [], item, inst, None, month, min(value - before, value)))
    return out


def ref_price_cap(given, price_tolerance=Decimal("0.01")):
    caps = {c["item_code"]: c.get("price_cap") for c in given.get("catalog", [])}
    out = []
    for f in effective_lines(given):
        cap = caps.get(f["item_code"])
        if cap is not None and f["unit_price"] > cap * (1 + price_tolerance):
            at_risk = min((f["unit_price"] - cap) * f["quantity"], f["amount"])
            out.append(hit(f["settlement_id"], [], f["item_code"], f["institution_id"],
                           f["person_id"], None, at_risk))
    return out


REFERENCES = {
    READMISSION: ref_readmission, ELSEWHERE: ref_elsewhere, TRAVEL: ref_travel,
    EXCLUSIVE: ref_exclusive, BURST: ref_burst, HOARDING: ref_hoarding,
    REPEATED: ref_repeated, DAILY_CAP: ref_daily_cap, IDLE: ref_idle, BOUGHT: ref_bought,
    GROWTH: ref_growth, PRICE_CAP: ref_price_cap,
}


# ---------------------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------------------

@st.composite
def with_reversals(draw, setts: list[dict], lines: list[dict]):
    """Reverse up to two settlements (at most half; the reversal rows carry negated
    copies of their lines) and sometimes add an orphan reversal: a copy of a
    settlement, lines and all, that names no settlement."""
    setts, lines = list(setts), list(lines)
    if not setts:
        return setts, lines
    chosen = draw(st.sets(st.sampled_from(range(len(setts))),
                          max_size=min(2, len(setts) // 2)))  # leave most of them
    for i in sorted(chosen):
        s = setts[i]
        rid = s["settlement_id"] + "R"
        setts.append({**s, "settlement_id": rid, "reversed_settlement_id": s["settlement_id"],
                      "fund_amount": -s["fund_amount"], "total_amount": -s["total_amount"]})
        lines += [{**f, "line_id": f["line_id"] + "R", "settlement_id": rid,
                   "quantity": -f["quantity"], "amount": -f["amount"]}
                  for f in list(lines) if f["settlement_id"] == s["settlement_id"]]
    if draw(st.booleans()):
        s = setts[draw(st.integers(0, len(setts) - 1))]
        if s["reversed_settlement_id"] is None:
            oid = "X" + s["settlement_id"]
            setts.append({**s, "settlement_id": oid, "reversed_settlement_id": "GHOST"})
            lines += [{**f, "line_id": "X" + f["line_id"], "settlement_id": oid}
                      for f in list(lines) if f["settlement_id"] == s["settlement_id"]]
    return setts, lines


def ids(draw, n: int, prefix: str = "S", pad: int = 2) -> list[str]:
    """n ids in a drawn order, so that id order and row order disagree."""
    return [f"{prefix}{k:0{pad}d}" for k in draw(st.permutations(range(n)))]


FUND = st.sampled_from([0, 100, "2500.50", "33.33"])
TOTAL = st.sampled_from([None, None, None, 50])  # None: the fund amount; 50 may be less
DX = ["J18.900", "J18.000", "J18.900", "j18.100", "K35.800", "Z51.100", "z51.100", "O80.000",
      None]


@st.composite
def readmission_data(draw):
    chains = draw(st.lists(st.tuples(st.sampled_from(["A", "B"]), st.sampled_from(["H1", "H2"]),
                                     st.integers(0, 20)), min_size=1, max_size=3))
    raw = []
    for person, inst, start in chains:
        prev = None
        for _ in range(draw(st.integers(2, 4))):
            if prev is not None and draw(st.integers(0, 5)) == 0:
                admit = prev[0]  # the same admit time as the previous stay
            else:
                day = start if prev is None else (prev[1].date() - D0.date()).days + draw(
                    st.sampled_from([-2, -1, 0, 1, 7, 14, 15, 16, 30]))
                admit = at(day, draw(st.sampled_from([0, 8, 23])))
            los = draw(st.sampled_from([0, 1, 3]))
            discharge = at((admit.date() - D0.date()).days + los,
                           draw(st.sampled_from([0, 10, 23])))
            mtype = draw(st.sampled_from(["21", "21", "21", "11"]))
            discharged = mtype == "21" and draw(st.integers(0, 5)) > 0  # or still in
            raw.append((person, inst, mtype, admit, discharge if discharged else None,
                        draw(st.sampled_from(DX)), draw(FUND), draw(TOTAL)))
            prev = (admit, discharge)
    setts = [settlement(sid, p, i, m, a, d, dx=dx, fund=f, total=t)
             for sid, (p, i, m, a, d, dx, f, t) in zip(ids(draw, len(raw)), raw, strict=True)]
    setts, lines = draw(with_reversals(setts, []))
    return {"settlements": setts}


@st.composite
def elsewhere_data(draw):
    raw = []
    for person, inst, day, los in draw(st.lists(st.tuples(
            st.sampled_from(["A", "B"]), st.sampled_from(["H1", "H2"]), st.integers(0, 4),
            st.sampled_from([0, 1, 2, 3, 5, 8])), min_size=1, max_size=3)):
        raw.append((person, inst, "21", at(day, draw(st.sampled_from([0, 9, 23]))),
                    at(day + los, draw(st.sampled_from([0, 10, 23])))))
    for person, inst, mtype, day, hour in draw(st.lists(st.tuples(
            st.sampled_from(["A", "A", "B"]), st.sampled_from(["H1", "H2", "P1"]),
            st.sampled_from(["11", "14", "41", "21", "11"]), st.integers(0, 9),
            st.sampled_from([0, 9, 23])), min_size=2, max_size=8)):
        raw.append((person, inst, mtype, at(day, hour),
                    at(day + 1, hour) if mtype == "21" else None))
    setts = [settlement(sid, p, i, m, a, d, fund=draw(FUND), total=draw(TOTAL))
             for sid, (p, i, m, a, d) in zip(ids(draw, len(raw)), raw, strict=True)]
    setts, _ = draw(with_reversals(setts, []))
    return {"settlements": setts}


MINUTES = [0, 60, 120, 179, 180, 181, 300, 24 * 60, 24 * 60 + 179]
REGIONS = ["350902", "350921", "350102", "330100"]  # 3509, 3509, 3501, 3301


@st.composite
def travel_data(draw):
    raw = draw(st.lists(st.tuples(st.sampled_from(["A", "A", "B"]), st.sampled_from(MINUTES),
                                  st.sampled_from(REGIONS), st.sampled_from(["11", "21", "41"]),
                                  FUND), min_size=1, max_size=7))
    setts = [settlement(sid, p, "H1" if m != "41" else "P1", m, at(0, 8, minute), None,
                        fund=f, total=draw(TOTAL), visit=region)
             for sid, (p, minute, region, m, f) in zip(ids(draw, len(raw)), raw, strict=True)]
    setts, _ = draw(with_reversals(setts, []))
    return {"settlements": setts}


NURSING = ["N1", "N2", "N3"]


@st.composite
def exclusive_data(draw):
    sids = ids(draw, draw(st.integers(1, 3)))
    setts, lines = [], []
    for sid in sids:
        setts.append(settlement(sid, draw(st.sampled_from(["A", "B"])), "H1",
                                draw(st.sampled_from(["21", "11"])), at(0, 8)))
        lines += [line(f"{sid}L{k}", sid, item, when, amount=amount)
                  for k, (item, when, amount) in enumerate(draw(st.lists(st.tuples(
                      st.sampled_from(NURSING),
                      st.sampled_from([at(0, 8), at(0, 23, 59), at(0, 12), at(1, 0)]),
                      st.sampled_from([0, 10, 18, 30, "18.00"])), min_size=2, max_size=5)))]
    pairs = [{"item_code_a": a, "item_code_b": b, "relation": rel}
             for a, b, rel in draw(st.lists(st.tuples(
                 st.sampled_from(NURSING), st.sampled_from(NURSING),
                 st.sampled_from(["exclusive", "exclusive", "inclusive"])),
                 min_size=1, max_size=4))
             if a != b]
    setts, lines = draw(with_reversals(setts, lines))
    return {"settlements": setts, "fee_lines": lines, "item_pairs": pairs}


@st.composite
def burst_data(draw):
    """Clusters of card swipes around a few start minutes, so that five distinct
    off-site persons within 10 minutes (and near misses) are common."""
    raw = []
    for pharmacy, centre in draw(st.lists(st.tuples(
            st.sampled_from(["P1", "P1", "P2"]), st.sampled_from([0, 5, 10, 11, 14, 20, 30])),
            min_size=1, max_size=3)):
        persons = draw(st.permutations("ABCDEFG"))[:draw(st.integers(3, 7))]
        for person in persons + draw(st.lists(st.sampled_from("ABCDEFG"), max_size=2)):
            raw.append((pharmacy, person, centre + draw(st.sampled_from([0, 1, 2, 5, 9, 10])),
                        draw(st.sampled_from(["330100"] * 4 + ["350100", "350902"])),
                        draw(st.sampled_from(["41"] * 9 + ["11"])),
                        draw(st.sampled_from([0, 10, "25.50"]))))
    setts = [settlement(sid, person, pharmacy, m, at(0, 10, minute), fund=fund,
                        total=draw(TOTAL), insured=insured)
             for sid, (pharmacy, person, minute, insured, m, fund)
             in zip(ids(draw, len(raw), "B"), raw, strict=True)]
    setts, _ = draw(with_reversals(setts, []))
    return {"settlements": setts}


HOARD_DAYS = [0, 1, 10, 20, 28, 29, 30, 31, 40, 58, 59]


@st.composite
def hoarding_data(draw):
    raw = draw(st.lists(st.tuples(
        st.sampled_from(["A", "A", "A", "B"]), st.sampled_from(HOARD_DAYS),
        st.sampled_from([0, 9, 23]),
        st.sampled_from(["41", "41", "41", "11"]), st.sampled_from(["P1", "P2", "H1"]),
        st.lists(st.tuples(st.sampled_from(["X", "X", "Y"]), st.sampled_from([10, "20.50", 100])),
                 min_size=1, max_size=2)),
        min_size=4, max_size=12))
    setts, lines = [], []
    for sid, (person, day, hour, m, inst, items) in zip(ids(draw, len(raw), "D"), raw,
                                                        strict=True):
        setts.append(settlement(sid, person, inst, m, at(day, hour)))
        lines += [line(f"{sid}L{j}", sid, item, at(day, hour), amount=amount)
                  for j, (item, amount) in enumerate(items)]
    setts, lines = draw(with_reversals(setts, lines))
    return {"settlements": setts, "fee_lines": lines}


WHEN = [at(0, 9), at(0, 9), at(0, 21), at(1, 0), at(1, 9)]


ITEM_PRICE = {"X": 10, "Y": "15.5", "Z": "3.3"}


@st.composite
def fee_line_data(draw, vary_amounts: bool):
    """Lines of up to three settlements, many exact copies; catalog daily caps.

    Without ``vary_amounts`` (daily cap) every line of an item has the item's price and
    amount = quantity × price, so the day's average price is that price and the excess
    (a multiple of 0.5) times it is a whole number of fen: no exact half fen, which the
    engine reads back from a double (see test_daily_cap_exact_half_fen_rounds_half_up)."""
    n = draw(st.integers(1, 3))
    sids = ids(draw, n)
    setts = [settlement(sid, "P" + sid, draw(st.sampled_from(["H1", "H2"])), "21", at(0, 8),
                        at(3, 8)) for sid in sids]
    specs = draw(st.lists(st.tuples(
        st.integers(0, n - 1), st.sampled_from(["X", "Y", "Z"]), st.sampled_from(WHEN),
        st.sampled_from(["0.5", 1, 2, 3]), st.sampled_from([10, "15.5", "3.3", None]),
        st.lists(st.sampled_from([None, None, "1.00", "99.99"]) if vary_amounts
                 else st.just(None), min_size=1, max_size=3)),
        min_size=1, max_size=6))
    raw = [(i, item, when, qty, ITEM_PRICE[item] if price is None or not vary_amounts
            else price, amount)
           for i, item, when, qty, price, copies in specs for amount in copies]
    lines = [line(lid, sids[i], item, when, qty, price, amount)
             for lid, (i, item, when, qty, price, amount)
             in zip(ids(draw, len(raw), "L", pad=1), raw, strict=True)]  # "L10" < "L2"
    catalog = [{"item_code": item, "max_daily_quantity": None if cap is None else D(cap)}
               for item in ["X", "Y", "Z"]
               if (cap := draw(st.sampled_from(["absent", None, 0, 1, 2, 3, 4]))) != "absent"]
    setts, lines = draw(with_reversals(setts, lines))
    return {"settlements": setts, "fee_lines": lines, "catalog": catalog}


@st.composite
def idle_data(draw):
    setts, lines = [], []
    stays_ = draw(st.lists(st.tuples(st.sampled_from(["21", "21", "21", "11"]),
                                     st.sampled_from([0, 9, 23]), st.integers(0, 7), FUND),
                           min_size=1, max_size=3))
    sids = ids(draw, len(stays_))
    for sid, (mtype, hour, los, fund) in zip(sids, stays_, strict=True):
        setts.append(settlement(sid, "P" + sid, "H1", mtype, at(0, hour), at(los, 10), fund=fund))
        for k, (day, cat, amount, hour2) in enumerate(draw(st.lists(st.tuples(
                st.integers(-1, los), st.sampled_from(["01", "02", "07", "01", "09", "03"]),
                st.sampled_from([0, 20, 50, "0.05"]), st.sampled_from([0, 12, 23])),
                max_size=8))):
            lines.append(line(f"{sid}L{k}", sid, "I" + cat, at(day, hour2), amount=amount,
                              cat=cat))
    setts, lines = draw(with_reversals(setts, lines))
    return {"settlements": setts, "fee_lines": lines}


@st.composite
def bought_data(draw):
    raw = draw(st.lists(st.tuples(
        st.sampled_from(["P1", "P2", "P3"]), st.sampled_from([0, 1, 10, 20, 40]),
        st.sampled_from(["41", "11"]),
        st.lists(st.tuples(st.sampled_from(["X", "Y"]),
                           st.sampled_from(["08", "09", "10", "11", "05"]),
                           st.sampled_from([1, 2, 5, 10, 11])),
                 min_size=1, max_size=2)),
        min_size=1, max_size=4))
    setts, lines = [], []
    for sid, (inst, day, m, items) in zip(ids(draw, len(raw)), raw, strict=True):
        setts.append(settlement(sid, "P" + sid, inst, m, at(day, 9)))
        # one price per item: the average price is that price, and the excess (whole
        # units) times it is whole fen (no exact half fen; see the half-fen tests)
        lines += [line(f"{sid}L{j}", sid, item, at(day, 9), qty, {"X": 2, "Y": "3.5"}[item],
                       cat=cat)
                  for j, (item, cat, qty) in enumerate(items)]
    purchases = [{"institution_id": inst, "item_code": item,
                  "purchase_date": at(day).date(), "quantity": D(qty)}
                 for inst, item, day, qty in draw(st.lists(st.tuples(
                     st.sampled_from(["P1", "P2"]), st.sampled_from(["X", "Y"]),
                     st.sampled_from([-31, -30, -29, 0, 1, 20, 40, 41]),
                     st.sampled_from([1, 5, 10, 20])), max_size=6))]
    setts, lines = draw(with_reversals(setts, lines))
    return {"settlements": setts, "fee_lines": lines, "purchases": purchases}


GROWTH_MONTHS = [(2023, 11), (2023, 12), (2024, 1), (2024, 2)]  # a new year, a leap day
GROWTH_ITEMS = {"W01": ["W01", "w one"], "W02": ["W02"], "EX1": ["EX1", "ex one"],
                "G1": ["xGENx", "brand g1"], "G2": ["G2", "g two"],
                "OTH": ["OTH", "GE N"]}  # names billed; G1 matches by one of them
GROWTH_WATCHLIST = [{"list_name": "site", "item_code": "W*", "generic_name": None},
                    {"list_name": "site", "item_code": "EX1", "generic_name": None},
                    {"list_name": "site", "item_code": None, "generic_name": "GEN"}]
GROWTH_CATALOG = [{"item_code": "G2", "generic_name": "GEN"},
                  {"item_code": "W01", "generic_name": "other"}]


@st.composite
def growth_data(draw):
    raw = draw(st.lists(st.tuples(
        st.sampled_from(["H1", "H2"]), st.sampled_from(GROWTH_MONTHS),
        st.sampled_from([1, 15, 31]),
        st.sampled_from([0, 23]),
        st.lists(st.sampled_from(sorted(GROWTH_ITEMS)).flatmap(
            lambda item: st.tuples(
                st.just(item), st.sampled_from(GROWTH_ITEMS[item]),
                st.sampled_from(["0.01", 5000, "9999.99", 10000, 15000, 20000]))),
            min_size=1, max_size=2)),
        min_size=1, max_size=8))
    setts, lines = [], []
    for sid, (inst, (year, month), day, hour, items) in zip(ids(draw, len(raw)), raw,
                                                             strict=True):
        last_day = (dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)).day
        when = dt.datetime(year, month, min(day, last_day), hour, 59 if hour else 0)
        setts.append(settlement(sid, "A", inst, "11", when))
        lines += [line(f"{sid}L{j}", sid, item, when, amount=amount, name=name)
                  for j, (item, name, amount) in enumerate(items)]
    setts, lines = draw(with_reversals(setts, lines))
    return {"settlements": setts, "fee_lines": lines, "watchlist": GROWTH_WATCHLIST,
            "catalog": GROWTH_CATALOG}


PRICES = ["0.99", 1, "1.005", "1.01", "1.0101", "1.02", "9.9", 10, "10.1", "10.101", "10.2",
          100, 101, "101.01", 102, 250]


@st.composite
def price_cap_data(draw):
    n = draw(st.integers(1, 2))
    sids = ids(draw, n)
    setts = [settlement(sid, "P" + sid, "H1", "11", at(0, 9)) for sid in sids]
    raw = draw(st.lists(st.tuples(st.integers(0, n - 1), st.sampled_from(["X", "Y", "Z", "U"]),
                                  st.sampled_from(PRICES), st.sampled_from(["0.5", 1, 2]),
                                  st.booleans()), min_size=3, max_size=8))
    lines = []
    for k, (i, item, price, qty, discounted) in enumerate(raw):
        f = line(f"L{k}", sids[i], item, at(0, 9), qty, price)
        if discounted:  # billed less than quantity × price: the cap by the amount bites
            f["amount"] = (f["amount"] / 2).quantize(CENT, ROUND_HALF_UP)
        lines.append(f)
    catalog = [{"item_code": item, "price_cap": None if cap is None else D(cap)}
               for item in ["X", "Y", "Z"]
               if (cap := draw(st.sampled_from(["absent", None, 1, 10, 10, 100, 100]))) != "absent"]
    setts, lines = draw(with_reversals(setts, lines))
    return {"settlements": setts, "fee_lines": lines, "catalog": catalog}


# ---------------------------------------------------------------------------------------
# the engine against the references on generated tables
# ---------------------------------------------------------------------------------------

@fuzz(40)
@given(readmission_data())
def test_sequence_readmission_matches_reference(data):
    check(READMISSION, data, ref_readmission)


@fuzz(15)
@given(elsewhere_data())
def test_correlate_elsewhere_during_stay_matches_reference(data):
    check(ELSEWHERE, data, ref_elsewhere)


@fuzz(15)
@given(travel_data())
def test_correlate_impossible_travel_matches_reference(data):
    check(TRAVEL, data, ref_travel)


@fuzz(15)
@given(exclusive_data())
def test_correlate_exclusive_items_matches_reference(data):
    check(EXCLUSIVE, data, ref_exclusive)


@fuzz(25)
@given(burst_data())
def test_window_offsite_burst_matches_reference(data):
    check(BURST, data, ref_burst)


@fuzz(20)
@given(hoarding_data())
def test_window_hoarding_matches_reference(data):
    check(HOARDING, data, ref_hoarding)


@fuzz(10)
@given(fee_line_data(vary_amounts=True))
def test_aggregate_repeated_line_matches_reference(data):
    check(REPEATED, data, ref_repeated)


@fuzz(10)
@given(fee_line_data(vary_amounts=False))
def test_aggregate_daily_cap_matches_reference(data):
    check(DAILY_CAP, data, ref_daily_cap)


@fuzz(12)
@given(idle_data())
def test_aggregate_idle_stay_matches_reference(data):
    check(IDLE, data, ref_idle)


@fuzz(13)
@given(bought_data())
def test_aggregate_billed_more_than_bought_matches_reference(data):
    check(BOUGHT, data, ref_bought)


@fuzz(35)
@given(growth_data())
def test_period_change_monthly_growth_matches_reference(data):
    check(GROWTH, data, ref_growth)


@fuzz(30)
@given(price_cap_data())
def test_filter_over_price_cap_matches_reference(data):
    check(PRICE_CAP, data, ref_price_cap)


# ---------------------------------------------------------------------------------------
# focused examples: exact boundaries, ties, empty tables (reference and engine both
# checked against hand-computed suspicions)
# ---------------------------------------------------------------------------------------

EMPTY = {"settlements": [], "fee_lines": [], "catalog": [], "purchases": [],
         "item_pairs": [], "watchlist": []}


@pytest.mark.parametrize("rule_id", sorted(REFERENCES))
def test_empty_tables_give_no_suspicions(rule_id):
    check(rule_id, EMPTY, REFERENCES[rule_id], expected=[])


def inline_given(case) -> dict[str, list[dict]]:
    """A rule's inline test tables as full contract rows (defaults filled in)."""
    return {name: table(name, rows).to_dicts() for name, rows in case.given.items()}


INLINE = [(rule_id, case) for rule_id in sorted(REFERENCES) for case in RULES[rule_id].tests]
FIELD_INDEX = {"settlement_id": 0, "related_settlement_ids": 1, "item_code": 2,
               "institution_id": 3, "person_id": 4, "period_start": 5, "amount_at_risk": 6}


@pytest.mark.parametrize("rule_id, case", INLINE, ids=[f"{r}::{c.name}" for r, c in INLINE])
def test_references_agree_with_the_rules_own_examples(rule_id, case):
    """The references themselves, against the hand-written cases in the rule files."""
    left = list(REFERENCES[rule_id](inline_given(case), **case.params))
    for want in case.expect:
        fields = want.model_dump(exclude_none=True, exclude={"message"})  # the rule's own
        match = next((h for h in left if all(
            (tuple(sorted(v)) if k == "related_settlement_ids" else v) == h[FIELD_INDEX[k]]
            for k, v in fields.items())), None)
        assert match is not None, f"reference misses {fields}; it found {left}"
        left.remove(match)
    assert left == [], f"reference finds more than the rule's case expects: {left}"


@pytest.mark.parametrize("rule_id", sorted(REFERENCES))
def test_reversed_settlements_take_part_in_no_rule(rule_id):
    """A rule's own first flagging case, with every settlement reversed, flags nothing."""
    case = next(c for c in RULES[rule_id].tests if c.expect)
    data = inline_given(case)
    reversals = [{**s, "settlement_id": s["settlement_id"] + "-R",
                  "reversed_settlement_id": s["settlement_id"]} for s in data["settlements"]]
    check(rule_id, {**data, "settlements": data["settlements"] + reversals},
          REFERENCES[rule_id], expected=[])


def test_readmission_boundaries_nearest_earlier_stay_and_equal_admit_times():
    data = {"settlements": [
        # exactly 15 days after the discharge date is flagged; 16 is not
        settlement("A1", "P1", "H1", "21", at(0, 8), at(4, 10), dx="J18.900", fund=3000),
        settlement("A2", "P1", "H1", "21", at(19, 23), at(21, 10), dx="J18.000", fund="2500.50"),
        settlement("A3", "P1", "H1", "21", at(37, 0), at(38, 10), dx="J18.900", fund=10),
        # only the nearest earlier stay counts: B3 is not compared with B1
        settlement("B1", "P2", "H1", "21", at(0), at(2), dx="J18.900"),
        settlement("B2", "P2", "H1", "21", at(3), at(5), dx="K35.800"),
        settlement("B3", "P2", "H1", "21", at(6), at(8), dx="J18.900", fund=7),
        # admitted at the same moment: the smaller id is the earlier stay (gap 0 → flag C2;
        # the other order would give a gap of −1 and no flag)
        settlement("C2", "P3", "H1", "21", at(0, 8), at(1, 8), dx="I10.x00", fund=5),
        settlement("C1", "P3", "H1", "21", at(0, 8), at(0, 20), dx="I10.x00", fund=6),
        # planned care on either side is never flagged
        settlement("Z1", "P4", "H1", "21", at(0), at(2), dx="Z51.100"),
        settlement("Z2", "P4", "H1", "21", at(3), at(5), dx="Z51.000"),
    ]}
    check(READMISSION, data, ref_readmission, expected=[
        hit("A2", ["A1"], None, "H1", "P1", None, "2500.50"),
        hit("C2", ["C1"], None, "H1", "P3", None, 5),
    ])


def test_elsewhere_during_stay_strictly_between_the_dates():
    data = {"settlements": [
        settlement("S1", "P1", "H1", "21", at(0, 9), at(9, 10), fund=5000),
        settlement("D1", "P1", "P9", "41", at(1, 0, 5)),       # day after admission
        settlement("D2", "P1", "H2", "11", at(8, 23)),         # day before discharge
        settlement("D3", "P1", "P9", "41", at(0, 20)),         # admit date: no
        settlement("D4", "P1", "P9", "41", at(9, 8)),          # discharge date: no
        settlement("D5", "P1", "H1", "11", at(5)),             # same institution: no
        settlement("D6", "P1", "H3", "21", at(5), at(6)),      # another stay: no
        settlement("D7", "P2", "P9", "41", at(5)),             # another person: no
        settlement("D8", "P1", "H2", "14", at(4)),             # reversed: no
        settlement("D8R", "P1", "H2", "14", at(4), reversed_of="D8"),
    ]}
    check(ELSEWHERE, data, ref_elsewhere, expected=[
        hit("S1", ["D1", "D2"], None, "H1", "P1", None, 5000)])


def test_impossible_travel_exactly_three_hours_and_equal_times():
    data = {"settlements": [
        settlement("T1", "A", "H1", "11", at(0, 8), visit="350902"),
        settlement("T2", "A", "P7", "41", at(0, 10, 59), visit="350102", fund=88),  # 2h59
        settlement("T3", "A", "P7", "41", at(0, 13, 59), visit="350902", fund=5),   # 3h00
        # at the same moment in two pooling areas: the larger id is "the later one"
        settlement("U2", "B", "H1", "11", at(0, 8), visit="330100", fund=7),
        settlement("U1", "B", "H2", "11", at(0, 8), visit="350902", fund=9),
        # another county of the same pooling area (3509)
        settlement("V1", "C", "H1", "11", at(0, 8), visit="350902"),
        settlement("V2", "C", "H2", "11", at(0, 8, 30), visit="350921"),
    ]}
    check(TRAVEL, data, ref_travel, expected=[
        hit("T2", ["T1"], None, "P7", "A", None, 88),
        hit("U2", ["U1"], None, "H1", "B", None, 7),
    ])


N1, N2, N3 = "001201000010000", "001201000020000", "001201000030000"  # 一级/二级/三级护理
HD, HDF = "003104000010000", "003104000020000"  # 血液透析 / 血液透析滤过


def test_exclusive_items_shipped_pairs_ties_and_one_flag_per_item_day():
    """No item_pairs in the data: the shipped rules/reference/item_pairs.csv applies."""
    data = {"settlements": [
        settlement("S1", "P1", "H1", "21", at(0), at(5)),
        settlement("S2", "P2", "H1", "21", at(0), at(5)),
    ], "fee_lines": [
        line("L1", "S1", N1, at(0, 8), amount=30),
        line("L2", "S1", N2, at(0, 20), amount=18),
        line("L3", "S1", HD, at(1, 8), amount=400),
        line("L4", "S1", HDF, at(1, 9), amount=500),
        line("L5", "S1", N1, at(2, 8), amount=30),     # pair on different days: no
        line("L6", "S1", N2, at(3, 8), amount=18),
        # three levels on one day: N2 and N3 are each cheaper than N1; N2 = N3 in
        # amount, so of that pair the smaller code (N2) is the one flagged
        line("L7", "S2", N1, at(0, 8), amount=30),
        line("L8", "S2", N2, at(0, 9), amount=18),
        line("L9", "S2", N3, at(0, 10), amount=10),
        line("L10", "S2", N3, at(0, 11), amount=8),    # N3 that day: 18
    ]}
    day0, day1 = D0.date(), D0.date() + dt.timedelta(days=1)
    check(EXCLUSIVE, data, ref_exclusive, expected=[
        hit("S1", [], N2, "H1", "P1", day0, 18),
        hit("S1", [], HD, "H1", "P1", day1, 400),
        hit("S2", [], N2, "H1", "P2", day0, 18),
        hit("S2", [], N3, "H1", "P2", day0, 18),
    ])


def off_site_card(sid, pharmacy, person, minute, fund=1):
    return settlement(sid, person, pharmacy, "41", at(0, 10, minute), fund=fund,
                      insured="330100")


def test_burst_members_exactly_one_window_apart_are_two_suspicions():
    """Two qualifying bursts whose nearest members are exactly ``window_minutes`` apart
    are two suspicions (as at P2, 11 minutes apart); 9 minutes apart, one (P3).

    This pins how the engine reads "members closer than the window to each other are
    merged": a gap of less than the window, literally. Equal times are ordered by
    settlement_id: B01 is the first member at P1.
    """
    first = [off_site_card(s, "P1", p, m) for s, p, m in
             [("B07", "A", 0), ("B01", "B", 0), ("B03", "C", 2), ("B04", "D", 3), ("B05", "E", 4)]]
    second = [off_site_card(s, "P1", p, m, fund=2) for s, p, m in
              [("B06", "F", 14), ("B02", "G", 15), ("B08", "H", 16), ("B09", "I", 17),
               ("B10", "J", 18)]]
    apart = [off_site_card(f"C{k}", "P2", p, m) for k, (p, m) in enumerate(
        [("A", 0), ("B", 1), ("C", 2), ("D", 3), ("E", 4),
         ("F", 15), ("G", 16), ("H", 17), ("I", 18), ("J", 19)])]
    close = [off_site_card(f"D{k}", "P3", p, m) for k, (p, m) in enumerate(
        [("A", 0), ("B", 1), ("C", 2), ("D", 3), ("E", 4),
         ("F", 13), ("G", 14), ("H", 15), ("I", 16), ("J", 17)])]
    data = {"settlements": first + second + apart + close}
    check(BURST, data, ref_burst, expected=[
        hit("B01", ["B03", "B04", "B05", "B07"], None, "P1", None, None, 5),
        hit("B06", ["B02", "B08", "B09", "B10"], None, "P1", None, None, 10),
        hit("C0", ["C1", "C2", "C3", "C4"], None, "P2", None, None, 5),
        hit("C5", ["C6", "C7", "C8", "C9"], None, "P2", None, None, 5),
        hit("D0", [f"D{k}" for k in range(1, 10)], None, "P3", None, None, 10),
    ])


def test_burst_exactly_ten_minutes_and_distinct_persons():
    cards = [off_site_card(s, "P1", p, m, fund=f) for s, p, m, f in
             [("B1", "A", 0, 10), ("B2", "B", 2, 20), ("B3", "C", 5, 30), ("B4", "A", 6, 1),
              ("B5", "D", 7, 40), ("B6", "E", 10, 50)]]
    short = [off_site_card(s, "P2", p, m) for s, p, m in
             [("C1", "A", 0), ("C2", "B", 2), ("C3", "C", 5), ("C4", "D", 7), ("C5", "E", 11),
              ("C6", "D", 9)]]  # 5 persons only over 11 minutes; 4 distinct within 10
    local = settlement("C7", "F", "P2", "41", at(0, 10, 3))  # not off-site
    check(BURST, {"settlements": cards + short + [local]}, ref_burst, expected=[
        hit("B1", ["B2", "B3", "B4", "B5", "B6"], None, "P1", None, None, 151)])


def pharmacy_purchase(sid, person, day, hour=9, amount=10, item="X", inst="P1"):
    return (settlement(sid, person, inst, "41", at(day, hour)),
            line(sid + "L", sid, item, at(day, hour), amount=amount))


def hoarding_data_of(*purchases, extra_lines=()):
    return {"settlements": [s for s, _ in purchases],
            "fee_lines": [f for _, f in purchases] + list(extra_lines)}


def test_hoarding_29_days_30_days_one_purchase_per_settlement_and_merging():
    data = hoarding_data_of(
        # A: 4 purchases with 29 days between the first and last dates (last at 23:00)
        pharmacy_purchase("A1", "A", 0, amount=100), pharmacy_purchase("A2", "A", 10, amount=110),
        pharmacy_purchase("A3", "A", 20, amount=120),
        pharmacy_purchase("A4", "A", 29, hour=23, amount=130, inst="P3"),
        # B: 30 days between first and last: not within 30 days
        pharmacy_purchase("B1", "B", 0), pharmacy_purchase("B2", "B", 10),
        pharmacy_purchase("B3", "B", 20), pharmacy_purchase("B4", "B", 30),
        # C: windows [0, 29] and [29, 58] overlap in C4: one run of seven purchases
        pharmacy_purchase("C1", "C", 0, amount=1), pharmacy_purchase("C2", "C", 10),
        pharmacy_purchase("C3", "C", 20), pharmacy_purchase("C4", "C", 29),
        pharmacy_purchase("C5", "C", 45), pharmacy_purchase("C6", "C", 55),
        pharmacy_purchase("C7", "C", 58),
        # E: three settlements, one with two lines of the item: three purchases
        pharmacy_purchase("E1", "E", 0), pharmacy_purchase("E2", "E", 1),
        pharmacy_purchase("E3", "E", 2),
        extra_lines=[line("E3L2", "E3", "X", at(2, 9), amount=10),
                     line("A2L2", "A2", "X", at(10, 9), amount=5)])
    check(HOARDING, data, ref_hoarding, expected=[
        hit("A4", ["A1", "A2", "A3"], "X", "P3", "A", None, 115 + 120 + 130),
        hit("C7", ["C1", "C2", "C3", "C4", "C5", "C6"], "X", "P1", "C", None, 60),
    ])


def test_repeated_line_first_copy_is_the_smallest_line_id():
    """"First" is the smallest line_id as text: L10 before L11 before L9."""
    data = {"settlements": [settlement("S1", "P1", "H1", "11", at(0))], "fee_lines": [
        line("L9", "S1", "X", at(0, 10), 2, "15.5", amount=31),
        line("L10", "S1", "X", at(0, 10), 2, "15.5", amount=20),
        line("L11", "S1", "X", at(0, 10), 2, "15.5", amount=31),
        line("L12", "S1", "X", at(0, 10), 2, "15.6", amount=31),          # another price
        line("L13", "S1", "X", at(0, 10, 1), 2, "15.5", amount=31),       # another minute
    ]}
    check(REPEATED, data, ref_repeated, expected=[hit("S1", [], "X", "H1", "P1", None, 62)])


def test_idle_stay_exactly_three_idle_days_and_half_the_stay():
    data = {"settlements": [
        settlement("S1", "P1", "H1", "21", at(0, 9), at(6, 10)),   # LOS 6
        settlement("S2", "P2", "H1", "21", at(0, 9), at(7, 10)),   # LOS 7, 3 idle: 43 %
    ], "fee_lines": [
        line("L1", "S1", "DRUG", at(0, 12), amount=80),
        line("L2", "S1", "EXAM", at(1, 12), amount=120, cat="03"),
        line("L3", "S1", "DRUG", at(2, 12), amount=80),
        line("L4", "S1", "BED", at(3, 12), amount=50, cat="01"),
        line("L5", "S1", "NURSE", at(4, 12), amount=20, cat="07"),
        line("L6", "S1", "DRUG", at(6, 8), amount=999),              # discharge day
        line("L7", "S1", "DRUG", at(-1, 23), amount=999),            # before admission
        line("M1", "S2", "DRUG", at(0, 12), amount=1),
        line("M2", "S2", "DRUG", at(1, 12), amount=1),
        line("M3", "S2", "DRUG", at(2, 12), amount=1),
        line("M4", "S2", "DRUG", at(3, 12), amount=1),
    ]}
    check(IDLE, data, ref_idle, expected=[hit("S1", [], None, "H1", "P1", None, 70)])


def test_billed_more_than_bought_lookback_tolerance_and_institutions_without_stock():
    start = D0.date()
    data = {"settlements": [
        settlement("S1", "A", "P1", "41", at(0)), settlement("S2", "B", "P1", "41", at(40)),
        settlement("S3", "C", "P2", "41", at(5)),
        # reversed: its lines would move the window start 5 days earlier
        settlement("S4", "D", "P1", "41", at(-5)),
        settlement("S4R", "D", "P1", "41", at(-5), reversed_of="S4"),
    ], "fee_lines": [
        line("L1", "S1", "X", at(0), 65, 2), line("L2", "S2", "X", at(40), 50, 2),
        line("L3", "S1", "Y", at(0), 11, 3),                     # exactly 10 % over: no
        line("L4", "S1", "Z", at(0), 5, 20, cat="08"),           # never bought: all of it
        line("L5", "S1", "SVC", at(0), 500, 2, cat="05"),        # a service, not stock
        line("L6", "S3", "X", at(5), 500, 2),                    # P2 keeps no stock records
        line("L7", "S4", "X", at(-5), 1, 2),
    ], "purchases": [
        {"institution_id": "P1", "item_code": "X", "purchase_date": at(-30).date(),
         "quantity": D(60)},                                       # 30 days before: counts
        {"institution_id": "P1", "item_code": "X", "purchase_date": at(-31).date(),
         "quantity": D(1000)},                                     # 31 days before: no
        {"institution_id": "P1", "item_code": "X", "purchase_date": at(40).date(),
         "quantity": D(40)},                                       # window end: counts
        {"institution_id": "P1", "item_code": "X", "purchase_date": at(41).date(),
         "quantity": D(1000)},                                     # after the window: no
        {"institution_id": "P1", "item_code": "Y", "purchase_date": at(1).date(),
         "quantity": D(10)},
    ]}
    check(BOUGHT, data, ref_bought, expected=[
        hit(None, [], "X", "P1", None, start, 30),
        hit(None, [], "Z", "P1", None, start, 100),
    ])


def test_monthly_growth_thresholds_first_month_and_matching():
    def bill(sid, inst, month, day, item, amount, name=None):
        when = dt.datetime(2024, month, day, 12) if month else dt.datetime(2023, 12, 20, 12)
        return (settlement(sid, "A", inst, "11", when),
                line(sid + "L", sid, item, when, amount=amount, name=name))

    rows = [
        bill("J0", "H1", 1, 5, "OTH", 1),                     # January: the first month
        bill("J1", "H1", 1, 31, "W01", 20000),                # January is not judged
        bill("F1", "H1", 2, 1, "W01", 30000),                 # ×1.5 and +10,000: flagged
        bill("J2", "H1", 1, 10, "EX1", 100000),
        bill("F2", "H1", 2, 10, "EX1", 149000),               # ×1.49: no
        bill("M1", "H1", 3, 31, "G2", 12000),                 # Feb nothing: +12,000 counts
        bill("F3", "H1", 2, 10, "G1", 1, name="xGENx"),
        bill("M2", "H1", 3, 10, "G1", "10000.99", name="xGENx"),  # +9,999.99: no
        bill("M3", "H2", 3, 10, "OTH", 90000),                # on no list: no
        bill("R1", "H1", 0, 0, "W01", 1),                     # reversed December line
    ]
    setts = [s for s, _ in rows] + [settlement("R1R", "A", "H1", "11", at(0),
                                               reversed_of="R1")]
    data = {"settlements": setts, "fee_lines": [f for _, f in rows],
            "watchlist": GROWTH_WATCHLIST, "catalog": GROWTH_CATALOG}
    check(GROWTH, data, ref_growth, expected=[
        hit(None, [], "W01", "H1", None, dt.date(2024, 2, 1), 10000),
        hit(None, [], "G2", "H1", None, dt.date(2024, 3, 1), 12000),
    ])


def test_over_price_cap_exactly_one_percent_and_the_amount_billed():
    data = {"settlements": [settlement("S1", "P1", "H1", "11", at(0))], "fee_lines": [
        line("L1", "S1", "X", at(0), 2, 101),                    # exactly +1 %: no
        line("L2", "S1", "X", at(0), 2, "101.0001"),             # just over: 2.0002
        line("L3", "S1", "Y", at(0), 1, "10.101"),               # 0.101 → 0.10
        line("L4", "S1", "X", at(0), 1, 250, amount=100),        # never more than billed
        line("L5", "S1", "Z", at(0), 1, 1000),                   # no cap
        line("L6", "S1", "U", at(0), 1, 1000),                   # not in the catalog
    ], "catalog": [{"item_code": "X", "price_cap": D(100)}, {"item_code": "Y", "price_cap": D(10)},
                   {"item_code": "Z", "price_cap": None}]}
    check(PRICE_CAP, data, ref_price_cap, expected=[
        hit("S1", [], "X", "H1", "P1", None, "2.00"),
        hit("S1", [], "Y", "H1", "P1", None, "0.10"),
        hit("S1", [], "X", "H1", "P1", None, 100),
    ])


def test_hoarding_counts_each_purchase_of_a_day_once():
    """Regression (fixed in 55a93e4; the hoarding comparison found it too): the window
    kind's ``starts`` grouped the self-join by (partition, start time), so k events at
    one start time were counted k times and two same-day purchases passed
    ``count(*) >= 4``."""
    data = hoarding_data_of(pharmacy_purchase("D1", "A", 0, hour=9),
                            pharmacy_purchase("D2", "A", 0, hour=15, inst="P2"),
                            # and three purchases (two on one day) are not four either
                            pharmacy_purchase("E1", "B", 0), pharmacy_purchase("E2", "B", 0),
                            pharmacy_purchase("E3", "B", 20))
    check(HOARDING, data, ref_hoarding, expected=[])


def test_hoarding_orders_purchases_of_one_day_by_time():
    """Regression (fixed in 76ad4aa): members were ordered by (date, settlement_id), so
    on a day with two purchases the first (left out of the amount) and the last (the
    suspicion's settlement) were chosen by id, not by ``admit_time``."""
    data = hoarding_data_of(
        pharmacy_purchase("D9", "A", 0, hour=8, amount=100),   # first in time
        pharmacy_purchase("D1", "A", 0, hour=19, amount=1),
        pharmacy_purchase("D2", "A", 10, hour=18, amount=1),   # last in time
        pharmacy_purchase("D3", "A", 10, hour=8, amount=1))
    check(HOARDING, data, ref_hoarding,
          expected=[hit("D2", ["D1", "D3", "D9"], "X", "P1", "A", None, 3)])


def test_monthly_growth_counts_every_line_of_a_watched_item():
    """Regression (fixed in 76ad4aa): watched_fee_lines matched (item_code, item_name)
    pairs, so January's lines of G1, billed under a name without the generic name, were
    left out and February looked like +20,000 over nothing."""
    data = {"settlements": [settlement("S1", "A", "H1", "11", dt.datetime(2024, 1, 10)),
                            settlement("S2", "A", "H1", "11", dt.datetime(2024, 2, 10))],
            "fee_lines": [line("L1", "S1", "G1", dt.datetime(2024, 1, 10), amount=20000,
                               name="brand tablets"),
                          line("L2", "S2", "G1", dt.datetime(2024, 2, 10), amount=20000,
                               name="GEN tablets")],
            "watchlist": [{"list_name": "site", "item_code": None, "generic_name": "GEN"}]}
    check(GROWTH, data, ref_growth, expected=[])


def evidence(rule_id: str, data: dict) -> dict[str, dict]:
    """Each suspicion's evidence, by its settlement."""
    return {r["settlement_id"]: json.loads(r["evidence"])
            for r in screened(rule_id, data).iter_rows(named=True)}


def test_exclusive_items_names_the_partner_whose_amount_it_gives():
    """Regression (found in review): the partner was the smallest code and the amount
    the largest, which could be two different partners."""
    data = {"settlements": [settlement("S1", "P1", "H1", "21", at(0))],
            "fee_lines": [line("L1", "S1", "A", at(0, 10), amount=10),
                          line("L2", "S1", "B", at(0, 11), amount=30),
                          line("L3", "S1", "C", at(0, 12), amount=50)],
            "item_pairs": [{"item_code_a": "A", "item_code_b": p, "relation": "exclusive"}
                           for p in ("B", "C")]}
    check(EXCLUSIVE, data, ref_exclusive)
    found = evidence(EXCLUSIVE, data)["S1"]
    assert (found["partner_item"], found["partner_amount"]) == ("C", "50.00")


def test_the_latest_earlier_settlement_is_told_apart_by_a_fraction_of_a_second():
    """Regression (found in review): the message's figures took the latest earlier
    settlement by the text of its time and id, in which '08:00:00T0' sorts after
    '08:00:00.5T1', so the area named was not the latest's."""
    t0 = at(0, 8)
    data = {"settlements": [
        settlement("T0", "A", "H1", "11", t0, visit="350100"),
        settlement("T1", "A", "H2", "11", t0.replace(microsecond=500000), visit="350900"),
        settlement("T2", "A", "H3", "11", at(0, 10), visit="350200")]}
    assert evidence(TRAVEL, data)["T2"]["earlier_area"] == "3509"
    stay = settlement("S", "A", "H0", "21", at(0), at(5))
    data = {"settlements": [stay,
                            settlement("O1", "A", "H9", "11", at(2, 8)),
                            settlement("O2", "A", "H1", "11", at(2, 8).replace(microsecond=5))]}
    assert evidence(ELSEWHERE, data)["S"]["elsewhere_institution"] == "H9"


def test_repeated_lines_a_fraction_of_a_second_apart_are_two_suspicions():
    """Regression: ids and messages printed times to the second, so two groups of
    repeats 0.1 s apart shared a suspicion id and the whole rule failed ('two hits share
    a key'), losing every repeated-line lead of the run."""
    t1, t2 = at(0, 10).replace(microsecond=100000), at(0, 10).replace(microsecond=200000)
    data = {"settlements": [settlement("S1", "P1", "H1", "11", at(0))],
            "fee_lines": [line("L1", "S1", "X", t1, 1, 5), line("L2", "S1", "X", t1, 1, 5),
                          line("L3", "S1", "X", t2, 1, 5), line("L4", "S1", "X", t2, 1, 5)]}
    check(REPEATED, data, ref_repeated,
          expected=[hit("S1", [], "X", "H1", "P1", None, 5)] * 2)
    found = screened(REPEATED, data)
    assert sorted(found["message"].str.extract(r"在(\S+ \S+)以").to_list()) == [
        "2024-03-01 10:00:00.1", "2024-03-01 10:00:00.2"]


def test_daily_cap_average_price_is_not_rounded_twice():
    """Regression (fixed in 76ad4aa): the DOUBLE quotient was cast to DECIMAL(18,4)
    before rounding to fen: 0.02 × 101.50 ÷ 2.02 = 1.0049504… became 1.0050 → 1.01."""
    data = {"settlements": [settlement("S1", "P1", "H1", "11", at(0))],
            "fee_lines": [line("L1", "S1", "X", at(0), "2.02", "50.2475", amount="101.50")],
            "catalog": [{"item_code": "X", "max_daily_quantity": D(2)}]}
    check(DAILY_CAP, data, ref_daily_cap,
          expected=[hit("S1", [], "X", "H1", "P1", D0.date(), "1.00")])


def test_billed_more_than_bought_average_price_is_not_rounded_twice():
    """Regression (fixed in 76ad4aa): 100 × 0.51 ÷ 101 = 0.5049504… was reported 0.51."""
    data = {"settlements": [settlement("S1", "A", "P1", "41", at(0))],
            "fee_lines": [line("L1", "S1", "X", at(0), 101, "0.00505", amount="0.51")],
            "purchases": [{"institution_id": "P1", "item_code": "X",
                           "purchase_date": at(0).date(), "quantity": D(1)}]}
    check(BOUGHT, data, ref_bought,
          expected=[hit(None, [], "X", "P1", None, D0.date(), "0.50")])


# ---------------------------------------------------------------------------------------
# an exact half fen after a division rounds half up (DuckDB divides decimals as doubles;
# the compiler reads each quotient back as a decimal of 6 places, so the double's error
# cannot show, at ¥525,475.815 either)
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("amount, at_risk", [("0.29", "0.15"), ("2.01", "1.01"),
                                             ("1.15", "0.58"), ("1050951.63", "525475.82")])
def test_daily_cap_exact_half_fen_rounds_half_up(amount, at_risk):
    data = {"settlements": [settlement("S1", "P1", "H1", "11", at(0))],
            "fee_lines": [line("L1", "S1", "X", at(0), 2, amount=amount)],
            "catalog": [{"item_code": "X", "max_daily_quantity": D(1)}]}
    check(DAILY_CAP, data, ref_daily_cap,
          expected=[hit("S1", [], "X", "H1", "P1", D0.date(), at_risk)])


def test_billed_more_than_bought_exact_half_fen_rounds_half_up():
    data = {"settlements": [settlement("S1", "A", "P1", "41", at(0))],
            "fee_lines": [line("L1", "S1", "X", at(0), 2, amount="0.29")],
            "purchases": [{"institution_id": "P1", "item_code": "X",
                           "purchase_date": at(0).date(), "quantity": D(1)}]}
    # billed 2 > 1 × 1.1: (2 − 1) × 0.29 ÷ 2 = 0.145
    check(BOUGHT, data, ref_bought,
          expected=[hit(None, [], "X", "P1", None, D0.date(), "0.15")])


def test_the_shipped_pairs_are_read_from_a_folder_named_with_brackets(tmp_path, monkeypatch):
    """'[' is a glob to Polars: installed under fraudscreen[1.2]/, every run that screens
    exclusive items failed reading the shipped item_pairs.csv."""
    import shutil

    home = tmp_path / "fraudscreen[1.2]"
    shutil.copytree(PROJECT / "rules" / "reference", home / "rules" / "reference")
    monkeypatch.setattr(shipped_reference, "shipped", lambda name: home / name)
    pairs = shipped_reference.default_item_pairs()
    assert pairs.height == len(list(csv.DictReader(
        (home / "rules" / "reference" / "item_pairs.csv").open(encoding="utf-8"))))
