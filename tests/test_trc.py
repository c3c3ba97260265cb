"""Micromed .TRC reader: round trips through ephys/ingest/writers/trc.py, cross-checks with neo, bad input, I/O pattern."""

from __future__ import annotations

import struct
import tempfile
import tokenize
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

import ephys.ingest.readers.trc as trc_module
from ephys.errors import (
    CorruptFileError,
    EmptyFileError,
    EphysError,
    UnreadableFileError,
    UnsupportedFormatError,
    WrongMagicError,
)
from ephys.ingest.readers.base import DEFAULT_BUFFER_BYTES
from ephys.ingest.readers.trc import TRCReader
from ephys.ingest.writers.trc import Chan, write_trc

SURNAME, FIRST = "Müller-Lüdenscheidt", "Anna Maria"
RANGES = {1: (0, 249, 125), 2: (0, 59999, 30000), 4: (0, 2**24 - 3, 2**23)}  # non-dyadic factors
# (unit code, expected unit, to_uv); code 2 is volts (neo says 1), 7 is unknown.
UNIT_CASES = [(-1, "nV", 1e-3), (0, "uV", 1.0), (1, "mV", 1e3), (2, "V", 1e6), (100, "%", None),
              (101, "bpm", None), (102, "", None), (7, "unit code 7", None)]


def _chans(nbytes: int) -> list[Chan]:
    lmin, lmax, g = RANGES[nbytes]
    labels = ["Fp1", "T3", "Cz", "EOG+", "ECG1+", "SpO2", "MKR+", "X1"]
    negs = ["G2", "G2", "", "EOG-", "ECG1-", "G2", "MKR-", "G2"]
    return [Chan(lab, neg, unit=u, lmin=lmin, lmax=lmax, lground=g + k, pmin=-1000 * (k + 1), pmax=1200 * (k + 1))
            for k, (lab, neg, (u, _, _)) in enumerate(zip(labels, negs, UNIT_CASES))]


def _raw(n: int, chans: list[Chan], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(c.lmin, c.lmax + 1, n) for c in chans], axis=1)


def _expected(raw: np.ndarray, chans: list[Chan]) -> list[np.ndarray]:
    return [(c.physical(raw[:, k]) * (to_uv or 1.0)).astype(np.float32)
            for k, (c, (_, _, to_uv)) in enumerate(zip(chans, UNIT_CASES))]


def _assert_signal(got: np.ndarray, exp: np.ndarray, to_uv: float | None = 1.0) -> None:
    """Exact for channels stored in µV or a non-voltage unit; within one float32 ulp when rescaled to µV
    (the reader folds the unit factor into the calibration factor: one float64 rounding differs)."""
    assert got.dtype == np.float32 and got.shape == exp.shape
    if to_uv in (None, 1.0):
        np.testing.assert_array_equal(got, exp)
    else:
        np.testing.assert_array_max_ulp(got, exp, maxulp=1)


FULL = dict(
    surname=SURNAME, first_name=FIRST, birth=(2, 29, 1984), start=datetime(2031, 12, 31, 23, 59, 58),
    notes=[(0, "Start"), (40, "Augen geöffnet äöüß"), (90, "Hyperventilation")],
    triggers=[(0, 5), (33, 200), (150, 65534)],
    event_a=("Schlaf ü", [(0, 25), (60, 80)]), event_b=("Artefakt", [(100, 130)]),
)


@pytest.fixture
def full_file(tmp_path):
    chans = _chans(2)
    raw = _raw(200, chans)
    path = tmp_path / "full.TRC"
    write_trc(path, raw, chans, rate=512, **FULL)
    return path, raw, chans


