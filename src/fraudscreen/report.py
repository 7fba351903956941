"""What inspectors read: leads.csv, leads.xlsx and report.html beside the suspicions.

A thin orchestrator: the privacy profile (:mod:`fraudscreen.privacy`) is applied
first, then the roll-up (:mod:`fraudscreen.leads`), the workbook
(:mod:`fraudscreen.xlsx`) and the page (:mod:`fraudscreen.html_report`) are
written from the same profiled suspicions. See ``docs/report.md``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import uuid
from pathlib import Path

import polars as pl

from fraudscreen import html_report, leads, xlsx
from fraudscreen.output import write_csv
from fraudscreen.privacy import apply_profile, check_profile
from fraudscreen.suspicion import SCHEMA

REPORT_FILES = ("leads.csv", "leads.xlsx", "report.html")
FIXED_CREATED = dt.datetime(2000, 1, 1)


def write_reports(folder: Path, suspicions: pl.DataFrame, manifest: dict, profile: str,
                  secret: str | None = None) -> None:
    """Write leads.csv, leads.xlsx and report.html into ``folder``.

    ``profile`` is full, investigator or public; public needs a site secret (the
    argument, else ``$FRAUDSCREEN_SITE_SECRET``) and raises ValueError without one.
    """
    check_profile(profile)
    _write(folder, apply_profile(suspicions, profile, secret), manifest, profile)


def report_folder(out_dir: Path, profile: str = "full", secret: str | None = None) -> None:
    """Regenerate the three report files of an existing run's output folder.

    Reads ``suspicions.parquet`` and ``run.json``; the files are written aside and
    moved into place only when all three are ready.
    """
    check_profile(profile)
    out_dir = Path(out_dir)
    parquet, manifest_path = out_dir / "suspicions.parquet", out_dir / "run.json"
    for needed in (parquet, manifest_path):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed} not found: is {out_dir} a fraudscreen run folder?")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{manifest_path}: not a run's manifest ({err})") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{manifest_path}: not a run's manifest (a JSON object)")
    try:
        suspicions = pl.read_parquet(parquet, glob=False).select(
            pl.col(name).cast(dtype) for name, dtype in SCHEMA.items())
    except pl.exceptions.PolarsError as err:
        raise ValueError(f"{parquet}: cannot be read as the run's suspicions "
                         f"({str(err).splitlines()[0]})") from None
    stored = manifest.get("suspicions_profile", "full")
    # A run that already pseudonymised suspicions.parquet: pseudonymising again would
    # hash the pseudonyms, and the raw ids are not there to show.
    if stored == "public" and profile != "public":
        raise ValueError(f"{parquet} holds pseudonymised person ids (profile public); "
                         f"profile {profile!r} cannot be produced from it")
    tmp = out_dir / f".report-tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        try:
            if stored == "public":
                _write(tmp, suspicions, manifest, profile)
            else:
                write_reports(tmp, suspicions, manifest, profile, secret)
        except (KeyError, TypeError, AttributeError) as err:  # a hand-edited manifest
            raise ValueError(f"{manifest_path}: not a run's manifest as `run` writes it "
                             f"({type(err).__name__}: {err})") from None
        for name in REPORT_FILES:
            os.replace(tmp / name, out_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write(folder: Path, shown: pl.DataFrame, manifest: dict, profile: str) -> None:
    """The three files from suspicions the profile has already been applied to."""
    titles = leads.family_titles(manifest)
    names = leads.names_in(manifest)
    lead_table = leads.leads(shown, titles, names)
    write_csv(leads.csv_frame(lead_table), folder / "leads.csv")
    xlsx.write_workbook(folder / "leads.xlsx", lead_table, shown, _created(manifest), titles,
                        leads.rule_titles(manifest), names)
    page = html_report.render(shown, lead_table, manifest, profile)
    (folder / "report.html").write_text(page, encoding="utf-8", newline="\n")


def _created(manifest: dict) -> dt.datetime:
    """The workbook's creation date: the last day of the data window, not the clock, so
    two runs over the same input give the same bytes."""
    try:
        return dt.datetime.combine(dt.date.fromisoformat(str(manifest["window"]["end"])),
                                   dt.time())
    except (KeyError, TypeError, ValueError):
        return FIXED_CREATED
