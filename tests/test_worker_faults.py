"""Workers that hang or die: per-recording timeouts, crash retries, and equality with an undisturbed run.

Faults are injected in the real worker and driver processes through ``EPHYS_TEST_FAILPOINTS``
(see :mod:`ephys.pipeline.failpoints`): ``hang`` blocks in the reader as a
dead network share would, ``crash`` SIGKILLs the worker as the OOM killer would.
"""

from __future__ import annotations

import pytest

from ephys.ingest.demo import write_demo_archive
from ephys.pipeline.run import ingest
from tests.ingest_helpers import rows_by_sha, sha, shard_bytes, table_counts


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Demo archive (3 recordings, 2 damaged files) and an undisturbed 1-worker run of it."""
    archive = tmp_path_factory.mktemp("demo")
    files = write_demo_archive(archive, n_recordings=3, minutes=5.5)
    ref = tmp_path_factory.mktemp("ref")
    ingest(archive, ref, workers=1)
    return archive, files, ref


def _url(out):
    return f"sqlite:///{out / 'catalog.sqlite'}"


def _without(d: dict, victim: str) -> dict:
    return {k: v for k, v in d.items() if k != victim}


def test_hanging_recording_times_out_and_the_run_completes(demo, tmp_path, monkeypatch):
    archive, files, ref = demo
    victim = sha(files[1])
    monkeypatch.setenv("EPHYS_TEST_FAILPOINTS", f"hang:{victim[:12]}")
    out = tmp_path / "out"
    from ephys.schemas import IngestConfig

    s = ingest(archive, out, config=IngestConfig(task_timeout_s=6), workers=2)
    rows = rows_by_sha(_url(out))
    assert rows[victim].status == "failed" and rows[victim].failure_code == "timeout"
    assert "--task-timeout 6 s" in rows[victim].failure_reason
    assert (s.n_ok, s.n_failed) == (2, 3)  # the two damaged demo files and the hung one
    ref_rows = rows_by_sha(_url(ref))
    for k in set(ref_rows) - {victim}:
        assert (rows[k].status, rows[k].n_epochs, rows[k].failure_code) == (ref_rows[k].status, ref_rows[k].n_epochs, ref_rows[k].failure_code)

    # The file is no longer stuck: --retry-failed processes it into a new shard; rows equal the undisturbed run's.
    monkeypatch.delenv("EPHYS_TEST_FAILPOINTS")
    s2 = ingest(archive, out, config=IngestConfig(task_timeout_s=60), workers=1, retry_failed=True)
    assert s2.n_ok == 1
    assert rows_by_sha(_url(out))[victim].status == "ok"
    assert _without(table_counts(_url(out)), "shards") == _without(table_counts(_url(ref)), "shards")


def test_worker_killed_once_mid_task_gives_the_undisturbed_output(demo, tmp_path, monkeypatch):
    archive, files, ref = demo
    monkeypatch.setenv("EPHYS_TEST_FAILPOINTS", f"crash-once:{sha(files[0])[:12]}")
    out = tmp_path / "out"
    s = ingest(archive, out, workers=1)
    assert (out / ".spool" / f"{sha(files[0])}.crashed").exists(), "the failpoint did not fire"
    assert s.n_ok == 3
    assert shard_bytes(out) == shard_bytes(ref)
    assert table_counts(_url(out)) == table_counts(_url(ref))


def test_file_that_kills_every_worker_is_marked_failed(demo, tmp_path, monkeypatch):
    archive, files, ref = demo
    victim = sha(files[2])
    monkeypatch.setenv("EPHYS_TEST_FAILPOINTS", f"crash:{victim[:12]}")
    out = tmp_path / "out"
    s = ingest(archive, out, workers=1)
    rows = rows_by_sha(_url(out))
    assert rows[victim].status == "failed" and rows[victim].failure_code == "worker_crash"
    assert s.n_ok == 2 and s.n_failed == 3
    ref_rows = rows_by_sha(_url(ref))
    assert _without({k: (r.status, r.n_epochs) for k, r in rows.items()}, victim) == _without(
        {k: (r.status, r.n_epochs) for k, r in ref_rows.items()}, victim
    )
    assert sum(r.n_epochs for r in rows.values()) == sum(r.n_epochs for k, r in ref_rows.items() if k != victim)


@pytest.fixture(scope="module")
def small_shards(demo, tmp_path_factory):
    """The demo archive ingested undisturbed into shards of 5 samples (7 shards)."""
    from ephys.schemas import IngestConfig

    archive = demo[0]
    ref = tmp_path_factory.mktemp("ref5")
    ingest(archive, ref, config=IngestConfig(shard_size=5), workers=1)
    return archive, ref


@pytest.mark.parametrize("point", ["kill-driver:renamed:1", "kill-driver:committed:1", "kill-driver:committed:6"])
def test_driver_killed_between_rename_commit_and_log_resumes_exactly(point, small_shards, tmp_path):
    """SIGKILL of the driver at the delicate points of a shard's life: renamed but not in the catalog,
    in the catalog but not in the hash log, and after the last shard before the final log rows."""
    import os
    import subprocess
    import sys

    from ephys.schemas import IngestConfig

    archive, ref = small_shards
    cfg = IngestConfig(shard_size=5)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "ephys", "ingest", str(archive), "--out", str(out), "--shard-size", "5", "--workers", "1"]
    r = subprocess.run(cmd, env=dict(os.environ, EPHYS_TEST_FAILPOINTS=point), capture_output=True, timeout=300)
    assert r.returncode == -9, r.stderr.decode()[-2000:]  # it really died there
    index = int(point.rsplit(":", 1)[1])
    assert (out / "shards" / f"shard-{index:06d}.tar").exists()
    s = ingest(archive, out, config=cfg, workers=1)
    assert s.n_ok + s.n_skipped >= 3
    assert shard_bytes(out) == shard_bytes(ref)
    assert table_counts(_url(out)) == table_counts(_url(ref))
    shas = [line.split(",")[0] for line in (out / "hashlog.csv").read_text().splitlines()[1:]]
    assert sorted(shas) == sorted(set(shas)) and len(shas) == 5  # each recording logged exactly once


@pytest.mark.parametrize("point", ["kill-driver:renamed:1", "kill-driver:committed:1"])
def test_driver_killed_resumes_exactly_on_postgres(point, small_shards, tmp_path, catalog_url):
    """The same SIGKILLs with the catalog on PostgreSQL: the shard and its rows commit together there too."""
    import os
    import subprocess
    import sys

    from ephys.schemas import IngestConfig

    if catalog_url.startswith("sqlite"):
        pytest.skip("the SQLite catalog is the test above")
    archive, ref = small_shards
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "ephys", "ingest", str(archive), "--out", str(out), "--shard-size", "5", "--workers", "1",
           "--catalog", catalog_url]
    r = subprocess.run(cmd, env=dict(os.environ, EPHYS_TEST_FAILPOINTS=point), capture_output=True, timeout=300)
    assert r.returncode == -9, r.stderr.decode()[-2000:]
    s = ingest(archive, out, config=IngestConfig(shard_size=5), workers=1, catalog_url=catalog_url)
    assert s.n_ok + s.n_skipped >= 3
    assert shard_bytes(out) == shard_bytes(ref)
    assert table_counts(catalog_url) == table_counts(_url(ref))
