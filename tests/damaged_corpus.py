"""Generator of a damaged-file corpus (EDF, BDF, Micromed TRC, Nicolet .e, Nihon Kohden .EEG, FIF, EEGLAB,
BrainVision) next to a few healthy files.

Used by ``tests/test_damaged_corpus.py``. Every damaged file is derived from a small valid base
file written by the independent test writers (``ephys.ingest.writers`` (edf, trc, nicolet) and ``tests/nk_writer``)
and then cut, patched or re-encoded; :func:`write_damaged` returns ``{case name: path}``. The
expected outcome of each case lives in the test module's table, not here.

File names carry the case name, so a failing assertion names the damage.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ephys.ingest.writers.edf import write_edf
from tests.ingest_helpers import real
from ephys.ingest.writers.nicolet import ANNOTATION, TS, Event, Trace, write_nicolet
from tests.nk_writer import write_nk
from ephys.ingest.writers.trc import Chan, write_trc

RATE = 256
START = dt.datetime(2020, 1, 1, 8, 0, 0)
HEALTHY_LABELS = ["Fp1", "Fp2", "C3", "C4"]
DAMAGED_LABELS = ["Fp1", "Cz"]
DAMAGED_S = 40  # one 30-s epoch: a damaged file that was read anyway would show up as 'ok'
SHORT_S = 20  # shorter than one epoch: readable files are rejected 'too_short' and add nothing to shards

# EDF signal-header fields (name, width), in file order (Kemp 1992, table 1).
_EDF_FIELDS = (("label", 16), ("transducer", 80), ("unit", 8), ("pmin", 8), ("pmax", 8),
               ("dmin", 8), ("dmax", 8), ("prefilter", 80), ("spr", 8), ("reserved", 32))
# Fixed-header fields: offset, width.
EDF_HEADER_BYTES, EDF_N_RECORDS, EDF_RECORD_S, EDF_N_SIGNALS = (184, 8), (236, 8), (244, 8), (252, 4)


# -- byte helpers --------------------------------------------------------------------------------
def put(data: bytes, offset: int, value: bytes) -> bytes:
    """``data`` with ``value`` written over it at ``offset``."""
    b = bytearray(data)
    b[offset : offset + len(value)] = value
    return bytes(b)


def put_field(data: bytes, field: tuple[int, int], text: str) -> bytes:
    """Overwrite an ASCII header field (space-padded to its width)."""
    offset, width = field
    raw = text.encode("latin-1")
    assert len(raw) <= width, (text, width)
    return put(data, offset, raw.ljust(width))


def edf_signal_field(ns: int, name: str, signal: int) -> tuple[int, int]:
    """(offset, width) of field ``name`` of signal ``signal`` (0-based) in a header of ``ns`` signals."""
    pos = 256
    for fname, width in _EDF_FIELDS:
        if fname == name:
            return pos + width * signal, width
        pos += width * ns
    raise KeyError(name)


def crlf(data: bytes) -> bytes:
    """A binary file sent through a text-mode transfer: CR inserted before every LF."""
    return data.replace(b"\n", b"\r\n")


# -- base files ---------------------------------------------------------------------------------
def _eeg(n_ch: int, seconds: int, seed: int) -> list[np.ndarray]:
    """Alpha-ish sine plus noise, µV, one array per channel."""
    rng = np.random.default_rng(seed)
    t = np.arange(seconds * RATE) / RATE
    return [30 * np.sin(2 * np.pi * (8 + k) * t) + rng.normal(0, 10, t.size) for k in range(n_ch)]


@dataclass
class EdfBase:
    data: bytes
    ns: int  # signals in the header, annotation channel included
    header_bytes: int
    record_bytes: int
    ann_offset: int  # offset of the annotation channel inside a data record


def edf_base(folder: Path, *, bdf: bool = False, seconds: int = DAMAGED_S, seed: int = 1,
             annotations=((5.0, 0.0, "eyes closed"),), labels=DAMAGED_LABELS) -> EdfBase:
    sig = _eeg(len(labels), seconds, seed)
    p = write_edf(folder / ("base.bdf" if bdf else "base.edf"), sig, labels, [RATE] * len(labels), bdf=bdf,
                  annotations=list(annotations))
    data = p.read_bytes()
    p.unlink()
    bps = 3 if bdf else 2
    ns = len(labels) + 1
    return EdfBase(data, ns, 256 * (ns + 1), len(labels) * RATE * bps + 120, len(labels) * RATE * bps)


@dataclass
class TrcBase:
    data: bytes
    data_start: int
    frame: int
    zones: dict[str, tuple[int, int]]


def _trc_raw(n_ch: int, seconds: int, seed: int) -> np.ndarray:
    x = np.stack(_eeg(n_ch, seconds, seed), axis=1)  # µV; Chan default: 6400 µV over 65536 codes
    return np.clip(np.round(x / (6400 / 65536)) + 32768, 0, 65535).astype(np.uint16)


def trc_base(folder: Path, *, seconds: int = DAMAGED_S, seed: int = 2, labels=DAMAGED_LABELS) -> TrcBase:
    chans = [Chan(lab) for lab in labels]
    p = folder / "base.TRC"
    lay = write_trc(p, _trc_raw(len(labels), seconds, seed), chans, rate=RATE, notes=[(RATE * 5, "eyes closed")])
    data = p.read_bytes()
    p.unlink()
    return TrcBase(data, lay.data_start, lay.frame_bytes, lay.zones)


@dataclass
class NicoletBase:
    data: bytes
    layout: object  # ephys.ingest.writers.nicolet.Layout

    def section_offset(self, name: str, pos: int) -> int:
        """File offset of byte ``pos`` of section ``name``'s payload (sections may be split in blocks)."""
        for off, n in self.layout.sections[name]:
            if pos < n:
                return off + pos
            pos -= n
        raise IndexError(pos)


