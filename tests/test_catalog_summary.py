"""Per-(shard, recording) epoch summaries: written with their epochs, equal to the epochs they
summarise (NumPy oracle over the raw rows, and the SQL rebuild), deleted with them, built for old
catalogs by migration 0005; ``catalog stats`` and ``report`` read them."""

from __future__ import annotations

import json
import math
from datetime import datetime

from alembic import command
from sqlalchemy import text

from ephys.catalog import models as m
from ephys.catalog.db import Catalog, _alembic_config, make_engine
from ephys.catalog.queries import catalog_stats
from ephys.catalog.report import report_data
from ephys.schemas import ShardInfo
from tests.catalog_helpers import REGIONS, assert_summaries_match

T0 = datetime(2026, 12, 1)
NAN = float("nan")
# Values on, below, between and above the bin edges, missing and NaN.
SCORES = [0.0, 0.05, 0.049999, 0.5, 0.95, 1.0, 1.2, -0.1, None, NAN, 0.8, 0.81]
RATIOS = [1e-4, 1e-5, 0.0, 10.0, 11.0, 10 ** -0.25, 0.3, None, NAN, 1.0, 2.0, 5e-3]
STAGES = ["W", "N1", None, "N2", "N3", "REM", "REM", "N2", None, "W", "N2", "N3"]


def _recordings(cat: Catalog, n: int) -> tuple[int, list[str]]:
    with cat.session.begin() as s:
        run = m.Run(started_at=T0, status="running", code_version="t", processing_hash="0" * 16, config_json=json.dumps(
            {"sfreq": 250.0, "epoch_s": 30.0, "montage": "regional8"}))
        s.add(run)
        s.flush()
        shas = [f"{i:x}" * 64 for i in range(1, n + 1)]
        for i, sha in enumerate(shas):
            s.add(m.Recording(sha256=sha[:64], format="edf", n_files=1, path_hash=f"{i}" * 64, file_bytes=1,
                              channels_json="[]", montage="regional8", output_channels_json=json.dumps(REGIONS),
                              status="ok", n_epochs=6, n_valid_epochs=4, n_packed=0, n_annotations=0, n_scrubbed=0,
                              processing_hash="0" * 16, seconds_json="{}", run_id=run.id, processed_at=T0,
                              duration_s=180.0, subject=f"S{i}"))
        return run.id, [sha[:64] for sha in shas]


def _epoch(sha: str, j: int, k: int) -> dict:
    return {"recording": sha, "index": j, "start_s": 30.0 * j, "key": f"{sha[:16]}_{j:06d}", "valid": j % 3 != 1,
            "n_flat": 0, "n_clipped": 0, "nonfinite": False, "max_abs_uv": 50.0, "mask": "1" * 8, "score": SCORES[k],
            "line_ratio": RATIOS[k], "emg_ratio": RATIOS[::-1][k], "drift_ratio": RATIOS[k - 3], "stage": STAGES[k]}


def test_summaries_written_with_each_shard_equal_their_epochs(catalog_url):
    cat = Catalog(catalog_url)
    try:
        run_id, (a, b) = _recordings(cat, 2)
        # shard 0: a0..a5 and b0..b1; shard 1: b2..b5 (a recording's epochs across two shards)
        shard0 = [_epoch(a, j, j) for j in range(6)] + [_epoch(b, j, 6 + j) for j in range(2)]
        shard1 = [_epoch(b, j, 6 + j) for j in range(2, 6)]
        for i, (eps, packed) in enumerate([(shard0, {a: 6, b: 2}), (shard1, {b: 6})]):
            info = ShardInfo(index=i, name=f"shard-{i:06d}.tar", sha256=f"{i:064x}", n_samples=len(eps), n_bytes=10)
            cat.commit_shard(info, run_id=run_id, epochs=eps, packed=packed)
        stored = assert_summaries_match(cat)
        assert sorted(v[0] for v in stored.values()) == [2, 4, 6]  # (shard 0, a), (shard 0, b), (shard 1, b)
        # The figures the commands show add the summaries up; compared with the raw rows.
        epochs = [*shard0, *shard1]
        st = catalog_stats(cat)
        assert st["epochs"] == {"total": 12, "valid": sum(e["valid"] for e in epochs)}
        d = report_data(cat)
        finite = [e["score"] for e in epochs if e["score"] is not None and not math.isnan(e["score"])]
        assert sum(d["score_hist"]["counts"]) == len(finite) == 10
        assert d["score_hist"]["counts"][0] == 3 and d["score_hist"]["counts"][1] == 1  # -0.1, 0, 0.049999 | 0.05
        assert d["score_hist"]["counts"][-1] == 3  # 0.95, 1.0, 1.2
        assert d["epochs"] == {"valid": st["epochs"]["valid"], "invalid": 12 - st["epochs"]["valid"], "unscored": 2}
        assert d["stages"] == {"W": 2, "N1": 1, "N2": 3, "N3": 2, "REM": 2, "unstaged": 2}
        assert [h["recording"] for h in d["hypnograms"]] == [a[:12], b[:12]]  # 5 staged epochs each: SHA order
        assert d["hypnograms"][0]["stage"] == [st for st in STAGES[:6] if st]
    finally:
        cat.close()


