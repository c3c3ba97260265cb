"""A clinical-like archive tiled from real EEG: routine EEGs and monitoring files in EDF+, BDF+,
Micromed .TRC and Nicolet .e, with German clinical annotations.

Used by ``ephys quickstart`` (scale ``quickstart``) and ``benchmarks/ingest.py make-archive``
(``tiny``, ``small``, ``routine``, ``full``). The real sources are two recordings of the project's
``shared/data/real`` folder (``real`` below). Content: the 19 10-20 electrodes plus two ear
stand-ins of two real 64-channel recordings (PhysioNet EEG Motor Movement/Imagery S001R03, 160 Hz,
125 s; the BCI2000 test recording from MNE's test data, 128 Hz, 124 s; both ODC-By 1.0). They are
the only real files here that hold all 19 10-20 electrodes for more than a few seconds. ``A1``/``A2``
carry the T9/T10 signals (the 10-10 sites just above the ears). Each source is resampled to the
target rate with ``scipy.signal.resample_poly`` (160 -> 256 Hz is up 8 / down 5), so the
content above the source's Nyquist (64 or 80 Hz) is empty: real EEG, band-limited.

Tiling: a file is a sequence of windows of 10-40 s drawn (seeded) from the two sources at
random offsets, joined by 1-s cosine cross-fades (no steps at the seams). Writers stream in
blocks of whole 1-s records, so a 24-h file never sits in memory:

* EDF+/BDF+: header from :func:`ephys.ingest.writers.edf.write_edf` (written with zero records,
  then the record count is patched), records vectorised here, 1-s records, one annotation channel;
* Micromed .TRC: header from :func:`ephys.ingest.writers.trc.write_trc` (TRC has no sample count:
  samples are appended), 2-byte samples, notes;
* Nicolet .e: :func:`ephys.ingest.writers.nicolet.write_nicolet` (in memory; routine lengths
  only), events.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from ephys.ingest.writers import edf as edf_writer
from ephys.ingest.writers import nicolet as nicolet_writer
from ephys.ingest.writers import trc as trc_writer

#: The real recordings of a source checkout (``../shared/data/real`` beside the repository).
REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"
SOURCES = ("eegmmidb/S001R03.edf", "bci2000-edf/test_edf_overlapping_annotations.edf")
TEN_TWENTY = ("Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T7", "C3", "Cz", "C4", "T8",
              "P7", "P3", "Pz", "P4", "P8", "O1", "O2")  # (= ephys.ingest.channels.TEN_TWENTY)
CHANNELS = TEN_TWENTY + ("A1", "A2")
SOURCE_NAME = {"A1": "T9", "A2": "T10"}  # ear stand-ins
OLD = {"T7": "T3", "T8": "T4", "P7": "T5", "P8": "T6"}
START = dt.datetime(2024, 3, 4, 8, 0, 0)
EDF_PHYS = (-3276.8, 3276.7)  # µV; 0.1 µV per code
BDF_PHYS = (-262144, 262143)  # µV; 1/32 µV per code
TRC_UV_PER_CODE = 6400 / 65536  # ephys.ingest.writers.trc.Chan defaults: ±3200 µV over 16 bits
NICOLET_UV_PER_CODE = 0.1


@dataclass(frozen=True)
class FileSpec:
    """One archive file: path relative to the archive, format, length (s), channels, rate (Hz)."""

    relpath: str
    fmt: str  # edf | bdf | trc | nicolet
    kind: str  # routine | monitoring
    duration_s: int
    n_channels: int
    sfreq: int
    labels: str  # label style: clinical (EEG T3-Ref), plain (Fp1), old (T3)
    seizure: bool = False


@dataclass
class Written:
    spec: FileSpec
    bytes: int
    annotations: list = field(default_factory=list)


def plan(scale: str) -> list[FileSpec]:
    """The archive's files at ``scale`` (quickstart 0.6 EEG-h, tiny ~0.4 EEG-h, small ~6.3 EEG-h, full 40 EEG-h; routine: 12 1-h
    19-channel EDF+ EEGs, 8 at 256 Hz and 4 at 512 Hz, the routine workload of issue #16)."""
    if scale == "routine":
        return [FileSpec(f"routine/eeg_{k:03d}.edf", "edf", "routine", 3600, 19, 256 if k <= 8 else 512, "clinical",
                         seizure=k % 3 == 0) for k in range(1, 13)]
    if scale == "quickstart":  # 36 EEG-minutes: 3 EDF+, 1 TRC, 1 .e (6 min each), one 12-min BDF+
        m, reps, ltm = 6, (3, 1, 1), [("ltm/ltm_001.bdf", "bdf", 12 * 60, 19, 256, "clinical")]
    elif scale == "tiny":
        m, reps, ltm = 6, (1, 1, 1), [("ltm/ltm_001.bdf", "bdf", 6 * 60, 21, 512, "plain")]
    elif scale == "small":
        m, reps, ltm = 20, (3, 2, 2), [("ltm/ltm_001.edf", "edf", 3 * 3600, 21, 512, "plain"),
                                       ("ltm/ltm_002.bdf", "bdf", 1 * 3600, 19, 256, "clinical")]
    elif scale == "full":
        m, reps, ltm = 20, (12, 6, 6), [("ltm/ltm_001.edf", "edf", 24 * 3600, 21, 512, "plain"),
                                        ("ltm/ltm_002.bdf", "bdf", 8 * 3600, 19, 256, "clinical")]
    else:
        raise ValueError(scale)
    out, k = [], 0
    for fmt, ext, n_ch, sf, style, n in (("edf", "edf", 19, 256, "clinical", reps[0]), ("trc", "TRC", 21, 512, "old", reps[1]),
                                         ("nicolet", "e", 21, 256, "plain", reps[2])):
        for _ in range(n):
            k += 1
            out.append(FileSpec(f"routine/eeg_{k:03d}.{ext}", fmt, "routine", m * 60, n_ch, sf, style, seizure=k % 3 == 0))
    return out + [FileSpec(p, f, "monitoring", d, c, s, st, seizure=True) for p, f, d, c, s, st in ltm]


