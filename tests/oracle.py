"""A plain-Python oracle for the 14 built-in sub-rules, written from the spec text
(`shared/spec/rule-families.md`, its "Precise readings (v1.1)", `data-contract.md`) and,
where the spec is silent, `docs/readings.md` — never from the rules' YAML or SQL.

A *world* is a dict of table name -> list of row dicts with Python values
(`datetime`, `date`, `Decimal`, `str`, `None`). Every function returns the suspicions
the spec asks for as dicts with the output columns the spec defines for that rule.
No SQL, no Polars: loops over a few dozen rows.
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path

CENT = Decimal("0.01")
REFERENCE_PAIRS = Path(__file__).resolve().parents[1] / "rules" / "reference" / "item_pairs.csv"

# rule-families.md, defaults.
MAX_GAP_DAYS = 15
PLANNED = {"Z51", "Z49", "O80", "O81", "O82", "O83", "O84"}
MIN_LOS, MIN_IDLE_DAYS, MIN_IDLE_SHARE = 3, 3, Decimal("0.5")
BASIC_CATEGORIES = {"01", "02", "07"}
OTHER_TYPES = {"11", "14", "41"}
PRICE_TOLERANCE = Decimal("0.01")
STOCK_CATEGORIES = {"08", "09", "10", "11"}
PURCHASE_LOOKBACK_DAYS, STOCK_TOLERANCE = 30, Decimal("0.10")
GROWTH_RATIO, MIN_INCREASE = Decimal("1.5"), Decimal("10000")
MIN_CARDS, WINDOW = 5, dt.timedelta(minutes=10)
MIN_PURCHASES, WINDOW_DAYS = 4, 30
MIN_HOURS = dt.timedelta(hours=3)


def money(value: Decimal) -> Decimal:
    """amount_at_risk: never below 0, rounded half away from zero to fen (readings.md)."""
    return max(Decimal(0), value).quantize(CENT, ROUND_HALF_UP)


def divide(a: Decimal, b: Decimal) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 60
        return a / b


def billed_cap(s: dict) -> Decimal:
    """A settlement's fund amount, at most what was billed (amount ≤ money billed)."""
    return min(s["fund_amount"], s["total_amount"])


# ---------------------------------------------------------------- common ----------

class Effective:
    """The world after reversals: a reversal row and the settlement it names take part
    in no rule; their fee lines go with them."""

    def __init__(self, world: dict[str, list[dict]]):
        rows = world["settlements"]
        reversed_ids = {s["reversed_settlement_id"] for s in rows
                        if s.get("reversed_settlement_id")}
        self.settlements = [s for s in rows if not s.get("reversed_settlement_id")
                            and s["settlement_id"] not in reversed_ids]
        self.by_id = {s["settlement_id"]: s for s in self.settlements}
        self.lines = [f for f in world["fee_lines"] if f["settlement_id"] in self.by_id]
        self.lines_of: dict[str, list[dict]] = defaultdict(list)
        for f in self.lines:
            self.lines_of[f["settlement_id"]].append(f)
        self.world = world
        dates = [f["charge_time"].date() for f in self.lines]
        self.window = (min(dates), max(dates)) if dates else (None, None)

    def stays(self) -> list[dict]:
        """Inpatient settlements (21) with a discharge: the ones with a length of stay."""
        return [s for s in self.settlements
                if s["medical_type"] == "21" and s["discharge_time"] is not None]


def los(stay: dict) -> int:
    return (stay["discharge_time"].date() - stay["admit_time"].date()).days


def category(code: str | None) -> str | None:
    return code[:3].upper() if code and len(code) >= 3 else None


def _suspicion(rule: str, **fields) -> dict:
    fields["rule_id"] = rule
    if "related_settlement_ids" in fields:
        fields["related_settlement_ids"] = tuple(sorted(fields["related_settlement_ids"]))
    if "amount_at_risk" in fields:
        fields["amount_at_risk"] = money(fields["amount_at_risk"])
    return fields


# ---------------------------------------------------------------- split -----------

