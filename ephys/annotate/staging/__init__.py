"""Automatic sleep staging of 30-s epochs: one interface, three backends.

Backends, chosen by name with :func:`get_stager`:

``"gssc"``
    Greifswald Sleep Stage Classifier (gssc 0.0.9, Hanna & Flöel 2023; CNN per
    epoch + bidirectional GRU over the whole recording). **AGPL-3.0**, shipped
    with its weights in the optional extra ``ephys[gssc]``; imported lazily.
    ephys calls the packaged networks itself instead of ``EEGInfer.mne_infer``,
    because 0.0.9 (the newest release) cannot be used as is with torch >= 2.6
    and numpy 2 (see :class:`GSSCStager`).
``"yasa"``
    ``yasa.SleepStaging`` (yasa 0.8.1, Vallat & Walker 2021; LightGBM on
    hand-made features), BSD-3-Clause, extra ``ephys[staging]``.
``"ensemble"``
    GSSC and YASA on the same channels, their per-epoch probabilities averaged with equal
    weights (:class:`EnsembleStager`); needs both extras and is the recommended backend where
    both are installed. Measured on the DREAMS excerpt 3 expert hypnogram (60 epochs): kappa
    0.292 against 0.250 (GSSC) and 0.243 (YASA); see docs/benchmarks.md.
``"none"``
    Stages nothing (every epoch ``-1``, probabilities NaN).

Epochs are the pipeline's: non-overlapping 30-s windows from sample 0 of the
arrays given to :meth:`Stager.stage`; epoch ``i`` covers samples
``[round(i*30*sfreq), round((i+1)*30*sfreq))``. Epochs the arrays do not
cover completely are returned unstaged (``-1``).

Both models were trained on full-night polysomnography (PSG). Routine
clinical EEGs (20-60 min, daytime, 10-20 montage, often no EOG/EMG) are out
of their training distribution: treat the stages as a screening label, and
check them against a few expert-scored local recordings before relying on
them.

Channel choice (:func:`choose_channels`) picks **one** EEG derivation (and at
most one EOG and one EMG) per recording; see its docstring for the rules.
"""

from ephys.annotate.staging.agreement import RK_CODES, Agreement, accuracy_kappa, hypnogram_from_rk
from ephys.annotate.staging.base import (BACKEND_PACKAGES, BACKENDS, ENSEMBLE, EPOCH_S, MIN_SFREQ, STAGES, UNSTAGED,
                                         NoStager, Stager, StagingResult, epoch_bounds, n_complete_epochs,
                                         require_backend, unstaged)
from ephys.annotate.staging.channels import StagingChannels, choose_channels
from ephys.annotate.staging.gssc import GSSCStager, gssc_net_paths, load_gssc_nets
from ephys.annotate.staging.stage import (EnsembleStager, get_stager, recording_channels, stage_epochs, stage_reader,
                                          stage_signals)
from ephys.annotate.staging.yasa import YASAStager
from ephys.errors import NoStagingChannelError, StagingBackendUnavailable

__all__ = [
    "BACKENDS",
    "BACKEND_PACKAGES",
    "ENSEMBLE",
    "EPOCH_S",
    "MIN_SFREQ",
    "RK_CODES",
    "STAGES",
    "UNSTAGED",
    "Agreement",
    "EnsembleStager",
    "GSSCStager",
    "NoStager",
    "NoStagingChannelError",
    "Stager",
    "StagingBackendUnavailable",
    "StagingChannels",
    "StagingResult",
    "YASAStager",
    "accuracy_kappa",
    "choose_channels",
    "epoch_bounds",
    "get_stager",
    "gssc_net_paths",
    "hypnogram_from_rk",
    "load_gssc_nets",
    "n_complete_epochs",
    "require_backend",
    "recording_channels",
    "stage_epochs",
    "stage_reader",
    "stage_signals",
    "unstaged",
]
