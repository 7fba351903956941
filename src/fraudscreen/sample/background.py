"""The clean background: ordinary care that no built-in rule should flag.

Everything is drawn in bulk with numpy (no Python loop over claims). Cleanliness
comes from how the data is shaped, not from filtering afterwards:

- inpatients have no other settlements, at most two stays ≥ 30 days apart (or
  planned Z51 chemotherapy cycles), a bed line and one nursing level per stay day,
  and at least one drug line every day (so no day is idle);
- within a settlement every line has its own item or time, and a day's quantity of
  an item is one line's quantity, always within the catalogue's daily maximum;
- prices are the catalogue standard or less;
- each person's settlements all fall in one pooling area;
- a person's pharmacy purchases are ≥ 11 days apart (never 4 in 30 days);
- off-site pharmacy purchases take 15-minute slots per pharmacy and day;
- gender-limited tests go only to the right gender; the pricey watched drugs of
  ``reference.ITEMS`` (pool "growth") are never billed here.

Internal frames use integer keys (person, settlement ``skey``, institution and item
indices), times in microseconds and quantities and prices in 1/10,000;
``assemble`` turns them into contract tables.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from fraudscreen.sample.reference import (
    CHEMO_DX,
    CHRONIC_DX,
    DIALYSIS_DX,
    INPATIENT_DX,
    ITEMS,
    LOCAL_REGIONS,
    N_DAYS,
    OTHER_REGIONS,
    OUTPATIENT_DX,
    START,
    Diagnosis,
)
from fraudscreen.sample.world import World, units

US = 1_000_000
H = 3600
T0 = int(dt.datetime(START.year, START.month, START.day, tzinfo=dt.UTC).timestamp()) * US

PERSON_SCHEMA = {"person": pl.Int64, "gender": pl.String, "birth": pl.Int32,
                 "region": pl.String, "insurance": pl.String}
SETTLEMENT_SCHEMA = {"skey": pl.Int64, "person": pl.Int64, "inst": pl.Int32,
                     "medical_type": pl.String, "admit": pl.Int64, "discharge": pl.Int64,
                     "settle": pl.Int64, "dx": pl.String, "dept": pl.String,
                     "doctor": pl.Int64}
LINE_SCHEMA = {"skey": pl.Int64, "item": pl.Int32, "charge": pl.Int64, "q": pl.Int64,
               "p": pl.Int64}

SCRIPT = np.array([units(it.script) for it in ITEMS], dtype=np.int64)
DOSE = np.array([units(it.dose) for it in ITEMS], dtype=np.int64)
ONE = units(1)


def at(day, seconds):
    """Microseconds since the epoch of day ``day`` of the data (0 = START) plus seconds."""
    return T0 + np.asarray(day, dtype=np.int64) * (86_400 * US) + np.asarray(
        seconds, dtype=np.int64) * US


def within(counts: np.ndarray) -> np.ndarray:
    """0, 1, … inside each group of a flat array made by ``np.repeat(…, counts)``."""
    counts = np.asarray(counts, dtype=np.int64)
    return np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)


class Pool:
    """Drug pools as a padded matrix, so a vector of (pool, k) picks items at once."""

    def __init__(self, world: World, names: list[str]):
        members = [world.pool(n) for n in names]
        self.index = {n: i for i, n in enumerate(names)}
        self.length = np.array([len(m) for m in members])
        self.items = np.zeros((len(names), self.length.max()), dtype=np.int64)
        for i, m in enumerate(members):
            self.items[i, : len(m)] = m

    def pick(self, pool: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Item k (mod pool length) of each pool: distinct for distinct k < length."""
        return self.items[pool, k % self.length[pool]]


