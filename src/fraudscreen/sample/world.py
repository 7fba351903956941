"""The fixed scenery of a synthetic prefecture: institutions and the catalogue.

Institution counts grow with ``scale`` so that each institution sees about the
same volume at every scale: the background stays clean (e.g. never five off-site
cards at one pharmacy in ten minutes, no monthly spike of a watched item) for
the same reasons at scale 0.01 and at scale 20.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import polars as pl

from fraudscreen.sample.reference import (
    HOSPITAL_KINDS,
    ITEMS,
    LOCAL_NAMES,
    LOCAL_REGIONS,
    OUTSIDE_AREAS,
    PHARMACY_BRANDS,
)

# Service items are cheaper at lower-level hospitals; drugs and materials cost the same
# everywhere (零差率). Index: 0 pharmacy, 1..3 hospital level.
LEVEL_FACTOR = {0: Decimal("1"), 1: Decimal("0.9"), 2: Decimal("0.95"), 3: Decimal("1")}
SERVICE_CATEGORIES = {"01", "02", "03", "04", "05", "06", "07", "12", "13", "14"}


def units(value: str | Decimal | int) -> int:
    """A quantity or price as an integer number of 1/10,000 (the contract's 4 decimals)."""
    return int(Decimal(value) * 10_000)


@dataclass
class World:
    inst_id: list[str]
    inst_name: list[str]
    inst_kind: list[str]
    inst_level: np.ndarray  # 0 for pharmacies
    inst_region: list[str]
    hospitals: np.ndarray  # local hospital indices
    hospital_weight: np.ndarray  # volume share of each local hospital
    pharmacies: np.ndarray  # local pharmacy indices
    outside: dict[str, tuple[np.ndarray, np.ndarray]]  # area -> (hospitals, pharmacies)
    price: np.ndarray  # [level 0..3, item] unit price in 1/10,000 yuan
    item_index: dict[str, int]  # item name -> index

    def item(self, name: str) -> int:
        return self.item_index[name]

    def pool(self, name: str) -> np.ndarray:
        return np.array([i for i, it in enumerate(ITEMS) if name in it.pools], dtype=np.int64)

    def institutions_frame(self) -> pl.DataFrame:
        level = [str(v) if v else None for v in self.inst_level.tolist()]
        return pl.DataFrame({"institution_id": self.inst_id, "name": self.inst_name,
                             "kind": self.inst_kind, "level": level,
                             "region": self.inst_region})

    def catalog_frame(self) -> pl.DataFrame:
        return pl.DataFrame({
            "item_code": [it.code for it in ITEMS],
            "item_name": [it.name for it in ITEMS],
            "generic_name": [it.generic for it in ITEMS],
            "fee_category": [it.category for it in ITEMS],
            "price_cap": [units(it.price) if it.capped else None for it in ITEMS],
            "gender_limit": [it.gender for it in ITEMS],
            "max_daily_quantity": [units(it.daily_max) if it.daily_max else None
                                   for it in ITEMS],
        })


def build_world(scale: float, rng: np.random.Generator) -> World:
    n_hosp = max(10, round(30 * scale))
    n_pharm = max(10, round(60 * scale))
    ids, names, kinds, levels, regions = [], [], [], [], []
    seqs: Counter[str] = Counter()

    def add(prefix: str, region: str, kind: str, level: int, name: str) -> int:
        seqs[prefix + region] += 1
        ids.append(f"{prefix}{region}{seqs[prefix + region]:05d}")
        names.append(name)
        kinds.append(kind)
        levels.append(level)
        regions.append(region)
        return len(ids) - 1

    hosp_levels = np.where(np.arange(n_hosp) % 10 == 0, 3,
                           np.where(np.arange(n_hosp) % 10 < 4, 2, 1))
    hosp_regions = rng.choice(LOCAL_REGIONS, size=n_hosp)
    hospitals = [add("H", r, "hospital", int(lv),
                     f"宁德{LOCAL_NAMES[r]}第{k + 1}{HOSPITAL_KINDS[str(lv)]}")
                 for k, (r, lv) in enumerate(zip(hosp_regions, hosp_levels, strict=True))]
    pharm_regions = rng.choice(LOCAL_REGIONS, size=n_pharm)
    pharmacies = [add("P", r, "pharmacy", 0,
                      f"{PHARMACY_BRANDS[k % len(PHARMACY_BRANDS)]}{LOCAL_NAMES[r]}第{k + 1}分店")
                  for k, r in enumerate(pharm_regions)]
    outside = {}
    n_out = max(2, round(3 * scale))
    for area, (region, city) in OUTSIDE_AREAS.items():
        oh = [add("H", region, "hospital", 3, f"{city}第{k + 1}医院") for k in range(n_out)]
        op = [add("P", region, "pharmacy", 0,
                  f"{city}{PHARMACY_BRANDS[k % len(PHARMACY_BRANDS)]}第{k + 1}分店")
              for k in range(n_out)]
        outside[area] = (np.array(oh), np.array(op))

    weight = np.array([{3: 8.0, 2: 3.0, 1: 1.0}[int(lv)] for lv in hosp_levels])
    price = np.zeros((4, len(ITEMS)), dtype=np.int64)
    for j, it in enumerate(ITEMS):
        for level, factor in LEVEL_FACTOR.items():
            p = Decimal(it.price)
            if it.category in SERVICE_CATEGORIES:
                p = (p * factor).quantize(Decimal("0.01"))
            price[level, j] = units(p)
    return World(ids, names, kinds, np.array(levels), regions, np.array(hospitals),
                 weight / weight.sum(), np.array(pharmacies), outside, price,
                 {it.name: j for j, it in enumerate(ITEMS)})
