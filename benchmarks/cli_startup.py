"""How fast the command line answers: ``--help`` of every command, ``catalog stats`` on a small catalog.

Usage::

    python benchmarks/cli_startup.py [--repeat 5]

Each figure is the median wall time of ``--repeat`` runs of the installed ``ephys`` script in a
fresh process (the import cost is the point), after one unmeasured warm-up run. The small catalog
is the test suite's (``tests/catalog_helpers.populate``: 4 recordings, 3 shards). Prints a
markdown table for docs/benchmarks.md. Goals (issue #17): every ``--help`` < 0.5 s,
``catalog stats`` < 1.5 s; issue #16: ``ephys --help`` and ``catalog stats`` < 1 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ephys() -> list[str]:
    exe = Path(sys.executable).with_name("ephys")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "ephys"]


def _time(argv: list[str], repeat: int) -> float:
    subprocess.run(argv, capture_output=True, check=True)  # warm-up: page cache, .pyc
    walls = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from ephys.catalog.db import Catalog
    from tests.catalog_helpers import populate

    ephys = _ephys()
    tmp = Path(tempfile.mkdtemp(prefix="ephys-cli-"))
    try:
        cat = Catalog(f"sqlite:///{tmp / 'catalog.sqlite'}")
        populate(cat, tmp)
        cat.close()
        cases = [["--help"], ["ingest", "--help"], ["quickstart", "--help"], ["catalog", "stats", "--help"],
                 ["catalog", "query", "--help"], ["manifest", "create", "--help"], ["report", "--help"],
                 ["pretrain", "--help"], ["embed", "--help"], ["probe", "--help"],
                 ["catalog", "stats", "--out", str(tmp)], ["catalog", "query", "--out", str(tmp)]]
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; median of {args.repeat}\n")
        print("| command | wall s |\n|---|---:|")
        for argv in cases:
            shown = " ".join("OUT" if a == str(tmp) else a for a in argv)
            print(f"| `ephys {shown}` | {_time([*ephys, *argv], args.repeat):.2f} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
