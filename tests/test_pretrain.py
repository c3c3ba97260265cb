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
    ConfigError,
    MAEConfig,
    MaskedAutoencoder,
    PretrainError,
    RunConfig,
    SampleFilter,
    count_parameters,
    load_config,
    make_loader,
    pretrain,
)
from ephys.pretrain.data import StepBatches
from ephys.pretrain.hiera import HieraConfig, flops_per_sample
from ephys.schemas.epoch import EpochAnnotation, EpochMeta, EpochQC, EpochStage
from ephys.schemas.manifest import Manifest, ManifestShard
from ephys.shard.writer import npy_bytes

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


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_dataset(root: Path, *, seed: int = 0, n_shards: int = 3, per_shard: int = 16,
                  unlisted=(3, 10), channels: list[int] | None = None, bad: dict | None = None,
                  meta=None) -> Dataset:
    """Tar shards + manifest under ``root``.

    Samples at indices ``unlisted`` of each shard hold ``UNLISTED_UV`` everywhere and
    are left out of the manifest; ``bad`` maps (shard, index) to replacement eeg.npy bytes;
    ``meta(shard, index)`` gives extra EpochMeta fields (``qc`` fields go into the QC record).
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
                extra = dict(meta(s, i)) if meta else {}
                qc = dict(n_flat=0, n_clipped=0, nonfinite=False, max_abs_uv=float(np.abs(arr).max()), valid=True)
                qc.update(extra.pop("qc", {}))
                meta_record = EpochMeta(
                    key=key, recording="ab" * 32, subject=f"sub-{s}", epoch_index=i, start_s=30.0 * i,
                    sfreq=SFREQ, n_samples=N_T, montage="test-8", channel_names=CHANNELS[:n_ch],
                    mask=[True] * n_ch, qc=EpochQC(**qc), **extra,
                )
                _add(tar, f"{key}.eeg.npy", (bad or {}).get((s, i)) or npy_bytes(arr))
                _add(tar, f"{key}.json", meta_record.model_dump_json().encode())
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


# The 1-s-patch MAE on the raw view with Muon + AdamW: fast on CPU (small 2-D weights), both optimisers in play.
MAE_RUN = RunConfig.model_validate({
    "model": {"arch": "mae"}, "view": {"kind": "raw"},
    "data": {"batch_size": 4}, "optim": {"lr": 2e-3, "muon_lr": 0.01},
    "run": {"steps": 20, "seed": 3, "checkpoint_every": 5, "progress": False},
})
# The EPI-250k architecture, CPU-sized: Hiera tiny on 64x64 spectrogram images.
HIERA_RUN = load_config("cpu-tiny").with_overrides(**{"data.batch_size": 4, "run.steps": 4, "run.checkpoint_every": 2,
                                                       "optim.optimizer": "muon+adamw", "run.progress": False})


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Dataset:
    return write_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """A straight 20-step MAE run (checkpoint every 5)."""
    out = tmp_path_factory.mktemp("straight")
    return out, pretrain(data.manifest, out, MAE_RUN)




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


def test_model_init_does_not_depend_on_the_hash_seed():
    """Two processes with different PYTHONHASHSEED build the same weights (a set once ordered the init draws)."""
    import os
    import subprocess
    import sys

    code = ("import hashlib, torch; from ephys.pretrain import MAEConfig, MaskedAutoencoder; torch.manual_seed(0); "
            "m = MaskedAutoencoder(MAEConfig(n_channels=8)); "
            "print(hashlib.sha256(b''.join(p.detach().numpy().tobytes() for p in m.parameters())).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed},
                              capture_output=True, text=True, check=True).stdout for seed in ("1", "2")}
    assert len(digests) == 1


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
    bad = {(0, 5): b"not a numpy file" * 8, (1, 7): npy_bytes(np.zeros((N_CH, 100), np.float16)), (2, 1): npy_bytes(nan)}
    ds = write_dataset(tmp_path / "data", bad=bad)
    manifest = Manifest.load(ds.manifest)
    loader = make_loader(manifest, ds.manifest, batch_size=8, seed=0)
    with caplog.at_level(logging.WARNING, logger="ephys.pretrain.data"):
        for _, batch in zip(range(30), loader):
            assert batch.shape == (8, N_CH, N_T) and torch.isfinite(batch).all()
    assert set(loader.skipped) == {"undecodable eeg.npy", "wrong shape", "non-finite values"}
    assert all(n >= 1 for n in loader.skipped.values())
    assert "undecodable eeg.npy" in caplog.text and "00000000_000005" in caplog.text

    summary = pretrain(ds.manifest, tmp_path / "run", MAE_RUN, run__steps=4, data__batch_size=8)  # meets a bad one
    assert summary["step"] == 4 and summary["n_skipped"] >= 1
    assert np.isfinite(summary["last_loss"])


def test_collapse_stats_against_numpy():
    from ephys.pretrain.train import collapse_stats

    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 32)).astype(np.float32)
    got = collapse_stats(torch.from_numpy(x))
    r = np.corrcoef(x)  # rows are samples: Pearson correlation between samples' vectors
    assert got["emb_corr"] == pytest.approx(r[~np.eye(16, dtype=bool)].mean(), abs=1e-5)
    assert got["emb_sd"] == pytest.approx(np.median(x.std(axis=0, ddof=1)), rel=1e-5)
    sv = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    p = sv / sv.sum()
    assert got["emb_rank"] == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-6)  # effective rank, NumPy
    one = collapse_stats(torch.from_numpy(np.tile(x[:1], (16, 1)) + 1e-3 * x))  # nearly one vector
    assert one["emb_corr"] > 0.99 and one["emb_sd"] < 0.01
    line = collapse_stats(torch.from_numpy(np.outer(np.arange(16.0), x[0]) + 5.0))  # samples on one line + offset
    assert line["emb_rank"] == pytest.approx(1.0, abs=1e-4)
    assert np.isnan(collapse_stats(torch.ones(1, 8))["emb_corr"])


def test_train_loss_decreases_and_run_files(data, straight):
    out, summary = straight
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == list(range(1, 21))
    base = {"step", "loss", "lr", "muon_lr", "grad_norm", "samples_per_s", "tokens_per_s", "data_wait_s", "mfu"}
    collapse = {"emb_sd", "emb_abs", "emb_corr", "emb_rank"}  # on a fixed batch, at the first, every log_every-th, the last step
    every = load_config(out / "config.toml").run.log_every
    assert set(rows[0]) == base | collapse
    assert [r["step"] for r in rows if collapse <= set(r)] == sorted({1, 20} | set(range(every, 21, every)))
    assert all(set(r) == base for r in rows if "emb_sd" not in r)
    assert all(r["emb_sd"] > 0 and -1 <= r["emb_corr"] <= 1 for r in rows if "emb_sd" in r)
    assert rows[0]["mfu"] is None  # no known GPU peak on CPU
    assert rows[0]["tokens_per_s"] == pytest.approx(rows[0]["samples_per_s"] * N_CH * 30)
    losses = [r["loss"] for r in rows]
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.9 * first, (first, last)
    assert summary["first_loss"] == losses[0] and summary["last_loss"] == losses[-1]
    assert summary["step"] == 20 and summary["steps_run"] == 20 and not summary["resumed"]
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 20 and ckpt["arch"] == "mae" and ckpt["model_config"]["n_channels"] == N_CH
    assert ckpt["manifest_hash"] == Manifest.load(data.manifest).content_hash
    # both optimisers and both schedules are in the checkpoint, with their state
    assert set(ckpt["optimizers"]) == set(ckpt["schedulers"]) == {"adamw", "muon"}
    muon_state = ckpt["optimizers"]["muon"]["state"]
    assert muon_state and all("momentum_buffer" in v for v in muon_state.values())
    assert all(v["step"] == 20 for v in ckpt["optimizers"]["adamw"]["state"].values())
    # config.toml is the validated config and loads back equal; run.json holds the provenance
    assert load_config(out / "config.toml") == MAE_RUN
    info = json.loads((out / "run.json").read_text())
    assert info["manifest"]["content_hash"] == ckpt["manifest_hash"] and info["code"]["ephys"] == "0.1.0"
    assert info["world_size"] == 1 and info["precision"] == "fp32" and info["arch"] == "mae"
    model = MaskedAutoencoder(MAEConfig(n_channels=N_CH))
    assert info["n_parameters"] == count_parameters(model)
    assert info["optimizers"]["muon"] + info["optimizers"]["adamw"] == info["n_parameters"]
    assert info["optimizers"]["muon"] == sum(p.numel() for n, p in model.named_parameters()
                                             if p.ndim == 2 and ".layers." in n)
    # warm-up (1 step = 5 % of 20) then cosine decay to 10 % of the peak, the same shape for Muon
    lrs, muon = [r["lr"] for r in rows], [r["muon_lr"] for r in rows]
    assert lrs[0] == pytest.approx(2e-3) and lrs[-1] < lrs[1] and min(lrs) >= 2e-4 - 1e-12
    np.testing.assert_allclose(np.array(muon) / 0.01, np.array(lrs) / 2e-3, rtol=1e-12)
    assert not (out / "checkpoint.pt.tmp").exists()


def test_resume_matches_straight_run(data, straight, tmp_path):
    straight_out, _ = straight
    out = tmp_path / "run"
    # the cosine horizon must be the final one from the start to match the straight run
    first = pretrain(data.manifest, out, MAE_RUN, run__steps=10, optim__decay_steps=20)
    assert first["step"] == 10
    with open(out / "metrics.jsonl", "a") as f:  # a line from an interrupted run past the checkpoint
        f.write(json.dumps({"step": 11, "loss": -1.0}) + '\n{"step": 12, "lo')
    second = pretrain(data.manifest, out, MAE_RUN)
    assert second["resumed"] and second["start_step"] == 10 and second["steps_run"] == 10
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 20
    rows, ref = read_metrics(out), read_metrics(straight_out)
    assert [r["step"] for r in rows] == list(range(1, 21))
    np.testing.assert_allclose([r["loss"] for r in rows], [r["loss"] for r in ref], rtol=0, atol=1e-5)
    np.testing.assert_allclose([r["grad_norm"] for r in rows], [r["grad_norm"] for r in ref], rtol=1e-4)
    np.testing.assert_allclose([r["lr"] for r in rows], [r["lr"] for r in ref], rtol=1e-12)
    a = torch.load(out / "checkpoint.pt", weights_only=True)
    b = torch.load(straight_out / "checkpoint.pt", weights_only=True)
    for name, tensor in b["model"].items():
        torch.testing.assert_close(a["model"][name], tensor, rtol=0, atol=1e-5)

    again = pretrain(data.manifest, out, MAE_RUN)
    assert again["steps_run"] == 0 and again["step"] == 20 and again["last_loss"] is None
    assert len(read_metrics(out)) == 20


def test_hiera_run_resumes_exactly_with_both_optimisers(data, tmp_path):
    """The EPI-250k path: spectrogram view on the device, Hiera MAE, Muon + AdamW, checkpoint and resume."""
    straight = pretrain(data.manifest, tmp_path / "a", HIERA_RUN)
    assert straight["steps_run"] == 4 and np.isfinite(straight["last_loss"])
    pretrain(data.manifest, tmp_path / "b", HIERA_RUN, run__steps=2, optim__decay_steps=4)
    resumed = pretrain(data.manifest, tmp_path / "b", HIERA_RUN)
    assert resumed["start_step"] == 2 and resumed["steps_run"] == 2
    np.testing.assert_allclose([r["loss"] for r in read_metrics(tmp_path / "b")],
                               [r["loss"] for r in read_metrics(tmp_path / "a")], rtol=0, atol=1e-5)
    ckpt = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    assert ckpt["arch"] == "hiera" and set(ckpt["optimizers"]) == {"adamw", "muon"}
    cfg = HieraConfig(**ckpt["model_config"])
    assert cfg.in_chans == N_CH and cfg.image_size == (64, 64) and cfg.mask_ratio == 0.6
    info = json.loads((tmp_path / "a" / "run.json").read_text())
    assert info["input_shape"] == [N_CH, 64, 64] and info["tokens_per_sample"] == 16 * 16
    assert info["train_flops_per_sample"] == flops_per_sample(cfg, backward=True)
    assert info["n_encoder_parameters"] < info["n_parameters"]


def test_the_view_stops_at_the_manifests_lowest_lowpass_edge(data, tmp_path, caplog):
    """A manifest whose recordings hold nothing above 20 Hz (one sampled at 50 Hz): the spectrogram's top row is
    20 Hz, its breakpoint 10 Hz, in the saved config and the checkpoint that embed/probe read; said in the log.
    The figures behind it: docs/benchmarks.md (issue #20, recordings sampled at different rates)."""
    man = Manifest.load(data.manifest)
    man.lowpass_hz = 20.0
    path = man.save(data.manifest.with_name("manifest-20hz.json"))
    assert Manifest.load(path).content_hash == Manifest.load(data.manifest).content_hash
    with caplog.at_level(logging.WARNING, logger="ephys.pretrain.train"):
        pretrain(path, tmp_path / "run", HIERA_RUN, run__steps=1)
    assert "no signal above 20 Hz" in caplog.text
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    view = ckpt["config"]["view"]
    assert (view["freq_max_hz"], view["freq_breakpoint_hz"]) == (20.0, 10.0)
    assert load_config(tmp_path / "run" / "config.toml").view.freq_max_hz == 20.0
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ephys.pretrain.train"):  # resuming: the same view, no change
        pretrain(path, tmp_path / "run", HIERA_RUN, run__steps=2)
    assert "changed settings" not in caplog.text


def test_missing_or_changed_shard_is_refused(tmp_path):
    """Shards are hashed as they are first streamed, not all at start-up: a missing or changed shard
    is an error naming it when it is drawn, and no step is taken on the changed shard's samples."""
    ds = write_dataset(tmp_path / "data", n_shards=2, per_shard=4, unlisted=())
    shard = tmp_path / "data" / "shard-000001.tar"
    raw = shard.read_bytes()
    shard.unlink()
    with pytest.raises(ManifestError, match=r"shard-000001\.tar: shard is missing"):
        pretrain(ds.manifest, tmp_path / "run", MAE_RUN)
    shard.write_bytes(raw[:600] + bytes([raw[600] ^ 1]) + raw[601:])
    with pytest.raises(ManifestError, match=r"shard-000001\.tar: shard bytes changed"):
        pretrain(ds.manifest, tmp_path / "run2", MAE_RUN)
    assert not (tmp_path / "run2" / "checkpoint.pt").exists()


def test_a_changed_shard_yields_no_sample_and_a_verified_one_is_not_hashed_again(tmp_path, monkeypatch):
    """The loader's own check: the changed shard raises before any of its samples is yielded (the other
    shard's samples may come first); a shard verified once in this process is not hashed again."""
    from ephys.digest import HashingReader
    from ephys.pretrain import data as d

    ds = write_dataset(tmp_path / "data", n_shards=2, per_shard=4, unlisted=())
    m = Manifest.load(ds.manifest)
    d._VERIFIED.clear()
    hashed = []
    monkeypatch.setattr(HashingReader, "finish", lambda self, f=HashingReader.finish: hashed.append(1) or f(self))
    batches = iter(d.make_loader(m, ds.manifest, batch_size=1, seed=0, shuffle_buffer=1))
    for _ in range(40):  # 10 passes over the 8 selected epochs: each shard hashed once
        next(batches)
    assert len(hashed) == 2
    shard = tmp_path / "data" / "shard-000001.tar"
    raw = shard.read_bytes()
    shard.write_bytes(raw[:600] + bytes([raw[600] ^ 1]) + raw[601:])
    d._VERIFIED.clear()
    seen = []
    src = [{"url": str(shard)}]
    with pytest.raises(ManifestError, match=r"shard-000001\.tar: shard bytes changed"):
        for x in d._tar_samples(iter(src), expected={str(shard): m.shards[1].sha256}):
            seen.append(x)
    assert seen == []


def test_mixed_channel_counts_are_refused(tmp_path):
    ds = write_dataset(tmp_path / "data", n_shards=3, per_shard=2, unlisted=(), channels=[8, 6, 8])
    with pytest.raises(ManifestError, match=r"mixed channel counts.*shard-000001\.tar: \(6, 7500\)"):
        pretrain(ds.manifest, tmp_path / "run", MAE_RUN)


def test_checkpoint_of_other_model_or_manifest_is_refused(data, tmp_path):
    out = tmp_path / "run"
    small = MAE_RUN.with_overrides(**{"model.dim": 32, "model.heads": 2, "run.steps": 2})
    pretrain(data.manifest, out, small)
    assert pretrain(data.manifest, out, small, run__steps=3)["step"] == 3
    with pytest.raises(CheckpointMismatchError, match="another model config .*dim: 32, 64.*heads: 2, 4"):
        pretrain(data.manifest, out, MAE_RUN)
    with pytest.raises(CheckpointMismatchError, match="holds a mae model, the config asks for hiera"):
        pretrain(data.manifest, out, HIERA_RUN)
    with pytest.raises(CheckpointMismatchError, match=r"optimisers \['adamw', 'muon'\].*\['adamw'\]"):
        pretrain(data.manifest, out, small, run__steps=5, optim__optimizer="adamw")
    other = write_dataset(tmp_path / "other", seed=1, n_shards=1, per_shard=4, unlisted=())
    with pytest.raises(CheckpointMismatchError, match="trained on manifest"):
        pretrain(other.manifest, out, small, run__steps=5)
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 3
    assert len(read_metrics(out)) == 3
    (out / "checkpoint.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    with pytest.raises(PretrainError, match="checkpoint.pt: checkpoint cannot be read"):
        pretrain(data.manifest, out, small, run__steps=5)


@pytest.mark.parametrize("text, message", [
    ("[model]\npreset = 'huge'\n", "unknown preset 'huge'"),
    ("[model]\nwidth = 3\n", "width.*[Ee]xtra inputs are not permitted"),
    ("[model]\narch = 'mae'\nwidth = 3\n[view]\nkind = 'raw'\n", "width.*[Ee]xtra inputs are not permitted"),
    ("[optim]\nlearning_rate = 1\n", r"optim\.learning_rate: Extra inputs are not permitted"),
    ("[training]\nsteps = 1\n", r"training: Extra inputs are not permitted"),
    ("[model]\nmask_unit_size = 5\n", "mask_unit_size .* does not tile"),
    ("[view]\nimage_size = 200\n", "does not tile"),
    ("[model]\narch = 'mae'\n", "arch 'mae' takes the raw signal"),
    ("[model]\nin_chans = 3\n", "come from the manifest"),
    ("[data]\nbatch_size = 0\n", r"data\.batch_size: Input should be greater than 0"),
    ("[run]\nsteps = 10\n[optim]\nwarmup_steps = 11\n", "warmup_steps 11 exceeds the 10-step decay"),
    ("[run\nsteps = 1\n", "not valid TOML"),
])
def test_bad_config_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "run.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")


def test_config_files_round_trip_and_overrides(tmp_path):
    from ephys.pretrain.config import packaged_configs

    assert packaged_configs() == ["cpu-tiny", "epi250k-base", "epi250k-large"]
    base = load_config("epi250k-base")
    assert (base.model.preset, base.view.image_size, base.optim.optimizer) == ("base50m", 224, "muon+adamw")
    assert base.model.build(8, 7500, base.view) == HieraConfig.preset("base50m", in_chans=8)
    assert load_config("epi250k-large").model.build(8, 7500, base.view).embed_dim == 144
    (tmp_path / "c.toml").write_text(HIERA_RUN.model_dump_toml())
    assert load_config(tmp_path / "c.toml") == HIERA_RUN
    over = load_config("cpu-tiny", **{"run.steps": 7, "model.mask_mode": "amplitude"})
    assert over.run.steps == 7 and over.model.build(8, 7500, over.view).mask_mode == "amplitude"
    with pytest.raises(ConfigError, match="no such file|cannot be read"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="section.key"):
        load_config(None, steps=3)


def _meta(s: int, i: int) -> dict:
    """Varied QC scores, stages and annotations for the filter tests."""
    score = [0.2, 0.5, 0.9, 1.0][i % 4]
    stage = [None, "W", "N2", "REM", "N2"][i % 5]
    notes = [EpochAnnotation(onset_s=1.0, duration_s=2.0, text="x", category="seizure", negated=i % 3 == 0)] \
        if i % 2 else []
    return {"qc": {"score": score, "valid": i % 7 != 0},
            "sleep": EpochStage(stage=stage, probs=None) if stage else None, "annotations": notes}


def test_sample_filter_selects_from_the_sample_metadata(tmp_path):
    ds = write_dataset(tmp_path / "data", n_shards=2, per_shard=30, unlisted=(), meta=_meta)
    manifest = Manifest.load(ds.manifest)
    idx = {key: int(key.rsplit("_", 1)[1]) for key in ds.listed}
    cases = {
        SampleFilter(min_score=0.9): {k for k, i in idx.items() if i % 4 >= 2},
        SampleFilter(stages=("N2",)): {k for k, i in idx.items() if i % 5 in (2, 4)},
        SampleFilter(categories=("seizure",)): {k for k, i in idx.items() if i % 2 and i % 3},
        SampleFilter(valid_only=True, min_score=0.5): {k for k, i in idx.items() if i % 7 and i % 4 >= 1},
    }
    by_first_values = {arr[:, :4].tobytes(): key for key, arr in ds.listed.items()}
    for flt, expected in cases.items():
        assert 0 < len(expected) < len(idx)
        loader = make_loader(manifest, ds.manifest, batch_size=5, seed=2, shuffle_buffer=10, sample_filter=flt)
        seen = set()
        for batch, _ in zip(loader, range(60)):
            seen |= {by_first_values[x.astype(np.float16)[:, :4].tobytes()] for x in batch.numpy()}
        assert seen == expected, flt
        assert loader.skipped["filtered"] > 0 and set(loader.skipped) == {"filtered"}
    nothing = SampleFilter(stages=("N3",))
    with pytest.raises(ManifestError, match="no sample passes the data filters"):
        pretrain(ds.manifest, tmp_path / "run", MAE_RUN, data__stages=["N3"], run__steps=1)
    assert not nothing.keep({"qc": {"score": 1.0}, "sleep": None})


def test_ranks_draw_different_batches(data, monkeypatch):
    """Under DDP every rank has its own (deterministic) stream: same steps, different epochs."""
    manifest = Manifest.load(data.manifest)

    def first_batches(rank: int) -> list[torch.Tensor]:
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        return [b for b, _ in zip(StepBatches(manifest, data.manifest, 4, seed=5), range(3))]

    r0, r1, r0_again = first_batches(0), first_batches(1), first_batches(0)
    assert all(torch.equal(a, b) for a, b in zip(r0, r0_again))
    assert not any(torch.equal(a, b) for a, b in zip(r0, r1))


def _torchrun(*args: str, nproc: int = 2, timeout: int = 300) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "ephys.pretrain", *args]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        lines = [line for line in r.stderr.splitlines() if "Warning" not in line and "warnings.warn" not in line]
        pytest.fail(f"torchrun exited {r.returncode}:\n" + "\n".join(lines[:80]) + "\n...\n" + "\n".join(lines[-40:]))


