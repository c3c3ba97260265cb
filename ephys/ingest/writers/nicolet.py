"""A small synthetic Nicolet/Natus ``.e`` (NervusEEG) writer (demo archives, benchmarks, tests); independent of the reader.

Layout from the project notes (formats-trc-nicolet.md, section 2.11, "a file that satisfies A, B,
C and F at once"), i.e. from ieeg-portal ``NicoletFile.m`` (Apache-2.0) and the tag/index/section
mechanics of BellaNes-Systems ``eeg2edf`` ``tests/synth.py`` (Apache-2.0); written from those
facts, no code copied. What it writes:

* magic GUID, main-index pointer at 24, tag table at 176 (``tag.index`` = 0-based position),
  QI block at 172208 (``nrEntries``, ``LQi = 0``), a main index chained over ``index_blocks`` blocks;
* sections ``SegmentStream``, ``InfoChangeStream`` (one 48-byte record per TSInfo packet),
  ``InfoGuids``, ``Events``, TSGUID, CHANNELGUID, SIGNALINFOGUID, DERIVATIONGUID and DISPLAYGUID
  (count 0), PATIENTINFOGUID, and one int16 stream per channel tagged ``"0"`` ... ``"N-1"``;
* main-index entry ``k - 1`` is the first block of section ``k``; channel streams are split
  into ``blocks`` blocks interleaved through the file (channel 0's first block comes first);
  sections named in ``split`` are cut in two, the second half placed among the channel blocks;
* every block is allocated in ``pad``-byte units (``blockL`` > ``sectionL`` on short blocks,
  zero padding on disk) and the last block ends exactly at EOF.

The writer checks nothing, so tests can build inconsistent files on purpose.
"""

from __future__ import annotations

import datetime as dt
import struct
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAGIC = uuid.UUID("1C7BC30F-2DCF-4B6D-8AEA-1F64CED2B917").bytes_le
EVENT_GUID = "{B799F680-72A4-11D3-93D3-00500400C148}"
TS = "{A271CCCB-515D-4590-B6A1-DC170C8D6EE2}"
CHANNEL = "{BF7C95EF-6C3B-4E70-9E11-779BFFF58EA7}"
SIGNALINFO = "{8032E68A-EA3E-42E8-893E-6E93C59ED515}"
DERIVATION = "{8A19AA48-BEA0-40D5-B89F-667FC578D635}"
DISPLAY = "{02950361-35BB-4A22-9F0B-C78AAA5DB094}"
PATIENTINFO = "{D0B3FD0B-49D9-4BF0-8929-296DE5A55910}"
ANNOTATION = "{A5A95612-A7F8-11CF-831A-0800091B5BDA}"
SEIZURE_A = "{A5A95646-A7F8-11CF-831A-0800091B5BDA}"  # "Seizure" in A/B/C (disputed by F)
IMPEDANCE = "{A5A95617-A7F8-11CF-831A-0800091B5BDA}"
QI_OFFSET, INDEX_START = 172208, 188664
PATIENT_IDS = {"patientID": 1, "firstName": 2, "middleName": 3, "lastName": 4, "altID": 5,
               "mothersMaidenName": 6, "DOB": 7, "DOD": 8, "sexID": 10, "notes": 12}


@dataclass
class Trace:
    """One TSInfo record; ``unit`` goes to SIGNALINFO (keyed by ``active``)."""

    label: str
    active: str
    reference: str
    sfreq: float
    resolution: float
    eeg_offset: float = 0.0
    unit: str = "uV"


@dataclass
class Event:
    onset: dt.datetime
    duration: float
    type_guid: str
    text: str = ""
    user: str = ""
    channel: str = ""


@dataclass
class Layout:
    """Where things went: ``sections[name] = [(offset, length), ...]`` in index order."""

    size: int = 0
    n_tags: int = 0
    index_blocks: list[int] = field(default_factory=list)
    entries: list[tuple[int, int, int, int]] = field(default_factory=list)  # section, offset, blockL, sectionL
    entry_at: list[int] = field(default_factory=list)  # file offset of each index entry
    sections: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    data_start: int = 0


