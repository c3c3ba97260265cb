"""Step-based, resumable MAE pretraining on a manifest.

Outputs in ``out_dir``: ``config.json`` (settings, model config, manifest
content hash, ephys version), ``metrics.jsonl`` (one JSON line per step) and
``checkpoint.pt`` (written atomically).

Resume determinism
------------------
A resumed run reproduces the straight run step for step (same losses):

* data: the batch of step ``s`` depends only on ``(seed, s)``.  Steps come in
  segments of ``reseed_every``; each segment has its own loader seeded from
  ``(seed, segment)``, and a resume inside a segment replays its earlier
  batches (see :class:`~ephys.pretrain.data.StepBatches`);
* masking draws from a dedicated CPU ``torch.Generator`` whose state is saved
  with the torch, CUDA, numpy and Python RNG states;
* the learning rate is a function of the step and of ``lr_decay_steps``, the
  cosine horizon.  It defaults to ``steps``, so to extend a run later and
  match a straight longer run, give the final horizon from the start.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch

from ephys import __version__
from ephys.errors import EphysError
from ephys.pretrain.data import StepBatches, shard_layout, verify_shards
from ephys.pretrain.model import MAEConfig, MaskedAutoencoder, count_parameters
from ephys.schemas.manifest import Manifest

log = logging.getLogger(__name__)

CHECKPOINT, METRICS, CONFIG = "checkpoint.pt", "metrics.jsonl", "config.json"
CHECKPOINT_FORMAT = "ephys-mae-checkpoint/1"
GRAD_CLIP = 1.0
MIN_LR_RATIO = 0.1  # the cosine decays to lr * MIN_LR_RATIO


class PretrainError(EphysError):
    code = "pretrain_error"
    stage = "pretrain"


class CheckpointMismatchError(PretrainError):
    """``out_dir`` holds a checkpoint of another manifest or model configuration."""

    code = "checkpoint_mismatch"


def lr_factor(step: int, warmup_steps: int, decay_steps: int) -> float:
    """Multiplier of the base learning rate for 0-based optimizer step ``step``.

    Linear warm-up over ``warmup_steps``, cosine down to ``MIN_LR_RATIO`` at
    ``decay_steps``, flat after.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if step >= decay_steps:
        return MIN_LR_RATIO
    progress = (step - warmup_steps) / max(1, decay_steps - warmup_steps)
    return MIN_LR_RATIO + (1 - MIN_LR_RATIO) * 0.5 * (1 + math.cos(math.pi * progress))


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


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _step_of(metrics_line: str) -> float:
    """Step of a metrics.jsonl line; infinity for a line cut short by a crash."""
    try:
        return json.loads(metrics_line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf


def _load_checkpoint(path: Path, cfg: MAEConfig | None, manifest_hash: str, settings: dict) -> dict:
    """Read ``path`` and check it continues this run; returns the checkpoint with its model config resolved."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated, not a torch file, unsafe content...
        raise PretrainError(f"checkpoint cannot be read ({exc.__class__.__name__}); move it away", str(path)) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise PretrainError("not an ephys pretraining checkpoint", str(path))
    if ckpt["manifest_hash"] != manifest_hash:
        raise CheckpointMismatchError(
            f"checkpoint was trained on manifest {ckpt['manifest_hash'][:12]}..., not {manifest_hash[:12]}...; "
            "use another --out to start a new run",
            str(path),
        )
    saved = MAEConfig(**ckpt["model_config"])
    if cfg is not None and cfg != saved:
        diff = {k: (v, getattr(cfg, k)) for k, v in saved.model_dump().items() if getattr(cfg, k) != v}
        raise CheckpointMismatchError(
            "checkpoint has another model config (field: checkpoint, requested): "
            + ", ".join(f"{k}: {a}, {b}" for k, (a, b) in diff.items()),
            str(path),
        )
    changed = {k: (v, settings[k]) for k, v in ckpt["settings"].items() if k != "steps" and settings.get(k) != v}
    if changed:
        log.warning("resuming with changed settings %s; the run will not match a straight run", changed)
    ckpt["model_config"] = saved
    return ckpt


def pretrain(
    manifest_path: str | Path,
    out_dir: str | Path,
    steps: int,
    *,
    batch_size: int = 16,
    lr: float = 1e-3,
    weight_decay: float = 0.05,
    mask_ratio: float = 0.6,
    seed: int = 0,
    warmup_steps: int | None = None,
    lr_decay_steps: int | None = None,
    log_every: int = 1,
    checkpoint_every: int = 100,
    device: str | None = None,
    model_config: MAEConfig | None = None,
    num_workers: int = 0,
    reseed_every: int = 1000,
) -> dict:
    """Pretrain a :class:`MaskedAutoencoder` on the epochs of a manifest, up to ``steps`` optimizer steps.

    Resumes from ``out_dir/checkpoint.pt`` when it exists (and does nothing if
    it is already at ``steps``).  ``model_config`` defaults to the checkpoint's
    when resuming, else to ``MAEConfig`` sized to the manifest.
    ``warmup_steps`` defaults to 5% of ``lr_decay_steps``, which defaults to
    ``steps``.  A checkpoint is written every ``checkpoint_every`` steps and at
    the end; a log line every ``log_every`` steps.  ``num_workers`` DataLoader
    workers read the shards (0: in-process, bit-for-bit reproducible);
    ``reseed_every`` is the data segment length (see the module docstring).
    Device: ``cuda`` when available (bf16 autocast), else CPU fp32.

    Returns a summary: ``start_step``, ``step`` (reached), ``steps_run``,
    ``first_loss`` / ``last_loss`` of this call (None if none run),
    ``n_skipped`` (bad samples met), ``resumed`` and the output paths.

    Raises
    ------
    ManifestError
        Manifest unreadable or edited, a shard missing or changed, shards with
        mixed channel counts.
    CheckpointMismatchError
        ``out_dir`` holds a checkpoint of another manifest or model config.
    PretrainError
        Unreadable checkpoint, model config not matching the data, non-finite loss.
    ValueError
        Out-of-range settings.
    """
    if steps < 0 or batch_size < 1 or not 0 < mask_ratio < 1 or seed < 0 or log_every < 1 or checkpoint_every < 1:
        raise ValueError("need steps >= 0, batch_size >= 1, 0 < mask_ratio < 1, seed >= 0, log/checkpoint_every >= 1")
    manifest_path, out_dir = Path(manifest_path), Path(out_dir)
    manifest = Manifest.load(manifest_path)
    verify_shards(manifest, manifest_path)
    n_channels, n_samples = shard_layout(manifest, manifest_path)

    decay = steps if lr_decay_steps is None else lr_decay_steps
    warmup = decay // 20 if warmup_steps is None else warmup_steps
    settings = dict(steps=steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay, mask_ratio=mask_ratio,
                    seed=seed, warmup_steps=warmup, lr_decay_steps=decay, grad_clip=GRAD_CLIP,
                    min_lr_ratio=MIN_LR_RATIO, reseed_every=reseed_every)
    ckpt_path, metrics_path = out_dir / CHECKPOINT, out_dir / METRICS
    summary = dict(out_dir=str(out_dir), checkpoint=str(ckpt_path), metrics=str(metrics_path),
                   config=str(out_dir / CONFIG), first_loss=None, last_loss=None, n_skipped=0, steps_run=0)
    ckpt = _load_checkpoint(ckpt_path, model_config, manifest.content_hash, settings) if ckpt_path.exists() else None
    start = ckpt["step"] if ckpt else 0
    summary.update(start_step=start, step=start, resumed=ckpt is not None)
    if start >= steps:
        log.info("checkpoint %s is at step %d >= %d steps: nothing to do", ckpt_path, start, steps)
        return summary

    cfg = ckpt["model_config"] if ckpt else model_config or MAEConfig(n_channels=n_channels, n_samples=n_samples)
    if (cfg.n_channels, cfg.n_samples) != (n_channels, n_samples):
        raise PretrainError(f"model config expects ({cfg.n_channels}, {cfg.n_samples}) epochs, "
                            f"the manifest has ({n_channels}, {n_samples})", str(manifest_path))
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(seed)
    model = MaskedAutoencoder(cfg).to(dev)
    no_decay = model.no_weight_decay()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in params if p.ndim >= 2 and n not in no_decay], "weight_decay": weight_decay},
        {"params": [p for n, p in params if p.ndim < 2 or n in no_decay], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup, decay))
    mask_rng = torch.Generator().manual_seed(seed)
    if ckpt:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        _set_rng_state(ckpt["rng"], mask_rng)
        log.info("resuming from %s at step %d", ckpt_path, start)

    out_dir.mkdir(parents=True, exist_ok=True)
    config = dict(settings=settings, model_config=cfg.model_dump(), n_parameters=count_parameters(model),
                  manifest=dict(path=str(manifest_path.resolve()), content_hash=manifest.content_hash,
                                n_epochs=manifest.n_epochs),
                  ephys_version=__version__, torch_version=torch.__version__, device=str(dev))
    _atomic_write(out_dir / CONFIG, lambda f: f.write(json.dumps(config, indent=2).encode()))
    # Lines past the checkpoint come from an interrupted run and are redone now.
    old = metrics_path.read_text().splitlines() if metrics_path.exists() else []
    metrics_path.write_text("".join(line + "\n" for line in old if _step_of(line) <= start))

    def save(step: int) -> None:
        state = dict(format=CHECKPOINT_FORMAT, step=step, model=model.state_dict(), optimizer=optimizer.state_dict(),
                     scheduler=scheduler.state_dict(), rng=_rng_state(mask_rng), model_config=cfg.model_dump(),
                     manifest_hash=manifest.content_hash, settings=settings, ephys_version=__version__)
        _atomic_write(ckpt_path, lambda f: torch.save(state, f))

    batches = StepBatches(manifest, manifest_path, batch_size, seed, start, reseed_every, num_workers)
    batch_iter = iter(batches)
    model.train()
    with open(metrics_path, "a") as metrics:
        for step in range(start + 1, steps + 1):
            t0 = time.perf_counter()
            x = next(batch_iter).to(dev, non_blocking=True)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                loss, _, _ = model(x, mask_ratio=mask_ratio, generator=mask_rng)
            if not math.isfinite(loss_value := loss.item()):
                raise PretrainError(f"loss is {loss_value} at step {step}; last good checkpoint kept", str(ckpt_path))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP).item()
            lr_now = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            rate = batch_size / (time.perf_counter() - t0)

            record = dict(step=step, loss=loss_value, lr=lr_now, grad_norm=grad_norm, samples_per_s=rate)
            metrics.write(json.dumps(record) + "\n")
            metrics.flush()
            if step % log_every == 0 or step == steps:
                log.info("step %d/%d  loss %.4f  lr %.2e  grad %.3f  %.0f samples/s",
                         step, steps, loss_value, lr_now, grad_norm, rate)
            if summary["first_loss"] is None:
                summary["first_loss"] = loss_value
            summary["last_loss"] = loss_value
            if step % checkpoint_every == 0 or step == steps:
                save(step)

    batch_iter.close()
    summary.update(step=steps, steps_run=steps - start, n_skipped=sum(batches.skipped.values()))
    return summary