def label(name: str, style: str) -> str:
    """The stored channel label of electrode ``name`` in a label style (the reader normalises them)."""
    if style == "clinical":
        return f"EEG {OLD.get(name, name)}-Ref"
    if style == "old":
        return OLD.get(name, name)
    return name


def load_pool(sfreq: int, real: Path = REAL) -> list[np.ndarray]:
    """The real sources at ``sfreq`` Hz: ``(21, n)`` float32 µV each, rows in :data:`CHANNELS` order."""
    import mne
    from scipy.signal import resample_poly

    pool = []
    for rel in SOURCES:
        raw = mne.io.read_raw_edf(real / rel, preload=True, verbose="error")
        names = {c.rstrip(".").upper(): c for c in raw.ch_names}
        picks = [names[SOURCE_NAME.get(c, c).upper()] for c in CHANNELS]
        x = raw.get_data(picks=picks) * 1e6
        r = Fraction(sfreq) / Fraction(raw.info["sfreq"]).limit_denominator(1000)
        y = resample_poly(x, r.numerator, r.denominator, axis=1)
        edge = sfreq // 2  # drop the resampler's edge transients
        pool.append(np.ascontiguousarray(y[:, edge:-edge], dtype=np.float32))
    return pool


def _pieces(pool: list[np.ndarray], sfreq: int, rng: np.random.Generator):
    """Endless random windows (10-40 s) of the pool, cross-faded over 1 s into the previous one."""
    fade = sfreq
    ramp = (0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)).astype(np.float32)
    tail = None
    while True:
        src = pool[int(rng.integers(len(pool)))]
        n = int(rng.integers(10 * sfreq, 40 * sfreq))
        s = int(rng.integers(0, src.shape[1] - n))
        p = src[:, s : s + n].copy()
        if tail is not None:
            p[:, :fade] = tail * (1 - ramp) + p[:, :fade] * ramp
        tail = p[:, -fade:]
        yield p[:, :-fade]


