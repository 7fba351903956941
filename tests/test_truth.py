"""Every injected case of every family is found, and no decoy is flagged.

The generator injects positives of every sub-rule and decoys just outside each one
(gap 16 days, exactly 10 % over stock, an 11-minute burst, a reversed readmission …)
and writes them to a truth file; this scores a run against it.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from fraudscreen.ingest import load_folder
from fraudscreen.ruleset import RuleSet
from fraudscreen.sample import generate
from fraudscreen.screen import make_engine, screen
from fraudscreen.truth import score, table

ROOT = Path(__file__).resolve().parent.parent


def screened(data: Path) -> pl.DataFrame:
    engine = make_engine("duckdb")
    try:
        with load_folder(data) as ingestion:
            return screen(ingestion.tables, RuleSet.load(), engine).suspicions
    finally:
        engine.close()


def assert_perfect(data: Path, truth: Path) -> None:
    scores = score(screened(data), truth)
    report = table(scores)
    print(report)
    assert {s.rule_id for s in scores} >= {r.id for r in RuleSet.load().rules}
    for s in scores:
        assert s.positives > 0, f"no injected positive for {s.rule_id}\n{report}"
        assert s.found == s.positives, f"{s.rule_id} missed positives\n{report}"
        assert s.decoys_flagged == 0, f"{s.rule_id} flagged a decoy\n{report}"
        assert s.suspicions == s.true_suspicions, f"{s.rule_id} false positives\n{report}"


def test_committed_sample_claims():
    data = ROOT / "sample_claims" / "data"
    if not data.exists():
        pytest.skip("sample_claims/ not generated yet")
    assert_perfect(data, ROOT / "sample_claims" / "truth" / "truth.csv")


def test_fresh_sample_with_another_seed(tmp_path):
    generate(tmp_path / "data", scale=0.05, seed=20261123)
    assert_perfect(tmp_path / "data", tmp_path / "truth" / "truth.csv")


@pytest.mark.slow
@pytest.mark.parametrize("scale", [1, 5])
def test_large_samples(tmp_path, scale):
    generate(tmp_path / "data", scale=scale, seed=11)
    assert_perfect(tmp_path / "data", tmp_path / "truth" / "truth.csv")


def test_a_truth_file_in_a_folder_named_with_brackets_is_read(tmp_path):
    """'[' is a glob to Polars: a truth file under sample[2024]/ was 'expanded paths were
    empty'."""
    import shutil

    from fraudscreen.suspicion import SCHEMA

    truth = tmp_path / "sample[2024]" / "truth.csv"
    truth.parent.mkdir()
    shutil.copy(ROOT / "sample_claims" / "truth" / "truth.csv", truth)
    scores = score(pl.DataFrame(schema=SCHEMA), truth)
    assert scores and all(s.found == 0 and s.positives > 0 for s in scores)
