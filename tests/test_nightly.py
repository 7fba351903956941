"""`fraudscreen nightly`: six monthly drops night by night equal one run over all the data.

One synthetic prefecture (``fraudscreen.sample``) is cut into six monthly drops
(settlements by settle month with their fee lines, purchases by date, reference
tables in the first drop) and fed into an inbox night by night; the store after
each night is kept so later tests start from it. The SIGKILL tests run the real
command in a subprocess with the ``FRAUDSCREEN_TEST_KILL_AT`` test hook.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from fraudscreen import rescreen, store
from fraudscreen.cli import app
from fraudscreen.ingest import IngestError, load_folder
from fraudscreen.nightly import (
    KILL_ENV,
    KILL_POINTS,
    NOT_SUPPORTED,
    RULE_RETIRED,
    NightOptions,
    merge,
    run_night,
    scan_inbox,
    scratch_folder,
)
from fraudscreen.privacy import WITHHELD
from fraudscreen.quarantine import CONFLICTING_KEY
from fraudscreen.ruleset import RuleSet
from fraudscreen.sample import generate
from fraudscreen.sample.drops import REFERENCE
from fraudscreen.sample.drops import monthly_drops as sample_drops
from fraudscreen.screen import make_engine, screen
from fraudscreen.testing import table
from outputs import naming, output_bytes

NIGHTS = 6


def night_date(n: int) -> dt.date:
    return dt.date(2024, n, 28)


def monthly_drops(data: Path, out: Path) -> list[Path]:
    drops = sample_drops(data, out, NIGHTS)
    fees = pl.read_parquet(data / "fee_lines.parquet").height
    assert sum(pl.read_parquet(d / "fee_lines").height for d in drops) == fees
    return drops


def one_run(tables: dict[str, pl.DataFrame], quarantined_reversals=()) -> pl.DataFrame:
    engine = make_engine("duckdb")
    try:
        return screen(tables, RuleSet.load(), engine,
                      quarantined_reversals=quarantined_reversals).suspicions
    finally:
        engine.close()


def copy_store(src: Path, dst: Path) -> Path:
    shutil.copy(src, dst)
    if Path(f"{src}.wal").exists():
        shutil.copy(f"{src}.wal", f"{dst}.wal")
    return dst


def night(inbox: Path, st: Path, out: Path, n: int, **kw) -> dict:
    opts = NightOptions(inbox=inbox, store=st, out=out, today=kw.pop("today", night_date(n)),
                        **kw)
    result = run_night(opts, RuleSet.load())
    assert result.exit_code == 0
    return result.manifest


def open_rows(st: Path) -> pl.DataFrame:
    con = store.open_store(st, create=False, read_only=True)
    try:
        return store.suspicions(con)
    finally:
        con.close()


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    """The six nights, fed one by one; stores kept after each night."""
    root = tmp_path_factory.mktemp("nightly")
    generate(root / "data", scale=0.02, seed=11)
    drops = monthly_drops(root / "data", root / "drops")
    inbox, st = (root / "inbox").absolute(), root / "store.duckdb"
    inbox.mkdir()
    manifests, stores = [], {}
    for n, drop in enumerate(drops, start=1):
        shutil.copytree(drop, inbox, dirs_exist_ok=True)
        manifests.append(night(inbox, st, root / "out" / f"{n:02d}", n))
        stores[n] = copy_store(st, root / f"store-{n}.duckdb")
    with load_folder(root / "data") as whole:
        tables = {name: whole.table(name) for name in whole.tables}
    return {"root": root, "data": root / "data", "inbox": inbox, "stores": stores,
            "manifests": manifests, "tables": tables, "one_run": one_run(tables)}


def test_six_nights_equal_one_run(fed):
    rows = open_rows(fed["stores"][NIGHTS])
    opened = rows.filter(pl.col("status") == "open")
    expected = fed["one_run"]
    assert expected.height > 20
    assert sorted(opened["suspicion_id"]) == sorted(expected["suspicion_id"])
    cols = ["suspicion_id", "amount_at_risk", "message", "evidence", "related_settlement_ids"]
    assert (opened.select(cols).sort("suspicion_id").to_dicts()
            == expected.select(cols).sort("suspicion_id").to_dicts())
    # every suspicion ever stored was reported once as new, by exactly one night
    reported = [i for m in fed["manifests"] for i in m["new_suspicion_ids"]]
    assert len(reported) == len(set(reported))
    assert set(reported) == set(rows["suspicion_id"])
    # what later data no longer supports is closed with a reason, not deleted
    closed = rows.filter(pl.col("status") != "open")
    assert set(closed["status"]) <= {"superseded"}
    assert all(r == NOT_SUPPORTED or r.startswith("rule ") for r in closed["reason"])
    assert sum(m["superseded_suspicions"] for m in fed["manifests"]) == closed.height
    out = fed["root"] / "out" / f"{NIGHTS:02d}"
    doc = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert doc["new_suspicions"] == fed["manifests"][-1]["new_suspicions"] > 0
    assert doc["files_skipped"] == 3 * (NIGHTS - 1) + len(REFERENCE)
    for name in ("leads.xlsx", "report.html", "leads.csv", "changes.csv", "suspicions.parquet"):
        assert (out / name).is_file(), name
    assert pl.read_parquet(out / "suspicions.parquet").height == doc["new_suspicions"]
    # the institutions came on night 1: the leads of night 6 are named from the store
    named = dict(fed["tables"]["institutions"].select("institution_id", "name").rows())
    leads = pl.read_csv(out / "leads.csv", infer_schema=False).filter(
        pl.col("lead_type") == "institution")
    assert leads.height > 0
    assert leads.select("lead_id", "lead_name").rows() == [
        (i, named[i]) for i in leads["lead_id"]]


def test_later_nights_rescreen_only_the_persons_and_institutions_they_touch(fed):
    """Night 1 brings the reference tables (catalog, institutions): everything. Later
    nights re-screen person rules over the persons their month touched only — and the
    store still equals one run (test above)."""
    scopes = [m["screening_scope"] for m in fed["manifests"]]
    assert scopes[0]["full"] is True
    persons = fed["tables"]["persons"].height
    for scope in scopes[1:]:
        assert scope["full"] is False
        assert 0 < scope["persons"] < persons and scope["institutions"] > 0
        # a month touches a large share of persons: one pass over all the data is cheaper
        assert scope["whole"] == ["institution", "person"]


def test_daily_drops_after_monthly_ones_still_equal_one_run(fed, tmp_path, monkeypatch):
    """Daily drops touch few persons and institutions: person and institution rules then
    really run over a part of the data, yet the store equals one run. (A stock balance
    over the whole period depends on the window, which each day lengthens: such rules run
    over all the data.) Restricted passes are forced here, however large the share."""
    monkeypatch.setattr(rescreen, "RESTRICT_BELOW", 1.01)
    drops = sample_drops(fed["data"], tmp_path / "drops", NIGHTS, last_days=2)
    inbox, st = (tmp_path / "inbox").absolute(), tmp_path / "store.duckdb"
    inbox.mkdir()
    for n, drop in enumerate(drops, start=1):
        shutil.copytree(drop, inbox, dirs_exist_ok=True)
        doc = night(inbox, st, tmp_path / "out" / f"{n:02d}", n)
    scope = doc["screening_scope"]
    assert not scope["full"] and scope["whole"] == []
    assert 0 < scope["institutions"] < fed["tables"]["institutions"].height
    cols = ["suspicion_id", "amount_at_risk", "message", "evidence", "related_settlement_ids"]
    opened = open_rows(st).filter(pl.col("status") == "open")
    assert (opened.select(cols).sort("suspicion_id").to_dicts()
            == fed["one_run"].select(cols).sort("suspicion_id").to_dicts())


def test_a_night_bringing_catalog_rows_rescreens_everything(fed, tmp_path):
    st = copy_store(fed["stores"][NIGHTS], tmp_path / "s.duckdb")
    inbox = tmp_path / "inbox"
    (inbox / "catalog").mkdir(parents=True)
    row = fed["tables"]["catalog"].head(1).with_columns(pl.lit("NEW-ITEM").alias("item_code"))
    row.write_parquet(inbox / "catalog" / "part-99.parquet")
    doc = night(inbox, st, tmp_path / "out", NIGHTS + 1)
    assert doc["screening_scope"]["full"] is True
    assert doc["new_suspicions"] == doc["retracted_suspicions"] == 0


def test_idle_night_reports_nothing_and_changes_nothing(fed, tmp_path):
    """The inbox of night 6 again (the same night run twice): nothing new, no change."""
    st = copy_store(fed["stores"][NIGHTS], tmp_path / "s.duckdb")
    before = store.snapshot(st)
    doc = night(fed["inbox"], st, tmp_path / "idle", NIGHTS, today=dt.date(2024, 6, 29))
    assert doc["new_suspicions"] == 0 and doc["committed"] is False
    assert doc["retracted_suspicions"] == doc["superseded_suspicions"] == 0
    assert store.snapshot(st) == before
    doc = json.loads((tmp_path / "idle" / "run.json").read_text(encoding="utf-8"))
    assert doc["new_suspicions"] == 0 and doc["files_skipped"] > 0


def test_a_night_out_of_memory_stops_with_a_message_and_keeps_the_store(fed, tmp_path):
    """Night 6 with a memory limit too small for it: one line saying what to raise, exit 1,
    no traceback, and the store as it was after night 5."""
    st = copy_store(fed["stores"][NIGHTS - 1], tmp_path / "s.duckdb")
    before = store.snapshot(st)
    result = CliRunner().invoke(app, [
        "nightly", "--inbox", str(fed["inbox"]), "--store", str(st), "--out",
        str(tmp_path / "night"), "--today", str(night_date(NIGHTS)), "--quiet",
        "--memory-limit", "1MB", "--spill-limit", "1KB"])
    assert result.exit_code == 1, result.output
    assert "out of memory" in result.output and "--memory-limit" in result.output
    assert "Traceback" not in result.output
    assert store.snapshot(st) == before


def test_the_night_screens_on_a_connection_that_reads_no_other_file(fed, tmp_path,
                                                                    monkeypatch):
    """Defence in depth behind the rules' checks, as `run` has: from the screening on, the
    store's connection reads only the night's staged rows (a file elsewhere is refused),
    and the night still screens, commits and reports as it did unsealed."""
    import duckdb

    secret = tmp_path / "elsewhere" / "secret.csv"
    secret.parent.mkdir()
    secret.write_text("a\n1\n", encoding="utf-8")
    refused = []
    screen_night = rescreen.screen_night

    def spy(con, *args, **kwargs):
        with pytest.raises(duckdb.Error, match="disabled") as err:
            con.sql(f"SELECT * FROM read_csv('{secret}')").fetchall()
        refused.append(str(err.value))
        return screen_night(con, *args, **kwargs)

    monkeypatch.setattr(rescreen, "screen_night", spy)
    st = copy_store(fed["stores"][NIGHTS - 1], tmp_path / "s.duckdb")
    doc = night(fed["inbox"], st, tmp_path / "night", NIGHTS)
    assert len(refused) == 1
    assert doc["new_suspicions"] == fed["manifests"][-1]["new_suspicions"] > 0
    assert open_rows(st).sort("suspicion_id").equals(
        open_rows(fed["stores"][NIGHTS]).sort("suspicion_id"))


@pytest.mark.parametrize("variant", ["clean", "no settle_time", "the original's id"])
def test_late_reversal_retracts_what_rests_on_it(fed, tmp_path, variant):
    """The reversal row is clean, or quarantined (no settle_time; or it repeats the
    original's settlement id, already stored, as some exports write a 冲销 row): it
    reverses the settlement it names all the same."""
    quarantined = variant != "clean"
    st = copy_store(fed["stores"][NIGHTS], tmp_path / "s.duckdb")
    rows = open_rows(st).filter(pl.col("status") == "open")
    flagged = rows.filter(pl.col("rule_id") == "split_hospitalisation.readmission")
    target = (flagged if flagged.height else rows.drop_nulls("settlement_id"))["settlement_id"][0]
    resting = rows.filter((pl.col("settlement_id") == target)
                          | pl.col("related_settlement_ids").list.contains(target))
    settlements = fed["tables"]["settlements"]
    original = settlements.filter(pl.col("settlement_id") == target)
    reversal = original.with_columns(
        pl.lit(f"R{target}").alias("settlement_id"), pl.lit(target).alias("reversed_settlement_id"),
        -pl.col("total_amount"), -pl.col("fund_amount"),
        pl.datetime(2024, 7, 2, 9).alias("settle_time"))
    if variant == "no settle_time":
        reversal = reversal.with_columns(pl.lit(None, pl.Datetime("us")).alias("settle_time"))
    elif variant == "the original's id":
        reversal = reversal.with_columns(settlement_id=pl.lit(target))
    repeated = settlements.filter(pl.col("settlement_id") != target).head(1)
    # late data too: one more copy of a line already flagged as repeated
    copied = rows.filter((pl.col("rule_id") == "duplicate_charge.repeated_line")
                         & (pl.col("settlement_id") != target)).row(0, named=True)
    lines = fed["tables"]["fee_lines"]
    late_line = lines.filter((pl.col("settlement_id") == copied["settlement_id"])
                             & (pl.col("item_code") == copied["item_code"])).head(1).with_columns(
        line_id=pl.lit("LATE-1"))
    inbox = tmp_path / "inbox"
    shutil.copytree(fed["inbox"], inbox)
    pl.concat([reversal, repeated]).write_csv(inbox / "settlements" / "part-07-late.csv")
    late_line.write_parquet(inbox / "fee_lines" / "part-07-late.parquet")

    doc = night(inbox.absolute(), st, tmp_path / "out", 7, today=dt.date(2024, 7, 3))
    retracted = {r["suspicion_id"]: r["reason"] for r in doc["retracted"]}
    assert set(retracted) == set(resting["suspicion_id"]) != set()
    assert all("冲销" in reason and target in reason for reason in retracted.values())
    if quarantined:
        assert all("quarantined row (settlements/part-07-late.csv line 2)" in reason
                   for reason in retracted.values())
    assert doc["new_suspicions"] == len(doc["new_suspicion_ids"])
    # a suspicion whose figures changed keeps its id and records the change
    assert copied["suspicion_id"] in doc["changed_suspicion_ids"]
    after = open_rows(st)
    kept = after.filter(pl.col("suspicion_id").is_in(list(retracted)))
    assert set(kept["status"]) == {"retracted"}  # kept in the store, with the reason
    grown = after.filter(pl.col("suspicion_id") == copied["suspicion_id"]).row(0, named=True)
    assert grown["status"] == "open" and grown["amount_at_risk"] > copied["amount_at_risk"]
    change = json.loads(grown["changes"])[-1]
    assert change["event"] == "changed" and change["fields"]["amount_at_risk"] == [
        str(copied["amount_at_risk"]), str(grown["amount_at_risk"])]
    # the repeated settlement is quarantined as a duplicate key, with file and line; the
    # reversal row repeating the original's id differs from the stored row: conflicting
    q = pl.read_csv(tmp_path / "out" / "quarantine.csv")
    dup = q.filter(pl.col("reason").is_in(["duplicate key", CONFLICTING_KEY]))
    assert dup.select("table", "file", "line", "reason").rows() == [
        *([("settlements", "settlements/part-07-late.csv", 2, CONFLICTING_KEY)]
          if variant == "the original's id" else []),
        ("settlements", "settlements/part-07-late.csv", 3, "duplicate key")]
    # and the store still equals one run over all the data, reversal included
    tables = {**fed["tables"], "fee_lines": pl.concat([lines, late_line]),
              "settlements": settlements if quarantined else pl.concat([settlements, reversal])}
    expected = one_run(tables, [target] if quarantined else [])
    opened = after.filter(pl.col("status") == "open")
    cols = ["suspicion_id", "amount_at_risk", "message"]
    assert (opened.select(cols).sort("suspicion_id").to_dicts()
            == expected.select(cols).sort("suspicion_id").to_dicts())
    # never shown as an open lead again
    export = tmp_path / "open.parquet"
    result = CliRunner().invoke(app, ["suspicions", "export", "--store", str(st),
                                      "--out", str(export)])
    assert result.exit_code == 0, result.output
    assert not set(pl.read_parquet(export)["suspicion_id"]) & set(retracted)
    assert pl.read_parquet(export).columns == list(fed["one_run"].columns)
    result = CliRunner().invoke(app, ["suspicions", "export", "--store", str(st),
                                      "--out", str(export), "--all"])
    every = pl.read_parquet(export)
    assert set(every.filter(pl.col("status") == "retracted")["suspicion_id"]) == set(retracted)


def test_a_quarantined_reversal_reverses_a_settlement_that_comes_on_a_later_night(
        fed, tmp_path):
    """Night 7 brings a reversal row of LATE (quarantined: no settle_time) before LATE
    itself, a copy of a readmission under a new id, comes on night 8: no lead rests on
    LATE, and the store equals one run over all the data."""
    st = copy_store(fed["stores"][NIGHTS], tmp_path / "s.duckdb")
    rows = open_rows(st).filter((pl.col("status") == "open") & (
        pl.col("rule_id") == "split_hospitalisation.readmission"))
    target = rows["settlement_id"][0]
    settlements, lines = fed["tables"]["settlements"], fed["tables"]["fee_lines"]
    late = settlements.filter(pl.col("settlement_id") == target).with_columns(
        settlement_id=pl.lit("LATE"))
    late_lines = lines.filter(pl.col("settlement_id") == target).with_columns(
        settlement_id=pl.lit("LATE"), line_id=pl.lit("LATE-") + pl.col("line_id"))
    reversal = late.with_columns(settlement_id=pl.lit("RLATE"), reversed_settlement_id=pl.lit(
        "LATE"), settle_time=pl.lit(None, pl.Datetime("us")))
    inbox = tmp_path / "inbox"
    shutil.copytree(fed["inbox"], inbox)
    reversal.write_csv(inbox / "settlements" / "part-07-reversal.csv")
    night(inbox.absolute(), st, tmp_path / "out7", 7, today=dt.date(2024, 7, 3))
    late.write_parquet(inbox / "settlements" / "part-08-late.parquet")
    late_lines.write_parquet(inbox / "fee_lines" / "part-08-late.parquet")
    night(inbox.absolute(), st, tmp_path / "out8", 8, today=dt.date(2024, 7, 4))

    def resting(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.filter((pl.col("settlement_id") == "LATE")
                            | pl.col("related_settlement_ids").list.contains("LATE"))

    opened = open_rows(st).filter(pl.col("status") == "open")
    assert resting(opened).is_empty()
    tables = {**fed["tables"], "settlements": pl.concat([settlements, late]),
              "fee_lines": pl.concat([lines, late_lines])}
    assert not resting(one_run(tables)).is_empty()  # unreversed, LATE would be a lead
    expected = one_run(tables, ["LATE"])
    cols = ["suspicion_id", "amount_at_risk", "message"]
    assert (opened.select(cols).sort("suspicion_id").to_dicts()
            == expected.select(cols).sort("suspicion_id").to_dicts())


@pytest.fixture(scope="module")
def crashes(fed, tmp_path_factory):
    """Night 6 from the store of night 5, killed at each point, then rerun plainly.

    The real command runs in subprocesses, the four points side by side.
    """
    root = tmp_path_factory.mktemp("crash")
    env = {k: v for k, v in os.environ.items() if k != KILL_ENV}

    def start(point: str, kill: bool) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "fraudscreen.cli", "nightly", "--quiet",
               "--inbox", str(fed["inbox"]), "--store", str(root / f"{point}.duckdb"),
               "--out", str(root / f"out-{point}"), "--today", night_date(NIGHTS).isoformat()]
        return subprocess.Popen(cmd, env={**env, KILL_ENV: point} if kill else env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    for point in KILL_POINTS:
        copy_store(fed["stores"][NIGHTS - 1], root / f"{point}.duckdb")
    killed = {p: start(p, True) for p in KILL_POINTS}
    killed = {p: (proc.wait(), proc.communicate()[1].decode()) for p, proc in killed.items()}
    left = {p: scratch_folder(root / f"{p}.duckdb").is_dir() for p in KILL_POINTS}
    rerun = {p: start(p, False) for p in KILL_POINTS}
    rerun = {p: (proc.wait(), proc.communicate()[1].decode()) for p, proc in rerun.items()}
    return root, killed, rerun, left


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_then_rerun_equals_uninterrupted(fed, crashes, point):
    root, killed, rerun, left = crashes
    assert killed[point][0] == -signal.SIGKILL, killed[point][1]
    assert rerun[point][0] == 0, rerun[point][1]
    # the killed night's scratch is beside the store (not in /tmp), and the rerun clears it
    assert left[point] and not scratch_folder(root / f"{point}.duckdb").exists()
    assert store.snapshot(root / f"{point}.duckdb") == store.snapshot(fed["stores"][NIGHTS])
    # the night's leads are reported whatever the point of the crash
    doc = json.loads((root / f"out-{point}" / "run.json").read_text(encoding="utf-8"))
    assert sorted(doc["new_suspicion_ids"]) == sorted(fed["manifests"][-1]["new_suspicion_ids"])


def suppressed(fed, tmp_path: Path, until: str) -> tuple[Path, dict]:
    """The store before the last night, with suppression 1 on an institution that night
    would report, and the suspicion it holds back."""
    st = copy_store(fed["stores"][NIGHTS - 1], tmp_path / "s.duckdb")
    target = open_rows(fed["stores"][NIGHTS]).filter(
        (pl.col("first_night") == NIGHTS) & pl.col("institution_id").is_not_null()
    ).row(0, named=True)
    result = CliRunner().invoke(app, [
        "suppress", "add", "--store", str(st), "--rule", target["rule_id"], "--institution",
        target["institution_id"], "--reason", "已约谈整改", "--owner", "王科长",
        "--until", until, "--today", "2024-06-01"])
    assert result.exit_code == 0, result.output
    return st, target


def test_suppression_holds_back_then_expires(fed, tmp_path):
    st, target = suppressed(fed, tmp_path, "2024-07-10")
    cli = CliRunner()
    covered = open_rows(fed["stores"][NIGHTS]).filter(
        (pl.col("status") == "open") & (pl.col("rule_id") == target["rule_id"])
        & (pl.col("institution_id") == target["institution_id"]))
    held = covered.filter(pl.col("first_night") == NIGHTS)["suspicion_id"].to_list()

    doc = night(fed["inbox"], st, tmp_path / "n6", NIGHTS)
    assert not set(doc["new_suspicion_ids"]) & set(held)
    assert target["suspicion_id"] in open_rows(st)["suspicion_id"].to_list()  # stored
    # changes.csv logs them as new, and says what holds them back from the leads.
    changes = pl.read_csv(tmp_path / "n6" / "changes.csv").filter(pl.col("event") == "new")
    marked = changes.filter(pl.col("suppressed_by").is_not_null())
    assert set(marked["suspicion_id"]) == set(held) and set(marked["suppressed_by"]) == {1}
    assert set(changes["suspicion_id"]) - set(held) == set(doc["new_suspicion_ids"])
    listed = cli.invoke(app, ["suppress", "list", "--store", str(st), "--today", "2024-06-28"])
    assert "已约谈整改" in listed.output and f"holds {covered.height}" in listed.output
    export = tmp_path / "open.parquet"
    cli.invoke(app, ["suspicions", "export", "--store", str(st), "--out", str(export),
                     "--today", "2024-06-28"])
    assert not set(pl.read_parquet(export)["suspicion_id"]) & set(held)

    later = night(fed["inbox"], st, tmp_path / "n7", NIGHTS, today=dt.date(2024, 7, 11))
    assert sorted(later["new_suspicion_ids"]) == sorted(held)  # expired on its own
    assert "no suppressions in force" in cli.invoke(
        app, ["suppress", "list", "--store", str(st), "--today", "2024-07-11"]).output


def test_lifting_a_suppression_releases_its_hits_on_the_next_night(fed, tmp_path):
    st, target = suppressed(fed, tmp_path, "2024-12-31")
    cli = CliRunner()
    doc = night(fed["inbox"], st, tmp_path / "n6", NIGHTS)
    assert target["suspicion_id"] not in doc["new_suspicion_ids"]

    lift = ["suppress", "lift", "--store", str(st), "1", "--reason", "复查发现新问题",
            "--owner", "李稽查", "--today", "2024-06-29"]
    result = cli.invoke(app, lift)
    assert result.exit_code == 0, result.output
    assert "held until 2024-06-28" in result.output
    listed = cli.invoke(app, ["suppress", "list", "--store", str(st), "--all",
                              "--today", "2024-06-29"]).output
    assert "expired" in listed and "2024-06-29 lifted by 李稽查: 复查发现新问题" in listed
    again = cli.invoke(app, lift)
    assert again.exit_code == 2 and "no longer in force" in again.output
    assert cli.invoke(app, [*lift[:4], "9", *lift[5:]]).exit_code == 2

    later = night(fed["inbox"], st, tmp_path / "n7", NIGHTS, today=dt.date(2024, 6, 29))
    assert target["suspicion_id"] in later["new_suspicion_ids"]


def test_feedback_and_rule_stats(fed, tmp_path):
    st = copy_store(fed["stores"][NIGHTS], tmp_path / "s.duckdb")
    rows = open_rows(st).filter(pl.col("status") == "open")
    one, two = rows.sort("suspicion_id").head(2).iter_rows(named=True)
    lead = rows.filter(pl.col("person_id").is_not_null()
                       & ~pl.col("person_id").is_in([one["person_id"], two["person_id"]])
                       )["person_id"][-1]
    cli = CliRunner()
    bad = tmp_path / "bad.csv"
    bad.write_text("\ufeffsuspicion_id,result,amount_recovered,note\n"
                   f"{one['suspicion_id']},属实,100,\nSNOPE,不属实,,\n"
                   # an amount DECIMAL(16,2) cannot hold, and one in scientific notation
                   f"{one['suspicion_id']},属实,99999999999999999999,\n"
                   f"{one['suspicion_id']},属实,1e3,\n", encoding="utf-8")
    result = cli.invoke(app, ["leads", "feedback", "--store", str(st), str(bad)])
    assert result.exit_code == 2 and "SNOPE" in result.output and "Traceback" not in result.output
    assert "line 4: amount_recovered '99999999999999999999'" in result.output
    assert "line 5: amount_recovered '1e3'" in result.output
    # found in review (session 11): these were imported without a word
    other = two["institution_id"] if two["institution_id"] != one["institution_id"] else "HX"
    for text, says in [
        (f"suspicion_id,result\n{one['suspicion_id']},属实\n{one['suspicion_id']},不属实\n",
         f"suspicion {one['suspicion_id']} is both 属实 and 不属实 (lines 2, 3)"),
        (f"suspicion_id,疑点编号,result\n{one['suspicion_id']},{two['suspicion_id']},属实\n",
         "headers 'suspicion_id' and '疑点编号' both mean suspicion_id"),
        (f"suspicion_id,lead_id,result\n{one['suspicion_id']},{other},属实\n",
         f"line 2: suspicion {one['suspicion_id']} is not of lead {other}")]:
        bad.write_text(text, encoding="utf-8")
        result = cli.invoke(app, ["leads", "feedback", "--store", str(st), str(bad)])
        assert result.exit_code == 2 and says in result.output, result.output
    good = tmp_path / "good.csv"
    good.write_text("\ufeff疑点编号,线索对象编号,核查结果,追回金额,备注,核查人\n"
                    f"{one['suspicion_id']},,属实,1200.50,已追回,李\n"
                    f"{two['suspicion_id']},,不属实,,,李\n"
                    f",{lead},不属实,,,张\n", encoding="utf-8")
    result = cli.invoke(app, ["leads", "feedback", "--store", str(st), str(good)])
    assert result.exit_code == 0, result.output
    result = cli.invoke(app, ["rules", "stats", "--store", str(st), "--format", "csv"])
    assert result.exit_code == 0, result.output
    stats = pl.read_csv(result.stdout.encode())
    by_rule = {r["rule_id"]: r for r in stats.iter_rows(named=True)}
    first = by_rule[one["rule_id"]]
    assert first["confirmed"] >= 1 and first["reviewed"] >= 1
    assert str(first["amount_recovered"]).startswith("1200.5")
    assert stats["hits"].sum() == open_rows(st).height
    in_lead = open_rows(st).filter((pl.col("person_id") == lead)
                                   & pl.col("reported_night").is_not_null())
    assert stats["reviewed"].sum() == 2 + in_lead.height
    text = cli.invoke(app, ["rules", "stats", "--store", str(st)]).output
    assert "precision" in text and one["rule_id"] in text


def test_merge_records_changes_and_reasons():
    def sus(sid, amount, settlement=None, related=(), rule="r.a"):
        return {"suspicion_id": sid, "rule_id": rule, "rule_version": "1", "family": "f",
                "severity": "low", "institution_id": "H1", "person_id": "P1",
                "settlement_id": settlement, "related_settlement_ids": list(related),
                "item_code": None, "period_start": None, "period_end": None,
                "amount_at_risk": amount, "message": f"m{amount}", "evidence": "{}"}

    from decimal import Decimal as D

    from fraudscreen.suspicion import SCHEMA

    found1 = pl.DataFrame([sus("A", D("10.00"), "S1"), sus("B", D("5.00"), "S2", ["S3"]),
                           sus("C", D("1.00")), sus("D", D("2.00"), rule="r.b"),
                           sus("E", D("3.00"), "S9", rule="r.b")],
                          schema=SCHEMA, orient="row")
    empty = merge(pl.DataFrame(), found1.clear(), set(), {}, {}, 0).table
    m1 = merge(empty, found1, {"r.a", "r.b"}, {}, {}, 1)
    assert sorted(m1.new) == ["A", "B", "C", "D", "E"]
    found2 = pl.DataFrame([sus("A", D("12.00"), "S1")], schema=SCHEMA, orient="row")
    m2 = merge(m1.table, found2, {"r.a"}, {"r.a": "1"}, {"S3": "R3", "S9": "R9"}, 2)
    # E's rule did not run tonight (failed, or --only), but its settlement was reversed
    # (found in review: it stayed open until the rule ran again)
    assert (m2.changed, m2.retracted, m2.superseded, m2.new) == (["A"], ["B", "E"], ["C"], [])
    got = {r["suspicion_id"]: r for r in m2.table.to_dicts()}
    assert got["A"]["amount_at_risk"] == D("12.00") and got["A"]["changed_night"] == 2
    assert json.loads(got["A"]["changes"])[-1]["fields"]["amount_at_risk"] == ["10.00", "12.00"]
    assert got["B"]["reason"] == "冲销: settlement S3 reversed by R3"
    assert got["C"]["reason"] == NOT_SUPPORTED and got["C"]["status"] == "superseded"
    assert got["D"]["status"] == "open"  # r.b did not run: left as it was
    m3 = merge(m2.table, pl.DataFrame([sus("A", D("12.00"), "S1"), sus("C", D("1.00"))],
                                      schema=SCHEMA, orient="row"), {"r.a"}, {}, {"S3": "R3"}, 3)
    assert m3.reopened == ["C"] and not m3.changed and not m3.retracted
    # r.b is no longer in the rule set: its open suspicion goes, whatever ran tonight;
    # without `complete` (a night with --only) it stays.
    m4 = merge(m3.table, found2, {"r.a"}, {"r.a": "1"}, {}, 4, complete=True)
    got = {r["suspicion_id"]: r for r in m4.table.to_dicts()}
    assert got["D"]["status"] == "superseded" and "D" in m4.superseded
    assert got["D"]["reason"] == RULE_RETIRED.format(rule="r.b")
    assert got["A"]["status"] == "open"
    assert merge(m3.table, found2, {"r.a"}, {"r.a": "1"}, {}, 4).table.filter(
        pl.col("suspicion_id") == "D")["status"].item() == "open"


def test_errors_are_messages_not_tracebacks(tmp_path):
    cli = CliRunner()
    result = cli.invoke(app, ["suspicions", "export", "--store", str(tmp_path / "none.duckdb"),
                              "--out", str(tmp_path / "x.parquet")])
    assert result.exit_code == 2 and "error:" in result.output
    result = cli.invoke(app, ["nightly", "--inbox", str(tmp_path / "missing"), "--store",
                              str(tmp_path / "first.duckdb"), "--out", str(tmp_path / "o"),
                              "--new-store"])
    assert result.exit_code == 2 and "no such inbox" in result.output
    inbox = tmp_path / "inbox" / "settlements"
    inbox.mkdir(parents=True)
    table("settlements", [dict(settlement_id="A", person_id="P", institution_id="H",
                               admit_time="2024-01-01 08:00:00")]
          ).write_parquet(inbox / "p.parquet")
    result = cli.invoke(app, ["nightly", "--inbox", str(inbox.parent), "--store",
                              str(tmp_path / "s.duckdb"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "no such store" in result.output  # a path mistyped?
    assert "--new-store" in result.output and not (tmp_path / "s.duckdb").exists()
    result = cli.invoke(app, ["nightly", "--inbox", str(inbox.parent), "--store",
                              str(tmp_path / "s.duckdb"), "--out", str(tmp_path / "o"),
                              "--new-store"])
    assert result.exit_code == 0, result.output  # a drop without fee_lines is fine
    result = cli.invoke(app, ["nightly", "--inbox", str(inbox.parent), "--store",
                              str(tmp_path / "s.duckdb"), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "holds the input" in result.output
    assert (inbox / "p.parquet").exists()
    result = cli.invoke(app, ["suppress", "add", "--store", str(tmp_path / "s.duckdb"), "--rule",
                              "no.such_rule", "--person", "P", "--reason", "x", "--owner", "y",
                              "--until", "2030-01-01"])
    assert result.exit_code == 2 and "error:" in result.output


@pytest.mark.parametrize("name", ["store.parquet", "store.csv"])
def test_a_store_path_naming_another_kind_of_file_is_refused_and_left_alone(tmp_path, name):
    """Found in review (session 11): DuckDB took an existing .parquet or .csv file for an
    in-memory database; the night said it committed, and nothing was kept."""
    other = tmp_path / name
    other.write_bytes(b"a,b\n1,2\n")
    inbox = tmp_path / "inbox" / "settlements"
    inbox.mkdir(parents=True)
    table("settlements", [dict(settlement_id="A", person_id="P", institution_id="H",
                               admit_time="2024-01-01 08:00:00")]
          ).write_parquet(inbox / "p.parquet")
    cli = CliRunner()
    result = cli.invoke(app, ["nightly", "--inbox", str(inbox.parent), "--store", str(other),
                              "--out", str(tmp_path / "o"), "--new-store"])
    assert result.exit_code == 2 and "not a valid DuckDB database file" in result.output
    result = cli.invoke(app, ["suppress", "add", "--store", str(other), "--rule",
                              "duplicate_charge.daily_cap", "--person", "P", "--reason", "x",
                              "--owner", "y", "--until", "2030-01-01"])
    assert result.exit_code == 2 and "not a valid DuckDB database file" in result.output
    assert other.read_bytes() == b"a,b\n1,2\n"
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["run.json"]  # no report


def test_an_export_replaces_only_an_earlier_export(fed, tmp_path):
    """Found in review (session 11): `suspicions export --out` wrote Parquet over the store
    itself, over an inbox part, and into a file named .xlsx."""
    st = copy_store(fed["stores"][NIGHTS], tmp_path / "s.duckdb")
    part = tmp_path / "part.parquet"
    pl.DataFrame({"settlement_id": ["A"]}).write_parquet(part)
    before = store.snapshot(st), part.read_bytes()
    cli = CliRunner()

    def export(out: Path):
        return cli.invoke(app, ["suspicions", "export", "--store", str(st), "--out", str(out)])

    for out, says in [(st, "name a .parquet or .csv file"),
                      (tmp_path / "leads.xlsx", "name a .parquet or .csv file"),
                      (part, "exists and is not an export of suspicions")]:
        result = export(out)
        assert result.exit_code == 2 and says in result.output, result.output
    assert (store.snapshot(st), part.read_bytes()) == before
    assert not (tmp_path / "leads.xlsx").exists()
    for again in ("x.csv", "x.csv", "x.parquet", "x.parquet"):  # an earlier export: replaced
        assert export(tmp_path / again).exit_code == 0


def test_a_broken_watch_list_stops_the_night_before_the_store_is_touched(fed, tmp_path,
                                                                        monkeypatch):
    """As in `run`: the lists are read before any data, not at screening time."""
    st = copy_store(fed["stores"][NIGHTS - 1], tmp_path / "s.duckdb")
    before = store.snapshot(st)

    def untouched(*args, **kwargs):
        raise AssertionError("the store was opened before the watch lists were read")

    monkeypatch.setattr(store, "open_store", untouched)
    broken = tmp_path / "site.yaml"
    broken.write_text("list_name: 测试\nentries:\n  - generic_names: [~]\n", encoding="utf-8")
    result = CliRunner().invoke(app, [
        "nightly", "--inbox", str(fed["inbox"]), "--store", str(st), "--out",
        str(tmp_path / "night"), "--today", str(night_date(NIGHTS)), "--watchlist", str(broken)])
    assert result.exit_code == 2 and str(broken) in result.output, result.output
    assert store.snapshot(st) == before
    assert [p.name for p in (tmp_path / "night").iterdir()] == ["run.json"]  # no report
    assert not scratch_folder(st).exists()


def test_a_public_night_names_no_person_and_no_plain_id(fed, tmp_path, monkeypatch):
    """Found in review: a public night wrote suspicions.*, changes.csv and run.json with
    raw person ids and plain suspicion ids (and, without a secret, committed the night
    before failing)."""
    st = copy_store(fed["stores"][NIGHTS - 1], tmp_path / "s.duckdb")
    before = store.snapshot(st)
    monkeypatch.delenv("FRAUDSCREEN_SITE_SECRET", raising=False)
    with pytest.raises(ValueError, match="FRAUDSCREEN_SITE_SECRET"):
        night(fed["inbox"], st, tmp_path / "nosecret", NIGHTS, profile="public")
    assert store.snapshot(st) == before and not (tmp_path / "nosecret").exists()

    monkeypatch.setenv("FRAUDSCREEN_SITE_SECRET", "a-site-secret")
    out = tmp_path / "public"
    doc = night(fed["inbox"], st, out, NIGHTS, profile="public")
    assert doc["new_suspicions"] > 0 and doc["suspicions_profile"] == "public"
    stored = open_rows(st)
    persons = set(stored["person_id"].drop_nulls())
    ids = set(stored["suspicion_id"])
    for name, content in output_bytes(out).items():  # the workbook's parts too
        text = content.decode("utf-8", errors="ignore")
        leaked = {p for p in persons if p in text} | {i for i in ids if i in text}
        assert not leaked, f"{name}: {sorted(leaked)[:3]}"
    shown = pl.read_parquet(out / "suspicions.parquet")
    assert shown.height and not shown["suspicion_id"].is_in(list(ids)).any()
    assert not shown["person_id"].is_in(list(persons)).any()


def test_a_late_report_lists_no_failure_the_reporting_run_retried(tmp_path, monkeypatch):
    """A night stopped once stored, with a rule failed, has its report written by the next
    run. That run re-screens every rule over all the data (the last night had a failed
    rule), so the late report holds the failed rule's leads: its ``failed_rules`` are
    the reporting run's own, and a rule that failed on the stopped night and ran now is
    not listed (the report is complete). A rule failing again is listed, by that run."""
    import fraudscreen.report
    import fraudscreen.screen

    inbox = tmp_path / "inbox"
    (inbox / "settlements").mkdir(parents=True)
    table("settlements", [
        dict(settlement_id=s, person_id="P1", institution_id="H1", medical_type="21",
             admit_time=f"2024-01-{admit} 08:00:00", discharge_time=f"2024-01-{out} 10:00:00",
             diagnosis_code="J18.900", fund_amount=1000)
        for s, admit, out in (("A", "01", "05"), ("B", "10", "12"))
    ]).write_parquet(inbox / "settlements" / "part-1.parquet")
    readmission = "split_hospitalisation.readmission"
    run_rule = fraudscreen.screen._run_rule

    def failing(rule, *args, **kwargs):
        if rule.id == readmission:
            return fraudscreen.screen.RuleOutcome(rule, "failed", "boom", kind="X"), None
        return run_rule(rule, *args, **kwargs)

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    def screen_night(out: str, *more: str):
        return CliRunner().invoke(app, [
            "nightly", "--inbox", str(inbox), "--store", str(tmp_path / "s.duckdb"), "--out",
            str(tmp_path / out), "--today", "2024-07-01", "--quiet", *more])

    with monkeypatch.context() as patch:  # the rule fails; stopped once stored
        patch.setattr(fraudscreen.screen, "_run_rule", failing)
        patch.setattr(fraudscreen.report, "write_reports", stopped)
        assert screen_night("cut", "--new-store").exit_code == 130
    result = screen_night("late")
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "late" / "run.json").read_text(encoding="utf-8"))
    assert doc["nights_reported"] == [1, 2]
    assert doc["status"] == {"exit_code": 0, "failed_rules": [], "strict_quarantine": False}
    leads = pl.read_parquet(tmp_path / "late" / "suspicions.parquet")
    assert leads.filter(pl.col("rule_id") == readmission)["settlement_id"].to_list() == ["B"]


def test_a_keyless_table_re_sent_with_other_content_stops_the_night(fed, tmp_path):
    """Found in review: purchases re-exported under the same names were stored twice, and
    billed_more_than_bought leads were superseded as no longer supported."""
    st = copy_store(fed["stores"][NIGHTS], tmp_path / "s.duckdb")
    before = store.snapshot(st)
    inbox = tmp_path / "inbox"
    shutil.copytree(fed["inbox"], inbox)
    part = sorted((inbox / "purchases").iterdir())[0]
    rows = pl.read_parquet(part)
    pl.concat([rows, rows.head(1)]).write_parquet(part)
    opts = NightOptions(inbox=inbox, store=st, out=tmp_path / "out", today=dt.date(2024, 7, 1))
    with pytest.raises(IngestError, match=f"purchases/{part.name}: ingested on night"):
        run_night(opts, RuleSet.load())
    assert store.snapshot(st) == before


def test_a_keyless_table_re_exported_under_another_name_stops_the_night(fed, tmp_path):
    """Found in review: a month of purchases re-sent as CSV under a new name was stored
    again, and the stock counted twice. A file all of whose rows are stored is refused;
    one with a single new row is taken."""
    st = copy_store(fed["stores"][NIGHTS], tmp_path / "s.duckdb")
    before = store.snapshot(st)
    inbox = tmp_path / "inbox"
    shutil.copytree(fed["inbox"], inbox)
    rows = pl.read_parquet(sorted((inbox / "purchases").iterdir())[0])
    rows.write_csv(inbox / "purchases" / "zz-resent.csv")
    opts = NightOptions(inbox=inbox, store=st, out=tmp_path / "out", today=dt.date(2024, 7, 1))
    with pytest.raises(IngestError, match="purchases/zz-resent.csv: every row of it is in the"):
        run_night(opts, RuleSet.load())
    assert store.snapshot(st) == before
    pl.concat([rows, rows.head(1).with_columns(quantity=pl.col("quantity") + 1)]).write_csv(
        inbox / "purchases" / "zz-resent.csv")
    assert run_night(opts, RuleSet.load()).exit_code == 0
    # a watch list sent again matches the same items: no need to stop a night for it
    listed = table("watchlist", [dict(list_name="site", item_code="X*", generic_name=None)])
    (inbox / "watchlist").mkdir()
    for n, write in enumerate((listed.write_parquet, listed.write_csv)):
        write(inbox / "watchlist" / f"list-{n}.{'csv' if n else 'parquet'}")
        assert run_night(dataclasses.replace(opts, out=tmp_path / f"list-{n}"),
                         RuleSet.load()).exit_code == 0


def test_messages_name_the_inbox_file_not_its_scratch_copy(tmp_path):
    """Found in review: errors and notes named the night's linked copy
    (.store.duckdb.night/inbox/settlements/000001-part-bad.csv)."""
    inbox = tmp_path / "inbox"
    (inbox / "settlements").mkdir(parents=True)
    (inbox / "settlements" / "part-bad.csv").write_text("settlement_id,person_id\nS1,P1\n",
                                                        encoding="utf-8")
    opts = NightOptions(inbox=inbox, store=tmp_path / "s.duckdb", out=tmp_path / "out",
                        today=dt.date(2024, 7, 1))
    with pytest.raises(IngestError) as err:
        run_night(opts, RuleSet.load())
    assert str(err.value).startswith("settlements/part-bad.csv: table settlements needs")


def test_an_inbox_of_partition_folders_and_gzipped_csv_is_read_whole(tmp_path):
    """The layouts load_folder reads are an inbox's too: a gzipped CSV is recorded by the
    checksum of the file delivered (so the next night skips it), and a quarantined row
    names its part under its partition folder."""
    inbox = tmp_path / "inbox"
    (inbox / "settlements").mkdir(parents=True)
    settlements = inbox / "settlements" / "part-1.csv"
    table("settlements", [dict(settlement_id="S1", person_id="P", institution_id="H",
                               admit_time="2024-01-01 08:00:00")]).write_csv(settlements)
    packed = inbox / "settlements" / "part-1.csv.gz"
    packed.write_bytes(gzip.compress(settlements.read_bytes()))
    settlements.unlink()
    fees = table("fee_lines", [dict(line_id=f"L{i}", settlement_id="S1", item_code="X1",
                                    charge_time="2024-01-01 09:00:00") for i in (1, 2)])
    bad = fees.tail(1).cast(pl.String).with_columns(amount=pl.lit("x"))
    for month, frame in (("month=1", fees.head(1)), ("month=2", bad)):
        (inbox / "fee_lines" / month).mkdir(parents=True)
        frame.write_parquet(inbox / "fee_lines" / month / "part-0.parquet")
    st = tmp_path / "s.duckdb"
    doc = night(inbox, st, tmp_path / "out1", 1)
    assert [(f["path"], f["rows"]) for f in doc["inputs"]] == [
        ("settlements/part-1.csv.gz", 1), ("fee_lines/month=1/part-0.parquet", 1),
        ("fee_lines/month=2/part-0.parquet", 1)]
    assert doc["inputs"][0]["sha256"] == hashlib.sha256(packed.read_bytes()).hexdigest()
    assert pl.read_csv(tmp_path / "out1" / "quarantine.csv").select("file", "reason").rows() == [
        ("fee_lines/month=2/part-0.parquet", "bad decimal")]
    assert night(inbox, st, tmp_path / "out2", 2)["files_skipped"] == 3


def test_a_night_names_each_quarantined_record_in_a_store_older_than_record_key(tmp_path):
    """quarantine.csv's record_key comes from the night's files and from keys already
    stored; a store made before the column gains it (empty for its earlier nights)."""
    st = tmp_path / "s.duckdb"
    con = store.open_store(st)
    con.execute("ALTER TABLE quarantine DROP COLUMN record_key")  # as such a store was
    con.close()
    inbox = tmp_path / "inbox"
    (inbox / "settlements").mkdir(parents=True)
    (inbox / "fee_lines").mkdir()
    stay = table("settlements", [dict(settlement_id="S1", person_id="P", institution_id="H",
                                      admit_time="2024-01-01 08:00:00")])
    stay.write_parquet(inbox / "settlements" / "part-1.parquet")
    table("fee_lines", [dict(line_id=f"L{i}", settlement_id="S1", item_code="X1",
                             charge_time="2024-01-01 09:00:00") for i in (1, 2)]
          ).cast(pl.String).with_columns(
        amount=pl.when(pl.col("line_id") == "L2").then(pl.lit("x")).otherwise("amount")
    ).write_csv(inbox / "fee_lines" / "part-1.csv")
    night(inbox, st, tmp_path / "out1", 1)
    stay.write_csv(inbox / "settlements" / "part-2.csv")  # S1 again, stored already
    night(inbox, st, tmp_path / "out2", 2)

    shown = ["file", "line", "reason", "record_key", "reason_zh"]
    assert pl.read_csv(tmp_path / "out1" / "quarantine.csv").select(shown).rows() == [
        ("fee_lines/part-1.csv", 3, "bad decimal", "L2", "数值无法识别")]
    assert pl.read_csv(tmp_path / "out2" / "quarantine.csv").select(shown).rows() == [
        ("settlements/part-2.csv", 2, "duplicate key", "S1", "主键重复")]
    con = store.open_store(st, create=False, read_only=True)
    try:
        assert con.execute("SELECT night, reason, record_key FROM quarantine ORDER BY night"
                           ).fetchall() == [(1, "bad decimal", "L2"), (2, "duplicate key", "S1")]
    finally:
        con.close()


def test_an_inbox_table_that_cannot_be_read_stops_the_night_as_load_folder_would(tmp_path):
    """Found in review: a dangling settlements.csv link was 'not a contract table', and a
    fee_lines folder of 2024-01/ subfolders (no partitions) left the night without its fee
    lines, while load_folder stops on both."""
    inbox = tmp_path / "inbox"
    (inbox / "fee_lines" / "2024-01").mkdir(parents=True)
    table("fee_lines", []).write_parquet(inbox / "fee_lines" / "2024-01" / "part.parquet")
    (inbox / "empty").mkdir()
    with pytest.raises(IngestError, match="holds no .csv, .csv.gz or .parquet parts, only "
                                          "2024-01"):
        scan_inbox(inbox, [])
    (inbox / "fee_lines" / "2024-01" / "part.parquet").unlink()
    (inbox / "fee_lines" / "2024-01").rmdir()
    assert scan_inbox(inbox, []) == []  # an empty folder: a night without that table
    (inbox / "settlements.csv").symlink_to(tmp_path / "gone.csv")
    with pytest.raises(IngestError, match="settlements.csv: a link to .*which does not exist"):
        scan_inbox(inbox, [])


def test_a_rule_taken_out_of_the_rule_set_closes_its_suspicions(fed, tmp_path):
    """Found in review: a rule taken out of the rule set left its suspicions open in the
    store for ever. With --only, the rules left out keep theirs."""
    from fraudscreen.runner import load_rules

    gone_rule = "split_hospitalisation.readmission"
    before = open_rows(fed["stores"][NIGHTS]).filter(pl.col("status") == "open")
    held = set(before.filter(pl.col("rule_id") == gone_rule)["suspicion_id"])
    assert held
    st = copy_store(fed["stores"][NIGHTS], tmp_path / "only.duckdb")
    opts = NightOptions(inbox=fed["inbox"], store=st, out=tmp_path / "only",
                        today=dt.date(2024, 7, 1), only=["duplicate_charge"])
    doc = run_night(opts, load_rules(opts)).manifest
    assert not doc["superseded"]
    assert open_rows(st).filter(pl.col("status") == "open").height == before.height

    st = copy_store(fed["stores"][NIGHTS], tmp_path / "s.duckdb")
    rules = RuleSet([r for r in RuleSet.load().rules if r.id != gone_rule])
    opts = NightOptions(inbox=fed["inbox"], store=st, out=tmp_path / "out",
                        today=dt.date(2024, 7, 1))
    doc = run_night(opts, rules).manifest
    assert {r["suspicion_id"] for r in doc["superseded"]} == held
    assert {r["reason"] for r in doc["superseded"]} == {RULE_RETIRED.format(rule=gone_rule)}
    changes = pl.read_csv(tmp_path / "out" / "changes.csv")
    assert set(changes.filter(pl.col("event") == "superseded")["suspicion_id"]) == held
    still = open_rows(st).filter(pl.col("status") == "open")
    assert still.height == before.height - len(held)


def test_a_parameter_change_says_why_suspicions_went(fed, tmp_path):
    """Found in review: suspicions a tighter --param no longer finds were superseded as
    'no longer supported by the data', which blamed the data."""
    from fraudscreen.nightly import RULES_CHANGED
    from fraudscreen.runner import load_rules

    st = copy_store(fed["stores"][NIGHTS], tmp_path / "s.duckdb")
    opts = NightOptions(inbox=fed["inbox"], store=st, out=tmp_path / "out",
                        today=dt.date(2024, 7, 1),
                        params=["split_hospitalisation.readmission.max_gap_days=1"])
    doc = run_night(opts, load_rules(opts)).manifest
    gone = {r["rule_id"]: r["reason"] for r in doc["superseded"]}
    assert gone and set(gone) == {"split_hospitalisation.readmission"}
    assert set(gone.values()) == {RULES_CHANGED}


def test_a_night_that_screens_nothing_still_names_a_site_family(fed, tmp_path):
    """Found in review: an idle night's manifest had no rules, so its leads and report
    showed a site family by its id."""
    rule = tmp_path / "rules" / "r.yaml"
    rule.parent.mkdir()
    text = (Path(__file__).parent.parent / "rules" / "pharmacy_card_skimming" /
            "hoarding.yaml").read_text(encoding="utf-8")
    rule.write_text(text.replace("id: pharmacy_card_skimming.hoarding", "id: site_x.hoarding")
                    .replace("family: pharmacy_card_skimming",
                             "family: site_x\nfamily_title: 囤药倒卖"), encoding="utf-8")
    rules = RuleSet.load([rule.parent])
    st = copy_store(fed["stores"][NIGHTS], tmp_path / "s.duckdb")
    for n, out in enumerate(("screened", "idle")):
        opts = NightOptions(inbox=fed["inbox"], store=st, out=tmp_path / out,
                            today=dt.date(2024, 7, 1 + n))
        doc = run_night(opts, rules).manifest
        assert doc["screened"] is (out == "screened")
        assert doc["family_titles"] == {"site_x": "囤药倒卖"}


def test_a_night_re_run_into_its_own_report_folder_leaves_the_report_alone(fed, tmp_path):
    """Found in review: re-running a night with the same --out (after a crash once the
    report was in place, or twice on one day) replaced its leads, marked reported, with
    an empty report. Now the folder is not replaced, the store not touched, exit 2."""
    st = copy_store(fed["stores"][NIGHTS - 1], tmp_path / "s.duckdb")
    out = tmp_path / "night"
    doc = night(fed["inbox"], st, out, NIGHTS)
    assert doc["leads_suspicions"] > 0
    report = {p.name: p.read_bytes() for p in out.iterdir()}
    before = store.snapshot(st)
    result = CliRunner().invoke(app, [
        "nightly", "--inbox", str(fed["inbox"]), "--store", str(st), "--out", str(out),
        "--today", str(night_date(NIGHTS)), "--quiet"])
    assert result.exit_code == 2, result.output
    assert f"holds the report of night {NIGHTS}" in result.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == report
    assert store.snapshot(st) == before


@pytest.mark.parametrize("cut, code", [(KeyboardInterrupt(), 130),
                                       (PermissionError(13, "Permission denied"), 1)])
def test_a_night_cut_short_once_stored_says_so_and_the_next_writes_its_report(
        fed, tmp_path, monkeypatch, cut, code):
    """Ctrl-C, SIGTERM or an unwritable --out while the report is written: the night is
    in the store, so the message must say so (found in review: a stop said nothing was
    kept); the next night writes that night's leads."""
    import fraudscreen.report

    st = copy_store(fed["stores"][NIGHTS - 1], tmp_path / "s.duckdb")

    def failing(*args, **kwargs):
        raise cut

    with monkeypatch.context() as patch:
        patch.setattr(fraudscreen.report, "write_reports", failing)
        result = CliRunner().invoke(app, [
            "nightly", "--inbox", str(fed["inbox"]), "--store", str(st), "--out",
            str(tmp_path / "cut"), "--today", str(night_date(NIGHTS)), "--quiet"])
    assert result.exit_code == code, result.output
    assert f"night {NIGHTS} was stored, its report not written" in result.output
    assert "nothing of this night was kept" not in result.output
    assert [p.name for p in (tmp_path / "cut").iterdir()] == ["run.json"]  # no report
    status = json.loads((tmp_path / "cut" / "run.json").read_text(encoding="utf-8"))["status"]
    assert status["exit_code"] == code and "its report not written" in status["error"]
    left = tmp_path / ".cut.tmp-0123abcd"  # as a SIGKILL while writing would leave it
    left.mkdir()
    again = night(fed["inbox"], st, tmp_path / "next", NIGHTS)
    assert not left.exists()
    assert again["nights_reported"] == [NIGHTS]
    assert sorted(again["new_suspicion_ids"]) == sorted(
        night(fed["inbox"], copy_store(fed["stores"][NIGHTS - 1], tmp_path / "t.duckdb"),
              tmp_path / "whole", NIGHTS)["new_suspicion_ids"])


def test_a_commit_that_fails_reports_its_own_error_not_the_rollbacks(fed, tmp_path,
                                                                    monkeypatch):
    """Found in review: a COMMIT that failed for a full disk had ended the transaction,
    and ROLLBACK's "no transaction is active" was the message the operator saw."""
    import duckdb

    opened = store.open_store

    class DiskFullAtCommit:
        def __init__(self, con):
            self.con = con

        def execute(self, sql, *args):
            if sql == "COMMIT":
                self.con.execute("ROLLBACK")
                raise duckdb.IOException("Could not write file \"s.duckdb.wal\": "
                                         "No space left on device")
            return self.con.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self.con, name)

    st = copy_store(fed["stores"][NIGHTS - 1], tmp_path / "s.duckdb")
    before = store.snapshot(st)
    monkeypatch.setattr(store, "open_store", lambda *a, **k: DiskFullAtCommit(opened(*a, **k)))
    result = CliRunner().invoke(app, [
        "nightly", "--inbox", str(fed["inbox"]), "--store", str(st), "--out",
        str(tmp_path / "night"), "--today", str(night_date(NIGHTS)), "--quiet"])
    monkeypatch.undo()
    assert result.exit_code == 2, result.output
    assert "No space left on device" in result.output
    assert "no transaction is active" not in result.output
    assert store.snapshot(st) == before


