"""``ephys pretrain``: masked-autoencoder pretraining on a manifest (one process, or every rank under torchrun)."""

from __future__ import annotations

from pathlib import Path

import typer

from ephys.cli import app
from ephys.cli.common import fail
from ephys.errors import EphysError

EX_TEMPFAIL = 75  # sysexits.h: stopped by a signal with a checkpoint; run again to resume


@app.command("pretrain")
def pretrain_cmd(
    manifest: Path = typer.Option(..., "--manifest", help="manifest file (JSON) selecting the epochs"),
    out: Path = typer.Option(..., "--out", help="run folder: config.toml, run.json, metrics.jsonl, checkpoint.pt"),
    config: Path | None = typer.Option(None, "--config", help="run config: a TOML file, or cpu-tiny, epi250k-base, epi250k-large (shipped) [default: the run's "
                                          "own config.toml when --out holds one, else epi250k-base on a GPU, cpu-tiny on a CPU]"),
    steps: int | None = typer.Option(None, "--steps", min=1, help="run.steps: total optimizer steps"),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="data.batch_size, per process"),
    lr: float | None = typer.Option(None, "--lr", min=0.0, help="optim.lr: peak AdamW learning rate"),
    mask_ratio: float | None = typer.Option(None, "--mask-ratio", min=0.0, max=1.0, help="model.mask_ratio"),
    seed: int | None = typer.Option(None, "--seed", min=0, help="run.seed"),
    device: str | None = typer.Option(None, "--device", help="run.device; default cuda if available, else cpu"),
    set_: list[str] = typer.Option([], "--set", help="any config key, e.g. --set model.preset=tiny (repeatable)"),
) -> None:
    """Pretrain the masked autoencoder of --config on the manifest's epochs; a run in --out is resumed.

    Options given here override the config file. Under torchrun (torchrun --nproc-per-node N -m ephys.pretrain
    ...) every process runs this and they train one model with DistributedDataParallel. SIGTERM or SIGINT stops
    after the current step with a checkpoint (exit status 75); the same command resumes.
    """
    from ephys.pretrain import load_config, pretrain  # torch is slow to import: only for this command
    from ephys.pretrain.config import choose_config, parse_overrides
    from ephys.progress import setup_logging

    setup_logging()  # a line every run.log_every steps where stderr is not a terminal (a bar where it is)

    try:
        settings = parse_overrides(set_)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--set") from None
    given = {"run.steps": steps, "data.batch_size": batch_size, "optim.lr": lr, "model.mask_ratio": mask_ratio,
             "run.seed": seed, "run.device": device}
    overrides = {k: v for k, v in given.items() if v is not None} | settings
    if config is None:
        config, why = choose_config(out, device)
        typer.echo(f"config: {config} ({why}; --config to choose)", err=True)
    try:
        run_config = load_config(config, **overrides)
        s = pretrain(manifest, out, run_config)
    except (ValueError, EphysError) as exc:
        fail(str(exc))
    if s["rank"] != 0:
        raise typer.Exit(EX_TEMPFAIL if s.get("interrupted") else 0)
    if s.get("interrupted"):
        typer.echo(f"stopped by {s['interrupted']} at step {s['step']}; checkpoint {s['checkpoint']}: run the same "
                   "command again to resume")
        raise typer.Exit(EX_TEMPFAIL)
    if s["start_step"] != 0 and s["steps_run"] == 0:
        typer.echo(f"nothing to do: {s['checkpoint']} is already at step {s['step']} (--steps {s['step']})")
    elif s["steps_run"]:
        typer.echo(f"step {s['step']} ({s['steps_run']} run): loss {s['first_loss']:.4f} -> {s['last_loss']:.4f}, "
                   f"{s['n_skipped']} bad samples skipped; checkpoint {s['checkpoint']}")
