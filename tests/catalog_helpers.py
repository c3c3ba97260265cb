"""A small, realistic catalog for query and manifest tests, written through the ORM.

Layout (what the ingest driver would have produced with ``shard_size = 4``)::

    run 1, status 'complete', config sfreq 250 / epoch_s 30 / montage regional8

    recording  sha      format subject duration status    epochs (valid)  annotations
    a          1...     edf    S01     100 s    ok        3 (2)           T1 @35+2, Anfall @60+0
    b          8...     bdf    S02     125 s    ok        4 (3)           Anfall rechts @25+10, Spike @0+30,
                                                                          artefakt @90-5 (negative duration)
    c          c...     edf    S03     12 s     rejected  too_short       T1 @2+1
    d          e...     edf    -       -        failed    corrupt         -

    shard-000000.tar: a0 a1 a2 b0      shard-000001.tar: b1 b2 b3

Epoch rows are inserted out of shard order so that ordering by ``epochs.id``
would be wrong.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import tarfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import select, text

from ephys.catalog import models as m
from ephys.catalog.db import Catalog
from ephys.catalog.summary import HISTOGRAMS
from ephys.catalog.summary import rebuild as rebuild_summaries

REGIONS = ["LF", "RF", "LT", "RT", "LC", "RC", "LO", "RO"]
SFREQ = 250.0
EPOCH_S = 30.0
N_SAMPLES = 7500
T0 = datetime(2026, 11, 20, 9, 0, 0)


def _sha(prefix: str, name: str) -> str:
    return prefix + hashlib.sha256(name.encode()).hexdigest()[1:]


SHA = {
    "a": _sha("1", "recording-a"),
    "b": _sha("8", "recording-b"),
    "c": _sha("c", "recording-c"),
    "d": _sha("e", "recording-d"),
}


def key(rec: str, index: int) -> str:
    """Sample key of epoch ``index`` of recording ``rec`` ('a'...'d')."""
    return f"{SHA[rec][:16]}_{index:05d}"


# (rec, index, start_s, valid, n_flat, n_clipped, nonfinite, max_abs_uv, shard)
EPOCHS = [
    ("a", 0, 0.0, True, 0, 0, False, 85.5, 0),
    ("a", 1, 30.0, False, 5, 0, False, 12.25, 0),
    ("a", 2, 60.0, True, 0, 1, False, 140.0, 0),
    ("b", 0, 0.0, True, 0, 0, False, 60.0, 0),
    ("b", 1, 30.0, True, 1, 0, False, 95.0, 1),
    ("b", 2, 60.0, True, 0, 2, False, 210.5, 1),
    ("b", 3, 90.0, False, 0, 0, True, 0.0, 1),
]
#: insertion order of the epoch rows (not shard order)
INSERT_ORDER = [6, 0, 4, 2, 3, 1, 5]

# (rec, onset_s, duration_s, text)
ANNOTATIONS = [
    ("a", 35.0, 2.0, "T1"),
    ("a", 60.0, 0.0, "Anfall"),
    ("b", 25.0, 10.0, "Anfall rechts"),
    ("b", 0.0, 30.0, "Spike"),
    ("b", 90.0, -5.0, "artefakt"),
    ("c", 2.0, 1.0, "T1"),
]

SHARD_NAMES = ["shard-000000.tar", "shard-000001.tar"]


@dataclass
class Populated:
    """What :func:`populate` wrote: ids, paths and figures the tests compare against."""

    run_id: int
    shards_root: Path
    shard_paths: list[Path]
    shard_sha256: list[str]
    shard_bytes: list[int]
    shard_keys: list[list[str]]
    sha: dict[str, str] = field(default_factory=lambda: dict(SHA))


def _epoch_meta(rec: str, index: int, start_s: float, valid, n_flat, n_clipped, nonfinite, max_abs_uv) -> dict:
    return {
        "key": key(rec, index),
        "recording": SHA[rec],
        "subject": {"a": "S01", "b": "S02"}[rec],
        "epoch_index": index,
        "start_s": start_s,
        "sfreq": SFREQ,
        "n_samples": N_SAMPLES,
        "montage": "regional8",
        "channel_names": REGIONS,
        "mask": [True] * len(REGIONS),
        "units": "uV",
        "dtype": "float16",
        "qc": {
            "n_flat": n_flat,
            "n_clipped": n_clipped,
            "nonfinite": nonfinite,
            "max_abs_uv": max_abs_uv,
            "valid": valid,
        },
        "annotations": [],
    }


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def write_shards(folder: Path) -> tuple[list[Path], list[list[str]]]:
    """Write the two tar shards (``<key>.eeg.npy`` + ``<key>.json`` per epoch) in shard order."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    paths, keys = [], []
    for s, name in enumerate(SHARD_NAMES):
        path = folder / name
        members = [e for e in EPOCHS if e[8] == s]
        with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
            for rec, index, start_s, valid, n_flat, n_clipped, nonfinite, max_abs_uv, _ in members:
                buf = io.BytesIO()
                np.save(buf, (rng.standard_normal((len(REGIONS), N_SAMPLES)) * 20).astype(np.float16))
                _add_member(tar, f"{key(rec, index)}.eeg.npy", buf.getvalue())
                meta = _epoch_meta(rec, index, start_s, valid, n_flat, n_clipped, nonfinite, max_abs_uv)
                _add_member(tar, f"{key(rec, index)}.json", json.dumps(meta, sort_keys=True).encode())
        paths.append(path)
        keys.append([key(e[0], e[1]) for e in members])
    return paths, keys


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def populate(catalog: Catalog, tmp_path: Path) -> Populated:
    """Insert the catalog described in the module docstring and write its shards under ``tmp_path/shards``.

    Returns
    -------
    Populated
        The run id, shard paths, hashes, sizes and member keys.
    """
    shards_root = (tmp_path / "shards").resolve()
    paths, shard_keys = write_shards(shards_root)
    shard_sha = [_file_sha(p) for p in paths]
    shard_bytes = [p.stat().st_size for p in paths]
    config = {"montage": "regional8", "sfreq": SFREQ, "epoch_s": EPOCH_S, "shard_size": 4, "min_epochs": 1}

    with catalog.session.begin() as s:
        run = m.Run(
            started_at=T0,
            finished_at=T0.replace(minute=5),
            status="complete",
            code_version="0.1.0",
            processing_hash="0123456789abcdef",
            config_json=json.dumps(config, sort_keys=True),
            n_discovered=4,
            n_skipped=0,
            n_ok=2,
            n_rejected=1,
            n_failed=1,
            eeg_hours=225.0 / 3600.0,
            wall_s=12.5,
        )
        s.add(run)
        s.flush()

        common = dict(
            n_files=1,
            file_bytes=1_000_000,
            processing_hash="0123456789abcdef",
            run_id=run.id,
            processed_at=T0,
            n_scrubbed=0,
            seconds_json="{}",
            channels_json="[]",
        )
        recs = {
            "a": m.Recording(
                sha256=SHA["a"], format="edf", path_hash="p" * 64, subject="S01", duration_s=100.0,
                n_channels=23, n_eeg_channels=19, sfreq=256.0, montage="regional8",
                output_channels_json=json.dumps(REGIONS), status="ok", n_epochs=3, n_valid_epochs=2,
                n_packed=3, n_annotations=2, **common,
            ),
            "b": m.Recording(
                sha256=SHA["b"], format="bdf", path_hash="q" * 64, subject="S02", duration_s=125.0,
                n_channels=32, n_eeg_channels=21, sfreq=512.0, montage="regional8",
                output_channels_json=json.dumps(REGIONS), status="ok", n_epochs=4, n_valid_epochs=3,
                n_packed=4, n_annotations=3, **common,
            ),
            "c": m.Recording(
                sha256=SHA["c"], format="edf", path_hash="r" * 64, subject="S03", duration_s=12.0,
                n_channels=19, n_eeg_channels=19, sfreq=200.0, montage=None, output_channels_json="[]",
                status="rejected", failure_stage="qc", failure_code="too_short",
                failure_reason="0 valid epochs, need 1", n_epochs=0, n_valid_epochs=0, n_packed=0,
                n_annotations=1, **common,
            ),
            "d": m.Recording(
                sha256=SHA["d"], format="edf", path_hash="s" * 64, subject=None, duration_s=None,
                n_channels=None, n_eeg_channels=None, sfreq=None, montage=None, output_channels_json="[]",
                status="failed", failure_stage="read", failure_code="corrupt",
                failure_reason="file size does not match the header", n_epochs=0, n_valid_epochs=0,
                n_packed=0, n_annotations=0, **common,
            ),
        }
        # insert in an order that is not sha order
        for r in ("d", "b", "c", "a"):
            s.add(recs[r])
        shards = []
        # insert the later shard first so that shards.id order differs from shards.index order
        for i in (1, 0):
            sh = m.Shard(
                index=i, name=SHARD_NAMES[i], sha256=shard_sha[i], n_samples=len(shard_keys[i]),
                n_bytes=shard_bytes[i], run_id=run.id, created_at=T0,
            )
            s.add(sh)
            shards.append(sh)
        s.flush()
        shard_by_index = {sh.index: sh for sh in shards}
        for i in INSERT_ORDER:
            rec, index, start_s, valid, n_flat, n_clipped, nonfinite, max_abs_uv, shard = EPOCHS[i]
            s.add(
                m.Epoch(
                    recording_id=recs[rec].id, index=index, start_s=start_s,
                    shard_id=shard_by_index[shard].id, key=key(rec, index), valid=valid, n_flat=n_flat,
                    n_clipped=n_clipped, nonfinite=nonfinite, max_abs_uv=max_abs_uv,
                    mask="1" * len(REGIONS),
                )
            )
            s.flush()
        for rec, onset, duration, text in ANNOTATIONS:
            s.add(m.Annotation(recording_id=recs[rec].id, onset_s=onset, duration_s=duration, text=text, source="edf+"))
        s.add(m.Meta(key="shards_root", value=str(shards_root)))
        s.flush()
        rebuild_summaries(s)  # the epochs went in as rows, not through commit_shard
        run_id = run.id

    return Populated(
        run_id=run_id,
        shards_root=shards_root,
        shard_paths=paths,
        shard_sha256=shard_sha,
        shard_bytes=shard_bytes,
        shard_keys=shard_keys,
    )


