"""A small masked autoencoder (MAE) for multichannel EEG epochs, in plain torch.

Tokens are 1-s patches of single channels: an epoch ``(C, T)`` sampled at
250 Hz becomes ``C * T/250`` tokens of 250 samples.  The encoder sees only the
visible tokens; a light decoder fills in mask tokens and predicts the masked
patches, each normalised to zero mean and unit variance (MAE's ``norm_pix``).
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

INPUT_SCALE_UV = 100.0  # inputs are fed to the network as µV / 100 (typical EEG: O(0.1-1))
TARGET_EPS = 1e-6  # added to each patch's variance when normalising targets


class MAEConfig(BaseModel):
    """Sizes of a :class:`MaskedAutoencoder`.

    ``n_channels`` x ``n_samples`` is the input epoch (samples at 250 Hz, so
    7500 = 30 s); ``patch_size`` samples per token (250 = 1 s).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_channels: int = Field(ge=1)
    n_samples: int = Field(7500, ge=1, description="time samples per epoch")
    patch_size: int = Field(250, ge=1, description="time samples per token")
    dim: int = Field(64, ge=1, description="encoder width")
    depth: int = Field(2, ge=1, description="encoder layers")
    heads: int = Field(4, ge=1)
    decoder_dim: int = Field(32, ge=1)
    decoder_depth: int = Field(1, ge=1)
    decoder_heads: int = Field(4, ge=1)
    mlp_ratio: int = Field(4, ge=1, description="feed-forward width / model width")

    @model_validator(mode="after")
    def _check(self) -> MAEConfig:
        if self.n_samples % self.patch_size:
            raise ValueError(f"n_samples {self.n_samples} is not a multiple of patch_size {self.patch_size}")
        if self.dim % self.heads or self.decoder_dim % self.decoder_heads:
            raise ValueError("dim and decoder_dim must be multiples of heads and decoder_heads")
        return self

    @property
    def n_patches(self) -> int:
        """Tokens per channel."""
        return self.n_samples // self.patch_size

    @property
    def n_tokens(self) -> int:
        return self.n_channels * self.n_patches

    @property
    def input_shape(self) -> tuple[int, int]:
        """One sample: ``(n_channels, n_samples)`` µV (the raw view)."""
        return (self.n_channels, self.n_samples)

    @property
    def tokens_per_sample(self) -> int:
        """Input tokens of one sample: channels x 1-s patches."""
        return self.n_tokens


