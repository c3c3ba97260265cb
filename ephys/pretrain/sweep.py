"""Scaling sweeps: train a grid of small configs on subsets of a manifest for fixed compute, fit ``L = a * C**-b``.

:func:`run_sweep` trains one run per :class:`SweepPoint` (config overrides, fraction of the manifest's epochs,
compute budget in FLOPs) with :func:`~ephys.pretrain.train.pretrain`, records the compute each run actually spent
and its final loss, and fits a power law in compute with :func:`fit_power_law`.  :func:`subset_manifest` makes the
seeded data subsets.

Compute is training FLOPs, forward and backward, the ``C`` of Kaplan et al. (2020) and Hoffmann et al. (2022)
(who estimate it as ``6 * parameters`` per token; here it is counted):
``steps * batch_size * train_flops_per_sample``, with ``train_flops_per_sample`` counted by
:func:`~ephys.pretrain.train.train_flops_per_sample` (matmuls, convolutions and attention; the masked encoder sees
only the visible units, so it depends on the mask ratio).  Views, optimiser steps and elementwise ops are not
counted.  Each run gets its own learning-rate schedule over its own length (``optim.decay_steps`` defaults to
``run.steps``): Hoffmann et al. found that a cosine cycle much longer than the run leaves it sub-optimally
trained.

Everything runs in this process (no ``torchrun``).  The sweep is resumable: a point whose checkpoint is already at
its step count is not trained again (``pretrain`` does nothing then); its figures are read back from its
``metrics.jsonl`` and ``run.json``.

The fits here are only as good as the runs: tiny runs check the code, not the science.  A compute-optimal frontier
needs, for each budget, several model sizes, so that the lowest loss at that budget is near the optimum.

Command line::

    python -m ephys.pretrain.sweep --manifest M --out DIR --config cpu-tiny --budgets 1e12,2e12 --fractions 1.0,0.5 \\
        [--set data.batch_size=4 ...] [--seed 0]

trains every budget x fraction (one point each, named ``c<budget>-f<fraction>``) and prints the fits as JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

import numpy as np

from ephys import __version__
from ephys.pretrain.config import RunConfig, dotted, load_config, parse_overrides
from ephys.pretrain.train import METRICS, RUN_INFO, atomic_write, pretrain, train_flops_per_sample
from ephys.schemas.manifest import MANIFEST_FORMAT, Manifest, ManifestShard
from ephys.schemas.urls import has_scheme

log = logging.getLogger(__name__)

__all__ = ["PowerLawFit", "SweepPoint", "SweepResult", "fit_power_law", "run_sweep", "subset_manifest", "sweep_fits"]

SWEEP, FIT = "sweep.jsonl", "fit.json"
FINAL_LOSS_STEPS = 5  # the final loss of a run is the mean of its last min(5, steps) step losses


# -------------------------------------------------------------------------------------------------------- the fit


@dataclass(frozen=True)
class PowerLawFit:
    """``L = a * C**-b`` fitted on ``n`` points; ``r2`` is the coefficient of determination in log-log space."""

    a: float
    b: float
    r2: float
    n: int

    def predict(self, compute: float | Sequence[float] | np.ndarray) -> float | np.ndarray:
        """The fitted loss at ``compute`` FLOPs."""
        c = np.asarray(compute, dtype=np.float64)
        out = self.a * c ** -self.b
        return float(out) if out.ndim == 0 else out


def _positive_finite(name: str, values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of numbers, got shape {arr.shape}")
    for i, v in enumerate(arr):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} values must be positive and finite: {name}[{i}] = {v:g}")
    return arr


def fit_power_law(compute: Sequence[float] | np.ndarray, loss: Sequence[float] | np.ndarray) -> PowerLawFit:
    """Fit ``L = a * C**-b`` by least squares on ``log L = log a - b log C``.

    The form is the compute scaling law of Kaplan et al. 2020, "Scaling Laws for Neural Language Models"
    (arXiv:2001.08361), ``L(C) = (C_c / C)**alpha_C``, without the irreducible term; Hoffmann et al. 2022,
    "Training Compute-Optimal Large Language Models" (arXiv:2203.15556), fit the same kind of power laws in log-log
    space.  Natural logarithms; every point has the same weight.  ``r2`` is ``1 - SS_res / SS_tot`` of the log
    losses (1.0 when all losses are equal and so fitted exactly by ``b = 0``).

    Raises
    ------
    ValueError
        Fewer than 2 points, lengths that differ, a value that is not positive and finite, or all compute values
        equal (the exponent is then undetermined); the message names the problem.
    """
    c = _positive_finite("compute", compute)
    y = _positive_finite("loss", loss)
    if len(c) != len(y):
        raise ValueError(f"compute and loss have different lengths ({len(c)} and {len(y)})")
    if len(c) < 2:
        raise ValueError(f"a power-law fit needs at least 2 points, got {len(c)}")
    x, ly = np.log(c), np.log(y)
    dx = x - x.mean()
    sxx = float(dx @ dx)
    if sxx == 0.0 or np.all(c == c[0]):
        raise ValueError(f"all compute values are equal ({c[0]:g} FLOPs): the exponent is undetermined")
    slope = float(dx @ (ly - ly.mean())) / sxx
    intercept = float(ly.mean() - slope * x.mean())
    resid = ly - (intercept + slope * x)
    ss_res = float(resid @ resid)
    ss_tot = float(((ly - ly.mean()) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return PowerLawFit(a=math.exp(intercept), b=-slope, r2=r2, n=len(c))


# ------------------------------------------------------------------------------------------------------ subsets


def _subset_keys(keys: list[str], fraction: float, seed: int, shard_index: int) -> list[str]:
    """``round(fraction * len(keys))`` keys drawn by a seeded permutation, in their original order.

    The permutation depends on ``(seed, shard_index)`` only, so the subsets of one seed are nested: the keys kept at
    fraction 0.25 are among those kept at 0.5.
    """
    n_keep = math.floor(fraction * len(keys) + 0.5)
    if n_keep >= len(keys):
        return list(keys)
    rng = np.random.default_rng(np.random.SeedSequence([seed, shard_index]))
    chosen = np.sort(rng.permutation(len(keys))[:n_keep])
    return [keys[i] for i in chosen]


def _relocated_url(url: str, resolved: str, out_dir: Path) -> str:
    """A shard URL that resolves from a manifest in ``out_dir``: remote and absolute ones unchanged, relative ones
    re-expressed relative to ``out_dir`` (absolute where no relative path exists, e.g. another drive)."""
    if has_scheme(url) or Path(url).is_absolute():
        return url
    try:
        return Path(os.path.relpath(resolved, out_dir)).as_posix()
    except ValueError:
        return resolved


def _fraction_text(fraction: float) -> str:
    return repr(float(fraction))


def _check_subset_args(fraction: float, seed: int) -> None:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")


def _make_subset(parent: Manifest, manifest_path: Path, fraction: float, seed: int, out_path: Path) -> Manifest:
    """The subset manifest (content hash set), not saved; see :func:`subset_manifest`."""
    _check_subset_args(fraction, seed)
    out_dir = out_path.resolve().parent
    shards = []
    for i, (shard, resolved) in enumerate(zip(parent.shards, parent.resolve_urls(manifest_path))):
        keys = _subset_keys(shard.keys, fraction, seed, i)
        if keys:
            shards.append(ManifestShard(url=_relocated_url(shard.url, resolved, out_dir), sha256=shard.sha256,
                                        n_samples=shard.n_samples, keys=keys))
    n_epochs = sum(s.n_selected for s in shards)
    if n_epochs == 0:
        raise ValueError(f"fraction {fraction} keeps no epoch of the {parent.n_epochs} of {manifest_path}")
    subset = parent.model_copy(update=dict(
        format=MANIFEST_FORMAT,
        ephys_version=__version__,
        created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        query=[*parent.query, f"subset fraction={_fraction_text(fraction)} seed={seed}"],
        counts={"epochs": n_epochs, "shards": len(shards)},
        shards=shards,
    ), deep=True)
    subset.content_hash = subset.compute_content_hash()
    return subset


def subset_manifest(manifest: Manifest | None, manifest_path: str | Path, fraction: float, seed: int,
                    out_path: str | Path) -> Path:
    """Save a manifest that keeps a seeded random ``fraction`` of each shard's keys; return its path.

    * per shard, ``round(fraction * n_keys)`` keys (half up), drawn by a permutation seeded by ``(seed, shard
      index)`` and kept in shard order; subsets of one seed are nested across fractions; shards left without keys
      are dropped;
    * shard URLs: remote and absolute ones are kept, relative ones are rewritten relative to ``out_path``'s folder
      so they still resolve;
    * ``query`` gets ``"subset fraction=<fraction> seed=<seed>"`` appended, so the content hash differs from the
      parent's (even at fraction 1);
    * ``counts``: ``epochs`` and ``shards`` are recounted; the parent's other counts (``recordings``,
      ``subjects``) cannot be recounted without the catalog and are left out.

    ``manifest`` is the loaded parent (``None``: load and verify it from ``manifest_path``, which is needed anyway to
    resolve its relative shard URLs).  The shards themselves are not read.

    Raises
    ------
    ValueError
        ``fraction`` not in (0, 1], a negative seed, ``out_path`` is the parent manifest, or no key is left.
    ManifestError
        The parent manifest cannot be loaded (``manifest`` None).
    """
    _check_subset_args(fraction, seed)
    manifest_path, out_path = Path(manifest_path), Path(out_path)
    if out_path.resolve() == manifest_path.resolve():
        raise ValueError(f"{out_path}: the subset would overwrite its parent manifest")
    parent = manifest if manifest is not None else Manifest.load(manifest_path)
    subset = _make_subset(parent, manifest_path, fraction, seed, out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    return subset.save(out_path)


# ------------------------------------------------------------------------------------------------------- sweeps


@dataclass(frozen=True)
class SweepPoint:
    """One run of a sweep: config ``overrides`` (``{"model.embed_dim": 48}``; ``section__key`` also accepted),
    the ``fraction`` of the manifest's epochs to train on (a seeded subset, see :func:`subset_manifest`) and the
    compute ``budget`` in training FLOPs.  ``name`` is its folder under the sweep's ``out_dir`` (default: made from
    the budget, fraction and overrides).  ``run.steps`` is derived from the budget: do not override it."""

    budget: float
    fraction: float = 1.0
    overrides: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None

    def __post_init__(self):
        if not (isinstance(self.budget, (int, float)) and math.isfinite(self.budget) and self.budget > 0):
            raise ValueError(f"budget must be a positive number of FLOPs, got {self.budget!r}")
        if not (isinstance(self.fraction, (int, float)) and 0 < self.fraction <= 1):
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction!r}")
        if "run.steps" in dotted(self.overrides):
            raise ValueError("run.steps comes from the budget; give a budget instead")
        if self.name is not None and (not self.name or "/" in self.name or self.name in (".", "..")):
            raise ValueError(f"point name {self.name!r} is not a folder name")

    @property
    def label(self) -> str:
        """The folder name: ``name`` or ``c<budget>-f<fraction>[-<hash of overrides>]``."""
        if self.name:
            return self.name
        label = f"c{self.budget:.4g}-f{self.fraction:g}".replace("+", "")
        if self.overrides:
            blob = json.dumps(dotted(self.overrides), sort_keys=True, default=str).encode()
            label += "-" + hashlib.sha256(blob).hexdigest()[:8]
        return label


@dataclass(frozen=True)
class SweepResult:
    """What one point cost and reached (one line of ``sweep.jsonl``).

    ``compute`` = ``steps * batch_size * flops_per_sample`` (FLOPs actually spent, vs the nominal ``budget``);
    ``final_loss``: mean of the last ``min(5, steps)`` step losses; ``steps_run``: steps trained by this call (0 for
    a point finished earlier).
    """

    name: str
    budget: float
    fraction: float
    overrides: dict[str, Any]
    steps: int
    batch_size: int
    flops_per_sample: int
    compute: float
    final_loss: float
    n_parameters: int
    n_encoder_parameters: int | None
    n_epochs: int
    manifest: str
    manifest_hash: str
    out_dir: str
    steps_run: int


def _flops_per_sample(config: RunConfig, manifest: Manifest, cache: dict) -> int:
    n_channels, n_samples = len(manifest.channel_names), manifest.n_samples
    model_config = config.model.build(n_channels, n_samples, config.view)
    key = (type(model_config).__name__, model_config.model_dump_json(), config.model.mask_ratio)
    if key not in cache:
        cache[key] = train_flops_per_sample(model_config, config.model.mask_ratio)
    return cache[key]


def _point_manifest(manifest_path: Path, parent: Manifest, fraction: float, seed: int, out_dir: Path) -> Path:
    """The manifest of a data fraction: the parent at 1.0, else a subset under ``out_dir/manifests/``, written once:
    an existing file with the same content hash is kept, so a resumed sweep finds its checkpoints valid."""
    if fraction == 1:
        return manifest_path
    path = out_dir / "manifests" / f"subset-f{_fraction_text(fraction)}-s{seed}.json"
    fresh = _make_subset(parent, manifest_path, fraction, seed, path)
    try:
        if Manifest.load(path).content_hash == fresh.content_hash:
            return path
    except Exception:  # noqa: BLE001 - missing or damaged: written below
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    return fresh.save(path)


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # a line cut short by a crash
            continue
    return rows


def _final_loss(metrics_path: Path, steps: int) -> float:
    by_step = {r["step"]: r["loss"] for r in _read_jsonl(metrics_path) if isinstance(r, dict) and "step" in r}
    missing = [s for s in range(1, steps + 1) if s not in by_step]
    if missing:
        raise ValueError(f"{metrics_path} lacks the losses of steps {missing[:5]}{'...' if len(missing) > 5 else ''}")
    last = range(steps - min(FINAL_LOSS_STEPS, steps) + 1, steps + 1)
    return float(np.mean([by_step[s] for s in last]))


def _fit_or_reason(compute: list[float], loss: list[float]) -> dict:
    try:
        return asdict(fit_power_law(compute, loss))
    except ValueError as exc:
        return {"error": str(exc)}


def sweep_fits(results: Sequence[SweepResult]) -> dict:
    """The fits of ``fit.json``: ``all`` (every point) and ``frontier`` (per nominal budget, the point with the
    lowest final loss: the compute-efficient frontier of Kaplan et al.).  A fit that cannot be made is
    ``{"error": reason}``."""
    best: dict[float, SweepResult] = {}
    for r in results:
        if r.budget not in best or r.final_loss < best[r.budget].final_loss:
            best[r.budget] = r
    frontier = sorted(best.values(), key=lambda r: r.compute)
    return {
        "form": "L = a * C**-b (C: training FLOPs; fit of log L on log C)",
        "all": {**_fit_or_reason([r.compute for r in results], [r.final_loss for r in results]),
                "points": [r.name for r in results]},
        "frontier": {**_fit_or_reason([r.compute for r in frontier], [r.final_loss for r in frontier]),
                     "points": [r.name for r in frontier]},
    }


def run_sweep(manifest_path: str | Path, out_dir: str | Path, base_config: RunConfig | str | Path | None,
              points: Iterable[SweepPoint], *, subset_seed: int = 0) -> list[SweepResult]:
    """Train every point in ``out_dir/<point label>/`` and fit the loss against the compute spent.

    For each point: the config is ``base_config`` (a :class:`RunConfig`, or a path or packaged name for
    :func:`~ephys.pretrain.config.load_config`; None: defaults) with the point's overrides; the data is the
    manifest, or its seeded subset (``subset_seed``) for a fraction below 1; ``run.steps`` is
    ``max(1, round(budget / (train_flops_per_sample * data.batch_size)))``.  Then
    :func:`~ephys.pretrain.train.pretrain` trains (or resumes, or does nothing if the point is finished), and the
    result is read back from the point's ``metrics.jsonl`` and ``run.json``.

    Writes ``out_dir/sweep.jsonl`` (one :class:`SweepResult` per line, rewritten after every point) and
    ``out_dir/fit.json`` (see :func:`sweep_fits`).  Returns the results in the order of ``points``.

    Raises
    ------
    ValueError
        Two points with the same label, invalid overrides, or a point folder whose checkpoint is past the point's
        step count (it was trained with another budget or batch size: use another ``out_dir``).
    ManifestError, CheckpointMismatchError, PretrainError
        From :func:`~ephys.pretrain.train.pretrain`.
    """
    manifest_path, out_dir = Path(manifest_path), Path(out_dir)
    points = list(points)
    labels = [p.label for p in points]
    if dupes := sorted({x for x in labels if labels.count(x) > 1}):
        raise ValueError(f"sweep points share folder names {dupes}; give them distinct names")
    if base_config is None:
        base = RunConfig()
    elif isinstance(base_config, RunConfig):
        base = base_config
    else:
        base = load_config(base_config)
    configs = [base.with_overrides(**dotted(p.overrides)) if p.overrides else base for p in points]
    parent = Manifest.load(manifest_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    flops_cache: dict = {}
    results: list[SweepResult] = []
    for point, config in zip(points, configs):
        flops = _flops_per_sample(config, parent, flops_cache)
        batch = config.data.batch_size
        steps = max(1, round(point.budget / (flops * batch)))
        config = config.with_overrides(**{"run.steps": steps})
        data = _point_manifest(manifest_path, parent, point.fraction, subset_seed, out_dir)
        run_dir = out_dir / point.label
        log.info("sweep point %s: %d steps of %d x %.3g FLOPs on %s", point.label, steps, batch, flops, data)
        summary = pretrain(data, run_dir, config)
        if summary["step"] != steps:
            raise ValueError(f"{run_dir}: its checkpoint is at step {summary['step']}, the point needs {steps} "
                             "steps (another budget or batch size); use another out_dir")
        info = json.loads((run_dir / RUN_INFO).read_text())
        spent_flops = int(info["train_flops_per_sample"])
        if spent_flops != flops:  # the same counter on the same config: a difference is a bug
            log.warning("%s: run.json counts %d FLOPs per sample, the sweep counted %d", run_dir, spent_flops, flops)
        results.append(SweepResult(
            name=point.label, budget=float(point.budget), fraction=float(point.fraction),
            overrides=dotted(point.overrides), steps=steps, batch_size=batch, flops_per_sample=spent_flops,
            compute=float(steps * batch * spent_flops), final_loss=_final_loss(run_dir / METRICS, steps),
            n_parameters=int(info["n_parameters"]), n_encoder_parameters=info.get("n_encoder_parameters"),
            n_epochs=info["manifest"]["n_epochs"], manifest=str(data), manifest_hash=info["manifest"]["content_hash"],
            out_dir=str(run_dir), steps_run=int(summary["steps_run"]),
        ))
        sweep_text = "".join(json.dumps(asdict(r), default=str) + "\n" for r in results).encode()
        atomic_write(out_dir / SWEEP, lambda f, text=sweep_text: f.write(text))
    fits = sweep_fits(results)
    atomic_write(out_dir / FIT, lambda f: f.write((json.dumps(fits, indent=2) + "\n").encode()))
    return results


# -------------------------------------------------------------------------------------------------- command line


def _numbers(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ephys.pretrain.sweep", description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="sweep folder (one sub-folder per point)")
    ap.add_argument("--config", default="cpu-tiny", help="run config path or packaged name (default cpu-tiny)")
    ap.add_argument("--budgets", type=_numbers, required=True, help="comma-separated FLOPs, e.g. 1e12,2e12")
    ap.add_argument("--fractions", type=_numbers, default=[1.0], help="comma-separated data fractions (default 1)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="config override for every point (TOML value, as ephys pretrain --set); repeatable")
    ap.add_argument("--seed", type=int, default=0, help="seed of the data subsets")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        overrides = parse_overrides(args.set)
    except ValueError as exc:
        ap.error(str(exc))
    base = load_config(args.config, **overrides)
    points = [SweepPoint(budget=b, fraction=f) for b in args.budgets for f in args.fractions]
    results = run_sweep(args.manifest, args.out, base, points, subset_seed=args.seed)
    for r in results:
        print(f"{r.name}: {r.steps} steps, {r.compute:.3g} FLOPs, loss {r.final_loss:.4f}", file=sys.stderr)
    print((args.out / FIT).read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
