"""ephys's bad channels against PyPREP's ``NoisyChannels``, on real EEG with injected defects and as it is.

Usage::

    python benchmarks/qc_pyprep.py [--workers 2] [--tiled 4] [--per-kind 2] [--json OUT.json]

Bases (all real EEG): ``--tiled`` 10-min 19-channel 10-20 recordings tiled from the real
64-channel recordings (:mod:`ephys.ingest.tiled`, 256 Hz), and the two real 64-channel recordings
themselves (PhysioNet EEGMMIDB S001R03, 160 Hz, 125 s; MNE's BCI2000 test file, 128 Hz, 124 s).
Each base is used as it is and, ``--per-kind`` times per defect, with one defect injected in one
channel (channel chosen by a seeded generator):

* ``flat``: the channel is 0 µV throughout (an unplugged amplifier input);
* ``noisy``: white noise, SD 150 µV, added (a poor contact: broadband);
* ``bridged``: the channel becomes its nearest electrode's signal plus 1 µV of white noise (gel
  bridge; nearest on MNE's ``standard_1005`` positions);
* ``disconnected``: the channel is replaced by a floating electrode: a random walk (drift, SD
  ~60 µV after a 0.5 Hz high-pass in QC), 30 µV of 50 Hz mains and 5 µV white noise, unrelated to
  the other channels.

Every variant is written as EDF+ (0.1 µV resolution) and ingested by ephys (``--montage native
--min-epochs 1``, real Dask workers); its bad channels come from the catalog. PyPREP (Appelhoff et
al. 2022, JOSS 7:4484; PREP: Bigdely-Shamlo et al. 2015) runs on the same samples in volts,
``NoisyChannels(raw, do_detrend=True, random_state=0).find_all_bads(ransac=False)`` (RANSAC needs
positions for every channel and is random; PREP's other criteria are deterministic). PyPREP runs
here only, never in ingest.

Printed: per defect kind, how often each tool flags the injected channel and how often they agree
on it; over all other channel decisions, how often they agree; and every disagreement, with each
tool's reason. ``--json`` writes everything.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from ephys.ingest import tiled
from ephys.ingest.writers.edf import write_edf

KINDS = ("flat", "noisy", "bridged", "disconnected")
LINE_HZ = 50.0


def bases(n_tiled: int) -> list[tuple[str, np.ndarray, list[str], int]]:
    """``(name, data µV (n_channels, n_samples), channel names, sfreq)`` of every base recording."""
    import mne

    out = []
    pool = tiled.load_pool(256)
    for k in range(n_tiled):
        x = np.concatenate(list(tiled.tiled(pool, 256, 600 * 256, seed=100 + k, block=60 * 256)), axis=1)
        out.append((f"tiled-{k}", x[: len(tiled.TEN_TWENTY)].astype(np.float64), list(tiled.TEN_TWENTY), 256))
    for rel in tiled.SOURCES:
        raw = mne.io.read_raw_edf(tiled.REAL / rel, preload=True, verbose="error")
        names = [c.rstrip(".") for c in raw.ch_names]
        sf = int(raw.info["sfreq"])
        n = (raw.n_times // sf) * sf  # whole 1-s records
        out.append((Path(rel).stem, raw.get_data()[:, :n] * 1e6, names, sf))
    return out


def _positions(names: list[str]) -> np.ndarray:
    import warnings

    import mne

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ch_pos = mne.channels.make_standard_montage("standard_1005").get_positions()["ch_pos"]
    pos = {k.upper(): v for k, v in ch_pos.items()}
    return np.array([pos.get(n.upper(), (np.nan, np.nan, np.nan)) for n in names])


def inject(x: np.ndarray, names: list[str], sfreq: int, kind: str, ch: int, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``x`` (µV) with defect ``kind`` in channel ``ch`` (module docstring)."""
    y = x.copy()
    n = y.shape[1]
    if kind == "flat":
        y[ch] = 0.0
    elif kind == "noisy":
        y[ch] += rng.normal(0, 150.0, n)
    elif kind == "bridged":
        p = _positions(names)
        d = np.linalg.norm(p - p[ch], axis=1)
        d[ch] = np.inf
        y[ch] = y[int(np.nanargmin(d))] + rng.normal(0, 1.0, n)
    elif kind == "disconnected":
        walk = np.cumsum(rng.normal(0, 1.0, n))
        walk -= np.convolve(walk, np.ones(sfreq) / sfreq, mode="same")  # keep it bounded: drift of seconds
        walk *= 60.0 / max(walk.std(), 1e-9)
        t = np.arange(n) / sfreq
        y[ch] = walk + 30.0 * np.sin(2 * np.pi * LINE_HZ * t) + rng.normal(0, 5.0, n)
    else:
        raise ValueError(kind)
    return y


def pyprep_bads(x: np.ndarray, names: list[str], sfreq: int) -> dict[str, list[str]]:
    """``{channel: [PyPREP criteria that flag it]}`` (``deviation``, ``correlation``, ``hf_noise``, ``psd``, ...)."""
    import mne
    from pyprep.find_noisy_channels import NoisyChannels

    raw = mne.io.RawArray(x * 1e-6, mne.create_info(names, sfreq, "eeg"), verbose="error")
    nc = NoisyChannels(raw, do_detrend=True, random_state=0)
    nc.find_all_bads(ransac=False)
    out: dict[str, list[str]] = {}
    for crit, chans in nc.get_bads(as_dict=True).items():
        if crit == "bad_all":
            continue
        for c in chans:
            out.setdefault(c, []).append(crit.removeprefix("bad_by_"))
    return out


