"""``fraudscreen run``: ingest, screen, write — and say what happened.

The manifest (``run.json``) records everything needed to trust or reproduce a run:
tool version, rules with versions and content hashes, parameters, input files with
row counts and checksums, quarantine counts, rules skipped and why, timings.
"""

from __future__ import annotations

import datetime as dt
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from fraudscreen import __version__
from fraudscreen.ingest import IngestError, Ingestion, load_folder
from fraudscreen.output import check_out, staged, write_csv, write_json, write_suspicions
from fraudscreen.privacy import apply_profile, check_profile, shown_rule, site_secret
from fraudscreen.quarantine import csv_frame, quarantined_reversals
from fraudscreen.reference import shipped_watchlist
from fraudscreen.report import write_reports
from fraudscreen.ruleset import RuleSet
from fraudscreen.screen import RuleOutcome, Screening, make_engine, screen

WORK, SPILL = ".work", ".spill"  # scratch folders inside the staged output folder


@dataclass(kw_only=True)
class ScreenOptions:
    """What shapes a screening, for ``run`` and ``nightly`` alike."""

    rules: list[Path] = field(default_factory=list)
    only: list[str] = field(default_factory=list)
    params: list[str] = field(default_factory=list)
    params_file: Path | None = None
    watchlists: list[Path] = field(default_factory=list)
    encoding: str | None = None
    column_map: Path | None = None
    strict: bool = False
    engine: str = "duckdb"
    memory_limit: str = "1.5GB"
    spill_limit: str | None = None  # DuckDB's default: 90 % of the free disk
    threads: int | None = None
    profile: str = "full"
    rule_timeout: float = 3600.0  # seconds a rule may run (0: no limit; screen.RULE_TIMEOUT)


@dataclass(kw_only=True)
class RunOptions(ScreenOptions):
    data: Path
    out: Path
    window_from: dt.date | None = None
    window_to: dt.date | None = None
    spark_master: str = "local[*]"
    spark_tables: dict[str, str] = field(default_factory=dict)  # contract table → Spark table


@dataclass
class RunResult:
    screening: Screening
    ingestion: Ingestion
    manifest: dict
    exit_code: int
    strict_failed: bool = False  # --strict and rows were quarantined


def load_rules(opts: ScreenOptions) -> RuleSet:
    """The rules to run, with their parameters. Parameters are checked against every rule
    loaded, then ``--only`` selects: a site's params file (or a ``--param``) that sets a
    rule ``--only`` leaves out is valid and unused, never "no rule"."""
    return (RuleSet.load(opts.rules).with_params(opts.params, opts.params_file)
            .select(opts.only))


def options_doc(opts: ScreenOptions, origins: dict[str, str]) -> dict:
    """What the run was asked for beyond the data, for run.json: the options that shape
    its suspicions, and each reference file it read (watch lists, the shipped item pairs)
    with its checksum, so a result can be traced to the lists behind it."""
    from fraudscreen.ingest import file_sha256
    from fraudscreen.reference import watchlist_files
    from fraudscreen.resources import shipped

    files = list(watchlist_files(opts.watchlists))
    if origins.get("item_pairs", "").startswith("rules/reference"):
        files.append(shipped("rules") / "reference" / "item_pairs.csv")
    return {
        "options": {"rules": [str(p) for p in opts.rules], "only": opts.only,
                    "params": opts.params,
                    "params_file": str(opts.params_file) if opts.params_file else None,
                    "strict": opts.strict, "encoding": opts.encoding,
                    "column_map": str(opts.column_map) if opts.column_map else None,
                    "memory_limit": opts.memory_limit, "spill_limit": opts.spill_limit,
                    "threads": opts.threads,
                    "rule_timeout": opts.rule_timeout},
        "reference_files": [{"path": str(f), "sha256": file_sha256(f)} for f in files],
    }


def quarantine_counts(quarantine: pl.DataFrame) -> list[dict]:
    """Per table and reason: the rows (a row is a file and a line) and the cells."""
    if quarantine.is_empty():
        return []
    rows = (quarantine.group_by(["table", "reason"])
            .agg(pl.struct("file", "line").n_unique().alias("rows"), pl.len().alias("cells"))
            .sort(["table", "reason"]))
    return rows.to_dicts()


def outcome_doc(o: RuleOutcome, profile: str) -> dict:
    r = o.rule
    doc = {"id": r.id, "version": r.version, "title": r.title, "family": r.family,
           "amount_basis": r.amount_basis,
           "family_title": r.family_title, "severity": r.severity,
           "status": o.status, "reason": o.reason, "error_kind": o.kind or None,
           "hits": o.hits, "amount_at_risk": o.amount, "seconds": round(o.seconds, 3),
           "skipped": o.skipped, "skipped_unit": o.rule.detect.skip.unit()
           if getattr(o.rule.detect, "skip", None) else None, "params": o.params,
           "path": r.path, "content_hash": r.content_hash}
    return shown_rule(doc, profile)