def _w(text: str, nbytes: int) -> bytes:
    return text.encode("utf-16-le")[:nbytes].ljust(nbytes, b"\0")


def _g(guid: str) -> bytes:
    return uuid.UUID(guid).bytes_le


def ole(when: dt.datetime) -> float:
    """OLE automation date: days since 1899-12-30."""
    return (when - dt.datetime(1899, 12, 30)) / dt.timedelta(days=1)


def _tsinfo(traces: list[Trace]) -> bytes:
    b = bytearray(760 + 552 * len(traces))
    b[:16] = _g(TS)
    struct.pack_into("<Q", b, 16, len(b))
    struct.pack_into("<II", b, 752, len(traces), len(traces))
    for i, t in enumerate(traces):
        r = 760 + 552 * i
        b[r : r + 64] = _w(t.label, 64)
        b[r + 0x40 : r + 0x80] = bytes(range(0xA0, 0xE0))  # F: uninitialised heap bytes
        b[r + 0x80 : r + 0xC0] = _w(t.active, 64)
        b[r + 0xC0 : r + 0x100] = _w(t.reference, 64)
        struct.pack_into("<4dHHd", b, r + 0x100, 0.5, 70.0, t.sfreq, t.resolution, 0, 50, t.eeg_offset)
    return bytes(b)


def _channel_section(traces: list[Trace]) -> bytes:
    b = bytearray(760 + 216 * len(traces))
    b[:16] = _g(CHANNEL)
    struct.pack_into("<II", b, 752, len(traces), len(traces))
    for i, t in enumerate(traces):
        r = 760 + 216 * i
        b[r : r + 64] = _w(t.active, 64)
        struct.pack_into("<dIII", b, r + 64, t.sfreq, 1, i, i)  # bOn = 1
    return bytes(b)


def _signalinfo(traces: list[Trace]) -> bytes:
    b = bytearray(752 + 384 * len(traces))
    b[:16] = _g(SIGNALINFO)
    struct.pack_into("<H", b, 744, len(traces))
    for i, t in enumerate(traces):
        r = 752 + 384 * i
        b[r : r + 64] = _w(t.active, 64)
        b[r + 64 : r + 96] = _w(t.unit, 32)
    return bytes(b)


def _montage(guid: str) -> bytes:
    b = bytearray(752)
    b[:16] = _g(guid)
    b[40 : 40 + 64] = _w("Referential", 64)
    return bytes(b)


