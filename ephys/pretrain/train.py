"""Step-based, resumable masked-autoencoder pretraining on a manifest: one process, or many under ``torchrun``.

:func:`pretrain` reads a manifest, checks its shards, builds the model of the run config (Hiera on spectrogram
images, or the 1-s-patch MAE on the raw signal), and trains it for ``run.steps`` optimizer steps.

Outputs in ``out_dir`` (written by rank 0):

* ``config.toml``: the validated run config, re-loadable with ``--config``;
* ``run.json``: provenance: manifest path and content hash, ephys version and git commit, torch version, device,
  world size, model config, parameter counts, FLOPs per sample;
* ``metrics.jsonl``: one JSON line per step: ``loss`` (mean over ranks), ``lr``, ``muon_lr``, ``grad_norm``,
  ``samples_per_s`` and ``tokens_per_s`` (all ranks), ``data_wait_s``, and ``mfu`` where the GPU's peak is known;
  every ``run.log_every`` steps (and at the first and last step) also the collapse figures of :func:`collapse_stats`
  on a fixed batch (``emb_sd``, ``emb_corr``, ``emb_abs``, ``emb_rank``), so a user sees embeddings collapse
  without a probe;
* ``checkpoint.pt``: model, both optimisers, both schedulers, step, config, the data layout (channel names,
  sfreq, samples per epoch), every rank's RNG states (atomic
  write: temporary file, fsync, rename), every ``run.checkpoint_every`` steps and at the end;
* ``tensorboard/`` with ``run.tensorboard = true``.

SIGTERM or SIGINT (Slurm pre-emption, Ctrl-C) stops the run after the current step with a checkpoint; the
summary then has ``interrupted`` (the signal's name) and running again resumes.

Distributed
-----------
Under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is initialised (NCCL on CUDA, gloo on CPU), the model is
wrapped in ``DistributedDataParallel`` and every rank streams its own resampled shard sequence (seeded by seed,
rank and worker; see :func:`~ephys.pretrain.data.make_loader`).  The loader is endless and the loop counts
steps, so every rank takes exactly ``run.steps`` steps: there is no end-of-epoch hang.  ``data.batch_size`` is per
rank.  Rank 0 checks the shards once and broadcasts the verdict, so a bad manifest stops every rank with the same
error.

Resume determinism
------------------
A resumed run reproduces the straight run step for step (same losses), on the same world size:

* data: the batch of step ``s`` depends only on ``(seed, rank, s)``.  Steps come in segments of
  ``data.reseed_every``; each segment has its own loader seeded from ``(seed, segment)``, and a resume inside a
  segment replays its earlier batches (see :class:`~ephys.pretrain.data.StepBatches`);
* masking draws from a dedicated CPU ``torch.Generator`` per rank whose state is saved with the torch, CUDA, numpy
  and Python RNG states of every rank;
* the learning rate is a function of the step and of ``optim.decay_steps``, the cosine horizon.  It defaults to
  ``run.steps``, so to extend a run later and match a straight longer run, give the final horizon from the start.

Optimisers
----------
``optim.optimizer = "muon+adamw"`` (default): ``torch.optim.Muon`` (momentum + Newton-Schulz orthogonalisation,
Jordan et al. 2024, https://kellerjordan.github.io/posts/muon/) on the hidden 2-D weight matrices of the transformer
blocks, AdamW on the rest: patch embedding, position embeddings, mask token, norms, biases, the decoder's input
projections and prediction head (Muon's own guidance: embeddings and heads to Adam).  ``"adamw"``: AdamW on
everything.  Weight decay is never applied to norms, biases, embeddings or the mask token.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ephys import __version__
from ephys.errors import CheckpointMismatchError, EphysError, ManifestError, PretrainError
from ephys.pretrain.config import RunConfig
from ephys.pretrain.data import SampleFilter, StepBatches, shard_layout
from ephys.pretrain.arch import arch_of, build_model, flops_per_sample, model_config_from
from ephys.pretrain.model import count_parameters
from ephys.pretrain.views import make_view
from ephys.schemas.manifest import Manifest

log = logging.getLogger(__name__)

CHECKPOINT, METRICS, CONFIG, RUN_INFO = "checkpoint.pt", "metrics.jsonl", "config.toml", "run.json"
CHECKPOINT_FORMAT = "ephys-pretrain-checkpoint/2"
#: Shards whose epoch layout rank 0 checks before the first step (spread over the manifest); the loader
#: checks every other shard's layout, and every shard's SHA-256, when it first streams it.
LAYOUT_SHARDS = 8
CHECKPOINT_KEYS = frozenset({"step", "arch", "model_config", "model", "optimizers", "schedulers", "rng", "config",
                             "manifest_hash", "data", "world_size"})

# Dense bf16 tensor-core peak of known GPUs, FLOP/s (vendor data sheets), for MFU; first match of the device name.
PEAK_BF16_FLOPS = (
    ("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("H200", 989e12), ("GH200", 989e12), ("B200", 2250e12),
    ("A100", 312e12), ("L40S", 362e12), ("A10G", 70e12),
)


# ------------------------------------------------------------------------------------------------ model and optimisers


def split_parameters(model: nn.Module) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """``{"muon": [...], "adamw": [...]}`` of ``(name, parameter)``: the model's own split (:mod:`ephys.pretrain.arch`)."""
    return model.param_groups(names=True)


