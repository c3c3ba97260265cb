"""Sleep staging inside ``ephys ingest``: every epoch gets a stage and five probabilities, stored in shards
and catalog, queryable, and agreeing with the DREAMS expert as well as the stager does on its own."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest

from ephys.annotate.staging import STAGES, accuracy_kappa, hypnogram_from_rk
from ephys.catalog.queries import query_recordings, select_epochs
from ephys.errors import RunError
from ephys.pipeline.run import ingest
from ephys.schemas import IngestConfig, Manifest
from tests.ingest_helpers import REAL, rows_by_sha, sha
from tests.test_staging import MARGIN, MEASURED_DREAMS

pytestmark = pytest.mark.skipif(not REAL.exists(), reason="../shared/data/real is not present")


@pytest.fixture(scope="module")
def staged(staged_corpus):
    return staged_corpus


def test_every_epoch_is_staged_with_probabilities(staged):
    a, out, s = staged
    url = f"sqlite:///{out / 'catalog.sqlite'}"
    assert s.n_ok == 2
    rows = rows_by_sha(url)
    dreams = rows[sha(a / "excerpt3.edf")]
    assert dreams.stager.startswith("gssc 0.0.9") and dreams.staging_channels == "C3-A1,EOG1-A1"
    epochs = select_epochs(url, [])
    assert len(epochs) == 70 and len(select_epochs(url, ["stage = W"])) + len(select_epochs(url, ["stage != W"])) == 70
    assert len(select_epochs(url, ["p_n2 > 0.5"])) == len(select_epochs(url, ["stage = N2", "p_n2 > 0.5"]))
    assert [r["sha256"] for r in query_recordings(url, ["stager ~ gssc"])] == sorted(sha(a / n)[:16] for n in ("excerpt3.edf", "short_psg.edf"))
    with tarfile.open(next((out / "shards").glob("*.tar"))) as tar:
        metas = [json.loads(tar.extractfile(m).read()) for m in tar.getmembers() if m.name.endswith(".json")]
    assert len(metas) == 70
    for meta in metas:
        probs = meta["sleep"]["probs"]
        assert meta["sleep"]["stage"] == STAGES[int(np.argmax(probs))] and abs(sum(probs) - 1) < 1e-3


def test_pipeline_agreement_with_the_dreams_expert(staged):
    a, out, _ = staged
    from ephys.catalog import models as m
    from ephys.catalog.db import Catalog
    from sqlalchemy import select

    c = Catalog(f"sqlite:///{out / 'catalog.sqlite'}")
    with c.session() as s:
        got = s.execute(select(m.Epoch.stage).join(m.Recording).where(m.Recording.sha256 == sha(a / "excerpt3.edf"))
                        .order_by(m.Epoch.index)).scalars().all()
    c.close()
    codes = (REAL / "dreams-sleep" / "Hypnogram_excerpt3.txt").read_text().split()[1:]
    truth = hypnogram_from_rk([int(x) for x in codes])
    pred = np.array([STAGES.index(x) for x in got])
    agree = accuracy_kappa(pred, truth)
    acc, kappa = MEASURED_DREAMS["gssc"]
    assert agree.accuracy >= acc - MARGIN and agree.kappa >= kappa - MARGIN
    sleep_edf = select_epochs(f"sqlite:///{out / 'catalog.sqlite'}", ["n_eeg_channels = 2", "stage = W"])
    assert len(sleep_edf) == 10  # the expert scored the first 10 Sleep-EDF epochs Wake


def test_ensemble_stager_in_ingest(tmp_path):
    """--stager ensemble through the pipeline: stages and probabilities in catalog and shards, the expert
    agreement of the ensemble on its own."""
    import shutil

    pytest.importorskip("gssc")
    pytest.importorskip("yasa")
    a = tmp_path / "a"
    a.mkdir()
    shutil.copy(REAL / "dreams-sleep" / "excerpt3.edf", a)
    out = tmp_path / "out"
    s = ingest(a, out, config=IngestConfig(montage="native", stager="ensemble"), workers=1)
    url = f"sqlite:///{out / 'catalog.sqlite'}"
    assert s.n_ok == 1
    row = rows_by_sha(url)[sha(a / "excerpt3.edf")]
    assert row.stager == "ensemble(gssc 0.0.9 (sig_net_v1, gru_net_v1) + yasa 0.8.1)"
    assert row.staging_channels == "C3-A1,EOG1-A1,EMG1"
    codes = (REAL / "dreams-sleep" / "Hypnogram_excerpt3.txt").read_text().split()[1:]
    truth = hypnogram_from_rk([int(x) for x in codes])
    from ephys.catalog import models as m
    from ephys.catalog.db import Catalog
    from sqlalchemy import select

    c = Catalog(url)
    with c.session() as ses:
        got = ses.execute(select(m.Epoch.stage).order_by(m.Epoch.index)).scalars().all()
    c.close()
    agree = accuracy_kappa(np.array([STAGES.index(x) for x in got]), truth)
    acc, kappa = MEASURED_DREAMS["ensemble"]
    assert agree.accuracy >= acc - MARGIN and agree.kappa >= kappa - MARGIN


def test_missing_backend_is_refused_before_the_run(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "yasa" else real(name, *a))
    with pytest.raises(RunError, match=r"--stager yasa needs the 'yasa' package \(BSD-3-Clause\): pip install 'ephys\[staging\]'"):
        ingest(tmp_path, tmp_path / "out", config=IngestConfig(stager="yasa"), workers=1)
    with pytest.raises(RunError, match=r"--stager ensemble needs the 'yasa' package"):
        ingest(tmp_path, tmp_path / "out", config=IngestConfig(stager="ensemble"), workers=1)


def test_manifest_selects_by_stage_and_probability(staged, tmp_path):
    from ephys.manifest import create_manifest

    _, out, _ = staged
    url = f"sqlite:///{out / 'catalog.sqlite'}"
    where = ["stage = N2", "p_n2 >= 0.6", "n_eeg_channels = 3"]
    man = create_manifest(url, where, tmp_path / "n2.json")
    keys = sorted(e.key for e in select_epochs(url, where))
    assert man.counts["epochs"] == len(keys) > 0 and man.counts["recordings"] == 1
    assert sorted(k for sh in Manifest.load(tmp_path / "n2.json").shards for k in sh.keys) == keys


def test_load_time_filters_select_what_the_manifest_clauses_select(staged, tmp_path):
    """`[data] stages / min_score / valid_only` read the shard metadata; they keep exactly the epochs that a manifest
    made with the same catalog clauses lists."""
    from ephys.manifest import create_manifest
    from ephys.pretrain.data import SampleFilter
    from ephys.pretrain.evaluate import iter_manifest_epochs

    _, out, _ = staged
    url = f"sqlite:///{out / 'catalog.sqlite'}"
    base = ["n_eeg_channels = 3"]
    create_manifest(url, base, tmp_path / "all.json")
    from ephys.schemas.manifest import Manifest

    manifest = Manifest.load(tmp_path / "all.json")
    metas = {key: meta for key, meta, _ in iter_manifest_epochs(manifest, tmp_path / "all.json")}
    assert len(metas) == 60
    cases = [
        (SampleFilter(stages=("N2",)), ["stage = N2"]),
        (SampleFilter(stages=("W", "REM")), None),
        (SampleFilter(min_score=0.9), ["score >= 0.9"]),
        (SampleFilter(valid_only=True, stages=("N3",)), ["valid = true", "stage = N3"]),
    ]
    for flt, clauses in cases:
        kept = {key for key, meta in metas.items() if flt.keep(meta)}
        if clauses is None:  # a list of stages is the union of single-stage selections
            expected = {e.key for st in flt.stages for e in select_epochs(url, base + [f"stage = {st}"])}
        else:
            expected = {e.key for e in select_epochs(url, base + clauses)}
        assert kept == expected, (flt, len(kept), len(expected))
    assert 0 < len({k for k, m in metas.items() if SampleFilter(stages=("N2",)).keep(m)}) < 60
