"""Attach the entries of annotation sidecars (seizure lists, annotation tables) to recordings.

Runs on the driver at the end of every ingest, after the recordings' own rows are written, for
every sidecar :func:`~ephys.ingest.discover.discover` found (parsed by
:mod:`ephys.ingest.sidecars`). An entry names a file; it is matched to a recording of this run by

1. the recording's SHA-256, where the entry gives one (ephys TSV);
2. the path the entry names, relative to the sidecar's folder (any member file of a recording:
   a BrainVision ``.eeg`` names its recording as well as the ``.vhdr``);
3. else the file name: recordings in the sidecar's folder or below it first, then anywhere in
   the archive; a name that fits recordings of different content there is ambiguous (not attached).

A matched entry becomes an :class:`~ephys.schemas.Annotation` with source ``sidecar:FORMAT``,
clipped to the recording's length (the catalog's, else what the sidecar states), its text
scrubbed of names and labelled by the taxonomy, so ``category = seizure`` selects the epochs it
overlaps. Catalog rows are replaced, not added (:meth:`Catalog.replace_sidecar_annotations`): a
rerun gives the same rows, a sidecar edited or removed takes its old entries with it. The epochs'
annotation lists inside shards are the recording file's own and do not change.

Every entry not attached (and every clipped one) is reported by sidecar and entry number, in the
catalog's ``annotation_sidecars`` table and in the run summary: never by a file name, which in
hospitals holds patient names.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ephys.annotate.attach import label_annotations
from ephys.ingest.discover import Discovered
from ephys.ingest.identity import path_hash, printable_path, scrub_text
from ephys.ingest.sidecars import SidecarEntry, is_sha256, parse_sidecar, sidecar_bytes
from ephys.schemas import Annotation


@dataclass
class SidecarReport:
    """What the sidecars of one run gave: counts and ``problems`` as ``(sidecar, entry, reason)``,
    ``sidecar`` named by the SHA-256 prefix of its content (its printable path with ``show_paths``)."""

    n_sidecars: int = 0
    n_entries: int = 0
    n_attached: int = 0
    n_recordings: int = 0
    n_clipped: int = 0
    problems: list[tuple[str, int, str]] = field(default_factory=list)


def _key(p: Path | str) -> str:
    return os.path.normcase(os.path.abspath(p))


class _Index:
    """Recordings of the run by member path, by file name and by SHA-256."""

    def __init__(self, recordings: list[tuple[Discovered, str]]):
        self.by_path: dict[str, str] = {}
        self.by_name: dict[str, list[tuple[str, str]]] = defaultdict(list)  # name -> [(folder key, sha)]
        self.shas = {sha for _, sha in recordings}
        for rec, sha in recordings:
            for f in rec.files:
                self.by_path[_key(f)] = sha
                self.by_name[Path(f).name].append((_key(Path(f).parent), sha))

    def match(self, entry: SidecarEntry, folder: Path) -> tuple[str | None, str | None]:
        """``(sha256, None)`` or ``(None, reason)``."""
        if is_sha256(entry.name):
            if entry.name in self.shas:
                return entry.name, None
            return None, "names a SHA-256 of no recording in the archive"
        sha = self.by_path.get(_key(folder / entry.name))
        if sha is not None:
            return sha, None
        found = self.by_name.get(Path(entry.name).name, [])
        below = _key(folder)
        near = {sha for d, sha in found if d == below or d.startswith(below + os.sep)}
        pool = near or {sha for _, sha in found}
        if len(pool) == 1:
            return next(iter(pool)), None
        if not pool:
            return None, "names no recording in the archive"
        return None, f"names {len(pool)} recordings of different content (the same file name in several folders)"


def attach_sidecars(sidecars: list[tuple[Path, str, str]], recordings: list[tuple[Discovered, str]], catalog, *,
                    secret: bytes, run_id: int, show_paths: bool = False, taxonomy: str | None = None) -> SidecarReport:
    """Parse ``sidecars`` (``(path, format, relpath)`` from discovery), match their entries to
    ``recordings`` (``(discovered recording, sha256)`` of this run, duplicates included) and write
    annotation and ``annotation_sidecars`` rows to ``catalog``. Never raises for a bad sidecar:
    an unreadable or malformed one is a problem in the report (and its catalog row)."""
    from ephys.pipeline.task import name_detector  # the workers' detector, with taxonomy words protected

    report = SidecarReport(n_sidecars=len(sidecars))
    index = _Index(recordings)
    durations = catalog.recording_durations(sorted(index.shas)) if sidecars else {}
    by_sha: dict[str, list[Annotation]] = defaultdict(list)
    rows = []
    for path, fmt, relpath in sidecars:
        data = b""
        try:
            data = sidecar_bytes(path)
            parsed = parse_sidecar(data, fmt)
        except (OSError, ValueError) as exc:
            reason = f"not read: {exc.strerror or type(exc).__name__}" if isinstance(exc, OSError) else f"not read: {exc}"
            parsed = None
        sha = hashlib.sha256(data).hexdigest()
        name = printable_path(relpath) if show_paths else sha[:12]
        problems: list[tuple[int, str]] = []
        attached: set[str] = set()
        n_attached = 0
        if parsed is None:
            problems.append((0, reason))
        else:
            problems += parsed.problems
            for entry in parsed.entries:
                rec, why = index.match(entry, path.parent)
                if rec is None:
                    problems.append((entry.number, why))
                    continue
                onset, duration = entry.onset_s, entry.duration_s
                limit = durations.get(rec) or entry.end_limit_s
                if limit is not None and onset >= limit:
                    problems.append((entry.number, f"starts {onset:g} s into a recording of {limit:g} s"))
                    continue
                if limit is not None and onset + duration > limit:
                    problems.append((entry.number, f"clipped: ends {onset + duration - limit:g} s after the recording"))
                    duration = limit - onset
                    report.n_clipped += 1
                text = entry.text
                if fmt == "tsv":  # free text: dates and long numbers, then names no header gives
                    text = name_detector(taxonomy).scrub(scrub_text(text, [])[0])[0]
                by_sha[rec].append(Annotation(onset_s=round(onset, 6), duration_s=round(duration, 6), text=text,
                                              source=f"sidecar:{fmt}"))
                attached.add(rec)
                n_attached += 1
        n_entries = len(parsed.entries) if parsed else 0
        report.n_entries += n_entries
        report.n_attached += n_attached
        report.problems += [(name, number, why) for number, why in problems]
        rows.append(dict(path_hash=path_hash(secret, relpath, b"sidecar"), sha256=sha, format=fmt, n_entries=n_entries,
                         n_attached=n_attached, n_recordings=len(attached), problems_json=json.dumps(problems)))
    labelled = {sha: _dedup(label_annotations(anns, taxonomy)) for sha, anns in by_sha.items()}
    report.n_recordings = len(labelled)
    catalog.replace_sidecar_annotations(sorted(index.shas), labelled, rows, run_id=run_id)
    return report


def _dedup(anns: list[Annotation]) -> list[Annotation]:
    """One row per (onset, duration, text, source): two sidecars listing one seizure give one annotation."""
    seen, out = set(), []
    for a in sorted(anns, key=lambda a: (a.onset_s, a.duration_s, a.text)):
        k = (a.onset_s, a.duration_s, a.text, a.source)
        if k not in seen:
            seen.add(k)
            out.append(a)
    return out