def test_a_quiet_night_still_shows_notes_and_quarantined_rows(tmp_path):
    """As run does: a reversal column under a header nobody knows reverses nothing, and
    quarantined rows are left out; --quiet must not hide either."""
    inbox = tmp_path / "inbox"
    generate(tmp_path / "data", scale=0.005, seed=3)
    shutil.copytree(tmp_path / "data", inbox)
    settlements = next((inbox / "settlements").glob("*")) if (inbox / "settlements").is_dir() \
        else inbox / "settlements.parquet"
    frame = pl.read_parquet(settlements)
    frame = frame.rename({"reversed_settlement_id": "冲销原结算号"}).with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("not a time"))
        .otherwise(pl.col("settle_time").cast(pl.String)).alias("settle_time"))
    settlements.unlink()
    (inbox / "settlements").mkdir(exist_ok=True)
    frame.write_parquet(inbox / "settlements" / "part-1.parquet")
    persons = next(inbox.glob("persons*"))
    text = pl.read_parquet(persons).write_csv()
    persons.unlink()
    (inbox / "persons.csv").write_text(text.rstrip("\n"), encoding="utf-8")
    result = CliRunner().invoke(app, [
        "nightly", "--inbox", str(inbox), "--store", str(tmp_path / "s.duckdb"),
        "--out", str(tmp_path / "out"), "--quiet", "--new-store"])
    assert result.exit_code == 0, result.output
    assert "note: " in result.output and "冲销原结算号" in result.output
    assert "1 row(s) quarantined: see" in result.output
    assert "no store there, so a new one was made" in result.output  # a first night
    assert "persons.csv: its last line has no line end" in result.output
    assert "冲销原结算号" in (tmp_path / "out" / "report.html").read_text(encoding="utf-8")


