"""Row-by-row building of the injected cases, and the truth that describes them.

There are only hundreds of injected rows, so they are written one at a time with
plain Python: readable case code matters more than speed here. Keys continue after
the background's, in the same internal layout (see ``background``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import polars as pl

from fraudscreen.sample.background import (
    LINE_SCHEMA,
    PERSON_SCHEMA,
    SETTLEMENT_SCHEMA,
    US,
)
from fraudscreen.sample.reference import ITEMS, LOCAL_REGIONS, OTHER_REGIONS, START
from fraudscreen.sample.world import World, units

EPOCH = dt.datetime(1970, 1, 1)


def micros(t: dt.datetime) -> int:
    return (t - EPOCH) // dt.timedelta(microseconds=1)


def day(n: int) -> dt.date:
    """Day ``n`` of the data (0 = 2024-01-01)."""
    return START + dt.timedelta(days=n)


def clock(d: dt.date, hhmm: str) -> dt.datetime:
    """``d`` at ``hh:mm`` or ``hh:mm:ss``."""
    return dt.datetime.combine(d, dt.time.fromisoformat(hhmm))


def department(dx: str | None) -> str:
    """科室 by diagnosis: surgery, obstetrics, oncology, else internal medicine."""
    if dx is None:
        return "A03"
    if dx[0] in "KS":
        return "A04"
    if dx[0] == "O":
        return "A05"
    if dx[0] == "C" or dx.startswith("Z51"):
        return "A19"
    return "A03"


@dataclass
class Expectation:
    rule_id: str
    expected: str  # positive | decoy
    note: str
    settlement: int | None = None
    institution: int | None = None
    person: int | None = None
    item: str | None = None  # item name; the truth shows its code
    period: dt.date | None = None


@dataclass
class Draft:
    world: World
    rng: np.random.Generator
    first_person: int
    first_skey: int
    persons: list[dict] = field(default_factory=list)
    settlements: list[dict] = field(default_factory=list)
    lines: list[dict] = field(default_factory=list)
    purchases: list[tuple[int, int, dt.date, int]] = field(default_factory=list)
    reversals: list[tuple[int, int, int]] = field(default_factory=list)  # orig, new, settle
    truth: list[Expectation] = field(default_factory=list)
    no_stock: set[int] = field(default_factory=set)  # institutions without purchase rows
    own_stock: set[tuple[int, int]] = field(default_factory=set)  # (inst, item) set by hand
    _rows: dict[int, dict] = field(default_factory=dict)  # skey -> settlement row

    # -- keys ----------------------------------------------------------------------

    def person(self, *, gender: int | None = None, region: str | None = None,
               offsite: bool = False) -> int:
        """A new person, local (宁德) unless ``offsite`` or a ``region`` is given."""
        rng = self.rng
        if region is None:
            region = str(rng.choice(OTHER_REGIONS if offsite else LOCAL_REGIONS))
        key = self.first_person + len(self.persons)
        birth = dt.date(1940, 1, 1) + dt.timedelta(days=int(rng.integers(0, 60 * 365)))
        self.persons.append({"person": key, "gender": str(gender or rng.integers(1, 3)),
                             "birth": (birth - EPOCH.date()).days, "region": region,
                             "insurance": "310" if rng.random() < 0.4 else "390"})
        return key

    def settlement(self, person: int, inst: int, medical_type: str, admit: dt.datetime, *,
                   discharge: dt.datetime | None = None, dx: str | None = None) -> int:
        skey = self.first_skey + len(self.settlements) + len(self.reversals)
        end = discharge or admit
        settle = end + dt.timedelta(minutes=1 if medical_type == "41" else 30)
        hospital = self.world.inst_kind[inst] == "hospital"
        row = {
            "skey": skey, "person": person, "inst": inst, "medical_type": medical_type,
            "admit": micros(admit), "discharge": micros(discharge) if discharge else None,
            "settle": micros(settle), "dx": dx,
            "dept": department(dx) if hospital else None,
            "doctor": inst * 100 + 40 + int(self.rng.integers(0, 10)) if hospital else None}
        self.settlements.append(row)
        self._rows[skey] = row
        return skey

    def line(self, skey: int, item: str, at: dt.datetime, qty: str | int = 1,
             price: str | None = None) -> None:
        """A fee line; the price defaults to the institution's price for the item."""
        j = self.world.item(item)
        inst = self._rows[skey]["inst"]
        p = units(price) if price is not None else int(
            self.world.price[self.world.inst_level[inst], j])
        self.lines.append({"skey": skey, "item": j, "charge": micros(at), "q": units(qty),
                           "p": p})

    def reverse(self, skey: int, hours: int = 26) -> int:
        """A reversal (冲销) row for ``skey``, settled ``hours`` later; returns its key."""
        new = self.first_skey + len(self.settlements) + len(self.reversals)
        self.reversals.append((skey, new, self._rows[skey]["settle"] + hours * 3600 * US))
        return new

    def expect(self, rule_id: str, expected: str, note: str, **keys) -> None:
        self.truth.append(Expectation(rule_id, expected, note, **keys))

    def purchase(self, inst: int, item: str, when: dt.date, qty: str | int) -> None:
        self.purchases.append((inst, self.world.item(item), when, units(qty)))

    # -- shapes of care ------------------------------------------------------------

    def visit(self, person: int, inst: int, medical_type: str, at: dt.datetime,
              items: Iterable[tuple[str, str | int]], dx: str | None = None) -> int:
        """An outpatient visit or a pharmacy purchase: one line per item, a minute apart."""
        skey = self.settlement(person, inst, medical_type, at, dx=dx)
        for k, (item, qty) in enumerate(items):
            self.line(skey, item, at + dt.timedelta(minutes=k), qty)
        return skey

    def stay(self, person: int, inst: int, admit_day: int, los: int, dx: str, *,
             nursing: str | list[str] = "二级护理", idle: Iterable[int] = (),
             blank: Iterable[int] = (), beds: list[tuple[int, int]] | None = None,
             extra: Iterable[tuple[int, str, str | int, str]] = ()) -> int:
        """A clean inpatient stay, admitted 14:00, discharged ``los`` days later at 10:00.

        Each stay day (admit day to the day before discharge; a same-day stay has one)
        gets a bed line, a nursing line (one level; ``nursing`` may list one per day), a
        ward round and a drug. ``idle`` days keep only bed, nursing and ward round;
        ``blank`` days have no lines at all; ``beds`` replaces the daily bed lines with
        (day offset, quantity) lines; ``extra`` adds (day offset, item, quantity,
        "hh:mm[:ss]") lines, also on the discharge day (offset ``los``).
        """
        admit = clock(day(admit_day), "14:00")
        discharge = clock(day(admit_day + los), "16:00" if los == 0 else "10:00")
        skey = self.settlement(person, inst, "21", admit, discharge=discharge, dx=dx)
        idle, blank = set(idle), set(blank)
        night = ("15:30", "15:40") if los == 0 else ("23:50", "23:55")
        for k in range(max(los, 1)):
            d = day(admit_day + k)
            if k in blank:
                continue
            if beds is None:
                self.line(skey, "普通病房床位费(三人间)", clock(d, night[0]))
            level = nursing[k] if isinstance(nursing, list) else nursing
            self.line(skey, level, clock(d, night[1]))
            self.line(skey, "住院诊查费", clock(d, "15:00" if k == 0 else "10:00"))
            if k not in idle:
                self.line(skey, "盐酸左氧氟沙星注射液", clock(d, "16:00" if k == 0 else "09:00"))
        for k, qty in beds or ():
            self.line(skey, "普通病房床位费(三人间)", clock(day(admit_day + k), night[0]), qty)
        for k, item, qty, hhmm in extra:
            self.line(skey, item, clock(day(admit_day + k), hhmm), qty)
        return skey

    def bill_months(self, person: int, inst: int, item: str, totals: list[str],
                    dx: str) -> None:
        """门诊慢特病 visits on days 3, 10, 17, 24 of each month, billing exactly
        ``totals[m]`` yuan of ``item`` in month m (Jan … Jun; "0" bills nothing)."""
        price = Decimal(ITEMS[self.world.item(item)].price)
        for month, total in enumerate(totals, start=1):
            total = Decimal(total)
            n_units = int(total // price)
            remainder = total - n_units * price
            per_visit = [n_units // 4 + (v < n_units % 4) for v in range(4)]
            for v, qty in enumerate(per_visit):
                last = v == 3 and remainder > 0
                if not qty and not last:
                    continue
                at = dt.datetime(START.year, month, 3 + 7 * v, 9, 30)
                skey = self.settlement(person, inst, "14", at, dx=dx)
                if qty:
                    self.line(skey, item, at + dt.timedelta(minutes=10), qty, str(price))
                if last:
                    self.line(skey, item, at + dt.timedelta(minutes=11), 1, str(remainder))

    # -- frames --------------------------------------------------------------------

    def frames(self) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        return (pl.DataFrame(self.persons, schema=PERSON_SCHEMA),
                pl.DataFrame(self.settlements, schema=SETTLEMENT_SCHEMA),
                pl.DataFrame(self.lines, schema=LINE_SCHEMA))
