"""``ephys pretrain``: masked-autoencoder pretraining on a manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ephys.cli import app
from ephys.cli.common import fail
from ephys.errors import EphysError


@app.command("pretrain")
def pretrain_cmd(
    manifest: Path = typer.Option(..., "--manifest", help="manifest file (JSON) selecting the epochs"),
    out: Path = typer.Option(..., "--out", help="run folder: config.json, metrics.jsonl, checkpoint.pt"),
    steps: int = typer.Option(100, "--steps", min=1, help="total optimizer steps; a run in --out is resumed"),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="epochs per step"),
    lr: float = typer.Option(1e-3, "--lr", min=0.0, help="peak learning rate (AdamW)"),
    mask_ratio: float = typer.Option(0.6, "--mask-ratio", min=0.0, max=1.0, help="fraction of 1-s patches masked"),
    seed: int = typer.Option(0, "--seed", min=0),
    device: Optional[str] = typer.Option(None, "--device", help="torch device; default cuda if available, else cpu"),
) -> None:
    """Pretrain a small masked autoencoder on the manifest's epochs (resumes from --out/checkpoint.pt)."""
    from ephys.pretrain import pretrain  # torch is slow to import: only for this command

    try:
        s = pretrain(manifest, out, steps, batch_size=batch_size, lr=lr, mask_ratio=mask_ratio, seed=seed,
                     device=device)
    except (ValueError, EphysError) as exc:
        fail(str(exc))
    if s["steps_run"] == 0:
        typer.echo(f"nothing to do: {s['checkpoint']} is already at step {s['step']} (--steps {steps})")
    else:
        typer.echo(f"step {s['step']} ({s['steps_run']} run): loss {s['first_loss']:.4f} -> {s['last_loss']:.4f}, "
                   f"{s['n_skipped']} bad samples skipped; checkpoint {s['checkpoint']}")
