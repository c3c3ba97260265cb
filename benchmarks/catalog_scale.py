"""Catalog, manifest and pretraining start-up at a fraction of EPI-250k (issue #16).

EPI-250k: ~100,000 recordings, 31.6 M 30-s epochs, ~25,000 shards, 8 regional channels. This
script fills a catalog with a synthetic corpus of that shape at ``--fraction`` of it (recordings
90 % ok with lognormal lengths around 5.3 h, 10 % rejected or failed; epochs with QC figures,
scores and sleep stages; ~1,264 epochs per shard; a few annotations per recording), through the
project's schema (``Catalog`` applies the migrations) with bulk inserts, then times, each in a
fresh process (wall seconds, and peak RSS from GNU ``time``):

* ``ephys catalog stats`` and ``ephys catalog query --status ok --min-valid-epochs 100``;
* ``ephys manifest create --where "score >= 0.8"`` (about 60 % of the epochs) and ``--where
  "stage = N2"`` (a small one), and ``Manifest.load`` of the large manifest;
* ``ephys report``;
* pretraining start-up: ``verify_shards`` (the full re-hash earlier versions ran on every start)
  against the new start-up (``shard_layout`` of 8 shards, then the first batch), on ``--real-shards``
  real shard files of the corpus layout (the catalog's other shards exist only as rows).

Usage::

    python benchmarks/catalog_scale.py --fraction 0.01 --catalog sqlite:////tmp/cs/catalog.sqlite --work /tmp/cs
    python benchmarks/catalog_scale.py --fraction 0.01 --catalog postgresql+psycopg://postgres@127.0.0.1/test --work /tmp/cs

Prints one JSON object per measurement and, with ``--explain``, the query plans of the manifest
selection. Results and the machine go into ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime, UTC
from pathlib import Path

import numpy as np

FULL = {"recordings": 100_000, "epochs": 31_600_000, "shards": 25_000}
REGIONS = ["frontal_l", "frontal_r", "central_l", "central_r", "temporal_l", "temporal_r", "parietal", "occipital"]
STAGES = np.array(["W", "N1", "N2", "N3", "REM"])


def fill(url: str, fraction: float, seed: int = 0) -> dict:
    """A synthetic corpus of ``fraction`` of EPI-250k in the catalog at ``url`` (emptied first)."""
    from sqlalchemy import insert

    from ephys.catalog import models as m
    from ephys.catalog.db import Catalog
    from ephys.catalog.summary import rebuild as rebuild_summaries

    rng = np.random.default_rng(seed)
    n_rec = max(1, round(FULL["recordings"] * fraction))
    n_ep_target = round(FULL["epochs"] * fraction)
    per_shard = FULL["epochs"] // FULL["shards"]
    cat = Catalog(url)
    cat.reset()
    t0 = datetime(2026, 1, 1)
    with cat.session.begin() as s:
        run = m.Run(started_at=t0, finished_at=t0, status="complete", code_version="bench", processing_hash="0" * 16,
                    config_json=json.dumps({"sfreq": 250.0, "epoch_s": 30.0, "montage": "regional8"}))
        s.add(run)
        s.flush()
        run_id = run.id
    cat.set_meta("shards_root", "/nonexistent/shards")
    ok = rng.random(n_rec) < 0.9
    lengths = np.maximum(10, rng.lognormal(np.log(n_ep_target / ok.sum()), 0.9, n_rec)).astype(int)
    lengths = np.where(ok, lengths, 0)
    lengths = np.maximum(0, (lengths * (n_ep_target / max(lengths.sum(), 1))).astype(int))
    shas = sorted(f"{rng.integers(0, 2**63):016x}" + f"{i:048x}" for i in range(n_rec))
    rec_rows = []
    for i, sha in enumerate(shas):
        good = bool(ok[i])
        rec_rows.append(dict(
            sha256=sha, format="edf+c", n_files=1, path_hash=f"{i:064x}", file_bytes=int(lengths[i]) * 30 * 256 * 40,
            subject=f"sub-{i // 3:012x}", age_years=int(rng.integers(0, 91)), sex="FM"[i % 2],
            duration_s=float(lengths[i] * 30) if good else 900.0, n_channels=23, n_eeg_channels=19, sfreq=256.0,
            channels_json="[]", montage="regional8" if good else None,
            output_channels_json=json.dumps(REGIONS) if good else "[]",
            status="ok" if good else ("rejected" if i % 2 else "failed"),
            failure_stage=None if good else "qc", failure_code=None if good else ("too_short" if i % 2 else "corrupt"),
            failure_reason=None if good else "synthetic", n_epochs=int(lengths[i]), n_valid_epochs=int(lengths[i] * 0.9),
            n_packed=int(lengths[i]), n_annotations=4, n_scrubbed=0, processing_hash="0" * 16, seconds_json="{}",
            run_id=run_id, processed_at=t0,
        ))
    with cat.engine.begin() as conn:
        conn.execute(insert(m.Recording), rec_rows)
        ids = dict(conn.execute(m.Recording.__table__.select().with_only_columns(m.Recording.sha256, m.Recording.id)).all())
    n_epochs = int(lengths.sum())
    n_shards = max(1, -(-n_epochs // per_shard))
    with cat.engine.begin() as conn:
        conn.execute(insert(m.Shard), [dict(index=k, name=f"shard-{k:06d}.tar", sha256=f"{k:064x}",
                                             n_samples=min(per_shard, n_epochs - k * per_shard),
                                             n_bytes=min(per_shard, n_epochs - k * per_shard) * 123_000,
                                             run_id=run_id, created_at=t0) for k in range(n_shards)])
        shard_ids = dict(conn.execute(m.Shard.__table__.select().with_only_columns(m.Shard.index, m.Shard.id)).all())
    # Epochs in packing order (recordings by SHA-256, epochs by index), inserted in chunks.
    pos, batch = 0, []
    ann = []

    def flush():
        if batch:
            with cat.engine.begin() as conn:
                conn.execute(insert(m.Epoch), batch)
            batch.clear()

    for i, sha in enumerate(shas):
        n = int(lengths[i])
        if not n:
            continue
        rid = ids[sha]
        score = np.clip(rng.beta(5, 2, n), 0, 1)
        stage = STAGES[rng.integers(0, 5, n)]
        for j in range(n):
            batch.append(dict(recording_id=rid, index=j, start_s=30.0 * j, shard_id=shard_ids[pos // per_shard],
                              key=f"{sha[:16]}_{j:06d}", valid=bool(score[j] > 0.3), n_flat=0, n_clipped=0,
                              nonfinite=False, max_abs_uv=150.0, mask="11111111", score=float(score[j]), n_artifact=0,
                              max_ptp_uv=300.0, line_ratio=0.01, emg_ratio=0.1, drift_ratio=0.2, max_kurtosis=1.0,
                              stage=str(stage[j]), p_w=0.2, p_n1=0.2, p_n2=0.2, p_n3=0.2, p_rem=0.2))
            pos += 1
        ann += [dict(recording_id=rid, onset_s=float(k * 600), duration_s=0.0, text=t, source="edf+", category=c)
                for k, (t, c) in enumerate([("Augen zu", "state"), ("Anfall", "seizure"), ("HV", "procedure"),
                                            ("Artefakt", "artifact")])]
        if len(batch) >= 50_000:
            flush()
    flush()
    with cat.engine.begin() as conn:
        conn.execute(insert(m.Annotation), ann)
    with cat.engine.begin() as conn:  # the epochs went in as rows, not through commit_shard
        rebuild_summaries(conn)
    cat.close()
    return {"recordings": n_rec, "epochs": n_epochs, "shards": n_shards}


def _analyze(url: str) -> None:
    """Table statistics for the planner, as autovacuum (PostgreSQL) or a long-lived catalog would have
    them; a bulk-filled, never-analysed table gives the planner row estimates of 1."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url, isolation_level="AUTOCOMMIT") if url.startswith("postgresql") else create_engine(url)
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        if not url.startswith("postgresql"):
            conn.commit()
    engine.dispose()


