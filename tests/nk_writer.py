"""A minimal Nihon Kohden native recording writer for tests: ``.EEG`` with one control block and one
data block, ``.21E`` channel names, ``.PNT`` start time, ``.LOG`` events.

Layout as MNE-Python's reader (``mne/io/nihon/nihon.py``, BSD-3-Clause) reads it, written here from
that description: the device string at 0 and at 0x81, the number of control blocks at 0x91 and
their addresses (uint32) from 0x92, the waveform-block sign 1 at 0x17FE; a control block holds the
number of data blocks at +17 and their addresses from +18; a data block the sampling rate (uint16,
low 14 bits) at +0x1A, the duration in 0.1 s (uint32) at +0x1C, the channel count at +0x26, one
10-byte entry per channel from +0x27 (first byte: the electrode code), then the samples, time-major,
channels plus one marks word per time point, 16-bit offset binary. EEG codes are scaled
6399.902 µV / 65535 per unit from -3200 µV.
"""

from __future__ import annotations

import datetime as dt
import struct
from pathlib import Path

import numpy as np

VERSION = b"EEG-1200A V01.00"
#: Electrode codes 0-18 of the device's default table (MNE's ``_default_chan_labels``).
CODES = ["Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "F7", "F8", "T3", "T4", "T5", "T6", "Fz", "Cz", "Pz"]
CAL = 6399.902 / 65535  # µV per unit
OFFSET = -3200 + 32768 * CAL  # µV at unit 0
_CTL, _DATA = 0x400, 0x1900


def to_units(x_uv: np.ndarray) -> np.ndarray:
    """µV → the signed 16-bit units the file holds (rounded, clipped)."""
    return np.clip(np.round((x_uv - OFFSET) / CAL), -32768, 32767).astype(np.int16)


def write_nk(path: Path, x_uv: np.ndarray, sfreq: int, *, start: dt.datetime,
             events: list[tuple[float, str]] = ()) -> Path:
    """Write ``x_uv`` (``(n_channels, n_samples)``, µV, channels in :data:`CODES` order, ``n_samples``
    a multiple of ``sfreq / 10``) as ``path`` (``.EEG``) with its ``.21E``, ``.PNT`` and ``.LOG``."""
    n_ch, n = x_uv.shape
    units = to_units(x_uv)
    frames = np.zeros((n, n_ch + 1), "<u2")
    frames[:, :n_ch] = (units.T.astype(np.int32) + 0x8000).astype("<u2")  # offset binary
    head = bytearray(_DATA + 0x27 + n_ch * 10)
    head[0:16] = head[0x81 : 0x81 + 16] = VERSION
    head[0x91] = 1
    head[0x92:0x96] = struct.pack("<I", _CTL)
    head[_CTL + 17] = 1
    head[_CTL + 18 : _CTL + 22] = struct.pack("<I", _DATA)
    head[0x17FE] = 1
    head[_DATA + 0x1A : _DATA + 0x1C] = struct.pack("<H", sfreq)
    head[_DATA + 0x1C : _DATA + 0x20] = struct.pack("<I", n * 10 // sfreq)
    head[_DATA + 0x26] = n_ch
    for i in range(n_ch):
        head[_DATA + 0x27 + 10 * i] = i
    path.write_bytes(bytes(head) + frames.tobytes())
    lines = "".join(f"{i:04d}={CODES[i]}\n" for i in range(n_ch))
    path.with_suffix(".21E").write_text(f"[ELECTRODE]\n{lines}[REFERENCE]\n", encoding="latin-1")
    pnt = bytearray(0x100)
    pnt[0:16] = VERSION
    pnt[0x40:0x4E] = start.strftime("%Y%m%d%H%M%S").encode()
    path.with_suffix(".PNT").write_bytes(bytes(pnt))
    log = bytearray(0x400 + 0x14 + 45 * len(events))
    log[0:16] = VERSION
    log[0x91] = 1
    log[0x92:0x96] = struct.pack("<I", 0x400)
    log[0x401:0x411] = VERSION
    log[0x412] = len(events)
    for k, (onset, text) in enumerate(events):
        secs = int(onset)  # elapsed since the start, as HHMMSS
        clock = f"{secs // 3600:02d}{secs // 60 % 60:02d}{secs % 60:02d}".encode()
        entry = text.encode()[:20].ljust(20, b"\0") + clock + b"\0" * 19
        log[0x414 + 45 * k : 0x414 + 45 * (k + 1)] = entry
    path.with_suffix(".LOG").write_bytes(bytes(log))
    return path
