"""The sample generator: deterministic, in the contract, and its truth is true.

The rule checks below are written by hand in DuckDB SQL from the spec
(``rule-families.md``), independently of the engine's rules: each must flag exactly
the truth's positives of its rule — so the injected positives are real, the decoys
really fall just outside, and the background is clean.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import duckdb
import polars as pl
import pytest
import yaml

from fraudscreen.contract import INPUT_TABLES
from fraudscreen.sample import TABLES, generate

ROOT = Path(__file__).resolve().parent.parent
SUB_RULES = (
    "split_hospitalisation.readmission", "bed_holding.idle_stay",
    "bed_holding.elsewhere_during_stay", "duplicate_charge.repeated_line",
    "duplicate_charge.bed_days_beyond_stay", "duplicate_charge.daily_cap",
    "duplicate_charge.exclusive_items", "duplicate_charge.over_price_cap",
    "item_substitution.billed_more_than_bought", "item_substitution.wrong_gender",
    "key_item_growth.monthly_growth", "pharmacy_card_skimming.offsite_burst",
    "pharmacy_card_skimming.hoarding", "pharmacy_card_skimming.impossible_travel",
)
TRUTH_COLUMNS = ["rule_id", "expected", "settlement_id", "institution_id", "person_id",
                 "item_code", "period_start", "note"]
NURSING = ("001201000010000", "001201000020000", "001201000030000", "001201000040000")
EXCLUSIVE = [(a, b) for i, a in enumerate(NURSING) for b in NURSING[i + 1:]] + [
    ("003104000010000", "003104000020000")]

# Effective data: reversal rows and the settlements they name take part in nothing.
VIEWS = """
CREATE VIEW s AS
SELECT *, CAST(admit_time AS DATE) AS admit_date, CAST(discharge_time AS DATE) AS discharge_date,
       substr(visit_region, 1, 4) AS visit_area,
       substr(insured_region, 1, 4) <> substr(visit_region, 1, 4) AS off_site
FROM settlements
WHERE reversed_settlement_id IS NULL
  AND settlement_id NOT IN (SELECT reversed_settlement_id FROM settlements
                            WHERE reversed_settlement_id IS NOT NULL);
CREATE VIEW f AS
SELECT l.*, CAST(l.charge_time AS DATE) AS charge_date, s.person_id, s.institution_id,
       s.medical_type, s.admit_time
FROM fee_lines AS l JOIN s USING (settlement_id);
CREATE VIEW stays AS
SELECT *, discharge_date - admit_date AS los,
       greatest(discharge_date - admit_date, 1) AS bed_days
