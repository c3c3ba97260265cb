"""``ephys export edf``: a manifest's epochs as EDF+C files, for EDFbrowser and every EEG tool that reads EDF.

For each recording of the manifest (pseudonymous subject and recording SHA-256), its selected epochs are put
back in time order; every run of consecutive epochs (each starting where the previous one ended) becomes one
EDF+C file, ``sub-<subject>_rec-<sha256[:12]>_run-<k>.edf``, written with edfio (Bakker & others, MIT). What is
written is what the shards hold: the conditioned signal (band-pass, notch, 250 Hz, the manifest's montage) in
µV, de-identified as ephys de-identifies (the EDF patient and recording fields are EDF+'s anonymous ``X``, the
start date is EDF+'s anonymous 01.01.85, the start time 00:00:00; no name, birth date or file name), bad
channels zero as in the shards. Each channel's physical range is its own minimum and maximum over the file
(widened by 1 µV when it is flat), so nothing clips and 16-bit codes resolve range / 65,535 µV.

Annotations: every annotation of the selected epochs (scrubbed text, as in the shards), once, at its time
from the file's start, with its taxonomy label appended (``"Anfall [seizure/seizure]"``, ``(negated)`` where the
matcher found a negation); each epoch's sleep stage, where staged, as ``"Sleep stage N2"`` over the epoch.

The export is written to a temporary folder beside ``out`` and renamed into place when complete, so ``out``
either holds the whole export or does not exist.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ephys.export.folder import new_folder, refuse_existing
from ephys.progress import Progress
from ephys.schemas.manifest import Manifest
from ephys.shard.index import manifest_samples

EDF_LABEL_CHARS = 16


def _label(a: dict) -> str:
    text = a.get("text") or ""
    if a.get("category"):
        text += f" [{a['category']}/{a.get('subcategory') or '-'}]"
    if a.get("negated"):
        text += " (negated)"
    return text.strip()


def _edf_label(name: str) -> str:
    return name[:EDF_LABEL_CHARS]


def export_edf(manifest_path: str | Path, out: str | Path, *, progress: bool = False) -> dict:
    """Write the manifest's epochs as EDF+C files under ``out`` (module docstring); ``progress`` shows the
    recordings written (:class:`ephys.progress.Progress`: a bar on a terminal, counted lines otherwise).

    Returns
    -------
    dict
        ``out``, ``files`` (names), ``recordings``, ``epochs``, ``annotations`` (written).

    Raises
    ------
    ManifestError
        The manifest does not load; a shard is missing, moved, remote or not the one the manifest names.
    OutputError
        ``out`` exists already, or cannot be written (nothing is left half-written).
    """
    import edfio

    manifest_path, out = Path(manifest_path), Path(out)
    manifest = Manifest.load(manifest_path)
    refuse_existing(out)
    epoch_s = manifest.n_samples / manifest.sfreq
    groups: dict[tuple[str, str], list[tuple[dict, np.ndarray]]] = defaultdict(list)
    for meta, eeg in manifest_samples(manifest, manifest_path, "export"):
        groups[(str(meta["subject"]), str(meta["recording"]))].append((meta, eeg))
    files, n_ann = [], 0
    shown = Progress("export", len(groups), "recordings", enabled=progress)
    with new_folder(out, "the export") as tmp:
        for (subject, recording), items in sorted(groups.items()):
            shown.advance()
            items.sort(key=lambda it: it[0]["start_s"])
            runs: list[list[tuple[dict, np.ndarray]]] = []
            for it in items:
                if runs and abs(it[0]["start_s"] - (runs[-1][-1][0]["start_s"] + epoch_s)) < 1e-6:
                    runs[-1].append(it)
                else:
                    runs.append([it])
            for k, run in enumerate(runs, 1):
                name = f"sub-{subject}_rec-{recording[:12]}_run-{k}.edf"
                n_ann += _write_run(edfio, tmp / name, run, manifest, epoch_s)
                files.append(name)
        shown.close()
    return dict(out=str(out), files=files, recordings=len(groups), epochs=sum(len(v) for v in groups.values()),
                annotations=n_ann)


def _write_run(edfio, path: Path, run: list[tuple[dict, np.ndarray]], manifest: Manifest, epoch_s: float) -> int:
    t0 = run[0][0]["start_s"]
    data = np.concatenate([eeg.astype(np.float64) for _, eeg in run], axis=1)  # (C, n_epochs * T), µV
    signals = []
    for name, x in zip(manifest.channel_names, data):
        lo, hi = float(x.min()), float(x.max())
        if hi - lo < 1e-6:
            lo, hi = lo - 1.0, hi + 1.0
        signals.append(edfio.EdfSignal(x, manifest.sfreq, label=_edf_label(name), physical_dimension="uV",
                                       physical_range=(lo, hi)))
    seen, anns = set(), []
    for meta, _ in run:
        base = meta["start_s"] - t0
        stage = (meta.get("sleep") or {}).get("stage")
        if stage:
            anns.append(edfio.EdfAnnotation(round(base, 6), epoch_s, f"Sleep stage {stage}"))
        for a in meta.get("annotations") or ():
            onset, duration = base + float(a.get("onset_s", 0.0)), float(a.get("duration_s") or 0.0)
            if onset < 0:  # began before the file's first epoch: the part inside it
                onset, duration = 0.0, max(0.0, duration + onset)
            key = (round(onset, 3), round(duration, 3), _label(a))
            if key in seen:
                continue
            seen.add(key)
            anns.append(edfio.EdfAnnotation(key[0], key[1] or None, key[2]))
    edf = edfio.Edf(signals, patient=edfio.Patient(), recording=edfio.Recording(), data_record_duration=1.0,
                    annotations=sorted(anns, key=lambda a: a.onset))
    edf.write(path)
    return len(anns)
