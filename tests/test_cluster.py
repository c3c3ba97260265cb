"""``ephys ingest --scheduler`` against a real, separately started Dask cluster.

A ``dask scheduler`` and two ``dask worker`` processes (one worker process of one
thread each, behind their nannies) are started as subprocesses from this
environment, exactly as ``deploy/README.md`` tells an operator to. The CLI is
run once against them (``--scheduler``, ``--catalog``) and once on its default
``LocalCluster`` with the same settings, each into its own output folder. The
two outputs must be identical: shard names and SHA-256s, catalog rows per
table, epoch keys per shard, recording statuses and failure codes. The
scheduler's task stream shows that both external workers (not the driver)
executed the hash and process tasks, damaged files included.

The cluster run uses a SQLite catalog and, with ``EPHYS_TEST_POSTGRES_URL``, a
fresh PostgreSQL database (the ``catalog_url`` fixture of ``conftest.py``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ephys.catalog import models as m
from ephys.catalog.db import Catalog
from ephys.ingest.demo import write_demo_archive
from tests.ingest_helpers import sha

ROOT = Path(__file__).resolve().parents[1]
N_RECORDINGS = 4  # + one truncated copy and one text file named .edf = 6 discovered, 2 of them failing
MINUTES = 3.5  # 7 epochs of 30 s per recording, every demo annotation inside
SHARD_SIZE = 5  # 28 epochs -> 6 shards, most of them spanning two recordings
SETTINGS = ["--min-epochs", "5", "--shard-size", str(SHARD_SIZE), "--json"]
TABLES = (m.Meta, m.Run, m.Recording, m.RecordingPath, m.Shard, m.Epoch, m.Annotation)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("EPHYS_TEST_FAILPOINTS", None)
    env.pop("EPHYS_TEST_PACK_DELAY_S", None)
    env.setdefault("EPHYS_SITE_SECRET", "ephys-test-secret")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _dask(*args: str) -> list[str]:
    """The ``dask`` command of this interpreter's environment."""
    script = Path(sys.executable).with_name("dask")
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "dask", *args]


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each process group we started (worker CLI + nanny + worker), then SIGKILL what is left."""
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 15
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for p in procs:
        try:  # the group may outlive its leader (a nanny's child): kill the whole group
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if p.poll() is None:
            p.wait(10)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """Address of a separately started ``dask scheduler`` with 2 ``dask worker`` processes (1 thread each)."""
    from distributed import Client

    folder = tmp_path_factory.mktemp("dask")
    sched_file = folder / "scheduler.json"
    env = _env()
    procs: list[subprocess.Popen] = []

    def start(name: str, cmd: list[str]) -> subprocess.Popen:
        log = open(folder / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process below
        p = subprocess.Popen(cmd, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        procs.append(p)
        return p

    def logs() -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(folder.glob("*.log")))

    try:
        scheduler = start("scheduler", _dask("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                             "--scheduler-file", str(sched_file), "--idle-timeout", "600"))
        deadline = time.monotonic() + 60
        while not sched_file.exists():
            assert scheduler.poll() is None, f"the scheduler exited:\n{logs()}"
            assert time.monotonic() < deadline, f"no scheduler file after 60 s:\n{logs()}"
            time.sleep(0.1)
        time.sleep(0.1)  # the file is written in one go, but be safe against reading it mid-write
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:"), address
        for i in range(2):
            start(f"worker-{i}", _dask("worker", address, "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
                                       "--name", f"ext-{i}", "--death-timeout", "60"))
        with Client(address, timeout="30s") as client:
            try:
                client.wait_for_workers(2, timeout=90)
            except TimeoutError:
                pytest.fail(f"2 workers did not join the scheduler:\n{logs()}")
            workers = client.scheduler_info(n_workers=-1)["workers"]
            assert len(workers) == 2, workers
            pids = client.run(os.getpid)
        assert len(set(pids.values())) == 2 and os.getpid() not in pids.values(), pids
        yield address, sorted(workers), procs
    finally:
        _stop(procs)
    assert all(p.poll() is not None for p in procs), "a cluster process survived"


def _ingest_cli(archive: Path, out: Path, *extra: str) -> tuple[dict, str]:
    """``python -m ephys ingest ARCHIVE --out OUT ...``; returns the JSON summary and stderr."""
    cmd = [sys.executable, "-m", "ephys", "ingest", str(archive), "--out", str(out), *SETTINGS, *extra]
    r = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-5000:]}"
    return json.loads(r.stdout), r.stderr


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    folder = tmp_path_factory.mktemp("archive")
    files = write_demo_archive(folder, n_recordings=N_RECORDINGS, minutes=MINUTES)
    return folder, files


@pytest.fixture(scope="module")
def local_run(archive, tmp_path_factory):
    """The reference: the same command on the default LocalCluster (2 workers), default SQLite catalog."""
    out = tmp_path_factory.mktemp("local") / "out"
    summary, stderr = _ingest_cli(archive[0], out, "--workers", "2")
    return out, f"sqlite:///{out / 'catalog.sqlite'}", summary, stderr


def _shards(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / "shards").iterdir())}


def _catalog(url: str) -> dict:
    """What must not depend on the cluster: row counts per table, recordings, shards, epochs per shard."""
    c = Catalog(url)
    try:
        with c.session() as s:
            counts = {t.__tablename__: s.scalar(select(func.count()).select_from(t)) for t in TABLES}
            recordings = {r.sha256: (r.format, r.status, r.failure_stage, r.failure_code, r.failure_reason, r.n_epochs,
                                     r.n_valid_epochs, r.n_packed, r.n_annotations, r.subject)
                          for r in s.scalars(select(m.Recording))}
            shards = {sh.name: (sh.sha256, sh.n_samples, sh.n_bytes) for sh in s.scalars(select(m.Shard))}
            epochs = sorted(s.execute(select(m.Shard.name, m.Epoch.key, m.Epoch.valid, m.Epoch.score)
                                      .join(m.Shard, m.Epoch.shard_id == m.Shard.id)).all())
            runs = [(r.status, r.n_discovered, r.n_ok, r.n_rejected, r.n_failed) for r in s.scalars(select(m.Run))]
        return dict(counts=counts, recordings=recordings, shards=shards, epochs=[tuple(e) for e in epochs], runs=runs)
    finally:
        c.close()


def test_ingest_on_a_separate_dask_cluster_equals_a_local_cluster_run(dask_cluster, archive, local_run, catalog_url,
                                                                      tmp_path):
    from distributed import Client, get_task_stream

    address, workers, procs = dask_cluster
    folder, files = archive
    ref_out, ref_url, ref_summary, ref_stderr = local_run
    out = tmp_path / "cluster-out"

    with Client(address, timeout="30s") as observer:
        before = observer.run(lambda dask_worker: dask_worker.state.executed_count)
        with get_task_stream(client=observer) as ts:
            summary, stderr = _ingest_cli(folder, out, "--scheduler", address, "--catalog", catalog_url)
        after = observer.run(lambda dask_worker: dask_worker.state.executed_count)
        assert sorted(observer.scheduler_info(n_workers=-1)["workers"]) == workers, "a worker was lost or replaced"
    assert all(p.poll() is None for p in procs), "a cluster process died"

    # The driver connected to the external scheduler (and said so), not to a cluster of its own.
    assert f"Dask scheduler {address}," in stderr, stderr[-3000:]
    assert summary["catalog"] == catalog_url
    assert "Dask scheduler tcp://127.0.0.1:" in ref_stderr and f"Dask scheduler {address}," not in ref_stderr
    # The dashboard: the external scheduler runs none (--no-dashboard), so none is claimed; the
    # local cluster's is on a free port and named in the summary and on stderr.
    assert summary["dashboard"] is None and f"Dask scheduler {address}, dashboard not available" in stderr
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/status", ref_summary["dashboard"] or "")
    assert f"dashboard {ref_summary['dashboard']}" in ref_stderr

    # Both external workers did the work: every hash and process task ran there, and each ran some.
    tasks = [t for t in ts.data if str(t["key"]).startswith(("hash-", "process-"))]
    discovered = N_RECORDINGS + 2
    assert sum(str(t["key"]).startswith("hash-") for t in tasks) == discovered, tasks
    assert sum(str(t["key"]).startswith("process-") for t in tasks) == discovered, tasks
    by_worker = {w: [t["key"] for t in tasks if t["worker"] == w] for w in workers}
    assert set(t["worker"] for t in tasks) <= set(workers)
    assert all(by_worker.values()), f"a worker ran nothing: {by_worker}"
    ran = {w: after[w] - before[w] for w in workers}
    assert all(n >= 1 for n in ran.values()) and sum(ran.values()) >= 2 * discovered, ran
    # The failing recordings were processed on the cluster too (their process tasks are in the stream).
    failing = {sha(files[-2])[:16], sha(files[-1])[:16]}  # the truncated copy and the text file
    assert failing <= {str(t["key"]).rsplit("-", 1)[1] for t in tasks if str(t["key"]).startswith("process-")}

    # Same outcome as the LocalCluster run.
    assert (summary["ok"], summary["failed"], summary["rejected"]) == (N_RECORDINGS, 2, 0), summary
    keys = ("recordings", "ok", "rejected", "failed", "skipped", "duplicates", "ignored_files", "epochs_written",
            "shards_written", "eeg_hours")
    assert {k: summary[k] for k in keys} == {k: ref_summary[k] for k in keys}
    shards = _shards(out)
    assert len(shards) == summary["shards_written"] >= 2
    assert shards == _shards(ref_out)
    got, ref = _catalog(catalog_url), _catalog(ref_url)
    assert got["counts"] == ref["counts"]
    assert got["recordings"] == ref["recordings"]
    codes = sorted(r[3] for r in got["recordings"].values() if r[1] == "failed")
    assert codes == ["corrupt", "wrong_magic"], codes
    assert got["shards"] == ref["shards"]
    assert {name: v[0] for name, v in got["shards"].items()} == shards  # catalog hashes = files on disk
    assert got["epochs"] == ref["epochs"]
    assert got["runs"] == ref["runs"]
    assert not list((out / ".spool").iterdir()), "spool files left behind"


# ---------------------------------------------------------------------------
# ephys ingest --cluster slurm, on a real single-node Slurm (tests/slurm_node.py)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    from tests.slurm_node import REQUIRE_ENV, start

    node = start(tmp_path_factory.mktemp("slurm"))
    if isinstance(node, str):
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but no Slurm here: {node}")
        pytest.skip(node)
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(node.conf)  # sbatch/squeue/scancel of this process and its children
    try:
        yield node
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        node.stop()


def test_ingest_on_slurm_equals_a_local_cluster_run(slurm, archive, local_run, tmp_path):
    """``--cluster slurm``: workers are Slurm jobs (dask-jobqueue, adaptive up to --workers); the output
    is byte-identical to the LocalCluster run's; worker job output lands under OUT/.dask/slurm and holds
    no archive file name."""
    folder, files = archive
    ref_out, ref_url, ref_summary, _ = local_run
    out = tmp_path / "slurm-out"
    summary, stderr = _ingest_cli(folder, out, "--cluster", "slurm", "--workers", "2",
                                  "--cluster-option", "memory=1GiB", "--cluster-option", "walltime=00:30:00")
    keys = ("recordings", "ok", "rejected", "failed", "skipped", "duplicates", "ignored_files", "epochs_written",
            "shards_written", "eeg_hours")
    assert {k: summary[k] for k in keys} == {k: ref_summary[k] for k in keys}
    assert _shards(out) == _shards(ref_out)
    got, ref = _catalog(f"sqlite:///{out / 'catalog.sqlite'}"), _catalog(ref_url)
    assert got == ref
    logs = sorted((out / ".dask" / "slurm").glob("ephys-worker-*.err"))
    assert logs, f"no worker job output:\n{slurm.logs()}"
    text = "\n".join(p.read_text(errors="replace") for p in logs)
    assert "Registered to:" in text and "Threads:                          1" in text
    for f in files:  # file names (which hold patient names in hospitals) never reach a worker's log
        assert f.name not in text and f.stem not in text and f.name not in stderr
    assert not list((out / ".spool").iterdir()), "spool files left behind"


def test_slurm_worker_jobs_never_see_the_site_secret(slurm, tmp_path, monkeypatch):
    from distributed import Client

    from ephys.pipeline.run import WORKER_MALLOC_ENV, _slurm_cluster

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.setenv("EPHYS_SITE_SECRET", "do-not-export-me")  # sbatch exports the submitter's environment
    cluster = _slurm_cluster(1, {"memory": "1GiB"}, tmp_path)
    try:
        with Client(cluster) as client:
            client.wait_for_workers(1, timeout=120)
            seen = client.run(lambda: (os.environ.get("EPHYS_SITE_SECRET"), os.environ.get("SLURM_JOB_ID")))
            malloc = client.run(lambda: {k: os.environ.get(k) for k in WORKER_MALLOC_ENV})
            info = client.scheduler_info(n_workers=-1)["workers"]
    finally:
        cluster.close()
    assert len(seen) == 1 and all(secret is None and job for secret, job in seen.values()), seen
    assert [w["nthreads"] for w in info.values()] == [1]
    # The job's worker runs with ephys's allocator settings, not Dask's MALLOC_TRIM_THRESHOLD_=65536.
    assert list(malloc.values()) == [{k: str(v) for k, v in WORKER_MALLOC_ENV.items()}]


def test_a_worker_job_slurm_refuses_is_a_clear_error_not_a_hang(slurm, archive, tmp_path):
    t = time.monotonic()
    cmd = [sys.executable, "-m", "ephys", "ingest", str(archive[0]), "--out", str(tmp_path / "o"), "--cluster", "slurm",
           "--cluster-option", "memory=100000GiB"]
    r = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Slurm refuses the worker job" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and time.monotonic() - t < 60
    r = subprocess.run([*cmd[:-2], "--cluster-option", "nonsense"], cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert r.returncode == 2 and "--cluster-option takes KEY=VALUE" in r.stderr
    r = subprocess.run([*cmd[:-4], "--scheduler", "tcp://127.0.0.1:1", "--cluster", "slurm"], cwd=ROOT, env=_env(),
                       capture_output=True, text=True)
    assert r.returncode == 2 and "leave out --cluster" in r.stderr


def test_local_workers_run_with_ephys_allocator_settings(monkeypatch):
    # Dask's nanny default MALLOC_TRIM_THRESHOLD_=65536 makes every array above 128 KiB a fresh mmap
    # (half the worker CPU in page faults); ephys's workers get WORKER_MALLOC_ENV instead.
    from ephys.pipeline.run import WORKER_MALLOC_ENV, _start_client

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    client, cluster = _start_client(None, 1)
    try:
        seen = client.run(lambda: {k: os.environ.get(k) for k in WORKER_MALLOC_ENV})
        restarted = client.restart()  # a restarted worker (after a task timeout) keeps them
        after = client.run(lambda: {k: os.environ.get(k) for k in WORKER_MALLOC_ENV})
    finally:
        client.close()
        cluster.close()
    expected = {k: str(v) for k, v in WORKER_MALLOC_ENV.items()}
    assert list(seen.values()) == [expected] and list(after.values()) == [expected], (seen, after, restarted)
