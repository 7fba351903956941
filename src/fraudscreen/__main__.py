"""``python -m fraudscreen``: the installed command, for a venv whose scripts are not on PATH."""

from fraudscreen.cli import entry

entry()
