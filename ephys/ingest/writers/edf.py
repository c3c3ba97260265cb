"""A minimal EDF+/BDF+ writer (demo archives, benchmarks, tests): arbitrary record onsets (EDF+D), TALs, units.

Follows Kemp & Olivan (2003); independent of the reader under test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _f(v, w: int) -> bytes:
    s = str(v).encode("latin-1")
    assert len(s) <= w, (v, w)
    return s.ljust(w)


def write_edf(
    path: Path,
    signals: list[np.ndarray],
    labels: list[str],
    spr: list[int],
    *,
    record_s: float = 1.0,
    units: list[str] | None = None,
    phys: tuple[float, float] = (-3276.8, 3276.7),
    bdf: bool = False,
    onsets: list[float] | None = None,
    annotations: list[tuple[float, float, str]] = (),
    patient: str = "X X X X",
    plus: bool = True,
    ann_bytes: int = 120,
    recording: str = "Startdate 01-JAN-2020 X X X",
    start: str = "01.01.2010.00.00",
) -> Path:
    """``signals[i]`` in physical units (len = n_records * spr[i]); ``onsets`` per record (EDF+D).

    ``recording`` is the 80-character local recording identification; ``start`` the 16 characters
    of start date and time (``dd.mm.yyhh.mm.ss``).
    """
    n_rec = len(signals[0]) // spr[0] if signals else 1
    bps = 3 if bdf else 2
    dmin, dmax = (-(2**23), 2**23 - 1) if bdf else (-32768, 32767)
    units = units or ["uV"] * len(signals)
    ns = len(signals) + (1 if plus else 0)
    labels = list(labels) + (["BDF Annotations" if bdf else "EDF Annotations"] if plus else [])
    ann_spr = ann_bytes // bps
    sprs = list(spr) + ([ann_spr] if plus else [])
    h = (b"\xffBIOSEMI" if bdf else _f("0", 8)) + _f(patient, 80) + _f(recording, 80)
    assert len(start.encode("latin-1")) == 16, start
    h += start.encode("latin-1") + _f(256 * (ns + 1), 8)
    h += _f(("BDF+" if bdf else "EDF+") + ("D" if onsets else "C") if plus else ("24BIT" if bdf else ""), 44)
    h += _f(n_rec, 8) + _f(record_s, 8) + _f(ns, 4)
    h += b"".join(_f(lab, 16) for lab in labels) + b"".join(_f("", 80) for _ in labels)
    h += b"".join(_f(u, 8) for u in units) + (b"".join(_f("", 8) for _ in range(ns - len(units))))
    h += b"".join(_f(phys[0], 8) for _ in range(ns)) + b"".join(_f(phys[1], 8) for _ in range(ns))
    h += b"".join(_f(dmin, 8) for _ in range(ns)) + b"".join(_f(dmax, 8) for _ in range(ns))
    h += b"".join(_f("", 80) for _ in range(ns)) + b"".join(_f(s, 8) for s in sprs) + b"".join(_f("", 32) for _ in range(ns))
    assert len(h) == 256 * (ns + 1)
    gain = (phys[1] - phys[0]) / (dmax - dmin)
    onsets = onsets or [r * record_s for r in range(n_rec)]
    out = bytearray(h)
    for r in range(n_rec):
        for x, s in zip(signals, spr):
            dig = np.round((x[r * s : (r + 1) * s] - phys[0]) / gain + dmin).astype(np.int64)
            dig = np.clip(dig, dmin, dmax)
            if bdf:
                b = dig.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3]
                out += b.tobytes()
            else:
                out += dig.astype("<i2").tobytes()
        if plus:
            tal = f"+{onsets[r]:g}\x14\x14\x00".encode()
            for onset, dur, text in annotations:
                if onsets[r] <= onset < onsets[r] + record_s:
                    tal += f"+{onset:g}\x15{dur:g}\x14".encode() + text.encode("utf-8") + b"\x14\x00"
            assert len(tal) <= ann_spr * bps, "annotations do not fit"
            out += tal.ljust(ann_spr * bps, b"\x00")
    Path(path).write_bytes(bytes(out))
    return Path(path)