def test_migration_0005_summarises_existing_epochs(catalog_url):
    engine = make_engine(catalog_url)
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0004")
    engine.dispose()
    # A catalog of the previous schema, filled as the ingest of that version did.
    old = make_engine(catalog_url)
    with old.begin() as conn:
        conn.execute(text("INSERT INTO runs (started_at, status, code_version, processing_hash, config_json, "
                          "n_discovered, n_skipped, n_ok, n_rejected, n_failed, eeg_hours, wall_s) "
                          "VALUES (:t, 'complete', 'old', 'h', '{}', 2, 0, 2, 0, 0, 0.0, 1.0)"), {"t": T0})
        conn.execute(text("INSERT INTO shards (\"index\", name, sha256, n_samples, n_bytes, run_id, created_at) "
                          "VALUES (0, 'shard-000000.tar', 'x', 8, 1, 1, :t)"), {"t": T0})
        for r in (1, 2):
            conn.execute(text(
                "INSERT INTO recordings (sha256, format, n_files, path_hash, file_bytes, channels_json, "
                "output_channels_json, status, n_epochs, n_valid_epochs, n_packed, n_annotations, n_scrubbed, "
                "processing_hash, seconds_json, processed_at) VALUES (:sha, 'edf', 1, :ph, 1, '[]', '[]', 'ok', "
                "4, 4, 4, 0, 0, 'h', '{}', :t)"), {"sha": f"{r}" * 64, "ph": f"p{r}", "t": T0})
        for j in range(8):
            e = _epoch(f"{1 + j // 4}" * 64, j, j)
            conn.execute(text(
                "INSERT INTO epochs (recording_id, \"index\", start_s, shard_id, key, valid, n_flat, n_clipped, "
                "nonfinite, max_abs_uv, mask, score, line_ratio, emg_ratio, drift_ratio, stage) VALUES "
                "(:rid, :index, :start_s, 1, :key, :valid, 0, 0, false, 1.0, :mask, :score, :line_ratio, :emg_ratio, "
                ":drift_ratio, :stage)"), {**e, "rid": 1 + j // 4})
    old.dispose()
    cat = Catalog(catalog_url)  # opening applies 0005
    try:
        stored = assert_summaries_match(cat)
        assert sorted(v[0] for v in stored.values()) == [4, 4]
        assert catalog_stats(cat)["epochs"]["total"] == 8
    finally:
        cat.close()


def test_reprocessing_a_recording_to_a_failure_removes_its_summaries(catalog_url):
    from ephys.schemas import Failure, RecordingResult, RecordingStatus

    cat = Catalog(catalog_url)
    try:
        run_id, (a, b) = _recordings(cat, 2)
        eps = [_epoch(a, j, j) for j in range(6)] + [_epoch(b, j, 6 + j) for j in range(6)]
        info = ShardInfo(index=0, name="shard-000000.tar", sha256="0" * 64, n_samples=12, n_bytes=10)
        cat.commit_shard(info, run_id=run_id, epochs=eps, packed={a: 6, b: 6})
        assert len(assert_summaries_match(cat)) == 2
        # Recording a, re-processed (a reader fix, --retry-failed, a new file at the same hash), now fails.
        failed = RecordingResult(sha256=a, format="edf", status=RecordingStatus.failed,
                                 failure=Failure(stage="read", code="corrupt", reason="truncated data record"))
        cat.record_result(failed, run_id=run_id, path_hash="p" * 64, relpath=None, processing_hash="1" * 16)
        stored = assert_summaries_match(cat)  # still equal to the remaining epoch rows
        assert [v[0] for v in stored.values()] == [6]  # b's summary alone
        assert catalog_stats(cat)["epochs"]["total"] == 6
        assert sum(report_data(cat)["stages"].values()) == 6
    finally:
        cat.close()