#: The references compared: every criterion PyPREP 0.9 has, and PREP's own (Bigdely-Shamlo et al. 2015:
#: NaN/flat, deviation, correlation, HF noise, SNR, RANSAC) without ``psd``, which PyPREP added later.
REFERENCES = {"pyprep": lambda crits: bool(crits), "prep2015": lambda crits: bool(set(crits) - {"psd"})}


def run(workers: int, n_tiled: int, per_kind: int, seed: int = 0) -> dict:
    from sqlalchemy import create_engine, text

    from ephys.pipeline.run import ingest
    from ephys.schemas import IngestConfig

    rng = np.random.default_rng(seed)
    cases = []
    tmp = Path(tempfile.mkdtemp(prefix="qc-pyprep-"))
    archive = tmp / "archive"
    archive.mkdir()
    for name, x, names, sf in bases(n_tiled):
        variants = [("none", -1, x)]
        for kind in KINDS:
            for ch in rng.choice(len(names), size=per_kind, replace=False):
                variants.append((kind, int(ch), inject(x, names, sf, kind, int(ch), rng)))
        for i, (kind, ch, y) in enumerate(variants):
            path = archive / f"{name}-{i:02d}-{kind}.edf"
            y = np.clip(y, -3276.7, 3276.7)
            write_edf(path, list(y), names, [sf] * len(names))
            cases.append(dict(base=name, kind=kind, channel=names[ch] if ch >= 0 else None, file=path.name,
                              names=names, sfreq=sf, data=y))
    t0 = time.perf_counter()
    ingest(archive, tmp / "out", config=IngestConfig(montage="native", min_epochs=1), workers=workers)
    t_ephys = time.perf_counter() - t0
    engine = create_engine(f"sqlite:///{tmp / 'out' / 'catalog.sqlite'}")
    import hashlib

    with engine.connect() as c:
        rows = dict(c.execute(text("SELECT sha256, bad_channels_json FROM recordings")).all())
    engine.dispose()
    t_prep = 0.0
    for case in cases:
        sha = hashlib.sha256((archive / case["file"]).read_bytes()).hexdigest()
        case["ephys"] = {k.upper(): v for k, v in json.loads(rows[sha] or "{}").items()}
        t0 = time.perf_counter()
        case["pyprep"] = {k.upper(): v for k, v in pyprep_bads(case["data"], case["names"], case["sfreq"]).items()}
        t_prep += time.perf_counter() - t0
        del case["data"]
    return summarise(cases) | {"seconds": {"ephys_ingest": round(t_ephys, 1), "pyprep": round(t_prep, 1)}}


def summarise(cases: list[dict]) -> dict:
    """Agreement of ephys with each of :data:`REFERENCES`, on the injected channels (per defect kind)
    and on every other channel decision, and each disagreement as ``(kind, injected, ephys reason,
    PyPREP criteria, channel)``."""
    out: dict = {}
    for ref, flags in REFERENCES.items():
        per_kind = {}
        for kind in KINDS:
            cs = [c for c in cases if c["kind"] == kind]
            e = [c["channel"].upper() in c["ephys"] for c in cs]
            p = [flags(c["pyprep"].get(c["channel"].upper(), [])) for c in cs]
            per_kind[kind] = dict(cases=len(cs), ephys_flags=sum(e), ref_flags=sum(p), agree=sum(a == b for a, b in zip(e, p)))
        n = agree = 0
        disagreements = []
        for c in cases:
            for name in c["names"]:
                u = name.upper()
                injected = c["channel"] is not None and u == c["channel"].upper()
                a, b = u in c["ephys"], flags(c["pyprep"].get(u, []))
                if not injected:
                    n += 1
                    agree += a == b
                if a != b:
                    disagreements.append(dict(base=c["base"], kind=c["kind"], channel=name, injected=injected,
                                              ephys=c["ephys"].get(u), pyprep=c["pyprep"].get(u)))
        cases_n = sum(v["cases"] for v in per_kind.values())
        out[ref] = dict(per_kind=per_kind, injected_agreement=sum(v["agree"] for v in per_kind.values()) / max(1, cases_n),
                        other_channels=dict(decisions=n, agree=agree), disagreements=disagreements)
    out["cases"] = [{k: v for k, v in c.items() if k != "names"} for c in cases]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tiled", type=int, default=4)
    ap.add_argument("--per-kind", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import mne

    mne.set_log_level("ERROR")  # PyPREP's filters log every design
    r = run(args.workers, args.tiled, args.per_kind)
    from collections import Counter

    for ref in REFERENCES:
        v = r[ref]
        print(f"\n### ephys against {ref}\n\n| defect | cases | ephys flags it | {ref} flags it | agree |\n|---|---:|---:|---:|---:|")
        for kind, k in v["per_kind"].items():
            print(f"| {kind} | {k['cases']} | {k['ephys_flags']} | {k['ref_flags']} | {k['agree']} |")
        o = v["other_channels"]
        print(f"\ninjected channels: agreement {100 * v['injected_agreement']:.1f} %; other channels: {o['agree']:,}/"
              f"{o['decisions']:,} decisions agree ({100 * o['agree'] / max(1, o['decisions']):.1f} %)")
        why = Counter((d["injected"], d["ephys"] or "-", "+".join(d["pyprep"] or ["-"])) for d in v["disagreements"])
        for (inj, e, p), n in sorted(why.items(), key=lambda x: -x[1]):
            chans = sorted({d["channel"] for d in v["disagreements"] if (d["injected"], d["ephys"] or "-",
                                                                         "+".join(d["pyprep"] or ["-"])) == (inj, e, p)})
            print(f"  {n:>4} {'injected' if inj else 'other':<8} ephys={e:<22} pyprep={p:<24} {', '.join(chans[:12])}")
    print(f"\ntime: ephys ingest {r['seconds']['ephys_ingest']} s, PyPREP {r['seconds']['pyprep']} s")
    if args.json:
        args.json.write_text(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
