"""``ephys export bids``: a manifest's recordings as a BIDS EEG dataset, de-identified as ephys de-identifies.

For every recording that has epochs in the manifest, the archive's file is found by its keyed path hash
(:func:`ephys.catalog.locate.locate_recordings`), checked against the recording's SHA-256, read with ephys's own
buffered reader (:func:`ephys.ingest.readers.open_recording`: the original signals at their native rate, µV),
and written with mne-bids (``write_raw_bids``, EDF via MNE's exporter and edfio, physical range per channel) as

``sub-<subject>/eeg/sub-<subject>_task-<task>_run-<k>_eeg.edf`` (``_eeg.json``, ``_channels.tsv``, ``_events.tsv``)

where ``<subject>`` is ephys's pseudonym without its ``sub-`` (16 hex digits) and ``k`` numbers the subject's
recordings by (shifted) start time. What identifies the patient stays out, exactly as in the shards and the
catalog: the EDF patient and recording fields are EDF+'s anonymous ``X`` and its start date EDF+'s anonymous
01.01.85; the acquisition time in ``scans.tsv`` is the catalog's start time, which is shifted per subject with
``ingest --date-shift`` and absent otherwise; no file or folder name of the archive is written. The catalog
supplies everything else:

- ``events.tsv``: the recording's annotations as the catalog holds them (text scrubbed of names, IDs and dates
  at ingest, sidecar seizure lists included), ``onset``/``duration`` in s, ``trial_type`` the text, ``category``,
  ``subcategory``, ``negated`` and ``source`` from the taxonomy labelling, and a ``HED`` column from the
  taxonomy's HED-SCORE references (:mod:`ephys.annotate.hed`; the packaged taxonomy or the site's file the
  catalog was labelled with, ``taxonomy=``; negated annotations get none); each epoch's
  sleep stage from ephys's stager, where staged, as ``sleep stage N2`` rows (``source`` ``ephys-stager``).
  Every HED string is validated with hedtools; ``dataset_description.json`` names the schemas
  (``HEDVersion``: :data:`ephys.annotate.hed.HED_VERSION`).
- ``channels.tsv``: ``status`` ``bad`` with ephys's QC reason (``flat``, ``noisy``, ...) in
  ``status_description`` (mne-bids ``mark_channels``).
- ``participants.tsv``: ``participant_id``, ``age`` (completed years at the subject's first exported recording,
  capped at 90 as at ingest) and ``sex``, nothing else.
- ``dataset_description.json`` cites ephys (``GeneratedBy``, ``HowToAcknowledge``); ``README`` says what was
  exported and from which manifest (its content hash).

Layouts BIDS (through MNE) cannot express raise :class:`BIDSLayoutError` naming the recording by SHA-256 prefix:
EEG channels at different sampling rates in one recording, or a discontinuous recording (EDF+D with gaps).
Channels of other kinds at another rate than the EEG (a 1-Hz SpO2 trace) are left out and counted.

The dataset is written to a temporary folder beside ``out`` and renamed into place when complete, so ``out``
either holds the whole dataset or does not exist. Each recording is held in memory while it is written (float64,
as MNE holds it: 8 bytes x channels x samples).

Sources: BIDS specification 1.10 (EEG, events, participants, scans, dataset_description); mne-bids 0.20
(Appelhoff et al. 2019, JOSS 4:1896); HED specification 3.2.
"""

from __future__ import annotations

import csv
import itertools
import json
import warnings
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import select

import ephys
from ephys.annotate.hed import HED_VERSION, STAGE_TAGS, hed_issues, hed_tags, stage_tag
from ephys.annotate.taxonomy import load_taxonomy
from ephys.catalog import models as m
from ephys.catalog.db import IN_CHUNK, Catalog
from ephys.catalog.locate import locate_recordings
from ephys.errors import BIDSLayoutError, MissingRecordingError, RunError
from ephys.export.folder import new_folder, refuse_existing
from ephys.ingest.hashing import hash_recording
from ephys.ingest.readers import open_recording
from ephys.progress import Progress
from ephys.schemas.manifest import Manifest
from ephys.shard.index import manifest_samples