# -- header, samples, annotations ------------------------------------------------------
@pytest.mark.parametrize("nbytes", [1, 2, 4])
def test_header_and_samples_round_trip(tmp_path, nbytes):
    chans = _chans(nbytes)
    raw = _raw(1000, chans, seed=nbytes)
    path = tmp_path / f"b{nbytes}.TRC"
    write_trc(path, raw, chans, rate=256, nbytes=nbytes, **FULL)
    with TRCReader(path) as r:
        h = r.header
        assert (h.format, r.header_type, r.bytes_per_sample) == ("micromed_trc", 4, nbytes)
        assert (r.n_samples, r.sfreq, h.duration_s) == (1000, 256.0, 1000 / 256)
        assert [s.model_dump() for s in h.segments] == [{"start_s": 0.0, "duration_s": 1000 / 256}]
        names = ["Fp1", "T7", "Cz", "EOG+", "ECG1+", "SpO2", "MKR+", "X1"]
        kinds = ["eeg", "eeg", "eeg", "eog", "ecg", "resp", "misc", "misc"]
        for k, (ch, c, (code, unit, to_uv)) in enumerate(zip(h.channels, chans, UNIT_CASES)):
            assert (ch.index, ch.label, ch.name, ch.kind, ch.sfreq) == (k, c.label, names[k], kinds[k], 256.0)
            assert (ch.unit, ch.to_uv, ch.reference) == (unit, to_uv, c.negative or None)
            assert (ch.digital_min, ch.digital_max) == (c.lmin, c.lmax)
            assert ch.physical_min == c.physical(np.array([c.lmin]))[0]
            assert ch.physical_max == c.physical(np.array([c.lmax]))[0]
            cal = r.calibration[k]
            assert (cal.logic_min, cal.logic_max, cal.logic_ground, cal.phys_min, cal.phys_max, cal.unit_code,
                    cal.rate_coef, cal.labcod_index) == (c.lmin, c.lmax, c.lground, c.pmin, c.pmax, code, 1, 8 - k)
        p = r.patient
        assert p.names == ["Müller-Lüdenscheidt", "Anna", "Maria"]
        assert (p.birthdate, p.patient_id, p.sex) == ("1984-02-29", "", None)
        assert p.start == datetime(2031, 12, 31, 23, 59, 58)  # year byte 131: unsigned
        for got, exp, (_, _, to_uv) in zip(r.read_channels(list(range(8))), _expected(raw, chans), UNIT_CASES):
            _assert_signal(got, exp, to_uv)


def test_signed_four_byte_samples(tmp_path):
    """4-byte channels with a negative logical minimum are int32 (micromed-io); neo reads them as uint32."""
    chans = [Chan("C3", lmin=-(2**23), lmax=2**23 - 1, lground=0, pmin=-4000, pmax=4000)]
    raw = np.random.default_rng(1).integers(-(2**23), 2**23, (300, 1)).astype(np.int32)
    write_trc(tmp_path / "s.TRC", raw, chans, nbytes=4)
    with TRCReader(tmp_path / "s.TRC") as r:
        _assert_signal(r.read_channels([0])[0], chans[0].physical(raw[:, 0]).astype(np.float32))


def test_annotations(full_file):
    path, _, _ = full_file
    fs = 512
    with TRCReader(path) as r:
        got = [(a.onset_s, a.duration_s, a.text, a.code, a.source) for a in r.annotations()]
    exp = [(0.0, 0.0, "Start", "note", "micromed"), (0.0, 0.0, "Trigger 5", "trigger:5", "micromed"),
           (0.0, 25 / fs, "Schlaf ü", "event_a", "micromed"), (33 / fs, 0.0, "Trigger 200", "trigger:200", "micromed"),
           (40 / fs, 0.0, "Augen geöffnet äöüß", "note", "micromed"),
           (60 / fs, 20 / fs, "Schlaf ü", "event_a", "micromed"), (90 / fs, 0.0, "Hyperventilation", "note", "micromed"),
           (100 / fs, 30 / fs, "Artefakt", "event_b", "micromed"),
           (150 / fs, 0.0, "Trigger 65534", "trigger:65534", "micromed")]
    assert sorted(got) == sorted(exp)
    assert [a[0] for a in got] == sorted(a[0] for a in got)


def test_utf8_notes_and_phi_stays_in_patient(tmp_path, full_file):
    chans = [Chan("Fp1")]
    write_trc(tmp_path / "u.TRC", _raw(50, chans), chans, notes=[(3, "Pause ø€")], note_encoding="utf-8")
    with TRCReader(tmp_path / "u.TRC") as r:
        assert [a.text for a in r.annotations()] == ["Pause ø€"]
    with TRCReader(full_file[0]) as r:
        blob = r.header.model_dump_json() + repr(r.patient) + str(r.calibration)
        assert "Müller" not in blob and "Anna" not in blob and "1984" not in blob


def test_header_type_3_reads_like_type_4(tmp_path):
    chans = _chans(2)[:3]
    raw = _raw(100, chans)
    write_trc(tmp_path / "t3.TRC", raw, chans, header_type=3)
    with TRCReader(tmp_path / "t3.TRC") as r:
        assert r.header_type == 3
        for got, exp, (_, _, to_uv) in zip(r.read_channels([0, 1, 2]), _expected(raw, chans), UNIT_CASES):
            _assert_signal(got, exp, to_uv)


