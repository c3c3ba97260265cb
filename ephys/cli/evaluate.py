"""``ephys embed`` and ``ephys probe``: frozen-encoder embeddings and linear probes of a pretraining checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer

from ephys.cli import app
from ephys.cli.common import fail
from ephys.errors import EphysError


@app.command("embed")
def embed_cmd(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="checkpoint.pt of an ephys pretrain run"),
    manifest: Path = typer.Option(..., "--manifest", help="manifest file (JSON) selecting the epochs to embed"),
    out: Path = typer.Option(..., "-o", "--out", help="output .npy (float32, epochs x dims); keys go to .keys.json"),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="epochs per forward pass"),
    device: str | None = typer.Option(None, "--device", help="torch device; default cuda if available, else cpu"),
    random_init: bool = typer.Option(False, "--random-init", help="embed with random weights (the baseline)"),
    seed: int = typer.Option(0, "--seed", min=0, help="seed of the random weights of --random-init"),
) -> None:
    """Write the frozen encoder's embedding of every epoch of the manifest, one row per epoch, in manifest order.

    Also writes a sidecar, OUT with .keys.json for .npy: the key of each row, the checkpoint step, the manifest hash.
    """
    from ephys.pretrain.evaluate import embed, write_embeddings  # torch is slow to import: only for this command
    from ephys.progress import setup_logging

    setup_logging()

    try:
        result = embed(checkpoint, manifest, batch_size=batch_size, device=device, random_init=random_init,
                       seed=seed, progress=True)
        npy, side = write_embeddings(result, out)
    except EphysError as exc:
        fail(str(exc))
    n, d = result.embeddings.shape
    weights = f"random weights (seed {seed})" if random_init else f"step {result.step}"
    skipped = f", {result.n_skipped} bad samples skipped" if result.n_skipped else ""
    typer.echo(f"{n} epochs x {d} dims ({result.arch}, {weights}{skipped}) -> {npy} (keys: {side})")


def _fmt(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:.3f}"


@app.command("probe")
def probe_cmd(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="checkpoint.pt of an ephys pretrain run"),
    manifest: Path = typer.Option(..., "--manifest", help="manifest file (JSON) selecting the epochs"),
    label: str | None = typer.Option(None, "--label", help="stage (sleep stage), category (annotation), valid "
                                        "(QC verdict); or give --labels"),
    labels: Path | None = typer.Option(None, "--labels", help="your own labels: a TSV with the columns recording "
                                          "(SHA-256), onset, duration (s) and label; an epoch takes the row "
                                          "holding its midpoint"),
    test_fraction: float = typer.Option(0.3, "--test-fraction", min=0.0, max=1.0, help="fraction of subjects held out"),
    seed: int = typer.Option(0, "--seed", min=0, help="seed of the subject split and of the random encoder"),
    folds: int = typer.Option(0, "--folds", min=0, help="also K-fold cross-validation over subjects, with 95 % "
                              "intervals (0: the one split only)"),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="epochs per forward pass"),
    device: str | None = typer.Option(None, "--device", help="torch device; default cuda if available, else cpu"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """Fit a linear probe (logistic regression, subject-level split) on a label of the epochs' metadata.

    Reports balanced accuracy and Cohen's kappa on the held-out subjects, for the checkpoint's encoder and for
    the same architecture with random weights.
    """
    from ephys.pretrain.evaluate import probe  # torch is slow to import: only for this command
    from ephys.progress import setup_logging

    setup_logging()
    if (label is None) == (labels is None):
        fail("give --label or --labels (one of them)")
    try:
        r = probe(checkpoint, manifest, label or "file", test_fraction=test_fraction, seed=seed,
                  batch_size=batch_size, device=device, progress=True, labels=labels, folds=folds)
    except EphysError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(r.to_dict(), indent=2))
        return
    typer.echo(f"probe of {r.label!r} ({len(r.classes)} classes: {', '.join(r.classes)}): {r.n_train} training epochs "
               f"from {r.n_train_subjects} subjects, {r.n_test} test epochs from {r.n_test_subjects} subjects"
               + (f"; {r.n_unlabelled} unlabelled" if r.n_unlabelled else "")
               + (f"; {r.n_skipped} bad samples skipped" if r.n_skipped else ""))
    typer.echo(f"{'encoder':<22}{'balanced accuracy':>18}{'kappa':>8}")
    names = {"trained": f"trained (step {r.step})", "random": "random init",
             "band_power": f"log band powers ({len(r.bands)})", "majority": "majority class"}
    for key, name in names.items():
        sc = getattr(r, key)
        typer.echo(f"{name:<22}{_fmt(sc.balanced_accuracy):>18}{_fmt(sc.kappa):>8}")
    if r.cv:
        typer.echo(f"{r.cv['folds']}-fold cross-validation over subjects (mean, 95 % interval):")
        for key, name in names.items():
            c = r.cv[key]
            typer.echo(f"{name:<22} balanced accuracy {_fmt(c['balanced_accuracy_mean'])} "
                       f"[{_fmt(c['balanced_accuracy_ci'][0])}, {_fmt(c['balanced_accuracy_ci'][1])}]  kappa "
                       f"{_fmt(c['kappa_mean'])} [{_fmt(c['kappa_ci'][0])}, {_fmt(c['kappa_ci'][1])}]")