def nicolet_base(folder: Path, *, seconds: int = DAMAGED_S, seed: int = 3, labels=DAMAGED_LABELS) -> NicoletBase:
    traces = [Trace(lab, lab, "REF", float(RATE), 0.1) for lab in labels]
    samples = [np.clip(np.round(x / 0.1), -32768, 32767).astype("<i2") for x in _eeg(len(labels), seconds, seed)]
    p = folder / "base.e"
    event = Event(START + dt.timedelta(seconds=5), 0.0, ANNOTATION, "eyes closed", "MKR")
    lay = write_nicolet(p, traces, [(START, float(seconds))], samples, events=[event])
    data = p.read_bytes()
    p.unlink()
    return NicoletBase(data, lay)


# -- healthy files ------------------------------------------------------------------------------
HEALTHY_S = 90  # three 30-s epochs


def write_healthy(folder: Path) -> dict[str, Path]:
    """Four valid recordings (EDF+ with annotations, BDF+, TRC, .e); ``{name: path}``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    out["healthy-edf"] = write_edf(folder / "healthy.edf", _eeg(4, HEALTHY_S, 10), HEALTHY_LABELS, [RATE] * 4,
                                   annotations=[(12.0, 0.0, "eyes open"), (40.5, 2.0, "photic 10 Hz")])
    out["healthy-bdf"] = write_edf(folder / "healthy.bdf", _eeg(4, HEALTHY_S, 11), HEALTHY_LABELS, [RATE] * 4,
                                   bdf=True, annotations=[(3.0, 0.0, "start")])
    chans = [Chan(lab) for lab in HEALTHY_LABELS]
    write_trc(folder / "healthy.TRC", _trc_raw(4, HEALTHY_S, 12), chans, rate=RATE, notes=[(RATE * 7, "HV")])
    out["healthy-trc"] = folder / "healthy.TRC"
    traces = [Trace(lab, lab, "REF", float(RATE), 0.1) for lab in HEALTHY_LABELS]
    samples = [np.clip(np.round(x / 0.1), -32768, 32767).astype("<i2") for x in _eeg(4, HEALTHY_S, 13)]
    write_nicolet(folder / "healthy.e", traces, [(START, float(HEALTHY_S))], samples,
                  events=[Event(START + dt.timedelta(seconds=20), 0.0, ANNOTATION, "spike", "MKR")])
    out["healthy-e"] = folder / "healthy.e"
    return out


# -- damaged files ------------------------------------------------------------------------------
LATIN1_TEXT = "Augen geöffnet, Kopfschmerz"  # what the Latin-1 annotation must decode to
BAD_UTF8 = b"spike \xff\xfe\xc3( end"  # not UTF-8 at all; read as Latin-1 it is "spike ÿþÃ( end"


def _edf_cases(folder: Path) -> dict[str, bytes]:
    b = edf_base(folder)
    d, ns, hb, rb = b.data, b.ns, b.header_bytes, b.record_bytes
    sig = lambda name, i=0: edf_signal_field(ns, name, i)  # noqa: E731
    ann_at = lambda record: hb + record * rb + b.ann_offset  # noqa: E731
    # Annotation text that is not UTF-8: write a same-length ASCII placeholder, then patch its bytes.
    lat = edf_base(folder, seconds=SHORT_S, seed=4, annotations=[(2.0, 0.0, "X" * len(LATIN1_TEXT.encode("latin-1")))])
    bad = edf_base(folder, seconds=SHORT_S, seed=5, annotations=[(3.0, 1.5, "Y" * len(BAD_UTF8))])
    return {
        "edf-zero-bytes": b"",
        "edf-cut-in-fixed-header": d[:100],
        "edf-cut-after-fixed-header": d[:256],
        "edf-cut-in-signal-headers": d[: 256 + 300],
        "edf-cut-after-header": d[:hb],
        "edf-cut-mid-record": d[: hb + 2 * rb + rb // 2],
        "edf-wrong-magic": put(d, 0, b"1       "),
        "edf-header-bytes-wrong": put_field(d, EDF_HEADER_BYTES, "9999"),
        "edf-header-bytes-text": put_field(d, EDF_HEADER_BYTES, "abc"),
        "edf-n-records-larger": put_field(d, EDF_N_RECORDS, str(DAMAGED_S + 10)),
        "edf-n-records-negative": put_field(d, EDF_N_RECORDS, "-5"),
        "edf-n-records-text": put_field(d, EDF_N_RECORDS, "lots"),
        "edf-n-signals-zero": put_field(d, EDF_N_SIGNALS, "0"),
        "edf-n-signals-absurd": put_field(d, EDF_N_SIGNALS, "9999"),
        "edf-n-signals-text": put_field(d, EDF_N_SIGNALS, "ab"),
        "edf-spr-zero": put_field(d, sig("spr"), "0"),
        "edf-spr-negative": put_field(d, sig("spr"), "-256"),
        "edf-spr-absurd": put_field(d, sig("spr"), "99999999"),
        "edf-spr-overflow": put_field(d, sig("spr"), "1e30"),  # integral as a float, too large for int64
        "edf-record-duration-zero": put_field(d, EDF_RECORD_S, "0"),
        "edf-record-duration-negative": put_field(d, EDF_RECORD_S, "-1"),
        "edf-record-duration-nan": put_field(d, EDF_RECORD_S, "nan"),
        "edf-record-duration-absurd": put_field(d, EDF_RECORD_S, "3000"),  # 256 samples / 3000 s = 0.085 Hz
        "edf-record-duration-years": put_field(d, EDF_RECORD_S, "99999999"),  # 4e9 s: a header that lies
        "edf-physical-min-nan": put_field(d, sig("pmin"), "nan"),
        "edf-physical-max-nan": put_field(d, sig("pmax", 1), "NaN"),
        "edf-physical-min-eq-max": put_field(put_field(d, sig("pmin"), "100"), sig("pmax"), "100"),
        "edf-digital-min-eq-max": put_field(put_field(d, sig("dmin", 1), "0"), sig("dmax", 1), "0"),
        "edf-tal-onset-not-a-number": put(d, ann_at(3), b"+3x\x14\x14\x00"),
        "edf-tal-no-sign": put(d, ann_at(7), b"7\x14\x14\x00"),
        "edf-tal-garbage": put(d, ann_at(10), b"\xff" * 120),
        "edf-annotation-latin1": lat.data.replace(b"X" * len(LATIN1_TEXT), LATIN1_TEXT.encode("latin-1")),
        "edf-annotation-not-utf8": bad.data.replace(b"Y" * len(BAD_UTF8), BAD_UTF8),
        "edf-crlf": crlf(d),
    }


def _bdf_cases(folder: Path) -> dict[str, bytes]:
    b = edf_base(folder, bdf=True, seed=6)
    d, ns, hb, rb = b.data, b.ns, b.header_bytes, b.record_bytes
    return {
        "bdf-cut-mid-record": d[: hb + 5 * rb + 7],
        "bdf-wrong-magic": put(d, 0, b"\xfeBIOSEMI"),
        "bdf-digital-min-eq-max": put_field(put_field(d, edf_signal_field(ns, "dmin", 0), "5"),
                                            edf_signal_field(ns, "dmax", 0), "5"),
        "bdf-crlf": crlf(d),
    }


def _trc_cases(folder: Path) -> dict[str, bytes]:
    b = trc_base(folder)
    d, ds = b.data, b.data_start
    lab1 = b.zones["LABCOD"][0] + 128 * 1  # LABCOD record of the last stored channel (slots are reversed)
    return {
        "trc-zero-bytes": b"",
        "trc-cut-in-fixed-header": d[:300],
        "trc-cut-in-zones": d[: b.zones["LABCOD"][0] + 1000],
        "trc-cut-before-data": d[:ds],
        "trc-cut-mid-data": d[: ds + 1000 * b.frame + 1],
        "trc-wrong-magic": put(d, 0, b"* MACROMED"),
        "trc-rate-zero": put(d, 146, struct.pack("<H", 0)),
        "trc-n-channels-zero": put(d, 142, struct.pack("<H", 0)),
        "trc-bytes-per-sample-3": put(d, 148, struct.pack("<H", 3)),
        "trc-data-offset-past-eof": put(d, 138, struct.pack("<I", len(d) + 4096)),
        "trc-zone-name-wrong": put(d, 176 + 16 * 1, b"LABXXX  "),
        "trc-logical-min-eq-max": put(d, lab1 + 14, struct.pack("<2i", 100, 100)),
        "trc-header-type-unknown": put(d, 175, bytes([9])),
        "trc-crlf": crlf(d),  # the zone table holds LF bytes too: zones shift
    }


def _nicolet_cases(folder: Path) -> dict[str, bytes]:
    b = nicolet_base(folder)
    d, lay = b.data, b.layout
    first_ch, first_ch_n = lay.sections["0"][0]  # first block of channel 0's sample stream
    rate_at = b.section_offset(TS, 760 + 0x110)  # trace 0: f64 sampling rate
    return {
        "e-zero-bytes": b"",
        "e-cut-in-magic": d[:10],
        "e-cut-in-tag-table": d[:2000],
        "e-cut-in-index": d[: lay.index_blocks[0] + 40],
        "e-cut-before-sections": d[: lay.data_start],
        "e-cut-after-section": d[: first_ch + first_ch_n],
        "e-cut-mid-section": d[: first_ch + first_ch_n // 2],
        "e-wrong-magic": put(d, 0, b"\x00" * 16),
        "e-index-pointer-past-eof": put(d, 24, struct.pack("<I", len(d) + 100)),
        "e-index-count-absurd": put(d, 172208, struct.pack("<I", 0xFFFFFFF)),
        "e-sampling-rate-zero": put(d, rate_at, struct.pack("<d", 0.0)),
        "e-sampling-rate-negative": put(d, rate_at, struct.pack("<d", -256.0)),
        "e-sampling-rate-nan": put(d, rate_at, struct.pack("<d", float("nan"))),
        "e-crlf": crlf(d),
    }


def _nk_cases(folder: Path) -> dict[str, bytes]:
    """Nihon Kohden native ``.EEG`` (alone: MNE then uses the device's default channel names)."""
    base = folder / "_nk_base"
    base.mkdir(exist_ok=True)
    x = np.stack(_eeg(2, DAMAGED_S, 4))
    d = write_nk(base / "base.EEG", x, RATE, start=START).read_bytes()
    shutil.rmtree(base)
    data_block = 0x1900  # where write_nk puts it
    return {
        "nk-cut-in-header": d[:0x1000],
        "nk-cut-before-data": d[: data_block + 0x27 + 20],
        "nk-cut-mid-data": d[: len(d) // 2 + 1],
        "nk-waveform-sign-wrong": put(d, 0x17FE, b"\x00"),
        "nk-control-block-past-eof": put(d, 0x92, struct.pack("<I", len(d) + 100)),
        "nk-rate-zero": put(d, data_block + 0x1A, struct.pack("<H", 0)),
        "nk-channels-zero": put(d, data_block + 0x26, b"\x00"),
    }


def _fif_tag_end(data: bytes, at: int) -> int:
    """The end of the last whole FIF tag (16-byte big-endian header: kind, type, size, next) before ``at``."""
    pos = 0
    while True:
        size = struct.unpack(">i", data[pos + 8 : pos + 12])[0]
        if pos + 16 + size > at:
            return pos
        pos += 16 + size


def _mne_cases(folder: Path) -> dict[str, bytes]:
    """FIF and EEGLAB (data inside the .set), written by MNE, then cut."""
    import mne

    base = folder / "_mne_base"
    base.mkdir(exist_ok=True)
    raw = mne.io.RawArray(np.stack(_eeg(2, DAMAGED_S, 5)) * 1e-6, mne.create_info(DAMAGED_LABELS, float(RATE), "eeg"),
                          verbose="error")
    raw.save(base / "b_raw.fif", verbose="error")
    mne.export.export_raw(base / "b.set", raw, fmt="eeglab", verbose="error")
    fif, eeglab = (base / "b_raw.fif").read_bytes(), (base / "b.set").read_bytes()
    shutil.rmtree(base)
    return {
        "fif-cut-in-header": fif[:200],
        "fif-cut-mid-data": fif[: len(fif) // 2],
        "fif-cut-at-a-tag": fif[: _fif_tag_end(fif, len(fif) // 2)],  # MNE reads this as a shorter recording
        "set-cut-in-header": eeglab[:100],
        "set-cut-mid": eeglab[: len(eeglab) // 2],
        "set-cut-near-end": eeglab[:-500],
    }


def _brainvision_cases(folder: Path) -> dict[str, dict[str, bytes]]:
    """BrainVision triplets (``{extension: bytes}``; the header and marker file name their own set)."""
    from tests.test_formats_ingest import write_brainvision

    base = folder / "_bv_base"
    base.mkdir(exist_ok=True)
    write_brainvision(base, "base", np.stack(_eeg(2, DAMAGED_S, 6)), DAMAGED_LABELS, RATE, [("Comment", "eyes closed", 35.0)])
    vhdr, vmrk, eeg = ((base / f"base.{e}").read_text(encoding="utf-8") if e != "eeg" else (base / "base.eeg").read_bytes()
                       for e in ("vhdr", "vmrk", "eeg"))
    shutil.rmtree(base)
    frame = 4 * len(DAMAGED_LABELS)

    def triplet(name, header=vhdr, data=eeg):
        files = {".vhdr": header.replace("base.", f"{name}.").encode(), ".vmrk": vmrk.replace("base.", f"{name}.").encode()}
        return {**files, ".eeg": data} if data is not None else files

    return {
        "bv-cut-mid-sample": triplet("bv-cut-mid-sample", data=eeg[: len(eeg) // 2 + 3]),
        "bv-cut-at-sample-marker-beyond": triplet("bv-cut-at-sample-marker-beyond", data=eeg[: frame * RATE * 20]),
        "bv-data-empty": triplet("bv-data-empty", data=b""),
        "bv-channel-count-wrong": triplet("bv-channel-count-wrong", header=vhdr.replace("NumberOfChannels=2", "NumberOfChannels=3")),
        "bv-binary-format-unknown": triplet("bv-binary-format-unknown", header=vhdr.replace("IEEE_FLOAT_32", "IEEE_FLOAT_80")),
        "bv-sampling-interval-zero": triplet("bv-sampling-interval-zero",
                                             header=re.sub(r"SamplingInterval=\S+", "SamplingInterval=0", vhdr)),
    }


EXTENSIONS = {"edf": ".edf", "bdf": ".bdf", "trc": ".TRC", "e": ".e", "nk": ".EEG", "fif": "_raw.fif", "set": ".set"}


def write_damaged(folder: Path) -> dict[str, Path]:
    """Write every damaged case into ``folder``; ``{case name: path}`` (file name = case name + extension)."""
    folder.mkdir(parents=True, exist_ok=True)
    cases: dict[str, bytes] = {}
    for make in (_edf_cases, _bdf_cases, _trc_cases, _nicolet_cases, _nk_cases, _mne_cases):
        cases.update(make(folder))
    out = {}
    for name, data in cases.items():
        p = folder / (name + EXTENSIONS[name.split("-")[0]])
        p.write_bytes(data)
        out[name] = p
    for name, files in _brainvision_cases(folder).items():  # multi-file: the header is the recording's path
        for ext, data in files.items():
            (folder / (name + ext)).write_bytes(data)
        out[name] = folder / (name + ".vhdr")
    # The CRLF-damaged recording found in the wild (see ../shared/data/real/README.md).
    src = real("eegmmidb/S001R03_damaged-crlf.edf")
    if src.exists():
        out["edf-crlf-real"] = folder / "edf-crlf-real.edf"
        shutil.copyfile(src, out["edf-crlf-real"])
    return out
