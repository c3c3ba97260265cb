"""End-to-end ingest throughput on synthetic clinical-length recordings.

Usage: python benchmarks/ingest_demo.py [--recordings 4] [--minutes 60] [--workers 1 2]

Writes ``--recordings`` demo recordings (19 ch; EDF+ at 256 Hz and BDF+ at
512 Hz alternately) and ingests them with the default settings (regional8)
once per worker count, reporting EEG-hours per wall-hour and the summed
worker time per stage (read, condition incl. QC/montage/epoching, stage to
disk). Results are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import Counter
from pathlib import Path

from sqlalchemy import select


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recordings", type=int, default=4)
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    os.environ.setdefault("EPHYS_SITE_SECRET", "benchmark")

    from ephys.catalog import models as m
    from ephys.catalog.db import Catalog
    from ephys.ingest.demo import write_demo_archive
    from ephys.pipeline.run import ingest

    with tempfile.TemporaryDirectory() as d:
        archive = Path(d) / "archive"
        write_demo_archive(archive, n_recordings=args.recordings, minutes=args.minutes)
        size = sum(p.stat().st_size for p in archive.iterdir()) / 1e6
        print(f"archive: {args.recordings} x {args.minutes:g} min, 19 ch, {size:.0f} MB")
        for w in args.workers:
            out = Path(d) / f"out{w}"
            s = ingest(archive, out, workers=w)
            c = Catalog(f"sqlite:///{out / 'catalog.sqlite'}")
            with c.session() as sess:
                stages = Counter()
                for r in sess.scalars(select(m.Recording).where(m.Recording.status == "ok")):
                    stages.update(json.loads(r.seconds_json))
            c.close()
            rate = s.eeg_hours / (s.wall_s / 3600)
            split = ", ".join(f"{k} {v:.1f} s" for k, v in stages.items())
            print(f"workers={w}: {s.eeg_hours:.2f} EEG-h in {s.wall_s:.1f} s wall = {rate:,.0f} EEG-h/h; "
                  f"worker time per stage: {split}")


if __name__ == "__main__":
    main()
