"""End to end on the real recordings in ../shared/data/real (see its README)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from ephys.catalog import models as m
from ephys.catalog.db import Catalog
from ephys.ingest.hashing import sha256_file
from ephys.pipeline.run import ingest
from ephys.schemas import IngestConfig
from tests.ingest_helpers import REAL, real, rows_by_sha, sha, shard_bytes, table_counts

pytestmark = pytest.mark.skipif(not REAL.exists(), reason="../shared/data/real is not present")

SHORT_PSG = ("sleep-edf/short_psg.edf", "sleep-edf/short_psg.bdf")
DREAMS = "dreams-sleep/excerpt3.edf"


def _url(out: Path) -> str:
    return f"sqlite:///{out / 'catalog.sqlite'}"


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    out = tmp_path_factory.mktemp("native")
    s = ingest(REAL, out, config=IngestConfig(montage="native", shard_size=25), workers=2)
    return out, s


@pytest.fixture(scope="module")
def native_one_worker(tmp_path_factory):
    out = tmp_path_factory.mktemp("native1")
    ingest(REAL, out, config=IngestConfig(montage="native", shard_size=25), workers=1)
    return out


@pytest.fixture(scope="module")
def regional(tmp_path_factory):
    out = tmp_path_factory.mktemp("regional")
    ingest(REAL, out, config=IngestConfig(), workers=2)
    return out


@pytest.fixture(scope="module")
def min1(tmp_path_factory):
    out = tmp_path_factory.mktemp("min1")
    ingest(REAL, out, config=IngestConfig(montage="native", min_epochs=1, shard_size=5), workers=2)
    return out


def test_native_outcomes(native):
    out, s = native
    rows = rows_by_sha(_url(out))
    assert s.n_discovered == 10 and (s.n_ok, s.n_rejected, s.n_failed) == (3, 6, 1)
    for rel in SHORT_PSG:
        r = rows[sha(real(rel))]
        assert (r.status, r.n_epochs, r.n_valid_epochs) == ("ok", 10, 10)
        assert json.loads(r.output_channels_json) == ["Fpz-Cz", "Pz-Oz"]
    d = rows[sha(real(DREAMS))]
    assert (d.status, d.n_epochs) == ("ok", 60)
    assert json.loads(d.output_channels_json) == ["O1", "C3", "Fp1"]
    for rel in ("eegmmidb/S001R03.edf", "bci2000-edf/test_edf_overlapping_annotations.edf",
                "openbci-bdf/multiple_annotation_chans.bdf", "nihonkohden-edf-export/chtypes_edf.edf",
                "brainvision-neurone/test_NO.vhdr"):
        r = rows[sha(real(rel))] if not rel.endswith(".vhdr") else next(x for x in rows.values() if x.format == "brainvision")
        assert (r.status, r.failure_code) == ("rejected", "too_short"), rel
        assert "--min-epochs is 10" in r.failure_reason
    dmg = rows[sha(real("eegmmidb/S001R03_damaged-crlf.edf"))]
    assert (dmg.status, dmg.failure_code) == ("failed", "corrupt")
    assert "does not match its header" in dmg.failure_reason
    hyp = rows[sha(real("sleep-edf/SC4001EC-Hypnogram.edf"))]
    assert (hyp.status, hyp.failure_code, hyp.n_annotations) == ("rejected", "no_signal", 154)


def _edf_physical_uv(path: Path, channel: int) -> np.ndarray:
    """Independent decode of one EDF channel (header formula, no ephys code)."""
    b = path.read_bytes()
    ns = int(b[252:256])
    nrec = int(b[236:244])
    f = lambda off, w, i: b[256 + off * ns + i * w : 256 + off * ns + (i + 1) * w].decode().strip()  # noqa: E731
    pmin, pmax = float(f(104, 8, channel)), float(f(112, 8, channel))
    dmin, dmax = int(f(120, 8, channel)), int(f(128, 8, channel))
    spr = [int(f(216, 8, i)) for i in range(ns)]
    data = np.frombuffer(b[256 * (ns + 1) :], "<i2").reshape(nrec, sum(spr))
    dig = data[:, sum(spr[:channel]) : sum(spr[: channel + 1])].reshape(-1).astype(float)
    return pmin + (dig - dmin) * (pmax - pmin) / (dmax - dmin)


def _samples(out: Path) -> dict[str, tuple[np.ndarray, dict]]:
    got = {}
    for p in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(p) as tar:
            members = tar.getmembers()
            for mem in members:
                key, _, ext = mem.name.partition(".")
                data = tar.extractfile(mem).read()
                x, meta = got.get(key, (None, None))
                if ext == "eeg.npy":
                    x = np.load(io.BytesIO(data))
                else:
                    meta = json.loads(data)
                got[key] = (x, meta)
    return got


def test_dreams_channels_in_microvolts(native):
    out, _ = native
    h = sha(real(DREAMS))
    samples = [v for k, v in _samples(out).items() if k.startswith(h[:16])]
    assert len(samples) == 60
    x = np.concatenate([s[0] for s in sorted(samples, key=lambda s: s[1]["epoch_index"])], axis=1).astype(float)
    assert samples[0][1]["channel_names"] == ["O1", "C3", "Fp1"]
    raw_c3 = _edf_physical_uv(real(DREAMS), 6)  # C3-A1, header unit 'UV'
    ratio = x[1].std() / raw_c3.std()
    assert 5 < x[1].std() < 200, "C3 should be tens of µV"
    assert 0.3 < ratio < 1.1, f"conditioned/raw amplitude ratio {ratio}: not µV"


def test_shards_are_consistent_with_catalog(native):
    import webdataset as wds

    out, _ = native
    url = _url(out)
    c = Catalog(url)
    with c.session() as s:
        shards = list(s.scalars(select(m.Shard).order_by(m.Shard.index)))
        epochs = {e.key: e for e in s.scalars(select(m.Epoch))}
        recs = {r.id: r for r in s.scalars(select(m.Recording))}
    c.close()
    assert [sh.name for sh in shards] == [p.name for p in sorted((out / "shards").iterdir())]
    assert sum(sh.n_samples for sh in shards) == len(epochs) == 80
    assert [sh.n_samples for sh in shards] == [25, 25, 25, 5]  # filled across recordings
    for sh in shards:
        p = out / "shards" / sh.name
        assert sha256_file(p) == sh.sha256 and p.stat().st_size == sh.n_bytes
    samples = _samples(out)
    assert set(samples) == set(epochs)
    for key, (x, meta) in samples.items():
        rec = recs[epochs[key].recording_id]
        assert x.dtype == np.float16 and x.shape == (len(json.loads(rec.output_channels_json)), 7500)
        assert meta["recording"] == rec.sha256 and meta["subject"] == rec.subject
        assert meta["subject"].startswith("sub-") and meta["qc"]["valid"] == epochs[key].valid
    n = 0
    for sample in wds.WebDataset([str(out / "shards" / sh.name) for sh in shards], shardshuffle=False):
        x = np.load(io.BytesIO(sample["eeg.npy"]))
        assert x.shape[1] == 7500
        n += 1
    assert n == 80


def test_regional8_reasons(regional):
    rows = rows_by_sha(_url(regional))
    for rel in SHORT_PSG:
        r = rows[sha(real(rel))]
        assert (r.status, r.failure_code) == ("rejected", "insufficient_coverage")
        assert "insufficient 10-20 coverage" in r.failure_reason and "Fpz-Cz" in r.failure_reason
    assert rows[sha(real(DREAMS))].failure_code == "insufficient_coverage"
    assert not list((regional / "shards").glob("*.tar"))


def test_min_epochs_one_counts_and_annotations(min1):
    rows = rows_by_sha(_url(min1))
    expect = {
        "eegmmidb/S001R03.edf": (4, 30),  # 125 s
        "bci2000-edf/test_edf_overlapping_annotations.edf": (4, 38),  # 124 s
        "openbci-bdf/multiple_annotation_chans.bdf": (8, 10),  # 247 s
    }
    for rel, (n_epochs, n_ann) in expect.items():
        r = rows[sha(real(rel))]
        assert (r.status, r.n_epochs, r.n_annotations) == ("ok", n_epochs, n_ann), rel
    nk = rows[sha(real("nihonkohden-edf-export/chtypes_edf.edf"))]
    assert (nk.status, nk.failure_code, nk.n_epochs) == ("rejected", "too_short", 0)  # 5 s
    c = Catalog(_url(min1))
    with c.session() as s:
        s001 = rows[sha(real("eegmmidb/S001R03.edf"))]
        texts = sorted({a.text for a in s.scalars(select(m.Annotation).where(m.Annotation.recording_id == s001.id))})
    c.close()
    assert texts == ["T0", "T1", "T2"]


def test_annotations_attached_to_epochs(min1):
    h = sha(real("eegmmidb/S001R03.edf"))
    samples = {k: v for k, v in _samples(min1).items() if k.startswith(h[:16])}
    first = samples[f"{h[:16]}_000000"][1]
    # Epoch 0 covers [0, 30) s; the EEGMMIDB run alternates T0/T1/T2 every ~4.2 s.
    assert 6 <= len(first["annotations"]) <= 8
    assert all(-4.2 - 1e-6 <= a["onset_s"] < 30 for a in first["annotations"])


def test_deterministic_across_worker_counts(native, native_one_worker):
    out, _ = native
    a, b = shard_bytes(out), shard_bytes(native_one_worker)
    assert list(a) == list(b) and a == b


def test_rerun_processes_nothing(native):
    out, first = native
    before = table_counts(_url(out))
    files_before = shard_bytes(out)
    s = ingest(REAL, out, config=IngestConfig(montage="native", shard_size=25), workers=1)
    assert (s.n_ok, s.n_rejected, s.n_failed, s.n_skipped, s.n_shards) == (0, 0, 0, 10, 0)
    assert table_counts(_url(out)) == before
    assert shard_bytes(out) == files_before
    log_rows = (out / "hashlog.csv").read_text().splitlines()
    assert len(log_rows) == 1 + 10


def test_other_settings_refused(native):
    from ephys.errors import ConfigMismatchError

    out, _ = native
    with pytest.raises(ConfigMismatchError, match="other processing settings"):
        ingest(REAL, out, config=IngestConfig(montage="native", shard_size=25, min_epochs=3), workers=1)


def test_sigkill_then_rerun_equals_uninterrupted(min1, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "ephys", "ingest", str(REAL), "--out", str(out), "--montage", "native",
           "--min-epochs", "1", "--shard-size", "5", "--workers", "1"]
    env = dict(os.environ, EPHYS_TEST_PACK_DELAY_S="0.2")
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (out / "shards" / "shard-000003.tar").exists():
            assert proc.poll() is None, "ingest ended before it could be killed"
            assert time.time() < deadline
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    n_before = len(list((out / "shards").glob("*.tar")))
    assert n_before < len(list((min1 / "shards").glob("*.tar"))), "killed too late to test anything"
    ingest(REAL, out, config=IngestConfig(montage="native", min_epochs=1, shard_size=5), workers=2)
    assert shard_bytes(out) == shard_bytes(min1)
    assert not list(out.rglob("*.tmp"))
    assert table_counts(_url(out)) == table_counts(_url(min1))
    shas = [line.split(",")[0] for line in (out / "hashlog.csv").read_text().splitlines()[1:]]
    assert len(shas) == len(set(shas)) == 10


def test_manifest_then_pretrain_on_real_epochs(native, tmp_path):
    """catalog -> manifest -> 20 Hiera pretraining steps (cpu-tiny) on the DREAMS epochs; the loss goes down."""
    from typer.testing import CliRunner

    from ephys.cli import _register, app
    from ephys.schemas.manifest import Manifest

    _register()
    out, _ = native
    runner = CliRunner()
    r = runner.invoke(app, ["catalog", "stats", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    stats = json.loads(r.output)
    assert stats["recordings"]["ok"] == 3 and stats["epochs"]["total"] == 80
    manifest = tmp_path / "m.json"
    r = runner.invoke(app, ["manifest", "create", "--out", str(out), "--where", "n_eeg_channels = 3",
                            "--where", "valid = true", "-o", str(manifest)])
    assert r.exit_code == 0, r.output
    m = Manifest.load(manifest)
    assert m.n_epochs == 60 and m.channel_names == ["O1", "C3", "Fp1"] and m.counts["recordings"] == 1
    run = tmp_path / "run"
    r = runner.invoke(app, ["pretrain", "--manifest", str(manifest), "--out", str(run), "--config", "cpu-tiny",
                            "--steps", "20", "--batch-size", "8", "--lr", "2e-3"])
    assert r.exit_code == 0, r.output
    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 20 and all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.95 * np.mean(losses[:5]), losses
    assert (run / "checkpoint.pt").exists()