class Background:
    """Accumulates the background frames; one method per kind of care."""

    def __init__(self, world: World, rng: np.random.Generator):
        self.w, self.rng = world, rng
        self.persons: list[pl.DataFrame] = []
        self.settlements: list[pl.DataFrame] = []
        self.lines: list[pl.DataFrame] = []
        self.gender = np.zeros(0, dtype=np.int64)
        self.n_settlements = 0
        self.reversible: list[np.ndarray] = []  # skeys that may be reversed
        self.pools = Pool(world, ["infection", "cardio", "general", "chemo", "op", "rehab",
                                  "htn", "dm", "cad", "pharmacy"])

    # -- keys ----------------------------------------------------------------------

    def new_persons(self, n: int, offsite_share: float = 0.1) -> np.ndarray:
        rng, first = self.rng, self.gender.size
        gender = rng.integers(1, 3, n)
        offsite = rng.random(n) < offsite_share
        region = np.where(offsite, rng.choice(OTHER_REGIONS, n), rng.choice(LOCAL_REGIONS, n))
        birth = (dt.date(1935, 1, 1) - dt.date(1970, 1, 1)).days + rng.integers(0, 85 * 365, n)
        self.persons.append(pl.DataFrame({
            "person": np.arange(first, first + n), "gender": gender.astype(str),
            "birth": birth, "region": region,
            "insurance": np.where(rng.random(n) < 0.4, "310", "390")}, schema=PERSON_SCHEMA))
        self.gender = np.concatenate([self.gender, gender])
        return np.arange(first, first + n)

    def new_skeys(self, n: int) -> np.ndarray:
        first = self.n_settlements
        self.n_settlements += n
        return np.arange(first, first + n)

    # -- frames --------------------------------------------------------------------

    def add_settlements(self, skey, person, inst, medical_type, admit, settle, dx=None,
                        dept=None, discharge=None, doctor=None) -> None:
        n = len(skey)
        self.settlements.append(pl.DataFrame({
            "skey": skey, "person": person, "inst": inst,
            "medical_type": np.full(n, medical_type), "admit": admit,
            "discharge": discharge if discharge is not None else np.full(n, None),
            "settle": settle, "dx": dx if dx is not None else np.full(n, None),
            "dept": dept if dept is not None else np.full(n, None),
            "doctor": doctor if doctor is not None else np.full(n, None)},
            schema=SETTLEMENT_SCHEMA))

    def add_lines(self, skey, inst, item, charge, q) -> None:
        """Lines at the institution's price; item, charge and q may be scalars."""
        n = len(skey)
        item = np.broadcast_to(np.asarray(item, dtype=np.int64), n)
        price = self.w.price[self.w.inst_level[inst], item]
        self.lines.append(pl.DataFrame({
            "skey": skey, "item": item, "charge": np.broadcast_to(charge, n),
            "q": np.broadcast_to(np.asarray(q, dtype=np.int64), n), "p": price},
            schema=LINE_SCHEMA))

    def hospital_choice(self, n: int) -> np.ndarray:
        return self.rng.choice(self.w.hospitals, size=n, p=self.w.hospital_weight)

    @staticmethod
    def _dx(choices: tuple[Diagnosis, ...], idx: np.ndarray):
        codes = np.array([d.code for d in choices])[idx]
        depts = np.array([d.department for d in choices])[idx]
        return codes, depts, [d.pool for d in choices]

    def dx_draw(self, choices: tuple[Diagnosis, ...], n: int) -> np.ndarray:
        weight = np.array([d.weight for d in choices], dtype=float)
        return self.rng.choice(len(choices), size=n, p=weight / weight.sum())

    # -- inpatient -----------------------------------------------------------------

    def stays(self, person, inst, dx_codes, depts, pool, admit_day, los) -> None:
        """Inpatient stays with daily bed, nursing, ward round and drug lines."""
        rng, w, n = self.rng, self.w, len(person)
        skey = self.new_skeys(n)
        admit_sec = rng.integers(8 * H, 18 * H, n)
        discharge = at(admit_day + los, rng.integers(9 * H, 12 * H, n))
        self.add_settlements(skey, person, inst, "21", at(admit_day, admit_sec),
                             discharge + rng.integers(600, 7200, n) * US, dx_codes, depts,
                             discharge, inst * 100 + rng.integers(0, 40, n))
        level = w.inst_level[inst]
        bed = np.where(level == 3, w.item("普通病房床位费(双人间)"),
                       w.item("普通病房床位费(三人间)"))
        nursing = rng.choice([w.item("一级护理"), w.item("二级护理"), w.item("三级护理")],
                             size=n, p=[0.3, 0.5, 0.2])
        n_drugs = np.minimum(rng.integers(1, 4, n), self.pools.length[pool])
        drug_offset = rng.integers(0, 1000, n)

        st = np.repeat(np.arange(n), los)  # one row per stay day
        off = within(los)
        day = admit_day[st] + off
        first = off == 0

        def add(rows, item, seconds, q=ONE):
            self.add_lines(skey[st[rows]], inst[st[rows]], item, at(day[rows], seconds), q)

        every = np.arange(st.size)
        add(every, bed[st], 23 * H + 50 * 60)
        add(every, nursing[st], 23 * H + 55 * 60)
        add(every, w.item("住院诊查费"), np.where(first, admit_sec[st] + 600, 10 * H))
        drug_row = np.repeat(every, n_drugs[st])
        j = within(n_drugs[st])
        s = st[drug_row]
        item = self.pools.pick(pool[s], drug_offset[s] + j)
        start = np.where(first[drug_row], admit_sec[s] + 1800, 9 * H)
        add(drug_row, item, start + j * 600 + rng.integers(0, 300, j.size), DOSE[item])
        iv = every[rng.random(n)[st] < 0.7]
        iv_start = np.where(first[iv], admit_sec[st[iv]] + 1200, 8 * H + 40 * 60)
        add(iv, w.item("静脉输液"), iv_start)
        add(iv, w.item("一次性使用输液器"), iv_start + 60)
        admit_rows = every[first]
        for k, item in enumerate(w.pool("panel")):
            add(admit_rows, item, admit_sec[st[admit_rows]] + 3600 + 300 * k)
        lab = every[~first & (rng.random(st.size) < 0.25)]
        add(lab, rng.choice(w.pool("lab"), lab.size), 7 * H + rng.integers(0, 1800, lab.size))

    def inpatients(self, n_persons: int, n_chemo: int) -> None:
        """Ordinary stays (7 % with a second one ≥ 30 days later) and chemo cycles."""
        rng = self.rng
        person = self.new_persons(n_persons)
        inst = self.hospital_choice(n_persons)
        dx = self.dx_draw(INPATIENT_DX, n_persons)
        codes, depts, pools = self._dx(INPATIENT_DX, dx)
        pool = np.array([self.pools.index[p] for p in pools])[dx]
        los = np.clip(1 + rng.poisson(6, n_persons), 1, 20)
        admit = rng.integers(0, N_DAYS - los)
        again = rng.random(n_persons) < 0.07
        los2 = np.clip(1 + rng.poisson(5, n_persons), 1, 20)
        admit2 = admit + los + rng.integers(30, 75, n_persons)
        again &= admit2 + los2 <= N_DAYS - 1
        cat = lambda a, b: np.concatenate([a, b[again]])  # noqa: E731
        self.stays(cat(person, person), cat(inst, inst), cat(codes, codes), cat(depts, depts),
                   cat(pool, pool), cat(admit, admit2), cat(los, los2))

        cycles = 4
        chemo = np.repeat(self.new_persons(n_chemo), cycles)
        first = np.repeat(rng.integers(0, N_DAYS - 14 * cycles, n_chemo), cycles)
        n = chemo.size
        self.stays(chemo, np.repeat(self.hospital_choice(n_chemo), cycles),
                   np.full(n, CHEMO_DX.code), np.full(n, CHEMO_DX.department),
                   np.full(n, self.pools.index["chemo"]), first + 14 * within(
                       np.full(n_chemo, cycles)), rng.integers(2, 4, n))

    # -- outpatient ----------------------------------------------------------------

    def _visit_lines(self, skey, inst, admit, pool, max_items, script_items=True) -> None:
        """A fee line (挂号/诊查) plus up to ``max_items`` distinct items of the pool."""
        rng, w, n = self.rng, self.w, len(skey)
        level = w.inst_level[inst]
        self.add_lines(skey, inst, w.item("挂号费"), admit, units(1))
        exam = np.where(level == 1, w.item("一般诊疗费"), w.item("门诊诊查费"))
        self.add_lines(skey, inst, exam, admit + 300 * US, units(1))
        k = np.minimum(rng.integers(0, max_items + 1, n), self.pools.length[pool])
        row = np.repeat(np.arange(n), k)
        j = within(k)
        item = self.pools.pick(pool[row], rng.integers(0, 1000, n)[row] + j)
        self.add_lines(skey[row], inst[row], item, admit[row] + (1200 + 60 * j) * US,
                       SCRIPT[item])

    def outpatient(self, person, inst, day) -> np.ndarray:
        """普通门诊 (11): registration, exam fee, drugs, sometimes a test."""
        rng, w, n = self.rng, self.w, len(person)
        skey = self.new_skeys(n)
        admit = at(day, rng.integers(8 * H, 17 * H, n))
        dx = self.dx_draw(OUTPATIENT_DX, n)
        codes, depts, pools = self._dx(OUTPATIENT_DX, dx)
        self.add_settlements(skey, person, inst, "11", admit,
                             admit + rng.integers(600, 3600, n) * US, codes, depts,
                             doctor=inst * 100 + rng.integers(0, 40, n))
        pool = np.array([self.pools.index[p] for p in pools])[dx]
        self._visit_lines(skey, inst, admit, pool, 3)
        lab = np.flatnonzero(rng.random(n) < 0.35)
        self.add_lines(skey[lab], inst[lab], rng.choice(w.pool("op_lab"), lab.size),
                       admit[lab] + 900 * US, units(1))
        sexed = np.flatnonzero(rng.random(n) < 0.04)
        item = np.where(self.gender[person[sexed]] == 1, w.item("前列腺特异性抗原测定"),
                        w.item("人乳头瘤病毒核酸检测"))
        self.add_lines(skey[sexed], inst[sexed], item, admit[sexed] + 960 * US, units(1))
        return skey

    def chronic(self, person, inst) -> None:
        """门诊慢特病 (14): a monthly prescription every 28–35 days."""
        rng, w = self.rng, self.w
        start = rng.integers(0, 30, person.size)
        interval = rng.integers(28, 36, person.size)
        visits = (N_DAYS - 1 - start) // interval + 1
        row = np.repeat(np.arange(person.size), visits)
        day = start[row] + interval[row] * within(visits)
        dx = self.dx_draw(CHRONIC_DX, person.size)[row]
        codes, depts, pools = self._dx(CHRONIC_DX, dx)
        skey = self.new_skeys(row.size)
        admit = at(day, rng.integers(8 * H, 12 * H, row.size))
        self.add_settlements(skey, person[row], inst[row], "14", admit,
                             admit + rng.integers(600, 3600, row.size) * US, codes, depts,
                             doctor=inst[row] * 100 + rng.integers(0, 40, row.size))
        pool = np.array([self.pools.index[p] for p in pools])[dx]
        self._visit_lines(skey, inst[row], admit, pool, 2)
        lab = np.flatnonzero((codes == "E11.900") & (rng.random(row.size) < 0.3))
        self.add_lines(skey[lab], inst[row][lab], w.item("糖化血红蛋白测定"),
                       admit[lab] + 900 * US, units(1))

    def dialysis(self, person, inst) -> None:
        """门诊透析 (14): three sessions a week; every fourth is 血液透析滤过 (another day)."""
        rng, w = self.rng, self.w
        weekday = (np.arange(N_DAYS) + START.weekday()) % 7
        days = [np.flatnonzero(np.isin(weekday, wd)) for wd in ((0, 2, 4), (1, 3, 5))]
        shift = rng.integers(0, 2, person.size)
        visits = np.array([days[s].size for s in shift])
        row = np.repeat(np.arange(person.size), visits)
        k = within(visits)
        day = np.concatenate([days[s] for s in shift])
        skey = self.new_skeys(row.size)
        admit = at(day, 7 * H + 30 * 60 + 1800 * rng.integers(0, 8, person.size)[row])
        self.add_settlements(skey, person[row], inst[row], "14", admit, admit + 4 * H * US,
                             np.full(row.size, DIALYSIS_DX.code),
                             np.full(row.size, DIALYSIS_DX.department),
                             doctor=inst[row] * 100 + rng.integers(0, 40, row.size))
        item = np.where(k % 4 == 3, w.item("血液透析滤过"), w.item("血液透析"))
        self.add_lines(skey, inst[row], item, admit + 600 * US, units(1))
        self.add_lines(skey, inst[row], w.item("0.9%氯化钠注射液"), admit + 660 * US, units(2))

    # -- pharmacy ------------------------------------------------------------------

    def pharmacy(self, person, pharmacies) -> np.ndarray:
        """定点药店购药 (41): each buyer's purchases ≥ 11 days apart, 1–3 items each.

        Times are provisional: ``spread_offsite`` re-times the off-site ones.
        """
        rng = self.rng
        n = person.size
        k = 1 + np.minimum(rng.poisson(1.2, n), 5)
        row = np.repeat(np.arange(n), k)
        gaps = np.where(within(k) == 0, 0, 11 + rng.integers(0, 45, row.size))
        day = rng.integers(0, N_DAYS, n)[row] + np.cumsum(gaps) - np.repeat(
            (np.cumsum(gaps) - gaps)[np.cumsum(k) - k], k)
        keep = day < N_DAYS
        row, day = row[keep], day[keep]
        home = rng.choice(pharmacies, n)[row]
        inst = np.where(rng.random(row.size) < 0.8, home, rng.choice(pharmacies, row.size))
        skey = self.new_skeys(row.size)
        admit = at(day, rng.integers(8 * H, 20 * H, row.size))
        self.add_settlements(skey, person[row], inst, "41", admit, admit)
        m = rng.integers(1, 4, row.size)
        line = np.repeat(np.arange(row.size), m)
        pool = np.full(line.size, self.pools.index["pharmacy"])
        item = self.pools.pick(pool, rng.integers(0, 1000, row.size)[line] + within(m))
        self.add_lines(skey[line], inst[line], item, admit[line],
                       SCRIPT[item] * rng.integers(1, 3, line.size))
        return skey

    # -- assembly of the background ------------------------------------------------

    def frames(self) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        return (pl.concat(self.persons), pl.concat(self.settlements), pl.concat(self.lines))