def readmission(e: Effective) -> list[dict]:
    """The later admission (21) to the same institution, paired with the nearest
    earlier stay there; gap 0..15 days; same 3-char category; neither planned."""
    out = []
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for s in e.settlements:
        if s["medical_type"] == "21":
            groups[(s["person_id"], s["institution_id"])].append(s)
    for rows in groups.values():
        rows.sort(key=lambda s: (s["admit_time"], s["settlement_id"]))
        for prev, cur in zip(rows, rows[1:], strict=False):
            if prev["discharge_time"] is None:
                continue
            gap = (cur["admit_time"].date() - prev["discharge_time"].date()).days
            cat = category(cur["diagnosis_code"])
            if not 0 <= gap <= MAX_GAP_DAYS or cat is None:
                continue
            if cat != category(prev["diagnosis_code"]) or cat in PLANNED:
                continue
            out.append(_suspicion(
                "split_hospitalisation.readmission", settlement_id=cur["settlement_id"],
                person_id=cur["person_id"], institution_id=cur["institution_id"],
                related_settlement_ids=[prev["settlement_id"]],
                amount_at_risk=billed_cap(cur)))
    return out


# ---------------------------------------------------------------- bed holding -----

def idle_stay(e: Effective) -> list[dict]:
    out = []
    for stay in e.stays():
        n = los(stay)
        if n < MIN_LOS:
            continue
        first = stay["admit_time"].date()
        days = {first + dt.timedelta(days=k) for k in range(n)}
        by_day: dict[dt.date, list[dict]] = defaultdict(list)
        for f in e.lines_of[stay["settlement_id"]]:
            by_day[f["charge_time"].date()].append(f)
        idle = [d for d in days
                if all(f["fee_category"] in BASIC_CATEGORIES for f in by_day[d])]
        if len(idle) >= MIN_IDLE_DAYS and len(idle) >= n * MIN_IDLE_SHARE:
            out.append(_suspicion(
                "bed_holding.idle_stay", settlement_id=stay["settlement_id"],
                person_id=stay["person_id"], institution_id=stay["institution_id"],
                amount_at_risk=sum((f["amount"] for d in idle for f in by_day[d]),
                                   Decimal(0))))
    return out


def elsewhere_during_stay(e: Effective) -> list[dict]:
    out = []
    for stay in e.stays():
        start, end = stay["admit_time"].date(), stay["discharge_time"].date()
        others = [o["settlement_id"] for o in e.settlements
                  if o["person_id"] == stay["person_id"]
                  and o["medical_type"] in OTHER_TYPES
                  and o["institution_id"] != stay["institution_id"]
                  and start < o["admit_time"].date() < end]
        if others:
            out.append(_suspicion(
                "bed_holding.elsewhere_during_stay", settlement_id=stay["settlement_id"],
                person_id=stay["person_id"], institution_id=stay["institution_id"],
                related_settlement_ids=others, amount_at_risk=billed_cap(stay)))
    return out


# ---------------------------------------------------------------- duplicate -------

def repeated_line(e: Effective) -> list[dict]:
    out = []
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for f in e.lines:
        groups[(f["settlement_id"], f["item_code"], f["charge_time"],
                f["quantity"], f["unit_price"])].append(f)
    for (sid, item, *_), rows in groups.items():
        if len(rows) < 2:
            continue
        first = min(rows, key=lambda f: f["line_id"])  # readings: the smallest line_id
        s = e.by_id[sid]
        out.append(_suspicion(
            "duplicate_charge.repeated_line", settlement_id=sid, item_code=item,
            person_id=s["person_id"], institution_id=s["institution_id"],
            amount_at_risk=sum((f["amount"] for f in rows if f is not first), Decimal(0))))
    return out


def bed_days_beyond_stay(e: Effective) -> list[dict]:
    out = []
    for stay in e.stays():
        beds = [f for f in e.lines_of[stay["settlement_id"]] if f["fee_category"] == "01"]
        if not beds:
            continue
        allowed = max(los(stay), 1)  # 算入不算出; a same-day stay counts 1
        billed = sum(f["quantity"] for f in beds)
        if billed > allowed:
            excess = (billed - allowed) * max(f["unit_price"] for f in beds)
            out.append(_suspicion(
                "duplicate_charge.bed_days_beyond_stay", settlement_id=stay["settlement_id"],
                person_id=stay["person_id"], institution_id=stay["institution_id"],
                amount_at_risk=min(excess, sum(f["amount"] for f in beds))))
    return out


def _catalog(e: Effective) -> dict[str, dict]:
    return {c["item_code"]: c for c in e.world.get("catalog", [])}


def _item_days(e: Effective) -> dict[tuple, list[dict]]:
    days: dict[tuple, list[dict]] = defaultdict(list)
    for f in e.lines:
        days[(f["settlement_id"], f["item_code"], f["charge_time"].date())].append(f)
    return days


