"""A small Micromed System98 (header type 4) .TRC writer (demo archives, benchmarks, tests).

Independent of the reader under test: the layout follows the research notes
(``formats-trc-nicolet.md`` §1.1-1.3, §1.11) with neo 0.14.6's expectations
(15 space-padded zone names, 12-byte multiples for EVENT A/B). EVENT A/B use
the description + begin[100] + end[100] layout (see the reader's notes).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

TITLE = b"* MICROMED  Brain-Quick file *\x00\x1a"
ZONE_NAMES = ["ORDER", "LABCOD", "NOTE", "FLAGS", "TRONCA", "IMPED_B", "IMPED_E", "MONTAGE",
              "COMPRESS", "AVERAGE", "HISTORY", "DVIDEO", "EVENT A", "EVENT B", "TRIGGER"]
ZONE_SIZES = {"ORDER": 512, "LABCOD": 640 * 128, "NOTE": 1000 * 44, "FLAGS": 800, "TRONCA": 800,
              "IMPED_B": 512, "IMPED_E": 512, "MONTAGE": 4096, "COMPRESS": 16, "AVERAGE": 112,
              "HISTORY": 512, "DVIDEO": 64, "EVENT A": 864, "EVENT B": 864, "TRIGGER": 8192 * 6}


@dataclass
class Chan:
    """One stored channel: labels, calibration (logical/physical ranges, unit code) and rate coefficient."""

    label: str
    negative: str = "G2"
    unit: int = 0
    lmin: int = 0
    lmax: int = 65535
    lground: int = 32768
    pmin: int = -3200
    pmax: int = 3200
    coef: int = 1

    def physical(self, raw: np.ndarray) -> np.ndarray:
        """Expected physical values (float64, in the channel's unit) of raw codes."""
        return (raw.astype(np.float64) - self.lground) * ((self.pmax - self.pmin) / (self.lmax - self.lmin + 1))


@dataclass
class Layout:
    """Where things went: zone offsets/lengths and the data start (for corruption tests)."""

    zones: dict[str, tuple[int, int]]
    data_start: int
    frame_bytes: int


def write_trc(
    path: Path,
    raw: np.ndarray,
    chans: list[Chan],
    *,
    rate: int = 256,
    nbytes: int = 2,
    surname: str = "",
    first_name: str = "",
    birth: tuple[int, int, int] = (0, 0, 0),
    start: datetime = datetime(2021, 3, 4, 5, 6, 7),
    notes: list[tuple[int, str]] = (),
    note_encoding: str = "cp1252",
    triggers: list[tuple[int, int]] = (),
    event_a: tuple[str, list[tuple[int, int]]] | None = None,
    event_b: tuple[str, list[tuple[int, int]]] | None = None,
    tronca: list[tuple[int, int]] = (),
    labcod_slots: list[int] | None = None,
    header_type: int = 4,
    compression: int = 0,
    laboratory: str = "Test lab",
) -> Layout:
    """Write ``raw`` (shape ``(n_samples, n_channels)``, unsigned codes, or int32 for signed 4-byte) to ``path``.

    ``birth`` is (month, day, year); ``labcod_slots[i]`` is the LABCOD record of
    stored channel ``i`` (default: 1, 2, ... in reverse, so ORDER matters); ``laboratory`` is the
    laboratory name at offset 32 (at most 32 bytes cp1252).
    """
    n_ch = len(chans)
    assert raw.ndim == 2 and raw.shape[1] == n_ch
    slots = labcod_slots or [n_ch - i for i in range(n_ch)]
    zones, pos = {}, 640
    for name in ZONE_NAMES:
        zones[name] = (pos, ZONE_SIZES[name])
        pos += ZONE_SIZES[name]
    data_start = pos
    out = bytearray(data_start)

    h = bytearray(640)
    h[0:32] = TITLE
    h[32:64] = laboratory.encode("cp1252").ljust(32, b"\x00")
    h[64:86] = surname.encode("cp1252").ljust(22, b" ")
    h[86:106] = first_name.encode("cp1252").ljust(20, b" ")
    h[106:109] = bytes([birth[0], birth[1], birth[2] - 1900 if birth[2] else 0])
    h[128:134] = bytes([start.day, start.month, start.year - 1900, start.hour, start.minute, start.second])
    struct.pack_into("<HHIHHHHHHIH", h, 134, 0, 74, data_start, n_ch, n_ch * nbytes, rate, nbytes, compression,
                     0, 0, 0)
    h[175] = header_type
    for i, name in enumerate(ZONE_NAMES):
        struct.pack_into("<8sII", h, 176 + 16 * i, name.encode().ljust(8, b" "), *zones[name])
    out[:640] = h

    o = zones["ORDER"][0]
    struct.pack_into(f"<{n_ch}H", out, o, *slots)
    lab = zones["LABCOD"][0]
    for slot, c in zip(slots, chans):
        r = lab + 128 * slot
        out[r] = 1
        out[r + 2 : r + 8] = c.label.encode("ascii").ljust(6, b"\x00")
        out[r + 8 : r + 14] = c.negative.encode("ascii").ljust(6, b"\x00")
        struct.pack_into("<5ih4HH", out, r + 14, c.lmin, c.lmax, c.lground, c.pmin, c.pmax, c.unit,
                         150, 1, 15000, 1, c.coef)
    for k, (s, text) in enumerate(notes):
        b = text.encode(note_encoding)
        assert len(b) <= 40
        struct.pack_into("<I40s", out, zones["NOTE"][0] + 44 * k, s, b)
    for k, (a, b) in enumerate(tronca):
        struct.pack_into("<II", out, zones["TRONCA"][0] + 8 * k, a, b)
    for zone, ev in (("EVENT A", event_a), ("EVENT B", event_b)):
        if ev:
            z = zones[zone][0]
            out[z : z + 64] = ev[0].encode("cp1252").ljust(64, b"\x00")
            for k, (b, e) in enumerate(ev[1]):
                struct.pack_into("<I", out, z + 64 + 4 * k, b)
                struct.pack_into("<I", out, z + 464 + 4 * k, e)
    t0, tlen = zones["TRIGGER"]
    out[t0 : t0 + tlen] = b"\xff" * tlen
    for k, (s, code) in enumerate(triggers):
        struct.pack_into("<IH", out, t0 + 6 * k, s, code)

    dtype = {1: "<u1", 2: "<u2", 4: "<i4" if raw.dtype.kind == "i" else "<u4"}[nbytes]
    Path(path).write_bytes(bytes(out) + np.ascontiguousarray(raw).astype(dtype).tobytes())
    return Layout(zones, data_start, n_ch * nbytes)
