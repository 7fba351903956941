"""Where the shipped data (built-in rules, watch lists) lives, and which files of a
folder of rules or watch lists are read.

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


def yaml_files(folder: Path) -> list[Path]:
    """The ``.yaml``/``.yml`` files under ``folder`` (any letter case: a Windows editor
    saves ``RULE.YML``), at any depth, but none whose name or folder (below ``folder``)
    starts with a dot: ``.github/workflows/ci.yml`` in an analyst's repository of rules
    is not a rule, nor an editor's ``.#rule.yaml``."""
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in {".yaml", ".yml"} and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))