def daily_cap(e: Effective) -> list[dict]:
    if "catalog" not in e.world:
        return []
    catalog, out = _catalog(e), []
    for (sid, item, day), rows in _item_days(e).items():
        cap = catalog.get(item, {}).get("max_daily_quantity")
        quantity = sum(f["quantity"] for f in rows)
        if cap is None or quantity <= cap:
            continue
        amount = sum(f["amount"] for f in rows)
        s = e.by_id[sid]
        out.append(_suspicion(
            "duplicate_charge.daily_cap", settlement_id=sid, item_code=item,
            person_id=s["person_id"], institution_id=s["institution_id"],
            period_start=day, period_end=day,
            amount_at_risk=min(divide((quantity - cap) * amount, quantity), amount)))
    return out


def exclusive_pairs(world: dict) -> set[frozenset]:
    if "item_pairs" in world:
        rows = world["item_pairs"]
    else:
        with REFERENCE_PAIRS.open(encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    return {frozenset((r["item_code_a"], r["item_code_b"])) for r in rows
            if r["relation"] == "exclusive" and r["item_code_a"] != r["item_code_b"]}


def exclusive_items(e: Effective) -> list[dict]:
    pairs = exclusive_pairs(e.world)
    day_amount: dict[tuple, dict[str, Decimal]] = defaultdict(dict)
    for (sid, item, day), rows in _item_days(e).items():
        day_amount[(sid, day)][item] = sum(f["amount"] for f in rows)
    flagged: dict[tuple, Decimal] = {}
    for (sid, day), amounts in day_amount.items():
        for pair in pairs:
            a, b = sorted(pair)
            if a in amounts and b in amounts:
                cheaper = a if amounts[a] <= amounts[b] else b  # ties: the smaller code
                flagged[(sid, day, cheaper)] = amounts[cheaper]
    out = []
    for (sid, day, item), amount in flagged.items():
        s = e.by_id[sid]
        out.append(_suspicion(
            "duplicate_charge.exclusive_items", settlement_id=sid, item_code=item,
            person_id=s["person_id"], institution_id=s["institution_id"],
            period_start=day, period_end=day, related_settlement_ids=[],
            amount_at_risk=amount))
    return out


def over_price_cap(e: Effective) -> list[dict]:
    if "catalog" not in e.world:
        return []
    catalog, out = _catalog(e), []
    for f in e.lines:
        cap = catalog.get(f["item_code"], {}).get("price_cap")
        if cap is None or not f["unit_price"] > cap * (1 + PRICE_TOLERANCE):
            continue
        s = e.by_id[f["settlement_id"]]
        out.append(_suspicion(
            "duplicate_charge.over_price_cap", settlement_id=f["settlement_id"],
            item_code=f["item_code"], person_id=s["person_id"],
            institution_id=s["institution_id"],
            amount_at_risk=min((f["unit_price"] - cap) * f["quantity"], f["amount"])))
    return out


# ---------------------------------------------------------------- substitution ----

def billed_more_than_bought(e: Effective) -> list[dict]:
    if "purchases" not in e.world or e.window[0] is None:
        return []
    start, end = e.window
    purchases = e.world["purchases"]
    stocked = {p["institution_id"] for p in purchases}
    billed: dict[tuple, list[dict]] = defaultdict(list)
    for f in e.lines:
        if f["fee_category"] in STOCK_CATEGORIES:
            billed[(e.by_id[f["settlement_id"]]["institution_id"], f["item_code"])].append(f)
    out = []
    for (inst, item), rows in billed.items():
        if inst not in stocked:  # stock data missing, not zero: not judged
            continue
        bought = sum((p["quantity"] for p in purchases
                      if p["institution_id"] == inst and p["item_code"] == item
                      and start - dt.timedelta(days=PURCHASE_LOOKBACK_DAYS)
                      <= p["purchase_date"] <= end), Decimal(0))
        quantity = sum(f["quantity"] for f in rows)
        amount = sum(f["amount"] for f in rows)
        if quantity > bought * (1 + STOCK_TOLERANCE):
            out.append(_suspicion(
                "item_substitution.billed_more_than_bought", institution_id=inst,
                item_code=item, period_start=start, period_end=end,
                amount_at_risk=min(divide((quantity - bought) * amount, quantity), amount)))
    return out


def skipped_institutions(e: Effective) -> int:
    """Institutions with no purchase rows that billed a drug or consumable."""
    stocked = {p["institution_id"] for p in e.world.get("purchases", [])}
    return len({e.by_id[f["settlement_id"]]["institution_id"] for f in e.lines
                if f["fee_category"] in STOCK_CATEGORIES} - stocked)


def wrong_gender(e: Effective) -> list[dict]:
    if "catalog" not in e.world or "persons" not in e.world:
        return []
    catalog = _catalog(e)
    gender = {p["person_id"]: p["gender"] for p in e.world["persons"]}
    amounts: dict[tuple, Decimal] = defaultdict(Decimal)
    for f in e.lines:
        s = e.by_id[f["settlement_id"]]
        limit = catalog.get(f["item_code"], {}).get("gender_limit")
        g = gender.get(s["person_id"])
        if limit in ("1", "2") and g in ("1", "2") and g != limit:
            amounts[(f["settlement_id"], f["item_code"])] += f["amount"]
    return [_suspicion("item_substitution.wrong_gender", settlement_id=sid, item_code=item,
                       person_id=e.by_id[sid]["person_id"],
                       institution_id=e.by_id[sid]["institution_id"], amount_at_risk=amount)
            for (sid, item), amount in amounts.items()]


# ---------------------------------------------------------------- growth ----------

def watched_items(e: Effective, watchlist: Iterable[dict]) -> set[str]:
    catalog = _catalog(e)
    names: dict[str, set[str]] = defaultdict(set)
    for f in e.lines:
        names[f["item_code"]].add(f["item_name"] or "")
    hits = set()
    for item, billed_names in names.items():
        generic = catalog.get(item, {}).get("generic_name")
        for w in watchlist:
            code, gname = w.get("item_code"), w.get("generic_name")
            if code and code.endswith("*") and item.startswith(code[:-1]):
                hits.add(item)
            elif code and not code.endswith("*") and item == code:
                hits.add(item)
            elif gname and (generic == gname or any(gname in n for n in billed_names)):
                hits.add(item)
    return hits


def _month(d: dt.date) -> tuple[int, int]:
    return d.year, d.month


def _previous(m: tuple[int, int]) -> tuple[int, int]:
    return (m[0], m[1] - 1) if m[1] > 1 else (m[0] - 1, 12)


def monthly_growth(e: Effective, watchlist: Iterable[dict]) -> list[dict]:
    if e.window[0] is None:
        return []
    first = _month(e.window[0])
    watched = watched_items(e, list(watchlist))
    value: dict[tuple, Decimal] = defaultdict(Decimal)
    for f in e.lines:
        if f["item_code"] in watched:
            inst = e.by_id[f["settlement_id"]]["institution_id"]
            value[(inst, f["item_code"], _month(f["charge_time"].date()))] += f["amount"]
    out = []
    for (inst, item, m), v in list(value.items()):
        prev = _previous(m)
        if prev < first:
            continue
        pv = value.get((inst, item, prev), Decimal(0))
        if v >= pv * GROWTH_RATIO and v - pv >= MIN_INCREASE:
            last = calendar.monthrange(*m)[1]
            out.append(_suspicion(
                "key_item_growth.monthly_growth", institution_id=inst, item_code=item,
                period_start=dt.date(*m, 1), period_end=dt.date(*m, last),
                # never more than the money billed in the month (common to all families)
                amount_at_risk=min(v - pv, v)))
    return out


# ---------------------------------------------------------------- pharmacy --------

def _components(n: int, links: Iterable[tuple[int, int]]) -> list[list[int]]:
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in links:
        parent[find(a)] = find(b)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        groups[find(i)].append(i)
    return [sorted(g) for g in groups.values()]


def _off_site(s: dict) -> bool:
    return s["insured_region"][:4] != s["visit_region"][:4]


def offsite_burst(e: Effective) -> list[dict]:
    """≥ 5 distinct persons' off-site 41 settlements at one pharmacy within 10 minutes
    (last − first ≤ 10 min); overlapping bursts, or members of two bursts closer than
    the window (strictly), are one suspicion."""
    by_inst: dict[str, list[dict]] = defaultdict(list)
    for s in e.settlements:
        if s["medical_type"] == "41" and _off_site(s):
            by_inst[s["institution_id"]].append(s)
    out = []
    for inst, rows in by_inst.items():
        rows.sort(key=lambda s: (s["admit_time"], s["settlement_id"]))
        members: set[int] = set()
        links = []
        for s in rows:
            inside = [j for j, o in enumerate(rows)
                      if s["admit_time"] <= o["admit_time"] <= s["admit_time"] + WINDOW]
            if len({rows[j]["person_id"] for j in inside}) >= MIN_CARDS:
                members |= set(inside)
                links += [(inside[0], j) for j in inside]
        ordered = sorted(members)
        links += [(a, b) for a, b in zip(ordered, ordered[1:], strict=False)
                  if rows[b]["admit_time"] - rows[a]["admit_time"] < WINDOW]
        for group in _components(len(rows), links):
            if group[0] not in members:
                continue
            burst = [rows[j] for j in group]
            out.append(_suspicion(
                "pharmacy_card_skimming.offsite_burst", institution_id=inst, person_id=None,
                settlement_id=burst[0]["settlement_id"],
                related_settlement_ids=[s["settlement_id"] for s in burst[1:]],
                amount_at_risk=sum((billed_cap(s) for s in burst), Decimal(0))))
    return out


def hoarding(e: Effective) -> list[dict]:
    """≥ 4 pharmacy (41) purchases of one item by one person within 30 days (last date −
    first date ≤ 29); one (settlement, item) is one purchase; runs closer than 30 days
    merge. settlement_id = the last purchase; amount = every purchase but the first."""
    buys: dict[tuple, list[dict]] = defaultdict(list)
    for s in e.settlements:
        if s["medical_type"] != "41":
            continue
        per_item: dict[str, Decimal] = defaultdict(Decimal)
        for f in e.lines_of[s["settlement_id"]]:
            per_item[f["item_code"]] += f["amount"]
        for item, amount in per_item.items():
            buys[(s["person_id"], item)].append(
                {"sid": s["settlement_id"], "time": s["admit_time"], "amount": amount})
    out = []
    for (person, item), rows in buys.items():
        rows.sort(key=lambda b: (b["time"], b["sid"]))
        members: set[int] = set()
        for b in rows:
            inside = [j for j, o in enumerate(rows)
                      if 0 <= (o["time"].date() - b["time"].date()).days <= WINDOW_DAYS - 1]
            if len(inside) >= MIN_PURCHASES:
                members |= set(inside)
        ordered = sorted(members)
        links = [(a, b) for a, b in zip(ordered, ordered[1:], strict=False)
                 if (rows[b]["time"].date() - rows[a]["time"].date()).days < WINDOW_DAYS]
        for group in _components(len(rows), links):
            if group[0] not in members:
                continue
            run = [rows[j] for j in group]
            out.append(_suspicion(
                "pharmacy_card_skimming.hoarding", person_id=person, item_code=item,
                settlement_id=run[-1]["sid"],
                related_settlement_ids=[b["sid"] for b in run[:-1]],
                amount_at_risk=sum((b["amount"] for b in run[1:]), Decimal(0))))
    return out


def impossible_travel(e: Effective) -> list[dict]:
    by_person: dict[str, list[dict]] = defaultdict(list)
    for s in e.settlements:
        by_person[s["person_id"]].append(s)
    out = []
    for rows in by_person.values():
        for later in rows:
            earlier = [o["settlement_id"] for o in rows
                       if (o["admit_time"], o["settlement_id"])
                       < (later["admit_time"], later["settlement_id"])
                       and o["visit_region"][:4] != later["visit_region"][:4]
                       and later["admit_time"] - o["admit_time"] < MIN_HOURS]
            if earlier:
                out.append(_suspicion(
                    "pharmacy_card_skimming.impossible_travel",
                    settlement_id=later["settlement_id"], person_id=later["person_id"],
                    institution_id=later["institution_id"],
                    related_settlement_ids=earlier, amount_at_risk=billed_cap(later)))
    return out


def all_suspicions(world: dict, watchlist: Iterable[dict] = ()) -> list[dict]:
    e = Effective(world)
    return (readmission(e) + idle_stay(e) + elsewhere_during_stay(e) + repeated_line(e)
            + bed_days_beyond_stay(e) + daily_cap(e) + exclusive_items(e) + over_price_cap(e)
            + billed_more_than_bought(e) + wrong_gender(e)
            + monthly_growth(e, watchlist) + offsite_burst(e) + hoarding(e)
            + impossible_travel(e))
