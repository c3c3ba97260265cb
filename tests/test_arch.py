"""The architecture protocol and registry (issue #21 part 3): a new architecture is one file plus its registration.

``tests/archs/toy.py`` defines one (config, model, one ``register`` call); pretraining, run.json's counts and FLOPs,
``embed`` and ``probe`` then work on it without any other change. The built-in FLOP figures come from the one
counter (:func:`ephys.pretrain.arch.flops_per_sample`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ephys.pretrain import RunConfig, load_config, pretrain
from ephys.pretrain.arch import REGISTRY, arch_of, flops_per_sample, get
from tests.test_evaluate import N_CH, N_T, write_dataset


def test_builtins_are_registered_and_resolved():
    assert {"hiera", "mae"} <= set(REGISTRY)
    cfg = load_config("cpu-tiny").model.build(8, 7500, load_config("cpu-tiny").view)
    assert arch_of(cfg).name == "hiera" and cfg.input_shape == (8, 64, 64) and cfg.tokens_per_sample == 256
    with pytest.raises(ValueError, match="unknown arch 'nope'; registered"):
        get("nope")
    with pytest.raises(ValueError, match="unknown arch"):
        RunConfig.model_validate({"model": {"arch": "nope"}})


def test_a_new_architecture_is_one_file_and_a_registration(tmp_path):
    import tests.archs.toy  # noqa: F401 - registers "toy"
    from ephys.pretrain.evaluate import embed, probe

    config = RunConfig.model_validate({"model": {"arch": "toy", "dim": 8}, "view": {"kind": "raw"},
                                       "optim": {"optimizer": "adamw"}, "data": {"batch_size": 4},
                                       "run": {"steps": 3, "progress": False, "log_every": 1}})
    data = write_dataset(tmp_path / "d", bad=None)  # 6 subjects, stages W / N3
    out = tmp_path / "run"
    s = pretrain(data.manifest, out, config)
    assert s["step"] == 3 and np.isfinite(s["last_loss"])
    info = json.loads((out / "run.json").read_text())
    assert info["arch"] == "toy" and info["tokens_per_sample"] == N_CH
    assert info["n_encoder_parameters"] == N_T * 8 + 8
    model_config = config.model.build(N_CH, N_T, config.view)
    assert info["train_flops_per_sample"] == flops_per_sample(model_config, 0.6, backward=True) > 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["emb_rank"]) for r in rows if "emb_rank" in r)
    emb = embed(out / "checkpoint.pt", data.manifest)
    assert emb.arch == "toy" and emb.dim == 8 and len(emb.keys) == emb.embeddings.shape[0] > 0
    r = probe(out / "checkpoint.pt", data.manifest, "stage")
    assert r.arch == "toy" and 0.0 <= r.trained.balanced_accuracy <= 1.0


def test_one_flop_counter_gives_the_hiera_figures():
    from ephys.pretrain.hiera import HieraConfig
    from ephys.pretrain.hiera import flops_per_sample as hiera_flops

    c = HieraConfig.preset("tiny", in_chans=8)
    assert hiera_flops(c) == flops_per_sample(c) == 31_819_776  # forward at mask 0.6 (docs: counted, not analytic)
    assert hiera_flops(c, backward=True) == flops_per_sample(c, backward=True)
    assert hiera_flops(c, 0.0) == flops_per_sample(c, 0.0)