def tiled(pool: list[np.ndarray], sfreq: int, n_samples: int, seed: int, block: int):
    """Yield float32 µV blocks ``(21, block)`` (the last may be shorter) totalling ``n_samples``."""
    gen = _pieces(pool, sfreq, np.random.default_rng(seed))
    parts, have, done = [], 0, 0
    while done < n_samples:
        want = min(block, n_samples - done)
        while have < want:
            p = next(gen)
            parts.append(p)
            have += p.shape[1]
        cat = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
        yield cat[:, :want]
        parts, have, done = [cat[:, want:]], have - want, done + want


def annotations(spec: FileSpec, seed: int) -> list[tuple[int, float, str]]:
    """``(onset s, duration s, text)`` in German clinical style: routine protocol or a few per hour."""
    d = spec.duration_s
    if spec.kind == "routine":
        ev = [(0.05, 0, "Augen zu"), (0.08, 0, "Augen auf"), (0.25, 180, "Hyperventilation"),
              (0.6, 0, "Fotostimulation 10 Hz"), (0.9, 0, "Pat. unruhig, Bewegungsartefakt")]
        if spec.seizure:
            ev.append((0.8, 20, "Anfall"))
        return sorted((int(f * d), float(dur if f * d + dur < d else 0), t) for f, dur, t in ev)
    rng = np.random.default_rng(seed + 7)
    words = ["Pat. schläft", "Pat. wach", "Anfall", "Bewegungsartefakt", "Spike-Wave-Komplexe",
             "kein Anfall, Pat. kratzt sich", "Elektrode F3 neu angelegt", "V.a. Anfall"]
    ev = [(5, 0.0, "Beginn Aufzeichnung")]
    for h in range(max(1, d // 3600)):
        t = h * 3600 + int(rng.integers(60, 3540))
        text = words[int(rng.integers(len(words)))]
        if t < d - 60:
            ev.append((t, 30.0 if text == "Anfall" else 0.0, text))
    return sorted(ev)


def write_edf_stream(path: Path, spec: FileSpec, blocks, anns: list[tuple[int, float, str]],
                     labels: list[str] | None = None) -> None:
    """EDF+C (or BDF+C) with 1-s records from float32 µV blocks of whole records; one annotation channel.
    ``labels`` (default: the 10-20 names in ``spec.labels`` style) name the ``spec.n_channels`` rows."""
    bdf = spec.fmt == "bdf"
    bps, sf, n_ch = (3 if bdf else 2), spec.sfreq, spec.n_channels
    phys = BDF_PHYS if bdf else EDF_PHYS
    dmin, dmax = (-(2**23), 2**23 - 1) if bdf else (-32768, 32767)
    gain = (phys[1] - phys[0]) / (dmax - dmin)
    ann_bytes = 120
    labels = labels or [label(c, spec.labels) for c in CHANNELS[:n_ch]]
    edf_writer.write_edf(path, [np.zeros(0)] * n_ch, labels, [sf] * n_ch, phys=phys, bdf=bdf, ann_bytes=ann_bytes,
                         recording="Startdate 04-MAR-2024 X X X", start=START.strftime("%d.%m.%y%H.%M.%S"))
    by_rec: dict[int, list] = {}
    for onset, dur, text in anns:
        by_rec.setdefault(int(onset), []).append((onset, dur, text))
    rec0 = 0
    with open(path, "r+b") as f:
        f.seek(236)
        f.write(str(spec.duration_s).encode().ljust(8))
        f.seek(0, 2)
        for x in blocks:
            n_rec = x.shape[1] // sf
            dig = np.clip(np.round((x[:n_ch].astype(np.float64) - phys[0]) / gain + dmin), dmin, dmax).astype("<i4")
            raw = dig.view(np.uint8).reshape(n_ch, n_rec, sf, 4)[..., :3] if bdf else dig.astype("<i2").view(np.uint8).reshape(n_ch, n_rec, sf, 2)
            rec = np.zeros((n_rec, n_ch * sf * bps + ann_bytes), np.uint8)
            rec[:, : n_ch * sf * bps] = raw.transpose(1, 0, 2, 3).reshape(n_rec, -1)
            for r in range(n_rec):
                tal = f"+{rec0 + r}\x14\x14\x00".encode()
                for onset, dur, text in by_rec.get(rec0 + r, ()):
                    tal += f"+{onset:g}\x15{dur:g}\x14".encode() + text.encode("utf-8") + b"\x14\x00"
                assert len(tal) <= ann_bytes, "annotations of one record do not fit"
                rec[r, n_ch * sf * bps : n_ch * sf * bps + len(tal)] = np.frombuffer(tal, np.uint8)
            f.write(rec.tobytes())
            rec0 += n_rec
    assert rec0 == spec.duration_s, (rec0, spec.duration_s)


def write_trc_stream(path: Path, spec: FileSpec, blocks, anns: list[tuple[int, float, str]]) -> None:
    """Micromed .TRC (header type 4, 2-byte samples) from float32 µV blocks; annotations become notes."""
    chans = [trc_writer.Chan(label=label(c, spec.labels)) for c in CHANNELS[: spec.n_channels]]
    notes = [(int(onset * spec.sfreq), text[:40]) for onset, _, text in anns]
    trc_writer.write_trc(path, np.zeros((0, spec.n_channels), np.uint16), chans, rate=spec.sfreq, nbytes=2,
                         start=START, notes=notes, laboratory="Benchmark")
    with open(path, "ab") as f:
        for x in blocks:
            codes = np.clip(np.round(x[: spec.n_channels] / TRC_UV_PER_CODE) + 32768, 0, 65535).astype("<u2")
            f.write(np.ascontiguousarray(codes.T).tobytes())


def write_nicolet_file(path: Path, spec: FileSpec, blocks, anns: list[tuple[int, float, str]]) -> None:
    """Nicolet .e (one segment, channel streams in blocks of ~1 min) from float32 µV blocks (in memory)."""
    nic = nicolet_writer
    x = np.concatenate(list(blocks), axis=1)[: spec.n_channels]
    codes = np.clip(np.round(x / NICOLET_UV_PER_CODE), -32768, 32767).astype("<i2")
    traces = [nic.Trace(label(c, spec.labels), label(c, spec.labels), "REF", float(spec.sfreq), NICOLET_UV_PER_CODE)
              for c in CHANNELS[: spec.n_channels]]
    events = [nic.Event(START + dt.timedelta(seconds=onset), dur, nic.ANNOTATION, text, "Tech") for onset, dur, text in anns]
    nic.write_nicolet(path, traces, [(START, float(spec.duration_s))], list(codes), events=events,
                      blocks=max(3, spec.duration_s // 60), index_blocks=4)


WRITERS = {"edf": write_edf_stream, "bdf": write_edf_stream, "trc": write_trc_stream, "nicolet": write_nicolet_file}


def expected_bytes(spec: FileSpec) -> int:
    """Approximate file size (signal bytes only)."""
    bps = 3 if spec.fmt == "bdf" else 2
    return spec.n_channels * spec.sfreq * spec.duration_s * bps


def write_file(archive: Path, spec: FileSpec, pools: dict[int, list[np.ndarray]], seed: int,
               real: Path = REAL) -> Written:
    """Write one planned file (deterministic in ``seed``) from the sources in ``real``; return its size and
    annotations. ``pools`` caches the sources per sampling rate between calls."""
    path = archive / spec.relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    sf = spec.sfreq
    if sf not in pools:
        pools[sf] = load_pool(sf, real)
    anns = annotations(spec, seed)
    blocks = tiled(pools[sf], sf, spec.duration_s * sf, seed, block=300 * sf)
    WRITERS[spec.fmt](path, spec, blocks, anns)
    return Written(spec, path.stat().st_size, anns)