def test_an_inbox_file_that_cannot_be_read_stops_the_night_naming_it(fed, tmp_path,
                                                                     monkeypatch):
    """As load_folder says it for run (exit 2), not "nightly run failed: [Errno 13]"."""
    import fraudscreen.nightly

    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))

    st = copy_store(fed["stores"][NIGHTS - 1], tmp_path / "s.duckdb")
    monkeypatch.setattr(fraudscreen.nightly, "file_sha256", denied)
    result = CliRunner().invoke(app, [
        "nightly", "--inbox", str(fed["inbox"]), "--store", str(st), "--out",
        str(tmp_path / "night"), "--today", str(night_date(NIGHTS)), "--quiet"])
    assert result.exit_code == 2, result.output
    assert "cannot be read (Permission denied)" in result.output


def test_a_store_held_open_by_another_process_stops_the_night_saying_so(fed, tmp_path):
    """A duckdb shell left connected, read-only too, holds the store's lock: the night
    stops with what to look for (the message once guessed another fraudscreen)."""
    st = copy_store(fed["stores"][NIGHTS - 1], tmp_path / "s.duckdb")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1], "
         "read_only=True); print('open', flush=True); time.sleep(120)", str(st)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        result = CliRunner().invoke(app, [
            "nightly", "--inbox", str(fed["inbox"]), "--store", str(st), "--out",
            str(tmp_path / "night"), "--today", str(night_date(NIGHTS)), "--quiet"])
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 2, result.output
    assert "another process has it open" in result.output and "duckdb shell" in result.output
    assert [p.name for p in (tmp_path / "night").iterdir()] == ["run.json"]  # no report