def test_torchrun_ddp_two_ranks_resume_exactly(data, tmp_path):
    """Two gloo ranks on CPU via ``torchrun -m ephys.pretrain``: equal steps, replicas equal, exact resume."""
    config = tmp_path / "ddp.toml"
    config.write_text(MAE_RUN.with_overrides(**{"run.steps": 6, "run.checkpoint_every": 3}).model_dump_toml())
    common = ["--manifest", str(data.manifest), "--config", str(config), "--device", "cpu"]
    _torchrun(*common, "--out", str(tmp_path / "straight"))
    _torchrun(*common, "--out", str(tmp_path / "resumed"), "--steps", "3", "--set", "optim.decay_steps=6")
    _torchrun(*common, "--out", str(tmp_path / "resumed"), "--set", "optim.decay_steps=6")
    straight, resumed = read_metrics(tmp_path / "straight"), read_metrics(tmp_path / "resumed")
    assert [r["step"] for r in straight] == [r["step"] for r in resumed] == list(range(1, 7))
    np.testing.assert_allclose([r["loss"] for r in resumed], [r["loss"] for r in straight], rtol=0, atol=1e-5)
    info = json.loads((tmp_path / "straight" / "run.json").read_text())
    assert info["world_size"] == 2
    ckpt = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2
    assert not torch.equal(ckpt["rng"][0]["mask"], ckpt["rng"][1]["mask"])  # each rank masks differently
    # two ranks x 4 samples per step: the logged rate counts both
    single = pretrain(data.manifest, tmp_path / "single", MAE_RUN, run__steps=6)
    assert single["steps_run"] == 6
    assert not np.allclose([r["loss"] for r in straight], [r["loss"] for r in read_metrics(tmp_path / "single")])


