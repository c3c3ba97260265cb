"""Micromed .TRC through a simulated network share: ephys's buffered reader vs Neo's MicromedRawIO.

Usage: python benchmarks/read_share.py [--hours 1] [--latency-ms 1] [--repeat 2]

Writes TRC files of realistic size with the test-suite writer (19 ch at 256 Hz and 64 ch at
512 Hz, 2-byte samples), then for each file and reader mounts a fresh FUSE share over the
folder (cold cache; see ``netshare.py``) that adds ``--latency-ms`` to every read request,
reads the whole recording into float32 µV, and reports wall time, the share's read requests,
and the reader's own read calls per MiB of signal. Also local-disk MB/s next to ``cat``.
Results are recorded in docs/benchmarks.md. Needs ``pip install -e '.[bench,test]'`` and libfuse2.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netshare import LatencyShare  # noqa: E402

from ephys.ingest.channels import TEN_TWENTY  # noqa: E402
from ephys.ingest.writers.trc import Chan, write_trc  # noqa: E402


class CountingFile:
    """Counts read calls the reader itself issues (wraps its unbuffered file)."""

    def __init__(self, f):
        self._f, self.calls = f, 0

    def readinto(self, b):
        self.calls += 1
        return self._f.readinto(b)

    def read(self, n=-1):
        self.calls += 1
        return self._f.read(n)

    def __getattr__(self, name):
        return getattr(self._f, name)


def make(folder: Path, name: str, hours: float, n_ch: int, rate: int) -> Path:
    n = int(hours * 3600 * rate)
    rng = np.random.default_rng(0)
    raw = (32768 + rng.integers(-800, 800, (n, n_ch))).astype(np.uint16)
    labels = (list(TEN_TWENTY) + [f"E{i}" for i in range(n_ch)])[:n_ch]
    write_trc(folder / name, raw, [Chan(label=lab) for lab in labels], rate=rate)
    return folder / name


def ephys_read(path: Path) -> tuple[int, int]:
    from ephys.ingest.readers.trc import TRCReader

    with TRCReader(path) as r:
        r._f = CountingFile(r._f)
        r.read_channels(list(range(len(r.header.channels))))
        return r._f.calls, r.n_samples * r._frame


def neo_read(path: Path) -> tuple[int, int]:
    from neo.rawio import MicromedRawIO

    io = MicromedRawIO(filename=str(path))
    io.parse_header()
    nbytes = 0
    for seg in range(io.segment_count(0)):
        raw = io.get_analogsignal_chunk(block_index=0, seg_index=seg, stream_index=0)
        io.rescale_signal_raw_to_float(raw, dtype="float32", stream_index=0)
        nbytes += raw.nbytes
    return -1, nbytes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--latency-ms", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        files = [make(folder, "routine_19ch_256Hz.TRC", args.hours, 19, 256),
                 make(folder, "ltm_64ch_512Hz.TRC", args.hours, 64, 512)]
        for f in files:
            mib = f.stat().st_size / 2**20
            print(f"\n{f.name}: {mib:.0f} MiB, {args.hours:g} h")
            t = time.perf_counter()
            subprocess.run(["cat", str(f)], stdout=subprocess.DEVNULL, check=True)
            cat_s = time.perf_counter() - t
            ephys_read(f)  # warm-up: imports and page cache
            t = time.perf_counter()
            ephys_read(f)
            loc_s = time.perf_counter() - t
            print(f"  local disk: cat {mib / cat_s:,.0f} MiB/s, ephys {mib / loc_s:,.0f} MiB/s (warm cache)")
            best: dict[str, float] = {}
            for _ in range(args.repeat):
                for name, fn in (("ephys", ephys_read), ("neo", neo_read)):
                    with LatencyShare(folder, args.latency_ms / 1000) as share:
                        t = time.perf_counter()
                        calls, nbytes = fn(share.path(f.name))
                        s = time.perf_counter() - t
                        requests, _ = share.stats()
                    best[name] = min(best.get(name, 1e9), s)
                    sig_mib = nbytes / 2**20
                    own = f", reader's own read calls {calls} ({calls / sig_mib:.2f}/MiB of signal)" if calls >= 0 else ""
                    print(f"  share {name:<6} {s:6.2f} s, {requests} share requests ({requests / mib:.1f}/MiB){own}")
            print(f"  ephys is {best['neo'] / best['ephys']:.2f}x faster than Neo through the share (best of {args.repeat})")


if __name__ == "__main__":
    main()
