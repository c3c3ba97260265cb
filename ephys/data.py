"""Datasets over ephys manifests for the field's tools (PyTorch, skorch, braindecode-style training loops).

``EpochDataset(manifest)`` is map-style: random access by index, ``(X float32 µV (n_channels, n_samples), y,
meta)``, labels from metadata or a label file, deterministic subject splits stored with the manifest. It lives
in :mod:`ephys.pretrain.dataset` (it knows manifests and shards only, like the rest of pretraining).
"""

from ephys.pretrain.dataset import SPLITS, EpochDataset, splits_path, subject_splits
from ephys.shard.index import shard_index

__all__ = ["SPLITS", "EpochDataset", "shard_index", "splits_path", "subject_splits"]
