"""Discovery of multi-file recordings; damaged clinical files are recorded and the rest ingested."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import mne
import numpy as np

from ephys.ingest.channels import TEN_TWENTY
from ephys.ingest.discover import discover
from ephys.pipeline.run import ingest
from ephys.schemas import IngestConfig
from tests.ingest_helpers import real, rows_by_sha, sha
from ephys.ingest.writers.nicolet import ANNOTATION, Event, Trace, write_nicolet
from ephys.ingest.writers.trc import Chan, write_trc


def _persyst(folder: Path, name: str, x: np.ndarray, sfreq: float) -> Path:
    """Persyst .lay (INI text) + .dat (interleaved int16), as MNE's reader expects."""
    (folder / f"{name}.dat").write_bytes(np.round(x.T * 10).astype("<i2").tobytes())
    chans = "\n".join(f"{lab}={i + 1}" for i, lab in enumerate(TEN_TWENTY))
    lay = folder / f"{name}.lay"
    lay.write_text(f"[FileInfo]\nFile={name}.dat\nFileType=Interleaved\nSamplingRate={sfreq:g}\nHeaderLength=0\n"
                   f"Calibration=0.1\nWaveformCount={len(TEN_TWENTY)}\nDataType=0\n[ChannelMap]\n{chans}\n"
                   "[Patient]\nFirst=Erika\nLast=Mustermann\nID=PAT-9\nTestDate=01/02/2020\nTestTime=08:00:00\nBirthDate=07/14/1961\nSex=Female\nHand=Right\n[Comments]\n12.0,0.0,0,100,eyes open\n")
    return lay


def test_multi_file_recordings_are_one_recording(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    sfreq = 256.0
    x = np.random.default_rng(0).normal(0, 20, (19, int(65 * sfreq)))
    _persyst(a, "routine", x, sfreq)
    info = mne.create_info(list(TEN_TWENTY), sfreq, "eeg")
    mne.io.RawArray(x * 1e-6, info, verbose="error").save(a / "exported_raw.fif", verbose="error")
    found = discover(a)
    assert sorted((r.format, [f.name for f in r.files]) for r in found.recordings) == [
        ("fif", ["exported_raw.fif"]),
        ("persyst", ["routine.lay", "routine.dat"]),
    ]
    out = tmp_path / "out"
    s = ingest(a, out, config=IngestConfig(min_epochs=1), workers=1)
    assert (s.n_ok, s.n_failed) == (2, 0), s.outcomes
    rows = list(rows_by_sha(f"sqlite:///{out / 'catalog.sqlite'}").values())
    assert sorted((r.format, r.n_epochs) for r in rows) == [("fif", 2), ("persyst", 2)]


def test_damaged_clinical_files_are_recorded_and_the_rest_ingested(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    shutil.copy(real("sleep-edf/short_psg.edf"), a / "good.edf")
    rate, n = 256, 256 * 40
    raw = np.full((n, 19), 32768, np.uint16)
    write_trc(a / "compressed.TRC", raw, [Chan(label=e) for e in TEN_TWENTY], rate=rate, compression=1)
    write_trc(a / "full.TRC", raw, [Chan(label=e) for e in TEN_TWENTY], rate=rate)
    (a / "truncated.TRC").write_bytes((a / "full.TRC").read_bytes()[:5000])
    (a / "full.TRC").unlink()
    start = dt.datetime(2020, 1, 1, 8, 0, 0)
    traces = [Trace(e, e, "REF", 256.0, 0.1) for e in TEN_TWENTY[:4]]
    lay = write_nicolet(a / "broken.e", traces, [(start, 40.0)], [np.zeros(40 * 256, "<i2") for _ in traces],
                        events=[Event(start, 0.0, ANNOTATION, "x", "u")])
    b = bytearray((a / "broken.e").read_bytes())
    b[lay.entry_at[0] + 8 : lay.entry_at[0] + 16] = (len(b) + 4096).to_bytes(8, "little")  # index entry past EOF
    (a / "broken.e").write_bytes(bytes(b))
    (a / "wrong-magic.e").write_bytes(b"\x00" * 4096)
    out = tmp_path / "out"
    s = ingest(a, out, config=IngestConfig(montage="native"), workers=1)
    rows = rows_by_sha(f"sqlite:///{out / 'catalog.sqlite'}")
    got = {name: (rows[sha(a / name)].status, rows[sha(a / name)].failure_code) for name in
           ("good.edf", "compressed.TRC", "truncated.TRC", "broken.e", "wrong-magic.e")}
    assert got == {
        "good.edf": ("ok", None),
        "compressed.TRC": ("failed", "unsupported_format"),
        "truncated.TRC": ("failed", "corrupt"),
        "broken.e": ("failed", "corrupt"),
        "wrong-magic.e": ("failed", "wrong_magic"),
    }
    assert "compressed TRC not supported" in rows[sha(a / "compressed.TRC")].failure_reason
    assert rows[sha(a / "broken.e")].failure_reason.startswith("corrupt .e:")
    assert s.n_ok == 1 and len(list((out / "shards").glob("*.tar"))) == 1


def test_eeglab_ingests_and_sidecars_group(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    info = mne.create_info(list(TEN_TWENTY), 256.0, "eeg")
    raw = mne.io.RawArray(np.random.default_rng(1).normal(0, 2e-5, (19, 256 * 65)), info, verbose="error")
    mne.export.export_raw(a / "study.set", raw, fmt="eeglab", verbose="error")
    out = tmp_path / "out"
    s = ingest(a, out, config=IngestConfig(min_epochs=1), workers=1)
    assert (s.n_ok, s.n_failed) == (1, 0), s.outcomes
    (r,) = rows_by_sha(f"sqlite:///{out / 'catalog.sqlite'}").values()
    assert (r.format, r.n_epochs, r.sfreq) == ("eeglab", 2, 256.0)

    b = tmp_path / "b"
    b.mkdir()
    (b / "split.set").write_bytes(b"MATLAB 5.0 MAT-file, Platform: GLNXA64" + bytes(200))
    (b / "split.fdt").write_bytes(bytes(64))
    (b / "NK0001.EEG").write_bytes(b"EEG-1100A V01.00" + bytes(200))
    for ext in (".PNT", ".LOG", ".21E"):
        (b / f"NK0001{ext}").write_bytes(bytes(16))
    groups = sorted((rec.format, [f.name for f in rec.files]) for rec in discover(b).recordings)
    assert groups == [("eeglab", ["split.set", "split.fdt"]), ("nihon_kohden", ["NK0001.EEG", "NK0001.21E", "NK0001.LOG", "NK0001.PNT"])]