#: ephys channel kinds -> BIDS/MNE channel types (``resp`` is MNE's ``resp``, BIDS ``RESP``).
CHANNEL_TYPES = {"eeg": "eeg", "eog": "eog", "ecg": "ecg", "emg": "emg", "resp": "resp", "stim": "stim", "misc": "misc"}
#: The column descriptions of ``task-<task>_events.json``.
EVENT_COLUMNS = {
    "trial_type": "Annotation text as the catalog holds it (scrubbed of names, IDs and dates by ephys).",
    "category": "ephys taxonomy category of the annotation's primary label (n/a: no label).",
    "subcategory": "ephys taxonomy subcategory of the primary label.",
    "negated": "True where the text negates the label ('kein Anfall').",
    "source": "Where the annotation came from: the recording file's format, a seizure-list sidecar "
              "('sidecar:<format>'), or 'ephys-stager' for ephys's automatic sleep staging of each 30-s epoch.",
}
CITATION = ("Exported by ephys, the open pipeline from a hospital EEG archive to a curated corpus: please cite "
            "ephys (its version is in GeneratedBy) and the source archive's own publication.")


def _mne_bids():
    try:
        import mne
        import mne_bids
    except ImportError:
        raise RunError("BIDS export needs mne-bids and hedtools: pip install 'ephys[bids]'") from None
    return mne, mne_bids


def manifest_recordings(manifest: Manifest, manifest_path: Path) -> dict[str, str]:
    """``{recording sha256: subject}`` of the manifest's epochs (read from the shards' JSON members).

    Raises ManifestError for a missing, moved, remote or foreign shard (:func:`manifest_samples`).
    """
    out: dict[str, str] = {}
    for meta, _ in manifest_samples(manifest, manifest_path, "export bids", eeg=False):
        out.setdefault(str(meta["recording"]), str(meta["subject"]))
    return out


def _catalog_rows(catalog: Catalog, shas: list[str]) -> tuple[dict, dict, dict, dict]:
    """Recording rows, annotations, epoch stages and run line frequencies of ``shas``, by SHA-256."""
    recs, anns, stages, line = {}, defaultdict(list), defaultdict(list), {}
    with catalog.snapshot() as s:
        for i in range(0, len(shas), IN_CHUNK):
            rows = s.execute(select(m.Recording).where(m.Recording.sha256.in_(shas[i : i + IN_CHUNK]))).scalars().all()
            by_id = {r.id: r for r in rows}
            recs.update({r.sha256: r for r in rows})
            for a in s.execute(select(m.Annotation).where(m.Annotation.recording_id.in_(list(by_id)))
                               .order_by(m.Annotation.recording_id, m.Annotation.onset_s, m.Annotation.id)).scalars():
                anns[by_id[a.recording_id].sha256].append(a)
            for rid, start, stage in s.execute(select(m.Epoch.recording_id, m.Epoch.start_s, m.Epoch.stage)
                                               .where(m.Epoch.recording_id.in_(list(by_id)), m.Epoch.stage.is_not(None))
                                               .order_by(m.Epoch.recording_id, m.Epoch.start_s)):
                stages[by_id[rid].sha256].append((float(start), stage))
        run_ids = {r.run_id for r in recs.values() if r.run_id is not None}
        for rid, cfg in s.execute(select(m.Run.id, m.Run.config_json).where(m.Run.id.in_(list(run_ids)))):
            line[rid] = json.loads(cfg or "{}").get("line_freq")
    return recs, anns, stages, line


def _tsv_text(text: str) -> str:
    return " ".join(str(text).split()) or "n/a"


def _na(v) -> str:
    return "n/a" if v is None or v == "" else str(v)