def test_rate_coefficient(tmp_path):
    chans = [Chan("Fp1", coef=4), Chan("Fp2", coef=4)]
    write_trc(tmp_path / "r.TRC", _raw(64, chans), chans, rate=128)
    with TRCReader(tmp_path / "r.TRC") as r:
        assert [c.sfreq for c in r.header.channels] == [512.0, 512.0] and r.header.duration_s == 64 / 512


# -- segments ---------------------------------------------------------------------------
def test_segments_and_event_times(tmp_path):
    """TRONCA (seg_start, trace_offset); the first pair has offset > 0, so an implicit segment (0, 0) precedes it."""
    chans = _chans(2)[:2]
    raw = _raw(600, chans)
    tronca = [(1000, 100), (5000, 350)]
    write_trc(tmp_path / "seg.TRC", raw, chans, rate=100, tronca=tronca,
              notes=[(50, "a"), (100, "b"), (400, "c")], triggers=[(0, 1), (349, 2), (600, 3), (601, 4)],
              event_a=("span", [(340, 360)]))
    with TRCReader(tmp_path / "seg.TRC", buffer_bytes=1000) as r:
        assert [(s.start_s, s.duration_s) for s in r.header.segments] == [(0.0, 1.0), (10.0, 2.5), (50.0, 2.5)]
        assert r.header.duration_s == 6.0
        got = {a.text: (a.onset_s, a.duration_s) for a in r.annotations()}
        assert got == {"a": (0.5, 0.0), "b": (10.0, 0.0), "c": (50.5, 0.0), "Trigger 1": (0.0, 0.0),
                       "Trigger 2": (12.49, 0.0), "Trigger 3": (52.5, 0.0),
                       "span": (12.4, 5010 / 100 - 1240 / 100)}
        whole = r.read_channels([0, 1])
        assert all(len(x) == 600 for x in whole)
        np.testing.assert_array_equal(r.read(340, 360, [1]), whole[1][None, 340:360])


# -- chunked reads ----------------------------------------------------------------------
@pytest.mark.parametrize("nbytes", [1, 2, 4])
@pytest.mark.parametrize("buffer_bytes", [1, 1000, 1 << 20])
def test_chunked_read_equals_whole(tmp_path, nbytes, buffer_bytes):
    chans = _chans(nbytes)[:5]
    raw = _raw(3001, chans, seed=7)
    write_trc(tmp_path / "c.TRC", raw, chans, nbytes=nbytes)
    with TRCReader(tmp_path / "c.TRC", buffer_bytes=buffer_bytes) as r:
        whole = np.stack(r.read_channels([0, 1, 2, 3, 4]))
        rng = np.random.default_rng(3)
        ranges = [(0, 3001), (0, 0), (3000, 3001), (3001, 3001), (0, 1)]
        ranges += [tuple(sorted(rng.integers(0, 3002, 2))) for _ in range(12 if buffer_bytes == 1 else 40)]
        for a, b in ranges:
            picks = sorted(rng.choice(5, size=rng.integers(1, 6), replace=False).tolist())
            out = r.read(int(a), int(b), picks)
            assert out.dtype == np.float32 and out.shape == (len(picks), b - a)
            np.testing.assert_array_equal(out, whole[picks, a:b])
        assert r.read(5, 9, []).shape == (0, 4)
        for bad in [(-1, 3), (5, 3), (0, 3002)]:
            with pytest.raises(ValueError):
                r.read(*bad, [0])
        with pytest.raises(ValueError):
            r.read(0, 3, [5])


# -- neo cross-checks -------------------------------------------------------------------
def _neo(path):
    from neo.rawio import MicromedRawIO

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        io_ = MicromedRawIO(str(path))
        io_.parse_header()
    return io_


