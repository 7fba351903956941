"""Integrity counts: rows that are kept but that no rule can use, or can misjudge.

Ingestion quarantines what cannot be read. What reads well but makes no sense to the
rules (a fee line of no settlement, a gender `M`, a region `3509`) is kept, counted
here in ``run.json`` (``integrity``) and warned of on the console, so a run never
loses it silently. Each count is one SQL statement over the engine's input tables,
transpiled to the engine's dialect like a rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fraudscreen.compiler import transpile


@dataclass(frozen=True)
class Check:
    sql: str  # one row, one column ``n``
    warning: str | None = None  # what the console says when n > 0 ({n}: the count)


CHECKS: dict[str, Check] = {
    "fee_lines_without_settlement": Check(
        "SELECT count(*) AS n FROM input_fee_lines AS f WHERE NOT EXISTS "
        "(SELECT 1 FROM input_settlements AS s WHERE s.settlement_id = f.settlement_id)",
        "{n:,} fee line(s) name a settlement that is not among the settlements kept (not in "
        "the file, quarantined, or its id written otherwise, 00012 against 12): no rule can "
        "use them, and a stay that lost its lines may read as idle"),
    "reversals_of_unknown_settlements": Check(
        "SELECT count(*) AS n FROM input_settlements AS r WHERE r.reversed_settlement_id "
        "IS NOT NULL AND NOT EXISTS (SELECT 1 FROM input_settlements AS s "
        "WHERE s.settlement_id = r.reversed_settlement_id)",
        "{n:,} reversal row(s) name a settlement that is not among the settlements kept (not "
        "in the file, quarantined, or its id written otherwise, 766.0 against 766)"),
    # A rule whose amount is the fund's payment takes it at most at the bill (the fund
    # cannot have paid more): the message shows both, and this says why they differ.
    "settlements_fund_above_total": Check(
        "SELECT count(*) AS n FROM input_settlements WHERE fund_amount > total_amount "
        "AND total_amount >= 0",
        "{n:,} settlement(s) have a fund_amount above their total_amount (the fund paid "
        "more than was billed?): amounts at risk taken from the fund's payment are capped "
        "at the bill"),
    # Not a fault: how many settlements reversals took out of every rule.
    # (reversed_settlement_id IS NOT NULL in the subqueries: as in sources'
    # effective_settlements, lest Spark shuffle every NULL to one task.)
    "removed_by_reversal": Check(
        "SELECT count(*) AS n FROM input_settlements AS s WHERE s.reversed_settlement_id "
        "IS NOT NULL OR EXISTS (SELECT 1 FROM input_settlements AS r "
        "WHERE r.reversed_settlement_id IS NOT NULL "
        "AND r.reversed_settlement_id = s.settlement_id) OR EXISTS (SELECT 1 FROM "
        "input_quarantined_reversals AS q WHERE q.reversed_settlement_id IS NOT NULL "
        "AND q.reversed_settlement_id = s.settlement_id)"),
    # A database's default date (1900-01-01) reads as a date; it stretches the window.
    "fee_lines_before_2000": Check(
        "SELECT count(*) AS n FROM input_fee_lines WHERE charge_time < TIMESTAMP '2000-01-01'",
        "{n:,} fee line(s) are charged before 2000 (a placeholder date such as 1900-01-01?): "
        "they stretch the analysis window, and monthly growth judges every month from the "
        "first; fix the export or run with --from/--to"),
    # A mistyped year (2014 for 2024) stretches the window just as well, and no fee line is
    # charged a month before the first admission or after the last settlement.
    "fee_lines_outside_settlements": Check(
        "SELECT count(*) AS n FROM input_fee_lines WHERE charge_time < (SELECT "
        "min(admit_time) - INTERVAL 31 DAY FROM input_settlements) OR charge_time > (SELECT "
        "max(settle_time) + INTERVAL 31 DAY FROM input_settlements)",
        "{n:,} fee line(s) are charged more than 31 days before the first admission or after "
        "the last settlement (a mistyped year?): they stretch the analysis window, and "
        "monthly growth judges every month from the first; fix the export or run with "
        "--from/--to"),
    # The contract codes gender 1 or 2 (GB/T 2261.1): `M`, `男` or `0` is kept, but no
    # gender rule can judge it.
    "persons_gender_not_coded": Check(
        "SELECT count(*) AS n FROM input_persons WHERE gender NOT IN ('1', '2')",
        "{n:,} person(s) have a gender other than 1 (male) or 2 (female) (GB/T 2261.1): "
        "no rule judges their gender"),
    "catalog_gender_limit_not_coded": Check(
        "SELECT count(*) AS n FROM input_catalog WHERE gender_limit NOT IN ('1', '2')",
        "{n:,} catalog item(s) have a gender_limit other than 1 or 2: no gender limit is "
        "applied to them"),
    # Only `exclusive` pairs are read: `互斥` or `Exclusive` would silently pair nothing.
    "item_pairs_not_exclusive": Check(
        "SELECT count(*) AS n FROM input_item_pairs WHERE relation IS DISTINCT FROM 'exclusive'",
        "{n:,} item pair(s) have a relation other than 'exclusive': no rule reads them"),
    # Rules select lines by category (bed fees 01, drugs and consumables 08-11): a site's
    # own code (`001`, `B01`) is kept, but those rules pass over the line.
    "fee_lines_category_not_coded": Check(
        "SELECT count(*) AS n FROM input_fee_lines WHERE fee_category NOT IN "
        f"({', '.join(repr(f'{c:02d}') for c in range(1, 15))})",
        "{n:,} fee line(s) have a fee_category outside 01–14: the rules that select lines by "
        "category (bed fees 01, drugs and consumables 08–11) pass over them"),
    # Rules find stays by medical_type 21 and pharmacy purchases by 41: an export of the
    # labels (普通住院) instead of the codes silences them. Other codes are allowed.
    "settlements_medical_type_not_coded": Check(
        "SELECT coalesce(sum(n), 0) AS n FROM (SELECT medical_type, count(*) AS n FROM "
        "input_settlements GROUP BY medical_type) AS t "
        "WHERE NOT regexp_matches(medical_type, '^[0-9]+$')",
        "{n:,} settlement(s) have a medical_type that is not a numeric code (普通住院 instead "
        "of 21?): the rules find stays by 21 and pharmacy purchases by 41"),
    # A reversal is linked by reversed_settlement_id; an export that shows reversals only
    # by negative amounts has them screened as claims.
    "negative_settlements_not_linked": Check(
        "SELECT count(*) AS n FROM input_settlements "
        "WHERE total_amount < 0 AND reversed_settlement_id IS NULL",
        "{n:,} settlement(s) have a negative total_amount but name no reversed settlement "
        "(reversed_settlement_id): if they are reversals (冲销), they and what they reverse "
        "are screened as claims"),
    # A pooling area is a region's first 4 digits: `3509` or `福州` compares wrongly, and
    # off-site rules judge from it. Each pair of regions is matched once (a few hundred
    # pairs: 0.03 s against 0.2 s for the regex on each of 2.9 M settlements).
    "settlements_region_not_6_digits": Check(
        "SELECT coalesce(sum(n), 0) AS n FROM (SELECT insured_region, visit_region, "
        "count(*) AS n FROM input_settlements GROUP BY insured_region, visit_region) AS r "
        "WHERE NOT regexp_matches(insured_region, '^[0-9]{6}$') "
        "OR NOT regexp_matches(visit_region, '^[0-9]{6}$')",
        "{n:,} settlement(s) have an insured_region or visit_region that is not 6 digits: "
        "pooling areas (their first 4 digits) and so the off-site rules may judge them "
        "wrongly"),
}


def count(engine) -> dict[str, int]:
    """Every count, on an engine whose input tables are registered."""
    return {name: int(engine.query(transpile(check.sql, engine.dialect, pretty=False)).item())
            for name, check in CHECKS.items()}


def count_tables(tables: dict, quarantined_reversals: Sequence[str] = ()) -> dict[str, int]:
    """The counts of ingested tables, without screening (``validate``)."""
    from fraudscreen.engine_duckdb import DuckDBEngine

    engine = DuckDBEngine()
    try:
        engine.register(tables, quarantined_reversals=quarantined_reversals)
        return count(engine)
    finally:
        engine.close()


def warnings(counts: dict[str, int]) -> list[str]:
    """What the counts say, for the console; nothing when all is well."""
    return [check.warning.format(n=counts[name]) for name, check in CHECKS.items()
            if check.warning and counts.get(name)]