def _event_rows(anns, stages, epoch_s: float, tags: dict[str, str], duration: float) -> list[dict]:
    rows = []
    for a in anns:
        path = f"{a.category}/{a.subcategory}" if a.category else None
        hed = None
        if path and not a.negated:
            hed = stage_tag(a.text) if path == "state/sleep_stage" else tags.get(path)
        onset = min(max(float(a.onset_s), 0.0), duration)
        rows.append(dict(onset=onset, duration=max(0.0, min(float(a.duration_s or 0.0), duration - onset)),
                         trial_type=_tsv_text(a.text), category=a.category, subcategory=a.subcategory,
                         negated=None if a.negated is None else str(bool(a.negated)), source=a.source, HED=hed))
    for start, stage in stages:
        if start >= duration:
            continue
        rows.append(dict(onset=start, duration=min(epoch_s, duration - start), trial_type=f"sleep stage {stage}",
                         category="state", subcategory="sleep_stage", negated=None, source="ephys-stager",
                         HED=STAGE_TAGS.get(stage)))
    rows.sort(key=lambda r: (r["onset"], r["source"] == "ephys-stager"))
    return rows


def _write_tsv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow([f"{r[c]:.6f}".rstrip("0").rstrip(".") if isinstance(r[c], float) else _na(r[c]) for c in columns])


def _raw_of(mne, reader, sha: str):
    """``(RawArray in V, names, left_out)`` of the recording open in ``reader``; raises BIDSLayoutError."""
    header = reader.header
    chans = [c for c in header.channels if c.kind != "annotation"]
    eeg_rates = sorted({c.sfreq for c in chans if c.kind == "eeg"})
    if not eeg_rates:
        raise BIDSLayoutError(f"recording {sha[:12]} has no EEG channel")
    if len(eeg_rates) > 1:
        raise BIDSLayoutError(f"recording {sha[:12]}: EEG channels at {len(eeg_rates)} sampling rates "
                              f"({', '.join(f'{r:g}' for r in eeg_rates)} Hz); BIDS data through MNE hold one rate")
    segs = sorted(header.segments, key=lambda g: g.start_s)
    gaps = sum(1 for a, b in itertools.pairwise(segs) if b.start_s - (a.start_s + a.duration_s) > 1e-3)
    if gaps:
        raise BIDSLayoutError(f"recording {sha[:12]} is discontinuous ({len(segs)} segments, {gaps} gaps): BIDS EEG "
                              "data written through MNE are continuous")
    sfreq = eeg_rates[0]
    keep = [c for c in chans if c.sfreq == sfreq and c.to_uv is not None]
    left_out = len(chans) - len(keep)
    data = reader.read_channels([c.index for c in keep])
    n = min(len(x) for x in data)
    names, seen = [], defaultdict(int)
    for c in keep:
        base = c.name or c.label or f"ch{c.index}"
        seen[base] += 1
        names.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    info = mne.create_info(names, sfreq, [CHANNEL_TYPES.get(c.kind, "misc") for c in keep], verbose=False)
    x = np.empty((len(keep), n), dtype=np.float64)
    for i, ch in enumerate(data):
        x[i] = ch[:n]
    x *= 1e-6  # µV -> V
    raw = mne.io.RawArray(x, info, verbose=False)
    raw.set_meas_date(None)
    return raw, dict(zip([c.name for c in keep], names)), left_out