@pytest.mark.parametrize("nbytes", [1, 2, 4])
def test_signals_agree_with_neo(tmp_path, nbytes):
    chans = _chans(nbytes)
    raw = _raw(700, chans, seed=11)
    tronca = [(2000, 0), (9000, 300)]
    write_trc(tmp_path / "n.TRC", raw, chans, nbytes=nbytes, rate=200, tronca=tronca)
    neo = _neo(tmp_path / "n.TRC")
    with TRCReader(tmp_path / "n.TRC") as r:
        ours = np.stack(r.read_channels(list(range(8))))
        sig = neo.header["signal_channels"]
        assert list(sig["name"]) == [c.label for c in r.header.channels]
        assert list(sig["sampling_rate"]) == [c.sfreq for c in r.header.channels]
        grounds = neo.raw_annotations["blocks"][0]["segments"][0]["signals"][0]["__array_annotations__"]["ground"]
        assert [g or None for g in grounds] == [c.reference for c in r.header.channels]
        assert neo.segment_count(0) == len(r.header.segments) == 2
        raw_neo, phys_neo = [], []
        for s, seg in enumerate(r.header.segments):
            assert neo.get_signal_t_start(0, s, 0) == seg.start_s
            chunk = neo.get_analogsignal_chunk(0, s, stream_index=0)
            raw_neo.append(chunk)
            phys_neo.append(neo.rescale_signal_raw_to_float(chunk, dtype="float64", stream_index=0))
        np.testing.assert_array_equal(np.concatenate(raw_neo), raw)  # identical raw codes
        phys = np.concatenate(phys_neo).T * np.array([c.to_uv or 1.0 for c in r.header.channels])[:, None]
        for k, ch in enumerate(r.header.channels):
            _assert_signal(ours[k], phys[k].astype(np.float32), ch.to_uv)
        # neo bug ([notes] §1.3): unit code 2 becomes the integer 1 instead of "V".
        assert r.header.channels[3].unit == "V" and sig["units"][3] != "V"


def test_neo_event_bugs(tmp_path):
    """Where ephys is right and neo 0.14.6 is wrong: events at sample 0, events after segment 0, years >= 2028."""
    chans = [Chan("Fp1"), Chan("Fp2")]
    write_trc(tmp_path / "e.TRC", _raw(400, chans), chans, rate=100, tronca=[(1000, 0), (5000, 200)],
              start=datetime(2030, 1, 2, 3, 4, 5), notes=[(0, "zero"), (50, "first"), (250, "second")],
              triggers=[(0, 9), (300, 8)])
    neo = _neo(tmp_path / "e.TRC")
    with TRCReader(tmp_path / "e.TRC") as r:
        ours = {a.text: a.onset_s for a in r.annotations()}
        assert r.patient.start == datetime(2030, 1, 2, 3, 4, 5)
    assert ours == {"zero": 10.0, "first": 10.5, "second": 50.5, "Trigger 9": 10.0, "Trigger 8": 51.0}
    neo_events = {}
    for s in range(2):
        for ch in (0, 1):  # Trigger, Note
            ts, _, labels = neo.get_event_timestamps(0, s, ch)
            for t, lab in zip(ts, labels):
                text = lab if ch == 1 else f"Trigger {lab}"
                neo_events[text] = float(neo.rescale_event_timestamp(np.array([t]), "float64", ch)[0])
    assert "zero" not in neo_events and "Trigger 9" not in neo_events  # dropped at sample 0
    assert neo_events["first"] == ours["first"]  # segment 0 agrees
    assert neo_events["second"] == 12.5 != ours["second"]  # neo adds segment 0's start: (250 + 1000) / 100
    assert neo_events["Trigger 8"] == 13.0 != ours["Trigger 8"]
    assert neo.raw_annotations["blocks"][0]["rec_datetime"].year != 2030  # signed year byte


# -- bad input --------------------------------------------------------------------------
def _bad(path, exc, words):
    with pytest.raises(exc) as info:
        TRCReader(path)
    msg = str(info.value)
    assert info.value.path == str(path)
    for w in words:
        assert w in msg, msg
    assert "Müller" not in msg and "Anna" not in msg


def test_truncated_at_structural_boundaries(tmp_path, full_file):
    path, _, _ = full_file
    data = path.read_bytes()
    lay = write_trc(tmp_path / "lay.TRC", _raw(200, _chans(2)), _chans(2), rate=512, **FULL)
    cuts = {
        10: (CorruptFileError, ["truncated header"]),  # inside the title
        175: (CorruptFileError, ["truncated header"]),  # before the header type
        639: (CorruptFileError, ["truncated header"]),
        640: (CorruptFileError, ["truncated", "past the end"]),  # zones and data gone
        lay.zones["LABCOD"][0] + 5000: (CorruptFileError, ["truncated", "past the end"]),
        lay.zones["TRIGGER"][0] + 7: (CorruptFileError, ["truncated", "past the end"]),
        lay.data_start + lay.frame_bytes * 10 + 3: (CorruptFileError, ["whole number", "sample frames"]),
    }
    for cut, (exc, words) in cuts.items():
        p = tmp_path / f"cut{cut}.TRC"
        p.write_bytes(data[:cut])
        _bad(p, exc, words)
    p = tmp_path / "nodata.TRC"
    p.write_bytes(data[: lay.data_start])
    with TRCReader(p) as r:  # header only: a valid, empty recording
        assert r.n_samples == 0 and r.header.segments == [] and r.read_channels([0])[0].shape == (0,)


