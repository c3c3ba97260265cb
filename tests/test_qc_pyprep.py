"""ephys's bad channels against an independent reference, PyPREP's ``NoisyChannels`` (PREP's criteria),
on a real recording with injected defects (#19 part 4; the full comparison is benchmarks/qc_pyprep.py,
figures in docs/benchmarks.md). PyPREP runs here and in the benchmark only, never in ingest."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from ephys.ingest.writers.edf import write_edf
from ephys.pipeline.run import ingest
from ephys.schemas import IngestConfig
from tests.ingest_helpers import benchmark, real, sha

pyprep = pytest.importorskip("pyprep", reason="pyprep is a test dependency (pip install -e '.[test]')")


def test_injected_flat_noisy_and_disconnected_channels_agree_with_pyprep(tmp_path):
    import mne

    src = real("eegmmidb/S001R03.edf")  # 64 channels, 160 Hz, 125 s of real EEG
    raw = mne.io.read_raw_edf(src, preload=True, verbose="error")
    names = [c.rstrip(".") for c in raw.ch_names]
    sf = int(raw.info["sfreq"])
    x = raw.get_data()[:, : (raw.n_times // sf) * sf] * 1e6
    rng = np.random.default_rng(0)
    n = x.shape[1]
    defects = {"Cz": "flat", "O1": "noisy", "F3": "disconnected"}
    idx = {name: names.index(name) for name in defects}
    x[idx["Cz"]] = 0.0  # unplugged input
    x[idx["O1"]] += rng.normal(0, 150.0, n)  # poor contact: broadband noise
    walk = np.cumsum(rng.normal(0, 1.0, n))
    walk -= np.convolve(walk, np.ones(sf) / sf, mode="same")
    x[idx["F3"]] = 60 * walk / walk.std() + 30 * np.sin(2 * np.pi * 50 * np.arange(n) / sf) + rng.normal(0, 5, n)
    x = np.clip(x, -3276.7, 3276.7)
    archive = tmp_path / "archive"
    archive.mkdir()
    path = write_edf(archive / "r.edf", list(x), names, [sf] * len(names))

    ingest(archive, tmp_path / "out", config=IngestConfig(montage="native", min_epochs=1), workers=1)
    engine = create_engine(f"sqlite:///{tmp_path / 'out' / 'catalog.sqlite'}")
    with engine.connect() as c:
        bad = json.loads(c.execute(text("SELECT bad_channels_json FROM recordings WHERE sha256 = :s"),
                                   {"s": sha(path)}).scalar_one())
    engine.dispose()
    ephys_bad = {k.upper(): v for k, v in bad.items()}
    ref = {k.upper(): set(v) for k, v in benchmark("qc_pyprep").pyprep_bads(x, names, sf).items()}  # the benchmark's call

    # Both flag every injected channel; ephys flags nothing else on this recording.
    assert set(ephys_bad) == {k.upper() for k in defects}, ephys_bad
    assert ephys_bad["CZ"] == "flat" and "flat" in ref["CZ"]
    assert ephys_bad["O1"].startswith("noisy") and ref["O1"] & {"deviation", "hf_noise"}
    assert ephys_bad["F3"] in ("uncorrelated", "noisy: line noise") and ref["F3"] - {"psd"}
    # PyPREP's PREP criteria (without its later `psd` one) flag few of the 61 other channels.
    others = {k for k, v in ref.items() if k not in ephys_bad and v - {"psd"}}
    assert len(others) <= 6, others