def make_optimizers(model: nn.Module, config: RunConfig) -> dict[str, torch.optim.Optimizer]:
    """The optimisers of ``config.optim``: ``{"adamw": ..., "muon": ...}`` (no ``"muon"`` for ``"adamw"``)."""
    o = config.optim
    groups = split_parameters(model)
    if o.optimizer == "adamw":
        groups = {"muon": [], "adamw": groups["muon"] + groups["adamw"]}
    no_decay = model.no_weight_decay()
    adamw = [(n, p) for n, p in groups["adamw"] if p.requires_grad]
    optimizers: dict[str, torch.optim.Optimizer] = {
        "adamw": torch.optim.AdamW(
            [
                {"params": [p for n, p in adamw if p.ndim >= 2 and n not in no_decay], "weight_decay": o.weight_decay},
                {"params": [p for n, p in adamw if p.ndim < 2 or n in no_decay], "weight_decay": 0.0},
            ],
            lr=o.lr, betas=o.betas,
        )
    }
    if groups["muon"]:
        optimizers["muon"] = torch.optim.Muon(
            [p for _, p in groups["muon"]], lr=o.muon_lr, weight_decay=o.muon_weight_decay, momentum=o.muon_momentum
        )
    return optimizers


def lr_factor(step: int, warmup_steps: int, decay_steps: int, min_lr_ratio: float = 0.1) -> float:
    """Multiplier of the peak learning rate for 0-based optimizer step ``step``.

    Linear warm-up over ``warmup_steps``, cosine down to ``min_lr_ratio`` at ``decay_steps``, flat after.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if step >= decay_steps:
        return min_lr_ratio
    progress = (step - warmup_steps) / max(1, decay_steps - warmup_steps)
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def train_flops_per_sample(model_config, mask_ratio: float) -> int:
    """Forward + backward FLOPs of one training sample of the config's ``input_shape``
    (:func:`ephys.pretrain.arch.flops_per_sample`, the one counter: matmuls, convolutions and attention at 2 FLOPs
    per multiply-add; elementwise ops are not counted)."""
    return flops_per_sample(model_config, mask_ratio, backward=True)


def tokens_per_sample(model_config) -> int:
    """Input tokens of one sample (the config's ``tokens_per_sample``: Hiera's stage-1 grid, MAE's patches)."""
    return model_config.tokens_per_sample


def peak_flops(device: torch.device) -> float | None:
    """Dense bf16 peak FLOP/s of a known CUDA device, else None (no MFU on CPU or unknown GPUs)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_FLOPS if key in name), None)


# ----------------------------------------------------------------------------------------------------- checkpoints


def _rng_state(mask_rng: torch.Generator) -> dict:
    np_state = np.random.get_state(legacy=False)
    np_state["state"]["key"] = np_state["state"]["key"].tolist()
    return {
        "mask": mask_rng.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np_state,
        "python": random.getstate(),
    }


def _set_rng_state(state: dict, mask_rng: torch.Generator) -> None:
    mask_rng.set_state(state["mask"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np_state = state["numpy"]
    np_state["state"]["key"] = np.asarray(np_state["state"]["key"], dtype=np.uint32)
    np.random.set_state(np_state)
    random.setstate(state["python"])


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` through ``write(file)`` on a temporary file beside it, fsync, rename: readers see the old file
    or the whole new one.  On ``OSError`` the temporary file is removed and the error re-raised."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def read_checkpoint(path: str | Path) -> dict:
    """Load an ephys pretraining checkpoint on the CPU (``weights_only``), with ``model_config`` rebuilt.

    Raises
    ------
    PretrainError
        The file is missing, unreadable, truncated, or not an ephys pretraining checkpoint of this format.
    """
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PretrainError("no such checkpoint", str(path)) from None
    except Exception as exc:  # noqa: BLE001 - truncated, not a torch file, unsafe content...
        raise PretrainError(f"checkpoint cannot be read ({exc.__class__.__name__}); move it away", str(path)) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise PretrainError(f"not an ephys pretraining checkpoint of format {CHECKPOINT_FORMAT}", str(path))
    missing = sorted(CHECKPOINT_KEYS - ckpt.keys())
    if missing:
        raise PretrainError(f"checkpoint lacks {missing}", str(path))
    try:
        ckpt["model_config"] = model_config_from(ckpt["arch"], ckpt["model_config"])
    except (TypeError, ValueError) as exc:  # pydantic ValidationError included; TypeError: not a mapping
        raise PretrainError(f"checkpoint holds an invalid model config ({exc})", str(path)) from None
    return ckpt


# Settings that do not change what is computed: a resume may change them freely.
_COSMETIC = {("run", "steps"), ("run", "log_every"), ("run", "checkpoint_every"), ("run", "progress"),
             ("run", "tensorboard"), ("run", "device"), ("data", "num_workers")}


def _check_resume(ckpt: dict, path: Path, model_config, manifest_hash: str, config: RunConfig, world: int,
                  done: bool = False) -> None:
    """Refuse a checkpoint of another manifest or model; warn where the run will not match a straight one."""
    if ckpt["manifest_hash"] != manifest_hash:
        raise CheckpointMismatchError(
            f"checkpoint was trained on manifest {ckpt['manifest_hash'][:12]}..., not {manifest_hash[:12]}...; "
            "use another --out to start a new run", str(path))
    saved = ckpt["model_config"]
    if type(saved) is not type(model_config):
        raise CheckpointMismatchError(
            f"checkpoint holds a {ckpt['arch']} model, the config asks for {arch_of(model_config).name}", str(path))
    if saved != model_config:
        diff = {k: (v, getattr(model_config, k)) for k, v in saved.model_dump().items() if getattr(model_config, k) != v}
        raise CheckpointMismatchError(
            "checkpoint has another model config (field: checkpoint, requested): "
            + ", ".join(f"{k}: {a}, {b}" for k, (a, b) in diff.items()), str(path))
    if done:
        return
    before = RunConfig.model_validate(ckpt["config"])
    changed = {f"{s}.{k}": (v, getattr(getattr(config, s), k))
               for s, values in before.model_dump().items() if s != "model"
               for k, v in values.items() if (s, k) not in _COSMETIC and getattr(getattr(config, s), k) != v}
    if changed:
        log.warning("resuming with changed settings %s; the run will not match a straight run", changed)
    if ckpt["world_size"] != world:
        log.warning("checkpoint was written by %d processes, resuming on %d: data order and masks change",
                    ckpt["world_size"], world)


# ----------------------------------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: str | None) -> tuple[_Dist, torch.device]:
    """Join the ``torchrun`` process group when ``WORLD_SIZE`` > 1; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    want = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if world <= 1:
        return _Dist(), want
    if want.type == "cuda":
        want = torch.device("cuda", local_rank)
        torch.cuda.set_device(want)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if want.type == "cuda" else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), local_rank), want