# ---------------------------------------------------------------------------
# Epoch summaries (ephys.catalog.summary) against an oracle over the raw epoch rows
# ---------------------------------------------------------------------------


def _oracle(conn) -> dict:
    """``{(shard_id, recording_id): (n, n_valid, n_scored, n_staged, figures)}`` from the raw epoch
    rows, histograms by ``np.histogram`` of the values clipped into the edge range."""
    rows: dict[tuple[int, int], list] = {}
    for r in conn.execute(text("SELECT shard_id, recording_id, valid, score, line_ratio, emg_ratio, drift_ratio, stage "
                               "FROM epochs")).mappings():
        rows.setdefault((r["shard_id"], r["recording_id"]), []).append(r)
    out = {}
    for k, eps in rows.items():
        figures = {}
        for name, edges in HISTOGRAMS.items():
            v = np.array([e[name] for e in eps if e[name] is not None and not math.isnan(e[name])], float)
            figures[name] = np.histogram(np.clip(v, edges[0], edges[-1]), bins=edges)[0].tolist()
        stages = sorted(e["stage"] for e in eps if e["stage"] is not None)
        figures["stage"] = {st: stages.count(st) for st in sorted(set(stages))}
        n_scored = sum(e["score"] is not None and not math.isnan(e["score"]) for e in eps)
        out[k] = (len(eps), sum(bool(e["valid"]) for e in eps), n_scored, len(stages), figures)
    return out


def _stored(conn) -> dict:
    return {(r.shard_id, r.recording_id): (r.n_epochs, r.n_valid, r.n_scored, r.n_staged, json.loads(r.figures_json))
            for r in conn.execute(select(m.EpochSummary))}


def _rebuilt(cat: Catalog) -> dict:
    with cat.engine.connect() as conn:
        trans = conn.begin()
        try:
            rebuild_summaries(conn)
            return _stored(conn)
        finally:
            trans.rollback()


def assert_summaries_match(cat: Catalog) -> dict:
    """The stored summaries equal the NumPy oracle and the SQL rebuild; returns them."""
    with cat.engine.connect() as conn:
        stored, oracle = _stored(conn), _oracle(conn)
    assert stored == oracle
    assert _rebuilt(cat) == oracle
    return stored
