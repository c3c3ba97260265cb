"""A third architecture in one file, for tests/test_arch.py: a linear masked autoencoder over whole channels.

What it must provide is :mod:`ephys.pretrain.arch`'s protocol, nothing else: a config with ``input_shape`` and
``tokens_per_sample``, a model with ``forward``, ``encode``, ``param_groups``, ``no_weight_decay`` and
``encoder_parameters``, and one :func:`~ephys.pretrain.arch.register` call."""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ephys.pretrain.arch import Architecture, register


class ToyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    n_channels: int = Field(ge=1)
    n_samples: int = Field(ge=1)
    dim: int = Field(16, ge=1)

    @property
    def input_shape(self) -> tuple[int, int]:
        return (self.n_channels, self.n_samples)

    @property
    def tokens_per_sample(self) -> int:
        return self.n_channels  # one token per channel


class ToyMAE(nn.Module):
    """Masks whole channels; a linear encoder per channel (µV/100), a linear decoder, MSE on the masked ones."""

    def __init__(self, config: ToyConfig):
        super().__init__()
        self.config = config
        self.enc = nn.Linear(config.n_samples, config.dim)
        self.dec = nn.Linear(config.dim, config.n_samples)

    def forward(self, x, mask_ratio=None, generator=None):
        x = x / 100.0
        b, c, _ = x.shape
        n_mask = max(1, round((0.5 if mask_ratio is None else mask_ratio) * c))
        mask = torch.zeros(b, c, dtype=torch.bool, device=x.device)
        mask[:, torch.randperm(c, generator=generator)[:n_mask].to(x.device)] = True
        z = self.enc(x.masked_fill(mask[..., None], 0.0)).mean(dim=1, keepdim=True)
        pred = self.dec(z).expand_as(x)
        m = mask.to(x.dtype)
        loss = (((pred - x) ** 2).mean(dim=-1) * m).sum() / m.sum()  # no boolean indexing: FLOPs count on meta
        return loss, pred, mask

    def encode(self, x):
        return self.enc(x / 100.0).mean(dim=1)

    def param_groups(self, names: bool = False):
        return {"muon": [], "adamw": [(n, p) if names else p for n, p in self.named_parameters()]}

    @staticmethod
    def no_weight_decay() -> set[str]:
        return set()

    def encoder_parameters(self) -> int:
        return sum(p.numel() for p in self.enc.parameters())


def _config(fields, preset, mask_ratio, n_channels, n_samples, view):
    return ToyConfig(**fields, n_channels=n_channels, n_samples=n_samples)


register(Architecture("toy", ToyConfig, ToyMAE, "raw", _config, sized_by_data=("n_channels", "n_samples")))
