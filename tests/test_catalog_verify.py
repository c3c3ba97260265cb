"""``ephys catalog verify [--repair]``: shards re-checked against the catalog; damage re-queued and rebuilt."""

from __future__ import annotations

import io
import shutil
import tarfile

import numpy as np
import pytest
from typer.testing import CliRunner

from ephys.catalog.db import Catalog
from ephys.catalog.queries import catalog_stats
from ephys.catalog.verify import verify_catalog
from ephys.cli import _register, app
from ephys.ingest.demo import write_demo_archive
from ephys.pipeline.run import ingest
from ephys.schemas import IngestConfig
from tests.catalog_helpers import assert_summaries_match
from tests.ingest_helpers import table_counts

_register()
runner = CliRunner()
CONFIG = IngestConfig(shard_size=5)


def _samples(out) -> dict[str, bytes]:
    """``{key: eeg.npy bytes}`` over every shard under ``out/shards`` (quarantine excluded)."""
    got = {}
    for p in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(p) as tar:
            for ti in tar:
                if ti.name.endswith(".eeg.npy"):
                    got[ti.name.split(".")[0]] = tar.extractfile(ti).read()
    return got


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    archive = tmp_path_factory.mktemp("demo")
    write_demo_archive(archive, n_recordings=3, minutes=5.5)
    ref = tmp_path_factory.mktemp("ref")
    ingest(archive, ref, config=CONFIG, workers=1)
    return archive, ref


def test_clean_output_verifies(built):
    _, ref = built
    r = runner.invoke(app, ["catalog", "verify", "--out", str(ref)])
    assert r.exit_code == 0, r.output
    assert "checked 7 shards (33 samples" in r.output and "OK" in r.output
    report = verify_catalog(f"sqlite:///{ref / 'catalog.sqlite'}")
    assert report.ok and report.problems == [] and (report.n_shards, report.n_samples, report.n_epochs) == (7, 33, 33)


def test_damage_is_reported_then_repaired_by_a_rerun(built, tmp_path):
    archive, ref = built
    out = tmp_path / "out"
    shutil.copytree(ref, out)
    url = f"sqlite:///{out / 'catalog.sqlite'}"
    shards = out / "shards"
    # Three kinds of damage: a flipped byte, a deleted shard, an orphan tar (a run killed before its commit).
    blob = bytearray((shards / "shard-000001.tar").read_bytes())
    blob[2000] ^= 0xFF
    (shards / "shard-000001.tar").write_bytes(bytes(blob))
    (shards / "shard-000004.tar").unlink()
    shutil.copy(shards / "shard-000000.tar", shards / "shard-000099.tar")

    r = runner.invoke(app, ["catalog", "verify", "--out", str(out), "--shards", str(shards)])
    assert r.exit_code == 1 and "DIFFERENCES FOUND" in r.output
    report = verify_catalog(url, shards)
    kinds = sorted((p.kind, p.shard) for p in report.problems)
    assert kinds == [("missing_shard", "shard-000004.tar"), ("orphan_file", "shard-000099.tar"), ("shard_hash", "shard-000001.tar")]
    affected = sorted({sha for p in report.problems for sha in p.recordings})
    assert 1 <= len(affected) <= 3

    r = runner.invoke(app, ["catalog", "verify", "--out", str(out), "--repair", "--json"])
    assert r.exit_code == 1, r.output  # it still differed when checked; the re-run rebuilds
    repaired = verify_catalog(url, shards)
    assert repaired.problems == [] and repaired.clean
    assert sorted(p.name for p in (shards / "quarantine").iterdir()) == ["shard-000001.tar", "shard-000099.tar"]
    assert repaired.n_epochs == 33 - 10
    cat = Catalog(url)  # the quarantined shards' epoch summaries went with their epochs
    assert sum(v[0] for v in assert_summaries_match(cat).values()) == catalog_stats(cat)["epochs"]["total"] == 23
    cat.close()

    s = ingest(archive, out, config=CONFIG, workers=1)
    assert s.n_epochs == 10 and s.n_ok == len(affected) and s.n_skipped == 5 - len(affected)
    final = verify_catalog(url)
    assert final.ok and final.n_epochs == 33
    cat = Catalog(url)
    assert sum(v[0] for v in assert_summaries_match(cat).values()) == catalog_stats(cat)["epochs"]["total"] == 33
    cat.close()
    # Every epoch is back, bit for bit, and the catalog has the undisturbed run's rows.
    want, got = _samples(ref), _samples(out)
    assert set(got) == set(want) and all(np.array_equal(np.load(io.BytesIO(got[k])), np.load(io.BytesIO(want[k]))) for k in want)
    counts, ref_counts = table_counts(url), table_counts(f"sqlite:///{ref / 'catalog.sqlite'}")
    assert {k: v for k, v in counts.items() if k != "shards"} == {k: v for k, v in ref_counts.items() if k != "shards"}


def test_epoch_rows_that_disagree_with_their_shard_are_found(built, tmp_path):
    from sqlalchemy import text

    _, ref = built
    out = tmp_path / "out"
    shutil.copytree(ref, out)
    url = f"sqlite:///{out / 'catalog.sqlite'}"
    c = Catalog(url)
    with c.engine.begin() as conn:  # an epoch row pointing at the wrong shard; a packing count that lies
        conn.execute(text("UPDATE epochs SET shard_id = (SELECT id FROM shards WHERE name = 'shard-000002.tar') "
                          "WHERE key = (SELECT key FROM epochs ORDER BY key LIMIT 1)"))
        conn.execute(text("UPDATE recordings SET n_packed = n_packed + 1 WHERE id = (SELECT MAX(id) FROM recordings "
                          "WHERE status = 'ok')"))
    c.close()
    kinds = sorted({p.kind for p in verify_catalog(url, out / "shards").problems})
    assert kinds == ["extra_sample", "missing_sample", "packing_count"]


def test_an_orphan_shard_file_is_not_ok_and_repair_quarantines_it(built, tmp_path):
    """A shard file the catalog does not know (issue #15: verify said OK and exited 0): exit 1 naming it;
    --repair refuses while an ingest holds the folder (exit 2), else moves it to quarantine/; then exit 0."""
    from ephys.pipeline.lock import OutputLock

    _, ref = built
    out = tmp_path / "out"
    shutil.copytree(ref, out)
    shutil.copy(out / "shards" / "shard-000000.tar", out / "shards" / "shard-000099.tar")
    r = runner.invoke(app, ["catalog", "verify", "--out", str(out)])
    assert r.exit_code == 1 and "ORPHAN FILES: 1" in r.output and "shard-000099.tar" in r.output, r.output
    with OutputLock(out):
        r = runner.invoke(app, ["catalog", "verify", "--out", str(out), "--repair"])
    assert r.exit_code == 2 and "in use by another ephys ingest" in r.output, r.output
    assert (out / "shards" / "shard-000099.tar").exists()
    r = runner.invoke(app, ["catalog", "verify", "--out", str(out), "--repair"])
    assert r.exit_code == 1 and "moved 1 damaged or orphan shard files to quarantine/: shard-000099.tar" in r.output, r.output
    r = runner.invoke(app, ["catalog", "verify", "--out", str(out)])
    assert r.exit_code == 0 and r.output.rstrip().endswith("OK"), r.output
