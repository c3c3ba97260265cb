"""A long recording is spread over the Dask workers block by block.

On a worker, a recording of several blocks offers each block of its QC pass and of its
conditioning pass to the cluster as a Dask task of its own, and works on the blocks itself
from the other end. These tests run real ``LocalCluster`` workers (processes) and check that:

* the block tasks exist (one per block and pass) and both workers run some;
* the shards hold exactly the epochs that :func:`process_recording` computes in one process;
* the same holds under ``--task-timeout`` (the work thread asks the task thread to secede);
* a worker that dies in a block task fails that recording (``worker_crash``), not the run;
* errors raised in a block task keep their type, reason and file when they cross processes.
"""

from __future__ import annotations

import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from ephys.errors import CorruptFileError, OutputError, TooShortError
from ephys.pipeline.run import ingest
from ephys.pipeline.task import process_recording
from ephys.schemas import IngestConfig
from ephys.ingest.writers.edf import write_edf
from tests.ingest_helpers import rows_by_sha, sha

NAMES = ["Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T7", "C3", "Cz", "C4", "T8", "P7", "P3", "Pz", "P4", "P8", "O1", "O2"]
SFREQ = 256
N_EPOCHS = 13  # blocks of 3 epochs: 5 blocks (3, 3, 3, 3, 1)
CONFIG = IngestConfig(min_epochs=1, block_epochs=3, shard_size=4)


def _write(path: Path, seed: int, n_epochs: int = N_EPOCHS) -> Path:
    rng = np.random.default_rng(seed)
    n = SFREQ * 30 * n_epochs + SFREQ * 5
    t = np.arange(n) / SFREQ
    common = 20 * np.sin(2 * np.pi * 10 * t) + np.cumsum(rng.normal(0, 1, n)) * 0.2
    sig = [common + rng.normal(0, 10, n) + 10 * np.sin(2 * np.pi * 50 * t) for _ in NAMES]
    return write_edf(path, sig, [f"EEG {x}" for x in NAMES], [SFREQ] * len(NAMES))


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> tuple[Path, list[Path]]:
    folder = tmp_path_factory.mktemp("archive")
    for sub in ("long", "short"):
        (folder / sub).mkdir()
    return folder, [_write(folder / "long" / "long-a.edf", 0), _write(folder / "short" / "short-b.edf", 1, 7)]


@pytest.fixture(scope="module")
def cluster():
    """A 2-worker local cluster of processes, 1 thread each, that the tests hand to ``ingest`` by address."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c, \
            Client(c) as observer:
        observer.run(_warm)  # import the pipeline in both workers, so neither starts seconds behind the other
        yield c.scheduler_address, observer


def _warm() -> None:
    import ephys.pipeline.task  # noqa: F401


def _inline(path: Path, tmp: Path, config: IngestConfig = CONFIG) -> np.ndarray:
    """Epochs of ``path`` computed in this process, blocks one after the other."""
    d = tmp / f"inline-{path.stem}"
    d.mkdir()
    r = process_recording(str(path), "edf", sha(path), path.stat().st_size, config, str(d), b"k")
    assert r.status == "ok", r.failure
    return np.load(d / f"{sha(path)}.npy")


def _shard_epochs(out: Path) -> dict[str, np.ndarray]:
    """``key -> (n_channels, n_samples)`` float16 of every sample in every shard."""
    got = {}
    for p in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(p) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".eeg.npy"):
                    got[m.name.removesuffix(".eeg.npy")] = np.load(io.BytesIO(tar.extractfile(m).read()))
    return got


def _check_equal(out: Path, files: list[Path], tmp: Path) -> None:
    got = _shard_epochs(out)
    for f in files:
        ref = _inline(f, tmp)
        keys = sorted(k for k in got if k.startswith(sha(f)[:16]))
        assert len(keys) == len(ref)
        np.testing.assert_array_equal(np.stack([got[k] for k in keys]), ref)  # bit for bit


def _compute_s(task: dict) -> float:
    return sum(s["stop"] - s["start"] for s in task["startstops"] if s["action"] == "compute")


def _run_in_stream(address, observer, archive, out, config):
    from distributed import get_task_stream

    with get_task_stream(client=observer) as ts:
        summary = ingest(archive, out, config=config, scheduler=address)
    return summary, ts.data


def _check_spread(stream: list[dict], long_sha: str, workers: list[str]) -> None:
    """At most one task per block and pass ran (a task still queued when the recording's task has
    done every block is cancelled), and both workers computed the recording: its own task on one,
    block tasks that did real work (tens of ms; one whose block was already taken returns in about
    1 ms) elsewhere."""
    qc = [t for t in stream if str(t["key"]).startswith(f"qc-part-{long_sha}-")]
    cond = [t for t in stream if str(t["key"]).startswith(f"condition-part-{long_sha}-")]
    assert len(qc) <= 5 and len(cond) <= 5
    assert len({str(t["key"]) for t in qc + cond}) == len(qc + cond)
    (parent,) = [t["worker"] for t in stream if str(t["key"]).startswith("process-") and long_sha in str(t["key"])]
    computed = {t["worker"] for t in qc + cond if _compute_s(t) > 0.01}
    assert {parent} | computed == set(workers), (parent, computed)


def test_a_long_recording_is_spread_over_both_workers_and_equals_one_process(cluster, archive, tmp_path):
    address, observer = cluster
    folder, files = archive
    summary, stream = _run_in_stream(address, observer, folder / "long", tmp_path / "out", CONFIG)
    assert (summary.n_ok, summary.n_failed, summary.n_epochs) == (1, 0, N_EPOCHS)
    _check_spread(stream, sha(files[0])[:16], sorted(observer.scheduler_info(n_workers=-1)["workers"]))
    _check_equal(tmp_path / "out", files[:1], tmp_path)
    rows = rows_by_sha(f"sqlite:///{tmp_path / 'out' / 'catalog.sqlite'}")
    secs = json.loads(rows[sha(files[0])].seconds_json)
    assert set(secs) == {"open", "read", "qc", "condition", "sleep", "stage"}
    assert secs["qc"] > 0 and secs["condition"] > 0 and secs["read"] > 0  # block tasks' worker time is counted
    assert not list((tmp_path / "out" / ".spool").iterdir())


def test_block_tasks_under_a_task_timeout(cluster, archive, tmp_path):
    """Under --task-timeout the recording's work runs in a thread of its task; block tasks still run."""
    address, observer = cluster
    folder, files = archive
    config = CONFIG.model_copy(update={"task_timeout_s": 300.0})
    summary, stream = _run_in_stream(address, observer, folder / "long", tmp_path / "out", config)
    assert (summary.n_ok, summary.n_failed) == (1, 0)
    _check_spread(stream, sha(files[0])[:16], sorted(observer.scheduler_info(n_workers=-1)["workers"]))
    _check_equal(tmp_path / "out", files[:1], tmp_path)


