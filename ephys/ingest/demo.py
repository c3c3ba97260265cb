"""A small synthetic demo archive, for trying ephys without real recordings.

Writes EDF+ and BDF+ files (pyEDFlib) with the 19 electrodes of the 10-20
system: pink-ish background, an occipital 10 Hz alpha rhythm, 50 Hz mains hum,
and a few annotations; plus one damaged copy and one text file named ``.edf``
so the demo shows failures being recorded too. Deterministic for a seed.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np

from ephys.ingest.channels import TEN_TWENTY


def _signals(rng: np.random.Generator, n_ch: int, n: int, sfreq: float) -> np.ndarray:
    t = np.arange(n) / sfreq
    white = rng.standard_normal((n_ch, n))
    spec = np.fft.rfft(white, axis=1)
    f = np.fft.rfftfreq(n, 1 / sfreq)
    spec[:, 1:] /= np.sqrt(f[1:])
    x = np.fft.irfft(spec, n=n, axis=1)
    x = 15 * x / x.std(axis=1, keepdims=True)
    alpha = 20 * np.sin(2 * np.pi * 10 * t + rng.uniform(0, 2 * np.pi))
    for i, name in enumerate(TEN_TWENTY[:n_ch]):
        if name.startswith(("O", "P")):
            x[i] += alpha
    x += 5 * np.sin(2 * np.pi * 50 * t)
    return x


def write_demo_archive(folder: str | Path, n_recordings: int = 3, minutes: float = 6.0, seed: int = 0) -> list[Path]:
    """Write the demo archive into ``folder`` and return the files written.

    Each recording lasts ``minutes`` (default 6 min = 12 epochs of 30 s), at
    256 Hz (EDF+) or 512 Hz (BDF+), in µV.
    """
    import pyedflib

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = []
    for k in range(n_recordings):
        bdf = k % 2 == 1
        sfreq = 512 if bdf else 256
        n = int(minutes * 60 * sfreq)
        path = folder / f"demo-{k + 1:02d}.{'bdf' if bdf else 'edf'}"
        x = _signals(rng, len(TEN_TWENTY), n, sfreq)
        w = pyedflib.EdfWriter(str(path), len(TEN_TWENTY), file_type=pyedflib.FILETYPE_BDFPLUS if bdf else pyedflib.FILETYPE_EDFPLUS)
        try:
            w.setSignalHeaders([
                dict(label=f"EEG {e}-Ref", dimension="uV", sample_frequency=sfreq, physical_min=-3200.0,
                     physical_max=3200.0, digital_min=-(2**23) if bdf else -32768,
                     digital_max=2**23 - 1 if bdf else 32767, transducer="AgAgCl electrode", prefilter="HP:0.1Hz")
                for e in TEN_TWENTY
            ])
            w.setStartdatetime(datetime(2020, 1, 1 + k, 9, 0, 0))
            w.setPatientCode(f"DEMO{k + 1:03d}")
            for j, (t, text) in enumerate([(20.0, "eyes closed"), (95.0, "Augen offen"), (200.0, "hyperventilation")]):
                w.writeAnnotation(t, 5.0 if j == 2 else -1, text)
            w.writeSamples(list(x))
        finally:
            w.close()
        written.append(path)
    damaged = folder / "damaged-truncated.edf"
    damaged.write_bytes(written[0].read_bytes()[:-1000])
    fake = folder / "notes-not-an.edf"
    fake.write_text("This is a text file with an .edf name.\n")
    (folder / "README.txt").write_text("ephys demo archive: synthetic signals, not a recording of a person.\n")
    return written + [damaged, fake]
