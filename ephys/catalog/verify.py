"""``ephys catalog verify``: check that the shards on disk are what the catalog says, and repair.

For every shard row: the file exists, its SHA-256 and byte count equal the
catalog's, it opens as a tar, it holds ``n_samples`` samples each with an
``.eeg.npy`` and a ``.json`` member, its sample keys equal the keys of the
epoch rows that point at it, and each sample's JSON names the recording and
epoch index of its row. For every ``ok`` recording: its packing count equals
its epoch rows. Tar files in the shard folder that no row names are reported
as orphans (a run killed between a rename and its catalog commit leaves one;
the next run rewrites it).

``repair=True`` re-queues what is damaged instead of trusting it: the bad
shards are moved to ``shards/quarantine/``, their shard and epoch rows are
deleted in one transaction, and the packing count of every affected recording
is lowered to the epochs it still has, so the next ``ephys ingest`` of the
archive processes those recordings again and packs exactly the missing epochs
into new shards (the resume logic of :mod:`ephys.pipeline.run`).
"""

from __future__ import annotations

import json
import os
import tarfile
from dataclasses import asdict, dataclass, field

from sqlalchemy import delete, func, select, update

from ephys.catalog import models as m
from ephys.catalog.db import Catalog, on_readonly_storage
from ephys.digest import HashingReader
from ephys.shard.reader import EEG_MEMBER, META_MEMBER, iter_samples
from ephys.shard.store import filesystem

QUARANTINE = "quarantine"


@dataclass
class Problem:
    """One difference between the catalog and the files.

    ``kind``: ``missing_shard``, ``shard_hash``, ``shard_size``, ``unreadable_shard``,
    ``sample_count``, ``missing_sample``, ``extra_sample``, ``sample_meta``,
    ``packing_count`` or ``orphan_file``.
    """

    kind: str
    detail: str
    shard: str | None = None
    recordings: list[str] = field(default_factory=list)


@dataclass
class VerifyReport:
    n_shards: int = 0
    n_samples: int = 0
    n_bytes: int = 0
    n_epochs: int = 0
    problems: list[Problem] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)  # recordings (sha256) re-queued by repair
    quarantined: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No difference other than orphan files (the catalog's shards and epochs are all intact;
        a running ingest shows its shard between rename and commit as one)."""
        return not [p for p in self.problems if p.kind != "orphan_file"]

    @property
    def clean(self) -> bool:
        """No difference at all: also no shard file the catalog does not know (an interrupted run's,
        or one whose catalog rows were lost: ``repair`` moves them to ``quarantine/``)."""
        return not self.problems

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok, "clean": self.clean}


def _read_shard(f) -> tuple[str, dict[str, dict] | Exception]:
    """One pass over an open shard: ``(SHA-256 hex of all its bytes, samples)``, samples as ``{key: {"npy":
    bool, "meta": dict | None}}``, or the exception that stopped the tar from being read as samples."""
    reader = HashingReader(f)
    out: dict[str, dict] = {}
    try:
        for key, members in iter_samples(reader, read=(META_MEMBER,)):
            s = out.setdefault(key, {"npy": False, "meta": None})
            s["npy"] = s["npy"] or EEG_MEMBER in members
            if members.get(META_MEMBER) is not None:
                s["meta"] = json.loads(members[META_MEMBER])
    except (tarfile.TarError, OSError, ValueError, UnicodeDecodeError) as exc:
        return reader.finish(), exc
    return reader.finish(), out


def _check_shard(fs, root: str, row: m.Shard, epochs: dict[str, tuple[str, int]]) -> list[Problem]:
    """``epochs``: ``{key: (recording sha256, epoch index)}`` of the rows pointing at this shard;
    ``fs``/``root``: the shard folder's fsspec filesystem and path in it."""
    recs = sorted({sha for sha, _ in epochs.values()})
    bad = lambda kind, detail: Problem(kind, detail, row.name, recs)  # noqa: E731
    path = f"{root.rstrip('/')}/{row.name}"
    if not fs.isfile(path):
        return [bad("missing_shard", f"{row.name} is not in {root}")]
    size = fs.size(path)
    if size != row.n_bytes:
        return [bad("shard_size", f"{row.name} has {size:,} bytes, the catalog says {row.n_bytes:,}")]
    with fs.open(path, "rb") as f:
        digest, samples = _read_shard(f)
    if digest != row.sha256:
        return [bad("shard_hash", f"{row.name} SHA-256 {digest[:16]}… differs from the catalog's {row.sha256[:16]}…")]
    if isinstance(samples, Exception):
        return [bad("unreadable_shard", f"{row.name} does not open as a tar of samples ({type(samples).__name__})")]
    problems = []
    complete = {k for k, s in samples.items() if s["npy"] and s["meta"] is not None}
    if len(complete) != row.n_samples or len(samples) != row.n_samples:
        problems.append(bad("sample_count", f"{row.name} holds {len(complete)} complete samples, the catalog says {row.n_samples}"))
    for key in sorted(set(epochs) - complete):
        problems.append(bad("missing_sample", f"epoch {key} is not (complete) in {row.name}"))
    for key in sorted(set(samples) - set(epochs)):
        problems.append(bad("extra_sample", f"sample {key} in {row.name} has no epoch row"))
    for key in sorted(complete & set(epochs)):
        meta = samples[key]["meta"]
        if (meta.get("recording"), meta.get("epoch_index")) != epochs[key]:
            problems.append(bad("sample_meta", f"sample {key} in {row.name} names another recording or epoch"))
    return problems