FROM s WHERE medical_type = '21';
"""

# rule -> (key columns, query returning them): the spec, read independently.
HAND_WRITTEN = {
    "split_hospitalisation.readmission": (("settlement_id", "person_id", "institution_id"), """
        WITH pairs AS (
            SELECT b.settlement_id, b.person_id, b.institution_id,
                   b.admit_date - a.discharge_date AS gap,
                   substr(a.diagnosis_code, 1, 3) AS cat_a, substr(b.diagnosis_code, 1, 3) AS cat_b,
                   row_number() OVER (PARTITION BY b.settlement_id
                                      ORDER BY a.discharge_time DESC) AS nearest
            FROM stays a JOIN stays b
              ON a.person_id = b.person_id AND a.institution_id = b.institution_id
             AND a.admit_time < b.admit_time)
        SELECT settlement_id, person_id, institution_id FROM pairs
        WHERE nearest = 1 AND gap BETWEEN 0 AND 15 AND cat_a = cat_b
          AND cat_a NOT IN ('Z51', 'Z49', 'O80', 'O81', 'O82', 'O83', 'O84')"""),
    "bed_holding.idle_stay": (("settlement_id",), """
        WITH days AS (
            SELECT settlement_id, los, CAST(unnest(generate_series(
                       CAST(admit_date AS TIMESTAMP), CAST(discharge_date - 1 AS TIMESTAMP),
                       INTERVAL 1 DAY)) AS DATE) AS d
            FROM stays WHERE los >= 3),
        fees AS (SELECT settlement_id, charge_date AS d,
                        bool_and(fee_category IN ('01', '02', '07')) AS basic
                 FROM f GROUP BY ALL)
        SELECT settlement_id FROM days LEFT JOIN fees USING (settlement_id, d)
        GROUP BY settlement_id, los
        HAVING count(*) FILTER (WHERE coalesce(basic, true)) >= 3
           AND count(*) FILTER (WHERE coalesce(basic, true)) >= los * 0.5"""),
    "bed_holding.elsewhere_during_stay": (("settlement_id",), """
        SELECT DISTINCT st.settlement_id FROM stays st JOIN s o
          ON o.person_id = st.person_id AND o.institution_id <> st.institution_id
         AND o.medical_type IN ('11', '14', '41')
         AND o.admit_date > st.admit_date AND o.admit_date < st.discharge_date"""),
    "duplicate_charge.repeated_line": (("settlement_id", "item_code"), """
        SELECT DISTINCT settlement_id, item_code FROM f
        GROUP BY settlement_id, item_code, charge_time, quantity, unit_price
        HAVING count(*) > 1"""),
    "duplicate_charge.bed_days_beyond_stay": (("settlement_id",), """
        SELECT st.settlement_id FROM stays st JOIN f USING (settlement_id)
        WHERE f.fee_category = '01'
        GROUP BY st.settlement_id, st.bed_days HAVING sum(f.quantity) > st.bed_days"""),
    "duplicate_charge.daily_cap": (("settlement_id", "item_code"), """
        SELECT DISTINCT f.settlement_id, f.item_code FROM f JOIN catalog c USING (item_code)
        WHERE c.max_daily_quantity IS NOT NULL
        GROUP BY f.settlement_id, f.item_code, f.charge_date, c.max_daily_quantity
        HAVING sum(f.quantity) > c.max_daily_quantity"""),
    "duplicate_charge.exclusive_items": (("settlement_id", "item_code"), """
        WITH d AS (SELECT settlement_id, item_code, charge_date, sum(amount) AS amt
                   FROM f GROUP BY ALL)
        SELECT DISTINCT a.settlement_id, a.item_code
        FROM d a JOIN d b USING (settlement_id, charge_date)
        JOIN pairs p ON (p.a = a.item_code AND p.b = b.item_code)
                     OR (p.b = a.item_code AND p.a = b.item_code)
        WHERE a.amt < b.amt OR (a.amt = b.amt AND a.item_code < b.item_code)"""),
    "duplicate_charge.over_price_cap": (("settlement_id", "item_code"), """
        SELECT DISTINCT f.settlement_id, f.item_code FROM f JOIN catalog c USING (item_code)
        WHERE c.price_cap IS NOT NULL AND f.unit_price > c.price_cap * 1.01"""),
    "item_substitution.billed_more_than_bought": (("institution_id", "item_code"), """
        WITH w AS (SELECT min(charge_date) AS ws, max(charge_date) AS we FROM f),
        billed AS (SELECT institution_id, item_code, sum(quantity) AS q FROM f
                   WHERE fee_category IN ('08', '09', '10', '11') GROUP BY ALL),
        bought AS (SELECT institution_id, item_code, sum(quantity) AS q FROM purchases, w
                   WHERE purchase_date BETWEEN ws - 30 AND we GROUP BY ALL)
        SELECT b.institution_id, b.item_code
        FROM billed b LEFT JOIN bought p USING (institution_id, item_code)
        WHERE b.institution_id IN (SELECT institution_id FROM purchases)
          AND b.q > coalesce(p.q, 0) * 1.1"""),
    "item_substitution.wrong_gender": (("settlement_id", "item_code"), """
        SELECT DISTINCT f.settlement_id, f.item_code
        FROM f JOIN catalog c USING (item_code) JOIN persons p USING (person_id)
        WHERE c.gender_limit IS NOT NULL AND p.gender <> c.gender_limit"""),
    "key_item_growth.monthly_growth": (("institution_id", "item_code", "period_start"), """
        WITH watched AS (
            SELECT DISTINCT f.item_code FROM f JOIN catalog c USING (item_code), watch w
            WHERE c.generic_name = w.name OR contains(f.item_name, w.name)),
        m AS (SELECT institution_id, item_code, date_trunc('month', charge_date) AS mon,
                     sum(amount) AS v
              FROM f WHERE item_code IN (SELECT item_code FROM watched) GROUP BY ALL)
        SELECT m.institution_id, m.item_code, strftime(m.mon, '%Y-%m-%d')
        FROM m LEFT JOIN m p ON p.institution_id = m.institution_id
                            AND p.item_code = m.item_code AND p.mon = m.mon - INTERVAL 1 MONTH
        WHERE m.mon - INTERVAL 1 MONTH >= (SELECT min(date_trunc('month', charge_date)) FROM f)
          AND m.v >= coalesce(p.v, 0) * 1.5 AND m.v - coalesce(p.v, 0) >= 10000"""),
    "pharmacy_card_skimming.offsite_burst": (("institution_id", "settlement_id"), """
        WITH o AS (SELECT * FROM s WHERE medical_type = '41' AND off_site),
        starts AS (
            SELECT a.institution_id, a.settlement_id, a.admit_time FROM o a JOIN o b
              ON a.institution_id = b.institution_id
             AND b.admit_time BETWEEN a.admit_time AND a.admit_time + INTERVAL 10 MINUTE
            GROUP BY ALL HAVING count(DISTINCT b.person_id) >= 5)
        SELECT institution_id, arg_min(settlement_id, admit_time) FROM starts
        GROUP BY institution_id, CAST(admit_time AS DATE)"""),
    "pharmacy_card_skimming.hoarding": (("person_id", "item_code", "settlement_id"), """
        WITH p AS (SELECT DISTINCT person_id, item_code, settlement_id, admit_time,
                          CAST(admit_time AS DATE) AS d
                   FROM f WHERE medical_type = '41'),
        ends AS (SELECT a.person_id, a.item_code, a.settlement_id, a.admit_time FROM p a JOIN p b
                   ON a.person_id = b.person_id AND a.item_code = b.item_code
                  AND b.d BETWEEN a.d - 29 AND a.d
                 GROUP BY ALL HAVING count(*) >= 4)
        SELECT person_id, item_code, arg_max(settlement_id, admit_time) FROM ends
        GROUP BY person_id, item_code"""),
    "pharmacy_card_skimming.impossible_travel": (("person_id", "settlement_id"), """
        SELECT DISTINCT b.person_id, b.settlement_id FROM s a JOIN s b
          ON a.person_id = b.person_id AND a.visit_area <> b.visit_area
         AND (a.admit_time < b.admit_time
              OR (a.admit_time = b.admit_time AND a.settlement_id < b.settlement_id))
         AND b.admit_time - a.admit_time < INTERVAL 3 HOUR"""),
}


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    summary = generate(root / "data", scale=0.02, seed=11)
    con = duckdb.connect()
    for name in TABLES:
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM "
                    f"read_parquet('{(root / 'data' / name).as_posix()}.parquet')")
    con.execute(VIEWS)
    pairs = pl.DataFrame(EXCLUSIVE, schema=["a", "b"], orient="row")
    con.register("pairs", pairs.to_arrow())
    watchlist = yaml.safe_load((ROOT / "drug_watchlists" / "zhangye_2023.yaml").read_text("utf-8"))
    names = sorted({n for e in watchlist["entries"] for n in e.get("generic_names") or ()})
    con.register("watch", pl.DataFrame({"name": names}).to_arrow())
    truth = pl.read_csv(root / "truth" / "truth.csv", infer_schema=False)
    return SimpleNamespace(root=root, summary=summary, con=con, truth=truth,
                           tables={n: pl.read_parquet(root / "data" / f"{n}.parquet")
                                   for n in TABLES})


def _truth_keys(truth: pl.DataFrame, rule: str, expected: str, columns) -> set[tuple]:
    rows = truth.filter((pl.col("rule_id") == rule) & (pl.col("expected") == expected))
    return set(rows.select(columns).iter_rows())


def _case(sample, rule: str, note_part: str) -> dict:
    rows = sample.truth.filter((pl.col("rule_id") == rule)
                               & pl.col("note").str.contains(note_part, literal=True))
    assert rows.height >= 1, f"no {rule} case noted {note_part!r}"
    return rows.row(0, named=True)


# -- determinism and layout ----------------------------------------------------------


def test_same_seed_same_bytes_and_another_seed_differs(tmp_path):
    first = generate(tmp_path / "a" / "data", scale=0.01, seed=5)
    generate(tmp_path / "b" / "data", scale=0.01, seed=5)
    generate(tmp_path / "c" / "data", scale=0.01, seed=6)
    a, b, c = (_digests(tmp_path / k) for k in "abc")
    assert set(a) == {f"{n}.parquet" for n in TABLES} | {"truth.csv", "README.md"}
    assert a == b
    assert a["fee_lines.parquet"] != c["fee_lines.parquet"]
    assert a["truth.csv"] != c["truth.csv"]
    assert first.truth_dir == (tmp_path / "a" / "truth").absolute()


def test_a_sample_never_writes_over_a_folder_holding_other_files(tmp_path):
    """Found in review (session 11): `sample --out` a site's data folder replaced its
    settlements.parquet and fee_lines.parquet without a word."""
    data = tmp_path / "site" / "data"
    data.mkdir(parents=True)
    (data / "settlements.parquet").write_bytes(b"the site's own")
    with pytest.raises(ValueError, match="is not empty; name a new or empty folder"):
        generate(data, scale=0.01, seed=5)
    assert (data / "settlements.parquet").read_bytes() == b"the site's own"
    assert not (tmp_path / "site" / "truth").exists()
    other = tmp_path / "other"
    generate(other / "data", scale=0.01, seed=5)  # a new folder; its truth beside it
    with pytest.raises(ValueError, match="is not empty"):
        generate(other / "data", scale=0.01, seed=5)
    (other / "truth" / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ValueError, match=r"the truth folder \(--truth\)"):
        generate(tmp_path / "new" / "data", scale=0.01, seed=5, truth_dir=other / "truth")


def test_tables_have_the_contract_columns_and_types(sample):
    for name, frame in sample.tables.items():
        table = INPUT_TABLES[name]
        assert frame.columns == table.column_names, name
        for column in table.columns:
            assert frame.schema[column.name] == column.type.polars, (name, column.name)
            if not column.nullable and name != "catalog":
                assert frame[column.name].null_count() == 0, (name, column.name)
        if table.key:
            assert frame.select(table.key).is_duplicated().sum() == 0, name


def test_truth_file_names_existing_rows_with_the_right_keys(sample):
    raw = (sample.root / "truth" / "truth.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    truth = sample.truth
    assert truth.columns == TRUTH_COLUMNS
    assert set(truth["expected"]) == {"positive", "decoy"}
    assert set(truth["rule_id"]) == set(SUB_RULES)
    counts = truth.group_by("rule_id", "expected").len()
    assert counts.filter(pl.col("expected") == "positive")["len"].min() >= 3
    assert counts.filter(pl.col("expected") == "decoy")["len"].min() >= 3
    assert truth["note"].null_count() == 0
    t = sample.tables
    for column, table in (("settlement_id", "settlements"), ("person_id", "persons"),
                          ("institution_id", "institutions"), ("item_code", "catalog")):
        used = set(truth[column].drop_nulls())
        assert used <= set(t[table][column]), column
    # every row of a rule fills the same key fields
    filled = truth.group_by("rule_id").agg(
        [pl.col(c).is_null().n_unique().alias(c) for c in TRUTH_COLUMNS[2:7]])
    assert filled.select(pl.exclude("rule_id").max()).row(0) == (1,) * 5


def test_money_is_consistent_and_reversals_mirror_their_settlement(sample):
    con = sample.con
    assert con.execute("""
        SELECT count(*) FROM settlements s
        JOIN (SELECT settlement_id, sum(amount) AS t FROM fee_lines GROUP BY 1) l
          USING (settlement_id) WHERE s.total_amount <> l.t""").fetchall()[0][0] == 0
    assert con.execute("""SELECT count(*) FROM fee_lines
                      WHERE amount <> round(quantity * unit_price, 2)""").fetchall()[0][0] == 0
    reversals = con.sql("""
        SELECT r.total_amount + o.total_amount AS net, r.fund_amount + o.fund_amount AS fund,
               r.person_id = o.person_id AND r.admit_time = o.admit_time AS same,
               r.settle_time > o.settle_time AS later
        FROM settlements r JOIN settlements o ON o.settlement_id = r.reversed_settlement_id
    """).pl()
    n = sample.tables["settlements"]["reversed_settlement_id"].drop_nulls().len()
    assert reversals.height == n > 0
    assert (reversals["net"] == 0).all() and (reversals["fund"] == 0).all()
    assert reversals["same"].all() and reversals["later"].all()


def test_window_is_pinned_and_regions_look_like_ningde(sample):
    lo, hi = sample.con.execute("SELECT min(charge_date), max(charge_date) FROM f").fetchall()[0]
    assert (str(lo), str(hi)) == ("2024-01-01", "2024-06-30")
    persons = sample.tables["persons"]
    offsite = (~persons["insured_region"].str.starts_with("3509")).mean()
    assert 0.05 < offsite < 0.2
    assert set(persons["gender"]) == {"1", "2"}
    inst = sample.tables["institutions"]
    local = inst.filter(pl.col("region").str.starts_with("3509"))
    assert local["institution_id"].str.contains(r"^[HP]3509\d{7}$").all()
    assert set(local["kind"]) == {"hospital", "pharmacy"}


# -- the truth against hand-written rules -------------------------------------------


@pytest.mark.parametrize("rule", SUB_RULES)
def test_hand_written_rule_flags_exactly_the_positives(sample, rule):
    columns, sql = HAND_WRITTEN[rule]
    flagged = set(sample.con.execute(sql).fetchall())
    positives = _truth_keys(sample.truth, rule, "positive", columns)
    decoys = _truth_keys(sample.truth, rule, "decoy", columns)
    assert positives and decoys
    assert flagged - positives == set(), "background or decoy flagged"
    assert positives - flagged == set(), "positive not flagged"
    assert not flagged & decoys


# -- boundary cases, checked in the raw rows -------------------------------------------


def _stays_of(sample, person_id: str) -> pl.DataFrame:
    return (sample.tables["settlements"].filter(pl.col("person_id") == person_id)
            .sort("admit_time"))


def test_readmission_boundaries(sample):
    rule = "split_hospitalisation.readmission"
    for note, gap in (("第15天", 15), ("间隔16天", 16), ("当天再次入院", 0)):
        stays = _stays_of(sample, _case(sample, rule, note)["person_id"])
        first, second = stays.row(0, named=True), stays.row(1, named=True)
        assert (second["admit_time"].date() - first["discharge_time"].date()).days == gap
    reversed_case = _case(sample, rule, "已冲销")
    settlements = sample.tables["settlements"]
    assert reversed_case["settlement_id"] in set(settlements["reversed_settlement_id"])


def test_burst_boundaries(sample):
    rule = "pharmacy_card_skimming.offsite_burst"
    s = sample.tables["settlements"]
    for note, span, offsite_cards in (("恰好相隔10分钟", 10, 5), ("相隔11分钟", 11, 5),
                                      ("只有4名不同", 4, 4)):
        case = _case(sample, rule, note)
        first = s.filter(pl.col("settlement_id") == case["settlement_id"]).row(0, named=True)
        burst = s.filter((pl.col("institution_id") == case["institution_id"])
                         & pl.col("admit_time").is_between(
                             first["admit_time"], first["admit_time"] + pl.duration(minutes=30)))
        assert (burst["admit_time"].max() - first["admit_time"]).total_seconds() == span * 60
        off = burst.filter(pl.col("insured_region").str.slice(0, 4)
                           != pl.col("visit_region").str.slice(0, 4))
        assert off["person_id"].n_unique() == offsite_cards
        assert (burst["medical_type"] == "41").all()


def test_hoarding_and_travel_boundaries(sample):
    s = sample.tables["settlements"]
    for note, span in (("相隔29天", 29), ("相隔30天", 30)):
        case = _case(sample, "pharmacy_card_skimming.hoarding", note)
        days = s.filter(pl.col("person_id") == case["person_id"])["admit_time"].dt.date()
        assert (days.max() - days.min()).days == span and days.len() == 4
    for note, minutes in (("2小时59分", 179), ("恰好相隔3小时", 180)):
        case = _case(sample, "pharmacy_card_skimming.impossible_travel", note)
        mine = s.filter(pl.col("person_id") == case["person_id"]).sort("admit_time")
        gap = mine["admit_time"][1] - mine["admit_time"][0]
        assert gap.total_seconds() == minutes * 60
        assert mine["visit_region"][0][:4] != mine["visit_region"][1][:4]


def test_stock_and_growth_boundaries(sample):
    con = sample.con

    def stock(note: str) -> tuple:
        case = _case(sample, "item_substitution.billed_more_than_bought", note)
        return con.execute("""
            SELECT (SELECT sum(quantity) FROM f WHERE institution_id = $1 AND item_code = $2),
                   (SELECT sum(quantity) FROM purchases WHERE institution_id = $1
                      AND item_code = $2 AND purchase_date BETWEEN DATE '2023-12-02'
                                                               AND DATE '2024-06-30')""",
                           [case["institution_id"], case["item_code"]]).fetchall()[0]

    billed, bought = stock("前30天的进货40计入")
    assert billed == bought * 11 / 10 and bought == 100
    billed, bought = stock("进货32.41公斤")
    assert billed == bought * 11 / 10
    billed, bought = stock("超15%")
    assert billed == bought * 115 / 100

    case = _case(sample, "key_item_growth.monthly_growth", "恰好1.5倍")
    month = pl.col("charge_time").dt.truncate("1mo").dt.date().cast(pl.String)
    f = sample.tables["fee_lines"].join(
        sample.tables["settlements"].select("settlement_id", "institution_id"),
        on="settlement_id")
    amounts = (f.filter((pl.col("institution_id") == case["institution_id"])
                        & (pl.col("item_code") == case["item_code"]))
               .group_by(month.alias("m")).agg(pl.col("amount").sum()).sort("m"))
    by_month = dict(amounts.iter_rows())
    now = by_month[case["period_start"]]
    before = by_month[amounts.filter(pl.col("m") < case["period_start"])["m"].max()]
    assert now * 2 == before * 3 and now - before == 10_000