def test_cli_pretrain(data, tmp_path):
    from ephys.cli import _register, app

    _register()
    runner = CliRunner()
    out = tmp_path / "run"
    args = ["pretrain", "--manifest", str(data.manifest), "--out", str(out), "--config", "cpu-tiny",
            "--steps", "3", "--batch-size", "4", "--lr", "0.002", "--mask-ratio", "0.5", "--seed", "1",
            "--device", "cpu", "--set", "model.mask_mode=amplitude", "--set", "run.log_every=1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("step 3 (3 run): loss ")
    assert len(read_metrics(out)) == 3
    saved = load_config(out / "config.toml")
    assert (saved.optim.lr, saved.model.mask_ratio, saved.run.seed, saved.run.steps) == (0.002, 0.5, 1, 3)
    assert saved.model.overrides == {**load_config("cpu-tiny").model.overrides, "mask_mode": "amplitude"} and saved.data.batch_size == 4
    assert runner.invoke(app, args).stdout.startswith("nothing to do")

    result = runner.invoke(app, ["pretrain", "--manifest", str(tmp_path / "nope.json"), "--out", str(out)])
    assert result.exit_code == 2
    # the chosen config is said first ("config: ... (the run's own config: resuming ...)"), then the error
    assert result.stderr.splitlines()[0].startswith("config: ") and "the run's own config" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: ") and "no such manifest" in result.stderr
    result = runner.invoke(app, args[:5] + ["--set", "model.widht=3"])
    assert result.exit_code == 2 and "widht" in result.stderr and "Extra inputs" in result.stderr
    result = runner.invoke(app, args[:5] + ["--set", "steps=3"])
    assert result.exit_code == 2 and "section.key=value" in result.output


def test_sigterm_checkpoints_and_the_run_resumes_exactly(data, tmp_path):
    """Slurm pre-emption: SIGTERM mid-run saves a checkpoint at the current step and exits 75; running again
    resumes, and the losses equal a straight run's."""
    import os
    import signal
    import subprocess
    import sys
    import time

    run = MAE_RUN.with_overrides(**{"run.steps": 100_000, "optim.decay_steps": 20, "optim.warmup_steps": 1,
                                    "run.checkpoint_every": 100_000})
    out, config = tmp_path / "run", tmp_path / "c.toml"
    config.write_text(run.model_dump_toml())
    cmd = [sys.executable, "-m", "ephys.pretrain", "--manifest", str(data.manifest), "--out", str(out),
           "--config", str(config), "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not (
            (out / "metrics.jsonl").exists() and len((out / "metrics.jsonl").read_text().splitlines()) >= 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 75, stderr[-2000:]
    stopped_at = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
    assert stopped_at >= 3 and len(read_metrics(out)) == stopped_at
    assert f"stopped by SIGTERM at step {stopped_at}" in stdout
    r = subprocess.run(cmd + ["--steps", str(stopped_at + 4)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    straight = [*cmd[:6], str(tmp_path / "straight"), *cmd[7:], "--steps", str(stopped_at + 4)]
    assert subprocess.run(straight, env=env, capture_output=True, timeout=300).returncode == 0  # same threads
    np.testing.assert_allclose([x["loss"] for x in read_metrics(out)],
                               [x["loss"] for x in read_metrics(tmp_path / "straight")], rtol=0, atol=1e-5)


def test_without_config_the_run_keeps_its_own_else_the_device_chooses(tmp_path):
    from ephys.pretrain.config import CONFIG_DIR, choose_config

    assert choose_config(tmp_path, "cuda")[0] == "epi250k-base"
    assert choose_config(tmp_path, "cuda:1")[0] == "epi250k-base"
    name, why = choose_config(tmp_path, "cpu")
    assert name == "cpu-tiny" and "no GPU" in why
    if not torch.cuda.is_available():  # CI: no GPU, so the detected device picks the CPU config
        assert choose_config(tmp_path)[0] == "cpu-tiny"
    (tmp_path / "config.toml").write_bytes((CONFIG_DIR / "cpu-tiny.toml").read_bytes())
    assert choose_config(tmp_path, "cuda")[0] == tmp_path / "config.toml"  # a resumed run keeps its config
