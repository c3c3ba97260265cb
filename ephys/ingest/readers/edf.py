"""Buffered reader for EDF, EDF+ (C and D), BDF and BDF+.

Format facts: Kemp et al., "A simple format for exchange of digitized polygraphic
recordings", EEG Clin Neurophysiol 82 (1992) 391-393 (EDF); Kemp & Olivan, "European
data format 'plus' (EDF+)", Clin Neurophysiol 114 (2003) 1755-1761 (EDF+, TALs,
discontinuous files); BioSemi's BDF notes (24-bit little-endian samples,
``0xFF"BIOSEMI"`` magic). Written from the specifications; MNE's and pyEDFlib's
readers were used only to cross-check values in the tests.

The file is opened once, unbuffered at the OS level, and read in large
sequential chunks with ``readinto`` into one preallocated buffer (never
``mmap``). The file size is checked against the header before any sample is
read, so a file damaged in transfer (e.g. CR bytes inserted before every LF) is
refused as corrupt instead of being read with shifted samples.
"""

from __future__ import annotations

import math
import os
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from ephys.errors import CorruptFileError, EmptyFileError, InProgressError, WrongMagicError
from ephys.ingest.channels import channel_kind, parse_label, unit_to_uv
from ephys.ingest.readers.bufio import open_for_reading
from ephys.ingest.readers.base import DEFAULT_BUFFER_BYTES, PatientInfo, Reader
from ephys.schemas import Annotation, ChannelInfo, RecordingHeader, Segment

EDF_MAGIC = b"0       "
BDF_MAGIC = b"\xffBIOSEMI"
MAX_SIGNALS = 4096
_FIELDS = (("label", 16), ("transducer", 80), ("unit", 8), ("pmin", 8), ("pmax", 8),
           ("dmin", 8), ("dmax", 8), ("prefilter", 80), ("spr", 8), ("reserved", 32))


#: Bounds beyond which a header field is damage, not data: samples per record (2^31 keeps offsets in
#: int64 arithmetic; real files use at most a few hundred thousand) and total duration (a year).
MAX_SPR = 2**31 - 1
MAX_DURATION_S = 366 * 86400.0
#: Seconds an EDF whose header says ``number of data records = -1`` (still recording) must have been
#: unchanged before it is read (a writer that never closed it cleanly); younger ones are ``in_progress``.
IN_PROGRESS_SETTLE_S = 300.0


def sniff(head: bytes) -> str | None:
    """``'edf'``/``'bdf'`` when the first bytes look like an EDF/BDF header, else ``None``."""
    if head[:8] == BDF_MAGIC:
        return "bdf"
    if head[:8] == EDF_MAGIC and (len(head) < 192 or head[184:192].strip().isdigit()):
        return "edf"
    return None


def _decode(b: bytes) -> str:
    return b.decode("latin-1").strip()


def _number(text: str, what: str, path: str, kind=float):
    try:
        if kind is float:
            v = float(text.replace(",", "."))
        else:
            f = float(text)  # some writers put "256.000" in integer fields
            if not f.is_integer():
                raise ValueError
            v = int(f)
    except (ValueError, OverflowError):
        raise CorruptFileError(f"header field '{what}' is not a number ({text[:12]!r})", path) from None
    if kind is float and not math.isfinite(v):
        raise CorruptFileError(f"header field '{what}' is not finite", path)
    return v


def _parse_start(date: str, time: str) -> datetime | None:
    try:
        d, mo, y = (int(x) for x in date.split("."))
        h, mi, s = (int(x) for x in time.split("."))
        return datetime(1900 + y if y >= 85 else 2000 + y, mo, d, h, mi, s)
    except ValueError:
        return None


def _patient(field_: str, start: datetime | None, plus: bool) -> PatientInfo:
    """EDF+ patient field: ``code sex birthdate name`` (spaces inside subfields are '_')."""
    parts = field_.split()
    if plus and len(parts) >= 4:
        code, sex, birth = parts[0], parts[1], parts[2]
        names = [n for p in parts[3:] for n in p.replace("_", " ").split() if n.upper() != "X"]
        pid = "" if code.upper() == "X" else code
        return PatientInfo(pid, names, None if birth.upper() == "X" else birth, None if sex.upper() == "X" else sex, start)
    # Plain EDF: free text; use all of it as the identifier, every word as a possible name.
    words = [w for w in field_.replace("_", " ").replace(",", " ").split() if w.upper() != "X"]
    return PatientInfo(field_.strip() if words else "", words, None, None, start)


