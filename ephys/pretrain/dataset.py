"""A map-style PyTorch dataset over a manifest: random access to any selected epoch, labels, subject splits.

:class:`EpochDataset` is for the field's tools that index a dataset (braindecode's ``EEGClassifier``, skorch,
``torch.utils.data.DataLoader`` with a sampler, scikit-learn via arrays), where the pretraining loader
(:mod:`ephys.pretrain.data`) streams shards. Random access goes through an index of byte offsets: each shard's
tar headers are read once (no sample data), and ``dataset[i]`` then seeks to the sample's ``.eeg.npy`` and
``.json`` members and reads only them (buffered reads, one open file per shard and process, reopened after a
fork). Shards must be local files (a path or ``file://``); the index lives in memory (about 150 bytes per epoch).

Subject splits (:func:`subject_splits`) are deterministic: subjects are ordered by SHA-256 of
``"{seed}:{subject}"`` and cut by the fractions, so every subject's epochs fall in one split, the same on every
machine. The assignment is stored beside the manifest (``M.json`` -> ``M.splits.json``, with the manifest's
content hash, seed and fractions) and reused while those match, so a split is part of a curated selection
(CBraMod's note on inconsistent splits across papers is why).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ephys.errors import ManifestError
from ephys.schemas.manifest import Manifest
from ephys.shard.index import manifest_shard_indexes

SPLITS = ("train", "validation", "test")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


@dataclass(frozen=True)
class _Entry:
    shard: int
    eeg: tuple[int, int]  # (offset, size) of the .eeg.npy member's data
    meta: tuple[int, int]  # (offset, size) of the .json member's data


def subject_splits(subjects: list[str], fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
                   seed: int = 0) -> dict[str, str]:
    """``{subject: "train" | "validation" | "test"}``: subjects ordered by SHA-256 of ``"{seed}:{subject}"`` and
    cut at the cumulative ``fractions`` of the subject count (rounded; every split with a positive fraction gets
    at least one subject when there are enough). Raises ValueError for fractions that do not sum to 1."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    order = sorted(set(subjects), key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    n = len(order)
    n_val = round(fractions[1] * n) if n >= 3 else 0
    n_test = round(fractions[2] * n) if n >= 3 else 0
    n_val = max(n_val, 1 if fractions[1] > 0 and n >= 3 else 0)
    n_test = max(n_test, 1 if fractions[2] > 0 and n >= 3 else 0)
    n_train = n - n_val - n_test
    return {s: "train" if i < n_train else "validation" if i < n_train + n_val else "test" for i, s in enumerate(order)}


def splits_path(manifest_path: str | Path) -> Path:
    """Where the split assignment of a manifest is stored: ``M.json`` -> ``M.splits.json``."""
    p = Path(manifest_path)
    return p.with_name((p.name[: -len(".json")] if p.name.endswith(".json") else p.name) + ".splits.json")


def _meta_field(meta: dict, path: str) -> Any:
    v: Any = meta
    for part in path.split("."):
        v = v.get(part) if isinstance(v, dict) else None
    return v


