"""The per-recording task a Dask worker runs: read -> QC -> condition -> epochs -> stage.

It never touches the catalog and never raises for bad input: every outcome is a
:class:`~ephys.schemas.RecordingResult`. The conditioned epochs are written to
``spool_dir/<sha256>.npy`` (float16 µV, shape ``(n_epochs, n_channels,
n_samples)``), fsynced and renamed into place, for the driver to pack.

A recording is processed in blocks of ``config.block_epochs`` epochs, in two passes (QC figures
of every block, then, once the bad channels are known, conditioning of every block). On a
Dask worker, each pass of a recording of several blocks is also offered to the cluster as one
task per block (:class:`DaskParts`), so one long monitoring file keeps every worker busy.
Block tasks open the file themselves and write their epochs at their rows of the spool file,
so only small QC arrays cross the network, and the result equals processing the blocks in one
process, bit for bit.
"""

from __future__ import annotations

import threading
import time
from functools import lru_cache
from pathlib import Path
from collections.abc import Callable

import numpy as np

from ephys.errors import (ChangedDuringReadError, EphysError, NoEEGError, NoSignalError, NoUsableChannelsError,
                          OutputError, RejectedError, TooShortError)
from ephys.annotate.attach import label_annotations
from ephys.annotate.staging.stage import recording_channels, stage_epochs
from ephys.annotate.taxonomy import taxonomy_matcher
from ephys.ingest.hashing import check_unchanged
from ephys.ingest.identity import (age_years, author_pseudonym, normalise_sex, pseudonym, scrub_split, scrub_text,
                                   shifted_start)
from ephys.ingest.names import NameDetector
from ephys.ingest.montage import get_montage
from ephys.ingest.readers import open_recording
from ephys.qc.features import ChannelFeatures
from ephys.pipeline.blocks import plan_blocks, segment_samples
from ephys.pipeline.failpoints import recording_failpoint
from ephys.pipeline.parts import DaskParts, PartMap, Source, condition_part, inline_parts, qc_part
from ephys.pipeline.spool import SpoolArray, spool_array
from ephys.qc.record import assess
from ephys.schemas import Annotation, ChannelInfo, EpochRecord, Failure, IngestConfig, RecordingResult, RecordingStatus

#: EEG channels sampled slower than this (Hz) are not used: below it the 0.5 Hz high-pass and the
#: anti-alias low-pass (0.4 x sfreq) leave almost no band; in practice only damaged headers give such rates.
MIN_EEG_SFREQ = 32.0


def select_channels(channels: list[ChannelInfo], config: IngestConfig, path: str) -> tuple[list[ChannelInfo], list[str], list[bool]]:
    """EEG channels to read, output channel names and mask, for the configured montage.

    Raises
    ------
    NoEEGError, InsufficientCoverageError
    """
    eeg = [c for c in channels if c.kind == "eeg" and c.to_uv is not None]
    if not eeg:
        raise NoEEGError("no EEG channels (no voltage channel with an EEG label or 10-20 name)", path)
    slow = [c for c in eeg if c.sfreq < MIN_EEG_SFREQ]
    eeg = [c for c in eeg if c.sfreq >= MIN_EEG_SFREQ]
    if not eeg:
        raise NoEEGError(f"EEG channels sampled at {min(c.sfreq for c in slow):.3g} Hz; ephys needs at least "
                         f"{MIN_EEG_SFREQ:g} Hz", path)
    return get_montage(config.montage).pick(eeg, config.min_regions, path)


def _usable_mask(picked, bad, config, path):
    """The output mask once bad channels are left out (the montage's :meth:`~Montage.layout`); rejects
    when too little is usable.

    Raises
    ------
    NoUsableChannelsError, InsufficientCoverageError
    """
    if len(bad) == len(picked):
        kinds = sorted(set(bad.values()))
        raise NoUsableChannelsError(f"no usable EEG channel: all {len(picked)} are bad ({', '.join(kinds)})", path)
    return get_montage(config.montage).layout(picked, bad, config.min_regions, path)


