"""Where the shipped data (built-in rules, watch lists) lives.

In a wheel they are packaged under ``fraudscreen/_data``; in a source checkout
(editable install, tests) they are the repository's own ``rules/`` and
``drug_watchlists/`` folders, so there is one copy to edit.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_REPO = _PACKAGE.parent.parent


def shipped(name: str) -> Path:
    """Path of a shipped folder: ``rules`` or ``drug_watchlists``."""
    for base in (_PACKAGE / "_data", _REPO):
        path = base / name
        if path.is_dir():
            return path
    raise FileNotFoundError(f"shipped folder {name!r} not found beside the package")