def _patient(patient: dict | None) -> bytes:
    patient = patient or {}
    values = [(PATIENT_IDS[k], v) for k, v in patient.items() if isinstance(v, dt.date)]
    strings = [(PATIENT_IDS[k], v) for k, v in patient.items() if isinstance(v, str)]
    body = b"".join(struct.pack("<Qd", i, ole(dt.datetime.combine(v, dt.time()))) for i, v in values)
    body += b"".join(struct.pack("<QQ", i, len(v.encode("utf-16-le")) // 2) for i, v in strings)
    body += b"".join((v + "\0").encode("utf-16-le") for _, v in strings)
    return _g(PATIENTINFO) + struct.pack("<QQQ", 40 + len(body), len(values), len(strings)) + body


def event_packet(e: Event, start: dt.datetime) -> bytes:
    """One event packet: 272 bytes, or longer when the text does not fit (A, F)."""
    text = (e.text + "\0").encode("utf-16-le") if e.text else b""
    b = bytearray(max(272, 0x108 + len(text)))
    b[:16] = _g(EVENT_GUID)
    struct.pack_into("<QQ", b, 16, len(b), 1)
    whole = e.onset.replace(microsecond=0)
    struct.pack_into("<3d", b, 0x20, ole(whole), e.onset.microsecond / 1e6, e.duration)
    b[0x68:0x80] = _w(e.user, 24)
    struct.pack_into("<Q", b, 0x80, len(e.text.encode("utf-16-le")) // 2)
    b[0x88:0x98] = _g(e.type_guid)
    b[0xA8:0xE8] = _w(e.channel, 64)
    b[0x108 : 0x108 + len(text)] = text
    return bytes(b)


def write_nicolet(
    path: str | Path,
    traces: list[Trace],
    segments: list[tuple[dt.datetime, float]],
    samples: list[np.ndarray],
    *,
    events: list[Event] = (),
    patient: dict | None = None,
    blocks: int = 3,
    index_blocks: int = 2,
    split: tuple[str, ...] = ("Events", TS),
    pad: int = 16,
    second_tsinfo: list[Trace] | None = None,
    dynamic_tsinfo: bool = True,
    events_tail: bytes = b"",
) -> Layout:
    """Write ``samples[i]`` (int16, all segments back to back) of ``traces[i]``; return the layout."""
    start = segments[0][0]
    ts = _tsinfo(traces)
    ts_section = ts + (_tsinfo(second_tsinfo) if second_tsinfo is not None else b"")
    ics = b""
    if dynamic_tsinfo:
        for off, n in [(0, len(ts))] + ([(len(ts), len(ts_section) - len(ts))] if second_tsinfo is not None else []):
            ics += _g(TS) + struct.pack("<ddQQ", ole(start), 0.0, off, n)
    seg = b"".join(struct.pack("<d8xd128x", ole(s), d) for s, d in segments)
    info_guids = b"".join(_g(g) for g in (TS, CHANNEL, SIGNALINFO, DERIVATION, DISPLAY, PATIENTINFO))
    payload = {
        "SegmentStream": seg, "InfoChangeStream": ics, "InfoGuids": info_guids,
        "Events": b"".join(event_packet(e, start) for e in events) + events_tail,
        TS: ts_section, CHANNEL: _channel_section(traces), SIGNALINFO: _signalinfo(traces),
        DERIVATION: _montage(DERIVATION), DISPLAY: _montage(DISPLAY), PATIENTINFO: _patient(patient),
    }
    names = ["ExtraDataTags", *payload, *(str(i) for i in range(len(traces)))]
    sec = {n: k for k, n in enumerate(names)}  # tag index = position in the tag table

    first, late = [], []  # (name, bytes) in file order
    for n, data in payload.items():
        if n in split:
            cut = len(data) // 2
            first.append((n, data[:cut]))
            late.append((n, data[cut:]))
        else:
            first.append((n, data))
    chunks = [[c for c in np.array_split(np.asarray(x, "<i2"), blocks) if c.size] or [np.zeros(0, "<i2")]
              for x in samples]
    order = first + [(str(i), chunks[i][0].tobytes()) for i in range(len(traces))] + late
    for b in range(1, blocks):
        order += [(str(i), chunks[i][b].tobytes()) for i in range(len(traces)) if b < len(chunks[i])]

    per = -(-len(order) // index_blocks)
    groups = [order[k : k + per] for k in range(0, len(order), per)]
    lay = Layout(n_tags=len(names), sections={n: [] for n in names})
    at = INDEX_START
    for g in groups:
        lay.index_blocks.append(at)
        at += 16 + 24 * len(g)
    lay.data_start = at
    body = bytearray()
    for n, data in order:
        alloc = -(-max(len(data), 1) // pad) * pad
        lay.entries.append((sec[n], at, alloc, len(data)))
        lay.sections[n].append((at, len(data)))
        body += data.ljust(alloc, b"\0")
        at += alloc

    head = bytearray(INDEX_START)
    head[:16] = MAGIC
    struct.pack_into("<I", head, 24, INDEX_START)
    struct.pack_into("<I", head, 172, len(names))
    for k, n in enumerate(names):
        head[176 + 84 * k : 176 + 84 * k + 80] = _w(n, 80)
        struct.pack_into("<I", head, 176 + 84 * k + 80, k)
    struct.pack_into("<IIIIQ", head, QI_OFFSET, len(order), 0, INDEX_START, 0, 0)
    index = bytearray()
    e = 0
    for gi, g in enumerate(groups):
        nxt = lay.index_blocks[gi + 1] if gi + 1 < len(groups) else 0
        index += struct.pack("<Q", len(g))
        for _ in g:
            lay.entry_at.append(INDEX_START + len(index))
            index += struct.pack("<QQII", *lay.entries[e])
            e += 1
        index += struct.pack("<Q", nxt)
    data = bytes(head) + bytes(index) + bytes(body)
    Path(path).write_bytes(data)
    lay.size = len(data)
    return lay
