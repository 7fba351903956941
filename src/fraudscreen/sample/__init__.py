"""``fraudscreen sample``: a synthetic prefecture (宁德, pooling area 3509) with known answers.

Half a year (2024-01-01 … 2024-06-30) of inpatient stays, outpatient and chronic
visits, dialysis and pharmacy purchases, in the contract's six data tables, plus
``truth/truth.csv``: for every built-in sub-rule, injected cases that must be found
(``positive``) and near misses that must not be (``decoy``).

The background is clean by construction (see ``background``), so every suspicion
the engine raises outside the truth's positives is a false positive. Scale 1 is
about a million fee lines; the number of institutions and of injected case sets
grow with the scale. The same seed gives the same bytes.

Layout: ``reference`` (fixed lists), ``world`` (institutions, prices),
``background`` (bulk clean care), ``draft`` + ``cases`` (injected cases and their
truth), ``assemble`` (contract tables).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fraudscreen.sample.assemble import build_tables
from fraudscreen.sample.background import build_background
from fraudscreen.sample.cases import inject
from fraudscreen.sample.draft import Draft
from fraudscreen.sample.world import build_world

TABLES = ("settlements", "fee_lines", "persons", "institutions", "catalog", "purchases")
TRUTH_README = Path(__file__).with_name("truth_readme.md")


@dataclass(frozen=True)
class Summary:
    rows: dict[str, int]
    truth: dict[tuple[str, str], int]  # (rule_id, expected) -> cases
    data_dir: Path
    truth_dir: Path


def copies_for(scale: float) -> int:
    """Sets of injected cases: one up to scale 0.05, then ten per unit of scale."""
    return max(1, round(10 * scale))


def generate(out: Path, scale: float = 1.0, seed: int = 7,
             truth_dir: Path | None = None) -> Summary:
    """Write the six tables to ``out`` and the truth to ``truth_dir`` (default OUT/../truth)."""
    if not scale > 0:
        raise ValueError(f"scale must be positive, not {scale}")
    out = Path(out)
    truth_dir = Path(truth_dir) if truth_dir is not None else out.absolute().parent / "truth"
    _check_new(out, set(), "the sample's tables")
    _check_new(truth_dir, {"truth.csv", "README.md"}, "the truth folder (--truth)")
    rng = np.random.default_rng(seed)
    world = build_world(scale, rng)
    bg = build_background(world, rng, scale)
    draft = Draft(world, rng, first_person=bg.gender.size, first_skey=bg.n_settlements)
    inject(draft, copies_for(scale))
    tables, truth = build_tables(world, bg, draft, rng)

    out.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        tables[name].write_parquet(out / f"{name}.parquet", compression="zstd",
                                   compression_level=3, statistics=True,
                                   row_group_size=1_000_000)
    truth_dir.mkdir(parents=True, exist_ok=True)
    (truth_dir / "truth.csv").write_text("\ufeff" + truth.write_csv(), encoding="utf-8")
    (truth_dir / "README.md").write_text(TRUTH_README.read_text(encoding="utf-8"),
                                         encoding="utf-8")
    counts = truth.group_by("rule_id", "expected").len().iter_rows()
    return Summary({n: tables[n].height for n in TABLES},
                   {(r, e): n for r, e, n in counts}, out, truth_dir)


def _check_new(folder: Path, own: set[str], what: str) -> None:
    """Refuse to write over a folder that holds anything but ``own`` files: a site's data
    folder has the sample's table names, and would be replaced without a word."""
    if folder.is_file():
        raise ValueError(f"{folder} is a file; name a new or empty folder for {what}")
    if folder.is_dir() and any(f.name not in own for f in folder.iterdir()):
        raise ValueError(f"{folder} is not empty; name a new or empty folder for {what} "
                         "(a sample never writes over other files)")
