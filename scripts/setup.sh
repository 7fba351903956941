#!/usr/bin/env bash
# Set up everything fraudscreen needs on a fresh Debian/Ubuntu machine, idempotently:
# a virtual environment in .venv with the package and its extras, and — for the full
# test suite — the system packages: a Java runtime (Spark), Chromium and CJK fonts
# (the HTML report test). Python packages at the versions in constraints.txt, the ones
# the suite last passed with; --latest takes the newest releases instead.
# Usage: scripts/setup.sh [--full] [--latest]
set -euo pipefail
cd "$(dirname "$0")/.."

full=0
pins=(-c constraints.txt)
for arg in "$@"; do
  case "$arg" in
    --full) full=1 ;;
    --latest) pins=() ;;
    *) echo "usage: scripts/setup.sh [--full] [--latest]" >&2; exit 2 ;;
  esac
done

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip

if [ "$full" = 1 ]; then
  .venv/bin/python -m pip install --quiet "${pins[@]}" -e '.[dev,spark]'
  need=()
  command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
  command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
  fc-list 2>/dev/null | grep -qi "Noto Sans CJK" || need+=(fonts-noto-cjk)
  if [ "${#need[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "installing system packages: ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
else
  .venv/bin/python -m pip install --quiet "${pins[@]}" -e .
fi
