"""The buffered Nicolet/Natus .e reader against files from ephys/ingest/writers/nicolet.py."""

from __future__ import annotations

import atexit
import datetime as dt
import math
import mmap
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ephys.ingest.readers.nicolet as nicolet
from ephys.ingest.readers.bufio import open_for_reading
from ephys.errors import (
    CorruptFileError, EmptyFileError, EphysError, UnreadableFileError, UnsupportedFormatError, WrongMagicError,
)
from ephys.ingest.readers.nicolet import NicoletReader
from ephys.ingest.writers.nicolet import ANNOTATION, IMPEDANCE, SEIZURE_A, TS, Event, Trace, write_nicolet

START = dt.datetime(2021, 3, 4, 10, 20, 30)
SEGMENTS = [(START, 10.0), (START + dt.timedelta(seconds=25), 6.0)]  # 15 s gap
TRACES = [
    Trace("Fp1", "Fp1", "REF", 256.0, 0.1, eeg_offset=5.0),
    Trace("T3", "T3", "REF", 256.0, 0.05),
    Trace("EKG", "EKG", "REF", 256.0, 0.5, unit="mV"),
    Trace("Pz", "Pz", "REF", 512.0, 0.1),
    Trace("Rate", "Rate", "", 1.0, 1.0, unit="bpm"),  # trend: no reference sensor
    Trace("Cz", "Cz", "REF", 1.0, 0.2),  # trend: 1 Hz
]
EVENTS = [
    Event(START + dt.timedelta(seconds=1.25), 0.0, ANNOTATION, "Augen geschlossen, Patientin schläft", "MKR"),
    Event(START + dt.timedelta(seconds=12), 2.5, SEIZURE_A, "Anfall: Zuckungen li. Arm (ä ö ü ß ÄÖÜ)", "Dr.Müller"),
    Event(START + dt.timedelta(seconds=26.5), 0.0, IMPEDANCE),
]
PATIENT = {"patientID": "PAT-778899", "firstName": "Jürgen", "lastName": "Weißmüller", "altID": "ALT-1",
           "DOB": dt.date(1961, 7, 14), "sexID": "M", "notes": "Epilepsie seit 2010, Tochter Annegret"}
PHI = ["PAT-778899", "Jürgen", "Weißmüller", "1961", "Annegret", "ALT-1"]


def _samples(traces=TRACES, segments=SEGMENTS, seed=0):
    rng = np.random.default_rng(seed)
    total = sum(d for _, d in segments)
    out = []
    for t in traces:
        x = rng.integers(-3000, 3000, int(round(total * t.sfreq))).astype("<i2")
        x[:2] = (-32768, 32767)
        out.append(x)
    return out


def _write(path: Path, traces=TRACES, segments=SEGMENTS, samples=None, **kw):
    samples = _samples(traces, segments) if samples is None else samples
    kw.setdefault("events", EVENTS)
    kw.setdefault("patient", PATIENT)
    lay = write_nicolet(path, traces, segments, samples, **kw)
    return lay, samples


@pytest.fixture
def rec(tmp_path):
    p = tmp_path / "rec.e"
    lay, samples = _write(p)
    return p, lay, samples


def _expected(raw, t, polarity=1, offset=False):
    return (polarity * raw.astype(np.float64) * t.resolution + (t.eeg_offset if offset else 0.0)).astype(np.float32)


# -- valid files ----------------------------------------------------------------------------------
def test_header_channels_and_segments(rec):
    p, _, _ = rec
    with NicoletReader(p) as r:
        h = r.header
        assert h.format == "nicolet_e"
        assert [c.label for c in h.channels] == ["Fp1", "T3", "EKG", "Pz", "Rate", "Cz"]
        assert [c.name for c in h.channels] == ["Fp1", "T7", "EKG", "Pz", "Rate", "Cz"]
        assert [c.kind for c in h.channels] == ["eeg", "eeg", "ecg", "eeg", "misc", "misc"]
        assert [c.sfreq for c in h.channels] == [256.0, 256.0, 256.0, 512.0, 1.0, 1.0]
        assert [c.unit for c in h.channels] == ["uV", "uV", "mV", "uV", "bpm", "uV"]
        assert [c.to_uv for c in h.channels] == [1.0, 1.0, 1000.0, 1.0, None, 1.0]
        assert [c.reference for c in h.channels] == ["REF", "REF", "REF", "REF", None, "REF"]
        assert [(s.start_s, s.duration_s) for s in h.segments] == [(0.0, 10.0), (25.0, 6.0)]
        assert h.duration_s == 16.0
        assert [r.n_samples(c) for c in range(6)] == [4096, 4096, 4096, 8192, 16, 16]


