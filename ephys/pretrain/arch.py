"""Model architectures behind ``[model] arch``: one protocol, one registry, one FLOP counter.

An architecture is a pydantic config class and an ``nn.Module`` built from it.  The training loop, ``embed``,
``probe``, the sweep and ``run.json`` use only this protocol, never the class:

* the config: ``input_shape`` (one sample as the view gives it: ``(C, H, W)`` image or ``(C, T)`` signal) and
  ``tokens_per_sample`` (input tokens of one sample, for tokens/s);
* the model: ``forward(x, mask_ratio=None, generator=None) -> (loss, pred, mask)``; ``encode(x) -> (B, D)``, the
  frozen embedding ``embed``, ``probe`` and the collapse figures use; ``param_groups(names=False) ->
  {"muon": [...], "adamw": [...]}`` (hidden 2-D weights for Muon, the rest for AdamW); ``no_weight_decay()`` (names
  AdamW must not decay); ``encoder_parameters()`` (int, or None where encoder and decoder are not apart).

An :class:`Architecture` names the two classes, the view kind the model takes and how a ``[model]`` section
becomes a config (``make_config``).  A new architecture is one module defining them plus one :func:`register`
call; the two built in (``hiera``: :mod:`ephys.pretrain.hiera`, ``mae``: :mod:`ephys.pretrain.model`) are
registered at the end of this module.

:func:`flops_per_sample` is the one FLOP counter (``torch.utils.flop_counter.FlopCounterMode`` on the meta device).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["REGISTRY", "Architecture", "arch_of", "build_model", "flops_per_sample", "get", "model_config_from",
           "register"]


@dataclass(frozen=True)
class Architecture:
    """One registered architecture (module docstring).

    ``view``: the ``[view] kind`` the model takes (checked before ``make_config`` is called).
    ``make_config(section_fields, preset, mask_ratio, n_channels, n_samples, view)`` returns the model config for
    epochs ``(n_channels, n_samples)`` seen through ``view``; it raises ``ValueError`` naming the field.
    ``presets``: preset names ``[model] preset`` may give (empty: the architecture has none).
    """

    name: str
    config: type
    model: type
    view: str
    make_config: Callable[..., Any]
    presets: tuple[str, ...] = ()
    #: ``[model]`` fields that come from the manifest and the view, never from the config file.
    sized_by_data: tuple[str, ...] = ()


#: How an error names what a view kind gives the model.
VIEW_INPUTS = {"spectrogram": "images", "raw": "the raw signal"}
#: Architecture name -> :class:`Architecture`.
REGISTRY: dict[str, Architecture] = {}


def register(arch: Architecture) -> Architecture:
    """Add ``arch`` to :data:`REGISTRY` (replacing one of the same name) and return it."""
    REGISTRY[arch.name] = arch
    return arch


def get(name: str) -> Architecture:
    """The architecture called ``name``; ``ValueError`` naming the registered ones otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown arch {name!r}; registered: {sorted(REGISTRY)}") from None


def arch_of(model_config: Any) -> Architecture:
    """The architecture whose config class ``model_config`` is an instance of."""
    for arch in REGISTRY.values():
        if isinstance(model_config, arch.config):
            return arch
    raise ValueError(f"{type(model_config).__name__} is not the config of a registered architecture")


def build_model(model_config: Any) -> nn.Module:
    """The network for a model config (its architecture's model class)."""
    return arch_of(model_config).model(model_config)


def model_config_from(name: str, fields: dict) -> Any:
    """Rebuild a model config saved in a checkpoint (``ValueError`` for an unknown architecture)."""
    return get(name).config(**fields)


def flops_per_sample(model_config: Any, mask_ratio: float | None = None, *, backward: bool = False,
                     run: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None) -> int:
    """FLOPs of one sample, counted by ``FlopCounterMode`` on the meta device (no memory, no compute).

    ``mask_ratio`` > 0 (or None: the config's) counts the training forward ``model(x, mask_ratio)``, plus its
    backward with ``backward``; ``0.0`` counts ``encode`` (the whole input, as ``embed`` runs it); ``run(model,
    x) -> tensor`` counts any other call (e.g. the encoder alone).  Matmuls, convolutions and attention at 2 FLOPs
    per multiply-add; elementwise ops, norms and softmax are not counted.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = build_model(model_config)
    x = torch.zeros(1, *model_config.input_shape, device="meta")
    with FlopCounterMode(display=False) as counter:
        if run is not None:
            out = run(model, x)
        elif mask_ratio == 0.0:
            out = model.encode(x).sum()
        else:
            out = model(x, mask_ratio=mask_ratio)[0]
        if backward:
            out.backward()
    return int(counter.get_total_flops())


def encoder_parameters(model_config: Any) -> int | None:
    """Encoder parameters of a config's model (meta device), or None where the model does not separate them."""
    with torch.device("meta"):
        return build_model(model_config).encoder_parameters()


# ---------------------------------------------------------------------------------------------- the two built in


def _hiera_config(fields: dict, preset: str | None, mask_ratio: float, n_channels: int, n_samples: int, view):
    from ephys.pretrain.hiera import HieraConfig

    return HieraConfig.preset(preset or "base50m", **fields, in_chans=n_channels, image_size=view.image_size,
                              mask_ratio=mask_ratio)


def _mae_config(fields: dict, preset: str | None, mask_ratio: float, n_channels: int, n_samples: int, view):
    from ephys.pretrain.model import MAEConfig

    return MAEConfig(**fields, n_channels=n_channels, n_samples=n_samples)


def _register_builtins() -> None:
    from ephys.pretrain.hiera import PRESETS, HieraConfig, HieraMAE
    from ephys.pretrain.model import MAEConfig, MaskedAutoencoder

    register(Architecture("hiera", HieraConfig, HieraMAE, "spectrogram", _hiera_config, tuple(PRESETS),
                          ("in_chans", "image_size")))
    register(Architecture("mae", MAEConfig, MaskedAutoencoder, "raw", _mae_config, (), ("n_channels", "n_samples")))


_register_builtins()
