"""Micromed .TRC and Nicolet .e through the whole ingest: epochs, annotations, pseudonyms, no leaks."""

from __future__ import annotations

import datetime as dt
import json
import re
import tarfile
from pathlib import Path

import numpy as np
from sqlalchemy import select

from ephys.catalog import models as m
from ephys.catalog.db import Catalog
from ephys.ingest.channels import TEN_TWENTY
from ephys.pipeline.run import ingest
from ephys.schemas import IngestConfig
from tests.ingest_helpers import rows_by_sha, sha  # noqa: F401  (sets the test site secret)
from ephys.ingest.writers.nicolet import ANNOTATION, Event, Trace, write_nicolet
from ephys.ingest.writers.trc import Chan, write_trc

START = dt.datetime(2019, 5, 6, 22, 30, 0)
PHI = ["Mustermann", "Erika", "PAT-424242", "Weißmüller", "Jürgen", "Huberbauer", "1961", "Annegret"]


def _trc(path: Path, seconds: float = 65.0, rate: int = 256) -> None:
    n = int(seconds * rate)
    t = np.arange(n) / rate
    raw = np.stack([32768 + np.round(500 * np.sin(2 * np.pi * (8 + i % 4) * t)) for i in range(19)], axis=1)
    write_trc(path, raw.astype(np.uint16), [Chan(label=e) for e in TEN_TWENTY], rate=rate, surname="Mustermann",
              first_name="Erika", birth=(7, 14, 1961), start=START,
              notes=[(rate * 10, "Anfall? Pat. Mustermann wach"), (0, "Beginn")], triggers=[(rate * 40, 7)])


def _nicolet(path: Path) -> None:
    traces = [Trace(e, e, "REF", 256.0, 0.1) for e in TEN_TWENTY] + [Trace("Pulse", "Pulse", "", 1.0, 1.0, unit="bpm")]
    segments = [(START, 70.0), (START + dt.timedelta(seconds=100), 35.0)]
    rng = np.random.default_rng(0)
    samples = [rng.integers(-400, 400, int(105 * t.sfreq)).astype("<i2") for t in traces]
    events = [Event(START + dt.timedelta(seconds=5), 0.0, ANNOTATION, "Augen zu, Dr. Huberbauer anwesend", "Huberbauer"),
              Event(START + dt.timedelta(seconds=101), 2.0, ANNOTATION, "Anfall (Jürgen Weißmüller)", "Huberbauer")]
    patient = {"patientID": "PAT-424242", "firstName": "Jürgen", "lastName": "Weißmüller", "DOB": dt.date(1961, 7, 14),
               "sexID": "M", "notes": "Tochter Annegret"}
    write_nicolet(path, traces, segments, samples, events=events, patient=patient)


def test_trc_and_nicolet_ingest(tmp_path):
    a = tmp_path / "archive"
    a.mkdir()
    _trc(a / "EEG_0001.TRC")
    _nicolet(a / "LTM_0002.e")
    out = tmp_path / "out"
    s = ingest(a, out, config=IngestConfig(min_epochs=1), workers=1)
    assert (s.n_ok, s.n_failed, s.n_rejected) == (2, 0, 0)
    url = f"sqlite:///{out / 'catalog.sqlite'}"
    trc, nic = rows_by_sha(url)[sha(a / "EEG_0001.TRC")], rows_by_sha(url)[sha(a / "LTM_0002.e")]
    assert (trc.format, trc.n_epochs, trc.sfreq, trc.n_annotations) == ("micromed_trc", 2, 256.0, 3)
    # Nicolet: a 70 s and a 35 s segment -> 2 + 1 epochs; the 1 Hz trend channel is not EEG.
    assert (nic.format, nic.n_epochs, nic.n_eeg_channels, nic.n_annotations) == ("nicolet_e", 3, 19, 2)
    c = Catalog(url)
    with c.session() as sess:
        starts = [e.start_s for e in sess.scalars(select(m.Epoch).where(m.Epoch.recording_id == nic.id).order_by(m.Epoch.index))]
        anns = {a.text: a for a in sess.scalars(select(m.Annotation))}
    c.close()
    assert starts == [0.0, 30.0, 100.0]
    assert anns["Augen zu, Dr. [name] anwesend"].author == anns["Anfall ([name] [name])"].author
    assert anns["Anfall ([name] [name])"].author.startswith("author-")
    assert "Anfall? Pat. [name] wach" in anns and anns["Anfall? Pat. [name] wach"].onset_s == 10.0
    assert nic.subject != trc.subject and nic.n_scrubbed == 3 and trc.n_scrubbed == 1


def test_identity_in_clinical_formats_never_reaches_outputs(tmp_path):
    a = tmp_path / "archive"
    a.mkdir()
    _trc(a / "x.TRC")
    _nicolet(a / "y.e")
    out = tmp_path / "out"
    ingest(a, out, config=IngestConfig(min_epochs=1), workers=1)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len([p for p in files if p.suffix == ".tar"]) == 1
    with tarfile.open(next((out / "shards").glob("*.tar"))) as tar:
        metas = [json.loads(tar.extractfile(x).read()) for x in tar.getmembers() if x.name.endswith(".json")]
    assert {m_["subject"][:4] for m_ in metas} == {"sub-"}
    for p in files:
        data = p.read_bytes()
        for token in PHI:
            for enc in ("utf-8", "utf-16-le", "cp1252"):
                try:
                    needle = token.encode(enc)
                except UnicodeEncodeError:
                    continue
                assert needle not in data, f"{token!r} ({enc}) leaked into {p.relative_to(out)}"
        assert not re.search(rb"1961-07-14|14\.07\.1961", data)