def _patched(tmp_path, data: bytes, name: str, *edits) -> Path:
    b = bytearray(data)
    for off, fmt, value in edits:
        struct.pack_into(fmt, b, off, *(value if isinstance(value, tuple) else (value,)))
    p = tmp_path / name
    p.write_bytes(bytes(b))
    return p


def test_bad_headers(tmp_path, full_file):
    path, _, chans = full_file
    data = path.read_bytes()
    lay = write_trc(tmp_path / "lay.TRC", _raw(200, chans), chans, rate=512, **FULL)
    size = len(data)
    lab = lay.zones["LABCOD"][0] + 128 * 8  # record of stored channel 0
    cases = [
        ("type9", [(175, "<B", 9)], UnsupportedFormatError, ["unknown TRC header type 9"]),
        ("type2", [(175, "<B", 2)], UnsupportedFormatError, ["header type 2", "System 2"]),
        ("compressed", [(150, "<H", 1)], UnsupportedFormatError, ["compressed TRC not supported"]),
        ("bytes3", [(148, "<H", 3)], CorruptFileError, ["bytes per sample is 3"]),
        ("nchan0", [(142, "<H", 0)], CorruptFileError, ["number of channels is 0"]),
        ("rate0", [(146, "<H", 0)], CorruptFileError, ["Rate_Min"]),
        ("datalow", [(138, "<I", 100)], CorruptFileError, ["data offset 100", "fixed header"]),
        ("datahigh", [(138, "<I", size + 1)], CorruptFileError, ["truncated", "data offset"]),
        ("zonename", [(176 + 16 * 2, "<8s", b"NOTES   ")], CorruptFileError, ["expected 'NOTE'"]),
        ("zonepast", [(176 + 16 * 4 + 8, "<I", size)], CorruptFileError, ["zone TRONCA", "past the end"]),
        ("zonehuge", [(176 + 16 * 1 + 12, "<I", 0xFFFFFFFF)], CorruptFileError, ["zone LABCOD", "past the end"]),
        ("order", [(lay.zones["ORDER"][0], "<H", 640)], CorruptFileError, ["LABCOD record 640"]),
        ("orderzone", [(176 + 12, "<I", 4)], CorruptFileError, ["ORDER zone (4 bytes)", "8 channels"]),
        ("lrange", [(lab + 14, "<ii", (100, 50))], CorruptFileError, ["channel 0", "calibration range"]),
        ("prange", [(lab + 26, "<ii", (7, 7))], CorruptFileError, ["channel 0", "calibration range"]),
        ("mixedrate", [(lab + 44, "<H", 2)], UnsupportedFormatError, ["different sampling rates"]),
        ("tronca", [(lay.zones["TRONCA"][0], "<IIII", (500, 0, 100, 50))], CorruptFileError, ["TRONCA", "segment 1"]),
        ("troncapast", [(lay.zones["TRONCA"][0], "<IIII", (500, 0, 900, 201))], CorruptFileError, ["TRONCA"]),
        ("frame", [(142, "<H", 7)], CorruptFileError, ["whole number"]),
    ]
    for name, edits, exc, words in cases:
        _bad(_patched(tmp_path, data, name, *edits), exc, words)


def test_empty_wrong_magic_unreadable(tmp_path, full_file):
    (tmp_path / "empty.TRC").write_bytes(b"")
    _bad(tmp_path / "empty.TRC", EmptyFileError, ["empty"])
    data = bytearray(full_file[0].read_bytes())
    data[2:10] = b"MACROMED"
    (tmp_path / "magic.TRC").write_bytes(bytes(data))
    _bad(tmp_path / "magic.TRC", WrongMagicError, ["title"])
    (tmp_path / "short.TRC").write_bytes(b"0       ")
    _bad(tmp_path / "short.TRC", WrongMagicError, ["title"])
    (tmp_path / "dir.TRC").mkdir()
    _bad(tmp_path / "dir.TRC", UnreadableFileError, ["cannot open"])


