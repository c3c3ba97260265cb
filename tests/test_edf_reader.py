"""The buffered EDF/BDF reader against pyEDFlib and hand-built files."""

from __future__ import annotations

import numpy as np
import pyedflib
import pytest

from ephys.errors import CorruptFileError, EmptyFileError, WrongMagicError
from ephys.ingest.readers.edf import EDFReader, parse_tals
from ephys.ingest.writers.edf import write_edf


def _sine(n, sfreq, f=10.0, amp=50.0):
    return amp * np.sin(2 * np.pi * f * np.arange(n) / sfreq)


@pytest.mark.parametrize("bdf", [False, True])
def test_values_match_pyedflib(tmp_path, bdf):
    rng = np.random.default_rng(0)
    sig = [_sine(2560, 256) + rng.normal(0, 5, 2560), _sine(1280, 128, 3, 20)]
    p = write_edf(tmp_path / ("x.bdf" if bdf else "x.edf"), sig, ["EEG Fp1-Ref", "C3-A2"], [256, 128], bdf=bdf,
                  annotations=[(1.5, 0.0, "Augen zu"), (4.0, 2.5, "spike")])
    with EDFReader(p, buffer_bytes=1000) as r:  # tiny buffer: many chunks
        h = r.header
        assert h.format == ("bdf+c" if bdf else "edf+c")
        assert [c.name for c in h.signal_channels] == ["Fp1", "C3"]
        assert [c.sfreq for c in h.signal_channels] == [256.0, 128.0]
        assert h.duration_s == 10.0
        got = r.read_channels([0, 1])
        anns = r.annotations()
    ref = pyedflib.EdfReader(str(p))
    try:
        for i in range(2):
            np.testing.assert_allclose(got[i], ref.readSignal(i), atol=1e-3)
    finally:
        ref.close()
    assert [(a.onset_s, a.duration_s, a.text) for a in anns] == [(1.5, 0.0, "Augen zu"), (4.0, 2.5, "spike")]


def test_units_are_converted_to_microvolts(tmp_path):
    x = _sine(1000, 100, amp=50.0)  # 50 µV
    mv = write_edf(tmp_path / "mv.edf", [x / 1000], ["C3"], [100], units=["mV"], phys=(-1.0, 1.0))
    uv = write_edf(tmp_path / "uv.edf", [x], ["C4"], [100], units=["UV"])  # DREAMS spelling, not volts
    for p, factor in ((mv, 1000.0), (uv, 1.0)):
        with EDFReader(p) as r:
            (y,) = r.read_channels([0])
            assert r.header.signal_channels[0].to_uv == factor
        np.testing.assert_allclose(y, x, atol=0.1)


def test_discontinuous_segments(tmp_path):
    x = _sine(6 * 100, 100)
    p = write_edf(tmp_path / "d.edf", [x], ["Cz"], [100], record_s=1.0, onsets=[0, 1, 2, 10, 11, 12])
    with EDFReader(p) as r:
        segs = [(s.start_s, s.duration_s) for s in r.header.segments]
        assert r.header.format == "edf+d"
    assert segs == [(0.0, 3.0), (10.0, 3.0)]


def test_size_mismatch_is_corrupt(tmp_path):
    p = write_edf(tmp_path / "x.edf", [_sine(500, 100)], ["Cz"], [100])
    data = p.read_bytes()
    p.write_bytes(data.replace(b"\n", b"\r\n") + b"\r\n")
    with pytest.raises(CorruptFileError, match="does not match its header"):
        EDFReader(p)
    p.write_bytes(data[:-7])
    with pytest.raises(CorruptFileError, match="does not match its header"):
        EDFReader(p)


@pytest.mark.parametrize(
    "patch, message",
    [
        ((184, b"999     "), "header length field"),
        ((252, b"9999"), "out of range"),
        ((252, b"ab  "), "not a number"),
        ((244, b"0       "), "must be positive"),
        ((244, b"nan     "), "not finite"),
    ],
)
def test_lying_headers(tmp_path, patch, message):
    p = write_edf(tmp_path / "x.edf", [_sine(500, 100)], ["Cz"], [100])
    b = bytearray(p.read_bytes())
    off, val = patch
    b[off : off + len(val)] = val
    p.write_bytes(bytes(b))
    with pytest.raises(CorruptFileError, match=message):
        EDFReader(p)


def test_empty_and_wrong_magic(tmp_path):
    (tmp_path / "e.edf").write_bytes(b"")
    with pytest.raises(EmptyFileError):
        EDFReader(tmp_path / "e.edf")
    (tmp_path / "t.edf").write_text("hello, I am not an EDF file" * 20)
    with pytest.raises(WrongMagicError, match="not an EDF/BDF file"):
        EDFReader(tmp_path / "t.edf")


def test_tal_parsing():
    raw = b"+0\x14\x14\x00+1.5\x1520\x14Anfall\x14second\x14\x00+3\x14Gr\xfcn\x14\x00\x00\x00"
    assert parse_tals(raw, "f", 0) == [(0.0, 0.0, []), (1.5, 20.0, ["Anfall", "second"]), (3.0, 0.0, ["Grün"])]
    with pytest.raises(CorruptFileError, match="malformed annotation"):
        parse_tals(b"+x\x14bad\x14\x00", "f", 3)
    with pytest.raises(CorruptFileError, match="data record 7"):
        parse_tals(b"1.0\x14no sign\x14\x00", "f", 7)


@pytest.mark.parametrize("bdf", [False, True])
def test_chunked_reads_equal_whole_reads(tmp_path, bdf):
    rng = np.random.default_rng(3)
    sig = [rng.normal(0, 30, 256 * 7), rng.normal(0, 30, 256 * 7), rng.normal(0, 30, 64 * 7)]
    p = write_edf(tmp_path / "c.edf", sig, ["Fp1", "Fp2", "Cz"], [256, 256, 64], bdf=bdf)
    with EDFReader(p, buffer_bytes=700) as r:
        whole = r.read_channels([0, 1, 2])
        for start, stop in [(0, 1792), (5, 300), (255, 257), (1000, 1792), (7, 7)]:
            part = r.read(start, stop, [1, 0])
            assert part.shape == (2, stop - start) and part.dtype == np.float32
            np.testing.assert_array_equal(part, np.stack([whole[1][start:stop], whole[0][start:stop]]))
        np.testing.assert_array_equal(r.read(10, 70, [2])[0], whole[2][10:70])
        with pytest.raises(ValueError, match="one sampling rate"):
            r.read(0, 10, [0, 2])
        with pytest.raises(ValueError, match="outside"):
            r.read(0, 1793, [0])
