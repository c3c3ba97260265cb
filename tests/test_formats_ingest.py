"""Ingest of formats the real archive has too little of: EDF+D segments, BrainVision with epochs."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
from sqlalchemy import select

from ephys.catalog import models as m
from ephys.catalog.db import Catalog
from ephys.ingest.channels import TEN_TWENTY
from ephys.pipeline.run import ingest
from ephys.schemas import IngestConfig
from ephys.ingest.writers.edf import write_edf
from tests.ingest_helpers import rows_by_sha, sha  # noqa: F401  (sets the test site secret)


def write_brainvision(folder: Path, name: str, x_uv: np.ndarray, labels: list[str], sfreq: float, markers) -> Path:
    """A BrainVision triplet (Brain Products' format spec 1.0): float32 multiplexed, µV."""
    vhdr, eeg, vmrk = (folder / f"{name}.{e}" for e in ("vhdr", "eeg", "vmrk"))
    eeg.write_bytes(x_uv.T.astype("<f4").tobytes())
    ch = "\n".join(f"Ch{i + 1}={lab},,1,µV" for i, lab in enumerate(labels))
    vhdr.write_text(
        "Brain Vision Data Exchange Header File Version 1.0\n[Common Infos]\nCodepage=UTF-8\n"
        f"DataFile={eeg.name}\nMarkerFile={vmrk.name}\nDataFormat=BINARY\nDataOrientation=MULTIPLEXED\n"
        f"NumberOfChannels={len(labels)}\nSamplingInterval={1e6 / sfreq:g}\n[Binary Infos]\nBinaryFormat=IEEE_FLOAT_32\n"
        f"[Channel Infos]\n{ch}\n", encoding="utf-8")
    mk = "\n".join(f"Mk{i + 2}={typ},{desc},{int(t * sfreq) + 1},1,0" for i, (typ, desc, t) in enumerate(markers))
    vmrk.write_text(
        "Brain Vision Data Exchange Marker File Version 1.0\n[Common Infos]\nCodepage=UTF-8\n"
        f"DataFile={eeg.name}\n[Marker Infos]\nMk1=New Segment,,1,1,0\n{mk}\n", encoding="utf-8")
    return vhdr


def _epochs(url: str):
    c = Catalog(url)
    with c.session() as s:
        rows = [(r.format, e.start_s) for e, r in s.execute(
            select(m.Epoch, m.Recording).join(m.Recording).order_by(m.Recording.sha256, m.Epoch.index))]
    c.close()
    return rows


def test_edf_plus_d_epochs_follow_segments(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    rng = np.random.default_rng(0)
    sfreq, rec = 200, 65 + 65
    sig = [rng.normal(0, 20, rec * sfreq) for _ in TEN_TWENTY]
    onsets = [float(r) for r in range(65)] + [100.0 + r for r in range(65)]
    write_edf(a / "disc.edf", sig, [f"EEG {e}" for e in TEN_TWENTY], [sfreq] * 19, onsets=onsets,
              annotations=[(101.5, 0.0, "spike"), (3.0, 1.0, "eyes closed")])
    out = tmp_path / "out"
    s = ingest(a, out, config=IngestConfig(min_epochs=1), workers=1)
    assert s.n_ok == 1
    assert _epochs(f"sqlite:///{out / 'catalog.sqlite'}") == [("edf+d", 0.0), ("edf+d", 30.0), ("edf+d", 100.0), ("edf+d", 130.0)]
    with tarfile.open(next((out / "shards").glob("*.tar"))) as tar:
        metas = [json.loads(tar.extractfile(x).read()) for x in tar.getmembers() if x.name.endswith(".json")]
    anns = {meta["start_s"]: [(x["onset_s"], x["text"]) for x in meta["annotations"]] for meta in metas}
    assert anns == {0.0: [(3.0, "eyes closed")], 30.0: [], 100.0: [(1.5, "spike")], 130.0: []}
    assert all(meta["channel_names"][0] == "L-frontal" and all(meta["mask"]) for meta in metas)


def test_brainvision_recording_is_one_recording_with_markers(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    sfreq = 500.0
    t = np.arange(int(70 * sfreq)) / sfreq
    x = np.stack([30 * np.sin(2 * np.pi * (6 + i % 5) * t) for i in range(19)])
    write_brainvision(a, "routine", x, list(TEN_TWENTY), sfreq, [("Stimulus", "S  1", 10.0), ("Comment", "eyes open", 40.0)])
    out = tmp_path / "out"
    s = ingest(a, out, config=IngestConfig(montage="native", min_epochs=1), workers=1)
    assert (s.n_discovered, s.n_ok, s.n_ignored) == (1, 1, 0)
    c = Catalog(f"sqlite:///{out / 'catalog.sqlite'}")
    with c.session() as sess:
        (r,) = sess.scalars(select(m.Recording))
        texts = sorted(a.text for a in sess.scalars(select(m.Annotation)))
    c.close()
    assert (r.format, r.n_epochs, r.sfreq, json.loads(r.output_channels_json)) == ("brainvision", 2, 500.0, list(TEN_TWENTY))
    assert "S  1" in " ".join(texts) and "eyes open" in " ".join(texts)
    with tarfile.open(next((out / "shards").glob("*.tar"))) as tar:
        arrays = [np.load(io.BytesIO(tar.extractfile(x).read())) for x in tar.getmembers() if x.name.endswith(".npy")]
    # µV preserved through MNE's volts: a 30 µV sine keeps an RMS near 30/sqrt(2).
    rms = np.sqrt((arrays[0][0].astype(float) ** 2).mean())
    assert abs(rms - 30 / np.sqrt(2)) < 2
