"""The ingest driver: a Dask graph over recordings, and the single writer of shards and catalog.

Graph: one ``hash`` task per discovered recording (above everything else in priority); when its
hash is known and the catalog says it is not done, one ``process`` task
(:func:`ephys.pipeline.task.process_recording`), prioritised in packing order. Workers stage conditioned
epochs on disk; the driver gathers results as they complete and:

* records every result in the catalog (failures at once);
* packs epochs of successful recordings into shards **in ascending SHA-256
  order of the recordings**, whatever order they finish in, so shard bytes do
  not depend on the number of workers or on timing;
* after each shard is renamed into place, commits the shard row, its epoch
  rows and each recording's packing progress in one transaction, then appends
  finished recordings to the hash log.

An interrupted run (even SIGKILL) resumes exactly: complete shards are in the
catalog, recordings partly packed continue from their first unpacked epoch,
and half-written ``*.tmp`` files are removed at start. One run at a time holds the
output folder (:class:`~ephys.pipeline.lock.OutputLock`).

No archive path reaches a log line, a reporter callback, a Dask task key or argument
``repr``, or a stored reason: recordings are named by the first 12 hex digits of their
SHA-256 (``ingest(..., show_paths=True)`` names them by path, for an interactive terminal),
paths travel as :class:`~ephys.ingest.identity.HiddenPath`, reasons pass through
:func:`~ephys.ingest.identity.redact`, and path hashes are keyed with the site secret.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path


from ephys import __version__
from ephys.catalog.db import Catalog, default_catalog_url
from ephys.errors import TRANSIENT_CODES, ConfigMismatchError, OutputError, ReadError, RunError
from ephys.ingest.discover import Discovered, discover
from ephys.ingest.hashing import hash_recording
from ephys.ingest.identity import HiddenPath, load_site_secret, path_hash, printable_path, redact, secret_fingerprint
from ephys.ingest.names import build_table
from ephys.pipeline.hashlog import HashLog
from ephys.pipeline.lock import OutputLock
from ephys.pipeline.progress import Reporter
from ephys.pipeline.sidecars import SidecarReport, attach_sidecars
from ephys.pipeline.packer import Packer
from ephys.pipeline.parts import BLOCK_PRIORITY
from ephys.pipeline.task import bounded, run_recording
from ephys.schemas import Failure, IngestConfig, RecordingResult, RecordingStatus
from ephys.schemas.urls import is_url
from ephys.shard.store import local_path

log = logging.getLogger("ephys")
#: Dask priority of hash tasks: above block tasks (:data:`ephys.pipeline.parts.BLOCK_PRIORITY`) and
#: recording tasks. Hashing is about 2 % of the work.
HASH_PRIORITY = BLOCK_PRIORITY << 1


@dataclass
class IngestSummary:
    """Counts of one ``ingest`` call (what the CLI prints)."""

    run_id: int
    out: str
    catalog: str
    n_discovered: int = 0
    n_ignored: int = 0
    n_special: int = 0
    n_unreadable_folders: int = 0
    n_skipped: int = 0
    n_duplicates: int = 0
    n_ok: int = 0
    n_rejected: int = 0
    n_failed: int = 0
    n_epochs: int = 0
    n_shards: int = 0
    eeg_hours: float = 0.0
    wall_s: float = 0.0
    dashboard: str | None = None
    #: ``(name, code, reason)`` of every recording not ok; ``name`` as the reporter shows it.
    outcomes: list[tuple[str, str, str]] = field(default_factory=list, repr=False)
    #: What the seizure lists and annotation tables beside the recordings gave (:mod:`ephys.pipeline.sidecars`).
    sidecars: SidecarReport = field(default_factory=SidecarReport, repr=False)


def _check_stager(name: str) -> None:
    """Refuse to start when the chosen sleep-staging backend is not installed (workers share this environment)."""
    from ephys.annotate.staging import require_backend
    from ephys.errors import StagingBackendUnavailable

    try:
        require_backend(name)
    except StagingBackendUnavailable as exc:
        raise RunError(str(exc)) from None


def _hash_task(files: list[str], buffer_bytes: int, timeout_s: float | None = None):
    """``(sha256 | None, bytes, failure | None, fingerprints)`` of one recording, within ``timeout_s``."""
    fingerprints: list = []
    try:
        done, out = bounded(hash_recording, (files, buffer_bytes, fingerprints), timeout_s, "ephys-hash")
    except ReadError as exc:
        return None, 0, Failure.from_exception(exc), None
    if not done:
        return None, 0, Failure(stage="hash", code="timeout", reason=f"hashing took longer than --task-timeout {timeout_s:g} s"), None
    return out[0], out[1], None, fingerprints


def _unhashed_sha(secret: bytes, relpath: str) -> str:
    """The catalog key of a recording whose content could not be hashed: keyed by the site secret,
    so it confirms no guessed path (and in its own domain, so it never equals the path hash)."""
    return path_hash(secret, relpath, domain=b"unhashed")


#: A recording whose task kills this many workers is recorded as failed (``worker_crash``);
#: Dask's own default is 3. Applies to local clusters; a separate scheduler uses its own setting.
ALLOWED_WORKER_DEATHS = 2


def _dashboard_link(client, timeout_s: float = 5.0) -> str | None:
    """The scheduler's dashboard URL if it answers from here, else None.

    ``Client.dashboard_link`` names the scheduler's HTTP server even when it serves no dashboard
    (``dask scheduler --no-dashboard``, or bokeh missing there: ``/status`` answers 404), so the
    page is requested once."""
    import urllib.request

    try:
        link = client.dashboard_link
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the scheduler, never a proxy
        with opener.open(link, timeout=timeout_s) as r:
            return link if r.status == 200 else None
    except Exception:  # noqa: BLE001 - a diagnostic only; never fail the run for it
        return None


#: Where ``ingest`` can run: a LocalCluster on this machine, or Dask workers as Slurm jobs.
CLUSTERS = ("local", "slurm")
#: Most Slurm worker processes at a time when ``workers`` is not given.
SLURM_MAX_WORKERS = 16
#: ``SLURMCluster`` settings ephys sets where neither the caller nor Dask's configuration
#: (``jobqueue.slurm.*``, e.g. ``~/.config/dask/jobqueue.yaml``) does: one single-threaded worker
#: process per core, a name that says what the jobs are.
SLURM_DEFAULTS = {"cores": 1, "memory": "4GiB", "job_name": "ephys-worker", "walltime": "24:00:00"}

#: glibc ``malloc`` settings of the worker processes ephys starts (local and Slurm). Dask's nanny
#: sets ``MALLOC_TRIM_THRESHOLD_=65536``, and setting it fixes glibc's mmap threshold at 128 KiB
#: (mallopt(3): setting M_TRIM_THRESHOLD disables the dynamic threshold), so every array of a
#: block above 128 KiB is a fresh ``mmap`` whose pages the kernel zeroes on first touch: on the
#: routine benchmark 6.7 M page faults and about half of the workers' CPU time in the kernel
#: (docs/benchmarks.md). Here arrays up to 32 MiB (mallopt(3)'s documented maximum for
#: M_MMAP_THRESHOLD on 64-bit) come from the heap, and up to 64 MiB of freed memory is kept for
#: the next block instead of being returned at once: 0.24 M faults, about +75 MiB of peak RSS per
#: worker. An operator's own ``MALLOC_*`` environment takes precedence (Dask's rule).
WORKER_MALLOC_ENV = {"MALLOC_TRIM_THRESHOLD_": 64 << 20, "MALLOC_MMAP_THRESHOLD_": 32 << 20}


def _slurm_cluster(workers: int | None, options: dict, log_directory: Path):
    """A ``dask_jobqueue.SLURMCluster`` that adapts between one job and ``workers`` worker processes.

    ``options``: keyword arguments of ``SLURMCluster`` (``queue``, ``account``, ``walltime``,
    ``memory``, ``cores``, ``job_extra_directives``, ...; https://jobqueue.dask.org/en/latest/
    generated/dask_jobqueue.SLURMCluster.html); each job runs ``cores`` worker processes of one
    thread. Worker jobs never see the site secret (tasks carry what they need), and write their
    Slurm output under ``log_directory``.
    """
    import dask
    from dask_jobqueue import SLURMCluster

    kw = dict(options)
    for k, v in SLURM_DEFAULTS.items():
        if k not in kw and dask.config.get(f"jobqueue.slurm.{k}", None) is None:
            kw[k] = v
    cores = int(kw.get("cores") or dask.config.get("jobqueue.slurm.cores"))
    kw.setdefault("processes", cores)  # one thread per worker process, as on a local cluster
    prologue = list(kw.pop("job_script_prologue", None) or dask.config.get("jobqueue.slurm.job-script-prologue", []) or [])
    malloc = " ".join(f"{k}=${{{k}:-{v}}}" for k, v in WORKER_MALLOC_ENV.items())
    kw["job_script_prologue"] = ["unset EPHYS_SITE_SECRET", f"export {malloc}", *prologue]
    kw.setdefault("log_directory", str(log_directory))
    kw.setdefault("scheduler_options", {"dashboard_address": ":0"})
    if shutil.which("sbatch") is None:
        raise RunError("--cluster slurm needs Slurm's sbatch on the PATH (run the ingest on a login node of the cluster)")
    try:
        cluster = SLURMCluster(**kw)
    except (TypeError, ValueError) as exc:
        raise RunError(f"--cluster-option: {exc}") from None
    try:
        _check_slurm_job(cluster.job_script())
    except BaseException:
        cluster.close()
        raise
    per_job = int(kw["processes"])
    cluster.adapt(minimum_jobs=1, maximum_jobs=max(1, -(-(workers or SLURM_MAX_WORKERS) // per_job)))
    return cluster


def _check_slurm_job(script: str) -> None:
    """``sbatch --test-only`` of a worker job: Slurm's refusal (a partition or memory it does not
    have) is a RunError now, not an adaptive loop retrying it while the ingest waits for workers."""
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".sh", prefix="ephys-worker-") as f:
        f.write(script)
        f.flush()
        try:
            r = subprocess.run(["sbatch", "--test-only", f.name], capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RunError(f"sbatch --test-only of the worker job failed: {exc}") from None
    if r.returncode != 0:
        said = " ".join(line.strip() for line in r.stderr.splitlines() if line.strip())[-400:]
        raise RunError(f"Slurm refuses the worker job ({said}); change it with --cluster-option, e.g. "
                       "memory=2GiB, queue=PARTITION, account=NAME")


def _start_client(scheduler: str | None, workers: int | None, processes: bool = True, cluster: str = "local",
                  cluster_options: dict | None = None, log_directory: Path | None = None):
    import dask
    from dask.distributed import Client, LocalCluster

    try:
        if scheduler:
            return Client(scheduler, timeout="20s"), None
        if cluster == "slurm":
            with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_WORKER_DEATHS}):
                jobs = _slurm_cluster(workers, cluster_options or {}, log_directory or Path.cwd())
            try:
                return Client(jobs), jobs
            except BaseException:
                jobs.close()
                raise
        n = workers or os.cpu_count() or 1
        malloc = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_MALLOC_ENV.items()}
        with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_WORKER_DEATHS, **malloc}):
            # The dashboard (bokeh) on a free port: several ingests on one machine never clash on 8787.
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=processes, dashboard_address=":0",
                                   silence_logs=logging.ERROR)
        try:
            return Client(cluster), cluster
        except BaseException:
            cluster.close()
            raise
    except (OSError, TimeoutError) as exc:
        raise RunError(f"cannot reach the Dask scheduler {scheduler or '(local)'}: {exc}") from None


def _check_store(url: str) -> None:
    """Refuse to start when the shard URL's protocol is unknown, its package missing, or it is unreachable."""
    from ephys.shard.store import filesystem

    try:
        fs, path = filesystem(url)
        fs.makedirs(path, exist_ok=True)
    except Exception as exc:  # noqa: BLE001 - ImportError, ValueError, botocore errors...: all a RunError
        raise RunError(f"cannot use the shard URL {url}: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}") from None