def verify_catalog(catalog_url: str, shards_root: str | os.PathLike | None = None, *, repair: bool = False,
                   progress=None) -> VerifyReport:
    """Check every shard and epoch row of a catalog against the files; optionally re-queue damage.

    Parameters
    ----------
    catalog_url : str
        SQLAlchemy URL of the catalog.
    shards_root : path, optional
        Folder of the shards; default the ``shards_root`` the ingest recorded in the catalog.
    repair : bool
        Quarantine damaged shards and re-queue the recordings with epochs in them
        (see the module docstring); a following ``ephys ingest`` rebuilds them.
    progress : callable, optional
        Called with ``(shard name, i, n)`` before each shard is checked.

    Returns
    -------
    VerifyReport

    Raises
    ------
    RunError
        The catalog is unreachable, or it names no shard folder and none was given.
    """
    from ephys.errors import RunError

    catalog = Catalog(catalog_url, readonly=not repair and on_readonly_storage(catalog_url))
    try:
        root = str(shards_root) if shards_root else catalog.get_meta("shards_root")
        if not root:
            raise RunError("the catalog names no shard folder; give --shards")
        try:
            fs, base = filesystem(root)
        except (ImportError, ValueError) as exc:
            raise RunError(f"cannot open the shard folder {root}: {exc}") from None
        report = VerifyReport()
        with catalog.snapshot() as s:
            shards = list(s.scalars(select(m.Shard).order_by(m.Shard.index)))
            by_shard: dict[int, dict[str, tuple[str, int]]] = {}
            for shard_id, key, sha, index in s.execute(
                select(m.Epoch.shard_id, m.Epoch.key, m.Recording.sha256, m.Epoch.index).join(m.Recording)
            ):
                by_shard.setdefault(shard_id, {})[key] = (sha, index)
            counts = dict(s.execute(select(m.Epoch.recording_id, func.count()).group_by(m.Epoch.recording_id)).all())
            for rec in s.scalars(select(m.Recording).where(m.Recording.status == "ok")):
                if rec.n_packed != counts.get(rec.id, 0):
                    report.problems.append(Problem("packing_count", f"recording {rec.sha256[:16]} says {rec.n_packed} epochs "
                                                   f"packed, {counts.get(rec.id, 0)} epoch rows exist", None, [rec.sha256]))
        report.n_epochs = sum(len(v) for v in by_shard.values())
        bad_ids = []
        for i, row in enumerate(shards):
            if progress:
                progress(row.name, i, len(shards))
            report.n_shards += 1
            report.n_samples += row.n_samples
            report.n_bytes += row.n_bytes
            found = _check_shard(fs, base, row, by_shard.get(row.id, {}))
            report.problems += found
            if found:
                bad_ids.append(row.id)
        named = {row.name for row in shards}
        for name in sorted(p.rsplit("/", 1)[-1] for p in fs.glob(f"{base.rstrip('/')}/*.tar")) if fs.isdir(base) else []:
            if name not in named:
                report.problems.append(Problem("orphan_file", f"{name} is in the shard folder but not in the catalog", name))
        if repair:
            _repair(catalog, fs, base, [r for r in shards if r.id in bad_ids], report)
        return report
    finally:
        catalog.close()


def _repair(catalog: Catalog, fs, root: str, bad: list[m.Shard], report: VerifyReport) -> None:
    """Quarantine bad shards and orphan files; delete the bad shards' rows; lower the affected
    recordings' packing counts."""
    affected = sorted({sha for p in report.problems if p.kind == "packing_count" for sha in p.recordings})
    orphans = [p.shard for p in report.problems if p.kind == "orphan_file"]
    if not bad and not affected and not orphans:
        return
    quarantine = f"{root.rstrip('/')}/{QUARANTINE}"
    for name in [row.name for row in bad] + orphans:  # orphans: no catalog row names them, so moving loses nothing
        src = f"{root.rstrip('/')}/{name}"
        if fs.exists(src):
            fs.makedirs(quarantine, exist_ok=True)
            fs.mv(src, f"{quarantine}/{name}")  # a rename locally; copy + delete on object stores
            report.quarantined.append(name)
    with catalog.session.begin() as s:
        ids = [r.id for r in bad]
        rec_ids = set(s.scalars(select(m.Epoch.recording_id).where(m.Epoch.shard_id.in_(ids))).all()) if ids else set()
        rec_ids |= set(s.scalars(select(m.Recording.id).where(m.Recording.sha256.in_(affected))).all()) if affected else set()
        if ids:
            s.execute(delete(m.EpochSummary).where(m.EpochSummary.shard_id.in_(ids)))
            s.execute(delete(m.Epoch).where(m.Epoch.shard_id.in_(ids)))
            s.execute(delete(m.Shard).where(m.Shard.id.in_(ids)))
        for rid in sorted(rec_ids):
            n = s.scalar(select(func.count()).select_from(m.Epoch).where(m.Epoch.recording_id == rid))
            s.execute(update(m.Recording).where(m.Recording.id == rid).values(n_packed=n))
        report.requeued = sorted(s.scalars(select(m.Recording.sha256).where(m.Recording.id.in_(rec_ids))).all())