def timed(cmd: list[str]) -> dict:
    """Run ``cmd`` under GNU time; wall seconds and the command's own peak RSS (MiB). (``wait4`` of a
    child forked from this process would report at least this process's RSS at the fork.)"""
    t = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t
    lines = r.stderr.strip().splitlines()
    rss_kib = int(lines[-1]) if lines and lines[-1].isdigit() else 0
    out = {"wall_s": round(wall, 2), "peak_rss_mib": round(rss_kib / 1024, 1), "rc": r.returncode}
    return out | ({"stderr": "\n".join(lines[-6:-1])} if r.returncode else {})


def _real_shards(folder: Path, n: int, per_shard: int) -> Path:
    """``n`` real shards of ``per_shard`` regional8 epochs (float16) and a manifest naming them."""
    from ephys.schemas.manifest import Manifest, ManifestShard
    from ephys.shard.writer import write_shard

    rng = np.random.default_rng(1)
    shards = []
    from ephys.schemas.epoch import EpochMeta, EpochQC

    x = rng.normal(0, 20, (8, 7500)).astype(np.float16)
    for k in range(n):
        samples = []
        for j in range(per_shard):
            key = f"{k:016x}_{j:06d}"
            meta = EpochMeta(key=key, recording="0" * 64, subject="s", epoch_index=j, start_s=30.0 * j, sfreq=250.0,
                             n_samples=7500, montage="regional8", channel_names=REGIONS, mask=[True] * 8,
                             qc=EpochQC(valid=True, n_flat=0, n_clipped=0, nonfinite=False, max_abs_uv=1.0))
            samples.append((x, meta))
        info = write_shard(folder, k, samples)
        shards.append(ManifestShard(url=str(folder / info.name), sha256=info.sha256, n_samples=info.n_samples,
                                    keys=[f"{k:016x}_{j:06d}" for j in range(per_shard)]))
    man = Manifest(ephys_version="bench", created_at="", query=[], montage="regional8", channel_names=REGIONS,
                   sfreq=250.0, n_samples=7500, counts={}, shards=shards)
    return man.save(folder / "manifest.json")