def _add_recording_identity(patient: PatientInfo, field_: str, plus: bool) -> None:
    """EDF+ recording field ``Startdate dd-MMM-yyyy admincode technician equipment`` (EDF+ spec 2.1.3.3):
    the admission code is an identifier and the technician a person, both scrubbed from annotation text."""
    parts = field_.split()
    if not (plus and len(parts) >= 4 and parts[0] == "Startdate"):
        return
    admin, tech = parts[2], parts[3]
    if admin.upper() != "X":
        patient.ids.append(admin)
    if tech.upper() != "X":
        patient.names.append(tech.replace("_", " "))


def parse_tals(raw: bytes, path: str, record: int) -> list[tuple[float, float, list[str]]]:
    """Time-stamped annotation lists of one data record of an annotation channel.

    Each TAL is ``+onset[\\x15duration]\\x14text\\x14...\\x14\\x00`` (EDF+ section 2.2.2).
    Text is UTF-8 per the specification; Latin-1 is accepted as a fallback.

    Raises
    ------
    CorruptFileError
        For a TAL whose onset or duration is not a number.
    """
    out = []
    for tal in raw.split(b"\x00"):
        if not tal:
            continue
        parts = tal.split(b"\x14")
        head = parts[0].split(b"\x15")
        try:
            onset_txt = head[0].decode("ascii")
            if onset_txt[:1] not in "+-" or len(head) > 2:
                raise ValueError
            onset = float(onset_txt)
            duration = float(head[1].decode("ascii")) if len(head) == 2 and head[1] else 0.0
            if not (math.isfinite(onset) and math.isfinite(duration)) or duration < 0:
                raise ValueError
        except (ValueError, UnicodeDecodeError):
            raise CorruptFileError(f"malformed annotation (TAL) in data record {record}", path) from None
        texts = []
        for t in parts[1:]:
            if not t:
                continue
            try:
                texts.append(t.decode("utf-8").strip())
            except UnicodeDecodeError:
                texts.append(t.decode("latin-1").strip())
        out.append((onset, duration, texts))
    return out