def _fuzz_base() -> tuple[bytes, list[int]]:
    chans = _chans(2)[:3]
    with tempfile.TemporaryDirectory() as d:
        lay = write_trc(Path(d) / "f.TRC", _raw(64, chans), chans, tronca=[(10, 0), (100, 20)], **FULL)
        data = (Path(d) / "f.TRC").read_bytes()
    spots = list(range(640))  # the fixed header and zone table ...
    for zone, n in (("ORDER", 8), ("TRONCA", 40), ("NOTE", 100), ("EVENT A", 80), ("TRIGGER", 24)):
        spots += range(lay.zones[zone][0], lay.zones[zone][0] + n)
    for slot in (1, 2, 3):  # ... and the LABCOD records in use
        spots += range(lay.zones["LABCOD"][0] + 128 * slot, lay.zones["LABCOD"][0] + 128 * slot + 48)
    return data, spots


_FUZZ_DATA, _FUZZ_SPOTS = _fuzz_base()


def test_mutated_headers_raise_only_ephys_errors():
    """Random byte mutations (and cuts) of a valid file raise nothing but EphysError subclasses, and never hang."""
    hyp = pytest.importorskip("hypothesis")
    st = hyp.strategies

    @hyp.settings(max_examples=200, deadline=2000, suppress_health_check=[hyp.HealthCheck.too_slow], database=None)
    @hyp.given(st.lists(st.tuples(st.sampled_from(_FUZZ_SPOTS), st.integers(0, 255)), min_size=1, max_size=8),
               st.integers(0, len(_FUZZ_DATA)))
    def check(mutations, cut):
        _open_mutated(mutations, cut)

    check()


def _open_mutated(mutations, cut):
    data = bytearray(_FUZZ_DATA)
    for pos, value in mutations:
        data[pos] = value
    data = bytes(data) if cut % 4 else bytes(data[:cut])  # sometimes also truncate
    with tempfile.NamedTemporaryFile(suffix=".TRC") as f:
        f.write(data)
        f.flush()
        try:
            with TRCReader(f.name, buffer_bytes=512) as r:
                r.annotations()
                r.read_channels(list(range(len(r.header.channels))))
                r.read(0, min(r.n_samples, 5), [0])
        except EphysError:
            pass


# -- I/O pattern ------------------------------------------------------------------------
def test_module_uses_no_memory_maps():
    with open(trc_module.__file__, "rb") as f:
        names = {t.string for t in tokenize.tokenize(f.readline) if t.type == tokenize.NAME}
    assert not names & {"mmap", "memmap", "fromfile"}


class _CountingFile:
    """Wraps the reader's unbuffered file; counts read requests and the bytes asked for."""

    def __init__(self, f):
        self.f, self.reads, self.requested, self.seeks = f, 0, 0, []

    def readinto(self, b):
        self.reads += 1
        self.requested += len(b)
        return self.f.readinto(b)

    def read(self, n=-1):
        self.reads += 1
        return self.f.read(n)

    def seek(self, *a):
        self.seeks.append(a[0])
        return self.f.seek(*a)

    def fileno(self):
        return self.f.fileno()

    def close(self):
        self.f.close()


def test_read_requests_are_large_and_few(tmp_path):
    chans = [Chan(f"E{k}") for k in range(8)]
    raw = _raw(655_360, chans)  # 10 MiB of signal
    lay = write_trc(tmp_path / "big.TRC", raw, chans)
    header_reads = []

    class Counting(TRCReader):
        def _pread(self, offset, n):
            header_reads.append(n)
            return super()._pread(offset, n)

    signal_mib = 655_360 * lay.frame_bytes / 2**20
    for buffer_bytes in (DEFAULT_BUFFER_BYTES, 1 << 20):
        with Counting(tmp_path / "big.TRC", buffer_bytes=buffer_bytes) as r:
            assert len(header_reads) <= 3  # fixed header + coalesced zones
            r._f = counter = _CountingFile(r._f)
            out = r.read_channels(list(range(8)))
            assert counter.reads <= signal_mib
            np.testing.assert_array_equal(out[5][-100:], chans[5].physical(raw[-100:, 5]).astype(np.float32))
            counter.reads = counter.requested = 0
            counter.seeks.clear()
            r.read(100_000, 200_000, [2, 7])
            assert counter.seeks == [lay.data_start + 100_000 * lay.frame_bytes]
            assert counter.requested == 100_000 * lay.frame_bytes and counter.reads <= 2
        header_reads.clear()