def _remove_legacy_spool(out: Path) -> None:
    """Earlier versions kept worker outputs in ``OUT/.staging`` (a name sleep staging also uses). Nothing in it is
    reused (workers write a recording's spool files again when they process it), so it is removed: pseudonymised
    epoch arrays left by an interrupted run do not stay behind for ever."""
    shutil.rmtree(out / ".staging", ignore_errors=True)


def _check_meta(catalog: Catalog, config: IngestConfig, fingerprint: str, shards_root: str) -> None:
    for key, value, what in (
        ("processing_hash", config.processing_hash(), "processing settings"),
        ("secret_fingerprint", fingerprint, "site secret (subject pseudonyms would change)"),
    ):
        old = catalog.get_meta(key)
        if old is None:
            catalog.set_meta(key, value)
        elif old != value:
            detail = ""
            if key == "processing_hash":
                prev = catalog.get_meta("processing_config")
                detail = f" (catalog: {prev}; now: {json.dumps(config.processing_dict(), sort_keys=True)})"
            raise ConfigMismatchError(
                f"this output was built with other {what}{detail}; use another --out/--catalog or --force to rebuild"
            )
    catalog.set_meta("processing_config", json.dumps(config.processing_dict(), sort_keys=True))
    catalog.set_meta("shards_root", shards_root)