@pytest.mark.parametrize("fault, says, code", [
    ("rules", "no such rule file or folder", 2),
    ("inbox", "no such inbox folder", 2),
    ("store", "no such store", 2),
    ("mid-way", "RuntimeError: the engine went away", 1),
])
def test_a_failed_night_leaves_a_run_json_saying_so_and_the_store_as_it_was(
        fed, tmp_path, monkeypatch, fault, says, code):
    """Found in review: a failed night left no run.json, so a monitoring script (or the
    morning's inspector) could not tell it from a night that never ran."""
    st = copy_store(fed["stores"][NIGHTS - 1], tmp_path / "s.duckdb")
    before = store.snapshot(st)
    out = tmp_path / "night"
    given = {"rules": ["--rules", str(tmp_path / "site_rules")],
             "inbox": ["--inbox", str(tmp_path / "inbox")],
             "store": ["--store", str(tmp_path / "typo.duckdb")], "mid-way": []}[fault]
    if fault == "mid-way":
        def went_away(*args, **kwargs):
            raise RuntimeError("the engine went away")
        monkeypatch.setattr(rescreen, "screen_night", went_away)
    result = CliRunner().invoke(app, [
        "nightly", "--inbox", str(fed["inbox"]), "--store", str(st), "--out", str(out),
        "--today", str(night_date(NIGHTS)), "--quiet", *given])
    monkeypatch.undo()
    assert result.exit_code == code, result.output
    assert [p.name for p in out.iterdir()] == ["run.json"]
    doc = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert doc["mode"] == "nightly" and doc["status"]["exit_code"] == code
    assert says in doc["status"]["error"]
    assert store.snapshot(st) == before and not (tmp_path / "typo.duckdb").exists()
    # Run again once fixed, into the same folder: the record gives way to the report.
    night(fed["inbox"], st, out, NIGHTS)
    doc = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert doc["status"] == {"exit_code": 0, "failed_rules": [], "strict_quarantine": False}
    assert (out / "suspicions.parquet").exists()


