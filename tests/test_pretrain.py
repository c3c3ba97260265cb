"""MAE pretraining: loader filtering and robustness, verification, training, resume, CLI."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ephys.errors import ManifestError
from ephys.pretrain import (
    CheckpointMismatchError,
    MAEConfig,
    MaskedAutoencoder,
    count_parameters,
    make_loader,
    pretrain,
)
from ephys.pretrain.data import StepBatches
from ephys.schemas.epoch import EpochMeta, EpochQC
from ephys.schemas.manifest import Manifest, ManifestShard

N_CH, N_T, SFREQ = 8, 7500, 250.0
CHANNELS = [f"E{i}" for i in range(N_CH)]
UNLISTED_UV = 777.0  # value of every sample of an unlisted epoch (exact in float16)
FREQS_HZ = np.array([2.0, 5.0, 9.0, 13.0])


@dataclass
class Dataset:
    manifest: Path
    listed: dict[str, np.ndarray] = field(default_factory=dict)  # key -> float16 (C, T) µV
    unlisted: list[str] = field(default_factory=list)


def _signal(rng: np.random.Generator, n_ch: int) -> np.ndarray:
    """Sums of sinusoids (fixed frequencies, random phase and amplitude per channel) + noise, µV."""
    t = np.arange(N_T) / SFREQ
    amp = rng.uniform(10.0, 30.0, (n_ch, len(FREQS_HZ), 1))
    phase = rng.uniform(0, 2 * np.pi, (n_ch, len(FREQS_HZ), 1))
    x = (amp * np.sin(2 * np.pi * FREQS_HZ[None, :, None] * t + phase)).sum(axis=1)
    return (x + rng.normal(0.0, 2.0, x.shape)).astype(np.float16)


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_dataset(root: Path, *, seed: int = 0, n_shards: int = 3, per_shard: int = 16,
                  unlisted=(3, 10), channels: list[int] | None = None, bad: dict | None = None) -> Dataset:
    """Tar shards + manifest under ``root``.

    Samples at indices ``unlisted`` of each shard hold ``UNLISTED_UV`` everywhere and
    are left out of the manifest; ``bad`` maps (shard, index) to replacement eeg.npy bytes.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    ds = Dataset(manifest=root / "manifest.json")
    shards = []
    for s in range(n_shards):
        n_ch = channels[s] if channels else N_CH
        path = root / f"shard-{s:06d}.tar"
        keys = []
        with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(per_shard):
                key = f"{seed:08x}{s:08x}_{i:06d}"
                arr = np.full((n_ch, N_T), UNLISTED_UV, np.float16) if i in unlisted else _signal(rng, n_ch)
                meta = EpochMeta(
                    key=key, recording="ab" * 32, subject=f"sub-{s}", epoch_index=i, start_s=30.0 * i,
                    sfreq=SFREQ, n_samples=N_T, montage="test-8", channel_names=CHANNELS[:n_ch],
                    mask=[True] * n_ch, qc=EpochQC(n_flat=0, n_clipped=0, nonfinite=False,
                                                  max_abs_uv=float(np.abs(arr).max()), valid=True),
                )
                _add(tar, f"{key}.eeg.npy", (bad or {}).get((s, i)) or _npy(arr))
                _add(tar, f"{key}.json", meta.model_dump_json().encode())
                if i in unlisted:
                    ds.unlisted.append(key)
                else:
                    keys.append(key)
                    ds.listed[key] = arr
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        shards.append(ManifestShard(url=path.name, sha256=sha, n_samples=per_shard, keys=keys))
    Manifest(
        ephys_version="0.1.0", created_at="2024-01-01T00:00:00Z", query=["test"], montage="test-8",
        channel_names=CHANNELS, sfreq=SFREQ, n_samples=N_T, counts={"epochs": len(ds.listed)}, shards=shards,
    ).save(ds.manifest)
    return ds


def read_metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Dataset:
    return write_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """A straight 20-step run (checkpoint every 5)."""
    out = tmp_path_factory.mktemp("straight")
    summary = pretrain(data.manifest, out, 20, batch_size=4, lr=2e-3, seed=3, checkpoint_every=5)
    return out, summary