def bounded(fn: Callable, args: tuple, timeout_s: float | None, name: str):
    """``(True, fn(*args))``, or ``(False, None)`` when it has not returned in ``timeout_s`` seconds.

    Without a timeout ``fn`` runs inline. With one it runs in a daemon thread; a thread still
    stuck (an NFS read that never returns) is ended when the driver restarts the worker.
    An exception of ``fn`` is raised here.
    """
    if not timeout_s:
        return True, fn(*args)
    box: dict = {}

    def target() -> None:
        try:
            box["result"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the task thread below
            box["error"] = exc

    worker = threading.Thread(target=target, name=name, daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        return False, None
    if "error" in box:
        raise box["error"]
    return True, box["result"]


def run_recording(
    path: str, fmt: str, sha256: str, file_bytes: int, config: IngestConfig, spool_dir: str, secret: bytes,
    buffer_bytes: int = 8 * 1024 * 1024, files: list[str] | None = None, fingerprints: list | None = None,
) -> RecordingResult:
    """The Dask task: :func:`process_recording` under ``config.task_timeout_s`` (:func:`bounded`), its
    blocks shared with block tasks on every worker (:class:`DaskParts`).

    If it has not finished in time the task returns a ``failed`` result with code ``timeout``
    (the driver then restarts the worker, which ends the stuck thread).
    """
    args = (path, fmt, sha256, file_bytes, config, spool_dir, secret, buffer_bytes, DaskParts(spool_dir),
            files, fingerprints)
    done, result = bounded(process_recording, args, config.task_timeout_s, f"ephys-recording-{sha256[:12]}")
    if not done:
        return RecordingResult(sha256=sha256, format=fmt, file_bytes=file_bytes, status=RecordingStatus.failed,
                               failure=Failure(stage="ingest", code="timeout",
                                               reason=f"processing took longer than --task-timeout {config.task_timeout_s:g} s"))
    return result


def process_recording(
    path: str, fmt: str, sha256: str, file_bytes: int, config: IngestConfig, spool_dir: str, secret: bytes,
    buffer_bytes: int = 8 * 1024 * 1024, map_parts: PartMap | None = None, files: list[str] | None = None,
    fingerprints: list | None = None,
) -> RecordingResult:
    """Run the per-recording chain; never raises for bad input (see module docstring).

    ``files`` and ``fingerprints`` (from :func:`ephys.ingest.hashing.hash_recording`): the
    recording's member files are checked unchanged since hashing before the first read and
    after the last (:func:`ephys.ingest.hashing.check_unchanged`); a changed one fails with
    ``changed_during_read``, so a stored hash is always that of the content read.

    ``map_parts`` runs the block passes (:data:`PartMap`); default: here, in order. The result's
    ``seconds`` are worker seconds per step (``open``, ``read``, ``qc``, ``condition``, ``sleep``,
    ``stage``), block tasks included.
    """
    map_parts = map_parts or inline_parts
    work = dict.fromkeys(("open", "read", "qc", "condition", "sleep", "stage"), 0.0)
    t0 = time.perf_counter()
    base = dict(sha256=sha256, format=fmt, file_bytes=file_bytes)
    annotations: list[Annotation] = []
    n_scrubbed = 0
    info: dict = {}
    reader = None
    try:
        if file_bytes == 0:
            from ephys.errors import EmptyFileError

            raise EmptyFileError("file is empty (0 bytes)", path)
        recording_failpoint(sha256, spool_dir)
        if fingerprints is not None:
            check_unchanged(files or [path], fingerprints, path)
        reader = open_recording(path, fmt, buffer_bytes=buffer_bytes)
        h, patient = reader.header, reader.patient
        subject = pseudonym(secret, patient.patient_id, sha256, names=patient.names, birthdate=patient.birthdate)
        info = dict(
            format=h.format,
            subject=subject,
            age_years=age_years(patient.birthdate, patient.start),
            sex=normalise_sex(patient.sex),
            start_time=shifted_start(secret, subject, patient.start) if config.date_shift else None,
            duration_s=h.duration_s,
            n_channels=len(h.signal_channels),
            n_eeg_channels=sum(c.kind == "eeg" for c in h.channels),
            sfreq=max((c.sfreq for c in h.channels if c.kind == "eeg"), default=None),
            channels=[dict(name=c.name, kind=c.kind, sfreq=c.sfreq, unit=c.unit) for c in h.signal_channels],
            montage=config.montage,
        )
        if not h.signal_channels:
            annotations, n_scrubbed = _scrubbed(reader.annotations(), reader.patient, secret, config.taxonomy)
            raise NoSignalError("no signal channels (annotations only, e.g. a hypnogram file)", path)
        try:
            picked, names, mask = select_channels(h.channels, config, path)
        except RejectedError:
            annotations, n_scrubbed = _scrubbed(reader.annotations(), reader.patient, secret, config.taxonomy)
            raise
        work["open"] += time.perf_counter() - t0
        source = Source(path, fmt, buffer_bytes, sha256)
        # Pass 1, block by block: QC figures of every picked channel. The sleep-staging channels
        # (one EEG, EOG, EMG, a mastoid) are read whole: the stagers see the night at once.
        staging, staging_note = recording_channels(h, config.stager)
        segs = segment_samples(h, picked)
        blocks = plan_blocks(h, picked, config)
        parts_f = []
        for f, sec in map_parts(qc_part, [(source, picked, segs, b, config) for b in blocks], reader):
            if f is not None:
                parts_f.append(f)
            _add(work, sec)
        t0 = time.perf_counter()
        staging_data = dict(zip(staging.indices, reader.read_channels(staging.indices))) if staging else {}
        annotations, n_scrubbed = _scrubbed(reader.annotations(), reader.patient, secret, config.taxonomy)
        work["read"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        if not parts_f:
            raise TooShortError(f"too short: 0 valid 30-s epochs (0 in all, {h.duration_s:.1f} s), "
                                f"--min-epochs is {config.min_epochs}", path)
        qc = assess(ChannelFeatures.concat(parts_f), config)
        bad, good, valid = qc.bad, qc.good, qc.valid
        mask = _usable_mask(picked, bad, config, path)
        if int(valid.sum()) < config.min_epochs:
            raise TooShortError(
                f"too short: {int(valid.sum())} valid 30-s epochs ({len(valid)} in all, {h.duration_s:.1f} s), "
                f"--min-epochs is {config.min_epochs}",
                path,
            )
        work["qc"] += time.perf_counter() - t0
        # Pass 2, block by block: condition the good channels and write the epochs at their rows of the spool file.
        starts = [h.segments[b.seg].start_s + k * config.epoch_s for b in blocks for k in range(b.e0, b.e1)]
        first_rows = np.cumsum([0] + [b.e1 - b.e0 for b in blocks])
        spooled = Path(spool_dir) / f"{sha256}.npy"
        n_rows = get_montage(config.montage).n_rows(len(picked))
        with SpoolArray(spooled, (len(starts), n_rows, config.n_samples)) as out:
            target = out.reserve()
            calls = [(source, picked, good, segs, b, int(first_rows[k]), target, config) for k, b in enumerate(blocks)]
            parts_max = []
            for m, sec in map_parts(condition_part, calls, reader):
                parts_max.append(m)
                _add(work, sec)
            t0 = time.perf_counter()
            max_abs = np.concatenate(parts_max) if parts_max else np.zeros(0, np.float32)
            qcs = qc.epoch_records(max_abs)
            t1 = time.perf_counter()
            sleep, stager_name, staging_channels = stage_epochs(config.stager, h, starts, config.epoch_s, staging,
                                                                staging_note, staging_data)
            del staging_data
            t2 = time.perf_counter()
            out.commit()
            work["condition"] += t1 - t0
            work["sleep"] += t2 - t1
        t0 = time.perf_counter()
        qc_spooled = Path(spool_dir) / f"{sha256}.qc.npy"
        spool_array(qc_spooled, qc.figures())
        work["stage"] += time.perf_counter() - t0
        if fingerprints is not None:
            try:
                check_unchanged(files or [path], fingerprints, path)
            except ChangedDuringReadError:
                spooled.unlink(missing_ok=True)
                qc_spooled.unlink(missing_ok=True)
                raise
        return RecordingResult(
            **{**base, **info}, status=RecordingStatus.ok, channel_names=names, mask=mask,
            qc_channels=[c.name for c in picked], bad_channels={picked[i].name: r for i, r in sorted(bad.items())},
            qc_path=str(qc_spooled),
            epochs=[EpochRecord(index=i, start_s=s, qc=q, sleep=z) for i, (s, q, z) in enumerate(zip(starts, qcs, sleep))],
            stager=stager_name, staging_channels=staging_channels,
            annotations=annotations, n_scrubbed=n_scrubbed, spool_path=str(spooled), seconds=_rounded(work),
        )
    except OutputError:
        raise  # the output storage failed, not this recording: the driver stops the run
    except EphysError as exc:
        status = RecordingStatus.rejected if isinstance(exc, RejectedError) else RecordingStatus.failed
        return RecordingResult(**{**base, **info}, status=status, failure=Failure.from_exception(exc),
                               annotations=annotations, n_scrubbed=n_scrubbed, seconds=_rounded(work))
    except OSError as exc:
        return RecordingResult(**base, status=RecordingStatus.failed,
                               failure=Failure(stage="read", code="io_error", reason=f"I/O error: {exc.strerror or exc}"))
    except MemoryError:
        return RecordingResult(**base, status=RecordingStatus.failed,
                               failure=Failure(stage="read", code="out_of_memory", reason="ran out of memory"))
    except Exception as exc:  # noqa: BLE001 - a bug must not stop the run; the reason is recorded
        return RecordingResult(**base, status=RecordingStatus.failed, failure=Failure.from_exception(exc, stage="ingest"),
                               seconds=_rounded(work))
    finally:
        if reader is not None:
            reader.close()


def _scrubbed(annotations: list[Annotation], patient, secret: bytes, taxonomy: str | None = None) -> tuple[list[Annotation], int]:
    """Remove patient, technician and author names, identifiers and dates from annotation text,
    also where a name or code is split across two neighbouring annotations, then the names no
    header gives (relatives, staff: :class:`~ephys.ingest.names.NameDetector`); authors become
    pseudonyms. ``patient`` is the reader's :class:`PatientInfo`."""
    authors = sorted({a.author for a in annotations if a.author})
    names = patient.names + authors
    ids = [patient.patient_id, *patient.ids]
    order = sorted(range(len(annotations)), key=lambda i: annotations[i].onset_s)
    joined, total = scrub_split([annotations[i].text for i in order], names, ids)
    texts = dict(zip(order, joined))
    detector = name_detector(taxonomy) if any(a.text.strip() for a in annotations) else None
    out = []
    for i, a in enumerate(annotations):
        text, n = scrub_text(texts[i], names, ids)
        text, k = detector.scrub(text) if detector else (text, 0)
        total += n + k
        update = {"text": text} if text != a.text else {}
        if a.author:
            update["author"] = author_pseudonym(secret, a.author)
        out.append(a.model_copy(update=update) if update else a)
    return label_annotations(out, taxonomy), total


def name_detector(taxonomy: str | None = None) -> NameDetector:
    """The name detector of this process, with every keyword and label of the annotation taxonomy that labels
    the annotations protected: the packaged one, or the site's file ``taxonomy`` (``ingest --taxonomy``), so a
    site keyword that holds a name (``Janz Syndrom``) is not scrubbed before it can match. One per taxonomy file
    version, as :func:`~ephys.annotate.taxonomy.taxonomy_matcher` keeps the file's matcher; the first call reads
    the cached name table (:func:`build_table`).

    Raises what :func:`~ephys.annotate.taxonomy.load_taxonomy` raises."""
    return _name_detector(taxonomy_matcher(taxonomy))


@lru_cache(maxsize=4)
def _name_detector(matcher) -> NameDetector:
    return NameDetector(protected=[w for s in matcher.taxonomy.subcategories for w in (*s.keywords, s.label)])


def _add(work: dict[str, float], sec: dict[str, float]) -> None:
    for k, v in sec.items():
        work[k] = work.get(k, 0.0) + v


def _rounded(work: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in work.items()}