@pytest.mark.parametrize("polarity,offset", [(1, False), (-1, False), (1, True), (-1, True)])
def test_samples_exact(rec, polarity, offset):
    p, _, samples = rec
    with NicoletReader(p, polarity=polarity, apply_eeg_offset=offset) as r:
        got = r.read_channels(list(range(6)))
        for i, (x, t) in enumerate(zip(samples, TRACES)):
            assert got[i].dtype == np.float32 and got[i].shape == x.shape
            want = _expected(x, t, polarity, offset) * np.float32(r.header.channels[i].to_uv or 1.0)
            np.testing.assert_allclose(got[i], want, rtol=1e-6, atol=1e-6)
        fp1 = r.header.channels[0]
        assert fp1.physical_min == pytest.approx(polarity * -32768 * 0.1 + (5.0 if offset else 0.0))


def test_annotations(rec):
    p, _, _ = rec
    with NicoletReader(p) as r:
        anns = r.annotations()
    assert [(a.onset_s, a.duration_s) for a in anns] == [(1.25, 0.0), (12.0, 2.5), (26.5, 0.0)]
    assert [a.text for a in anns] == [EVENTS[0].text, EVENTS[1].text, "Impedance"]
    assert [a.author for a in anns] == ["MKR", "Dr.Müller", None]
    assert [a.code for a in anns] == [ANNOTATION, SEIZURE_A, IMPEDANCE]
    assert {a.source for a in anns} == {"nicolet"}


def test_patient_only_in_patient_info(rec):
    p, _, _ = rec
    with NicoletReader(p) as r:
        pi = r.patient
        assert pi.patient_id == "PAT-778899"
        assert pi.names == ["Jürgen", "Weißmüller"]
        assert pi.birthdate == "1961-07-14" and pi.sex == "M"
        assert pi.start == START and pi.start.tzinfo is None
        assert "redacted" in repr(pi)
        blob = r.header.model_dump_json() + repr(r.header) + "".join(a.model_dump_json() for a in r.annotations())
    for s in PHI:
        assert s not in blob
    with NicoletReader(p, timezone="UTC") as r:
        assert r.patient.start == START.replace(tzinfo=dt.UTC)
    with NicoletReader(p, timezone="Europe/Berlin") as r:
        assert r.patient.start.utcoffset() == dt.timedelta(hours=1)


def test_anonymous_patient_block(tmp_path):
    p = tmp_path / "anon.e"
    _write(p, patient=None)
    with NicoletReader(p) as r:
        assert (r.patient.patient_id, r.patient.names, r.patient.birthdate) == ("", [], None)
        assert r.patient.start == START


