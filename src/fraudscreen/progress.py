"""What a run shows on the terminal: a line per rule as it finishes, then a summary.

Progress goes to stderr (stdout stays clean for pipes); ``--quiet`` prints only
errors.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


class Progress:
    def __init__(self, quiet: bool = False, total: int = 0):
        self.quiet = quiet
        self.total = total
        self.done = 0
        self.console = Console(stderr=True, highlight=False)

    def __enter__(self) -> "Progress":
        if not self.quiet:
            self.console.print(f"[bold]fraudscreen[/] screening with {self.total} rule(s)…")
        return self

    def __exit__(self, *exc) -> None:
        return None

    def rule_done(self, outcome) -> None:
        self.done += 1
        if self.quiet and outcome.status != "failed":
            return
        style = {"ran": "green", "skipped": "yellow", "failed": "red"}[outcome.status]
        detail = (f"{outcome.hits} hit(s), ¥{outcome.amount}" if outcome.status == "ran"
                  else outcome.reason)
        self.console.print(f"  [{self.done}/{self.total}] [{style}]{outcome.status:7}[/] "
                           f"{outcome.rule.id}  {detail}  ({outcome.seconds:.2f}s)")

    def summary(self, result) -> None:
        if self.quiet:
            return
        table = Table(title="疑点汇总 / suspicions by rule")
        for col in ("rule", "status", "hits", "amount at risk (¥)"):
            table.add_column(col, justify="right" if col != "rule" else "left")
        for o in result.screening.outcomes:
            table.add_row(o.rule.id, o.status, str(o.hits), o.amount)
        self.console.print(table)
        orphans = result.screening.integrity.get("fee_lines_without_settlement", 0)
        if orphans:
            self.console.print(f"[yellow]warning[/]: {orphans} fee line(s) name a settlement "
                               "that is not in settlements; no rule can use them")
        q = result.ingestion.quarantine.height
        self.console.print(
            f"{result.screening.suspicions.height} suspicion(s); {q} quarantined cell(s); "
            f"window {result.manifest['window']['start']} – {result.manifest['window']['end']}")
