"""Shards on shared storage: a local ``file://`` URL and an S3 object store (moto's server, s3fs).

The S3 store is moto's threaded server on loopback: a real HTTP S3 endpoint, reached through
s3fs exactly as a user's bucket would be, with fsspec's configuration pointing ``s3://`` at it.
Ingest writes the shards there; the catalog, ``catalog verify``, the manifest and the
pretraining loader's shard check all read them back from there.
"""

from __future__ import annotations

import hashlib

import pytest

from ephys.catalog.verify import verify_catalog
from ephys.errors import RunError
from ephys.ingest.demo import write_demo_archive
from ephys.manifest.create import create_manifest
from ephys.pipeline.run import ingest
from ephys.pretrain.data import StepBatches, verify_shards
from ephys.schemas import IngestConfig
from tests.ingest_helpers import shard_bytes

CONFIG = IngestConfig(min_epochs=5, shard_size=5)
BUCKET = "ephys-test"


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    folder = tmp_path_factory.mktemp("archive")
    write_demo_archive(folder, n_recordings=2, minutes=3.5)  # 14 epochs -> shards of 5, 5, 4
    return folder


@pytest.fixture(scope="module")
def local(archive, tmp_path_factory):
    """The reference: the same ingest into OUT/shards."""
    out = tmp_path_factory.mktemp("local") / "out"
    ingest(archive, out, config=CONFIG, workers=1)
    return shard_bytes(out)


@pytest.fixture
def s3(monkeypatch):
    """An S3 endpoint on loopback (moto) with one bucket; fsspec's ``s3`` config points at it."""
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    import fsspec.config

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": f"http://{host}:{port}"})
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        fs = s3fs.S3FileSystem()
        fs.makedirs(BUCKET, exist_ok=True)  # moto keeps its buckets per process, across servers
        yield fs
    finally:
        server.stop()


def test_shards_to_a_file_url(archive, local, tmp_path):
    corpus = tmp_path / "corpus"
    s = ingest(archive, tmp_path / "out", config=CONFIG, workers=1, shards_url=f"file://{corpus}")
    assert (s.n_ok, s.n_shards) == (2, 3)
    assert {p.name: p.read_bytes() for p in sorted(corpus.iterdir())} == local
    assert not (tmp_path / "out" / "shards").exists() or not list((tmp_path / "out" / "shards").iterdir())
    url = f"sqlite:///{tmp_path / 'out' / 'catalog.sqlite'}"
    assert verify_catalog(url).ok
    m = create_manifest(url, None, tmp_path / "m.json")
    assert [sh.url for sh in m.shards] == [str(corpus.resolve() / n) for n in sorted(local)]


def test_shards_on_an_object_store(archive, local, s3, tmp_path):
    root = f"s3://{BUCKET}/corpus/v1"
    s = ingest(archive, tmp_path / "out", config=CONFIG, workers=1, shards_url=root)
    assert (s.n_ok, s.n_epochs, s.n_shards) == (2, 14, 3)
    # The objects are the local run's shards, byte for byte; nothing stays behind locally.
    objects = {p.rsplit("/", 1)[1]: s3.cat_file(p) for p in sorted(s3.ls(f"{BUCKET}/corpus/v1"))}
    assert objects == local
    out = tmp_path / "out"
    assert not list((out / ".spool").iterdir()) and not list((out / "shards").iterdir())

    url = f"sqlite:///{out / 'catalog.sqlite'}"
    report = verify_catalog(url)
    assert report.ok and (report.n_shards, report.n_samples) == (3, 14), report.problems
    # The manifest names the objects; the loader checks their hashes and streams their samples.
    m = create_manifest(url, None, tmp_path / "m.json")
    assert [sh.url for sh in m.shards] == [f"{root}/{n}" for n in sorted(local)]
    assert [sh.sha256 for sh in m.shards] == [hashlib.sha256(local[n]).hexdigest() for n in sorted(local)]
    assert verify_shards(m, tmp_path / "m.json") == [sh.url for sh in m.shards]
    batch = next(iter(StepBatches(m, tmp_path / "m.json", batch_size=4, seed=0)))
    assert tuple(batch.shape) == (4, 8, 7500)

    # A changed object is found by verify (and by the loader's check); --repair quarantines it remotely.
    name = sorted(local)[1]
    changed = bytearray(local[name])
    changed[2048] ^= 0xFF  # one byte of the first sample's float16 data
    s3.pipe_file(f"{BUCKET}/corpus/v1/{name}", bytes(changed))
    report = verify_catalog(url)
    assert [(p.kind, p.shard) for p in report.problems] == [("shard_hash", name)]
    with pytest.raises(Exception, match="changed|SHA-256"):
        verify_shards(m, tmp_path / "m.json")
    report = verify_catalog(url, repair=True)
    assert report.quarantined == [name]
    assert s3.exists(f"{BUCKET}/corpus/v1/quarantine/{name}") and not s3.exists(f"{BUCKET}/corpus/v1/{name}")
    # Ingesting again re-packs the requeued epochs into a new shard on the store.
    s = ingest(archive, out, config=CONFIG, workers=1, shards_url=root)
    assert verify_catalog(url).ok


def test_an_unusable_shard_url_stops_the_run_before_any_work(archive, tmp_path):
    with pytest.raises(RunError, match="cannot use the shard URL nosuch://"):
        ingest(archive, tmp_path / "out", config=CONFIG, workers=1, shards_url="nosuch://bucket/x")


@pytest.mark.parametrize("point", ["kill-driver:renamed:1", "kill-driver:committed:1"])
def test_driver_killed_with_shards_on_the_object_store_resumes_exactly(point, archive, local, s3, tmp_path):
    """SIGKILL of an ``ingest --shards s3://...`` driver right after shard 1 is uploaded (before its
    catalog commit) and right after the commit: the next run leaves the store holding the local run's
    shards byte for byte, each epoch in the catalog once, and ``verify`` clean."""
    import os
    import subprocess
    import sys

    import fsspec.config

    root = f"s3://{BUCKET}/killed/{point.split(':')[1]}"
    out = tmp_path / "out"
    env = dict(os.environ, EPHYS_TEST_FAILPOINTS=point,
               FSSPEC_S3_ENDPOINT_URL=fsspec.config.conf["s3"]["endpoint_url"])
    cmd = [sys.executable, "-m", "ephys", "ingest", str(archive), "--out", str(out), "--shards", root,
           "--shard-size", "5", "--min-epochs", "5", "--workers", "1"]
    r = subprocess.run(cmd, env=env, capture_output=True, timeout=300)
    assert r.returncode == -9, r.stderr.decode()[-2000:]  # it died there
    assert s3.exists(f"{root}/shard-000001.tar")  # the upload happened before the kill
    s = ingest(archive, out, config=CONFIG, workers=1, shards_url=root)
    assert s.n_epochs + 5 * (point.split(':')[1] == 'committed') == 9  # the rest of the 14, after shard 0 (and 1)
    objects = {p.rsplit("/", 1)[1]: s3.cat_file(p) for p in sorted(s3.ls(root))}
    assert objects == local
    url = f"sqlite:///{out / 'catalog.sqlite'}"
    report = verify_catalog(url)
    assert report.ok and (report.n_shards, report.n_samples) == (3, 14), report.problems
