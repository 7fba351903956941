"""Running things to measure them: cached sample data, timed child processes.

Every measured program runs as a child process, waited for with ``os.wait4`` so its
own peak RSS (``ru_maxrss``) comes back with its exit status.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

BENCH = Path(__file__).resolve().parent
CACHE = BENCH / ".cache"


@dataclass
class Measured:
    wall_s: float
    cpu_s: float  # user + system: less disturbed than wall time by other work
    peak_rss_mb: float
    load_before: float  # 1-minute load average: other work on the machine shows here
    load_after: float


def tool() -> str:
    """The ``fraudscreen`` command of this interpreter's environment."""
    beside = Path(sys.executable).parent / "fraudscreen"
    found = str(beside) if beside.exists() else shutil.which("fraudscreen")
    if not found:
        raise RuntimeError("the fraudscreen command is not installed (pip install -e .)")
    return found


def measure(cmd: list[str], log: Path) -> Measured:
    """Run ``cmd`` to the end; its output goes to ``log``. Raises if it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    with log.open("wb") as sink:
        began = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - began
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(map(str, cmd))}\nexited {proc.returncode}; "
                           f"log {log}:\n{tail}")
    return Measured(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, load_before,
                    os.getloadavg()[0])


def _generator_fingerprint() -> str:
    """Changes when the sample generator's code does: cached data is then remade."""
    spec = importlib.util.find_spec("fraudscreen.sample")
    folders = [Path(f) for f in spec.submodule_search_locations or []]
    files = sorted(p for f in folders for p in f.rglob("*.py")) or [Path(spec.origin)]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def sample_data(scale: float, seed: int) -> Path:
    """``fraudscreen sample`` data at this scale and seed, generated once and cached."""
    root = CACHE / f"scale-{scale:g}-seed-{seed}"
    stamp = root / "generated.json"
    wanted = {"scale": scale, "seed": seed, "generator": _generator_fingerprint()}
    if stamp.exists() and json.loads(stamp.read_text(encoding="utf-8")) == wanted:
        return root / "data"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    print(f"generating sample data: scale {scale:g}, seed {seed} → {root}", flush=True)
    subprocess.run([tool(), "sample", "--out", str(root / "data"), "--scale", str(scale),
                    "--seed", str(seed), "--truth", str(root / "truth")], check=True)
    stamp.write_text(json.dumps(wanted), encoding="utf-8")
    return root / "data"


def input_rows(data: Path) -> dict[str, int]:
    """Rows of every input table in the data folder (from the Parquet footers)."""
    rows: dict[str, int] = {}
    for path in sorted(data.rglob("*.parquet")):
        table = path.stem if path.parent == data else path.parent.name
        rows[table] = rows.get(table, 0) + pq.ParquetFile(path).metadata.num_rows
    return rows
