"""Constants, the :class:`Stager` interface and result, epoch arithmetic and the backends' packages."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Protocol, runtime_checkable

import numpy as np

from ephys.errors import StagingBackendUnavailable

#: Stage names, in the order of :attr:`StagingResult.probs` columns and stage codes 0..4.
STAGES = ("W", "N1", "N2", "N3", "REM")
#: Code of an epoch that was not staged.
UNSTAGED = -1
#: Epoch length, s (the pipeline's and both models').
EPOCH_S = 30.0
#: Lowest sampling rate at which a channel is used for staging, Hz. Both models
#: look at 0.3-30 Hz; at 50 Hz everything up to 25 Hz (delta..sigma, most of
#: beta) is still there (the DREAMS excerpts are 50 Hz). Lower rates (1-Hz
#: EMG envelopes of Sleep-EDF, for example) are not raw signals.
MIN_SFREQ = 50.0
#: Backend names accepted by :func:`get_stager`.
BACKENDS = ("gssc", "yasa", "ensemble", "none")
#: The backends the ``ensemble`` backend combines.
ENSEMBLE = ("gssc", "yasa")
#: Backend -> (package it needs, ephys extra that installs it, the package's licence).
BACKEND_PACKAGES = {"gssc": ("gssc", "gssc", "AGPL-3.0"), "yasa": ("yasa", "staging", "BSD-3-Clause")}


def require_backend(name: str) -> None:
    """Check, without importing it, that backend ``name``'s package is installed.

    Raises
    ------
    StagingBackendUnavailable
        Naming the package, its licence and the ``pip install 'ephys[...]'`` that provides it.
    """
    import importlib.util

    for part in ENSEMBLE if name == "ensemble" else (name,):
        need = BACKEND_PACKAGES.get(part)
        if need and importlib.util.find_spec(need[0]) is None:
            raise StagingBackendUnavailable(f"--stager {name} needs the '{need[0]}' package ({need[2]}): "
                                            f"pip install 'ephys[{need[1]}]'")


@dataclass
class StagingResult:
    """Stages of ``n_epochs`` 30-s epochs.

    ``stages``: ``(n_epochs,)`` int8, 0..4 = :data:`STAGES`, ``-1`` = not staged;
    ``probs``: ``(n_epochs, 5)`` float32, rows sum to 1, NaN rows for unstaged
    epochs; ``backend``: ``"gssc 0.0.9 ..."``; ``note``: why epochs are
    unstaged, or a caveat (e.g. upsampled input); ``channels``: the signals
    used, ``{"eeg": ..., "eog": ...}`` (:func:`stage_reader` fills in the
    channel names).
    """

    stages: np.ndarray
    probs: np.ndarray
    backend: str = ""
    note: str = ""
    channels: dict[str, str] = field(default_factory=dict)

    @property
    def n_staged(self) -> int:
        return int((self.stages >= 0).sum())


def unstaged(n_epochs: int, backend: str = "none", note: str = "") -> StagingResult:
    """A result with every epoch unstaged."""
    return StagingResult(
        np.full(n_epochs, UNSTAGED, np.int8), np.full((n_epochs, len(STAGES)), np.nan, np.float32), backend, note
    )


@runtime_checkable
class Stager(Protocol):
    """A sleep-staging backend. Instances are reusable and hold their loaded model."""

    name: str
    version: str

    def stage(
        self,
        eeg_uv: np.ndarray,
        sfreq: float,
        eog_uv: np.ndarray | None,
        emg_uv: np.ndarray | None,
        n_epochs: int,
    ) -> StagingResult:
        """Stage the first ``n_epochs`` 30-s epochs of 1-D µV signals that share ``sfreq``.

        The caller's arrays are never modified.
        """
        ...


def epoch_bounds(n_epochs: int, sfreq: float, epoch_s: float = EPOCH_S) -> np.ndarray:
    """Sample index of each epoch boundary, ``(n_epochs + 1,)``."""
    return np.round(np.arange(n_epochs + 1) * epoch_s * sfreq).astype(np.int64)


def n_complete_epochs(n_samples: int, sfreq: float, epoch_s: float = EPOCH_S) -> int:
    """Number of complete epochs in ``n_samples`` samples at ``sfreq``."""
    return max(0, int(np.floor(n_samples / (epoch_s * sfreq) + 1e-9)))


def _n_complete(n_samples: int, sfreq: float, n_epochs: int) -> int:
    """How many of the first ``n_epochs`` epochs lie completely inside ``n_samples``."""
    b = epoch_bounds(n_epochs, sfreq)
    return int(np.searchsorted(b, n_samples, side="right")) - 1


def _resample(x: np.ndarray, sfreq: float, target: float, n_out: int) -> np.ndarray:
    """Polyphase-resample a float64 copy of ``x`` to ``target`` Hz, exactly ``n_out`` samples."""
    from scipy.signal import resample_poly

    x = np.asarray(x, np.float64)
    if sfreq == target:
        out = x.copy()
    else:
        ratio = Fraction(target / sfreq).limit_denominator(1000)
        out = resample_poly(x, ratio.numerator, ratio.denominator)
    if len(out) < n_out:
        out = np.pad(out, (0, n_out - len(out)), mode="edge")
    return out[:n_out]


def _pad_result(stages: np.ndarray, probs: np.ndarray, n_epochs: int, backend: str, note: str) -> StagingResult:
    out = unstaged(n_epochs, backend, note)
    k = len(stages)
    out.stages[:k] = stages
    out.probs[:k] = probs
    return out


class NoStager:
    """Stages nothing: every epoch ``-1``, probabilities NaN."""

    name = "none"
    version = "none"

    def stage(self, eeg_uv, sfreq, eog_uv, emg_uv, n_epochs) -> StagingResult:
        return unstaged(n_epochs, "none", "staging disabled")