def _on_rank0(d: _Dist, fn):
    """Run ``fn`` on rank 0 only and give its result, or raise its ephys error, on every rank."""
    result: list[Any] = [None]
    if d.main:
        try:
            result[0] = ("ok", fn())
        except (EphysError, ValueError) as exc:
            result[0] = ("error", exc)
    if d.world > 1:
        dist.broadcast_object_list(result, src=0)
    status, value = result[0]
    if status == "error":
        raise value
    return value


def _code_version() -> dict:
    """ephys version, and the git commit (``+dirty`` when modified) when running from a checkout."""
    info = {"ephys": __version__}
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        info["git_commit"] = commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def _step_of(metrics_line: str) -> float:
    """Step of a metrics.jsonl line; infinity for a line cut short by a crash."""
    try:
        return json.loads(metrics_line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf


class _Progress:
    """A rich progress bar on a terminal; otherwise nothing here (the loop logs a line every ``run.log_every``)."""

    def __init__(self, enabled: bool, start: int, total: int):
        self.bar = None
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("pretrain"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                TextColumn("{task.fields[info]}"), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("steps", total=total, completed=start, info="")

    def update(self, step: int, info: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=step, info=info)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


# ------------------------------------------------------------------------------------------------------------ train


def pretrain(manifest_path: str | Path, out_dir: str | Path, config: RunConfig | None = None,
             **overrides: Any) -> dict:
    """Pretrain the model of ``config`` on the epochs of a manifest, up to ``config.run.steps`` optimizer steps.

    ``overrides`` are dotted config keys given as ``section__key`` keywords (``run__steps=20``), applied to
    ``config`` (default: :class:`RunConfig` defaults) and validated.  Resumes from ``out_dir/checkpoint.pt`` when
    it exists, and does nothing if that is already at ``run.steps``.  Under ``torchrun`` every rank calls this.

    Returns a summary: ``start_step``, ``step`` (reached), ``steps_run``, ``first_loss`` / ``last_loss`` of this
    call (None if none run; mean over ranks), ``n_skipped`` (bad samples met by this rank), ``resumed``,
    ``world_size``, this process's ``rank`` and the output paths.  Under DDP the replicas' parameters are compared at the end.

    Raises
    ------
    ManifestError
        Manifest unreadable or edited, a shard missing or changed, shards with mixed channel counts, no sample left.
    CheckpointMismatchError
        ``out_dir`` holds a checkpoint of another manifest or model.
    PretrainError
        Unreadable checkpoint, non-finite loss (the last good checkpoint is kept), DDP replicas that differ.
    ValueError
        Invalid overrides, or a view that does not fit the manifest's epochs.
    """
    config = config or RunConfig()
    if overrides:
        config = config.with_overrides(**overrides)
    c = config
    manifest_path, out_dir = Path(manifest_path), Path(out_dir)
    d, dev = _init_distributed(c.run.device)
    try:
        return _train(manifest_path, out_dir, c, d, dev)
    finally:
        if d.world > 1 and dist.is_initialized():
            # DDP's reducer sits in reference cycles; free it while the process group it uses still exists
            # (otherwise its C++ destructor may run at exit after the group is gone: std::terminate).
            gc.collect()
            dist.destroy_process_group()


def pooled_embedding(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The frozen-encoder embedding ``(B, D)`` that ``embed``, ``probe`` and the collapse figures use: the model's
    ``encode`` (Hiera: every stage's tokens averaged over time per token row, standardised, concatenated; the patch
    MAE: token features mean-pooled)."""
    return model.encode(inputs)


@torch.no_grad()
def collapse_stats(features: torch.Tensor) -> dict[str, float]:
    """How far the embeddings of a batch are from one vector: ``features`` ``(n_samples, dim)``.

    ``emb_sd``: median over dimensions of the SD across samples; ``emb_abs``: mean |value| (its scale);
    ``emb_corr``: mean Pearson correlation between the embedding vectors of two different samples (1.0: every
    sample maps to the same direction, the collapse issue #20 measured at 0.988); ``emb_rank``: the effective
    rank of the features centred across samples, ``exp(H(s / sum(s)))`` over their singular values ``s`` (Roy &
    Vetterli 2007; RankMe, Garrido et al. 2023, ICML), between 1 and ``min(n_samples, dim)``: how many directions
    the samples actually vary in. ``emb_sd`` and ``emb_corr`` are dominated by a per-position constant that a
    Hiera MAE's last stage carries (~99 % of the embedding's norm even when the rest is informative), so
    ``emb_rank`` is the one that tells dimensional collapse (~2 of 64) from a working encoder (~24 of 64, random
    init ~28; docs/benchmarks.md). NaN where undefined.
    """
    f = features.detach().float()
    n = f.shape[0]
    out = dict(emb_sd=float(torch.quantile(f.std(dim=0), 0.5)) if n > 1 else math.nan, emb_abs=float(f.abs().mean()))
    z = f - f.mean(dim=1, keepdim=True)
    norm = z.norm(dim=1, keepdim=True)
    out["emb_rank"] = _effective_rank(f - f.mean(dim=0, keepdim=True)) if n > 1 else math.nan
    if n < 2 or bool((norm == 0).any()):
        return out | dict(emb_corr=math.nan)
    r = (z / norm) @ (z / norm).T
    out["emb_corr"] = float((r.sum() - r.diagonal().sum()) / (n * (n - 1)))
    return out


def _effective_rank(z: torch.Tensor) -> float:
    s = torch.linalg.svdvals(z.double())
    if float(s.sum()) == 0.0:
        return math.nan
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def _probe_batch(manifest: Manifest, manifest_path: Path, c: RunConfig) -> torch.Tensor:
    """The fixed batch the collapse figures are measured on: the first batch of the stream seeded ``run.seed + 1``
    (not a training batch of step 1, the same on every start and resume)."""
    probe = StepBatches(manifest, manifest_path, c.data.batch_size, c.run.seed + 1, 0, c.data.reseed_every, 0,
                        shuffle_buffer=c.data.shuffle_buffer, sample_filter=SampleFilter.from_config(c.data))
    it = iter(probe)
    try:
        return next(it)
    finally:
        it.close()


def _train(manifest_path: Path, out_dir: Path, c: RunConfig, d: _Dist, dev: torch.device) -> dict:
    # ---- the manifest, and a checkpoint to resume from; rank 0 reads, every rank gets the same verdict
    manifest = _on_rank0(d, lambda: Manifest.load(manifest_path))
    if (fitted := c.view.within(manifest.lowpass_hz)) != c.view:
        log.warning("the manifest's recordings hold no signal above %g Hz (its lowest low-pass edge): the "
                    "spectrogram view's top row is %g Hz instead of %g Hz (view.freq_max_hz), breakpoint %g Hz",
                    manifest.lowpass_hz, fitted.freq_max_hz, c.view.freq_max_hz, fitted.freq_breakpoint_hz)
        c = c.model_copy(update={"view": fitted})
    n_channels, n_samples = len(manifest.channel_names), manifest.n_samples
    view = make_view(c.view, manifest.sfreq, n_samples).to(dev)
    model_config = c.model.build(n_channels, n_samples, c.view)
    input_shape = c.view.input_shape(n_channels, n_samples)

    ckpt_path, metrics_path = out_dir / CHECKPOINT, out_dir / METRICS
    summary = dict(out_dir=str(out_dir), checkpoint=str(ckpt_path), metrics=str(metrics_path),
                   config=str(out_dir / CONFIG), first_loss=None, last_loss=None, n_skipped=0, steps_run=0,
                   world_size=d.world, rank=d.rank)
    ckpt = read_checkpoint(ckpt_path) if ckpt_path.exists() else None
    start = ckpt["step"] if ckpt else 0
    summary.update(start_step=start, step=start, resumed=ckpt is not None)
    if ckpt:
        _check_resume(ckpt, ckpt_path, model_config, manifest.content_hash, c, d.world, done=start >= c.run.steps)
    if start >= c.run.steps:
        log.info("checkpoint %s is at step %d >= %d steps: nothing to do", ckpt_path, start, c.run.steps)
        return summary

    # ---- the shards: rank 0 checks the layout of a few; every rank then streams its own share, hashing
    # each shard the first time it reads it (no full re-hash of the corpus on every start or resume)
    _on_rank0(d, lambda: shard_layout(manifest, manifest_path, max_shards=LAYOUT_SHARDS))

    # ---- model, optimisers, schedules (the same initial weights on every rank)
    torch.manual_seed(c.run.seed)
    model = build_model(model_config).to(dev)
    optimizers = make_optimizers(model, c)
    warmup, decay = c.warmup_steps, c.decay_steps
    schedulers = {name: torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, warmup, decay, c.optim.min_lr_ratio)) for name, opt in optimizers.items()}
    mask_rng = torch.Generator().manual_seed(int(np.random.SeedSequence([c.run.seed, d.rank]).generate_state(1)[0]))
    if ckpt:
        model.load_state_dict(ckpt["model"])
        if set(ckpt["optimizers"]) != set(optimizers):
            raise CheckpointMismatchError(f"checkpoint has optimisers {sorted(ckpt['optimizers'])}, the config "
                                          f"asks for {sorted(optimizers)}", str(ckpt_path))
        for name, opt in optimizers.items():
            opt.load_state_dict(ckpt["optimizers"][name])
            schedulers[name].load_state_dict(ckpt["schedulers"][name])
        if d.rank < len(ckpt["rng"]):
            _set_rng_state(ckpt["rng"][d.rank], mask_rng)
        log.info("resuming from %s at step %d", ckpt_path, start)
    net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev] if dev.type == "cuda" else None) \
        if d.world > 1 else model
    bf16 = c.run.precision == "bf16" or (c.run.precision == "auto" and dev.type == "cuda")

    flops = train_flops_per_sample(model_config, c.model.mask_ratio)
    tokens = tokens_per_sample(model_config)
    peak = peak_flops(dev)
    if d.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(out_dir / CONFIG, lambda f: f.write(c.model_dump_toml().encode()))
        info = dict(
            manifest=dict(path=str(manifest_path.resolve()), content_hash=manifest.content_hash,
                          n_epochs=manifest.n_epochs, channel_names=manifest.channel_names, sfreq=manifest.sfreq),
            code=_code_version(), torch_version=torch.__version__, device=str(dev),
            device_name=torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", world_size=d.world,
            precision="bf16" if bf16 else "fp32", arch=arch_of(model_config).name, model_config=model_config.model_dump(),
            input_shape=list(input_shape), n_parameters=count_parameters(model),
            n_encoder_parameters=model.encoder_parameters(), train_flops_per_sample=flops, tokens_per_sample=tokens,
            optimizers={name: sum(p.numel() for g in opt.param_groups for p in g["params"])
                        for name, opt in optimizers.items()},
        )
        atomic_write(out_dir / RUN_INFO, lambda f: f.write(json.dumps(info, indent=2).encode()))
        # Lines past the checkpoint come from an interrupted run and are redone now.
        old = metrics_path.read_text().splitlines() if metrics_path.exists() else []
        metrics_path.write_text("".join(line + "\n" for line in old if _step_of(line) <= start))

    def save(step: int) -> None:
        states = [_rng_state(mask_rng)]
        if d.world > 1:
            states = [None] * d.world
            dist.all_gather_object(states, _rng_state(mask_rng))
        if d.main:
            state = dict(format=CHECKPOINT_FORMAT, step=step, arch=arch_of(model_config).name,
                         model_config=model_config.model_dump(), model=model.state_dict(),
                         optimizers={n: o.state_dict() for n, o in optimizers.items()},
                         schedulers={n: s.state_dict() for n, s in schedulers.items()}, rng=states,
                         manifest_hash=manifest.content_hash, config=c.model_dump(), world_size=d.world,
                         data=dict(channel_names=manifest.channel_names, sfreq=manifest.sfreq, n_samples=n_samples),
                         ephys_version=__version__)
            atomic_write(ckpt_path, lambda f: torch.save(state, f))

    batches = StepBatches(manifest, manifest_path, c.data.batch_size, c.run.seed, start, c.data.reseed_every,
                          c.data.num_workers, shuffle_buffer=c.data.shuffle_buffer,
                          sample_filter=SampleFilter.from_config(c.data))
    batch_iter = iter(batches)
    probe_x = _probe_batch(manifest, manifest_path, c).to(dev) if d.main else None

    def collapse() -> dict[str, float]:
        model.eval()
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            inputs = view(probe_x)
            feats = pooled_embedding(model, inputs)
        model.train()
        return collapse_stats(feats)

    writer = _tensorboard(out_dir) if c.run.tensorboard and d.main else None
    progress = _Progress(c.run.progress and d.main, start, c.run.steps)
    stop = _StopRequest(d, dev)
    model.train()
    metrics = open(metrics_path, "a") if d.main else nullcontext()
    step = start
    try:
        with metrics:
            for step in range(start + 1, c.run.steps + 1):
                t0 = time.perf_counter()
                try:
                    x = next(batch_iter)
                except ManifestError as exc:  # a shard's own error names the shard, the filters' the manifest
                    raise ManifestError(exc.reason, exc.path or str(manifest_path)) from None
                x = x.to(dev, non_blocking=True)
                t_data = time.perf_counter() - t0
                inputs = view(x)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                    loss, _, _ = net(inputs, mask_ratio=c.model.mask_ratio, generator=mask_rng)
                for opt in optimizers.values():
                    opt.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), c.optim.grad_clip)
                lrs = {name: s.get_last_lr()[0] for name, s in schedulers.items()}
                for opt in optimizers.values():
                    opt.step()
                for s in schedulers.values():
                    s.step()
                loss_value = loss.detach().float()
                if d.world > 1:
                    dist.all_reduce(loss_value, op=dist.ReduceOp.AVG)
                loss_value = loss_value.item()  # waits for the device: the timing below is the step's
                if not math.isfinite(loss_value):
                    raise PretrainError(f"loss is {loss_value} at step {step}; last good checkpoint kept",
                                        str(ckpt_path))
                dt = time.perf_counter() - t0
                rate = c.data.batch_size * d.world / dt
                record = dict(step=step, loss=loss_value, lr=lrs["adamw"], muon_lr=lrs.get("muon"),
                              grad_norm=grad_norm.item(), samples_per_s=rate, tokens_per_s=rate * tokens,
                              data_wait_s=t_data, mfu=rate * flops / (peak * d.world) if peak else None)
                if d.main and (step % c.run.log_every == 0 or step == c.run.steps or step == start + 1):
                    record |= collapse()
                if d.main:
                    metrics.write(json.dumps(record) + "\n")
                    metrics.flush()
                    if writer is not None:
                        for key in ("loss", "lr", "grad_norm", "samples_per_s"):
                            writer.add_scalar(f"train/{key}", record[key], step)
                    progress.update(step, f"loss {loss_value:.4f}")
                    if (step % c.run.log_every == 0 or step == c.run.steps) and progress.bar is None:  # a bar shows it
                        log.info("step %d/%d  loss %.4f  lr %.2e  grad %.3f  %.0f samples/s", step, c.run.steps,
                                 loss_value, lrs["adamw"], record["grad_norm"], rate)
                if summary["first_loss"] is None:
                    summary["first_loss"] = loss_value
                summary["last_loss"] = loss_value
                stopping = stop.requested()
                if step % c.run.checkpoint_every == 0 or step == c.run.steps or stopping:
                    save(step)
                if stopping:
                    log.warning("stopped by %s after step %d; checkpoint saved, run again to resume",
                                stop.signal_name, step)
                    summary["interrupted"] = stop.signal_name
                    break
    finally:
        stop.restore()
        progress.close()
        batch_iter.close()
        if writer is not None:
            writer.close()
    summary.update(step=step, steps_run=step - start, n_skipped=sum(batches.skipped.values()))
    if d.world > 1:  # DDP keeps the replicas equal; prove it before calling the run good
        digest = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
        low, high = digest.clone(), digest.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        if low.item() != high.item():
            raise PretrainError(f"DDP replicas diverged (parameter sums {low.item()!r} .. {high.item()!r})",
                                str(out_dir))
    return summary


class _StopRequest:
    """SIGTERM / SIGINT (Slurm pre-emption, Ctrl-C) end the run cleanly after the current step.

    The handlers only set a flag; the loop saves a checkpoint and stops.  Under DDP the ranks agree (a MAX
    all-reduce of the flag each step), so they all stop after the same step.  Handlers are installed only in the
    main thread and restored at the end.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, d: _Dist, dev: torch.device):
        self.d, self.dev, self.signal_name, self._local = d, dev, None, 0
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self._local = signum

    def requested(self) -> bool:
        flag = self._local
        if self.d.world > 1:
            t = torch.tensor([flag], device=self.dev)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = int(t.item())
        if flag:
            self.signal_name = signal.Signals(flag).name
        return bool(flag)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def _tensorboard(out_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise PretrainError("run.tensorboard needs the tensorboard package (pip install tensorboard)",
                            str(out_dir)) from None
    return SummaryWriter(str(out_dir / "tensorboard"))
