"""Stopping a run: Ctrl-C, or SIGTERM from a scheduler, ends it with nothing published.

Python raises KeyboardInterrupt on Ctrl-C, and the output folder, staged aside, is then
removed rather than moved into place. Two things need help: SIGTERM ends a process
without any clean-up unless handled, and DuckDB turns an interrupt during a query into
its own error, which a rule's error handling would otherwise record as a failed rule
(and the run would go on to publish an incomplete screening). ``requested()`` tells an
interrupt from a real failure.
"""

from __future__ import annotations

import signal

_requested = False


def _stop(signum, frame) -> None:
    global _requested
    _requested = True
    raise KeyboardInterrupt


def install() -> None:
    """Make Ctrl-C and SIGTERM stop the run (call once, from the command line)."""
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)


def requested() -> bool:
    """Whether the run was asked to stop."""
    return _requested


class StoppedAfter(KeyboardInterrupt):
    """A stop once part of the work was kept: its message says what, instead of the
    command's "nothing was kept" (a night stopped after it was stored)."""
