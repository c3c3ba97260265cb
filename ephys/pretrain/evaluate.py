"""Frozen-encoder evaluation of a pretraining checkpoint: per-epoch embeddings and linear probes.

:func:`embed` runs the encoder of a checkpoint (:mod:`ephys.pretrain.train`) over every epoch a manifest selects,
in manifest order, and returns one vector per epoch; :func:`write_embeddings` stores them as ``.npy`` plus a JSON
sidecar.  :func:`probe` fits a linear probe (scikit-learn logistic regression) on a label read from each epoch's
metadata, with train and test epochs from disjoint subjects, and scores it against the same probe on a randomly
initialised encoder of the same architecture: the gain over that baseline is what pretraining learned.

Labels come from the ``json`` member of each shard sample (:class:`~ephys.schemas.epoch.EpochMeta`, the
catalog's copy of its figures), never from the catalog itself (``ephys.pretrain`` does not import the catalog):

* ``"stage"``: ``sleep.stage`` (W, N1, N2, N3, REM); unstaged epochs are unlabelled and left out;
* ``"category"``: the category of the first non-negated annotation of the epoch, ``"none"`` without one;
* ``"valid"``: the QC verdict ``qc.valid`` as ``"True"`` / ``"False"``.

Embeddings
----------
``hiera``: :meth:`~ephys.pretrain.hiera.HieraMAE.encode` of the spectrogram image, every stage's tokens averaged
over time per token row (frequency), standardised and concatenated, ``D = HieraConfig.embedding_dim`` (``cpu-tiny``
2,560; 480 with ``readout = "mean"``).  ``mae``:
:meth:`~ephys.pretrain.model.MaskedAutoencoder.embed` of the raw epoch (all tokens visible), mean over the
``C * T / patch_size`` tokens, ``D = dim``.  Both in eval mode without masking, under ``torch.no_grad``; float32 on
the CPU, bf16 autocast on CUDA (the view itself is always computed in float32).

scikit-learn (a dependency of ephys) is imported by :func:`probe` only.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import tarfile
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ephys.errors import ManifestError
from ephys.pretrain.data import _decode_eeg, shard_layout, verify_shards
from ephys.pretrain.train import (CheckpointMismatchError, PretrainError, atomic_write, build_model, pooled_embedding,
                                  read_checkpoint)
from ephys.pretrain.views import View, ViewConfig, make_view
from ephys.schemas.manifest import Manifest
from ephys.shard.reader import EEG_MEMBER, META_MEMBER, iter_samples, open_shard

__all__ = [
    "EMBEDDINGS_FORMAT",
    "LABELS",
    "EmbeddingResult",
    "ProbeResult",
    "ProbeScores",
    "embed",
    "iter_manifest_epochs",
    "labels_from_meta",
    "probe",
    "read_embeddings",
    "sidecar_path",
    "write_embeddings",
]

log = logging.getLogger(__name__)

EMBEDDINGS_FORMAT = "ephys-embeddings/1"
LABELS = ("stage", "category", "valid")
SKLEARN_MISSING = "ephys probe needs scikit-learn, a dependency of ephys: reinstall ephys (pip install -e .)"


# ------------------------------------------------------------------------------------------------------- reading


def iter_manifest_epochs(manifest: Manifest, manifest_path: str | Path,
                         skipped: Counter | None = None) -> Iterator[tuple[str, dict, np.ndarray]]:
    """Every epoch the manifest selects, once, in manifest order: ``(key, meta, eeg)``.

    Shards are read in manifest order, each streamed once as a tar file (no resampling, no shuffling), so the
    epochs come in the order of the manifest's key lists (which list keys in shard order).  ``meta`` is the
    sample's parsed ``json`` member (an :class:`~ephys.schemas.epoch.EpochMeta` as a dict); ``eeg`` is a float32
    array ``(n_channels, n_samples)`` in µV (a fresh copy).

    Bad samples are skipped with a warning naming the key and shard, and counted by reason in ``skipped`` when
    given: ``"bad metadata"`` (``json`` missing or not JSON), ``"no eeg.npy member"``, ``"undecodable eeg.npy"``,
    ``"wrong shape"``, ``"non-finite values"`` and ``"missing from shard"`` (a selected key the shard lacks).
    Call :func:`~ephys.pretrain.data.verify_shards` first to know the shards are the manifest's.

    Raises
    ------
    ManifestError
        Naming the shard that is missing or cannot be read as a tar file.
    """
    skipped = Counter() if skipped is None else skipped
    shape = (len(manifest.channel_names), manifest.n_samples)

    def skip(key: str, url: str, reason: str) -> None:
        skipped[reason] += 1
        log.warning("skipping sample %s in %s: %s", key, url, reason)

    def finish(key: str, members: dict[str, bytes], url: str):
        try:
            meta = json.loads(members[META_MEMBER])
            if not isinstance(meta, dict):
                raise ValueError("not an object")
        except (KeyError, ValueError):
            skip(key, url, "bad metadata")
            return None
        arr, reason = _decode_eeg(members.get(EEG_MEMBER), shape)
        if arr is None:
            skip(key, url, reason)
            return None
        return key, meta, arr.astype(np.float32)

    for shard, url in zip(manifest.shards, manifest.resolve_urls(manifest_path)):
        wanted = set(shard.keys)
        if not wanted:
            continue
        seen: set[str] = set()
        for key, members in _shard_samples(url, wanted):
            if key in seen:  # a stray later member of a sample already read
                continue
            seen.add(key)
            if (item := finish(key, members, url)) is not None:
                yield item
        for key in shard.keys:
            if key not in seen:
                skip(key, url, "missing from shard")


def _shard_samples(url: str, keys: set[str], read=None) -> Iterator[tuple[str, dict]]:
    """:func:`ephys.shard.reader.iter_samples` of one shard, errors as :class:`ManifestError` naming it."""
    try:
        with open_shard(url) as f:
            yield from iter_samples(f, keys, read)
    except FileNotFoundError:
        raise ManifestError("shard is missing", url) from None
    except (OSError, tarfile.TarError) as exc:
        raise ManifestError(f"shard cannot be read as a tar file ({exc})", url) from None


def _iter_metas(manifest: Manifest, manifest_path: str | Path) -> Iterator[tuple[str, dict]]:
    """``(key, meta)`` of the selected samples with readable metadata, manifest order; silent on bad samples.

    Local shards are opened seekable, so the ``eeg.npy`` payloads are skipped, not read.
    """
    for shard, url in zip(manifest.shards, manifest.resolve_urls(manifest_path)):
        wanted = set(shard.keys)
        if not wanted:
            continue
        for key, members in _shard_samples(url, wanted, read=(META_MEMBER,)):
            if members.get(META_MEMBER) is None:
                continue
            try:
                meta = json.loads(members[META_MEMBER])
            except ValueError:
                continue
            if isinstance(meta, dict):
                yield key, meta


# ----------------------------------------------------------------------------------------------------- embedding


@dataclass
class EmbeddingResult:
    """Frozen-encoder embeddings of a manifest's epochs.

    ``embeddings``: float32 ``(N, D)``, row ``i`` the epoch ``keys[i]`` (manifest order) with metadata
    ``metas[i]`` (parsed :class:`~ephys.schemas.epoch.EpochMeta`; holds pseudonymous subject ids, not written by
    :func:`write_embeddings`).  ``n_skipped`` bad samples were left out (``skipped``: counts by reason).
    """

    keys: list[str]
    embeddings: np.ndarray
    metas: list[dict]
    n_skipped: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    checkpoint: str = ""
    step: int = 0
    arch: str = ""
    random_init: bool = False
    seed: int = 0
    manifest: str = ""
    manifest_hash: str = ""

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])


class _Encoder:
    """A checkpoint's model, checked against a manifest, with the view it was trained with."""

    def __init__(self, checkpoint_path: str | Path, manifest_path: str | Path, device: str | None):
        self.checkpoint_path, self.manifest_path = Path(checkpoint_path), Path(manifest_path)
        try:
            self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        except RuntimeError as exc:
            raise PretrainError(f"unknown device {device!r} ({exc})") from None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise PretrainError(f"device {device!r} asked for, but CUDA is not available")
        ckpt = read_checkpoint(self.checkpoint_path)
        self.view_config = _view_config(ckpt, self.checkpoint_path)
        self.manifest = Manifest.load(self.manifest_path)
        verify_shards(self.manifest, self.manifest_path)
        n_channels, n_samples = shard_layout(self.manifest, self.manifest_path)
        self.ckpt, self.model_config = ckpt, ckpt["model_config"]
        self.arch = ckpt["arch"]
        _check_fit(self.model_config, self.view_config, self.manifest, n_channels, n_samples, self.checkpoint_path,
                   self.manifest_path)
        _check_trained_layout(ckpt, self.checkpoint_path, self.manifest, self.manifest_path)
        try:
            self.view: View = make_view(self.view_config, self.manifest.sfreq, n_samples)
        except ValueError as exc:
            raise CheckpointMismatchError(
                f"the checkpoint's view does not fit the manifest's epochs ({n_samples} samples at "
                f"{self.manifest.sfreq:g} Hz): {exc}", str(self.checkpoint_path)) from None
        self.view = self.view.to(self.device)
        if self.view_config.within(self.manifest.lowpass_hz) != self.view_config:
            log.warning("the manifest's recordings hold no signal above %g Hz, but the checkpoint's view reaches "
                        "%g Hz: their images differ from the training images in rows left empty",
                        self.manifest.lowpass_hz, self.view_config.freq_max_hz)

    def model(self, random_init: bool, seed: int) -> nn.Module:
        """The checkpoint's network (trained weights) or the same architecture with seeded random weights."""
        with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG as it was
            torch.manual_seed(seed)
            model = build_model(self.model_config)
        if not random_init:
            try:
                model.load_state_dict(self.ckpt["model"])
            except (KeyError, RuntimeError) as exc:
                raise CheckpointMismatchError(
                    f"the checkpoint's weights do not fit its model config ({str(exc).splitlines()[0]})",
                    str(self.checkpoint_path)) from None
        return model.to(self.device).eval()

    @torch.no_grad()
    def _encode(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        inputs = self.view(x)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            out = pooled_embedding(model, inputs)
        return out.float().cpu()

    def run(self, models: list[nn.Module], batch_size: int, keep=lambda meta: meta, progress: bool = False,
            raw_features=()) -> tuple[list[str], list[dict], list[np.ndarray], Counter]:
        """Stream the manifest once through every model: keys, ``keep(meta)`` of each epoch, one ``(N, D)``
        float32 array per model, then one per function of ``raw_features`` (each maps a batch of epochs
        ``(B, C, T)`` µV to ``(B, F)``). ``progress``: a bar on a terminal, log lines otherwise (:mod:`ephys.progress`)."""
        from ephys.progress import Progress

        shown = Progress("embed", self.manifest.counts.get("epochs"), "epochs", enabled=progress)
        keys: list[str] = []
        metas: list[dict] = []
        outs: list[list[torch.Tensor]] = [[] for _ in [*models, *raw_features]]
        skipped: Counter = Counter()
        batch: list[np.ndarray] = []

        def flush() -> None:
            raw = np.stack(batch)
            x = torch.from_numpy(raw).to(self.device)
            for model, out in zip(models, outs):
                out.append(self._encode(model, x))
            for fn, out in zip(raw_features, outs[len(models):]):
                out.append(torch.from_numpy(np.asarray(fn(raw), np.float32)))
            shown.advance(len(batch))
            batch.clear()

        with shown:
            for key, meta, eeg in iter_manifest_epochs(self.manifest, self.manifest_path, skipped):
                keys.append(key)
                metas.append(keep(meta))
                batch.append(eeg)
                if len(batch) == batch_size:
                    flush()
            if batch:
                flush()
        if not keys:
            raise ManifestError("no selected epoch could be read", str(self.manifest_path))
        arrays = [torch.cat(out).numpy().astype(np.float32, copy=False) for out in outs]
        return keys, metas, arrays, skipped

    def result(self, keys, metas, array, skipped, random_init: bool, seed: int) -> EmbeddingResult:
        return EmbeddingResult(
            keys=keys, embeddings=array, metas=metas, n_skipped=sum(skipped.values()), skipped=dict(skipped),
            checkpoint=str(self.checkpoint_path), step=int(self.ckpt.get("step", 0)), arch=self.arch,
            random_init=random_init, seed=seed, manifest=str(self.manifest_path),
            manifest_hash=self.manifest.content_hash)


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise PretrainError(f"batch size must be a positive integer, got {batch_size!r}")


def _view_config(ckpt: dict, path: Path) -> ViewConfig:
    try:
        return ViewConfig.model_validate(ckpt["config"]["view"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PretrainError(f"checkpoint has no valid view config ({exc.__class__.__name__})", str(path)) from None


def _check_fit(model_config, view_config: ViewConfig, manifest: Manifest, n_channels: int, n_samples: int,
               checkpoint_path: Path, manifest_path: Path) -> None:
    """Raise :class:`CheckpointMismatchError` unless the model takes what the view makes of the manifest's epochs."""
    takes = tuple(model_config.input_shape)
    gives = view_config.input_shape(n_channels, n_samples)
    if tuple(takes) != tuple(gives):
        raise CheckpointMismatchError(
            f"the checkpoint's model takes inputs {tuple(takes)}, but the epochs (channels, samples) "
            f"{(n_channels, n_samples)} of manifest {manifest_path} give {tuple(gives)} through its "
            f"{view_config.kind} view", str(checkpoint_path))


def _check_trained_layout(ckpt: dict, checkpoint_path: Path, manifest: Manifest, manifest_path: Path) -> None:
    """Refuse a manifest of another sampling rate or channel list than the checkpoint's training data."""
    sfreq, channels = float(ckpt["data"]["sfreq"]), list(ckpt["data"]["channel_names"])
    if not math.isclose(sfreq, manifest.sfreq):
        raise CheckpointMismatchError(
            f"the checkpoint was trained on epochs at {sfreq:g} Hz, manifest {manifest_path} has "
            f"{manifest.sfreq:g} Hz", str(checkpoint_path))
    if channels != manifest.channel_names:
        raise CheckpointMismatchError(
            f"the checkpoint was trained on channels {channels}, manifest {manifest_path} has "
            f"{manifest.channel_names}", str(checkpoint_path))


def embed(checkpoint_path: str | Path, manifest_path: str | Path, *, batch_size: int = 64,
          device: str | None = None, random_init: bool = False, seed: int = 0,
          progress: bool = False) -> EmbeddingResult:
    """Frozen-encoder embeddings of every epoch a manifest selects, in manifest order.

    The manifest is loaded and its shards verified (SHA-256) and measured; the checkpoint's model must take what
    its view makes of the manifest's epochs (channel count; samples for ``mae``; image size for ``hiera``), and
    the view must fit the epochs' sampling rate and length, and the manifest must have the sampling rate and channel
    names the model was trained on (recorded in the checkpoint).

    ``random_init=True`` gives the baseline: the same architecture with random weights drawn after
    ``torch.manual_seed(seed)``, as :func:`~ephys.pretrain.pretrain` initialises with ``run.seed`` (so ``seed``
    equal to the run's seed gives the run's own initial weights).  The caller's global RNG state is kept.  ``progress`` shows a bar on a terminal, log lines
    otherwise (:class:`ephys.progress.Progress`; counts only).

    ``device``: a torch device string; default ``cuda`` if available, else ``cpu``.  Epochs go through in batches
    of ``batch_size``; results do not depend on it beyond float rounding.

    Returns an :class:`EmbeddingResult`: ``embeddings`` float32 ``(N, D)`` (``N`` = readable selected epochs,
    ``D`` = encoder width), ``keys``, ``metas``, ``n_skipped``.  Deterministic on the CPU.

    Raises
    ------
    ManifestError
        Manifest missing, edited or invalid; a shard missing, changed or unreadable; mixed layouts; no readable
        selected epoch.
    PretrainError
        Checkpoint missing, unreadable or of another format; bad ``batch_size`` or ``device``.
    CheckpointMismatchError
        The checkpoint's model or view does not fit the manifest's epochs (the message names both shapes).
    """
    _check_batch_size(batch_size)
    enc = _Encoder(checkpoint_path, manifest_path, device)
    keys, metas, (array,), skipped = enc.run([enc.model(random_init, seed)], batch_size, progress=progress)
    return enc.result(keys, metas, array, skipped, random_init, seed)


# ------------------------------------------------------------------------------------------------------ files


def sidecar_path(out_path: str | Path) -> Path:
    """The JSON sidecar of an embeddings file: ``emb.npy`` -> ``emb.keys.json``."""
    out_path = Path(out_path)
    stem = out_path.name[: -len(".npy")] if out_path.name.endswith(".npy") else out_path.name
    return out_path.with_name(stem + ".keys.json")


def _write_file(path: Path, data: bytes) -> None:
    try:
        atomic_write(path, lambda f: f.write(data))
    except OSError as exc:
        raise PretrainError(f"cannot write ({exc.strerror or exc})", str(path)) from None


def write_embeddings(result: EmbeddingResult, out_path: str | Path) -> tuple[Path, Path]:
    """Write ``out_path`` (``.npy``, float32 ``(N, D)``) and its sidecar :func:`sidecar_path`; return both paths.

    Each file is written atomically (temporary file, fsync, rename); the array first.  The sidecar is JSON:

    * ``format``: ``"ephys-embeddings/1"``; ``n``, ``dim``, ``dtype`` (``"float32"``);
    * ``keys``: the epoch key of each row, in row order (manifest order);
    * ``checkpoint`` (path as given), ``step``, ``arch``, ``random_init``, ``seed``;
    * ``manifest`` (path as given), ``manifest_hash`` (its content hash);
    * ``n_skipped``, ``skipped`` (bad samples by reason);
    * ``embeddings_sha256``: SHA-256 of the ``.npy`` file's bytes, pairing the two files.

    No metadata beyond the keys is written (subject ids stay out).

    Raises
    ------
    PretrainError
        The folder does not exist or a file cannot be written.
    """
    out_path = Path(out_path)
    if not out_path.parent.is_dir():
        raise PretrainError("output folder does not exist", str(out_path.parent))
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(result.embeddings, dtype=np.float32), allow_pickle=False)
    data = buf.getvalue()
    side = dict(
        format=EMBEDDINGS_FORMAT, n=len(result.keys), dim=result.dim, dtype="float32", keys=result.keys,
        checkpoint=result.checkpoint, step=result.step, arch=result.arch, random_init=result.random_init,
        seed=result.seed, manifest=result.manifest, manifest_hash=result.manifest_hash, n_skipped=result.n_skipped,
        skipped=result.skipped, embeddings_sha256=hashlib.sha256(data).hexdigest(),
    )
    _write_file(out_path, data)
    side_path = sidecar_path(out_path)
    _write_file(side_path, json.dumps(side, indent=1).encode())
    return out_path, side_path


def read_embeddings(path: str | Path) -> tuple[np.ndarray, dict]:
    """Read what :func:`write_embeddings` wrote: the float32 ``(N, D)`` array and the sidecar dict.

    Raises
    ------
    PretrainError
        Either file missing or unreadable, or the sidecar not of this array (format, hash, or row count).
    """
    path = Path(path)
    side_path = sidecar_path(path)
    try:
        data = path.read_bytes()
        side = json.loads(side_path.read_text())
    except FileNotFoundError as exc:
        raise PretrainError("no such file", exc.filename) from None
    except (OSError, ValueError) as exc:
        raise PretrainError(f"embeddings cannot be read ({exc.__class__.__name__})", str(path)) from None
    if not isinstance(side, dict) or side.get("format") != EMBEDDINGS_FORMAT:
        raise PretrainError(f"not an embeddings sidecar of format {EMBEDDINGS_FORMAT}", str(side_path))
    if side.get("embeddings_sha256") != hashlib.sha256(data).hexdigest():
        raise PretrainError(f"the sidecar belongs to another array than {path.name}", str(side_path))
    array = np.load(io.BytesIO(data), allow_pickle=False)
    if array.ndim != 2 or array.shape[0] != len(side.get("keys", ())):
        raise PretrainError(f"array of shape {array.shape} does not match the sidecar's keys", str(path))
    return array, side


# ------------------------------------------------------------------------------------------------------- labels


def labels_from_meta(metas: list[dict], label: str) -> list[str | None]:
    """The ``label`` of each epoch's metadata, as strings; ``None`` marks an unlabelled epoch.

    * ``"stage"``: ``sleep.stage``; ``None`` when not staged;
    * ``"category"``: the ``category`` of the first annotation that has one and is not negated; ``"none"`` when
      no annotation qualifies;
    * ``"valid"``: ``str(qc.valid)``, ``"True"`` or ``"False"``; ``None`` without a QC verdict.

    Raises
    ------
    PretrainError
        ``label`` is not one of :data:`LABELS`.
    """
    if label not in LABELS:
        raise PretrainError(f"unknown label {label!r}; choose from {', '.join(LABELS)}")
    out: list[str | None] = []
    for meta in metas:
        if label == "stage":
            stage = (meta.get("sleep") or {}).get("stage")
            out.append(None if stage is None else str(stage))
        elif label == "category":
            cats = [a.get("category") for a in meta.get("annotations") or ()
                    if isinstance(a, dict) and a.get("category") and not a.get("negated")]
            out.append(str(cats[0]) if cats else "none")
        else:
            valid = (meta.get("qc") or {}).get("valid")
            out.append(None if valid is None else str(bool(valid)))
    return out


# -------------------------------------------------------------------------------------------------------- probe


@dataclass(frozen=True)
class ProbeScores:
    """Test-set scores of one probe: ``balanced_accuracy`` in [0, 1], ``kappa`` (Cohen's) in [-1, 1]; NaN where
    undefined (a single class in both truth and prediction)."""

    balanced_accuracy: float
    kappa: float


@dataclass
class ProbeResult:
    """A linear probe on the trained encoder vs the same probe on a random-init encoder, on log band powers
    (:func:`band_powers`) and the majority class of the training subjects.

    Counts are of epochs (``n_train``, ``n_test``, ``n_unlabelled``: dropped for lack of a label, ``n_skipped``:
    unreadable) and of subjects; no subject id is kept.  ``train_keys`` / ``test_keys``: the epoch keys of each
    side, in manifest order.
    """

    label: str
    classes: list[str]
    trained: ProbeScores
    random: ProbeScores
    band_power: ProbeScores
    majority: ProbeScores
    n_train: int
    n_test: int
    n_subjects: int
    n_train_subjects: int
    n_test_subjects: int
    n_unlabelled: int
    n_skipped: int
    test_fraction: float
    seed: int
    step: int
    arch: str
    dim: int
    train_keys: list[str] = field(repr=False, default_factory=list)
    test_keys: list[str] = field(repr=False, default_factory=list)
    #: With ``folds`` > 1: subject-level K-fold cross-validation, ``{"folds": K, name: {"kappa": [per fold],
    #: "balanced_accuracy": [...], "kappa_mean", "kappa_ci": [lo, hi], "balanced_accuracy_mean",
    #: "balanced_accuracy_ci"}}`` for ``trained``, ``random``, ``band_power`` and ``majority`` (95 % t-interval over
    #: the folds; NaN fold scores left out).
    cv: dict[str, Any] | None = None
    #: The bands of the band-power baseline, Hz (:func:`bands_within` the manifest's ``lowpass_hz``).
    bands: list[tuple[float, float]] = field(default_factory=lambda: list(BANDS))

    def to_dict(self, keys: bool = False) -> dict[str, Any]:
        """A JSON-ready dict (NaN scores as None, in the cross-validation too); the key lists only with
        ``keys=True``."""
        def num(v: Any) -> Any:
            if isinstance(v, dict):
                return {k: num(x) for k, x in v.items()}
            if isinstance(v, list):
                return [num(x) for x in v]
            return None if isinstance(v, float) and math.isnan(v) else v

        scored = ("trained", "random", "band_power", "majority")
        out = {k: v for k, v in self.__dict__.items() if k not in (*scored, "train_keys", "test_keys", "cv")}
        out["cv"] = num(self.cv)
        for name in scored:
            s = getattr(self, name)
            out[name] = num(dict(balanced_accuracy=s.balanced_accuracy, kappa=s.kappa))
        if keys:
            out.update(train_keys=self.train_keys, test_keys=self.test_keys)
        return out


#: The band-power baseline's bands, Hz: slow and fast delta, theta, alpha, sigma, beta, low gamma (the classical EEG
#: bands as YASA's ``bandpower`` uses them, delta split at 2 Hz where slow waves and K-complexes sit).
BANDS = ((0.5, 2.0), (2.0, 4.0), (4.0, 8.0), (8.0, 12.0), (12.0, 16.0), (16.0, 30.0), (30.0, 45.0))


def bands_within(lowpass_hz: float | None, bands=BANDS) -> tuple[tuple[float, float], ...]:
    """``bands`` (Hz) that start below ``lowpass_hz``, the last one ending at it (all of them when None): a
    band above a recording's low-pass edge holds nothing but filter leakage, and one that is empty in some
    recordings only tells them apart (a manifest's ``lowpass_hz``: 20 Hz when one was sampled at 50 Hz)."""
    if lowpass_hz is None:
        return tuple(bands)
    return tuple((lo, min(hi, lowpass_hz)) for lo, hi in bands if lo < lowpass_hz)


def band_powers(x: np.ndarray, sfreq: float, bands=BANDS) -> np.ndarray:
    """log10 band powers of epochs: ``x`` ``(B, C, T)`` µV -> ``(B, C * len(bands))`` (µV²; Welch, 4-s Hann
    windows, 50 % overlap, SciPy's defaults otherwise; a band above Nyquist gives the floor 1e-12). The
    hand-made baseline a foundation model's embedding has to beat (issue #20)."""
    from scipy.signal import welch

    nper = min(x.shape[-1], int(round(4 * sfreq)))
    f, pxx = welch(np.asarray(x, np.float64), fs=sfreq, nperseg=nper, axis=-1)
    df = f[1] - f[0]
    out = [pxx[..., (f >= lo) & (f < hi)].sum(axis=-1) * df for lo, hi in bands]
    return np.log10(np.maximum(np.stack(out, axis=-1), 1e-12)).reshape(x.shape[0], -1)


def _interval(values: list[float]) -> tuple[float, list[float]]:
    """Mean and 95 % Student-t interval of fold scores (NaN ones left out; a single value has no interval)."""
    from scipy import stats

    v = np.array([x for x in values if not math.isnan(x)], float)
    if len(v) == 0:
        return math.nan, [math.nan, math.nan]
    if len(v) == 1:
        return float(v[0]), [math.nan, math.nan]
    half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return float(v.mean()), [float(v.mean() - half), float(v.mean() + half)]


def _cross_validate(sk, features: dict[str, np.ndarray], split: _Split, folds: int, seed: int) -> dict[str, Any]:
    """Subject-level K-fold (scikit-learn ``GroupKFold``, groups = subjects) of every feature set and the majority
    class; folds whose training subjects miss a class are still scored (``class_weight`` balances what is there)."""
    from sklearn.model_selection import GroupKFold

    k = min(folds, split.n_subjects)
    rows, y, groups = split.rows, split.y, split.groups
    per: dict[str, dict[str, list[float]]] = {n: {"kappa": [], "balanced_accuracy": []} for n in [*features, "majority"]}
    for tr, te in GroupKFold(n_splits=k).split(rows, y, groups):
        if len(set(y[tr].tolist())) < 2:
            continue  # a fold whose training subjects hold one class cannot fit a classifier
        for name, emb in features.items():
            sc = _score(sk, emb[rows[tr]], y[tr], emb[rows[te]], y[te], seed)
            per[name]["kappa"].append(sc.kappa)
            per[name]["balanced_accuracy"].append(sc.balanced_accuracy)
        m = _majority(sk, y[tr], y[te])
        per["majority"]["kappa"].append(m.kappa)
        per["majority"]["balanced_accuracy"].append(m.balanced_accuracy)
    out: dict[str, Any] = {"folds": k}
    for name, d in per.items():
        out[name] = dict(d)
        for metric in ("kappa", "balanced_accuracy"):
            out[name][f"{metric}_mean"], out[name][f"{metric}_ci"] = _interval(d[metric])
    return out


def _majority(sk, y_train, y_test) -> ProbeScores:
    """The scores of always predicting the training subjects' most frequent class."""
    values, counts = np.unique(y_train, return_counts=True)
    pred = np.full(len(y_test), values[counts.argmax()])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        return ProbeScores(float(sk.balanced_accuracy_score(y_test, pred)), float(sk.cohen_kappa_score(y_test, pred)))


def _score(sk, x_train, y_train, x_test, y_test, seed: int) -> ProbeScores:
    scaler = sk.StandardScaler().fit(x_train)
    clf = sk.LogisticRegression(max_iter=1000, class_weight="balanced", random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sk.ConvergenceWarning)
        clf.fit(scaler.transform(x_train), y_train)
        pred = clf.predict(scaler.transform(x_test))
        warnings.simplefilter("ignore", UserWarning)  # classes predicted but absent from the test subjects
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 kappa of a one-class test set
        bacc = float(sk.balanced_accuracy_score(y_test, pred))
        kappa = float(sk.cohen_kappa_score(y_test, pred))
    return ProbeScores(bacc, kappa)


def _sklearn():
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score
        from sklearn.model_selection import GroupShuffleSplit
        from sklearn.preprocessing import StandardScaler
    except ImportError:
        raise PretrainError(SKLEARN_MISSING) from None
    from types import SimpleNamespace

    return SimpleNamespace(ConvergenceWarning=ConvergenceWarning, LogisticRegression=LogisticRegression,
                           balanced_accuracy_score=balanced_accuracy_score, cohen_kappa_score=cohen_kappa_score,
                           GroupShuffleSplit=GroupShuffleSplit, StandardScaler=StandardScaler)


def _label_fields(meta: dict) -> dict:
    """The part of an epoch's metadata a probe needs (the rest, per-channel QC figures, can be large)."""
    return {"subject": meta.get("subject"), "sleep": meta.get("sleep"), "annotations": meta.get("annotations"),
            "qc": {"valid": (meta.get("qc") or {}).get("valid")}, "recording": meta.get("recording"),
            "start_s": meta.get("start_s"), "n_samples": meta.get("n_samples"), "sfreq": meta.get("sfreq")}


#: The label a probe fitted on a user's label file (:func:`read_label_file`) reports.
FILE_LABEL = "file"


def read_label_file(path: str | Path) -> dict[str, list[tuple[float, float, str]]]:
    """A site's own labels: a TSV with the columns ``recording`` (the recording's SHA-256, as in the catalog and
    the shards), ``onset`` and ``duration`` (s from the recording's start) and ``label``.

    Returns ``{sha256: [(onset, end, label), ...]}``. An epoch takes the label of the row whose interval holds the
    epoch's midpoint (:func:`labels_from_file`); a row of duration 0 labels the epoch that contains its onset.

    Raises
    ------
    PretrainError
        Naming the file and the line: no such file, missing columns, a number that is not one, a recording that
        is not a SHA-256.
    """
    import csv

    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except OSError as exc:
        raise PretrainError(f"label file cannot be read ({exc.strerror})", str(path)) from None
    need = {"recording", "onset", "duration", "label"}
    if not rows or not need <= set(rows[0]):
        raise PretrainError(f"label file needs the tab-separated columns {', '.join(sorted(need))}", str(path))
    out: dict[str, list[tuple[float, float, str]]] = {}
    for line, r in enumerate(rows, 2):
        sha = (r["recording"] or "").strip().lower()
        if len(sha) != 64 or any(ch not in "0123456789abcdef" for ch in sha):
            raise PretrainError(f"line {line}: recording must be a SHA-256 (64 hex digits)", str(path))
        try:
            onset, duration = float(r["onset"]), float(r["duration"] or 0)
        except ValueError:
            raise PretrainError(f"line {line}: onset and duration must be numbers (s)", str(path)) from None
        if not (onset >= 0 and duration >= 0) or not (r["label"] or "").strip():
            raise PretrainError(f"line {line}: a negative time or an empty label", str(path))
        out.setdefault(sha, []).append((onset, onset + duration, r["label"].strip()))
    return out


def labels_from_file(metas: list[dict], table: dict[str, list[tuple[float, float, str]]]) -> list[str | None]:
    """Each epoch's label from a :func:`read_label_file` table (None where no row covers it)."""
    out: list[str | None] = []
    for m in metas:
        rows = table.get(str(m.get("recording")), ())
        start = float(m.get("start_s") or 0.0)
        length = (m.get("n_samples") or 0) / (m.get("sfreq") or 1.0)
        mid, hit = start + length / 2, None
        for onset, end, lab in rows:
            if (onset <= mid < end) if end > onset else (start <= onset < start + length):
                hit = lab
                break
        out.append(hit)
    return out


@dataclass
class _Split:
    rows: np.ndarray  # indices of the labelled epochs
    y: np.ndarray  # their labels
    groups: np.ndarray  # their subjects
    train: np.ndarray  # positions in rows, ascending
    test: np.ndarray
    classes: list[str]
    n_subjects: int


def _split(sk, metas: list[dict], label: str, test_fraction: float, seed: int, where: str, table=None) -> _Split:
    """The subject-level split of the labelled epochs, or the PretrainError that makes a probe impossible."""
    labels = labels_from_file(metas, table) if table is not None else labels_from_meta(metas, label)
    subjects = [m.get("subject") for m in metas]
    rows = np.array([i for i, (y, s) in enumerate(zip(labels, subjects)) if y is not None and s is not None], int)
    if len(rows) == 0:
        raise PretrainError(f"no epoch of the manifest has a {label!r} label", where)
    y = np.array([labels[i] for i in rows])
    groups = np.array([str(subjects[i]) for i in rows])
    classes = sorted(set(y.tolist()))
    n_subjects = len(set(groups.tolist()))
    if n_subjects < 2:
        raise PretrainError(f"a subject-level probe needs epochs of 2 or more subjects; the labelled epochs come "
                            f"from {n_subjects}", where)
    if len(classes) < 2:
        raise PretrainError(f"label {label!r} has a single class ({classes[0]!r}) among the {len(rows)} labelled "
                            "epochs; a probe needs two or more", where)
    splitter = sk.GroupShuffleSplit(n_splits=1, test_size=test_fraction, random_state=seed)
    try:
        tr, te = (np.sort(ix) for ix in next(splitter.split(rows, y, groups)))
    except ValueError as exc:  # e.g. a test fraction that leaves no training subject
        raise PretrainError(f"cannot split {n_subjects} subjects with test fraction {test_fraction} ({exc})",
                            where) from None
    absent = sorted(set(classes) - set(y[tr].tolist()))
    if absent:
        raise PretrainError(f"class(es) {absent} of label {label!r} have no epoch among the training subjects; "
                            "use another seed, another test fraction, or more subjects", where)
    return _Split(rows, y, groups, tr, te, classes, n_subjects)


def probe(checkpoint_path: str | Path, manifest_path: str | Path, label: str, *, test_fraction: float = 0.3,
          seed: int = 0, batch_size: int = 64, device: str | None = None, progress: bool = False,
          labels: str | Path | None = None, folds: int = 0) -> ProbeResult:
    """Linear probe of a frozen encoder on a metadata label, against the same probe on a random-init encoder.

    Both encoders (the checkpoint's weights, and the same architecture initialised with ``seed``, see
    :func:`embed`) embed the manifest's epochs in one pass over the shards (``progress`` as in :func:`embed`).  Epochs without a label
    (:func:`labels_from_meta`) are dropped.  One subject-level split (scikit-learn ``GroupShuffleSplit``, groups
    = the epochs' pseudonymous ``subject``, ``test_size=test_fraction`` of the subjects, ``random_state=seed``)
    puts every subject's epochs on one side.  For each encoder the features are standardised (mean and SD of the
    training epochs) and a ``LogisticRegression(max_iter=1000, class_weight="balanced")`` is fitted on the
    training subjects and scored on the test subjects: balanced accuracy and Cohen's kappa. Beside them, the same
    probe on each epoch's log band powers (:func:`band_powers`, computed in the same pass, over the bands
    :func:`bands_within` the manifest's ``lowpass_hz``) and the majority class of the training subjects: the
    baselines an embedding worth having must beat.

    ``labels``: a site's own label file (:func:`read_label_file`: recording SHA-256, onset, duration, label)
    instead of ``label`` (reported as ``"file"``). ``folds`` > 1 adds subject-level K-fold cross-validation with
    95 % intervals over the folds (``ProbeResult.cv``; K is capped at the number of subjects).

    A metadata-only pass over the shards (the ``json`` members) runs these checks before anything is embedded, so
    a probe that cannot be made fails in seconds; they are run again on the epochs actually embedded.

    Raises
    ------
    PretrainError
        Unknown ``label``; ``test_fraction`` outside (0, 1); scikit-learn missing; fewer than two subjects or two
        classes among the labelled epochs; a class with no epoch among the training subjects (the message says
        to change ``seed`` or add subjects); plus everything :func:`embed` raises.
    ManifestError, CheckpointMismatchError
        As :func:`embed`.
    """
    table = read_label_file(labels) if labels is not None else None
    if table is not None:
        label = FILE_LABEL
    else:
        labels_from_meta([], label)  # unknown label: fail before reading anything
    if not 0.0 < test_fraction < 1.0:
        raise PretrainError(f"test fraction must be in (0, 1), got {test_fraction}")
    _check_batch_size(batch_size)
    sk = _sklearn()
    enc = _Encoder(checkpoint_path, manifest_path, device)
    # Fail fast: the label, subject and split checks need only the metadata, not the embeddings.
    _split(sk, [_label_fields(meta) for _, meta in _iter_metas(enc.manifest, enc.manifest_path)], label,
           test_fraction, seed, str(manifest_path), table)
    models = [enc.model(False, seed), enc.model(True, seed)]
    sfreq, within = enc.manifest.sfreq, bands_within(enc.manifest.lowpass_hz)
    keys, metas, (trained, rand, bands), skipped = enc.run(models, batch_size, keep=_label_fields, progress=progress,
                                                           raw_features=[lambda x: band_powers(x, sfreq, within)])

    split = _split(sk, metas, label, test_fraction, seed, str(manifest_path), table)
    rows, y, groups, tr, te = split.rows, split.y, split.groups, split.train, split.test
    scores = [_score(sk, emb[rows[tr]], y[tr], emb[rows[te]], y[te], seed) for emb in (trained, rand, bands)]
    cv = _cross_validate(sk, {"trained": trained, "random": rand, "band_power": bands}, split, folds, seed) \
        if folds > 1 else None
    return ProbeResult(
        cv=cv, label=label, classes=split.classes, trained=scores[0], random=scores[1], band_power=scores[2],
        majority=_majority(sk, y[tr], y[te]), n_train=len(tr), n_test=len(te),
        n_subjects=split.n_subjects, n_train_subjects=len(set(groups[tr].tolist())),
        n_test_subjects=len(set(groups[te].tolist())), n_unlabelled=len(keys) - len(rows),
        n_skipped=sum(skipped.values()),
        test_fraction=test_fraction, seed=seed, step=int(enc.ckpt.get("step", 0)), arch=enc.arch,
        dim=int(trained.shape[1]), train_keys=[keys[i] for i in rows[tr]], test_keys=[keys[i] for i in rows[te]],
        bands=list(within),
    )