def test_model_shapes_mask_and_loss():
    cfg = MAEConfig(n_channels=N_CH)
    model = MaskedAutoencoder(cfg)
    x = torch.from_numpy(np.stack([_signal(np.random.default_rng(i), N_CH) for i in range(2)]).astype(np.float32))
    loss, pred, mask = model(x, mask_ratio=0.6, generator=torch.Generator().manual_seed(0))
    assert cfg.n_tokens == N_CH * 30
    assert pred.shape == (2, cfg.n_tokens, 250) and mask.shape == (2, cfg.n_tokens)
    assert mask.sum(dim=1).tolist() == [144.0, 144.0]  # 60 % of 240 tokens
    patches = (x / 100).reshape(2, cfg.n_tokens, 250)
    target = (patches - patches.mean(-1, keepdim=True)) / (patches.var(-1, keepdim=True) + 1e-6).sqrt()
    expected = ((pred - target) ** 2).mean(-1)[mask.bool()].mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert model.embed(x).shape == (2, cfg.n_tokens, 64)
    assert 50_000 < count_parameters(model) < 500_000
    with pytest.raises(ValueError, match="multiple of patch_size"):
        MAEConfig(n_channels=2, n_samples=7400)
    with pytest.raises(ValueError, match="extra"):
        MAEConfig(n_channels=2, width=3)


def test_loader_yields_only_listed_keys(data):
    manifest = Manifest.load(data.manifest)
    by_first_values = {arr[:, :4].tobytes(): (key, arr) for key, arr in data.listed.items()}
    seen = set()
    it = iter(make_loader(manifest, data.manifest, batch_size=8, seed=1, shuffle_buffer=20))
    for _ in range(30):
        batch = next(it)
        assert batch.dtype == torch.float32 and batch.shape == (8, N_CH, N_T)
        assert not (batch == UNLISTED_UV).any()
        for sample in batch.numpy():
            key, arr = by_first_values[sample.astype(np.float16)[:, :4].tobytes()]
            np.testing.assert_array_equal(sample, arr.astype(np.float32))
            seen.add(key)
    assert seen == set(data.listed)  # every listed epoch came up, and nothing else
    assert len(data.unlisted) == 6


def test_step_batches_replay_across_segments(data):
    """The batch of a step does not depend on where the stream started."""
    manifest = Manifest.load(data.manifest)
    straight = [b for b, _ in zip(StepBatches(manifest, data.manifest, 4, seed=5, reseed_every=4), range(10))]
    resumed = [b for b, _ in zip(StepBatches(manifest, data.manifest, 4, seed=5, start_step=6, reseed_every=4),
                                 range(4))]
    for a, b in zip(straight[6:], resumed):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(straight[0], straight[4])  # a new segment, a new draw


def test_bad_samples_are_skipped_and_counted(tmp_path, caplog):
    nan = np.zeros((N_CH, N_T), np.float16)
    nan[2, 100] = np.nan
    bad = {(0, 5): b"not a numpy file" * 8, (1, 7): _npy(np.zeros((N_CH, 100), np.float16)), (2, 1): _npy(nan)}
    ds = write_dataset(tmp_path / "data", bad=bad)
    manifest = Manifest.load(ds.manifest)
    loader = make_loader(manifest, ds.manifest, batch_size=8, seed=0)
    with caplog.at_level(logging.WARNING, logger="ephys.pretrain.data"):
        for _, batch in zip(range(30), loader):
            assert batch.shape == (8, N_CH, N_T) and torch.isfinite(batch).all()
    assert set(loader.skipped) == {"undecodable eeg.npy", "wrong shape", "non-finite values"}
    assert all(n >= 1 for n in loader.skipped.values())
    assert "undecodable eeg.npy" in caplog.text and "00000000_000005" in caplog.text

    summary = pretrain(ds.manifest, tmp_path / "run", 4, batch_size=8)  # deterministic: meets a bad sample
    assert summary["step"] == 4 and summary["n_skipped"] >= 1
    assert np.isfinite(summary["last_loss"])


def test_train_loss_decreases(data, straight):
    out, summary = straight
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == list(range(1, 21))
    assert set(rows[0]) == {"step", "loss", "lr", "grad_norm", "samples_per_s"}
    losses = [r["loss"] for r in rows]
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.9 * first, (first, last)
    assert summary["first_loss"] == losses[0] and summary["last_loss"] == losses[-1]
    assert summary["step"] == 20 and summary["steps_run"] == 20 and not summary["resumed"]
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 20 and ckpt["model_config"]["n_channels"] == N_CH
    assert ckpt["manifest_hash"] == Manifest.load(data.manifest).content_hash
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["batch_size"] == 4 and config["ephys_version"] == "0.1.0"
    assert config["manifest"]["content_hash"] == ckpt["manifest_hash"]
    # warm-up (1 step = 5 % of 20) then cosine decay to 10 % of the peak
    lrs = [r["lr"] for r in rows]
    assert lrs[0] == pytest.approx(2e-3) and lrs[-1] < lrs[1] and min(lrs) >= 2e-4 - 1e-12
    assert not (out / "checkpoint.pt.tmp").exists()