def spread_offsite(settlements: pl.DataFrame, persons: pl.DataFrame, world: World,
                   rng: np.random.Generator) -> pl.DataFrame:
    """Give off-site pharmacy purchases 15-minute slots per pharmacy and day.

    Slot r starts at 08:00 + 15·r minutes, with up to 5 minutes of jitter: any 10
    minutes then hold at most 2 off-site purchases at one pharmacy, far from the
    5 distinct cards of a burst.
    """
    area = pl.DataFrame({"inst": np.arange(len(world.inst_region), dtype=np.int32),
                         "inst_area": [r[:4] for r in world.inst_region]})
    s = (settlements.join(persons.select("person", "region"), on="person", how="left")
         .join(area, on="inst", how="left"))
    offsite = (pl.col("medical_type") == "41") & (pl.col("region").str.slice(0, 4)
                                                   != pl.col("inst_area"))
    day = (pl.col("admit") - T0) // (86_400 * US)
    s = s.with_columns(day=day, off=offsite).sort("skey")
    slot = pl.int_range(pl.len()).over(["inst", "day", "off"])
    s = s.with_columns(slot=slot, jitter=pl.Series(rng.integers(0, 300, s.height) * US))
    if s.filter(pl.col("off") & (pl.col("slot") >= 48)).height:
        raise RuntimeError("too many off-site purchases at one pharmacy in a day")
    new = (T0 + pl.col("day") * (86_400 * US) + (8 * H + 900 * pl.col("slot")) * US
           + pl.col("jitter"))
    s = s.with_columns(admit=pl.when(pl.col("off")).then(new).otherwise(pl.col("admit")))
    return s.with_columns(settle=pl.when(pl.col("medical_type") == "41")
                          .then(pl.col("admit") + 60 * US).otherwise(pl.col("settle"))
                          ).select(list(SETTLEMENT_SCHEMA))