def export_bids(manifest_path: str | Path, archive: str | Path, out: str | Path, *, catalog: str,
                task: str = "clinical", secret: bytes | None = None, progress: bool = False,
                taxonomy: str | Path | None = None) -> dict:
    """Write the manifest's recordings as a BIDS EEG dataset under ``out`` (module docstring).

    Parameters
    ----------
    manifest_path : path
        The manifest (``ephys manifest create``).
    archive : path
        The archive folder the recordings were ingested from (the same root).
    out : path
        The BIDS root to create (must not exist).
    catalog : str
        The catalog URL of the ingest (recordings, annotations, QC, stages, demographics).
    task : str
        The BIDS ``task-`` label (letters and digits).
    secret : bytes
        The site secret (default :func:`ephys.ingest.identity.load_site_secret`), for the path hashes only.
    progress : bool
        Show the recordings written (:class:`ephys.progress.Progress`).
    taxonomy : path, optional
        The taxonomy YAML the catalog was labelled with (``ephys ingest --taxonomy``, ``ephys catalog relabel
        --taxonomy``); its subcategories' HED-SCORE references give the events' HED. Default: the packaged one.

    Returns
    -------
    dict
        ``out``, ``subjects``, ``recordings``, ``events``, ``hed_tagged`` (events with a HED string),
        ``bad_channels``, ``channels_left_out``.

    Raises
    ------
    ManifestError
        The manifest does not load; a shard is missing, moved, remote or not the one the manifest names.
    MissingRecordingError
        A recording of the manifest is not in the catalog or the archive, or its file changed since ingest.
    BIDSLayoutError
        A recording BIDS cannot express (module docstring).
    OutputError
        ``out`` exists already, or cannot be written (nothing is left half-written).
    RunError
        mne-bids or hedtools is not installed; the archive, the catalog or the taxonomy file cannot be opened.
    TaxonomyError
        The taxonomy file does not validate.
    """
    mne, mne_bids = _mne_bids()
    manifest_path, out = Path(manifest_path), Path(out)
    if not task.isalnum():
        raise RunError(f"task label {task!r} must be letters and digits only (BIDS)")
    refuse_existing(out)
    try:
        tags = hed_tags(load_taxonomy(taxonomy))
    except OSError as exc:
        raise RunError(f"taxonomy {taxonomy}: {exc.strerror or exc}") from None
    manifest = Manifest.load(manifest_path)
    subjects = manifest_recordings(manifest, manifest_path)
    shas = sorted(subjects)
    cat = Catalog(catalog, readonly=True)
    try:
        recs, anns, stages, line = _catalog_rows(cat, shas)
        missing = [s for s in shas if s not in recs]
        if missing:
            raise MissingRecordingError(f"{len(missing)} recordings of the manifest are not in the catalog "
                                        f"(first {missing[0][:12]}): give the catalog of the ingest", str(manifest_path))
        found = locate_recordings(cat, archive, shas, secret=secret)
    finally:
        cat.close()
    missing = [s for s in shas if s not in found]
    if missing:
        raise MissingRecordingError(f"{len(missing)} recordings of the manifest are no longer in the archive "
                                    f"(SHA-256 {', '.join(s[:12] for s in missing[:5])}"
                                    f"{', ...' if len(missing) > 5 else ''}): nothing was written", str(manifest_path))
    epoch_s = manifest.n_samples / manifest.sfreq
    # runs per subject by (shifted) start, then SHA-256
    order = sorted(shas, key=lambda s: (subjects[s], recs[s].start_time or datetime.max, s))
    run_of, per_subject = {}, defaultdict(int)
    for s in order:
        per_subject[subjects[s]] += 1
        run_of[s] = per_subject[subjects[s]]
    counts = dict(events=0, hed_tagged=0, bad_channels=0, channels_left_out=0)
    scans: dict[str, list[tuple[str, str]]] = defaultdict(list)
    shown = Progress("export", len(order), "recordings", enabled=progress)
    with new_folder(out, "the BIDS dataset") as tmp:
        for sha in order:
            shown.advance()
            rec, label = recs[sha], subjects[sha].removeprefix("sub-")
            disc = found[sha][0]
            got, _ = hash_recording(disc.file_strs)
            if got != sha:
                raise MissingRecordingError(f"recording {sha[:12]} changed in the archive since it was ingested "
                                            "(its SHA-256 differs): ingest again, then export", str(manifest_path))
            with open_recording(disc.primary, disc.format) as reader:
                raw, names, left_out = _raw_of(mne, reader, sha)
            raw.info["line_freq"] = line.get(rec.run_id)
            counts["channels_left_out"] += left_out
            bp = mne_bids.BIDSPath(subject=label, task=task, run=run_of[sha], datatype="eeg", root=tmp)
            # "No events found" (ephys writes events.tsv itself) and the "rest" task-name advice, kept off the console
            with warnings.catch_warnings(), mne.utils.use_log_level("error"):
                warnings.simplefilter("ignore", RuntimeWarning)
                mne_bids.write_raw_bids(raw, bp, format="EDF", allow_preload=True, physical_range="channelwise",
                                        overwrite=False, readme=False, verbose=False)
            bads = {names[k]: v for k, v in json.loads(rec.bad_channels_json or "{}").items() if k in names}
            if bads:
                mne_bids.mark_channels(bp, ch_names=list(bads), status="bad", descriptions=list(bads.values()),
                                       verbose=False)
                counts["bad_channels"] += len(bads)
            duration = raw.n_times / raw.info["sfreq"]
            rows = _event_rows(anns.get(sha, []), stages.get(sha, []), epoch_s, tags, duration)
            ev = bp.copy().update(suffix="events", extension=".tsv")
            _write_tsv(ev.fpath, rows, ["onset", "duration", "trial_type", "category", "subcategory", "negated",
                                        "source", "HED"])
            counts["events"] += len(rows)
            counts["hed_tagged"] += sum(1 for r in rows if r["HED"])
            acq = rec.start_time.strftime("%Y-%m-%dT%H:%M:%S") if rec.start_time else "n/a"
            scans[label].append((f"eeg/{bp.copy().update(suffix='eeg', extension='.edf').fpath.name}", acq))
            raw.close()
        shown.close()
        firsts = {subjects[s].removeprefix("sub-"): recs[s] for s in order if run_of[s] == 1}
        _finish(mne_bids, tmp, task, manifest, firsts, len(order), scans)
    return dict(out=str(out), subjects=len(per_subject), recordings=len(order), **counts)


