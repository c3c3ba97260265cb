"""Hiera masked autoencoder for EEG images, in plain torch.

The input is an image batch ``(B, C, H, W)``: for EPI-250k, 8 regional channels of a 30-s epoch stacked like colour
channels, ``(B, 8, 224, 224)``.  This module has no timm or torchvision dependency.

Design
------
The design follows Hiera (Ryali et al. 2023, "Hiera: A Hierarchical Vision Transformer without the
Bells-and-Whistles", arXiv:2306.00989) and MAE (He et al. 2022, "Masked Autoencoders Are Scalable Vision Learners",
arXiv:2111.06377).  The token layout, the lagged mask-unit/global attention schedule, the masked patch-embedding
convolution and the multi-scale fusion decoder input are re-implemented from the paper and from the ideas of
facebookresearch/hiera (Apache-2.0; ``hiera/hiera.py``, ``hiera/hiera_utils.py``, ``hiera/hiera_mae.py``).  No code
was copied from it.

* **Stem.**  A ``Conv2d`` (default 7x7, stride 4, padding 3) maps the image to a ``(H/4, W/4)`` token grid (56x56 at
  224 px).  A learned or fixed 2-D sin-cos position embedding is added.
* **Mask units.**  The token grid is tiled into mask units of ``mask_unit_size`` tokens (default 8x8, so 7x7 = 49
  units at 224 px).  The tokens are reordered once ("unrolled", :func:`unroll`) into mask-unit-major layout
  ``(B, T, U, D)``: ``T`` positions within a unit times ``U`` units, flattened to ``(B, T*U, D)`` with ``T`` outer.
  Within a unit, the positions are ordered so that the ``q_stride`` window of every pooling level is the outermost
  axis.  This has three consequences:

  - Masked units are dropped with one ``gather`` on the unit axis.  The encoder runs on visible units only.
  - Mask-unit attention is a reshape to ``(B*U, heads, T, head_dim)``.  It is a single batched
    ``scaled_dot_product_attention`` call (4-D, so the fused CUDA kernels apply).
  - Token pooling, a max over each ``q_stride`` window within a unit, is ``x.view(B, s, N/s, D).amax(1)``.

* **Schedule.**  There are ``len(stages)`` stages.  At each stage transition the width is multiplied by ``dim_mul``
  and the head count by ``head_mul``.  The first ``q_pool`` transitions also pool the queries (and the shortcut) by
  ``q_stride``.  Blocks of the first ``mask_unit_attn_stages`` stages attend within mask units; later blocks attend
  globally.  As in Hiera, the switch lags by one block: the first, pooling block of a stage still uses the previous
  stage's attention type.
* **Masking.**  Before the stem, the pixels of masked units are zeroed, so the overlapping 7x7 kernel cannot leak
  masked pixels into visible border tokens.  Two modes are offered (``mask_mode``):

  - ``"random"``: uniform over units, per sample.
  - ``"amplitude"``: NeurIPT-style (arXiv:2510.16548).  Units are drawn without replacement with probability
    proportional to ``energy ** amplitude_alpha``, through Gumbel top-k.  ``energy`` is the mean squared pixel value
    of the unit over all channels.  ``amplitude_alpha = 0`` is uniform and gives exactly the ``"random"`` mask for
    the same generator state.

  The number of masked units is ``round(mask_ratio * U)``, clamped to ``[1, U-1]`` and equal for every sample.
* **Decoder (light, MAE-style).**  The steps are:

  1. Take the final-stage encoder output of the visible units, after the encoder ``LayerNorm``.  If
     ``multi_scale_fusion`` is set, add a linear fusion of the outputs of the first ``q_pool`` stages, each pooled to
     the final grid by a linear map over its pooling window.  This equals a kernel=stride convolution, as in Hiera's
     MAE.
  2. Apply ``decoder_embed``.
  3. Resample each unit's tokens to the decoder grid.  This is a nearest-neighbour unpool when ``pred_stride`` is
     finer than the final stage, and a mean pool when it is coarser.
  4. Insert ``mask_token`` at the masked units and add the decoder position embedding.
  5. Run ``decoder_depth`` global-attention blocks, ``decoder_norm`` and ``decoder_pred``.

* **Target.**  The target is the pixels of every ``pred_stride`` x ``pred_stride`` patch, all ``C`` channels:
  ``P = ph*pw*C`` values in ``(py, px, c)`` order.  ``pred_stride`` defaults to the final-stage stride,
  ``patch_stride * q_stride**q_pool``.  That is 16 px for the defaults, 2048 values per patch at C=8 (Hiera's MAE
  granularity).  With ``norm_pix_loss`` each target patch is normalised to zero mean and unit variance: population
  variance over its ``P`` values, plus ``1e-6``.
* **Loss.**  The loss is the MSE over the patches of the masked units only.  Every unit has the same number of
  patches, so it is also the mean of the per-unit MSE over masked units.

Shapes: ``forward(x)`` takes ``x`` float ``(B, C, H, W)``.  It returns ``loss`` (a scalar), ``pred``
``(B, U, Td, P)`` and ``mask`` ``(B, U)`` bool, where True means masked.  Units are numbered row-major over the
``(H/uh_px, W/uw_px)`` unit grid.  ``Td`` is the number of predicted patches per unit, row-major within the unit.
:meth:`HieraMAE.unpatchify` maps ``pred`` back to ``(B, C, H, W)``.

Presets (:data:`PRESETS`, :meth:`HieraConfig.preset`):

* ``tiny``: for CPU tests.  8x64x64 input, 16 mask units, widths 32 to 256, 1.18M encoder parameters.
* ``base50m``: Hiera-B dims, widths 96 to 768, stages (2, 3, 16, 3).  50.78M encoder parameters at C=8 (79.3M with
  the decoder).  Counted forward FLOPs per 8x224x224 sample at mask 0.6 (20 of 49 units visible): 21.3 G, of which
  the encoder is 10.0 G.  Forward + backward: 63.6 G.
* ``large210m``: Hiera-L dims, widths 144 to 1152, stages (2, 6, 36, 4).  212.6M encoder parameters.  51.3 G forward
  FLOPs at mask 0.6 (encoder 39.7 G).  Forward + backward: 153.6 G.

Both large presets use ``q_pool=2`` and the MAE decoder of 512 width x 8 blocks; their final stage has 768- or
1152-d tokens at stride 16 (``encode()`` returns every stage's features per token row: 26,880 or 40,320 numbers, 105
or 158 KB per epoch in float32; 1440 or 2160 with ``readout = "mean"``).  With only
20 visible units of 49, the 8-block decoder costs more than the base encoder; ``decoder_depth`` is the knob for
throughput.

Notes.  The masked count is ``round(0.6 * 49) = 29``, which keeps 20 units.  Hiera keeps ``int(49 * 0.4) = 19``.
flash-eeg images are min-max normalised per channel and epoch (see the research notes), so "amplitude" here is the
energy of the image within the epoch, not absolute µV.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    field_validator,
    model_validator,
)
from torch import nn

__all__ = [
    "PRESETS",
    "HieraBlock",
    "HieraConfig",
    "HieraEncoder",
    "HieraMAE",
    "UnitAttention",
    "encoder_parameter_count",
    "flops_per_sample",
    "param_groups",
    "pool_tokens",
    "reroll",
    "unroll",
]

Pair = tuple[PositiveInt, PositiveInt]
LN_EPS = 1e-6
NORM_PIX_EPS = 1e-6  # added to each target patch's variance (norm_pix_loss)
ENERGY_EPS = 1e-12  # added to unit energies before the log (amplitude masking)


# --------------------------------------------------------------------------------------------------------------------
# configuration


class HieraConfig(BaseModel):
    """Sizes and options of a :class:`HieraMAE`.

    The defaults are Hiera-B (``base50m``) on 8 x 224 x 224 EEG images.  2-D sizes accept an int or a pair
    ``(height, width)``.  Invalid combinations raise ``ValueError`` (pydantic's ``ValidationError``); the message
    names the offending field.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    in_chans: PositiveInt = Field(8, description="image channels (EEG regions)")
    image_size: Pair = Field((224, 224), description="input (H, W) in pixels")
    patch_kernel: Pair = Field((7, 7), description="stem Conv2d kernel")
    patch_stride: Pair = Field((4, 4), description="stem Conv2d stride = pixels per token")
    patch_padding: tuple[NonNegativeInt, NonNegativeInt] = Field((3, 3), description="stem Conv2d padding")
    mask_unit_size: Pair = Field((8, 8), description="mask unit, in stage-1 tokens")
    embed_dim: PositiveInt = Field(96, description="stage-1 width")
    num_heads: PositiveInt = Field(1, description="stage-1 attention heads")
    stages: Annotated[tuple[PositiveInt, ...], Field(min_length=1)] = Field(
        (2, 3, 16, 3), description="blocks per stage"
    )
    q_pool: NonNegativeInt = Field(2, description="number of stage transitions that pool tokens by q_stride")
    q_stride: Pair = Field((2, 2), description="pooling window at each pooling transition")
    mask_unit_attn_stages: NonNegativeInt = Field(2, description="first N stages use mask-unit attention")
    dim_mul: PositiveInt = Field(2, description="width multiplier at each stage transition")
    head_mul: PositiveInt = Field(2, description="head-count multiplier at each stage transition")
    mlp_ratio: float = Field(4.0, gt=0, allow_inf_nan=False)
    pos_embed: Literal["learned", "sincos"] = "learned"
    multi_scale_fusion: bool = Field(True, description="fuse the first q_pool stages' outputs into the decoder input")
    decoder_dim: PositiveInt = 512
    decoder_depth: NonNegativeInt = 8
    decoder_heads: PositiveInt = 16
    pred_stride: Pair | None = Field(None, description="predicted pixel patch; None = final-stage stride")
    mask_ratio: float = Field(0.6, gt=0.0, lt=1.0, description="fraction of mask units hidden from the encoder")
    mask_mode: Literal["random", "amplitude"] = "random"
    amplitude_alpha: float = Field(1.0, allow_inf_nan=False, description="P(mask unit) ~ energy**alpha")
    norm_pix_loss: bool = True
    readout: Literal["rows", "mean"] = Field(
        "rows", description="embedding: each stage's tokens averaged over time per token row (frequency), or over all"
    )

    @field_validator(
        "image_size", "patch_kernel", "patch_stride", "patch_padding", "mask_unit_size", "q_stride", "pred_stride",
        mode="before",
    )
    @classmethod
    def _pair(cls, v: Any) -> Any:
        return (v, v) if isinstance(v, int) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _check(self) -> HieraConfig:
        for ax in range(2):
            size, k, s, p = self.image_size[ax], self.patch_kernel[ax], self.patch_stride[ax], self.patch_padding[ax]
            if size % s:
                raise ValueError(f"image_size {self.image_size} is not a multiple of patch_stride {self.patch_stride}")
            if (size + 2 * p - k) // s + 1 != size // s:
                raise ValueError(
                    f"patch_kernel {self.patch_kernel} with patch_padding {self.patch_padding} and patch_stride "
                    f"{self.patch_stride} does not give a {size // s}-token grid on image_size {self.image_size}"
                )
            if (size // s) % self.mask_unit_size[ax]:
                raise ValueError(
                    f"mask_unit_size {self.mask_unit_size} does not tile the {self.token_grid} token grid "
                    f"(image_size {self.image_size} / patch_stride {self.patch_stride})"
                )
            if self.mask_unit_size[ax] % self.q_stride[ax] ** self.q_pool:
                raise ValueError(
                    f"mask_unit_size {self.mask_unit_size} is not divisible by q_stride {self.q_stride} ** "
                    f"q_pool {self.q_pool}"
                )
        if self.n_mask_units < 2:
            raise ValueError(f"mask_unit_size {self.mask_unit_size} leaves fewer than 2 mask units")
        if self.q_pool > len(self.stages) - 1:
            raise ValueError(f"q_pool {self.q_pool} exceeds the {len(self.stages) - 1} stage transitions")
        if self.mask_unit_attn_stages > len(self.stages):
            raise ValueError(f"mask_unit_attn_stages {self.mask_unit_attn_stages} exceeds {len(self.stages)} stages")
        for i, (d, h) in enumerate(zip(self.stage_dims, self.stage_heads)):
            if d % h:
                raise ValueError(f"num_heads: stage {i} has width {d} not divisible by its {h} heads")
        if self.decoder_dim % self.decoder_heads:
            raise ValueError(f"decoder_heads {self.decoder_heads} does not divide decoder_dim {self.decoder_dim}")
        if self.pos_embed == "sincos" and (self.embed_dim % 4 or self.decoder_dim % 4):
            raise ValueError("pos_embed 'sincos' needs embed_dim and decoder_dim divisible by 4")
        final = self.final_stride
        for ax in range(2):
            ps, unit_px = self.pred_patch[ax], self.unit_pixels[ax]
            if unit_px % ps or (final[ax] % ps and ps % final[ax]):
                raise ValueError(
                    f"pred_stride {self.pred_patch} must divide the mask unit ({self.unit_pixels} px) and divide or "
                    f"be a multiple of the final-stage stride {final}"
                )
        n_mask = round(self.mask_ratio * self.n_mask_units)
        if not 1 <= n_mask <= self.n_mask_units - 1:
            raise ValueError(
                f"mask_ratio {self.mask_ratio} masks {n_mask} of {self.n_mask_units} units; "
                f"need 1..{self.n_mask_units - 1}"
            )
        return self

    # ---- presets
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> HieraConfig:
        """A named preset (see :data:`PRESETS`) with optional field overrides."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    # ---- derived sizes
    @property
    def token_grid(self) -> tuple[int, int]:
        """Stage-1 token grid ``(Ht, Wt)``."""
        return (self.image_size[0] // self.patch_stride[0], self.image_size[1] // self.patch_stride[1])

    @property
    def unit_grid(self) -> tuple[int, int]:
        """Mask-unit grid ``(Uh, Uw)``."""
        return (self.token_grid[0] // self.mask_unit_size[0], self.token_grid[1] // self.mask_unit_size[1])

    @property
    def n_mask_units(self) -> int:
        return self.unit_grid[0] * self.unit_grid[1]

    @property
    def unit_pixels(self) -> tuple[int, int]:
        """Pixel size of a mask unit."""
        return (self.mask_unit_size[0] * self.patch_stride[0], self.mask_unit_size[1] * self.patch_stride[1])

    @property
    def final_unit_size(self) -> tuple[int, int]:
        """Tokens per mask unit (h, w) after the ``q_pool`` poolings."""
        return (
            self.mask_unit_size[0] // self.q_stride[0] ** self.q_pool,
            self.mask_unit_size[1] // self.q_stride[1] ** self.q_pool,
        )

    @property
    def final_stride(self) -> tuple[int, int]:
        """Pixels per final-stage token."""
        return (
            self.patch_stride[0] * self.q_stride[0] ** self.q_pool,
            self.patch_stride[1] * self.q_stride[1] ** self.q_pool,
        )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One sample: ``(in_chans, H, W)`` (the spectrogram view's image)."""
        return (self.in_chans, *self.image_size)

    @property
    def tokens_per_sample(self) -> int:
        """Input tokens of one sample: the stage-1 token grid."""
        return self.token_grid[0] * self.token_grid[1]

    @property
    def pred_patch(self) -> tuple[int, int]:
        """Predicted pixel patch ``(ph, pw)`` (``pred_stride``, default the final-stage stride)."""
        return self.pred_stride if self.pred_stride is not None else self.final_stride

    @property
    def decoder_unit_size(self) -> tuple[int, int]:
        """Predicted patches per mask unit ``(dh, dw)``."""
        return (self.unit_pixels[0] // self.pred_patch[0], self.unit_pixels[1] // self.pred_patch[1])

    @property
    def pred_dim(self) -> int:
        """Values per predicted patch, ``ph * pw * C``."""
        return self.pred_patch[0] * self.pred_patch[1] * self.in_chans

    @property
    def stage_dims(self) -> tuple[int, ...]:
        return tuple(self.embed_dim * self.dim_mul**i for i in range(len(self.stages)))

    @property
    def stage_rows(self) -> tuple[int, ...]:
        """Token rows (image rows = frequency) of each stage's output: the stage-1 grid height, divided by
        ``q_stride[0]`` at each of the first ``q_pool`` transitions."""
        h = self.token_grid[0]
        return tuple(h // self.q_stride[0] ** min(i, self.q_pool) for i in range(len(self.stages)))

    @property
    def embedding_dim(self) -> int:
        """``D`` of :meth:`HieraMAE.encode`: ``sum(stage_rows[i] * stage_dims[i])`` (readout ``"rows"``) or
        ``sum(stage_dims)`` (``"mean"``)."""
        if self.readout == "mean":
            return sum(self.stage_dims)
        return sum(r * d for r, d in zip(self.stage_rows, self.stage_dims))

    @property
    def stage_heads(self) -> tuple[int, ...]:
        return tuple(self.num_heads * self.head_mul**i for i in range(len(self.stages)))

    def n_masked(self, mask_ratio: float | None = None) -> int:
        """Masked units per sample: ``round(mask_ratio * U)`` clamped to ``[1, U-1]``."""
        r = self.mask_ratio if mask_ratio is None else mask_ratio
        if not 0.0 < r < 1.0:
            raise ValueError(f"mask_ratio {r} is outside (0, 1)")
        return min(self.n_mask_units - 1, max(1, round(r * self.n_mask_units)))


PRESETS: dict[str, dict[str, Any]] = {
    # CPU tests: 64x64 px -> 16x16 tokens, 4x4-token units -> 16 mask units, final stage 1 token per unit (16 px).
    "tiny": {
        "image_size": 64, "mask_unit_size": 4, "embed_dim": 32, "num_heads": 2, "stages": (1, 1, 2, 1),
        "q_pool": 2, "decoder_dim": 32, "decoder_depth": 1, "decoder_heads": 2,
    },
    # Hiera-B dims (96 -> 768, heads 1 -> 8), MAE decoder 512 x 8.
    "base50m": {
        "embed_dim": 96, "num_heads": 1, "stages": (2, 3, 16, 3), "decoder_dim": 512, "decoder_depth": 8,
        "decoder_heads": 16,
    },
    # Hiera-L dims (144 -> 1152, heads 2 -> 16), MAE decoder 512 x 8.
    "large210m": {
        "embed_dim": 144, "num_heads": 2, "stages": (2, 6, 36, 4), "decoder_dim": 512, "decoder_depth": 8,
        "decoder_heads": 16,
    },
}


# --------------------------------------------------------------------------------------------------------------------
# token layout


def _unroll_perm(levels: int) -> list[int]:
    """Permutation from ``(B, Uh, rh, sh*levels, Uw, rw, sw*levels, C)`` to mask-unit-major order."""
    perm = [0]
    for j in range(levels):  # innermost (finest) pooling window first = outermost in the layout
        perm += [2 + levels - j, 4 + 2 * levels - j]
    return perm + [2, 4 + levels, 1, 3 + levels, 5 + 2 * levels]


def unroll(x: torch.Tensor, unit: tuple[int, int], stride: tuple[int, int], levels: int) -> torch.Tensor:
    """Grid ``(B, Hg, Wg, D)`` -> mask-unit-major ``(B, T, U, D)``.

    ``T = unit[0]*unit[1]`` positions per unit, ``U`` units row-major.  Within a unit, row ``a`` is split as
    ``a = a_0 + s*a_1 + ... + s^(L-1)*a_(L-1) + s^L*r`` (``s`` = ``stride``, ``L`` = ``levels``).  The ``T`` axis is
    ordered ``(a_0,b_0), ..., (a_(L-1),b_(L-1)), (r_h,r_w)``, outermost first.  So ``levels`` successive
    :func:`pool_tokens` calls are max-pools over ``stride`` windows of the grid.
    """
    B, Hg, Wg, D = x.shape
    (mh, mw), (sh, sw) = unit, stride
    rh, rw = mh // sh**levels, mw // sw**levels
    x = x.reshape(B, Hg // mh, rh, *([sh] * levels), Wg // mw, rw, *([sw] * levels), D)
    return x.permute(_unroll_perm(levels)).reshape(B, mh * mw, (Hg // mh) * (Wg // mw), D)


def reroll(x: torch.Tensor, grid: tuple[int, int], unit: tuple[int, int], stride: tuple[int, int], levels: int):
    """Inverse of :func:`unroll`: ``(B, T, U, D)`` -> grid ``(B, Hg, Wg, D)``."""
    B, _, _, D = x.shape
    (Hg, Wg), (mh, mw), (sh, sw) = grid, unit, stride
    rh, rw = mh // sh**levels, mw // sw**levels
    perm = _unroll_perm(levels)
    src_shape = [B, Hg // mh, rh, *([sh] * levels), Wg // mw, rw, *([sw] * levels), D]
    x = x.reshape([src_shape[p] for p in perm])
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return x.permute(inv).reshape(B, Hg, Wg, D)


def pool_tokens(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Max over the outermost ``stride`` positions of a mask-unit-major ``(B, N, D)`` (see :func:`unroll`)."""
    if stride == 1:
        return x
    B, N, D = x.shape
    return x.view(B, stride, N // stride, D).amax(dim=1)


def _row_orders(c: HieraConfig) -> list[torch.Tensor]:
    """Per stage, the positions of its output tokens sorted by token row (stable): ``(T_i,)`` int64.

    The row of each stage-1 token is its grid row carried through :func:`unroll`; a pooling transition keeps the
    largest row of each ``q_stride`` window (:func:`pool_tokens`, the same max the tokens get), whose integer
    quotient by the stride is the pooled token's row.
    """
    ht, wt = c.token_grid
    rows = torch.arange(ht, dtype=torch.float32).view(1, ht, 1, 1).expand(1, ht, wt, 1)
    rows = unroll(rows, c.mask_unit_size, c.q_stride, c.q_pool).flatten(1, 2)  # (1, N, 1)
    q_flat, orders = c.q_stride[0] * c.q_stride[1], []
    for i in range(len(c.stages)):
        if 0 < i <= c.q_pool:
            rows = pool_tokens(rows, q_flat)
        row = rows[0, :, 0].long() // c.q_stride[0] ** min(i, c.q_pool)
        orders.append(torch.argsort(row, stable=True))
    return orders


def _sincos_2d(h: int, w: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding ``(1, h, w, dim)`` (MAE): half the channels encode rows, half columns."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    rows = torch.arange(h, dtype=torch.float32)[:, None] * omega  # (h, quarter)
    cols = torch.arange(w, dtype=torch.float32)[:, None] * omega  # (w, quarter)
    er = torch.cat([rows.sin(), rows.cos()], dim=1)[:, None, :].expand(h, w, 2 * quarter)
    ec = torch.cat([cols.sin(), cols.cos()], dim=1)[None, :, :].expand(h, w, 2 * quarter)
    return torch.cat([er, ec], dim=-1)[None]


# --------------------------------------------------------------------------------------------------------------------
# blocks


class UnitAttention(nn.Module):
    """Multi-head self-attention within mask units (``mask_unit_attn``) or global, with optional query pooling.

    Input ``(B, N, dim)`` is in mask-unit-major layout with ``unit_tokens`` positions per unit.  The number of
    units, ``N // unit_tokens``, is whatever survived masking.  Queries are max-pooled by ``q_stride`` within each
    unit, so the output is ``(B, N // q_stride, dim_out)``.
    """

    def __init__(self, dim: int, dim_out: int, heads: int, q_stride: int = 1, unit_tokens: int = 1,
                 mask_unit_attn: bool = False):
        super().__init__()
        self.heads, self.dim_out, self.q_stride = heads, dim_out, q_stride
        self.unit_tokens, self.mask_unit_attn = unit_tokens, mask_unit_attn
        self.qkv = nn.Linear(dim, 3 * dim_out)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        nw = N // self.unit_tokens if self.mask_unit_attn else 1
        hd = self.dim_out // self.heads
        # (B, T, nw, 3, H, hd) -> (3, B, nw, H, T, hd) -> (3, B*nw, H, T, hd): 4-D for the fused SDPA kernels
        qkv = self.qkv(x).reshape(B, N // nw, nw, 3, self.heads, hd).permute(3, 0, 2, 4, 1, 5)
        q, k, v = qkv.reshape(3, B * nw, self.heads, N // nw, hd).unbind(0)
        if self.q_stride > 1:
            q = q.view(B * nw, self.heads, self.q_stride, -1, hd).amax(dim=2)
        out = F.scaled_dot_product_attention(q, k, v)  # (B*nw, H, Tq, hd)
        tq = out.shape[2]
        out = out.view(B, nw, self.heads, tq, hd).permute(0, 3, 1, 2, 4).reshape(B, tq * nw, self.dim_out)
        return self.proj(out)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class HieraBlock(nn.Module):
    """Pre-norm transformer block.  When the width changes, the block projects the normed input with ``shortcut``
    for the residual.  With ``q_stride > 1`` it pools the residual and the queries (Hiera's stage transition)."""

    def __init__(self, dim: int, dim_out: int, heads: int, mlp_ratio: float, q_stride: int = 1,
                 unit_tokens: int = 1, mask_unit_attn: bool = False):
        super().__init__()
        self.q_stride = q_stride
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.shortcut = nn.Linear(dim, dim_out) if dim != dim_out else None
        self.attn = UnitAttention(dim, dim_out, heads, q_stride, unit_tokens, mask_unit_attn)
        self.norm2 = nn.LayerNorm(dim_out, eps=LN_EPS)
        self.mlp = Mlp(dim_out, int(dim_out * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xn = self.norm1(x)
        if self.shortcut is not None:
            x = self.shortcut(xn)
        x = pool_tokens(x, self.q_stride) + self.attn(xn)
        return x + self.mlp(self.norm2(x))


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------------------------------------
# encoder


class HieraEncoder(nn.Module):
    """Stem, position embedding and Hiera stages.  Its parameters are the "encoder parameters" of the presets."""

    def __init__(self, config: HieraConfig):
        super().__init__()
        self.config = c = config
        self.patch_embed = nn.Conv2d(c.in_chans, c.embed_dim, c.patch_kernel, c.patch_stride, c.patch_padding)
        ht, wt = c.token_grid
        if c.pos_embed == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, ht, wt, c.embed_dim))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        else:
            self.register_buffer("pos_embed", _sincos_2d(ht, wt, c.embed_dim), persistent=False)
        w = self.patch_embed.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)

        q_flat = c.q_stride[0] * c.q_stride[1]
        ends = [sum(c.stages[: i + 1]) - 1 for i in range(len(c.stages))]
        pool_blocks = {e + 1 for e in ends[: c.q_pool]}
        self.fusion_ends = ends[: c.q_pool]  # blocks whose outputs feed the multi-scale fusion
        self.stage_ends = ends
        dim, heads, stage = c.embed_dim, c.num_heads, 0
        unit_tokens = c.mask_unit_size[0] * c.mask_unit_size[1]
        blocks = []
        for i in range(sum(c.stages)):
            dim_out = dim
            mu_attn = stage < c.mask_unit_attn_stages  # lags one block behind the stage switch, like Hiera
            if i - 1 in ends:
                dim_out, heads, stage = dim * c.dim_mul, heads * c.head_mul, stage + 1
            qs = q_flat if i in pool_blocks else 1
            blocks.append(HieraBlock(dim, dim_out, heads, c.mlp_ratio, qs, unit_tokens, mu_attn))
            unit_tokens //= qs
            dim = dim_out
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.blocks.apply(_init_weights)
        self.out_dim = dim
        for i, order in enumerate(_row_orders(c)):
            self.register_buffer(f"row_order_{i}", order, persistent=False)

    def rows_pooled(self, outputs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each stage's output tokens ``(B, T_i, D_i)`` (:meth:`stage_outputs`) averaged over the tokens of each
        token row: ``[(B, stage_rows[i], D_i)]``, row 0 = the image's first row (the lowest frequency of a
        spectrogram view); every row holds the same number of tokens."""
        out = []
        for i, (t, rows) in enumerate(zip(outputs, self.config.stage_rows)):
            order = getattr(self, f"row_order_{i}")
            out.append(t[:, order].view(t.shape[0], rows, -1, t.shape[-1]).mean(dim=2))
        return out

    def pixel_keep(self, mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``(B, U)`` bool mask (True = masked) -> ``(B, 1, H, W)`` 1 at visible pixels, 0 at masked ones."""
        c = self.config
        (uh, uw), (ph, pw) = c.unit_grid, c.unit_pixels
        keep = (~mask).to(dtype).view(mask.shape[0], 1, uh, 1, uw, 1)
        return keep.expand(-1, -1, -1, ph, -1, pw).reshape(mask.shape[0], 1, uh * ph, uw * pw)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, ids_keep: torch.Tensor | None = None,
        return_intermediates: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """``x`` ``(B, C, H, W)`` -> normed final-stage tokens ``(B, Tf*K, D)`` in mask-unit-major layout.

        With ``mask`` ``(B, U)`` (True = masked) and ``ids_keep`` ``(B, K)`` (the visible units, ascending), the
        masked pixels are zeroed before the stem and only the ``K`` visible units are processed.  Otherwise all
        units are processed.  ``return_intermediates`` also returns the (un-normed) outputs of the first ``q_pool``
        stages.
        """
        t, inter = self._run(x, mask, ids_keep, self.fusion_ends if return_intermediates else ())
        return (t, inter) if return_intermediates else t

    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's output tokens on all units, stage 1 first: ``[(B, T_i, stage_dims[i])]``; the last after
        the encoder norm, the others un-normed."""
        t, inter = self._run(x, None, None, self.stage_ends[:-1])
        return [*inter, t]

    def _run(self, x, mask, ids_keep, keep) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Normed final-stage tokens and the (un-normed) outputs of the blocks in ``keep``."""
        c = self.config
        if mask is not None:
            x = x * self.pixel_keep(mask, x.dtype)
        t = self.patch_embed(x).permute(0, 2, 3, 1) + self.pos_embed.to(x.dtype)  # (B, Ht, Wt, D)
        t = unroll(t, c.mask_unit_size, c.q_stride, c.q_pool)  # (B, T, U, D)
        B, T, _, D = t.shape
        if ids_keep is not None:
            t = t.gather(2, ids_keep[:, None, :, None].expand(B, T, ids_keep.shape[1], D))
        t = t.flatten(1, 2)
        kept = []
        for i, blk in enumerate(self.blocks):
            t = blk(t)
            if i in keep:
                kept.append(t)
        return self.norm(t), kept


# --------------------------------------------------------------------------------------------------------------------
# masked autoencoder


class HieraMAE(nn.Module):
    """Hiera masked autoencoder (see the module docstring for the design, target and shapes).

    * ``forward(x, mask_ratio=None, generator=None, mask=None) -> (loss, pred, mask)``
    * ``encode(x) -> (B, D)``: encoder on all units, every stage's tokens pooled over time per token row
      (``readout="rows"``) or over all positions (``"mean"``), standardised and concatenated,
      ``D = config.embedding_dim``.
    * ``sample_mask(x, ...) -> (B, U)`` bool, True = masked.
    * ``target(x) -> (B, U, Td, P)``: the (normalised) prediction target.
    * ``unpatchify(pred) -> (B, C, H, W)``.
    """

    def __init__(self, config: HieraConfig):
        super().__init__()
        self.config = c = config
        self.encoder = HieraEncoder(c)
        cf = self.encoder.out_dim
        q_flat = c.q_stride[0] * c.q_stride[1]
        fuse_in = [q_flat ** (c.q_pool - i) * c.stage_dims[i] for i in range(c.q_pool)] if c.multi_scale_fusion else []
        self.fusion = nn.ModuleList(nn.Linear(n, cf) for n in fuse_in)
        self.decoder_embed = nn.Linear(cf, c.decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(c.decoder_dim))
        hd, wd = c.unit_grid[0] * c.decoder_unit_size[0], c.unit_grid[1] * c.decoder_unit_size[1]
        if c.pos_embed == "learned":
            self.decoder_pos_embed = nn.Parameter(torch.zeros(1, hd, wd, c.decoder_dim))
            nn.init.trunc_normal_(self.decoder_pos_embed, std=0.02)
        else:
            self.register_buffer("decoder_pos_embed", _sincos_2d(hd, wd, c.decoder_dim), persistent=False)
        self.decoder_blocks = nn.ModuleList(
            HieraBlock(c.decoder_dim, c.decoder_dim, c.decoder_heads, c.mlp_ratio) for _ in range(c.decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(c.decoder_dim, eps=LN_EPS)
        self.decoder_pred = nn.Linear(c.decoder_dim, c.pred_dim)
        for m in [self.fusion, self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.decoder_pred]:
            m.apply(_init_weights)
        nn.init.normal_(self.mask_token, std=0.02)

    @staticmethod
    def no_weight_decay() -> set[str]:
        """Names of parameters (position embeddings, mask token) that AdamW should not decay."""
        return {"encoder.pos_embed", "decoder_pos_embed", "mask_token"}

    # ---- inputs, masks, targets
    def _check_input(self, x: torch.Tensor) -> None:
        c = self.config
        if x.dim() != 4 or tuple(x.shape[1:]) != (c.in_chans, *c.image_size):
            raise ValueError(
                f"expected input (B, {c.in_chans}, {c.image_size[0]}, {c.image_size[1]}), got {tuple(x.shape)}"
            )

    def unit_energy(self, x: torch.Tensor) -> torch.Tensor:
        """Mean squared pixel value of each mask unit over all channels: ``(B, C, H, W)`` -> ``(B, U)`` float32."""
        c = self.config
        (uh, uw), (ph, pw) = c.unit_grid, c.unit_pixels
        e = x.detach().float().square().view(x.shape[0], c.in_chans, uh, ph, uw, pw)
        return e.mean(dim=(1, 3, 5)).flatten(1)

    def sample_mask(
        self, x: torch.Tensor, mask_ratio: float | None = None, generator: torch.Generator | None = None,
        mode: Literal["random", "amplitude"] | None = None, alpha: float | None = None,
    ) -> torch.Tensor:
        """Per-sample mask ``(B, U)`` bool, True = masked, with exactly ``config.n_masked(mask_ratio)`` per row.

        ``"random"`` masks the units with the largest of ``U`` uniform draws.  ``"amplitude"`` masks the top-k of
        ``alpha*log(energy) + Gumbel(draw)``, a draw without replacement with P proportional to ``energy**alpha``.
        The uniform draws come from ``generator`` (on its own device) if given, else from the global RNG on
        ``x.device``.
        """
        c = self.config
        mode = c.mask_mode if mode is None else mode
        alpha = c.amplitude_alpha if alpha is None else alpha
        B, U = x.shape[0], c.n_mask_units
        n_mask = c.n_masked(mask_ratio)
        dev = generator.device if generator is not None else x.device
        u = torch.rand(B, U, generator=generator, device=dev).to(x.device)
        if mode == "random":
            score = u
        elif mode == "amplitude":
            u = u.double().clamp(1e-12, 1.0 - 1e-12)
            score = -torch.log(-torch.log(u))  # Gumbel(0, 1): strictly increasing in u
            if alpha != 0:
                score = score + alpha * torch.log(self.unit_energy(x).double() + ENERGY_EPS)
        else:
            raise ValueError(f"mask_mode {mode!r} is not 'random' or 'amplitude'")
        ids = score.topk(n_mask, dim=1).indices
        return torch.zeros(B, U, dtype=torch.bool, device=x.device).scatter(1, ids, True)

    def target(self, x: torch.Tensor) -> torch.Tensor:
        """Prediction target ``(B, U, Td, P)`` float32: pixels of each ``pred_stride`` patch in ``(py, px, c)``
        order, normalised per patch if ``norm_pix_loss``."""
        c = self.config
        B, C = x.shape[:2]
        (ph, pw), (hd, wd) = c.pred_patch, (c.image_size[0] // c.pred_patch[0], c.image_size[1] // c.pred_patch[1])
        t = x.float().reshape(B, C, hd, ph, wd, pw).permute(0, 2, 4, 3, 5, 1).reshape(B, hd, wd, ph * pw * C)
        t = unroll(t, c.decoder_unit_size, (1, 1), 0).transpose(1, 2)  # (B, U, Td, P)
        if c.norm_pix_loss:
            mean, var = t.mean(dim=-1, keepdim=True), t.var(dim=-1, keepdim=True, unbiased=False)
            t = (t - mean) / (var + NORM_PIX_EPS).sqrt()
        return t

    def unpatchify(self, p: torch.Tensor) -> torch.Tensor:
        """``(B, U, Td, P)`` (``pred`` or :meth:`target`) -> image ``(B, C, H, W)``."""
        c = self.config
        B, C = p.shape[0], c.in_chans
        (ph, pw), (hd, wd) = c.pred_patch, (c.image_size[0] // c.pred_patch[0], c.image_size[1] // c.pred_patch[1])
        g = reroll(p.transpose(1, 2), (hd, wd), c.decoder_unit_size, (1, 1), 0)  # (B, hd, wd, P)
        return g.reshape(B, hd, wd, ph, pw, C).permute(0, 5, 1, 3, 2, 4).reshape(B, C, hd * ph, wd * pw)

    def param_groups(self, names: bool = False) -> dict[str, list]:
        """Muon / AdamW split of the parameters (:func:`param_groups`)."""
        return param_groups(self, names=names)

    def encoder_parameters(self) -> int:
        """Parameters of the encoder (stem, position embedding, stages, final norm)."""
        return sum(p.numel() for p in self.encoder.parameters())

    # ---- encoder / decoder
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding ``(B, config.embedding_dim)`` float: the encoder on all units, every stage's output tokens
        (the final stage after the encoder norm) pooled, standardised over their features (a LayerNorm without
        parameters) and concatenated, stage 1 first.

        * readout ``"rows"`` (default): each stage's tokens averaged over time within each token row
          (:meth:`HieraEncoder.rows_pooled`), so a spectrogram view keeps *where in frequency* each feature
          is: ``(B, stage_rows[i], D_i)`` per stage, each row standardised, flattened row-major (low frequency
          first).  ``D = sum(stage_rows[i] * stage_dims[i])``: 2,560 for ``cpu-tiny``.
        * readout ``"mean"``: each stage's tokens averaged over every position, ``D = sum(stage_dims)`` (480).

        Every stage, not the final one alone: a linear probe of these features beat the final stage's in all 7
        runs measured (benchmarks/probe_synthetic.py, docs/benchmarks.md), as features of several blocks do in
        DINO's and iBOT's linear evaluations.  Rows, not one mean: the mean over frequency positions kept a
        probe far below 7 log band powers on every synthetic corpus (kappa 0.77-0.83 against 1.00); the rows
        reach 0.96-0.98, as a random-init encoder's rows do (docs/benchmarks.md, issue #20)."""
        self._check_input(x)
        outputs = self.encoder.stage_outputs(x)
        if self.config.readout == "mean":
            pooled = [t.mean(dim=1) for t in outputs]
        else:
            pooled = self.encoder.rows_pooled(outputs)
        return torch.cat([F.layer_norm(p, p.shape[-1:]).flatten(1) for p in pooled], dim=1)

    def forward_decoder(
        self, latent: torch.Tensor, inter: list[torch.Tensor], ids_restore: torch.Tensor, n_keep: int
    ) -> torch.Tensor:
        """Encoder output of the visible units -> prediction ``(B, U, Td, P)``."""
        c = self.config
        B = latent.shape[0]
        U, tf = c.n_mask_units, c.final_unit_size[0] * c.final_unit_size[1]
        q_flat = c.q_stride[0] * c.q_stride[1]
        for i, (head, t) in enumerate(zip(self.fusion, inter)):
            w = q_flat ** (c.q_pool - i)  # stage i's pooling window, outermost in the layout
            t = t.view(B, w, tf * n_keep, t.shape[-1]).transpose(1, 2).reshape(B, tf * n_keep, -1)
            latent = latent + head(t)
        y = self.decoder_embed(latent)
        dd = y.shape[-1]
        (fh, fw), (dh, dw) = c.final_unit_size, c.decoder_unit_size
        y = y.view(B, fh, fw, n_keep, dd)
        if dh > fh:
            y = y.repeat_interleave(dh // fh, dim=1)
        elif dh < fh:
            y = y.view(B, dh, fh // dh, fw, n_keep, dd).mean(dim=2)
        if dw > fw:
            y = y.repeat_interleave(dw // fw, dim=2)
        elif dw < fw:
            y = y.view(B, dh, dw, fw // dw, n_keep, dd).mean(dim=3)
        td = dh * dw
        y = y.reshape(B, td, n_keep, dd)
        y = torch.cat([y, self.mask_token.to(y.dtype).expand(B, td, U - n_keep, dd)], dim=2)
        y = y.gather(2, ids_restore[:, None, :, None].expand(B, td, U, dd))
        pos = unroll(self.decoder_pos_embed, c.decoder_unit_size, (1, 1), 0)  # (1, Td, U, Dd)
        y = (y + pos.to(y.dtype)).flatten(1, 2)
        for blk in self.decoder_blocks:
            y = blk(y)
        pred = self.decoder_pred(self.decoder_norm(y))
        return pred.view(B, td, U, -1).transpose(1, 2)

    def forward(
        self, x: torch.Tensor, mask_ratio: float | None = None, generator: torch.Generator | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Masked-autoencoding loss.

        ``x``: float ``(B, C, H, W)``.  ``mask_ratio`` defaults to ``config.mask_ratio``.  ``generator`` seeds the
        mask (see :meth:`sample_mask`).  Alternatively, an explicit ``mask`` ``(B, U)`` bool (True = masked, the same
        count in every row) can be given.  Returns ``(loss, pred, mask)``:

        * ``loss``: float32 scalar, the MSE over the masked units' patches.
        * ``pred``: ``(B, U, Td, P)`` for all units.  Only the masked units are trained.
        * ``mask``: ``(B, U)`` bool.
        """
        self._check_input(x)
        if mask is None:
            mask = self.sample_mask(x, mask_ratio, generator)
            n_keep = self.config.n_mask_units - self.config.n_masked(mask_ratio)
        else:
            if mask.shape != (x.shape[0], self.config.n_mask_units) or mask.dtype != torch.bool:
                raise ValueError(
                    f"mask must be bool (B, {self.config.n_mask_units}), got {mask.dtype} {tuple(mask.shape)}"
                )
            kept = (~mask).sum(dim=1)
            n_keep = int(kept[0])
            if bool((kept != n_keep).any()) or not 0 < n_keep < self.config.n_mask_units:
                raise ValueError("mask must hide the same number (1..U-1) of units in every sample")
        ids_shuffle = torch.argsort(mask.to(torch.int8), dim=1, stable=True)  # visible units first, ascending
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :n_keep]
        latent, inter = self.encoder(x, mask, ids_keep, return_intermediates=True)
        pred = self.forward_decoder(latent, inter, ids_restore, n_keep).float()
        per_unit = (pred - self.target(x)).square().mean(dim=(2, 3))  # (B, U)
        m = mask.to(per_unit.dtype)
        loss = (per_unit * m).sum() / m.sum()
        return loss, pred, mask


# --------------------------------------------------------------------------------------------------------------------
# helpers for the training loop


def encoder_parameter_count(config: HieraConfig) -> int:
    """Encoder parameters (stem, position embedding, stages, final norm), counted on the meta device."""
    from ephys.pretrain.arch import encoder_parameters

    return encoder_parameters(config)


def flops_per_sample(
    config: HieraConfig, mask_ratio: float | None = None, backward: bool = False, encoder_only: bool = False
) -> int:
    """FLOPs of one sample, counted by the one counter, :func:`ephys.pretrain.arch.flops_per_sample`.

    A forward pass (plus the backward pass if ``backward``) of a batch of 1 on the meta device.  ``mask_ratio``
    defaults to ``config.mask_ratio``; ``0.0`` counts :meth:`HieraMAE.encode` (all units).  ``encoder_only`` counts
    only the encoder (stem + stages) on the visible units.  Counted ops are matmuls, convolutions and attention (on
    meta, SDPA runs its math path as counted ``bmm`` calls), at 2 FLOPs per multiply-add.  Elementwise ops, norms
    and softmax are not counted.
    """
    from ephys.pretrain.arch import flops_per_sample as count

    def encoder(model: HieraMAE, x: torch.Tensor) -> torch.Tensor:
        n_keep = config.n_mask_units - config.n_masked(mask_ratio)
        mask = model.sample_mask(x, mask_ratio)
        ids_keep = torch.argsort(mask.to(torch.int8), dim=1, stable=True)[:, :n_keep]
        return model.encoder(x, mask, ids_keep).sum()

    return count(config, mask_ratio, backward=backward, run=encoder if encoder_only and mask_ratio != 0.0 else None)


def param_groups(model: HieraMAE, names: bool = False) -> dict[str, list]:
    """Split parameters for Muon + AdamW: ``{"muon": [...], "adamw": [...]}``.

    Muon gets the hidden 2-D weight matrices of the transformer blocks: ``attn.qkv``, ``attn.proj``, ``mlp.fc1``,
    ``mlp.fc2``, and the stage-transition ``shortcut`` projection, in both encoder and decoder blocks.  AdamW gets
    everything else: the stem conv, position embeddings, ``mask_token``, norms, biases, the fusion and
    ``decoder_embed`` input projections, and the ``decoder_pred`` head.  With ``names=True`` the lists hold
    ``(name, parameter)`` pairs.
    """
    muon_ids = {
        id(m.weight) for blk in model.modules() if isinstance(blk, HieraBlock)
        for m in blk.modules() if isinstance(m, nn.Linear)
    }
    groups: dict[str, list] = {"muon": [], "adamw": []}
    for n, p in model.named_parameters():
        groups["muon" if id(p) in muon_ids else "adamw"].append((n, p) if names else p)
    return groups


def _fmt(n: float) -> str:  # pragma: no cover - convenience for ``python -m ephys.pretrain.hiera``
    return f"{n / 1e6:.1f}M" if n < 1e9 else f"{n / 1e9:.2f}G"


if __name__ == "__main__":  # pragma: no cover
    for name in PRESETS:
        cfg = HieraConfig.preset(name)
        print(
            f"{name}: encoder params {_fmt(encoder_parameter_count(cfg))}, "
            f"FLOPs/sample fwd@{cfg.mask_ratio} {_fmt(flops_per_sample(cfg))}, "
            f"fwd+bwd {_fmt(flops_per_sample(cfg, backward=True))}, encode {_fmt(flops_per_sample(cfg, 0.0))}"
        )