class EDFReader(Reader):
    """An EDF/EDF+/BDF/BDF+ recording.

    Parameters
    ----------
    path : path-like
        The ``.edf``/``.bdf`` file.
    buffer_bytes : int
        Size of one sequential read (default 8 MiB); at least one data record is read at a time.

    Raises
    ------
    EmptyFileError, WrongMagicError, CorruptFileError, UnreadableFileError
        On open, for a zero-byte file, a file that is not EDF/BDF, a header
        that is inconsistent or does not match the file size, or an OS error.
    """

    def __init__(self, path: str | os.PathLike, buffer_bytes: int = DEFAULT_BUFFER_BYTES):
        self.path = Path(path)
        self._p = str(path)
        self.buffer_bytes = int(buffer_bytes)
        self._f = open_for_reading(self.path)
        try:
            self._parse_header()
        except BaseException:
            self._f.close()
            raise
        self._annotations: list[Annotation] | None = None

    # -- low level --------------------------------------------------------------
    def _pread(self, offset: int, n: int) -> bytes:
        return self._f.read_at(offset, n)

    def close(self) -> None:
        self._f.close()

    # -- header -----------------------------------------------------------------
    def _parse_header(self) -> None:
        p = self._p
        st = os.fstat(self._f.fileno())
        size = st.st_size
        if size == 0:
            raise EmptyFileError("file is empty (0 bytes)", p)
        head = self._pread(0, 256)
        fmt = "bdf" if head[:8] == BDF_MAGIC else "edf" if head[:8] == EDF_MAGIC else None
        if fmt is None:
            raise WrongMagicError("not an EDF/BDF file: the first 8 bytes are neither '0       ' nor 0xFF'BIOSEMI'", p)
        if len(head) < 256:
            raise CorruptFileError(f"truncated header: {size} bytes, an EDF header needs at least 256", p)
        self.bps = 3 if fmt == "bdf" else 2
        header_bytes = _number(_decode(head[184:192]), "header length", p, int)
        reserved = _decode(head[192:236]).upper()
        n_records = _number(_decode(head[236:244]), "number of data records", p, int)
        record_s = _number(_decode(head[244:252]), "data record duration", p)
        ns = _number(_decode(head[252:256]), "number of signals", p, int)
        if not 0 <= ns <= MAX_SIGNALS:
            raise CorruptFileError(f"number of signals {ns} is out of range 0..{MAX_SIGNALS}", p)
        if header_bytes != 256 * (ns + 1):
            raise CorruptFileError(
                f"header length field says {header_bytes} bytes but {ns} signals need {256 * (ns + 1)}", p
            )
        if size < header_bytes:
            raise CorruptFileError(f"truncated header: {size} bytes, the header alone needs {header_bytes}", p)
        raw = self._pread(256, 256 * ns)
        fields: dict[str, list[str]] = {}
        pos = 0
        for name, width in _FIELDS:
            fields[name] = [_decode(raw[pos + i * width : pos + (i + 1) * width]) for i in range(ns)]
            pos += width * ns

        self.plus = reserved.startswith(("EDF+", "BDF+"))
        self.discontinuous = reserved in ("EDF+D", "BDF+D")
        self.header_bytes = header_bytes
        spr = [_number(v, f"samples per record of signal {i + 1}", p, int) for i, v in enumerate(fields["spr"])]
        if any(s < 1 for s in spr):
            raise CorruptFileError("a signal has fewer than 1 sample per data record", p)
        if any(s > MAX_SPR for s in spr):
            raise CorruptFileError(f"a signal claims {max(spr):.3g} samples per data record (more than {MAX_SPR:,})", p)
        self.spr = spr
        self.offsets = np.concatenate([[0], np.cumsum(spr)[:-1]]).astype(int) * self.bps if ns else np.zeros(0, int)
        self.record_bytes = sum(spr) * self.bps
        data_bytes = size - header_bytes
        if n_records == -1:
            # EDF spec: "-1 if unknown", allowed only while recording. A file that changed within
            # IN_PROGRESS_SETTLE_S is still being written: refused now, retried by the next run.
            age = time.time() - st.st_mtime
            if age < IN_PROGRESS_SETTLE_S:
                raise InProgressError(f"the header's number of data records is -1 (recording in progress) and the file "
                                      f"changed {max(age, 0):.0f} s ago; it is read once unchanged for "
                                      f"{IN_PROGRESS_SETTLE_S:.0f} s", p)
            if self.record_bytes and data_bytes % self.record_bytes == 0:
                n_records = data_bytes // self.record_bytes
        if n_records < 0:
            raise CorruptFileError(f"number of data records is {n_records}", p)
        expected = header_bytes + n_records * self.record_bytes
        if size != expected:
            raise CorruptFileError(
                f"file size {size} bytes does not match its header ({expected} bytes expected: "
                f"{header_bytes}-byte header + {n_records} records x {self.record_bytes} bytes); "
                "refusing to read shifted samples",
                p,
            )
        self.n_records = n_records

        ann_label = "BDF ANNOTATIONS" if fmt == "bdf" else "EDF ANNOTATIONS"
        # Annotation channels are recognised by label even where a writer forgot the EDF+ flag.
        self.annotation_channels = [i for i in range(ns) if fields["label"][i].upper() == ann_label]
        n_signal = ns - len(self.annotation_channels)
        if n_signal and not record_s > 0:
            raise CorruptFileError(f"data record duration {record_s} s must be positive", p)
        if n_records * record_s > MAX_DURATION_S:
            raise CorruptFileError(f"the header makes the recording {n_records * record_s / 86400:.3g} days long "
                                   f"({n_records} records x {record_s:g} s); more than a year is implausible", p)
        self.record_s = record_s

        channels = []
        self._scale = np.zeros(ns)
        self._offset = np.zeros(ns)
        for i in range(ns):
            label, unit = fields["label"][i], fields["unit"][i]
            if i in self.annotation_channels:
                channels.append(ChannelInfo(index=i, label=label, name=label, kind="annotation",
                                            sfreq=spr[i] / record_s if record_s > 0 else 1.0, unit=""))
                continue
            pmin = _number(fields["pmin"][i], f"physical minimum of signal {i + 1}", p)
            pmax = _number(fields["pmax"][i], f"physical maximum of signal {i + 1}", p)
            dmin = _number(fields["dmin"][i], f"digital minimum of signal {i + 1}", p, int)
            dmax = _number(fields["dmax"][i], f"digital maximum of signal {i + 1}", p, int)
            if dmax <= dmin or pmax == pmin:
                raise CorruptFileError(f"signal {i + 1} ({label!r}) has an empty digital or physical range", p)
            to_uv = unit_to_uv(unit)
            parsed = parse_label(label)
            gain = (pmax - pmin) / (dmax - dmin)
            self._scale[i] = gain * (to_uv or 1.0)
            self._offset[i] = (pmin - dmin * gain) * (to_uv or 1.0)
            channels.append(ChannelInfo(
                index=i, label=label, name=parsed.name, kind=channel_kind(parsed, to_uv),
                sfreq=spr[i] / record_s, unit=unit, to_uv=to_uv, physical_min=pmin, physical_max=pmax,
                digital_min=dmin, digital_max=dmax, reference=parsed.reference,
            ))

        start = _parse_start(_decode(head[168:176]), _decode(head[176:184]))
        self.patient = _patient(_decode(head[8:88]), start, self.plus)
        _add_recording_identity(self.patient, _decode(head[88:168]), self.plus)
        self._record_onsets: list[float] | None = None
        if self.discontinuous and self.annotation_channels:
            self._scan_annotations()
        segments = self._segments()
        fmt_name = fmt + ("+d" if self.discontinuous else "+c" if self.plus else "")
        self.header = RecordingHeader(
            format=fmt_name,
            channels=channels,
            duration_s=sum(s.duration_s for s in segments),
            segments=segments,
            n_annotation_channels=len(self.annotation_channels),
        )

    def _segments(self) -> list[Segment]:
        """Contiguous runs of data records (one for EDF and EDF+C)."""
        if self.n_records == 0 or self.record_s <= 0:
            return []
        if self._record_onsets is None or not self.discontinuous:
            return [Segment(start_s=0.0, duration_s=self.n_records * self.record_s)]
        onsets = self._record_onsets
        t0 = onsets[0]
        segs, start, count = [], onsets[0], 1
        for prev, cur in zip(onsets, onsets[1:]):
            if abs(cur - (prev + self.record_s)) < 1e-6:
                count += 1
            else:
                if cur < prev + self.record_s - 1e-6:
                    raise CorruptFileError("EDF+D data records overlap or go back in time", self._p)
                segs.append(Segment(start_s=start - t0, duration_s=count * self.record_s))
                start, count = cur, 1
        segs.append(Segment(start_s=start - t0, duration_s=count * self.record_s))
        return segs

    # -- data ---------------------------------------------------------------------
    def _chunks(self, first: int = 0, last: int | None = None):
        """Yield ``(first_record, uint8 array (n_records, record_bytes))`` for records
        ``[first, last)`` in large sequential reads into one preallocated buffer."""
        last = self.n_records if last is None else last
        if last <= first or self.record_bytes == 0:
            return
        per = max(1, min(self.buffer_bytes // self.record_bytes, last - first))
        buf = bytearray(per * self.record_bytes)
        view = memoryview(buf)
        self._f.seek(self.header_bytes + first * self.record_bytes)
        r = first
        while r < last:
            n = min(per, last - r)
            want = n * self.record_bytes
            got = self._f.readinto(view[:want])  # short only at end of file
            if got < want:
                raise CorruptFileError(f"file ended inside data record {r + got // self.record_bytes}", self._p)
            yield r, np.frombuffer(buf, np.uint8, count=want).reshape(n, self.record_bytes)
            r += n

    def _digital(self, block: np.ndarray) -> np.ndarray:
        """Digital samples (int32, flat) from a ``(n_records, spr * bps)`` uint8 block."""
        b = np.ascontiguousarray(block)
        if self.bps == 2:
            return b.view("<i2").reshape(-1).astype(np.int32)
        b = b.reshape(-1, 3)
        return b[:, 0].astype(np.int32) | (b[:, 1].astype(np.int32) << 8) | (b[:, 2].view(np.int8).astype(np.int32) << 16)

    def _collect_tals(self, first: int, chunk: np.ndarray, tals: list, onsets: list) -> None:
        for rr in range(chunk.shape[0]):
            for j, c in enumerate(self.annotation_channels):
                off = self.offsets[c]
                raw = chunk[rr, off : off + self.spr[c] * self.bps].tobytes()
                parsed = parse_tals(raw, self._p, first + rr)
                if j == 0 and parsed:
                    onsets.append(parsed[0][0])
                    parsed[0] = (parsed[0][0], parsed[0][1], parsed[0][2])  # time-keeping TAL; its texts count
                tals.extend(parsed)

    def _finish_annotations(self, tals: list, onsets: list) -> None:
        t0 = onsets[0] if onsets else 0.0
        self._record_onsets = onsets if len(onsets) == self.n_records else None
        anns = []
        for onset, duration, texts in tals:
            for text in texts:
                anns.append(Annotation(onset_s=onset - t0, duration_s=duration, text=text, source="edf+"))
        self._annotations = anns

    def _scan_annotations(self) -> None:
        tals: list = []
        onsets: list = []
        for first, chunk in self._chunks():
            self._collect_tals(first, chunk, tals, onsets)
        self._finish_annotations(tals, onsets)

    def annotations(self) -> list[Annotation]:
        if self._annotations is None:
            if self.annotation_channels:
                self._scan_annotations()
            else:
                self._annotations = []
        return list(self._annotations)

    def read_channels(self, channels: list[int]) -> list[np.ndarray]:
        """Signals of ``channels`` in µV (float32, one array per channel), in one sequential pass.

        Annotations are collected in the same pass, so a following
        :meth:`annotations` call costs no further I/O.
        """
        for c in channels:
            if c in self.annotation_channels or not 0 <= c < len(self.spr):
                raise ValueError(f"channel {c} is not a signal channel")
        out = [np.empty(self.n_records * self.spr[c], dtype=np.float32) for c in channels]
        want_tals = self._annotations is None and bool(self.annotation_channels)
        tals: list = []
        onsets: list = []
        for first, chunk in self._chunks():
            for arr, c in zip(out, channels):
                off, n = self.offsets[c], self.spr[c]
                dig = self._digital(chunk[:, off : off + n * self.bps])
                arr[first * n : first * n + dig.size] = dig * self._scale[c] + self._offset[c]
            if want_tals:
                self._collect_tals(first, chunk, tals, onsets)
        if want_tals:
            self._finish_annotations(tals, onsets)
        return out

    def read(self, start: int, stop: int, channels: list[int]) -> np.ndarray:
        """Samples ``[start, stop)`` (µV float32, ``(n_channels, stop - start)``) of same-rate channels.

        Reads only the data records that cover the range.
        """
        if not channels:
            return np.zeros((0, max(stop - start, 0)), np.float32)
        spr = {self.spr[c] for c in channels}
        if len(spr) > 1 or any(c in self.annotation_channels for c in channels):
            raise ValueError(f"channels {channels} are not signal channels of one sampling rate")
        n = spr.pop()
        self._check_range(start, stop, channels, self.n_records * n)
        out = np.empty((len(channels), stop - start), np.float32)
        if stop == start:
            return out
        first, last = start // n, -(-stop // n)
        for rec0, chunk in self._chunks(first, last):
            lo = rec0 * n
            for row, c in enumerate(channels):
                off = self.offsets[c]
                x = self._digital(chunk[:, off : off + n * self.bps]) * self._scale[c] + self._offset[c]
                a, b = max(start, lo), min(stop, lo + x.size)
                if b > a:
                    out[row, a - start : b - start] = x[a - lo : b - lo]
        return out