_STARTUP = """
import sys, time, json
from ephys.schemas.manifest import Manifest
from ephys.pretrain.data import StepBatches, shard_layout, verify_shards
t = time.perf_counter(); m = Manifest.load(sys.argv[1]); t_load = time.perf_counter() - t
if sys.argv[2] == "old":
    t = time.perf_counter(); verify_shards(m, sys.argv[1]); shard_layout(m, sys.argv[1]); t_check = time.perf_counter() - t
else:
    t = time.perf_counter(); shard_layout(m, sys.argv[1], max_shards=8); t_check = time.perf_counter() - t
t = time.perf_counter(); next(iter(StepBatches(m, sys.argv[1], batch_size=32, seed=0))); t_first = time.perf_counter() - t
print(json.dumps({"load_s": round(t_load, 3), "check_s": round(t_check, 3), "first_batch_s": round(t_first, 3)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fraction", type=float, default=0.01)
    ap.add_argument("--catalog", required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--real-shards", type=int, default=64)
    ap.add_argument("--per-shard", type=int, default=200, help="epochs per real shard (156 MB = 1,264 regional8 epochs)")
    ap.add_argument("--skip-fill", action="store_true")
    ap.add_argument("--explain", action="store_true")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    print(json.dumps({"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                      "date": datetime.now(UTC).strftime("%Y-%m-%d"), "python": platform.python_version(),
                      "catalog": a.catalog.split(":")[0], "fraction": a.fraction}))
    if not a.skip_fill:
        t = time.perf_counter()
        sizes = fill(a.catalog, a.fraction)
        print(json.dumps({"step": "fill", **sizes, "wall_s": round(time.perf_counter() - t, 1)}), flush=True)
    _analyze(a.catalog)
    ephys = [sys.executable, "-m", "ephys"]
    steps = {
        "catalog stats": [*ephys, "catalog", "stats", "--catalog", a.catalog, "--json"],
        "catalog query": [*ephys, "catalog", "query", "--catalog", a.catalog, "--status", "ok", "--min-valid-epochs",
                          "100", "--json"],
        "manifest create score>=0.8": [*ephys, "manifest", "create", "--catalog", a.catalog, "--where", "score >= 0.8",
                                       "-o", str(a.work / "large.json")],
        "manifest create stage=N2": [*ephys, "manifest", "create", "--catalog", a.catalog, "--where", "stage = N2",
                                     "--where", "score >= 0.95", "-o", str(a.work / "small.json")],
        "manifest load (large)": [sys.executable, "-c", "import sys; from ephys.schemas.manifest import Manifest; "
                                  "m = Manifest.load(sys.argv[1]); print(m.n_epochs)", str(a.work / "large.json")],
        "report": [*ephys, "report", "--catalog", a.catalog, "-o", str(a.work / "report.html")],
    }
    for name, cmd in steps.items():
        print(json.dumps({"step": name, **timed(cmd)}), flush=True)
    large = a.work / "large.json"
    if large.exists():
        print(json.dumps({"step": "manifest size", "bytes": large.stat().st_size}))
    if a.explain:
        from sqlalchemy import text

        from ephys.catalog.db import Catalog

        cat = Catalog(a.catalog)
        with cat.engine.connect() as conn:
            prefix = "EXPLAIN QUERY PLAN " if cat.engine.dialect.name == "sqlite" else "EXPLAIN "
            sql = ("SELECT e.key, s.name FROM epochs e JOIN recordings r ON r.id = e.recording_id "
                   "JOIN shards s ON s.id = e.shard_id WHERE r.status = 'ok' AND e.score >= 0.8 "
                   "ORDER BY s.\"index\", r.sha256, e.\"index\"")
            for row in conn.execute(text(prefix + sql)):
                print("  plan:", " | ".join(str(c) for c in row))
        cat.close()
    if a.real_shards:
        folder = a.work / "real-shards"
        folder.mkdir(exist_ok=True)
        manifest = _real_shards(folder, a.real_shards, a.per_shard)
        total = sum(p.stat().st_size for p in folder.glob("*.tar"))
        for mode in ("old", "new"):
            r = subprocess.run([sys.executable, "-c", _STARTUP, str(manifest), mode], capture_output=True, text=True)
            out = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else {"stderr": r.stderr[-500:]}
            print(json.dumps({"step": f"pretrain start-up ({mode})", "shards": a.real_shards, "shard_bytes": total,
                              **out}), flush=True)


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
