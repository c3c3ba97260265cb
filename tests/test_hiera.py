"""Hiera MAE (ephys.pretrain.hiera): layout, masking, loss, config validation, presets, FLOPs, optimiser groups."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ephys.pretrain.hiera import (
    HieraConfig,
    HieraMAE,
    UnitAttention,
    encoder_parameter_count,
    flops_per_sample,
    param_groups,
    pool_tokens,
    reroll,
    unroll,
)

TINY = HieraConfig.preset("tiny")  # 8 x 64 x 64, 16 mask units (4 x 4 grid of 16 x 16 px)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny CPU tensors: one intra-op thread


def _model(config: HieraConfig = TINY, seed: int = 0) -> HieraMAE:
    torch.manual_seed(seed)
    return HieraMAE(config).eval()


def _images(config: HieraConfig = TINY, b: int = 2, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, config.in_chans, *config.image_size, generator=g)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pixel_mask(config: HieraConfig, mask: torch.Tensor) -> torch.Tensor:
    """(B, U) unit mask -> (B, 1, H, W) bool, built independently of the model (units row-major)."""
    (uh, uw), (ph, pw) = config.unit_grid, config.unit_pixels
    m = mask.view(-1, 1, uh, uw).float()
    return F.interpolate(m, scale_factor=(ph, pw), mode="nearest").bool()


# ---------------------------------------------------------------------------------------------------------- shapes


def test_tiny_shapes_and_finite_loss():
    model, x = _model(), _images()
    c = TINY
    assert (c.token_grid, c.unit_grid, c.n_mask_units, c.pred_patch) == ((16, 16), (4, 4), 16, (16, 16))
    loss, pred, mask = model(x, generator=_gen(0))
    assert loss.shape == () and torch.isfinite(loss)
    assert pred.shape == (2, 16, 1, 16 * 16 * 8) and pred.dtype == torch.float32
    assert mask.shape == (2, 16) and mask.dtype == torch.bool
    assert model.encode(x).shape == (2, c.embedding_dim)
    with pytest.raises(ValueError, match="expected input"):
        model(torch.zeros(2, 8, 32, 32))


@pytest.mark.parametrize(
    "overrides, td",
    [
        ({"pred_stride": 8}, 4),  # finer than the final stage: decoder tokens unpooled 2x2 per unit
        ({"q_pool": 1, "pred_stride": 16}, 1),  # coarser than the final stage (8 px): decoder tokens mean-pooled
        ({"q_pool": 1}, 4),
        ({"multi_scale_fusion": False, "pos_embed": "sincos"}, 1),
        ({"mask_unit_attn_stages": 0}, 1),
        ({"mask_unit_attn_stages": 4, "q_pool": 3, "stages": (1, 1, 1, 1), "mask_unit_size": 8}, 1),
        ({"image_size": (64, 128), "patch_kernel": 4, "patch_padding": 0, "norm_pix_loss": False}, 1),
    ],
)
def test_config_variants(overrides, td):
    c = HieraConfig.preset("tiny", **overrides)
    model, x = _model(c), _images(c)
    loss, pred, mask = model(x, generator=_gen(0))
    assert torch.isfinite(loss)
    assert pred.shape == (2, c.n_mask_units, td, c.pred_dim)
    assert int(mask[0].sum()) == c.n_masked()
    assert model.encode(x).shape == (2, c.embedding_dim)
    if not c.norm_pix_loss:  # the target is the image itself: target/unpatchify round-trip
        assert torch.equal(model.unpatchify(model.target(x)), x)


# ---------------------------------------------------------------------------------------------------------- layout


@pytest.mark.parametrize("levels", [0, 1, 2, 3])
def test_unroll_pooling_is_max_pool_within_units(levels):
    g = torch.randn(2, 16, 24, 5)  # grid (B, Hg, Wg, D); units 8x8 -> 2x3 units
    t = unroll(g, (8, 8), (2, 2), levels)
    assert t.shape == (2, 64, 6, 5)
    assert torch.equal(reroll(t, (16, 24), (8, 8), (2, 2), levels), g)
    t = t.flatten(1, 2)
    ref = g.permute(0, 3, 1, 2)
    for k in range(1, levels + 1):
        t = pool_tokens(t, 4)
        ref = F.max_pool2d(ref, 2)
        unit = (8 // 2**k, 8 // 2**k)
        expect = unroll(ref.permute(0, 2, 3, 1), unit, (2, 2), levels - k).flatten(1, 2)
        assert torch.equal(t, expect)


def test_mask_unit_attention_stays_within_units():
    torch.manual_seed(0)
    attn = UnitAttention(16, 32, heads=2, q_stride=4, unit_tokens=16, mask_unit_attn=True)
    x = torch.randn(2, 16 * 5, 16)  # 5 units of 16 tokens, unit-major layout (unit index innermost)
    y = attn(x)
    assert y.shape == (2, 4 * 5, 32)
    x2 = x.clone()
    x2.view(2, 16, 5, 16)[:, :, 0] += 10.0  # perturb every token of unit 0
    y2 = attn(x2).view(2, 4, 5, 32)
    y = y.view(2, 4, 5, 32)
    assert not torch.allclose(y2[:, :, 0], y[:, :, 0])
    assert torch.allclose(y2[:, :, 1:], y[:, :, 1:], atol=1e-6)


# ---------------------------------------------------------------------------------------------------------- masking


@pytest.mark.parametrize("mode", ["random", "amplitude"])
@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.6, 0.75, 0.9])
def test_mask_ratio_is_exact(mode, ratio):
    model, x = _model(), _images(b=4)
    mask = model.sample_mask(x, ratio, _gen(3), mode=mode)
    assert mask.shape == (4, 16) and mask.dtype == torch.bool
    assert (mask.sum(dim=1) == round(ratio * 16)).all()
    if mode == "random":
        _, _, m = model(x, ratio, _gen(3))
        assert torch.equal(m, mask)


def test_base_mask_counts():
    c = HieraConfig()  # 224 px, 56x56 tokens, 49 units
    assert (c.token_grid, c.n_mask_units, c.n_masked(), c.n_masked(0.9)) == ((56, 56), 49, 29, 44)


def test_seeded_masking_is_deterministic():
    model, x = _model(), _images()
    loss1, pred1, m1 = model(x, generator=_gen(7))
    loss2, pred2, m2 = model(x, generator=_gen(7))
    assert torch.equal(m1, m2) and torch.equal(pred1, pred2) and loss1 == loss2
    _, _, m3 = model(x, generator=_gen(8))
    assert not torch.equal(m1, m3)
    assert not torch.equal(m1[0], m1[1])  # per-sample masks


def test_amplitude_alpha_zero_is_uniform_random():
    model, x = _model(), _images(b=8)
    uniform = model.sample_mask(x, 0.6, _gen(5), mode="random")
    assert torch.equal(model.sample_mask(x, 0.6, _gen(5), mode="amplitude", alpha=0.0), uniform)
    assert not torch.equal(model.sample_mask(x, 0.6, _gen(5), mode="amplitude", alpha=1.0), uniform)


def test_amplitude_masking_prefers_loud_units():
    c = HieraConfig.preset("tiny", mask_mode="amplitude", amplitude_alpha=1.0)
    model = _model(c)
    x = _images(c, b=400, seed=2)
    x[:, :, :32] *= 3.0  # the top two unit rows (units 0-7) carry 9x the energy
    loud = torch.zeros(16, dtype=torch.bool)
    loud[:8] = True
    assert (model.unit_energy(x)[:, :8].mean() / model.unit_energy(x)[:, 8:].mean()).item() == pytest.approx(9, rel=0.05)
    amp = model.sample_mask(x, 0.5, _gen(11)).float().mean(dim=0)
    rnd = model.sample_mask(x, 0.5, _gen(11), mode="random").float().mean(dim=0)
    # 8 of 16 masked; with P ~ energy, loud units are masked far more often than quiet ones
    assert amp[loud].mean() > 0.75 and amp[~loud].mean() < 0.25
    assert abs(rnd[loud].mean() - rnd[~loud].mean()) < 0.1


# ---------------------------------------------------------------------------------------------------------- loss


@pytest.mark.parametrize("norm_pix", [False, True])
def test_loss_is_mse_over_masked_units_only(norm_pix):
    c = HieraConfig.preset("tiny", norm_pix_loss=norm_pix, pred_stride=8)
    model, x = _model(c), _images(c)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, [0, 3, 5, 6, 9, 10, 12, 15]] = True
    mask[1, [1, 2, 4, 7, 8, 11, 13, 14]] = True
    loss, pred, m = model(x, mask=mask)
    assert torch.equal(m, mask)
    target = model.target(x)
    manual = ((pred - target) ** 2).mean(dim=(2, 3))[mask].mean()
    assert loss.item() == pytest.approx(manual.item(), rel=1e-6)
    if not norm_pix:  # independently, in image space: mean squared error over the masked pixels
        px = _pixel_mask(c, mask).expand_as(x)
        assert loss.item() == pytest.approx(((model.unpatchify(pred) - x)[px] ** 2).mean().item(), rel=1e-5)
    # the visible units' predictions carry no loss: replacing them with anything leaves the loss unchanged
    pred2 = torch.where(mask[:, :, None, None], pred, torch.randn_like(pred) * 100)
    assert ((pred2 - target) ** 2).mean(dim=(2, 3))[mask].mean().item() == pytest.approx(loss.item(), rel=1e-6)


def test_encoder_never_sees_masked_pixels():
    model, x = _model(), _images()
    mask = model.sample_mask(x, 0.6, _gen(4))
    ids_keep = torch.argsort(mask.to(torch.int8), dim=1, stable=True)[:, : 16 - int(mask[0].sum())]
    with torch.no_grad():
        latent = model.encoder(x, mask, ids_keep)
        noisy = x + 50.0 * torch.randn_like(x) * _pixel_mask(TINY, mask)  # change only masked-unit pixels
        assert torch.equal(model.encoder(noisy, mask, ids_keep), latent)
        visible_change = x + 1.0 * _pixel_mask(TINY, ~mask)
        assert not torch.allclose(model.encoder(visible_change, mask, ids_keep), latent)


def test_encode_mean_readout_is_every_stage_pooled_and_standardised():
    # Built here from the blocks one by one (not through the encoder's own loop): each stage's tokens mean-pooled,
    # the last after the encoder norm, each standardised over its features, concatenated stage 1 first.
    from ephys.pretrain.hiera import unroll

    c = TINY.model_copy(update={"readout": "mean"})
    model, x = _model(c).eval(), _images()
    assert c.embedding_dim == sum(c.stage_dims)
    enc = model.encoder
    with torch.no_grad():
        t = unroll(enc.patch_embed(x).permute(0, 2, 3, 1) + enc.pos_embed, c.mask_unit_size, c.q_stride, c.q_pool)
        t, pooled, ends = t.flatten(1, 2), [], [sum(c.stages[: i + 1]) - 1 for i in range(len(c.stages))]
        for i, blk in enumerate(enc.blocks):
            t = blk(t)
            if i in ends:
                pooled.append((enc.norm(t) if i == ends[-1] else t).mean(dim=1))
        want = torch.cat([(p - p.mean(1, keepdim=True)) / (p.var(1, unbiased=False, keepdim=True) + 1e-5).sqrt()
                          for p in pooled], dim=1)
        got = model.encode(x)
    assert got.shape == (2, sum(c.stage_dims)) == want.shape
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert torch.equal(got[:, -c.stage_dims[-1]:], F.layer_norm(enc(x).mean(dim=1), (c.stage_dims[-1],)))


def test_encode_rows_readout_keeps_each_token_row():
    # The oracle puts each stage's tokens back on their grid with reroll (the inverse of the layout, as
    # unpatchify does; a stage pooled p times is laid out as unroll of the 1/stride**p grid with q_pool - p
    # levels), averages each grid row over its columns (time) and standardises it; rows low frequency first.
    from ephys.pretrain.hiera import reroll

    model, x, c = _model().eval(), _images(), TINY
    assert c.readout == "rows" and c.stage_rows == (16, 8, 4, 4)
    with torch.no_grad():
        outs = model.encoder.stage_outputs(x)
        want = []
        for i, t in enumerate(outs):
            p = min(i, c.q_pool)
            f = (c.q_stride[0] ** p, c.q_stride[1] ** p)
            grid = (c.token_grid[0] // f[0], c.token_grid[1] // f[1])
            unit = (c.mask_unit_size[0] // f[0], c.mask_unit_size[1] // f[1])
            g = reroll(t.view(t.shape[0], unit[0] * unit[1], -1, t.shape[-1]), grid, unit, c.q_stride, c.q_pool - p)
            rows = g.mean(dim=2)  # (B, H_i, D_i): over the time axis
            want.append(((rows - rows.mean(-1, keepdim=True)) / (rows.var(-1, unbiased=False, keepdim=True) + 1e-5).sqrt()).flatten(1))
        want = torch.cat(want, dim=1)
        got = model.encode(x)
    assert got.shape == (2, c.embedding_dim) == (2, sum(r * d for r, d in zip((16, 8, 4, 4), c.stage_dims)))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    # Stage 1 attends within mask units (4 token rows here) after a 7-px stem: an image changed only in its last 8
    # pixel rows (the highest frequencies of a spectrogram) leaves stage 1's first 8 token rows as they were.
    y = x.clone()
    y[:, :, -8:] = torch.randn_like(y[:, :, -8:])
    with torch.no_grad():
        a, b = model.encode(x), model.encode(y)
    n0 = c.stage_rows[0] * c.stage_dims[0]
    first = (a[:, :n0] - b[:, :n0]).abs().view(2, c.stage_rows[0], -1).amax(dim=(0, 2))
    assert first[:8].max() < 1e-3 < first[-2:].min()


def test_backward_and_overfit_one_batch():
    model, x = _model().train(), _images(b=1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    losses = []
    for step in range(20):
        loss, _, _ = model(x, generator=_gen(0))  # same mask every step
        opt.zero_grad()
        loss.backward()
        if step == 0:
            missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
            assert not missing
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


# ---------------------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"image_size": 62}, "image_size"),
        ({"image_size": 0}, "image_size"),
        ({"mask_unit_size": 3}, "mask_unit_size"),
        ({"mask_unit_size": 2}, "mask_unit_size"),  # 2 tokens cannot be pooled twice by 2
        ({"mask_unit_size": 16}, "mask_unit_size"),  # one unit only
        ({"patch_kernel": 15}, "patch_kernel"),
        ({"num_heads": 3}, "num_heads"),
        ({"decoder_heads": 5}, "decoder_heads"),
        ({"mask_ratio": 0.0}, "mask_ratio"),
        ({"mask_ratio": 1.0}, "mask_ratio"),
        ({"mask_ratio": -0.2}, "mask_ratio"),
        ({"mask_ratio": 0.01}, "mask_ratio"),  # rounds to 0 masked units
        ({"q_pool": 4}, "q_pool"),
        ({"mask_unit_attn_stages": 5}, "mask_unit_attn_stages"),
        ({"pred_stride": 12}, "pred_stride"),
        ({"mask_mode": "loudest"}, "mask_mode"),
        ({"unknown_knob": 1}, "unknown_knob"),
    ],
)
def test_invalid_config_names_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        HieraConfig.preset("tiny", **overrides)


def test_config_roundtrip_and_presets():
    c = HieraConfig.preset("tiny", image_size=(64, 96))
    assert c.image_size == (64, 96) and HieraConfig(**c.model_dump()) == c
    assert HieraConfig.preset("base50m") == HieraConfig()
    with pytest.raises(ValueError, match="unknown preset"):
        HieraConfig.preset("huge")


@pytest.mark.parametrize("name, target", [("base50m", 50e6), ("large210m", 210e6)])
def test_preset_encoder_params_on_meta(name, target):
    c = HieraConfig.preset(name)
    with torch.device("meta"):
        model = HieraMAE(c)
    assert all(p.is_meta for p in model.parameters())
    n = sum(p.numel() for p in model.encoder.parameters())
    assert n == encoder_parameter_count(c)
    assert abs(n - target) <= 0.15 * target, n


# ---------------------------------------------------------------------------------------------------------- FLOPs


def _analytic_encoder_flops(c: HieraConfig, n_visible: int) -> int:
    """Matmul/conv/attention FLOPs (2 per MAC) of the encoder on n_visible units, from the architecture."""
    (ht, wt), (kh, kw) = c.token_grid, c.patch_kernel
    flops = 2 * ht * wt * c.embed_dim * c.in_chans * kh * kw
    q = c.q_stride[0] * c.q_stride[1]
    t = c.mask_unit_size[0] * c.mask_unit_size[1]  # tokens per unit
    u = n_visible
    dim = c.embed_dim
    for s, depth in enumerate(c.stages):
        for j in range(depth):
            first = j == 0 and s > 0
            dim_out = c.stage_dims[s]
            pool = q if first and s <= c.q_pool else 1
            local = (s - 1 if first else s) < c.mask_unit_attn_stages
            n_in, n_out = t * u, t * u // pool
            flops += 2 * n_in * dim * 3 * dim_out  # qkv
            flops += 2 * n_in * dim * dim_out if dim != dim_out else 0  # shortcut
            keys = t if local else n_in
            flops += 2 * 2 * n_out * keys * dim_out  # q k^T and attn v
            flops += 2 * n_out * dim_out * dim_out  # proj
            flops += 2 * 2 * n_out * dim_out * int(dim_out * c.mlp_ratio)  # fc1, fc2
            t, dim = t // pool, dim_out
    return flops


def test_flops_are_counted_and_match_the_architecture():
    c = TINY
    for ratio in (0.5, 0.75):
        counted = flops_per_sample(c, ratio, encoder_only=True)
        assert counted == _analytic_encoder_flops(c, 16 - c.n_masked(ratio))
    assert flops_per_sample(c, 0.0) == _analytic_encoder_flops(c, 16)
    # halving the visible units roughly halves the encoder (the stem and global attention keep it from exact)
    r = flops_per_sample(c, 0.75, encoder_only=True) / flops_per_sample(c, 0.5, encoder_only=True)
    assert 0.5 < r < 0.6
    fwd = flops_per_sample(c)
    assert fwd > flops_per_sample(c, encoder_only=True)
    assert 2.5 < flops_per_sample(c, backward=True) / fwd < 3.1


# ---------------------------------------------------------------------------------------------------------- optimiser


def test_param_groups_split_muon_and_adamw():
    model = _model()
    groups = param_groups(model, names=True)
    muon = {n for n, _ in groups["muon"]}
    adamw = {n for n, _ in groups["adamw"]}
    names = {n for n, _ in model.named_parameters()}
    assert muon.isdisjoint(adamw) and muon | adamw == names
    assert len(groups["muon"]) + len(groups["adamw"]) == len(list(model.parameters()))
    assert all(p.ndim == 2 for _, p in groups["muon"])
    for n in ["encoder.blocks.0.attn.qkv.weight", "encoder.blocks.1.shortcut.weight", "decoder_blocks.0.mlp.fc2.weight"]:
        assert n in muon
    for n in [
        "encoder.patch_embed.weight", "encoder.pos_embed", "mask_token", "decoder_pos_embed", "decoder_embed.weight",
        "fusion.0.weight", "decoder_pred.weight", "encoder.blocks.0.attn.qkv.bias", "encoder.norm.weight",
    ]:
        assert n in adamw
    plain = param_groups(model)
    assert [id(p) for p in plain["muon"]] == [id(p) for _, p in groups["muon"]]
    if hasattr(torch.optim, "Muon"):  # torch >= 2.9 rejects any non-2-D parameter here
        torch.optim.Muon(plain["muon"], lr=0.02)