def ingest(
    archive: str | os.PathLike,
    out: str | os.PathLike,
    *,
    config: IngestConfig | None = None,
    catalog_url: str | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    retry_failed: bool = False,
    force: bool = False,
    buffer_bytes: int = 8 * 1024 * 1024,
    reporter: Reporter | None = None,
    processes: bool = True,
    shards_url: str | None = None,
    show_paths: bool = False,
    cluster: str = "local",
    cluster_options: dict | None = None,
) -> IngestSummary:
    """Ingest an archive into shards under ``out/shards`` and rows in the catalog.

    Parameters
    ----------
    archive : path
        Folder walked recursively (or a single recording file).
    out : path
        Output folder: ``shards/``, ``hashlog.csv``, ``catalog.sqlite`` (default catalog).
    config : IngestConfig
        Processing settings; an existing output must have been built with the same ones.
    catalog_url : str
        SQLAlchemy URL; default ``sqlite:///OUT/catalog.sqlite``.
    scheduler : str
        Address of a running Dask scheduler; default a cluster of ``workers`` processes (``cluster``).
    workers : int
        Worker processes of the local cluster (default: the CPU count), or the most Slurm worker
        processes at a time (default :data:`SLURM_MAX_WORKERS`).
    cluster : str
        Without ``scheduler``: ``"local"`` (a ``LocalCluster`` on this machine) or ``"slurm"``
        (``dask_jobqueue.SLURMCluster``: the scheduler runs in this process, workers are Slurm jobs
        submitted with ``sbatch`` as the work needs them, between one job and ``workers``).
        The output does not depend on it.
    cluster_options : dict
        ``SLURMCluster`` keyword arguments (``queue``, ``account``, ``walltime``, ``memory``,
        ``cores`` = single-threaded worker processes per job, ...) over :data:`SLURM_DEFAULTS` and
        Dask's ``jobqueue.slurm`` configuration. Worker job output goes to ``out/.dask/slurm``.
    retry_failed : bool
        Process again recordings that failed before (rejected ones stay rejected).
    force : bool
        Rebuild the output from scratch: delete its shards, hash log and catalog rows first.
    processes : bool
        Local cluster workers as processes (default) or threads in this process.
    shards_url : str
        Where shards go: a folder or any fsspec URL (``s3://bucket/corpus``; see
        :mod:`ephys.shard.store`); default ``out/shards``. Staging files, hash log and the
        default catalog stay under ``out``.
    show_paths : bool
        Name recordings by their printable archive path in reporter callbacks and
        ``outcomes`` (for an interactive terminal only); default: their SHA-256 prefix.

    Returns
    -------
    IngestSummary

    Raises
    ------
    RunError
        When the run cannot proceed: no such archive, catalog unreachable, scheduler
        unreachable, settings that differ from the existing output's (``ConfigMismatchError``),
        or another ingest holding the output folder (``OutputLockedError``).
        Bad recordings never raise; they are recorded with their reason.
    """
    t0 = time.perf_counter()
    config = config or IngestConfig()
    _check_stager(config.stager)
    if config.taxonomy is not None:
        from ephys.annotate.taxonomy import taxonomy_matcher

        config = config.model_copy(update={"taxonomy": str(Path(config.taxonomy).resolve())})  # workers elsewhere
        try:
            taxonomy_matcher(config.taxonomy)
        except (OSError, ValueError) as exc:
            raise RunError(f"taxonomy {config.taxonomy}: {getattr(exc, 'strerror', None) or exc}") from None
    if cluster not in CLUSTERS:
        raise RunError(f"--cluster must be one of {', '.join(CLUSTERS)}, not {cluster!r}")
    if scheduler and cluster != "local":
        raise RunError("--scheduler names a running cluster: leave out --cluster")
    reporter = reporter or Reporter()
    found = discover(archive)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"cannot create output folder {out}: {exc.strerror}") from None
    lock = OutputLock(out).acquire()
    try:
        catalog_url = catalog_url or default_catalog_url(out)
        catalog = Catalog(catalog_url)
    except BaseException:
        lock.release()
        raise
    client = dask_cluster = None
    try:
        shards, spool = out / "shards", out / ".spool"
        if shards_url and not is_url(shards_url):
            shards, shards_url = local_path(shards_url), None  # a local folder elsewhere
        if force:
            catalog.reset()
            shutil.rmtree(spool, ignore_errors=True)
            for p in shards.glob("shard-*.tar*"):  # only our shards: --shards may name a folder with other files
                p.unlink(missing_ok=True)
            (out / "hashlog.csv").unlink(missing_ok=True)
        shards.mkdir(parents=True, exist_ok=True)
        _remove_legacy_spool(out)
        spool.mkdir(exist_ok=True)
        for p in list(shards.glob("*.tmp")) + list(spool.glob("*.tmp")) + list(spool.glob("*.crashed")):
            p.unlink(missing_ok=True)  # half-written files of an interrupted run
        for p in list(spool.glob("*.claims")) + list(spool.glob("*.claims.done")):
            shutil.rmtree(p, ignore_errors=True)  # block claims of an interrupted run
        secret = load_site_secret()
        if shards_url:
            _check_store(shards_url)
        _check_meta(catalog, config, secret_fingerprint(secret), shards_url or str(shards.resolve()))
        build_table()  # the name detector's table, once per machine, before the workers need it
        client, dask_cluster = _start_client(scheduler, workers, processes, cluster, cluster_options,
                                             out.resolve() / ".dask" / "slurm")
        run_id = catalog.begin_run(code_version=__version__, processing_hash=config.processing_hash(),
                                   config=config.model_dump())
        states = catalog.recording_states()
        hashlog = HashLog(out / "hashlog.csv")
    except BaseException:
        if client is not None:
            client.close()
        if dask_cluster is not None:
            dask_cluster.close()
        catalog.close()
        lock.release()
        raise
    summary = IngestSummary(run_id=run_id, out=str(out), catalog=catalog_url, n_discovered=len(found.recordings),
                            n_ignored=found.n_ignored, n_special=found.n_special,
                            n_unreadable_folders=found.n_unreadable_folders)
    summary.dashboard = _dashboard_link(client)
    log.info("Dask scheduler %s, dashboard %s", client.scheduler.address, summary.dashboard or "not available")
    status = "interrupted"
    try:
        _run(found.recordings, client, catalog, hashlog, states, config, out, run_id, secret, summary, reporter,
             retry_failed, buffer_bytes, shards, shards_url, show_paths, found.annotation_sidecars)
        status = "completed"
    finally:
        reporter.stop()
        hashlog.close()
        summary.wall_s = time.perf_counter() - t0
        try:
            catalog.finish_run(run_id, status, n_discovered=summary.n_discovered, n_skipped=summary.n_skipped,
                               n_ok=summary.n_ok, n_rejected=summary.n_rejected, n_failed=summary.n_failed,
                               eeg_hours=summary.eeg_hours, wall_s=summary.wall_s)
        finally:
            client.close()
            if dask_cluster is not None:
                dask_cluster.close()
            catalog.close()
            lock.release()
    return summary


