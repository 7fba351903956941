#!/usr/bin/env bash
# Set up and screen the committed sample: writes the lead list to out/sample/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/fraudscreen run --data sample_claims/data --out out/sample "$@"
echo "Leads: out/sample/leads.xlsx · report: out/sample/report.html · manifest: out/sample/run.json"