class EpochDataset(torch.utils.data.Dataset):
    """The epochs a manifest selects, by index: ``dataset[i] -> (X, y, meta)``.

    ``X``: float32 tensor, µV, ``(n_channels, n_samples)`` (the manifest's channels, 7,500 samples at 250 Hz for
    30-s epochs); ``y``: the label (``label``), or ``-1`` without one; ``meta``: the sample's JSON (subject,
    recording, epoch start, QC, sleep stage, annotations, ...) plus ``key`` and ``split``.

    Parameters
    ----------
    manifest : path
        An ephys manifest (any format version); its shards must be local.
    label : str, optional
        ``"stage"``, ``"category"``, ``"valid"`` (as the probe reads them), or any dotted metadata field
        (``"qc.score"``, ``"subject"``); string labels become class indices in sorted order (``classes``).
    labels : path, optional
        A TSV with columns ``key`` and ``label`` (a site's own clinical labels): overrides ``label``; epochs
        not in it get ``y = -1``.
    split : str, optional
        ``"train"``, ``"validation"`` or ``"test"``: only that split's subjects (:func:`subject_splits`,
        stored beside the manifest).
    fractions, seed :
        Of the split.
    transform : callable, optional
        Applied to ``X`` (a tensor) before it is returned.

    Raises
    ------
    ManifestError
        The manifest does not load, a shard is missing, moved or not a tar, a selected epoch is not in its
        shard, a shard is remote, or ``labels`` does not read. ValueError for an unknown split or bad fractions.
    """

    def __init__(self, manifest: str | Path, label: str | None = None, *, labels: str | Path | None = None,
                 split: str | None = None, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS, seed: int = 0,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
        self.manifest_path = Path(manifest)
        self.manifest = Manifest.load(self.manifest_path)
        self.shape = (len(self.manifest.channel_names), self.manifest.n_samples)
        self.transform, self.label = transform, label
        self._paths: list[Path] = []
        self._files: dict[int, Any] = {}
        self._pid = os.getpid()
        self.keys: list[str] = []
        self._entries: list[_Entry] = []
        for i, path, wanted, index in manifest_shard_indexes(self.manifest, self.manifest_path, "EpochDataset"):
            self._paths.append(path)
            for k in wanted:
                self.keys.append(k)
                self._entries.append(_Entry(i, *index[k]))
        self._metas: list[dict] | None = None
        self.splits: dict[str, str] = {}
        if split is not None:
            self.splits = self._splits(fractions, seed)
            keep = [j for j, m in enumerate(self.metas()) if self.splits.get(str(m.get("subject"))) == split]
            self.keys = [self.keys[j] for j in keep]
            self._entries = [self._entries[j] for j in keep]
            self._metas = [self._metas[j] for j in keep] if self._metas is not None else None
        self.split = split
        self._labels: list[Any] | None = None
        self.classes: list[str] = []
        if labels is not None:
            table = self._read_labels(Path(labels))
            self._set_labels([table.get(k) for k in self.keys])
        elif label is not None:
            self._set_labels(self._labels_of(label))

    # -- metadata, labels, splits -------------------------------------------------------------------------
    def metas(self) -> list[dict]:
        """Every selected epoch's JSON metadata, in dataset order (read once: the ``.json`` members only)."""
        if self._metas is None:
            self._metas = [json.loads(self._read(e.shard, e.meta)) for e in self._entries]
        return self._metas

    def _labels_of(self, label: str) -> list[Any]:
        from ephys.pretrain.evaluate import LABELS, labels_from_meta

        if label in LABELS:
            return labels_from_meta(self.metas(), label)
        return [_meta_field(m, label) for m in self.metas()]

    def _set_labels(self, values: list[Any]) -> None:
        if all(v is None or isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            self._labels = [-1 if v is None else v for v in values]
            return
        self.classes = sorted({str(v) for v in values if v is not None})
        index = {c: i for i, c in enumerate(self.classes)}
        self._labels = [-1 if v is None else index[str(v)] for v in values]

    def _read_labels(self, path: Path) -> dict[str, str]:
        try:
            with open(path, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f, delimiter="\t"))
        except OSError as exc:
            raise ManifestError(f"label file cannot be read ({exc.strerror})", str(path)) from None
        if not rows or not {"key", "label"} <= set(rows[0]):
            raise ManifestError("label file needs a header with the columns key and label (tab-separated)", str(path))
        return {r["key"]: r["label"] for r in rows if r.get("key")}

    def _splits(self, fractions, seed: int) -> dict[str, str]:
        path = splits_path(self.manifest_path)
        want = dict(manifest=self.manifest.content_hash, seed=seed, fractions=list(fractions))
        if path.exists():
            try:
                stored = json.loads(path.read_text())
                if {k: stored.get(k) for k in want} == want:
                    return stored["subjects"]
            except (ValueError, KeyError):
                pass
        subjects = sorted({str(m.get("subject")) for m in self.metas()})
        assignment = subject_splits(subjects, tuple(fractions), seed)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(want | {"subjects": assignment}, indent=1, sort_keys=True))
        tmp.replace(path)
        return assignment

    # -- access --------------------------------------------------------------------------------------------
    def _file(self, shard: int):
        if os.getpid() != self._pid:  # a DataLoader worker: its own handles
            self._files, self._pid = {}, os.getpid()
        f = self._files.get(shard)
        if f is None:
            try:
                f = self._files[shard] = open(self._paths[shard], "rb", buffering=1 << 16)
            except FileNotFoundError:
                raise ManifestError(f"shard {self.manifest.shards[shard].url} disappeared", str(self.manifest_path)) from None
        return f

    def _read(self, shard: int, where: tuple[int, int]) -> bytes:
        f = self._file(shard)
        f.seek(where[0])
        data = f.read(where[1])
        if len(data) != where[1]:
            raise ManifestError(f"shard {self.manifest.shards[shard].url} is shorter than when it was indexed",
                                str(self.manifest_path))
        return data

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Any, dict]:
        e = self._entries[i]
        arr = np.load(io.BytesIO(self._read(e.shard, e.eeg)), allow_pickle=False)
        if arr.shape != self.shape:
            raise ManifestError(f"epoch {self.keys[i]} has shape {arr.shape}, the manifest says {self.shape}",
                                str(self.manifest_path))
        x = torch.from_numpy(arr.astype(np.float32))
        if self.transform is not None:
            x = self.transform(x)
        meta = self._metas[i] if self._metas is not None else json.loads(self._read(e.shard, e.meta))
        meta = dict(meta, key=self.keys[i], split=self.splits.get(str(meta.get("subject"))) if self.splits else None)
        y = self._labels[i] if self._labels is not None else -1
        return x, y, meta

    def pairs(self) -> torch.utils.data.Dataset:
        """The same epochs as ``(X, y)`` pairs, for tools that expect two items (skorch, braindecode's
        ``EEGClassifier``)."""
        return _Pairs(self)

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files = {}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_files"] = {}
        return state


class _Pairs(torch.utils.data.Dataset):
    def __init__(self, ds: EpochDataset):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        x, y, _ = self.ds[i]
        return x, y
