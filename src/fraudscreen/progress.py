"""What a run shows while it works: a line per step, then a summary table.

Everything goes to stderr, so stdout stays clean for pipes. ``--quiet`` keeps only
warnings and failures; ``--log-format json`` writes one JSON object per event for
schedulers (cron, Airflow, DolphinScheduler) instead of text. ``run`` and ``nightly``
tell the same events as they read and screen; each ends with its own summary.
"""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def _t(value: object) -> str:
    """A value in a line of text: paths, notes and reasons may hold brackets, which rich
    would read as its markup ('[/2024]' in a folder name stopped the run)."""
    return escape(str(value))


class Progress:
    def __init__(self, quiet: bool = False, total: int = 0, log_format: str = "text"):
        if log_format not in ("text", "json"):
            raise ValueError(f"--log-format {log_format!r}: use text or json")
        self.quiet = quiet
        self.json = log_format == "json"
        self.total = total
        self.done = 0
        self.noted: set[str] = set()  # shown once, though a night's summary repeats them
        self.console = Console(stderr=True, highlight=False, soft_wrap=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def _event(self, event: str, text: str, important: bool = False, **fields) -> None:
        if self.json:
            sys.stderr.write(json.dumps({"event": event, **fields}, ensure_ascii=False,
                                        default=str) + "\n")
        elif important or not self.quiet:
            self.console.print(text)

    def reading(self, data) -> None:
        self._event("ingest_start", f"reading [bold]{_t(data)}[/] …", data=str(data))

    def file_read(self, file, seconds: float) -> None:
        self._event("file", f"  {_t(file.path)}: {file.rows:,} row(s) in {seconds:.1f}s",
                    file=file.path, table=file.table, rows=file.rows,
                    seconds=round(seconds, 3))

    def read(self, ingestion, seconds: float) -> None:
        rows = sum(ingestion.rows_read.values())
        bad = ingestion.quarantine.height
        self._event("ingest_done",
                    f"read {rows:,} row(s) in {seconds:.1f}s; {bad} quarantined cell(s); "
                    f"screening with {self.total} rule(s)",
                    important=bool(bad), rows=rows, quarantined_cells=bad,
                    seconds=round(seconds, 3))
        # Ignored columns and files, columns left empty, codes repaired: each can change
        # what the rules find, so they are shown even under --quiet.
        for note in ingestion.notes:
            self.note(note)

    def note(self, note: str) -> None:
        if note not in self.noted:
            self.noted.add(note)
            self._event("note", f"[yellow]note[/]: {_t(note)}", important=True, note=note)

    def rule_done(self, outcome) -> None:
        self.done += 1
        style = {"ran": "green", "skipped": "yellow", "failed": "red"}[outcome.status]
        detail = (f"{outcome.hits} hit(s), ¥{outcome.amount}" if outcome.status == "ran"
                  else _t(outcome.reason))
        self._event("rule", f"  [{self.done}/{self.total}] [{style}]{outcome.status:7}[/] "
                            f"{outcome.rule.id}  {detail}  ({outcome.seconds:.2f}s)",
                    important=outcome.status == "failed", rule=outcome.rule.id,
                    status=outcome.status, hits=outcome.hits, amount=outcome.amount,
                    reason=outcome.reason, seconds=round(outcome.seconds, 3))

    def summary(self, result) -> None:
        from fraudscreen import integrity

        for warning in integrity.warnings(result.screening.integrity):
            self._event("warning", f"[yellow]warning[/]: {_t(warning)}", important=True,
                        warning=warning, **result.screening.integrity)
        if result.strict_failed:
            self._event("warning", "[red]--strict[/]: rows were quarantined (see "
                                   "quarantine.csv), so the run exits 1",
                        important=True, strict=True)
        if self.json:
            self._event("done", "", suspicions=result.screening.suspicions.height,
                        exit_code=result.exit_code, out=result.manifest.get("out"))
            return
        if self.quiet:
            return
        table = Table(title="疑点汇总 / suspicions by rule")
        for col in ("rule", "status", "hits", "amount at risk (¥)"):
            table.add_column(col, justify="right" if col != "rule" else "left")
        for o in result.screening.outcomes:
            table.add_row(o.rule.id, o.status, str(o.hits), o.amount)
        self.console.print(table)
        self.console.print(
            f"{result.screening.suspicions.height} suspicion(s); window "
            f"{result.manifest['window']['start']} – {result.manifest['window']['end']}")

    def night_done(self, result, out, strict: bool) -> None:
        """A night's summary (``nightly.NightResult``): what it found and changed, then its
        notes, warnings and quarantined rows, shown even under --quiet."""
        from fraudscreen import integrity

        doc = result.manifest
        counts = {k: doc[f"{k}_suspicions"] for k in (
            "new", "reopened", "changed", "retracted", "superseded", "open",
            "suppressed_open")}
        self._event(
            "night",
            f"night {doc['night'] if doc['night'] is not None else '-'}"
            f"{'' if result.committed else ' (nothing new)'}: "
            f"{len(doc['inputs'])} new file(s), {doc['files_skipped']} already ingested; "
            f"{counts['new']} new suspicion(s), {counts['reopened']} reopened, "
            f"{counts['changed']} changed, {counts['retracted']} retracted, "
            f"{counts['superseded']} superseded; {counts['open']} open "
            f"({counts['suppressed_open']} suppressed); wrote {_t(out)}",
            night=doc["night"], committed=result.committed, new_files=len(doc["inputs"]),
            files_skipped=doc["files_skipped"], **counts)
        # As a run shows them: each can change what the rules find (a reversal column
        # under an unknown header reverses nothing).
        for note in doc["notes"]:
            self.note(note)
        for warning in integrity.warnings(doc["integrity"]):
            self._event("warning", f"[yellow]warning[/]: {_t(warning)}", important=True,
                        warning=warning)
        if bad := sum(q["rows"] for q in doc["quarantine"]):
            self._event("quarantine", f"{'--strict: ' if strict else ''}{bad:,} row(s) "
                        f"quarantined: see {_t(out / 'quarantine.csv')}", important=True,
                        rows=bad, strict=strict)
        if self.json:
            self._event("done", "", exit_code=result.exit_code, out=str(out))