def build_background(world: World, rng: np.random.Generator, scale: float) -> Background:
    """Every kind of care, sized so that scale 1 gives about a million fee lines."""
    bg = Background(world, rng)

    def size(n: float) -> int:
        return max(1, round(n * scale))

    bg.inpatients(size(10_500), size(100))
    ambulatory = bg.new_persons(size(50_000))
    n_visits = max(size(52_000), N_DAYS)
    day = rng.integers(0, N_DAYS, n_visits)
    day[:N_DAYS] = np.arange(N_DAYS)  # a visit on every day pins the analysis window
    visits = bg.outpatient(rng.choice(ambulatory, n_visits), bg.hospital_choice(n_visits), day)
    bg.reversible.append(visits[N_DAYS:])
    chronic = rng.choice(ambulatory, size(5_000), replace=False)
    bg.chronic(chronic, bg.hospital_choice(chronic.size))
    dialysis = bg.new_persons(size(30))
    bg.dialysis(dialysis, bg.hospital_choice(dialysis.size))
    buyers = rng.choice(ambulatory, size(16_000), replace=False)
    bg.reversible.append(bg.pharmacy(buyers, world.pharmacies))
    # Local insured persons treated elsewhere (异地就医, outbound): one outside area each.
    for hospitals, pharmacies in world.outside.values():
        outbound = bg.new_persons(size(200), offsite_share=0)
        bg.outpatient(outbound, rng.choice(hospitals, outbound.size),
                      rng.integers(0, N_DAYS, outbound.size))
        bg.pharmacy(outbound, pharmacies)
    return bg
