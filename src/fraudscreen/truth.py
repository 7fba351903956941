"""Scoring a run against a generator's truth: recall, precision, decoys touched.

A truth row names a rule and the key fields its suspicion must carry. A positive is
found when a suspicion of that rule has all the row's non-empty fields; a decoy is
violated when one does. Precision counts every suspicion of the rule that matches
no positive (background data is meant to be clean).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

KEYS = ("settlement_id", "institution_id", "person_id", "item_code", "period_start")


@dataclass
class RuleScore:
    rule_id: str
    positives: int
    found: int
    decoys: int
    decoys_flagged: int
    suspicions: int
    true_suspicions: int

    @property
    def recall(self) -> float:
        return self.found / self.positives if self.positives else 1.0

    @property
    def precision(self) -> float:
        return self.true_suspicions / self.suspicions if self.suspicions else 1.0


def _matches(truth_row: dict, suspicions: list[dict]) -> list[int]:
    wanted = {k: truth_row[k] for k in KEYS if truth_row.get(k)}
    return [i for i, s in enumerate(suspicions)
            if all(str(s.get(k) or "") == v for k, v in wanted.items())]


def score(suspicions: pl.DataFrame, truth_csv: Path) -> list[RuleScore]:
    truth = pl.read_csv(truth_csv, infer_schema=False, encoding="utf8",
                        glob=False).fill_null("")
    found = suspicions.with_columns(pl.col("period_start").cast(pl.String))
    scores = []
    for rule_id in sorted(set(truth["rule_id"]) | set(found["rule_id"])):
        rows = truth.filter(pl.col("rule_id") == rule_id).to_dicts()
        hits = found.filter(pl.col("rule_id") == rule_id).to_dicts()
        positives = [r for r in rows if r["expected"] == "positive"]
        decoys = [r for r in rows if r["expected"] == "decoy"]
        true_hits = {i for r in positives for i in _matches(r, hits)}
        scores.append(RuleScore(
            rule_id, len(positives), sum(bool(_matches(r, hits)) for r in positives),
            len(decoys), sum(bool(_matches(r, hits)) for r in decoys), len(hits),
            len(true_hits)))
    return scores


def table(scores: list[RuleScore]) -> str:
    """A Markdown table of the scores, with per-family totals."""
    lines = ["| rule | positives | found | recall | suspicions | precision | decoys flagged |",
             "|---|---|---|---|---|---|---|"]
    for s in scores:
        lines.append(f"| {s.rule_id} | {s.positives} | {s.found} | {s.recall:.0%} | "
                     f"{s.suspicions} | {s.precision:.0%} | {s.decoys_flagged}/{s.decoys} |")
    return "\n".join(lines)