@pytest.mark.parametrize("profile", ["full", "public"])
def test_a_failed_public_night_records_the_errors_kind_not_its_message(tmp_path, monkeypatch,
                                                                      profile):
    """Found in review: a persons file sent without its header row stopped the night with
    "The header read was: PZ900017, 1, …", and a public night's run.json said so, the
    person id raw. Its record keeps the error's kind; stderr has the message."""
    inbox = tmp_path / "inbox"
    (inbox / "persons").mkdir(parents=True)
    (inbox / "persons" / "part-1.csv").write_text("PZ900017,1,1980-01-01,350902\n",
                                                   encoding="utf-8")
    monkeypatch.setenv("FRAUDSCREEN_SITE_SECRET", "s")
    out = tmp_path / "night"
    result = CliRunner().invoke(app, [
        "nightly", "--inbox", str(inbox), "--store", str(tmp_path / "s.duckdb"), "--out",
        str(out), "--new-store", "--quiet", "--profile", profile])
    assert result.exit_code == 2, result.output
    assert "The header read was: PZ900017" in result.output
    error = json.loads((out / "run.json").read_text(encoding="utf-8"))["status"]["error"]
    if profile == "public":
        assert error == f"IngestError: {WITHHELD}"
        assert naming(out, "PZ900017") == []
    else:
        assert "The header read was: PZ900017" in error