def test_two_recordings_on_two_workers_equal_one_process(cluster, archive, tmp_path):
    address, observer = cluster
    folder, files = archive
    summary, _ = _run_in_stream(address, observer, folder, tmp_path / "out", CONFIG)
    assert (summary.n_ok, summary.n_epochs, summary.n_shards) == (2, N_EPOCHS + 7, 5)
    _check_equal(tmp_path / "out", files, tmp_path)


def test_a_worker_dying_in_a_block_task_fails_only_that_recording(archive, tmp_path, monkeypatch):
    folder, files = archive
    victim = sha(files[0])
    monkeypatch.setenv("EPHYS_TEST_FAILPOINTS", f"crash-block:{victim[:12]}@6")  # the third of five blocks
    # A fresh local cluster (started by ingest, so with its own allowed failures) sees the failpoint.
    summary = ingest(folder, tmp_path / "out", config=CONFIG, workers=2)
    assert (summary.n_ok, summary.n_failed) == (1, 1)
    rows = rows_by_sha(f"sqlite:///{tmp_path / 'out' / 'catalog.sqlite'}")
    assert (rows[victim].status, rows[victim].failure_code) == ("failed", "worker_crash")
    assert rows[sha(files[1])].status == "ok" and rows[sha(files[1])].n_packed == 7
    assert not list((tmp_path / "out" / ".spool").glob(f"{victim}*"))


@pytest.mark.parametrize("exc", [CorruptFileError("data record 7 is cut short", "a/b.edf"),
                                 TooShortError("too short: 0 valid 30-s epochs", "x.trc"),
                                 OutputError("cannot write spool file in /s: No space left on device")])
def test_errors_cross_processes_with_their_reason_and_file(exc):
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc)
    assert (back.reason, back.path, str(back), back.code) == (exc.reason, exc.path, str(exc), exc.code)


def test_an_input_read_error_in_a_block_fails_the_recording_not_the_run(archive, tmp_path, monkeypatch):
    """An I/O error reading the recording during conditioning is that recording's ``io_error``; only a
    failure to write the spool file is an ``OutputError`` (which stops the run)."""
    import errno

    from ephys.ingest.readers.edf import EDFReader

    path = archive[1][0]
    real_read, calls = EDFReader.read, []

    def flaky(self, start, stop, channels):
        calls.append((start, stop))
        if len(calls) > 6:  # QC has read all 5 blocks; fail in the conditioning pass
            raise OSError(errno.EIO, "Input/output error")
        return real_read(self, start, stop, channels)

    monkeypatch.setattr(EDFReader, "read", flaky)
    r = process_recording(str(path), "edf", sha(path), path.stat().st_size, CONFIG, str(tmp_path), b"k")
    assert (r.status, r.failure.code) == ("failed", "io_error")
    assert not list(tmp_path.iterdir())  # no spool file, not even a .tmp
