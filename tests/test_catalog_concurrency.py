"""Readers (stats, queries, manifests, verify) run while an ingest writes: no lock errors, consistent snapshots.

Runs on SQLite (WAL) and, with ``EPHYS_TEST_POSTGRES_URL``, on PostgreSQL.
"""

from __future__ import annotations

import threading


import ephys.pipeline.packer as packer_module
from ephys.catalog.db import Catalog
from ephys.catalog.queries import catalog_stats, query_recordings
from ephys.catalog.verify import verify_catalog
from ephys.errors import ManifestError
from ephys.ingest.demo import write_demo_archive
from ephys.ingest.hashing import sha256_file
from ephys.manifest import create_manifest
from ephys.pipeline.run import ingest
from ephys.schemas import IngestConfig


def test_readers_during_an_ingest(catalog_url, tmp_path, monkeypatch):
    archive = tmp_path / "archive"
    write_demo_archive(archive, n_recordings=3, minutes=5.5)
    monkeypatch.setattr(packer_module, "_PACK_DELAY_S", 0.25)  # stretch the run: one shard commit every 0.25 s
    out = tmp_path / "out"
    Catalog(catalog_url).close()  # the schema exists before the first reader looks
    stop, seen, errors = threading.Event(), [], []

    def reader() -> None:
        k = 0
        while not stop.is_set():
            try:
                st = catalog_stats(catalog_url)
                # One snapshot: every committed shard has exactly its epoch rows, and every packed count adds up.
                assert st["epochs"]["total"] == st["shards"]["samples"], st
                recs = query_recordings(catalog_url, ["status = ok"])
                assert all(r["n_epochs"] >= 0 for r in recs)
                if k % 3 == 0:
                    report = verify_catalog(catalog_url, out / "shards")
                    assert not [p for p in report.problems if p.kind not in ("orphan_file",)], report.problems
                if k % 3 == 1:
                    try:
                        m = create_manifest(catalog_url, ["valid = true"], tmp_path / f"m{k}.json")
                        # Only committed shards, each complete on disk under its final name.
                        for sh in m.shards:
                            assert sha256_file(sh.url) == sh.sha256 and len(sh.keys) <= sh.n_samples
                    except ManifestError:
                        pass  # nothing valid committed yet
                seen.append(st["shards"]["count"])
                k += 1
            except Exception as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(repr(exc))
                return

    t = threading.Thread(target=reader)
    t.start()
    try:
        s = ingest(archive, out, config=IngestConfig(shard_size=2), catalog_url=catalog_url, workers=1)
    finally:
        stop.set()
        t.join(60)
    assert not errors, errors[:3]
    assert s.n_ok == 3 and s.n_shards == 17
    assert len(seen) >= 5 and 0 < max(seen) and min(seen) < 17  # readers really overlapped the writes
    final = catalog_stats(catalog_url)
    assert final["epochs"]["total"] == final["shards"]["samples"] == 33 and final["shards"]["count"] == 17


def test_snapshot_does_not_see_a_commit_made_during_it(catalog_url):
    """What makes multi-statement reads consistent: a write committed mid-read is invisible until the next read."""
    from sqlalchemy import func, select

    from ephys.catalog import models as m

    cat, writer = Catalog(catalog_url), Catalog(catalog_url)
    try:
        writer.set_meta("a", "1")
        with cat.snapshot() as s:
            before = s.scalar(select(func.count()).select_from(m.Meta))
            writer.set_meta("b", "2")  # commits on another connection while the snapshot is open
            assert s.scalar(select(func.count()).select_from(m.Meta)) == before
        with cat.snapshot() as s:
            assert s.scalar(select(func.count()).select_from(m.Meta)) == before + 1
    finally:
        cat.close()
        writer.close()
