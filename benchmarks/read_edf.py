"""Reader throughput on a local disk: ephys's buffered EDF reader vs cat, pyEDFlib and MNE.

Usage: python benchmarks/read_edf.py [--minutes 60] [--repeat 3]

Generates a demo recording (19 channels, 256 Hz EDF+, ``--minutes`` long) in a
temporary folder, reads every EEG channel fully with each reader (warm page
cache, best of ``--repeat``), and prints MB/s. ``cat FILE > /dev/null`` is the
physical limit of the same read path. Results are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import mne
    import pyedflib

    from ephys.ingest.demo import write_demo_archive
    from ephys.ingest.readers.edf import EDFReader

    with tempfile.TemporaryDirectory() as d:
        path = write_demo_archive(d, n_recordings=1, minutes=args.minutes)[0]
        mb = path.stat().st_size / 1e6

        def ours():
            with EDFReader(path) as r:
                r.read_channels([c.index for c in r.header.signal_channels])

        def pyedf():
            f = pyedflib.EdfReader(str(path))
            try:
                for i in range(f.signals_in_file):
                    f.readSignal(i)
            finally:
                f.close()

        def mne_read():
            mne.io.read_raw_edf(path, preload=True, verbose="error")

        def cat():
            subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)

        print(f"file: {mb:.1f} MB ({args.minutes:g} min, 19 ch, 256 Hz EDF+)")
        for name, fn in [("cat > /dev/null", cat), ("ephys EDFReader", ours), ("pyEDFlib", pyedf), ("MNE read_raw_edf", mne_read)]:
            s = best(fn, args.repeat)
            print(f"{name:<18} {s:7.3f} s  {mb / s:8.1f} MB/s")


if __name__ == "__main__":
    main()
