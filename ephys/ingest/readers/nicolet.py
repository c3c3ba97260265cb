"""Buffered reader for Nicolet/Natus NervusEEG ``.e`` files (the 2012+ indexed layout).

There is no vendor specification. Every format fact below comes from the public readers,
cited by letter as in the project notes (``docs``: formats-trc-nicolet.md, section 2):

* **A** ``ieeg-portal/Nicolet-Reader : @NicoletFile/NicoletFile.m`` (Apache-2.0; J. Wagenaar,
  C. Donos, A. Barborica, J. Brogger, C. Stewart): tag table, QI block, chained main index,
  InfoChangeStream dynamic packets, TSInfo, segments, events (user, text), patient info.
* **F** ``BellaNes-Systems/eeg2edf : src/eeg2edf/nicolet/nicolet.py`` (Apache-2.0): magic GUID,
  ``sectionL`` (not ``blockL``) as payload length, index spans ending at EOF, per-channel int16
  streams with segments back to back, events walked by their length field and read to the
  first NUL, uninitialised bytes at TSInfo +0x40, ``Σ round(duration × fs)`` check.
* **C** neo PR #1750 ``nicoletrawio.py`` (BSD-3) and **B/E** (FieldTrip ``read_nervus_*.m`` and
  e2edfconverter, GPL-3: consulted through the notes only, no code used): ``eeg_offset`` at
  TSInfo +0x124, static TSInfo fallback, UTC-vs-local time question.

This module is written from those layout facts; no code was copied. Three semantics are
disputed between the sources and are explicit constructor options instead of guesses:
sample polarity (A/B/C/E: ``raw × resolution``; F: ``−raw × resolution``), whether
``eeg_offset`` is added (C/E yes; A/B/F no), and the time zone of OLE dates (C: UTC; others:
naive local time).

I/O: the file is opened once, unbuffered (``buffering=0``). The tag table and QI block come
in one read, each main-index block in one read, all small info sections in a few coalesced
reads, and signal blocks with ``readinto`` into one preallocated buffer, sorted by file
offset and coalesced across small gaps. No ``mmap``/``np.memmap``/``np.fromfile``.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import math
import os
import struct
import uuid
import zoneinfo
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ephys.errors import (
    CorruptFileError, EmptyFileError, EphysError, UnreadableFileError, UnsupportedFormatError, WrongMagicError,
)
from ephys.ingest.channels import channel_kind, parse_label, unit_to_uv
from ephys.ingest.readers.bufio import open_for_reading
from ephys.ingest.readers.base import DEFAULT_BUFFER_BYTES, PatientInfo, Reader
from ephys.schemas import Annotation, ChannelInfo, RecordingHeader, Segment

#: Bytes 0-15, ``{1C7BC30F-2DCF-4B6D-8AEA-1F64CED2B917}`` in Windows mixed-endian order (F).
MAGIC = uuid.UUID("1C7BC30F-2DCF-4B6D-8AEA-1F64CED2B917").bytes_le
#: Packet GUID of every event in the ``Events`` section (A).
EVENT_GUID = uuid.UUID("B799F680-72A4-11D3-93D3-00500400C148").bytes_le
TS_GUID = "{A271CCCB-515D-4590-B6A1-DC170C8D6EE2}"  # TSInfo, the channel table (A)
SIGNALINFO_GUID = "{8032E68A-EA3E-42E8-893E-6E93C59ED515}"  # sensor name -> unit string (A, C)
PATIENTINFO_GUID = "{D0B3FD0B-49D9-4BF0-8929-296DE5A55910}"  # patient identity (A)

INDEX_PTR, TAG_COUNT, TAG_TABLE, TAG_SIZE = 24, 172, 176, 84  # container header (A, F)
QI_OFFSET = 172208  # u32 nrEntries = number of main-index entries (A)
HEAD_BYTES = 188664  # tag table + QI block: one read (A: QIIndex2 starts here)
MAX_TAGS = (QI_OFFSET - TAG_TABLE) // TAG_SIZE
TS_COUNT, TS_FIRST, TS_STRIDE = 752, 760, 552  # TSInfo (A, F)
SEG_STRIDE = 152  # SegmentStream records: f64 OLE start at 0, f64 duration (s) at 16 (A, F)
ICS_STRIDE = 48  # InfoChangeStream records (A)
EVENT_MIN = 272  # base event packet length (A, F)
OLE_EPOCH = _dt.datetime(1899, 12, 30)
TREND_MAX_HZ = 2.0  # derived trend channels are sampled at about 1 Hz (F)
HEADER_GAP = 1 << 16  # header sections closer than this are read in one request
SIGNAL_GAP = 1 << 20  # read through gaps up to this size rather than issue another request
#: Event types whose label all sources agree on (A, C, F). Seizure/Hyperventilation GUIDs
#: (A5A95646, A5A95608, A5A95611) are mapped differently by A and F, so they get no label.
EVENT_TYPES = {
    "{A5A95612-A7F8-11CF-831A-0800091B5BDA}": "Annotation",
    "{08784382-C765-11D3-90CE-00104B6F4F70}": "Format change",
    "{6FF394DA-D1B8-46DA-B78F-866C67CF02AF}": "Photic",
    "{481DFC97-013C-4BC5-A203-871B0375A519}": "Post hyperventilation",
    "{725798BF-CD1C-4909-B793-6C7864C27AB7}": "Review progress",
    "{96315D79-5C24-4A65-B334-E31A95088D55}": "Exam start",
    "{A5A95617-A7F8-11CF-831A-0800091B5BDA}": "Impedance",
}


class Trace(NamedTuple):
    """One TSInfo record (A, F): label, sensors, rate (Hz), resolution (unit/LSB), eeg_offset."""

    label: str
    active: str
    reference: str
    sfreq: float
    resolution: float
    eeg_offset: float


def _wstr(b: bytes, at: int, nchars: int) -> str:
    """UTF-16LE text of at most ``nchars`` code units, cut at the first NUL (F: stale tails follow)."""
    return b[at : at + 2 * nchars].decode("utf-16-le", "replace").split("\x00", 1)[0].strip()


def _guid(b: bytes) -> str:
    return "{" + str(uuid.UUID(bytes_le=bytes(b[:16]))).upper() + "}"


def _corrupt(reason: str, path: str) -> CorruptFileError:
    return CorruptFileError("corrupt .e: " + reason, path)


class NicoletReader(Reader):
    """A Nicolet/Natus ``.e`` recording.

    Parameters
    ----------
    path : path-like
        The ``.e`` file.
    buffer_bytes : int
        Size of the one preallocated read buffer (default 8 MiB, at least 16 bytes).
    polarity : {1, -1}
        ``1`` (default): physical = ``raw × resolution`` as in A, B, C and E; ``-1``: inverted,
        as F argues from the vendor viewer. Validate against a vendor EDF export.
    apply_eeg_offset : bool
        Add TSInfo ``eeg_offset`` (f64 at +0x124; C and E add it, A/B/F do not). Default ``False``.
    timezone : str, tzinfo or None
        Zone of the file's OLE dates, attached to ``patient.start`` (``"UTC"`` as C assumes, or an
        IANA name). Default ``None``: naive wall-clock time as stored. Relative times do not depend on it.

    Signals are float32 µV (physical units for non-voltage channels): ``(polarity × raw ×
    resolution + offset) × to_uv``. Trend channels (rate ≤ 2 Hz or no reference sensor, F) have
    kind ``"misc"``.

    Raises
    ------
    EmptyFileError, WrongMagicError, UnsupportedFormatError, CorruptFileError, UnreadableFileError
        For a zero-byte file; a file not starting with the NervusEEG GUID; an old-format file
        (main-index pointer 0, B) or a channel table that changes during the recording; any
        inconsistency (message starts ``"corrupt .e:"``); an OS error.
    ValueError
        For a bad option value.
    """

    def __init__(self, path: str | os.PathLike, buffer_bytes: int = DEFAULT_BUFFER_BYTES, *, polarity: int = 1,
                 apply_eeg_offset: bool = False, timezone: str | _dt.tzinfo | None = None):
        if polarity not in (1, -1):
            raise ValueError(f"polarity must be 1 or -1, not {polarity!r}")
        if int(buffer_bytes) < 16:
            raise ValueError("buffer_bytes must be at least 16")
        if isinstance(timezone, str):
            try:
                timezone = _dt.UTC if timezone.upper() == "UTC" else zoneinfo.ZoneInfo(timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {timezone!r}") from None
        self.path, self._p = Path(path), str(path)
        self.buffer_bytes = int(buffer_bytes) & ~1
        self.polarity, self.apply_eeg_offset, self.timezone = polarity, bool(apply_eeg_offset), timezone
        self._buf: bytearray | None = None
        self._f = open_for_reading(self.path)
        try:
            self._parse()
        except EphysError:
            self._f.close()
            raise
        except (struct.error, ValueError, OverflowError, IndexError, UnicodeError) as exc:
            self._f.close()  # safety net: never leak a raw exception (or its field values) on bad bytes
            raise _corrupt(f"inconsistent header ({type(exc).__name__})", self._p) from None
        except BaseException:
            self._f.close()
            raise

    # -- low level ------------------------------------------------------------------------
    def _readinto_at(self, offset: int, view: memoryview) -> int:
        try:
            return self._f.readinto_at(offset, view)
        except OSError as exc:
            raise UnreadableFileError(f"read failed: {exc.strerror or exc}", self._p) from None

    def _pread(self, offset: int, n: int, what: str) -> bytes:
        buf = bytearray(n)
        if self._readinto_at(offset, memoryview(buf)) < n:
            raise _corrupt(f"file ends inside the {what} (byte {offset + n} of {self._size})", self._p)
        return bytes(buf)

    def _gather(self, spans: list[tuple[int, int]], gap: int = HEADER_GAP) -> list[bytes]:
        """Bytes of each ``(offset, length)`` span, read in coalesced requests sorted by offset."""
        try:
            parts = self._f.read_ranges(spans, gap)
        except OSError as exc:
            raise UnreadableFileError(f"read failed: {exc.strerror or exc}", self._p) from None
        for (offset, n), part in zip(spans, parts):
            if len(part) < n:
                raise _corrupt(f"file ends inside the header sections (byte {offset + n} of {self._size})", self._p)
        return parts

    def close(self) -> None:
        self._f.close()

    # -- container ------------------------------------------------------------------------
    def _parse(self) -> None:
        p = self._p
        self._size = size = os.fstat(self._f.fileno()).st_size
        if size == 0:
            raise EmptyFileError("file is empty (0 bytes)", p)
        head = self._pread(0, min(size, HEAD_BYTES), "header")
        if head[:16] != MAGIC:
            if len(head) < 16 and MAGIC.startswith(head):
                raise _corrupt(f"truncated to {size} bytes inside the magic GUID", p)
            raise WrongMagicError("not a Nicolet .e file: bytes 0-15 are not the NervusEEG GUID", p)
        if size < QI_OFFSET + 24:
            raise _corrupt(f"truncated: {size} bytes, the tag table and QI index need {QI_OFFSET + 24}", p)
        index_ptr = struct.unpack_from("<I", head, INDEX_PTR)[0]
        if index_ptr == 0:
            raise UnsupportedFormatError(
                "old-format Nicolet .e (main-index pointer is 0, pre-2012 layout) is not supported", p
            )
        n_tags = struct.unpack_from("<I", head, TAG_COUNT)[0]
        if n_tags > MAX_TAGS:
            raise _corrupt(f"tag count {n_tags} exceeds the {MAX_TAGS} that fit before the QI index", p)
        tags: dict[str, int] = {}  # name -> section id; the first tag of a name wins (F)
        for at in range(TAG_TABLE, TAG_TABLE + n_tags * TAG_SIZE, TAG_SIZE):
            tags.setdefault(_wstr(head, at, 40), struct.unpack_from("<I", head, at + 80)[0])
        n_entries = struct.unpack_from("<I", head, QI_OFFSET)[0]
        self._sections = self._read_index(index_ptr, n_entries)
        self._tags = tags

        wanted = ["InfoChangeStream", TS_GUID, SIGNALINFO_GUID, "SegmentStream", "Events", PATIENTINFO_GUID]
        spans = {n: self._sections.get(tags[n], []) for n in wanted if n in tags}
        flat = [s for n in spans for s in spans[n]]
        raw, data, k = self._gather(flat), {}, 0
        for n, blocks in spans.items():
            data[n], k = b"".join(raw[k : k + len(blocks)]), k + len(blocks)

        traces = self._tsinfo(data)
        starts, durations, d0 = self._segments(data.get("SegmentStream"))
        self._blocks = [self._channel_blocks(i, t, durations) for i, t in enumerate(traces)]
        self._events = self._walk_events(data.get("Events", b""), d0)
        units = self._units(data.get(SIGNALINFO_GUID, b""))
        self.traces = traces
        self.header = RecordingHeader(
            format="nicolet_e", channels=[self._channel(i, t, units) for i, t in enumerate(traces)],
            duration_s=float(sum(durations)),
            segments=[Segment(start_s=s, duration_s=d) for s, d in zip(starts, durations)],
        )
        self.patient = self._patient(data.get(PATIENTINFO_GUID), d0)

    def _read_index(self, ptr: int, n_entries: int) -> dict[int, list[tuple[int, int]]]:
        """Main index (A): chained blocks ``u64 n, n × {u64 section, u64 offset, u32 blockL,
        u32 sectionL}, u64 next`` until the QI ``nrEntries`` count. Payload length is ``sectionL`` (F)."""
        p, size = self._p, self._size
        if n_entries * 24 > size:
            raise _corrupt(f"QI index lists {n_entries} main-index entries, more than the file can hold", p)
        dtype = np.dtype([("section", "<u8"), ("offset", "<u8"), ("block", "<u4"), ("length", "<u4")])
        parts, got, seen = [], 0, set()
        while got < n_entries:
            if ptr in seen or ptr + 16 > size:
                raise _corrupt(f"main-index block pointer {ptr} loops or lies past the end of the file", p)
            seen.add(ptr)
            blk = self._pread(ptr, min(size - ptr, 16 + 24 * (n_entries - got)), "main index")
            n = struct.unpack_from("<Q", blk)[0]
            if not 0 < n <= n_entries - got or 16 + 24 * n > len(blk):
                raise _corrupt(f"main-index block at byte {ptr} holds {n} entries; {n_entries - got} remain", p)
            parts.append(np.frombuffer(blk, dtype, n, 8))
            got += n
            ptr = struct.unpack_from("<Q", blk, 8 + 24 * n)[0]
        idx = np.concatenate(parts) if parts else np.zeros(0, dtype)
        ends = idx["offset"] + np.maximum(idx["block"], idx["length"]).astype(np.uint64)
        bad = np.flatnonzero((idx["offset"] > size) | (ends > size))
        if bad.size:
            e = idx[bad[0]]
            raise _corrupt(f"main-index entry {bad[0]} (section {e['section']}) at byte {e['offset']} "
                           f"runs past the end of the file ({size} bytes)", p)
        sections: dict[int, list[tuple[int, int]]] = {}
        for s, o, n in zip(idx["section"].tolist(), idx["offset"].tolist(), idx["length"].tolist()):
            sections.setdefault(s, []).append((o, n))  # payload = blocks in index order (A)
        return sections

    # -- info sections --------------------------------------------------------------------
    def _tsinfo(self, data: dict[str, bytes]) -> list[Trace]:
        """Channel table: the TSGUID packets named by InfoChangeStream (A: 48-byte records, GUID,
        f64 date, f64 fraction, u64 offset into the TSGUID section, u64 size), else the static
        section (B/E). ``u32`` count at 752, 552-byte records from 760 (A, F)."""
        p, section = self._p, data.get(TS_GUID)
        if section is None:
            raise _corrupt("no TSInfo (channel table) section", p)
        ics, packets = data.get("InfoChangeStream", b""), []
        if len(ics) % ICS_STRIDE:
            raise _corrupt(f"InfoChangeStream is {len(ics)} bytes, not a multiple of {ICS_STRIDE}", p)
        for at in range(0, len(ics), ICS_STRIDE):
            if _guid(ics[at : at + 16]) == TS_GUID:
                start, n = struct.unpack_from("<QQ", ics, at + 32)
                if start + n > len(section):
                    raise _corrupt(f"a TSInfo packet ({start}+{n}) exceeds its {len(section)}-byte section", p)
                packets.append(section[start : start + n])
        tables = [self._parse_tsinfo(pkt) for pkt in (packets or [section])]
        key = [t[:5] for t in tables[0]]
        if any([t[:5] for t in tab] != key for tab in tables[1:]):
            raise UnsupportedFormatError("the channel table (TSInfo) changes during the recording; not supported", p)
        return tables[0]

    def _parse_tsinfo(self, pkt: bytes) -> list[Trace]:
        n = struct.unpack_from("<I", pkt, TS_COUNT)[0] if len(pkt) >= TS_FIRST else 0
        if n == 0 or TS_FIRST + n * TS_STRIDE > len(pkt):
            raise _corrupt(f"TSInfo lists {n} channels but its packet holds {len(pkt)} bytes", self._p)
        out = []
        for i in range(n):
            r = TS_FIRST + i * TS_STRIDE  # label 0x00, garbage 0x40 (F), active 0x80, reference 0xC0
            rate, res = struct.unpack_from("<2d", pkt, r + 0x110)
            offset = struct.unpack_from("<d", pkt, r + 0x124)[0]
            if not (math.isfinite(rate) and 0 < rate <= 1e6 and abs(res) < 1e9):  # NaN fails too
                raise _corrupt(f"channel {i}: sampling rate or resolution is invalid", self._p)
            if self.apply_eeg_offset and not abs(offset) < 1e12:
                raise _corrupt(f"channel {i}: eeg_offset is invalid", self._p)
            label, active = _wstr(pkt, r, 32), _wstr(pkt, r + 0x80, 32)
            out.append(Trace(label or active or f"ch{i}", active, _wstr(pkt, r + 0xC0, 32), rate, res, offset))
        return out

    def _segments(self, seg: bytes | None) -> tuple[list[float], list[float], float]:
        """SegmentStream (A, F): starts (s from the first segment), durations (s), first OLE date."""
        if not seg or len(seg) % SEG_STRIDE:
            raise _corrupt(f"SegmentStream is {len(seg or b'')} bytes, not a positive multiple of 152", self._p)
        recs = [struct.unpack_from("<d8xd", seg, at) for at in range(0, len(seg), SEG_STRIDE)]
        d0, starts, durations = recs[0][0], [], []
        for i, (date, dur) in enumerate(recs):
            start = (date - d0) * 86400.0
            if not (math.isfinite(date) and math.isfinite(dur) and 0 <= dur < 1e9 and math.isfinite(start)):
                raise _corrupt(f"segment {i} has an invalid start date or duration", self._p)
            if starts and start < starts[-1]:
                raise _corrupt(f"segment {i} starts before segment {i - 1}", self._p)
            starts.append(round(start, 6))
            durations.append(dur)
        return starts, durations, d0

    def _channel_blocks(self, i: int, t: Trace, durations: list[float]) -> tuple[list[int], list[int], list[int]]:
        """File offsets, sample counts and first sample of each block of channel ``i``'s int16
        stream (section tagged ``str(i)``, A/F), checked against ``Σ round(duration × fs)`` (F)."""
        if str(i) not in self._tags:
            raise _corrupt(f"no sample stream (tag '{i}') for channel {i}", self._p)
        blocks = self._sections.get(self._tags[str(i)], [])
        if any(n % 2 for _, n in blocks):
            raise _corrupt(f"channel {i}: a block holds an odd number of bytes", self._p)
        counts = [n // 2 for _, n in blocks]
        want = sum(math.floor(d * t.sfreq + 0.5) for d in durations)  # MATLAB round (A)
        if want != sum(counts):
            raise _corrupt(f"segment lengths give {want} samples for channel {i} but {sum(counts)} are stored", self._p)
        firsts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)[:-1]]).tolist() if counts else []
        return [o for o, _ in blocks], counts, firsts

    def _units(self, sig: bytes) -> dict[str, str]:
        """SIGNALINFO (A, C): ``u16`` count at 744, 384-byte records from 752: ``wchar[32]`` sensor
        name, ``wchar[16]`` transducer (unit). Optional; units default to µV (F: resolution is µV/LSB)."""
        if len(sig) < 752:
            return {}
        n = struct.unpack_from("<H", sig, 744)[0]
        if 752 + 384 * n > len(sig):
            raise _corrupt(f"SIGNALINFO lists {n} sensors but holds {len(sig)} bytes", self._p)
        return {_wstr(sig, r, 32): _wstr(sig, r + 64, 16) for r in range(752, 752 + 384 * n, 384)}

    def _channel(self, i: int, t: Trace, units: dict[str, str]) -> ChannelInfo:
        unit = units.get(t.active) or "uV"
        to_uv = unit_to_uv(unit)
        parsed = parse_label(t.label)
        trend = t.sfreq <= TREND_MAX_HZ or not t.reference
        add = t.eeg_offset if self.apply_eeg_offset else 0.0
        lo, hi = (self.polarity * t.resolution * d + add for d in (-32768, 32767))
        return ChannelInfo(
            index=i, label=t.label, name=parsed.name, kind="misc" if trend else channel_kind(parsed, to_uv),
            sfreq=t.sfreq, unit=unit, to_uv=to_uv, physical_min=lo, physical_max=hi, digital_min=-32768,
            digital_max=32767, reference=parsed.reference or t.reference or None,
        )

    def _walk_events(self, ev: bytes, d0: float) -> list[Annotation]:
        """Events section (A, F): packets of GUID, ``u64`` length (≥ 272), f64 OLE date at 0x20, f64
        seconds fraction at 0x28, f64 duration at 0x30, ``wchar[12]`` user at 0x68, ``u64`` text length
        at 0x80, type GUID at 0x88, text from 0x108 (to the first NUL, F). Must consume the section."""
        out, at, p = [], 0, self._p
        while at < len(ev):
            n = struct.unpack_from("<Q", ev, at + 16)[0] if len(ev) - at >= EVENT_MIN else 0
            if ev[at : at + 16] != EVENT_GUID or not EVENT_MIN <= n <= len(ev) - at:
                raise _corrupt(f"events section: {len(ev) - at} bytes at byte {at} are not an event packet", p)
            pkt, at = ev[at : at + n], at + n
            date, frac, dur = struct.unpack_from("<3d", pkt, 0x20)
            onset = (date - d0) * 86400.0 + frac
            if not (math.isfinite(onset) and math.isfinite(dur) and dur >= 0):
                raise _corrupt(f"event {len(out)} has an invalid date or duration", p)
            text_len = struct.unpack_from("<Q", pkt, 0x80)[0]
            room = (n - 0x108) // 2
            code = _guid(pkt[0x88:0x98])
            text = _wstr(pkt, 0x108, min(room, text_len) if text_len else room)
            out.append(Annotation(onset_s=round(onset, 6), duration_s=dur, text=text or EVENT_TYPES.get(code, code),
                                  source="nicolet", author=_wstr(pkt, 0x68, 12) or None, code=code))
        return out

    def _patient(self, raw: bytes | None, d0: float) -> PatientInfo:
        """PATIENTINFO (A): GUID, u64 length, u64 nrValues, u64 nrBstr; nrValues × u64 id (+ f64 for ids
        7, 8 (OLE dates) and 23, 24); nrBstr × (u64 id, u64 len); strings of len+1 UTF-16 units.
        Ids: 1 patientID, 2 first, 3 middle, 4 last, 5 altID, 6 mother's maiden name, 7 DOB, 10 sex."""
        start = self._ole(d0)
        if start is not None and self.timezone is not None:
            start = start.replace(tzinfo=self.timezone)
        if not raw:
            return PatientInfo(start=start)  # anonymised files have no patient block (A)
        bad = _corrupt("patient-info block is inconsistent", self._p)
        if len(raw) < 40:
            raise bad
        n_vals, n_str = struct.unpack_from("<QQ", raw, 24)
        pos, values, strings = 40, {}, {}
        if n_vals > (len(raw) - pos) // 8:
            raise bad
        for _ in range(n_vals):
            (pid,) = struct.unpack_from("<Q", raw, pos)
            pos += 8
            if pid in (7, 8, 23, 24):
                values[pid] = struct.unpack_from("<d", raw, pos)[0]
                pos += 8
        if n_str > (len(raw) - pos) // 16:
            raise bad
        pairs = [struct.unpack_from("<QQ", raw, pos + 16 * k) for k in range(n_str)]
        pos += 16 * n_str
        for pid, n in pairs:
            if pos + 2 * (n + 1) > len(raw):
                raise bad
            strings[pid] = _wstr(raw, pos, n + 1)
            pos += 2 * (n + 1)
        dob = self._ole(values[7]) if 7 in values else None
        return PatientInfo(
            patient_id=strings.get(1) or strings.get(5) or "",
            ids=[strings[k] for k in (1, 5) if strings.get(k)],
            names=[strings[k] for k in (2, 3, 4, 6) if strings.get(k)],
            birthdate=dob.date().isoformat() if dob else None, sex=strings.get(10) or None, start=start,
        )

    @staticmethod
    def _ole(days: float) -> _dt.datetime | None:
        """OLE automation date (days since 1899-12-30), rounded to the ms as F does; None if out of range."""
        if not (math.isfinite(days) and 1 <= days < 2958466):
            return None
        return OLE_EPOCH + _dt.timedelta(milliseconds=round(days * 86400000.0))

    # -- signals --------------------------------------------------------------------------
    def annotations(self) -> list[Annotation]:
        """Events in file order: onset/duration in s from the first segment's start, ``text`` the free
        text (else an undisputed type name, else the type GUID), ``author`` the user as stored, ``code``
        the event-type GUID ``"{XXXXXXXX-...}"``."""
        return list(self._events)

    def _scale(self, c: int) -> tuple[float, float]:
        t, to_uv = self.traces[c], self.header.channels[c].to_uv or 1.0
        return self.polarity * t.resolution * to_uv, (t.eeg_offset if self.apply_eeg_offset else 0.0) * to_uv

    def _stream(self, pieces: list[tuple[int, int, np.ndarray, int, int]]) -> None:
        """Fill ``out[dst:dst+n]`` for each ``(file_offset, n_samples, out, dst, channel)`` piece.

        Pieces are split to the buffer size, sorted by file offset and coalesced into requests
        of at most ``buffer_bytes``, reading through gaps up to 1 MiB (or half the buffer).
        """
        size = min(self.buffer_bytes, (self._size + 1) & ~1)  # no 8 MiB buffer for a 1 MiB file
        gap = min(SIGNAL_GAP, size // 2)
        split = []
        for off, n, out, dst, c in pieces:
            for k in range(0, n, size // 2):
                split.append((off + 2 * k, min(size // 2, n - k), out, dst + k, c))
        split.sort(key=lambda s: s[0])
        if (self._buf is None or len(self._buf) < size) and split:
            self._buf = bytearray(size)
        i = 0
        while i < len(split):
            lo = split[i][0]
            hi, j = lo + 2 * split[i][1], i + 1
            while j < len(split) and split[j][0] <= hi + gap and split[j][0] + 2 * split[j][1] <= lo + size:
                hi, j = max(hi, split[j][0] + 2 * split[j][1]), j + 1
            if self._readinto_at(lo, memoryview(self._buf)[: hi - lo]) < hi - lo:
                raise _corrupt(f"file ends inside signal data (byte {hi})", self._p)
            for off, n, out, dst, c in split[i:j]:
                scale, add = self._scale(c)
                raw = np.frombuffer(self._buf, "<i2", n, off - lo)
                out[dst : dst + n] = raw * scale + add
            i = j

    def n_samples(self, c: int) -> int:
        """Samples stored for channel ``c`` (all segments)."""
        return sum(self._blocks[c][1])

    def read_channels(self, channels: list[int]) -> list[np.ndarray]:
        """Whole-recording signals, one float32 µV array of shape ``(n_samples(c),)`` per channel,
        segments concatenated in time order, rates may differ. Raises ValueError for a bad index."""
        for c in channels:
            if not 0 <= c < len(self.traces):
                raise ValueError(f"channel {c} does not exist")
        out = [np.empty(self.n_samples(c), np.float32) for c in channels]
        pieces = [(o, n, arr, f, c) for arr, c in zip(out, channels) for o, n, f in zip(*self._blocks[c])]
        self._stream(pieces)
        return out

    def read(self, start: int, stop: int, channels: list[int]) -> np.ndarray:
        """Samples ``[start, stop)`` of same-rate channels: float32 µV, shape ``(n_channels, stop - start)``.

        Reads only the blocks that overlap the range. Raises ValueError for mixed rates or a bad range.
        """
        if not channels:
            return np.zeros((0, max(stop - start, 0)), np.float32)
        for c in channels:
            if not 0 <= c < len(self.traces):
                raise ValueError(f"channel {c} does not exist")
        self._check_range(start, stop, channels, self.n_samples(channels[0]))
        out = np.empty((len(channels), stop - start), np.float32)
        pieces = []
        for row, c in enumerate(channels):
            offs, counts, firsts = self._blocks[c]
            for b in range(max(bisect.bisect_right(firsts, start) - 1, 0), len(offs)):
                if firsts[b] >= stop:
                    break
                a, z = max(start, firsts[b]), min(stop, firsts[b] + counts[b])
                if z > a:
                    pieces.append((offs[b] + 2 * (a - firsts[b]), z - a, out[row], a - start, c))
        self._stream(pieces)
        return out
