"""`ephys export edf` (#18 part 4): a manifest's epochs as EDF+C, round-tripped through MNE and pyEDFlib.

Oracle: the arrays, stages and annotations the test corpus was written with (tests/test_evaluate.write_dataset:
6 subjects, 4 consecutive 10-s epochs each at 250 Hz, class-A epochs carry a negated "seizure" and an "alpha"
annotation, the last epoch of each subject is unstaged), read back by two independent EDF readers."""

from __future__ import annotations

import numpy as np
import pyedflib
import pytest
from typer.testing import CliRunner

from ephys.cli import _register, app
from ephys.errors import ManifestError, OutputError
from ephys.export.edf import export_edf
from tests.test_evaluate import write_dataset

_register()


@pytest.fixture()
def corpus(tmp_path):
    return write_dataset(tmp_path / "d", bad=None)


def test_export_round_trips_through_mne_and_pyedflib(corpus, tmp_path):
    import mne

    out = tmp_path / "edf"
    r = CliRunner().invoke(app, ["export", "edf", "--manifest", str(corpus.manifest), "--out", str(out)])
    assert r.exit_code == 0, r.output
    files = sorted(out.glob("*.edf"))
    assert len(files) == 6 and not list(tmp_path.glob(".edf.tmp*"))  # one per subject (4 consecutive epochs)
    assert "export: 6/6 recordings (100.0 %)" in r.stderr and "sub-" not in r.stderr  # progress, counts only
    by_subject = {}
    for key in corpus.keys:
        by_subject.setdefault(corpus.subject[key], []).append(key)
    for path in files:
        subject = path.name.split("_")[0].removeprefix("sub-")
        keys = by_subject[subject]
        want = np.concatenate([corpus.eeg[k].astype(np.float64) for k in keys], axis=1)  # µV (4, 10000)
        raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
        assert raw.info["sfreq"] == 250.0 and raw.ch_names == ["R0", "R1", "R2", "R3"] and raw.n_times == 10000
        got = raw.get_data() * 1e6
        step = (want.max(axis=1) - want.min(axis=1)) / 65535  # 16-bit codes over each channel's own range
        assert np.all(np.abs(got - want) <= step[:, None] * 0.51 + 1e-9)  # half a code: nothing clipped
        assert np.allclose(got.max(axis=1), want.max(axis=1), atol=1e-6)
        with pyedflib.EdfReader(str(path)) as f:
            assert f.getPatientName() in ("X", "") and f.getStartdatetime().year == 1985
            np.testing.assert_allclose(f.readSignal(0), got[0], atol=1e-9)
            onsets, durations, texts = f.readAnnotations()
        texts = list(texts)
        stages = [t for t in texts if t.startswith("Sleep stage")]
        classes = [corpus.cls[k] for k in keys]
        assert stages == [f"Sleep stage {'W' if c == 'A' else 'N3'}" for c in classes[:-1]]  # last one unstaged
        alphas = [o for o, t in zip(onsets, texts) if t == "y [alpha/-]"]
        assert alphas == [10.0 * i for i, c in enumerate(classes) if c == "A"]
        assert texts.count("x [seizure/-] (negated)") == classes.count("A")
        assert [a["description"] for a in raw.annotations].count("y [alpha/-]") == classes.count("A")


def test_refusals_leave_nothing_half_written(corpus, tmp_path):
    out = tmp_path / "edf"
    out.mkdir()
    with pytest.raises(OutputError, match="exists"):
        export_edf(corpus.manifest, out)
    garbage = corpus.manifest.parent / "shard-000000.tar"
    kept = garbage.read_bytes()
    garbage.write_bytes(b"not a tar" * 100)
    with pytest.raises(ManifestError, match="shard shard-000000.tar cannot be read as a tar"):
        export_edf(corpus.manifest, tmp_path / "edf1")
    garbage.write_bytes(kept)
    (corpus.manifest.parent / "shard-000001.tar").unlink()
    with pytest.raises(ManifestError, match="shard shard-000001.tar is missing"):
        export_edf(corpus.manifest, tmp_path / "edf2")
    assert not (tmp_path / "edf2").exists() and not list(tmp_path.glob(".edf2.tmp*"))
    r = CliRunner().invoke(app, ["export", "edf", "--manifest", str(tmp_path / "nope.json"), "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "no such manifest" in r.stderr
