"""Scaling sweeps: the power-law fit, manifest subsets, and a tiny resumable sweep (the code, not the science)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ephys.pretrain.config import load_config
from ephys.pretrain.data import shard_layout, verify_shards
from ephys.pretrain.sweep import PowerLawFit, SweepPoint, fit_power_law, run_sweep, subset_manifest
from ephys.pretrain.train import train_flops_per_sample
from ephys.schemas.manifest import Manifest, key_runs
from tests.test_pretrain import N_CH, N_T, write_dataset

PER_SHARD, UNLISTED = 10, (3,)  # 9 listed keys per shard


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("sweep-data"), n_shards=3, per_shard=PER_SHARD, unlisted=UNLISTED)


# ----------------------------------------------------------------------------------------------------------- fit


def test_fit_recovers_noiseless_power_law():
    a, b = 3.7, 0.083
    compute = np.logspace(10, 16, 7)
    fit = fit_power_law(compute, a * compute ** -b)
    assert isinstance(fit, PowerLawFit) and fit.n == 7
    assert fit.a == pytest.approx(a, rel=1e-10) and fit.b == pytest.approx(b, rel=1e-10)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)
    assert fit.predict(1e13) == pytest.approx(a * 1e13 ** -b, rel=1e-10)
    np.testing.assert_allclose(fit.predict(compute), a * compute ** -b, rtol=1e-10)
    # two points determine the line; lists work as well as arrays
    two = fit_power_law([1e12, 4e12], [2.0, 2.0 * 4 ** -0.5])
    assert (two.a, two.b, two.n) == (pytest.approx(2.0 * 1e12 ** 0.5), pytest.approx(0.5), 2)


def test_fit_with_seeded_noise_is_close():
    rng = np.random.default_rng(20261121)
    a, b = 12.0, 0.05
    compute = np.logspace(9, 15, 40)
    loss = a * compute ** -b * np.exp(rng.normal(0.0, 0.01, compute.size))  # 1 % log-normal noise
    fit = fit_power_law(compute, loss)
    assert fit.b == pytest.approx(b, abs=0.003)
    assert fit.a == pytest.approx(a, rel=0.1)
    assert 0.9 < fit.r2 < 1.0


@pytest.mark.parametrize(
    ("compute", "loss", "message"),
    [
        ([1e12], [1.0], "at least 2 points, got 1"),
        ([], [], "at least 2 points, got 0"),
        ([1e12, 2e12, 3e12], [1.0, 0.9], "different lengths"),
        ([1e12, -2e12], [1.0, 0.9], r"compute\[1\] = -2e\+12"),
        ([1e12, 0.0], [1.0, 0.9], r"compute\[1\] = 0$"),
        ([1e12, 2e12], [1.0, 0.0], r"loss values must be positive and finite: loss\[1\] = 0$"),
        ([1e12, 2e12], [float("nan"), 0.9], r"loss\[0\] = nan"),
        ([1e12, float("inf")], [1.0, 0.9], r"compute\[1\] = inf"),
        ([5e12, 5e12, 5e12], [1.0, 0.9, 0.8], "all compute values are equal"),
        ([[1e12, 2e12]], [[1.0, 0.9]], "1-D"),
    ],
)
def test_fit_rejects_bad_input(compute, loss, message):
    with pytest.raises(ValueError, match=message):
        fit_power_law(compute, loss)


# ------------------------------------------------------------------------------------------------------- subsets


def test_subset_keeps_a_seeded_fraction_per_shard(data, tmp_path):
    parent = Manifest.load(data.manifest)
    out = tmp_path / "elsewhere" / "deeper" / "half.json"  # relative shard URLs must still resolve from here
    path = subset_manifest(parent, data.manifest, 0.5, 0, out)
    assert path == out
    sub = Manifest.load(path)
    assert [len(s.keys) for s in sub.shards] == [5, 5, 5]  # round(0.5 * 9), half up
    for s, p in zip(sub.shards, parent.shards):
        assert s.sha256 == p.sha256 and s.n_samples == p.n_samples
        assert s.keys == [k for k in p.keys if k in set(s.keys)]  # a subset, in shard order
    assert sub.counts == {"epochs": 15, "shards": 3} and sub.n_epochs == 15
    assert sub.query == [*parent.query, "subset fraction=0.5 seed=0"]
    assert sub.content_hash != parent.content_hash
    assert (sub.channel_names, sub.sfreq, sub.n_samples) == (parent.channel_names, parent.sfreq, parent.n_samples)
    resolved = [Path(u).resolve() for u in verify_shards(sub, path)]
    assert resolved == [Path(u).resolve() for u in verify_shards(parent, data.manifest)]
    assert shard_layout(sub, path) == (N_CH, N_T)

    # deterministic for a seed (the hash leaves shard locations out), another seed draws other keys
    again = Manifest.load(subset_manifest(None, data.manifest, 0.5, 0, tmp_path / "again.json"))
    assert [s.keys for s in again.shards] == [s.keys for s in sub.shards]
    assert again.content_hash == sub.content_hash
    other = Manifest.load(subset_manifest(parent, data.manifest, 0.5, 1, tmp_path / "other.json"))
    assert [s.keys for s in other.shards] != [s.keys for s in sub.shards]
    assert other.content_hash != sub.content_hash
    # nested across fractions of one seed; fraction 1 keeps every key but is its own selection
    quarter = Manifest.load(subset_manifest(parent, data.manifest, 0.25, 0, tmp_path / "quarter.json"))
    assert [len(s.keys) for s in quarter.shards] == [2, 2, 2]
    assert all(set(q.keys) <= set(h.keys) for q, h in zip(quarter.shards, sub.shards))
    whole = Manifest.load(subset_manifest(parent, data.manifest, 1.0, 0, tmp_path / "whole.json"))
    assert [s.keys for s in whole.shards] == [s.keys for s in parent.shards]
    assert whole.content_hash != parent.content_hash


def test_subset_drops_empty_shards_and_keeps_absolute_urls(data, tmp_path):
    parent = Manifest.load(data.manifest)
    root = data.manifest.parent
    shards = [parent.shards[0].model_copy(update={"runs": key_runs(parent.shards[0].keys[:1])}),
              parent.shards[1].model_copy(update={"url": str((root / parent.shards[1].url).resolve())}),
              parent.shards[2]]
    edited = parent.model_copy(update={"shards": shards})
    edited_path = edited.save(root / "edited.json")
    sub_path = subset_manifest(None, edited_path, 0.4, 3, tmp_path / "sub.json")
    sub = Manifest.load(sub_path)
    assert [len(s.keys) for s in sub.shards] == [4, 4]  # round(0.4 * 1) = 0: shard 0 dropped
    assert [s.sha256 for s in sub.shards] == [parent.shards[1].sha256, parent.shards[2].sha256]
    assert sub.shards[0].url == shards[1].url  # absolute: unchanged
    assert not Path(sub.shards[1].url).is_absolute()  # relative: re-expressed from the new folder
    assert sub.counts == {"epochs": 8, "shards": 2}
    verify_shards(sub, sub_path)


@pytest.mark.parametrize("fraction", [0, -0.5, 1.5, float("nan")])
def test_subset_rejects_bad_fraction(data, tmp_path, fraction):
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        subset_manifest(None, data.manifest, fraction, 0, tmp_path / "x.json")


def test_subset_refuses_to_overwrite_parent_or_keep_nothing(data, tmp_path):
    with pytest.raises(ValueError, match="overwrite its parent"):
        subset_manifest(None, data.manifest, 0.5, 0, data.manifest)
    with pytest.raises(ValueError, match="keeps no epoch"):
        subset_manifest(None, data.manifest, 0.01, 0, tmp_path / "none.json")
    assert not (tmp_path / "none.json").exists()


# -------------------------------------------------------------------------------------------------------- sweeps


def test_sweep_point_validation():
    assert SweepPoint(budget=2e12, fraction=0.5).label == "c2e12-f0.5"
    assert SweepPoint(budget=1e9, name="small").label == "small"
    a = SweepPoint(budget=1e9, overrides={"model.embed_dim": 48}).label
    assert a.startswith("c1e09-f1-") and a == SweepPoint(budget=1e9, overrides={"model__embed_dim": 48}).label
    with pytest.raises(ValueError, match="run.steps comes from the budget"):
        SweepPoint(budget=1e9, overrides={"run__steps": 3})
    with pytest.raises(ValueError, match="budget must be a positive"):
        SweepPoint(budget=0)
    with pytest.raises(ValueError, match="fraction"):
        SweepPoint(budget=1e9, fraction=2)
    with pytest.raises(ValueError, match="not a folder name"):
        SweepPoint(budget=1e9, name="a/b")


def _files(run_dir: Path) -> dict[str, tuple[bytes, int]]:
    return {name: ((run_dir / name).read_bytes(), (run_dir / name).stat().st_mtime_ns)
            for name in ("metrics.jsonl", "checkpoint.pt", "run.json")}


def test_tiny_sweep_records_compute_fits_and_resumes(data, tmp_path):
    config = load_config("cpu-tiny", **{"data.batch_size": 4, "run.progress": False})
    model_config = config.model.build(N_CH, N_T, config.view)
    flops = train_flops_per_sample(model_config, config.model.mask_ratio)
    step_flops = 4 * flops
    # 2 steps on the whole manifest; 4 steps (budget rounds to the nearest step) on half of it
    points = [SweepPoint(budget=2 * step_flops, name="two"),
              SweepPoint(budget=4.3 * step_flops, fraction=0.5, name="four")]
    out = tmp_path / "sweep"
    results = run_sweep(data.manifest, out, config, points)

    assert [r.name for r in results] == ["two", "four"]
    assert [r.steps for r in results] == [2, 4] and [r.steps_run for r in results] == [2, 4]
    rows = [json.loads(line) for line in (out / "sweep.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for row, r in zip(rows, results):
        assert row["batch_size"] == 4 and row["flops_per_sample"] == flops
        assert row["compute"] == row["steps"] * row["batch_size"] * row["flops_per_sample"] == r.compute
        run_info = json.loads((out / row["name"] / "run.json").read_text())
        assert run_info["train_flops_per_sample"] == flops and row["n_parameters"] == run_info["n_parameters"]
        losses = [json.loads(x)["loss"] for x in (out / row["name"] / "metrics.jsonl").read_text().splitlines()]
        assert len(losses) == row["steps"]
        assert row["final_loss"] == pytest.approx(np.mean(losses[-min(5, len(losses)):]))
        assert math.isfinite(row["final_loss"]) and row["final_loss"] > 0
    assert rows[0]["manifest"] == str(data.manifest) and rows[0]["n_epochs"] == 27
    subset = Path(rows[1]["manifest"])
    assert subset.parent == out / "manifests" and rows[1]["n_epochs"] == 15  # 5 of 9 per shard
    assert rows[1]["manifest_hash"] == Manifest.load(subset).content_hash

    fit = json.loads((out / "fit.json").read_text())
    assert fit["all"]["n"] == 2 and fit["all"]["points"] == ["two", "four"]
    expected = fit_power_law([r.compute for r in results], [r.final_loss for r in results])
    assert fit["all"]["b"] == pytest.approx(expected.b) and fit["all"]["a"] == pytest.approx(expected.a)
    assert fit["frontier"]["n"] == 2

    # a second call retrains nothing and reads the same figures back
    before = {p.label: _files(out / p.label) for p in points}
    subset_bytes = subset.read_bytes()
    again = run_sweep(data.manifest, out, config, points)
    assert [r.steps_run for r in again] == [0, 0]
    assert [r.final_loss for r in again] == [r.final_loss for r in results]
    assert [r.compute for r in again] == [r.compute for r in results]
    assert {p.label: _files(out / p.label) for p in points} == before
    assert subset.read_bytes() == subset_bytes  # the subset manifest is reused, not rewritten

    # a point whose folder holds a longer run than its budget asks for is refused, not silently misread
    with pytest.raises(ValueError, match="checkpoint is at step 4, the point needs 1 steps"):
        run_sweep(data.manifest, out, config, [SweepPoint(budget=step_flops, fraction=0.5, name="four")])


def test_sweep_refuses_duplicate_point_names(data, tmp_path):
    with pytest.raises(ValueError, match="share folder names"):
        run_sweep(data.manifest, tmp_path, "cpu-tiny", [SweepPoint(budget=1e9, name="x"), SweepPoint(2e9, name="x")])