def test_resume_matches_straight_run(data, straight, tmp_path):
    straight_out, _ = straight
    out = tmp_path / "run"
    # the cosine horizon must be the final one from the start to match the straight run
    first = pretrain(data.manifest, out, 10, batch_size=4, lr=2e-3, seed=3, checkpoint_every=5, lr_decay_steps=20)
    assert first["step"] == 10
    with open(out / "metrics.jsonl", "a") as f:  # a line from an interrupted run past the checkpoint
        f.write(json.dumps({"step": 11, "loss": -1.0}) + '\n{"step": 12, "lo')
    second = pretrain(data.manifest, out, 20, batch_size=4, lr=2e-3, seed=3, checkpoint_every=5)
    assert second["resumed"] and second["start_step"] == 10 and second["steps_run"] == 10
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 20
    rows, ref = read_metrics(out), read_metrics(straight_out)
    assert [r["step"] for r in rows] == list(range(1, 21))
    np.testing.assert_allclose([r["loss"] for r in rows], [r["loss"] for r in ref], rtol=0, atol=1e-5)
    np.testing.assert_allclose([r["lr"] for r in rows], [r["lr"] for r in ref], rtol=1e-12)

    again = pretrain(data.manifest, out, 20, batch_size=4, lr=2e-3, seed=3)
    assert again["steps_run"] == 0 and again["step"] == 20 and again["last_loss"] is None
    assert len(read_metrics(out)) == 20


def test_missing_or_changed_shard_is_refused(tmp_path):
    ds = write_dataset(tmp_path / "data", n_shards=2, per_shard=4, unlisted=())
    shard = tmp_path / "data" / "shard-000001.tar"
    raw = shard.read_bytes()
    shard.unlink()
    with pytest.raises(ManifestError, match=r"shard-000001\.tar: shard is missing"):
        pretrain(ds.manifest, tmp_path / "run", 2)
    shard.write_bytes(raw[:600] + bytes([raw[600] ^ 1]) + raw[601:])
    with pytest.raises(ManifestError, match=r"shard-000001\.tar: shard bytes changed"):
        pretrain(ds.manifest, tmp_path / "run", 2)
    assert not (tmp_path / "run").exists()


def test_mixed_channel_counts_are_refused(tmp_path):
    ds = write_dataset(tmp_path / "data", n_shards=3, per_shard=2, unlisted=(), channels=[8, 6, 8])
    with pytest.raises(ManifestError, match=r"mixed channel counts.*shard-000001\.tar: \(6, 7500\)"):
        pretrain(ds.manifest, tmp_path / "run", 2)


def test_checkpoint_of_other_config_or_manifest_is_refused(data, tmp_path):
    out = tmp_path / "run"
    small = MAEConfig(n_channels=N_CH, dim=32, heads=2)
    pretrain(data.manifest, out, 2, batch_size=4, model_config=small)
    # no model config given: the checkpoint's is used
    assert pretrain(data.manifest, out, 3, batch_size=4)["step"] == 3
    with pytest.raises(CheckpointMismatchError, match="another model config .*dim: 32, 64.*heads: 2, 4"):
        pretrain(data.manifest, out, 5, batch_size=4, model_config=MAEConfig(n_channels=N_CH))
    other = write_dataset(tmp_path / "other", seed=1, n_shards=1, per_shard=4, unlisted=())
    with pytest.raises(CheckpointMismatchError, match="trained on manifest"):
        pretrain(other.manifest, out, 5, batch_size=4)
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 3
    assert len(read_metrics(out)) == 3


def test_cli_pretrain(data, tmp_path):
    from ephys.cli import _register, app

    _register()
    runner = CliRunner()
    out = tmp_path / "run"
    args = ["pretrain", "--manifest", str(data.manifest), "--out", str(out), "--steps", "3", "--batch-size", "4",
            "--lr", "0.002", "--mask-ratio", "0.5", "--seed", "1", "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("step 3 (3 run): loss ")
    assert len(read_metrics(out)) == 3
    settings = json.loads((out / "config.json").read_text())["settings"]
    assert (settings["lr"], settings["mask_ratio"], settings["seed"]) == (0.002, 0.5, 1)
    assert runner.invoke(app, args).stdout.startswith("nothing to do")

    result = runner.invoke(app, ["pretrain", "--manifest", str(tmp_path / "nope.json"), "--out", str(out)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "no such manifest" in result.stderr