def test_a_failed_night_whose_out_cannot_take_a_record_says_it_on_stderr_only(tmp_path):
    """--out a file, or a folder of other files: nothing is written there."""
    for out in (tmp_path / "a-file", tmp_path / "papers"):
        (out / "notes.txt" if out.name == "papers" else out).parent.mkdir(exist_ok=True)
        (out / "notes.txt" if out.name == "papers" else out).write_text("mine", encoding="utf-8")
        result = CliRunner().invoke(app, [
            "nightly", "--inbox", str(tmp_path / "inbox"), "--store", str(tmp_path / "s.duckdb"),
            "--out", str(out), "--new-store"])
        assert result.exit_code == 2 and f"--out {out}" in result.output
    assert (tmp_path / "a-file").read_text(encoding="utf-8") == "mine"
    assert [p.name for p in (tmp_path / "papers").iterdir()] == ["notes.txt"]


def test_strict_judges_the_rows_quarantined_on_the_nights_a_run_reports(tmp_path, monkeypatch):
    """--strict exits 1 when the report it writes lists quarantined rows: a night's own,
    or an earlier night's whose report was not written (found in review: a night stopped
    once stored had its report, quarantine.csv included, written by the next run, which
    exited 0 and counted no row in run.json). A run that reports no night (the same inbox
    again) quarantined nothing: exit 0."""
    import fraudscreen.report

    inbox = tmp_path / "inbox"
    (inbox / "settlements").mkdir(parents=True)
    table("settlements", [dict(settlement_id=s, person_id="P", institution_id="H",
                               admit_time="2024-01-01 08:00:00") for s in ("A", "B")]
          ).with_columns(admit_time=pl.when(pl.col("settlement_id") == "B")
                         .then(pl.lit("not a time")).otherwise(pl.col("admit_time").cast(str))
                         ).write_csv(inbox / "settlements" / "part-1.csv")

    def screen_night(out: str, *more: str):
        return CliRunner().invoke(app, [
            "nightly", "--inbox", str(inbox), "--store", str(tmp_path / "s.duckdb"), "--out",
            str(tmp_path / out), "--today", "2024-07-01", "--strict", "--quiet", *more])

    def run_json(out: str) -> dict:
        return json.loads((tmp_path / out / "run.json").read_text(encoding="utf-8"))

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:  # stopped once stored: its report not written
        patch.setattr(fraudscreen.report, "write_reports", stopped)
        result = screen_night("cut", "--new-store")
    assert result.exit_code == 130, result.output
    result, doc = screen_night("late"), run_json("late")  # writes night 1's report
    assert result.exit_code == 1, result.output
    assert doc["nights_reported"] == [1] and doc["quarantine"][0]["rows"] == 1
    assert doc["status"] == {"exit_code": 1, "failed_rules": [], "strict_quarantine": True}
    assert "--strict: 1 row(s) quarantined" in result.output
    assert pl.read_csv(tmp_path / "late" / "quarantine.csv")["value"].to_list() == ["not a time"]
    # nothing new: no night reported, nothing quarantined
    result, doc = screen_night("again"), run_json("again")
    assert doc["nights_reported"] == [] and doc["quarantine"] == []
    assert result.exit_code == 0, result.output
    assert doc["status"]["strict_quarantine"] is False


