"""Sleep-staging speed on CPU: seconds per EEG-hour for each backend, torch 1 and 2 threads, peak RSS.

Usage: python benchmarks/staging.py [--hours 1 8] [--threads 1 2] [--backends gssc yasa none]
                                    [--sfreq 50] [--repeat 2]

Input: the real DREAMS excerpt 3 (../shared/data/real/dreams-sleep/excerpt3.edf, 30 min,
C3-A1 + EOG1-A1 + EMG1 at 50 Hz, chosen by ``choose_channels``) tiled to ``--hours``; with
``--sfreq 256`` the signal is first resampled to 256 Hz (a clinical rate: more samples to
resample and filter, same network input). Each (backend, hours, threads) runs in a fresh
subprocess so that its peak RSS (``ru_maxrss``) covers imports, model loading and one staging
run. Before timing, each process stages a 10-min piece once (model load, numba JIT of YASA's
features); "load+warm-up" is that time. "s/run" is the best of ``--repeat`` runs of
``Stager.stage`` on the whole tiled signal (1 run for >= 4 h). ``threads`` sets torch's
intra-op threads (GSSC) and OMP/MKL/OpenBLAS/numba threads (YASA's LightGBM and features) in
the subprocess. Prints a markdown table (recorded in docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
DREAMS = REAL / "dreams-sleep" / "excerpt3.edf"


def child(backend: str, hours: float, threads: int, sfreq: float, repeat: int) -> dict:
    import resource

    import numpy as np

    from ephys.annotate import staging as stg
    from ephys.ingest.readers import open_recording

    r = open_recording(DREAMS, "edf")
    c = stg.choose_channels(r.header.channels)
    sf0 = r.header.channels[c.eeg].sfreq
    sigs = r.read_channels([c.eeg, c.eog, c.emg])
    if sfreq != sf0:
        n = int(round(len(sigs[0]) * sfreq / sf0))
        sigs = [stg.base._resample(s, sf0, sfreq, n).astype(np.float32) for s in sigs]
    reps = int(np.ceil(hours * 3600 / (len(sigs[0]) / sfreq)))
    n_samples = int(round(hours * 3600 * sfreq))
    eeg, eog, emg = (np.tile(s, reps)[:n_samples] for s in sigs)
    n_epochs = stg.n_complete_epochs(n_samples, sfreq)

    t = time.perf_counter()
    if backend == "gssc":
        stager = stg.GSSCStager(threads=threads)
    else:
        stager = stg.get_stager(backend)
    w = int(600 * sfreq)
    stager.stage(eeg[:w], sfreq, eog[:w], emg[:w], 20)
    warm = time.perf_counter() - t

    times = []
    for _ in range(1 if hours >= 4 else repeat):
        t = time.perf_counter()
        res = stager.stage(eeg, sfreq, eog, emg, n_epochs)
        times.append(time.perf_counter() - t)
    assert res.n_staged == n_epochs or backend == "none", res.note
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"warm": warm, "run": min(times), "rss_mb": rss_kb / 1024, "epochs": n_epochs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, nargs="+", default=[1, 8])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--backends", nargs="+", default=["gssc", "yasa", "none"])
    ap.add_argument("--sfreq", type=float, default=50.0)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        b, h, th = args.child.split(",")
        print(json.dumps(child(b, float(h), int(th), args.sfreq, args.repeat)))
        return
    if not DREAMS.exists():
        sys.exit(f"{DREAMS} is missing")

    rows = []
    for b in args.backends:
        for h in args.hours:
            for th in args.threads if b != "none" else args.threads[:1]:
                env = dict(os.environ)
                for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
                    env[k] = str(th)
                out = subprocess.run(
                    [sys.executable, __file__, "--child", f"{b},{h},{th}", "--sfreq", str(args.sfreq),
                     "--repeat", str(args.repeat)],
                    env=env, capture_output=True, text=True, check=False,
                )
                if out.returncode:
                    print(out.stderr[-2000:], file=sys.stderr)
                    continue
                m = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append((b, h, th, m))
                print(f"  {b} {h:g} h {th} thr: {m}", file=sys.stderr, flush=True)

    print(f"\nInput: DREAMS excerpt 3 tiled, {args.sfreq:g} Hz, EEG+EOG (+EMG for YASA); CPU {os.cpu_count()} cores.\n")
    print("| backend | EEG hours | threads | epochs | load+warm-up s | s/run | s per EEG-hour | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for b, h, th, m in rows:
        cells = [b, f"{h:g}", th, m["epochs"], f"{m['warm']:.1f}", f"{m['run']:.2f}", f"{m['run'] / h:.2f}",
                 f"{m['rss_mb']:.0f}"]
        print("| " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
    main()