@pytest.mark.parametrize("buffer_bytes", [64, 1000, 8 * 1024 * 1024])
def test_chunked_read_equals_read_channels(rec, buffer_bytes):
    p, _, _ = rec
    with NicoletReader(p) as ref:
        whole = ref.read_channels(list(range(6)))
    with NicoletReader(p, buffer_bytes=buffer_bytes) as r:
        for i in range(6):
            np.testing.assert_array_equal(r.read_channels([i])[0], whole[i])
        for group in ([0, 1, 2], [3], [4, 5], [2, 0]):
            n = r.n_samples(group[0])
            for start, stop in [(0, n), (0, 1), (n - 1, n), (n // 3, n // 3 + 777 % n), (5, 5)]:
                got = r.read(start, stop, group)
                assert got.shape == (len(group), stop - start) and got.dtype == np.float32
                np.testing.assert_array_equal(got, np.stack([whole[c][start:stop] for c in group]))
            step = max(n // 7, 1)  # consecutive chunks across block and segment boundaries
            parts = np.concatenate([r.read(a, min(a + step, n), group) for a in range(0, n, step)], axis=1)
            np.testing.assert_array_equal(parts, np.stack([whole[c] for c in group]))


def test_read_rejects_bad_requests(rec):
    p, _, _ = rec
    with NicoletReader(p) as r:
        with pytest.raises(ValueError):
            r.read(0, 10, [0, 3])  # 256 Hz and 512 Hz
        with pytest.raises(ValueError):
            r.read(0, 4097, [0])
        with pytest.raises(ValueError):
            r.read_channels([6])
        assert r.read(0, 3, []).shape == (0, 3)
    for kw in ({"polarity": 2}, {"timezone": "Mars/Olympus"}, {"buffer_bytes": 4}):
        with pytest.raises(ValueError):
            NicoletReader(p, **kw)


def test_static_tsinfo_and_repeated_tsinfo(tmp_path):
    p = tmp_path / "static.e"
    _, samples = _write(p, dynamic_tsinfo=False)
    with NicoletReader(p) as r:
        assert [c.label for c in r.header.channels] == [t.label for t in TRACES]
        np.testing.assert_allclose(r.read_channels([3])[0], _expected(samples[3], TRACES[3]), rtol=1e-6)
    _write(p, second_tsinfo=TRACES)  # an identical second TSInfo packet is fine
    with NicoletReader(p) as r:
        assert len(r.header.channels) == 6
    changed = [*TRACES[:3], Trace("Pz", "Pz", "REF", 256.0, 0.1), *TRACES[4:]]
    _write(p, second_tsinfo=changed)
    with pytest.raises(UnsupportedFormatError, match="changes during the recording"):
        NicoletReader(p)


def test_single_index_block_and_no_split(tmp_path):
    p = tmp_path / "plain.e"
    _, samples = _write(p, index_blocks=1, split=(), blocks=1, pad=2)
    with NicoletReader(p) as r:
        np.testing.assert_allclose(r.read_channels([0])[0], _expected(samples[0], TRACES[0]), rtol=1e-6)
        assert len(r.annotations()) == 3


# -- bad input ------------------------------------------------------------------------------------
def _raises(path, exc, match=None):
    with pytest.raises(exc, match=match) as info:
        NicoletReader(path)
    assert info.value.path == str(path)
    assert not any(s in str(info.value) for s in PHI)
    return info.value


def test_empty_wrong_magic_unreadable(tmp_path, rec):
    p, _, _ = rec
    (tmp_path / "empty.e").write_bytes(b"")
    _raises(tmp_path / "empty.e", EmptyFileError)
    data = bytearray(p.read_bytes())
    data[3] ^= 0xFF
    (tmp_path / "magic.e").write_bytes(bytes(data))
    _raises(tmp_path / "magic.e", WrongMagicError)
    (tmp_path / "text.e").write_text("hello, not an EEG")
    _raises(tmp_path / "text.e", WrongMagicError)
    _raises(tmp_path, UnreadableFileError)  # a directory


def test_old_format_is_unsupported(tmp_path, rec):
    p, _, _ = rec
    data = bytearray(p.read_bytes())
    data[24:28] = b"\0\0\0\0"
    (tmp_path / "old.e").write_bytes(bytes(data))
    _raises(tmp_path / "old.e", UnsupportedFormatError, "old-format")


def test_truncated_at_boundaries(tmp_path, rec):
    p, lay, _ = rec
    data = p.read_bytes()
    cuts = [8, 100, 176 + 84 * 5, 172210, lay.index_blocks[0] + 30, lay.index_blocks[1] + 8,
            lay.data_start + 100, lay.sections["0"][1][0] + 3, lay.size - 1]
    for cut in cuts:
        (tmp_path / "cut.e").write_bytes(data[:cut])
        _raises(tmp_path / "cut.e", CorruptFileError, "^.*corrupt .e: ")


def test_index_entry_past_eof(tmp_path, rec):
    p, lay, _ = rec
    data = bytearray(p.read_bytes())
    struct.pack_into("<Q", data, lay.entry_at[-3] + 8, lay.size + 10)
    (tmp_path / "past.e").write_bytes(bytes(data))
    _raises(tmp_path / "past.e", CorruptFileError, "past the end of the file")


def test_index_chain_loop(tmp_path, rec):
    p, lay, _ = rec
    data = bytearray(p.read_bytes())
    struct.pack_into("<I", data, 172208, len(lay.entries) + 5)  # QI asks for more entries ...
    last = lay.index_blocks[1] + 8 + 24 * (len(lay.entries) - (lay.index_blocks[1] - lay.index_blocks[0] - 16) // 24)
    struct.pack_into("<Q", data, last, lay.index_blocks[0])  # ... and the chain loops back
    (tmp_path / "loop.e").write_bytes(bytes(data))
    _raises(tmp_path / "loop.e", CorruptFileError, "loops")


def test_segment_lengths_do_not_sum(tmp_path):
    p = tmp_path / "seg.e"
    short = _samples(segments=[(START, 10.0), (START, 5.0)])  # 15 s stored, segments say 16 s
    _write(p, samples=short)
    _raises(p, CorruptFileError, "segment lengths give 4096 samples for channel 0 but 3840 are stored")


@pytest.mark.parametrize("tail", [b"\0" * 40, b"\xab" * 300])
def test_events_with_trailing_garbage(tmp_path, tail):
    p = tmp_path / "ev.e"
    _write(p, events_tail=tail)
    _raises(p, CorruptFileError, "events section")


def test_tsinfo_count_too_large(tmp_path, rec):
    p, lay, _ = rec
    data = bytearray(p.read_bytes())
    struct.pack_into("<I", data, lay.sections[TS][0][0] + 752, 1000)
    (tmp_path / "ts.e").write_bytes(bytes(data))
    _raises(tmp_path / "ts.e", CorruptFileError, "TSInfo lists 1000 channels")


_FUZZ: dict = {}


def _fuzz_base():
    if not _FUZZ:
        d = Path(tempfile.mkdtemp(prefix="nicolet-fuzz-"))  # hypothesis cannot use function-scoped tmp_path
        atexit.register(shutil.rmtree, d, True)
        traces = [TRACES[0], TRACES[3], TRACES[4]]
        segs = [(START, 2.0), (START + dt.timedelta(seconds=5), 1.0)]
        lay, _ = _write(d / "base.e", traces=traces, segments=segs, samples=_samples(traces, segs))
        ranges = [(0, 176 + 84 * lay.n_tags), (172208, 172232 + 8 * lay.n_tags), (lay.index_blocks[0], lay.data_start)]
        ranges += [(o, o + n) for name in ("Events", TS) for o, n in lay.sections[name]]
        ranges += [(lay.sections[n][0][0], sum(lay.sections[n][0])) for n in ("InfoChangeStream", "SegmentStream")]
        _FUZZ.update(dir=d, data=(d / "base.e").read_bytes(), ranges=ranges)
    return _FUZZ


@st.composite
def _mutations(draw):
    ranges = _fuzz_base()["ranges"]
    out = []
    for _ in range(draw(st.integers(1, 8))):
        lo, hi = ranges[draw(st.integers(0, len(ranges) - 1))]
        out.append((draw(st.integers(lo, hi - 1)), draw(st.integers(0, 255))))
    return out


@settings(max_examples=250, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(_mutations())
def test_mutated_header_bytes_raise_only_typed_errors(mutations):
    base = _fuzz_base()
    data = bytearray(base["data"])
    for pos, value in mutations:
        data[pos] = value
    path = base["dir"] / "mutant.e"
    path.write_bytes(bytes(data))
    try:
        with NicoletReader(path, buffer_bytes=4096) as r:
            r.annotations()
            arrays = r.read_channels(list(range(len(r.header.channels))))
            for c, x in enumerate(arrays):
                assert x.shape == (r.n_samples(c),)
    except EphysError:
        pass


# -- I/O accounting -------------------------------------------------------------------------------
class _CountingFile:
    def __init__(self, f):
        self._f, self.reads, self.bytes = f, 0, 0

    def readinto(self, b):
        self.reads += 1
        n = self._f.readinto(b)
        self.bytes += n or 0
        return n

    def read(self, n=-1):
        self.reads += 1
        out = self._f.read(n)
        self.bytes += len(out)
        return out

    def __getattr__(self, name):
        return getattr(self._f, name)


def _forbid(*_a, **_k):
    raise AssertionError("memory mapping or np.fromfile is not allowed")


def test_read_requests_per_mib(tmp_path, monkeypatch):
    traces = [Trace(f"E{i}", f"E{i}", "REF", 256.0, 0.1) for i in range(32)]
    segs = [(START, 300.0), (START + dt.timedelta(seconds=400), 200.0)]
    rng = np.random.default_rng(1)
    samples = [rng.integers(-500, 500, 500 * 256).astype("<i2") for _ in traces]
    p = tmp_path / "big.e"
    lay = write_nicolet(p, traces, segs, samples, events=EVENTS, patient=PATIENT, blocks=25)
    signal_mib = sum(x.nbytes for x in samples) / 2**20
    assert signal_mib > 7

    opened: list[_CountingFile] = []

    def counting_open(*a, **k):
        f = _CountingFile(open_for_reading(*a, **k))
        opened.append(f)
        return f

    monkeypatch.setattr(nicolet, "open_for_reading", counting_open)
    monkeypatch.setattr(mmap, "mmap", _forbid)
    monkeypatch.setattr(np, "memmap", _forbid)
    monkeypatch.setattr(np, "fromfile", _forbid)

    with NicoletReader(p) as r:
        header_reads = opened[0].reads
        assert header_reads <= 8
        got = r.read_channels(list(range(32)))
        all_reads = opened[0].reads - header_reads
        assert all_reads <= math.ceil(signal_mib)
        for c in (0, 17, 31):
            np.testing.assert_allclose(got[c], samples[c] * 0.1, rtol=1e-6)
        before = opened[0].reads
        sub = r.read_channels([3, 20])  # blocks of other channels are read through, not seeked around
        assert opened[0].reads - before <= math.ceil(signal_mib)
        np.testing.assert_array_equal(sub[1], got[20])
        # at the pread level too: large reads go out as <= 1 MiB requests, about one per MiB
        assert opened[0]._f.n_requests <= 8 + 3 * math.ceil(lay.size / 2**20)
        before = opened[0].reads
        win = r.read(256 * 290, 256 * 310, list(range(32)))  # 20 s across the segment boundary
        assert opened[0].reads - before <= 2
        np.testing.assert_array_equal(win[5], got[5][256 * 290 : 256 * 310])
    assert lay.size > 8 * 2**20