def _transformer(dim: int, depth: int, heads: int, mlp_ratio: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        dim, heads, dim_feedforward=dim * mlp_ratio, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) scalar parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class MaskedAutoencoder(nn.Module):
    """MAE over channel x time patches.

    ``forward(x)`` takes ``x``: float32 ``(B, C, T)`` in µV and returns
    ``(loss, pred, mask)``: the scalar MSE over masked patches of the
    per-patch-normalised signal, predictions ``(B, N, patch_size)`` for all
    ``N = C * T/patch_size`` tokens (normalised units, channel-major order:
    token ``c * n_patches + p`` is channel ``c``, second ``p``), and ``mask``
    ``(B, N)`` float, 1 where the token was hidden from the encoder.
    """

    def __init__(self, config: MAEConfig):
        super().__init__()
        self.config = c = config
        self.patch_embed = nn.Linear(c.patch_size, c.dim)
        self.time_embed = nn.Parameter(torch.zeros(c.n_patches, c.dim))
        self.channel_embed = nn.Parameter(torch.zeros(c.n_channels, c.dim))
        self.encoder = _transformer(c.dim, c.depth, c.heads, c.mlp_ratio)
        self.encoder_norm = nn.LayerNorm(c.dim)

        self.decoder_embed = nn.Linear(c.dim, c.decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(c.decoder_dim))
        self.decoder_time_embed = nn.Parameter(torch.zeros(c.n_patches, c.decoder_dim))
        self.decoder_channel_embed = nn.Parameter(torch.zeros(c.n_channels, c.decoder_dim))
        self.decoder = _transformer(c.decoder_dim, c.decoder_depth, c.decoder_heads, c.mlp_ratio)
        self.decoder_norm = nn.LayerNorm(c.decoder_dim)
        self.head = nn.Linear(c.decoder_dim, c.patch_size)
        for name in sorted(self.no_weight_decay()):  # sorted: set order varies with PYTHONHASHSEED
            nn.init.normal_(getattr(self, name), std=0.02)

    @staticmethod
    def no_weight_decay() -> set[str]:
        """Names of parameters (embeddings, mask token) that AdamW should not decay."""
        return {"time_embed", "channel_embed", "mask_token", "decoder_time_embed", "decoder_channel_embed"}

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T)`` µV -> ``(B, C * T/patch_size, patch_size)`` in µV/100."""
        c = self.config
        if x.shape[1:] != (c.n_channels, c.n_samples):
            raise ValueError(f"expected input (B, {c.n_channels}, {c.n_samples}), got {tuple(x.shape)}")
        return (x / INPUT_SCALE_UV).reshape(x.shape[0], c.n_tokens, c.patch_size)

    @staticmethod
    def _positions(time: torch.Tensor, channel: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` embedding of every token, channel-major."""
        return (channel[:, None, :] + time[None, :, :]).flatten(0, 1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder features of all tokens, no masking: ``(B, C, T)`` µV -> ``(B, N, dim)``."""
        tokens = self.patch_embed(self.patchify(x)) + self._positions(self.time_embed, self.channel_embed)
        return self.encoder_norm(self.encoder(tokens))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen embedding ``(B, dim)``: :meth:`embed`'s token features, mean-pooled."""
        return self.embed(x).mean(dim=1)

    def param_groups(self, names: bool = False) -> dict[str, list]:
        """``{"muon": [...], "adamw": [...]}``: the 2-D weights inside the transformer layers for Muon, the rest for
        AdamW (``(name, parameter)`` pairs with ``names``)."""
        groups: dict[str, list] = {"muon": [], "adamw": []}
        for name, p in self.named_parameters():
            groups["muon" if p.ndim == 2 and ".layers." in name else "adamw"].append((name, p) if names else p)
        return groups

    @staticmethod
    def encoder_parameters() -> None:
        """None: this model's run.json reports no separate encoder count."""
        return None

    def forward(
        self, x: torch.Tensor, mask_ratio: float = 0.6, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mask ``mask_ratio`` of the tokens at random (drawn from ``generator``, a CPU generator, if given)."""
        patches = self.patchify(x)
        B, N, _ = patches.shape
        n_keep = min(N - 1, max(1, round(N * (1.0 - mask_ratio))))

        # random masking: per sample, keep the n_keep tokens with the smallest noise
        noise = torch.rand(B, N, generator=generator).to(x.device)
        ids_shuffle = noise.argsort(dim=1)
        ids_restore = ids_shuffle.argsort(dim=1)
        ids_keep = ids_shuffle[:, :n_keep]
        mask = torch.ones(B, N, device=x.device)
        mask[:, :n_keep] = 0
        mask = mask.gather(1, ids_restore)

        # encoder: visible tokens only
        tokens = self.patch_embed(patches) + self._positions(self.time_embed, self.channel_embed)
        visible = tokens.gather(1, ids_keep[..., None].expand(-1, -1, tokens.shape[-1]))
        latent = self.encoder_norm(self.encoder(visible))

        # decoder: visible latents + mask tokens, back in token order
        y = self.decoder_embed(latent)
        y = torch.cat([y, self.mask_token.to(y.dtype).expand(B, N - n_keep, -1)], dim=1)
        y = y.gather(1, ids_restore[..., None].expand(-1, -1, y.shape[-1]))
        y = y + self._positions(self.decoder_time_embed, self.decoder_channel_embed)
        pred = self.head(self.decoder_norm(self.decoder(y))).float()

        # loss on masked patches, each target normalised to zero mean / unit variance
        mean = patches.mean(dim=-1, keepdim=True)
        var = patches.var(dim=-1, keepdim=True)
        target = (patches - mean) / (var + TARGET_EPS).sqrt()
        per_token = ((pred - target) ** 2).mean(dim=-1)
        loss = (per_token * mask).sum() / mask.sum()
        return loss, pred, mask