def _restart_stuck_worker(client, future) -> None:
    """Restart the worker whose task timed out, ending the thread still stuck in it."""
    try:
        workers = list(client.who_has([future]).get(future.key, ()))
        if workers:
            client.restart_workers(workers, timeout=60)
            log.info("restarted worker %s after a task timeout", workers[0])
    except Exception as exc:  # noqa: BLE001 - no nanny (e.g. --no-nanny workers): the thread lingers
        log.warning("could not restart the worker of a timed-out task (%s); its stuck thread keeps running",
                    type(exc).__name__)


def _pack_priority(sha: str) -> int:
    """Dask priority of a recording task: higher for a lower SHA-256 (the packing order), below
    block tasks and hash tasks."""
    return (1 << 32) - int(sha[:8], 16)


def _recording_bytes(rec: Discovered) -> int:
    """Bytes of a recording's files (0 for what cannot be stat'ed; hashing reports it)."""
    total = 0
    for f in rec.files:
        try:
            total += f.stat().st_size
        except OSError:
            pass
    return total


def _run(recordings: list[Discovered], client, catalog, hashlog, states, config, out, run_id, secret, summary,
         reporter, retry_failed, buffer_bytes, shards=None, shards_url=None, show_paths=False,
         annotation_sidecars=()) -> None:
    from dask.distributed import as_completed
    from distributed import KilledWorker

    reporter.start(len(recordings))
    by_key: dict[str, Discovered] = {}
    futures = []
    # Hashes before anything else (about 2 % of the work), so the packing order is known early;
    # then recordings in that order (ascending SHA-256, :func:`_pack_priority`), so results arrive
    # about when the packer needs them and shards are written while the workers process, not all
    # at the end. A long recording started late does not leave workers idle: its blocks are
    # shared (ephys.pipeline.task). Among hashes, the largest files are submitted first.
    sizes = [_recording_bytes(rec) for rec in recordings]
    known_failures = []
    for i in sorted(range(len(recordings)), key=lambda i: -sizes[i]):
        rec = recordings[i]
        if rec.failure is not None:  # an unreadable folder, a special file: recorded, never opened
            known_failures.append(rec)
            continue
        f = client.submit(_hash_task, rec.file_strs, buffer_bytes, config.task_timeout_s, key=f"hash-{run_id}-{i}",
                          pure=False, priority=HASH_PRIORITY)
        by_key[f.key] = rec
        futures.append(f)
    pending = as_completed(futures)
    seen: set[str] = set()
    meta: dict[str, tuple[str, str | None]] = {}
    todo: dict[str, tuple[Discovered, int]] = {}
    process_futures: dict[str, str] = {}
    futures_list = []
    keep_paths = config.keep_paths
    paths: list[tuple[str, str, str | None]] = []  # (sha, path hash, relpath) of every file, duplicates included
    hashed_recordings: list[tuple[Discovered, str]] = []  # for the annotation sidecars

    def name(sha: str, rec: Discovered) -> str:
        return printable_path(rec.relpath) if show_paths else sha[:12]

    def record(sha: str, rec: Discovered, result: RecordingResult) -> None:
        ph, rp = meta[sha]
        if result.failure is not None:  # reader and library messages may quote paths and dates
            known = [str(f) for f in rec.files] + [rec.relpath]
            result.failure = result.failure.model_copy(update={"reason": redact(result.failure.reason, known)})
        catalog.record_result(result, run_id=run_id, path_hash=ph, relpath=rp, processing_hash=config.processing_hash())
        if result.status is RecordingStatus.ok:
            summary.n_ok += 1
            summary.eeg_hours += (result.duration_s or 0) / 3600
        else:
            if result.status is RecordingStatus.rejected:
                summary.n_rejected += 1
            else:
                summary.n_failed += 1
            hashlog.append(sha, result.status.value, result.failure.code if result.failure else None, 0, ph, rp)
            summary.outcomes.append((name(sha, rec), result.failure.code, result.failure.reason))
        reporter.finished(name(sha, rec), result)

    def hashed():
        for rec in known_failures:
            yield rec, (None, 0, Failure.from_exception(rec.failure, stage="discover"), None), None
        for f in pending:
            rec = by_key.pop(f.key)
            try:
                out = f.result()
            except KilledWorker:
                out = None, 0, Failure(stage="hash", code="worker_crash", reason="the worker hashing it died repeatedly"), None
            except Exception as exc:  # noqa: BLE001 - the cluster cannot run ephys tasks at all
                raise RunError(
                    f"the Dask cluster could not run an ephys task ({type(exc).__name__}: {redact(str(exc).splitlines()[0][:200])}); "
                    "scheduler and workers need the same environment as this driver, with ephys installed"
                ) from None
            yield rec, out, f

    # Phase 1: hashes decide what to process; processing starts as soon as a hash is known.
    for rec, (sha, nbytes, failure, fingerprints), f in hashed():
        if f is not None:
            if failure is not None and failure.code == "timeout":
                _restart_stuck_worker(client, f)
            f.release()
        if sha is None:
            sha = _unhashed_sha(secret, rec.relpath)
        paths.append((sha, path_hash(secret, rec.relpath), printable_path(rec.relpath) if keep_paths else None))
        hashed_recordings.append((rec, sha))
        if sha in seen:
            summary.n_duplicates += 1
            reporter.skipped(name(sha, rec), "duplicate content")
            continue
        seen.add(sha)
        meta[sha] = paths[-1][1:]
        state = states.get(sha)
        if state is not None:
            st, n_ep, n_packed, code = state
            done = st != "ok" or n_packed >= n_ep
            if done and not (st == "failed" and (retry_failed or code in TRANSIENT_CODES)):
                summary.n_skipped += 1
                reporter.skipped(name(sha, rec), "done before")
                if sha not in hashlog.done:  # catalog committed, log row lost in a crash
                    hashlog.append(sha, st, None, n_ep if st == "ok" else 0, *meta[sha])
                continue
        if failure is not None:
            record(sha, rec, RecordingResult(sha256=sha, format=rec.format, status=RecordingStatus.failed, failure=failure))
            continue
        todo[sha] = (rec, nbytes)
        pf = client.submit(run_recording, HiddenPath(rec.primary), rec.format, sha, nbytes, config,
                           str(out / ".spool"), secret, buffer_bytes, rec.file_strs, fingerprints,
                           key=f"process-{run_id}-{sha[:16]}", pure=False, retries=1, priority=_pack_priority(sha))
        process_futures[pf.key] = sha
        futures_list.append(pf)

    # Phase 2: results in completion order; shards in SHA-256 order.
    order = sorted(todo)
    have = catalog.packed_epochs([sha for sha in order if sha in states and states[sha][0] == "ok" and states[sha][2]])
    packer = Packer(catalog, out, config, run_id, hashlog, order, have, meta, reporter, shards, shards_url)
    for f in as_completed(futures_list):
        sha = process_futures.pop(f.key)
        rec = todo[sha][0]
        try:
            result = f.result()
        except OutputError as exc:
            raise OutputError(f"{exc.reason}; nothing committed is lost: free space (or fix the output) "
                              "and run the same command again to continue") from None
        except Exception as exc:  # noqa: BLE001 - a worker died repeatedly on this file
            result = RecordingResult(sha256=sha, format=rec.format, status=RecordingStatus.failed,
                                     failure=Failure(stage="ingest", code="worker_crash",
                                                     reason=f"the worker processing it died ({type(exc).__name__})"))
        if result.failure is not None and result.failure.code == "timeout":
            _restart_stuck_worker(client, f)
        f.release()
        record(sha, rec, result)
        packer.add(sha, result if result.status is RecordingStatus.ok else None)
    packer.flush()
    catalog.add_paths(paths, run_id=run_id)
    summary.sidecars = attach_sidecars(list(annotation_sidecars), hashed_recordings, catalog, secret=secret,
                                       run_id=run_id, show_paths=show_paths, taxonomy=config.taxonomy)
    summary.n_shards = packer.n_shards
    summary.n_epochs = packer.n_epochs