def manifest(opts: RunOptions, ingestion: Ingestion, screening: Screening,
             timings: dict[str, float], titles: dict[str, str]) -> dict:
    return {
        "tool": "fraudscreen",
        "version": __version__,
        "engine": opts.engine,
        "profile": opts.profile,
        "suspicions_profile": "public" if opts.profile == "public" else "full",
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "data": str(opts.data),
        "out": str(opts.out),
        "window": {"start": screening.window[0], "end": screening.window[1],
                   "given": bool(opts.window_from or opts.window_to)},
        "inputs": [
            {"table": f.table, "path": f.path, "rows": f.rows, "sha256": f.sha256}
            for f in ingestion.files
        ],
        "rows_read": ingestion.rows_read,
        "rows_kept": ingestion.rows_kept,
        "missing_optional_tables": ingestion.missing_optional,
        "ingestion_notes": ingestion.notes,
        "reference_data": screening.origins,
        **options_doc(opts, screening.origins),
        "quarantine": quarantine_counts(ingestion.quarantine),
        "integrity": screening.integrity,
        "rules": [outcome_doc(o, opts.profile) for o in screening.outcomes],
        "family_titles": titles,
        "institution_names": screening.institution_names,
        "suspicions": screening.suspicions.height,
        "timings_seconds": {k: round(v, 3) for k, v in timings.items()},
    }


def run(opts: RunOptions, ruleset: RuleSet, progress=None) -> RunResult:
    """The whole run; raises IngestError/RuleError for unusable input or rules."""
    began = time.perf_counter()
    check_out(opts.out, [opts.data])
    check_profile(opts.profile)
    if opts.profile == "public":
        site_secret()  # fail now, not after an hour of screening
    shipped_watchlist(opts.watchlists)  # a broken list fails now, not once the data is read
    if progress:
        progress.reading(opts.data)
    if opts.spark_tables and opts.engine != "spark":
        raise ValueError("--spark-table needs --engine spark")
    on_rule = progress.rule_done if progress else None
    with staged(opts.out) as folder:
        # Clean rows are staged beside the outputs and scanned there by the engine.
        ingestion = load_folder(opts.data, encoding=opts.encoding, column_map=opts.column_map,
                                external=frozenset(opts.spark_tables),
                                work_dir=folder / WORK,
                                on_file=progress.file_read if progress else None)
        ingested = time.perf_counter()
        if progress:
            progress.read(ingestion, ingested - began)
        _check_usable(ingestion, opts)
        engine = make_engine(opts.engine, **_engine_options(opts, folder))
        try:
            screening = screen(ingestion.tables, ruleset, engine, opts.window_from,
                               opts.window_to, opts.watchlists, on_rule,
                               quarantined_reversals=quarantined_reversals(
                                   ingestion.quarantine),
                               rule_timeout=opts.rule_timeout or None)
        finally:
            engine.close()
        screened = time.perf_counter()
        # The staged rows and the spill are read no more: removed (mostly in the kernel)
        # while the outputs are written, on one core.
        scratch = threading.Thread(target=_remove, args=[folder / WORK, folder / SPILL])
        scratch.start()
        # A public run shares no raw person id, suspicions.parquet included.
        write_suspicions(apply_profile(screening.suspicions, "public")
                         if opts.profile == "public" else screening.suspicions, folder)
        write_csv(csv_frame(ingestion.quarantine, opts.profile), folder / "quarantine.csv")
        doc = manifest(opts, ingestion, screening, {
            "ingest": ingested - began, "rules": screened - ingested},
            ruleset.family_titles())
        failed = [o.rule.id for o in screening.outcomes if o.status == "failed"]
        strict_fail = opts.strict and ingestion.quarantine.height > 0
        # The folder is written either way (its quarantine.csv and failed rules are what
        # to fix), but says plainly that it is not a complete screening.
        doc["status"] = {"exit_code": 1 if failed or strict_fail else 0,
                         "failed_rules": failed, "strict_quarantine": strict_fail}
        write_reports(folder, screening.suspicions, doc, opts.profile)
        doc["timings_seconds"]["total"] = round(time.perf_counter() - began, 3)
        write_json(doc, folder / "run.json")
        scratch.join()
    return RunResult(screening, ingestion, doc, doc["status"]["exit_code"], strict_fail)


def _remove(*folders: Path) -> None:
    for path in folders:
        shutil.rmtree(path, ignore_errors=True)


def _check_usable(ingestion: Ingestion, opts: RunOptions) -> None:
    if problem := ingestion.unusable():
        raise IngestError(f"{opts.data}: {problem}; `fraudscreen validate --data {opts.data} "
                          "--out DIR` writes quarantine.csv with the reasons")


def _engine_options(opts: RunOptions, folder: Path) -> dict:
    if opts.engine == "spark":
        return {"master": opts.spark_master, "spark_tables": opts.spark_tables,
                "temp_dir": folder / SPILL}
    return {"memory_limit": opts.memory_limit, "temp_dir": folder / SPILL,
            "threads": opts.threads, "spill_limit": opts.spill_limit}
