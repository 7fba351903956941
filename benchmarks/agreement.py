"""Do the baseline and the engine flag the same things?

A hit is named by its rule's key (``emit.key`` in the rule's YAML: the fields that
tell its suspicions apart). The baseline queries return those key columns under the
same names, so both sides reduce to the same stable suspicion id
(``fraudscreen.suspicion.suspicion_id``): equal ids are equal keys. For the hits both
sides found, ``amount_at_risk`` is compared too, in fen.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import polars as pl

from fraudscreen.rule import Rule
from fraudscreen.suspicion import suspicion_id

SHOWN = 5  # examples of disagreement kept per rule and side
FEN = Decimal("0.01")


def fen(value) -> Decimal:
    """An amount as the engine reports it: ≥ 0, rounded half away from zero to fen."""
    return max(Decimal(str(value)), Decimal(0)).quantize(FEN, rounding=ROUND_HALF_UP)


def baseline_hits(rule: Rule, path: Path) -> dict[str, dict]:
    """Suspicion id → the baseline row (its key values and amount)."""
    rows = pl.read_parquet(path).to_dicts()
    return {suspicion_id(rule.id, rule.version, [row[k] for k in rule.emit.key]): row
            for row in rows}


def engine_hits(suspicions: pl.DataFrame, rule: Rule) -> dict[str, dict]:
    mine = suspicions.filter(pl.col("rule_id") == rule.id)
    return {row["suspicion_id"]: row for row in mine.to_dicts()}


def _engine_example(row: dict) -> dict:
    keep = ("settlement_id", "person_id", "institution_id", "item_code", "period_start",
            "amount_at_risk", "message")
    return {k: str(row[k]) for k in keep if row.get(k) is not None}


def _baseline_example(row: dict) -> dict:
    return {k: str(v) for k, v in row.items()}


def compare(rule: Rule, suspicions: pl.DataFrame, baseline: Path) -> dict:
    """Agreement of one rule: counts, verdicts and a few examples of each difference."""
    ours, theirs = engine_hits(suspicions, rule), baseline_hits(rule, baseline)
    only_engine = sorted(set(ours) - set(theirs))
    only_baseline = sorted(set(theirs) - set(ours))
    amounts_differ = sorted(i for i in set(ours) & set(theirs)
                            if fen(ours[i]["amount_at_risk"]) != fen(theirs[i]["amount_at_risk"]))
    return {
        "engine_hits": len(ours),
        "baseline_hits": len(theirs),
        "keys_agree": not only_engine and not only_baseline,
        "amounts_agree": not amounts_differ,
        "only_engine": [_engine_example(ours[i]) for i in only_engine[:SHOWN]],
        "only_baseline": [_baseline_example(theirs[i]) for i in only_baseline[:SHOWN]],
        "amount_differences": [
            {**_engine_example(ours[i]), "baseline_amount": str(theirs[i]["amount_at_risk"])}
            for i in amounts_differ[:SHOWN]],
        "counts": {"only_engine": len(only_engine), "only_baseline": len(only_baseline),
                   "amount_differences": len(amounts_differ)},
    }
