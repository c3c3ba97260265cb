"""Fault tolerance: a full disk stops the run cleanly and a re-run completes it exactly."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from ephys.errors import RunError
from ephys.pipeline.run import ingest
from ephys.schemas import IngestConfig
from tests.ingest_helpers import REAL, shard_bytes, table_counts

pytestmark = pytest.mark.skipif(not REAL.exists(), reason="../shared/data/real is not present")


@pytest.fixture
def small_disk():
    """A 6 MiB tmpfs (needs permission to mount; skipped otherwise)."""
    mnt = Path("/tmp") / f"ephys-small-{uuid.uuid4().hex[:8]}"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        mnt.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
        mnt.rmdir()


def test_disk_full_then_rerun_equals_undisturbed(small_disk, tmp_path):
    config = IngestConfig(montage="native", min_epochs=1, shard_size=5)
    ref = tmp_path / "ref"
    ingest(REAL, ref, config=config, workers=1)

    out = small_disk / "out"
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    with pytest.raises(RunError, match="No space left on device.*run the same command again"):
        ingest(REAL, out, config=config, catalog_url=url, workers=1)
    assert not list(out.rglob("*.tmp")), "a partial file was left behind"
    before = len(list((out / "shards").glob("*.tar")))
    assert before < len(list((ref / "shards").glob("*.tar")))

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    s = ingest(REAL, out, config=config, catalog_url=url, workers=1)
    assert s.n_ok >= 1 and s.n_failed <= 1  # at most the damaged file, if the first run did not reach it
    assert shard_bytes(out) == shard_bytes(ref)
    assert table_counts(url) == table_counts(f"sqlite:///{ref / 'catalog.sqlite'}")
