"""Masked-autoencoder pretraining on a manifest's epochs.

:func:`pretrain` runs (or resumes) a step-based training run from a :class:`RunConfig` (TOML, see
:mod:`ephys.pretrain.config`); :func:`make_loader` streams manifest-selected epochs from the WebDataset shards as
float32 µV batches; :mod:`ephys.pretrain.views` turns them into model inputs on the device.  Run
``python -m ephys.pretrain`` (or ``torchrun ... -m ephys.pretrain``) for the command line.
"""

from ephys.pretrain.config import ConfigError, RunConfig, load_config
from ephys.pretrain.data import SampleFilter, make_loader, shard_layout, verify_shards
from ephys.pretrain.hiera import HieraConfig, HieraMAE
from ephys.pretrain.model import MAEConfig, MaskedAutoencoder, count_parameters
from ephys.pretrain.train import CheckpointMismatchError, PretrainError, pretrain, read_checkpoint
from ephys.pretrain.views import ViewConfig, make_view

__all__ = [
    "CheckpointMismatchError",
    "ConfigError",
    "HieraConfig",
    "HieraMAE",
    "MAEConfig",
    "MaskedAutoencoder",
    "PretrainError",
    "RunConfig",
    "SampleFilter",
    "ViewConfig",
    "count_parameters",
    "load_config",
    "make_loader",
    "make_view",
    "pretrain",
    "read_checkpoint",
    "shard_layout",
    "verify_shards",
]
