"""Masked-autoencoder pretraining on a manifest's epochs.

:func:`pretrain` runs (or resumes) a step-based training run; :func:`make_loader`
streams manifest-selected epochs from the WebDataset shards as float32 µV batches.
"""

from ephys.pretrain.data import make_loader, shard_layout, verify_shards
from ephys.pretrain.model import MAEConfig, MaskedAutoencoder, count_parameters
from ephys.pretrain.train import CheckpointMismatchError, PretrainError, pretrain

__all__ = [
    "CheckpointMismatchError",
    "MAEConfig",
    "MaskedAutoencoder",
    "PretrainError",
    "count_parameters",
    "make_loader",
    "pretrain",
    "shard_layout",
    "verify_shards",
]