def test_a_night_tells_its_progress_as_a_run_does(tmp_path):
    """A first night can read months of exports: it says what it read and each rule as it
    is done, as text or as one JSON event a line (--log-format json, for the scheduler
    that runs it), with the inbox's own file names; a note is told once."""
    data = tmp_path / "data"
    generate(data, scale=0.005, seed=3)
    inbox = tmp_path / "inbox"
    for name in ("settlements", "fee_lines"):
        (inbox / name).mkdir(parents=True)
        shutil.copy(data / f"{name}.parquet", inbox / name / "part-01.parquet")
    cli = CliRunner()
    result = cli.invoke(app, ["nightly", "--inbox", str(inbox), "--store",
                              str(tmp_path / "s.duckdb"), "--out", str(tmp_path / "n1"),
                              "--new-store", "--log-format", "json"])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.output.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "ingest_start" and kinds[-1] == "done" and kinds.count("rule") == 14
    assert sorted(e["file"] for e in events if e["event"] == "file") == [
        "fee_lines/part-01.parquet", "settlements/part-01.parquet"]
    night1 = next(e for e in events if e["event"] == "night")
    assert night1["night"] == 1 and night1["new"] > 0 and events[-1]["exit_code"] == 0
    notes = [e["note"] for e in events if e["event"] == "note"]
    assert len(notes) == len(set(notes)) and any("no store there" in n for n in notes)

    pl.read_parquet(data / "fee_lines.parquet").head(1).with_columns(line_id=pl.lit("NEW-1")
                                                                     ).write_parquet(
        inbox / "fee_lines" / "part-02.parquet")
    result = cli.invoke(app, ["nightly", "--inbox", str(inbox), "--store",
                              str(tmp_path / "s.duckdb"), "--out", str(tmp_path / "n2")])
    lines = result.output.splitlines()
    assert result.exit_code == 0, result.output
    assert lines[0] == f"reading {inbox} …" and "  fee_lines/part-02.parquet: " in lines[1]
    assert sum(line.startswith("  [") and "/14] " in line for line in lines) == 14
    assert any(line.startswith("night 2: 1 new file(s), 2 already ingested;") for line in lines)
