"""Does pretraining put known structure into the frozen embeddings?  A synthetic sleep-like corpus (issue #20).

Writes a corpus whose classes differ the way sleep stages do, in spectrum, amplitude and transient events, across
subjects who differ in gain and alpha frequency; pretrains a model on it (``cpu-tiny`` by default, a few minutes
on two cores); then runs ``ephys probe --label stage --folds K`` (:func:`ephys.pretrain.evaluate.probe`): the
trained encoder against the same architecture at random init, 7 log band powers and the majority class, all by
subject-level cross-validation.  Prints the table and the collapse figures of ``metrics.jsonl``.

The corpus (8 regional channels, 250 Hz, 30-s epochs, µV; seeded, so every run writes the same bytes):

* every channel: 1/f ("pink") background, 8 µV RMS; everything x the subject's gain (log-normal, SD 0.4);
* ``W``: alpha at the subject's frequency (8.5-11.5 Hz), 10-25 µV over occipital/midline, 40 % of it elsewhere,
  plus 3 µV of 20-Hz beta;
* ``N1``: 10 µV theta (4-7 Hz), 4 µV alpha;
* ``N2``: 10 µV theta, 3-6 spindles (12-14 Hz, 0.5-1.5 s, 20 µV central/midline, 8 µV elsewhere), 1-2
  K-complexes (biphasic, ~1 s, 80 µV frontal, 30 µV elsewhere);
* ``N3``: 40-100 µV delta (0.75-2 Hz), frontal-dominant;
* ``REM``: 10 µV saw-tooth theta (5 Hz), 4 µV beta, 2 µV alpha;
* in 30 % of epochs, whatever the stage: 1-3 blinks (100 µV, frontal) and a 1-5 s muscle burst (10-30 µV).

Stages are drawn per epoch with proportions W 0.2, N1 0.1, N2 0.4, N3 0.15, REM 0.15.  This is a test of the
training objective and the view, not of clinical validity: the classes are built to differ in spectrum, so 7 log
band powers separate them (N1 / REM / N2 were meant to overlap, but measured, band powers reach kappa 1.000:
docs/benchmarks.md); a frozen encoder worth having must come close to that.

Usage::

    python benchmarks/probe_synthetic.py --out /tmp/synth [--subjects 16] [--epochs 30] [--steps 300]
        [--set optim.lr=0.0003 ...] [--folds 4] [--single-channel]

``--single-channel`` writes one ``Cz`` row in the ``native`` montage instead of the 8 regional rows: the layout of
a sleep database with one EEG derivation per recording (the DREAMS excerpts issue #20 is judged on).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

STAGES = ("W", "N1", "N2", "N3", "REM")
PROPORTIONS = (0.2, 0.1, 0.4, 0.15, 0.15)
SFREQ, EPOCH_S = 250.0, 30.0
N_T = int(SFREQ * EPOCH_S)


def _pink(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-RMS 1/f noise of ``n`` samples (spectral shaping of white noise)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SFREQ)
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    x = np.fft.irfft(spec, n)
    return x / x.std()


def _osc(rng, f_lo: float, f_hi: float, t: np.ndarray) -> np.ndarray:
    """A unit-amplitude oscillation whose frequency wanders in [f_lo, f_hi] and whose amplitude waxes and wanes."""
    f = rng.uniform(f_lo, f_hi) + 0.2 * (f_hi - f_lo) * np.sin(2 * np.pi * rng.uniform(0.02, 0.1) * t)
    phase = 2 * np.pi * np.cumsum(f) / SFREQ + rng.uniform(0, 2 * np.pi)
    env = 0.7 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t + rng.uniform(0, 2 * np.pi))
    return env * np.sin(phase)


def epoch(rng: np.random.Generator, stage: str, gain: float, alpha_hz: float, regions: list[str]) -> np.ndarray:
    """One synthetic epoch ``(len(regions), 7500)`` float32 µV of ``stage`` (module docstring)."""
    t = np.arange(N_T) / SFREQ
    posterior = np.array([r in ("occipital", "midline") for r in regions], dtype=float)
    frontal = np.array(["frontal" in r for r in regions], dtype=float)
    central = np.array(["central" in r or r == "midline" for r in regions], dtype=float)
    x = np.stack([8.0 * _pink(rng, N_T) for _ in regions])
    if stage == "W":
        a = rng.uniform(10, 25) * _osc(rng, alpha_hz - 0.5, alpha_hz + 0.5, t)
        x += (0.4 + 0.6 * posterior)[:, None] * a + 3.0 * _osc(rng, 18, 22, t)
    elif stage == "N1":
        x += 10.0 * _osc(rng, 4, 7, t) + 4.0 * _osc(rng, alpha_hz - 0.5, alpha_hz + 0.5, t)
    elif stage == "N2":
        x += 10.0 * _osc(rng, 4, 7, t)
        for _ in range(rng.integers(3, 7)):
            t0, dur, f = rng.uniform(1, 28), rng.uniform(0.5, 1.5), rng.uniform(12, 14)
            w = np.exp(-0.5 * ((t - t0 - dur / 2) / (dur / 4)) ** 2) * np.sin(2 * np.pi * f * t)
            x += (8.0 + 12.0 * central)[:, None] * w
        for _ in range(rng.integers(1, 3)):
            t0 = rng.uniform(1, 28)
            k = -np.exp(-0.5 * ((t - t0) / 0.12) ** 2) + 0.6 * np.exp(-0.5 * ((t - t0 - 0.45) / 0.2) ** 2)
            x += (30.0 + 50.0 * frontal)[:, None] * k
    elif stage == "N3":
        amp = rng.uniform(40, 100)
        x += (0.6 + 0.4 * frontal)[:, None] * amp * _osc(rng, 0.75, 2.0, t)
    elif stage == "REM":
        saw = 2 * ((5.0 * t + rng.uniform()) % 1.0) - 1
        x += 10.0 * saw * (0.7 + 0.3 * _osc(rng, 0.1, 0.3, t)) + 4.0 * _osc(rng, 15, 25, t)
        x += 2.0 * _osc(rng, alpha_hz - 0.5, alpha_hz + 0.5, t)
    if rng.uniform() < 0.3:  # artifacts of any stage: blinks (frontal) and a muscle burst
        for _ in range(rng.integers(1, 4)):
            t0 = rng.uniform(0.5, 29)
            x += (100.0 * frontal)[:, None] * np.exp(-0.5 * ((t - t0) / 0.1) ** 2)
        t0, dur = rng.uniform(0, 25), rng.uniform(1, 5)
        burst = ((t > t0) & (t < t0 + dur)) * np.convolve(rng.standard_normal(N_T), np.ones(3) / 3, "same")
        x += rng.uniform(10, 30) * (1 - 0.5 * central)[:, None] * burst
    return (gain * x).astype(np.float32)


def _as_recorded_at(xs: list[np.ndarray], source_sfreq: float) -> list[np.ndarray]:
    """Epochs ``(C, 7500)`` µV of one subject as if recorded at ``source_sfreq`` Hz and then ingested.

    The night (the epochs end to end) is resampled to ``source_sfreq`` by ``scipy.signal.resample_poly`` (its
    anti-alias FIR stands for the amplifier's) and then conditioned as ``ephys ingest`` does
    (:func:`ephys.ingest.condition.condition`: 0.5-100 Hz band-pass with the low-pass edge capped at 0.4 x
    ``source_sfreq``, 50-Hz notch where it lies below that edge, resampled back to 250 Hz).  So a 50-Hz subject
    has no power above 20 Hz, as in the DREAMS excerpts, whose sampling rates differ between subjects.
    """
    from scipy.signal import resample_poly

    from ephys.ingest.condition import condition, resample_ratio
    from ephys.schemas.config import IngestConfig

    if source_sfreq >= SFREQ:
        return xs
    night = np.concatenate(xs, axis=-1).astype(np.float64)
    low = resample_poly(night, *resample_ratio(SFREQ, source_sfreq), axis=-1)
    cfg = IngestConfig()  # ingest's defaults: the band-pass, notch and output rate it would use
    y = condition(low, source_sfreq, l_freq=cfg.l_freq, h_freq=cfg.h_freq, line_freq=cfg.line_freq,
                  sfreq_out=cfg.sfreq)[:, : night.shape[-1]]
    return [y[:, i * N_T : (i + 1) * N_T].astype(np.float32) for i in range(len(xs))]


def write_corpus(out: Path, n_subjects: int, n_epochs: int, seed: int = 0, per_shard: int = 200,
                 single: bool = False, source_sfreq: tuple[float, ...] = ()) -> Path:
    """Shards (:func:`ephys.shard.writer.write_shard`) and a manifest of the synthetic corpus; returns the manifest.

    ``single``: one ``Cz`` channel in the ``native`` montage (built as the ``midline`` region), the layout of a
    sleep database with one EEG derivation per recording (DREAMS), instead of the 8 ``regional8`` rows.
    ``source_sfreq``: subject ``s`` is recorded at ``source_sfreq[s % len(source_sfreq)]`` Hz
    (:func:`_as_recorded_at`), and the manifest's ``lowpass_hz`` is the lowest of their low-pass edges, as
    ``ephys manifest create`` writes it; empty, every subject at 250 Hz.
    """
    import ephys
    from ephys.ingest.montage import REGION_NAMES
    from ephys.schemas import EpochMeta, EpochQC, EpochStage
    from ephys.schemas.config import IngestConfig, lowpass_edge
    from ephys.schemas.manifest import Manifest, ManifestShard
    from ephys.shard.writer import write_shard

    rng = np.random.default_rng(seed)
    regions, names, montage = (["midline"], ["Cz"], "native") if single else (REGION_NAMES, list(REGION_NAMES), "regional8")
    samples = []
    for s in range(n_subjects):
        gain, alpha_hz = float(np.exp(rng.normal(0, 0.4))), float(rng.uniform(8.5, 11.5))
        subject = f"sub-{s:016x}"
        stages, xs = [], []
        for _ in range(n_epochs):  # one draw after the other, so the corpus of a seed stays the same bytes
            stages.append(STAGES[rng.choice(len(STAGES), p=PROPORTIONS)])
            xs.append(epoch(rng, stages[-1], gain, alpha_hz, regions))
        if source_sfreq:
            xs = _as_recorded_at(xs, source_sfreq[s % len(source_sfreq)])
        for i, (stage, x) in enumerate(zip(stages, xs)):
            meta = EpochMeta(key=f"synth{s:04d}_{i:06d}", recording=f"{s:064x}", subject=subject, epoch_index=i,
                             start_s=EPOCH_S * i, sfreq=SFREQ, n_samples=N_T, montage=montage,
                             channel_names=names, mask=[True] * len(names),
                             qc=EpochQC(n_flat=0, n_clipped=0, nonfinite=False, max_abs_uv=float(np.abs(x).max()),
                                        valid=True),
                             sleep=EpochStage(stage=stage))
            samples.append((x.astype(np.float16), meta))
    shards = []
    for k in range(0, len(samples), per_shard):
        info = write_shard(out / "shards", k // per_shard, samples[k : k + per_shard])
        shards.append(ManifestShard(url=f"shards/{info.name}", sha256=info.sha256, n_samples=info.n_samples,
                                    keys=info.keys))
    path = out / "manifest.json"
    Manifest(ephys_version=ephys.__version__, created_at="2026-12-03T00:00:00Z", query=["synthetic"],
             montage=montage, channel_names=names, sfreq=SFREQ, n_samples=N_T,
             counts={"epochs": len(samples)}, shards=shards,
             lowpass_hz=min(lowpass_edge(IngestConfig().h_freq, r) for r in source_sfreq) if source_sfreq else None).save(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--subjects", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=30, help="epochs per subject")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--config", default="cpu-tiny")
    ap.add_argument("--set", action="append", default=[], help="config override KEY=VALUE (repeatable)")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--single-channel", action="store_true",
                    help="one Cz channel, native montage (a DREAMS-like layout) instead of 8 regional rows")
    ap.add_argument("--source-sfreq", default="",
                    help="comma-separated sampling rates (Hz) the subjects were recorded at, cycled over subjects "
                         "(e.g. 100,200,50,200,200,200,200: the DREAMS excerpts); default: all at 250 Hz")
    a = ap.parse_args()
    source_sfreq = tuple(float(v) for v in a.source_sfreq.split(",") if v)

    from ephys.pretrain.config import load_config, parse_overrides
    from ephys.pretrain.evaluate import probe
    from ephys.pretrain.train import pretrain

    manifest = a.out / "manifest.json"
    if not manifest.exists():
        t = time.perf_counter()
        write_corpus(a.out, a.subjects, a.epochs, a.seed, single=a.single_channel, source_sfreq=source_sfreq)
        print(f"corpus: {a.subjects} subjects x {a.epochs} epochs in {time.perf_counter() - t:.1f} s")
    run = a.out / ("run-" + ("_".join(s.replace("=", "-") for s in a.set) or "default"))
    config = load_config(a.config).with_overrides(run__steps=a.steps, **parse_overrides(a.set))
    t = time.perf_counter()
    s = pretrain(manifest, run, config)
    print(f"pretrain: {s['steps_run']} steps in {time.perf_counter() - t:.0f} s, loss {s['first_loss']} -> {s['last_loss']}")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    col = [(r["step"], r.get("emb_sd"), r.get("emb_corr")) for r in rows if r.get("emb_sd") is not None]
    print("collapse (step, emb_sd, emb_corr):", ", ".join(f"({st}, {sd:.4g}, {c:.3f})" for st, sd, c in col))
    r = probe(run / "checkpoint.pt", manifest, "stage", folds=a.folds, seed=a.seed).to_dict()
    (run / "probe.json").write_text(json.dumps(r, indent=1))
    print(f"{'features':<12} {'kappa (split)':>14} {'kappa CV mean [95 % CI]':>28} {'bal. acc CV':>12}")
    for name in ("trained", "random", "band_power", "majority"):
        cv = (r.get("cv") or {}).get(name) or {}
        ci = cv.get("kappa_ci") or [float("nan")] * 2
        print(f"{name:<12} {r[name]['kappa']:>14.3f} {cv.get('kappa_mean', float('nan')):>10.3f} "
              f"[{ci[0]:.3f}, {ci[1]:.3f}]      {cv.get('balanced_accuracy_mean', float('nan')):>8.3f}")


if __name__ == "__main__":
    main()