def _finish(mne_bids, root: Path, task: str, manifest: Manifest, firsts: dict, n_recordings: int,
            scans: dict) -> None:
    """Dataset-level files: description, participants (age, sex only, from each subject's run 1 = ``firsts``),
    scans' times, events.json, README."""
    # hed_tags validated the taxonomy's tags; the stage tags are constants, checked here against the schema
    bad = {t: i for t in STAGE_TAGS.values() if (i := hed_issues(t))}
    if bad:
        raise RunError(f"HED strings fail validation: {bad}")
    mne_bids.make_dataset_description(
        path=root, name="ephys export", hed_version=list(HED_VERSION), dataset_type="raw",
        how_to_acknowledge=CITATION, generated_by=[{"Name": "ephys", "Version": ephys.__version__,
                                                    "Description": f"ephys export bids of manifest {manifest.content_hash}"}],
        overwrite=True, verbose=False)
    rows = [dict(participant_id=f"sub-{lab}", age=r.age_years, sex=r.sex) for lab, r in sorted(firsts.items())]
    _write_tsv(root / "participants.tsv", rows, ["participant_id", "age", "sex"])
    (root / "participants.json").write_text(json.dumps({
        "age": {"Description": "completed years at the subject's first exported recording (capped at 90)",
                "Units": "year"},
        "sex": {"Description": "sex as the recording header gives it", "Levels": {"F": "female", "M": "male"}},
    }, indent=2) + "\n")
    for label, items in scans.items():
        path = root / f"sub-{label}" / f"sub-{label}_scans.tsv"
        _write_tsv(path, [dict(filename=f, acq_time=t) for f, t in sorted(items)], ["filename", "acq_time"])
    (root / f"task-{task}_events.json").write_text(json.dumps(
        {k: {"Description": v} for k, v in EVENT_COLUMNS.items()}, indent=2) + "\n")
    (root / "README").write_text(
        "ephys export\n============\n\n"
        f"{n_recordings} recordings of {len(firsts)} pseudonymous subjects: the recordings with epochs in ephys manifest "
        f"{manifest.content_hash[:16]} (query: {'; '.join(manifest.query) or 'all'}), as read from the archive (native "
        "channels and sampling rate), de-identified by ephys: subject labels are keyed pseudonyms, dates are shifted "
        "per subject or absent, annotation text is scrubbed of names, IDs and dates, and no file or folder name of the "
        "archive is kept. Events carry ephys taxonomy labels and HED (HED 8.4.0 with the SCORE 2.1.0 library).\n\n"
        f"{CITATION}\n")


def check_bids_tree(root: str | Path) -> list[str]:
    """Problems of an exported tree that are ephys's own promises (not the BIDS validator's): HED strings
    of every events.tsv valid under :data:`HED_VERSION`. Returns the messages (empty when none)."""
    problems = []
    for ev in sorted(Path(root).rglob("*_events.tsv")):
        with open(ev, encoding="utf-8") as f:
            for i, row in enumerate(csv.DictReader(f, delimiter="\t"), 2):
                h = row.get("HED", "n/a")
                if h != "n/a":
                    problems += [f"{ev.name}:{i}: {msg}" for msg in hed_issues(h)]
    return problems
