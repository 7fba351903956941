#!/usr/bin/env bash
# The test command (README and CI): full set-up, lint, the test suite, a small benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --full
.venv/bin/ruff check src tests benchmarks
.venv/bin/python -m pytest "$@"
.venv/bin/python benchmarks/run.py --smoke
