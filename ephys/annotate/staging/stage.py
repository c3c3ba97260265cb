"""The backends by name (:func:`get_stager`), the ensemble, and staging a recording from a reader or
already-read signals."""

from __future__ import annotations

import threading
import warnings
from typing import TYPE_CHECKING

import numpy as np

from ephys.annotate.staging.base import (BACKENDS, ENSEMBLE, EPOCH_S, STAGES, UNSTAGED, NoStager, Stager, StagingResult,
                                         _resample, n_complete_epochs, unstaged)
from ephys.annotate.staging.channels import StagingChannels, choose_channels
from ephys.annotate.staging.gssc import GSSCStager
from ephys.annotate.staging.yasa import YASAStager
from ephys.errors import NoStagingChannelError, UnknownStagerError
from ephys.schemas import EpochStage

if TYPE_CHECKING:  # pragma: no cover
    from ephys.ingest.readers.base import Reader
    from ephys.schemas import ChannelInfo


_STAGERS: dict[str, Stager] = {}
class EnsembleStager:
    """GSSC and YASA on the same signals; each epoch's probabilities are the two models' mean.

    Equal weights: the two are about equally good on held-out expert scoring (GSSC 0.572, YASA
    0.539 mean kappa over 7 DREAMS excerpts, issue #19; 0.250 and 0.243 on excerpt 3 here) and
    nothing was fitted on the few expert hypnograms at hand, so every figure stays held-out. An
    epoch only one of them stages (YASA needs 5 min, GSSC none) takes that one's probabilities.
    Transition smoothing (a Viterbi pass with sleep-stage transition probabilities) was measured
    and left out: GSSC's bidirectional GRU already models the sequence, and a transition matrix
    from the Sleep-EDF SC4001 night lowered kappa on excerpt 3 from 0.292 to 0.179.
    """

    name = "ensemble"

    def __init__(self, gssc: Stager | None = None, yasa: Stager | None = None):
        self.parts = (gssc or get_stager("gssc"), yasa or get_stager("yasa"))
        self.version = "ensemble(" + " + ".join(p.version for p in self.parts) + ")"

    def stage(self, eeg_uv, sfreq, eog_uv=None, emg_uv=None, n_epochs=None) -> StagingResult:
        results = [p.stage(eeg_uv, sfreq, eog_uv, emg_uv, n_epochs) for p in self.parts]
        probs = np.stack([r.probs for r in results])  # (2, n_epochs, 5), NaN rows where unstaged
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # epochs neither staged: all-NaN mean
            mean = np.nanmean(probs, axis=0).astype(np.float32)
        staged = np.isfinite(mean).all(axis=1)
        stages = np.where(staged, np.nan_to_num(mean).argmax(axis=1), UNSTAGED).astype(np.int8)
        notes = "; ".join(f"{p.name}: {r.note}" for p, r in zip(self.parts, results) if r.note)
        channels = {k: v for r in results for k, v in r.channels.items()}
        return StagingResult(stages, mean, self.version, notes, channels)


_STAGERS_LOCK = threading.Lock()


def get_stager(name: str) -> Stager:
    """The process-wide instance of backend ``name`` (``"gssc"``, ``"yasa"`` or ``"none"``).

    Instances (and the networks/classifiers they hold) are created on first
    use and reused for every later recording in the process.

    Raises
    ------
    UnknownStagerError
        Unknown name (also a ``ValueError``).
    StagingBackendUnavailable
        The backend's optional package is not installed (an ``ImportError``).
    """
    key = (name or "none").strip().lower()
    if key not in BACKENDS:
        raise UnknownStagerError(f"unknown sleep-staging backend {name!r}; choose one of {', '.join(BACKENDS)}")
    with _STAGERS_LOCK:
        if key not in _STAGERS:
            if key == "ensemble":  # its parts are the process-wide ones (the lock is not re-entrant)
                parts = [_STAGERS.get(k) or _STAGERS.setdefault(k, {"gssc": GSSCStager, "yasa": YASAStager}[k]())
                         for k in ENSEMBLE]
                _STAGERS[key] = EnsembleStager(*parts)
            else:
                _STAGERS[key] = {"gssc": GSSCStager, "yasa": YASAStager, "none": NoStager}[key]()
        return _STAGERS[key]


def stage_reader(
    reader: Reader, stager: Stager, n_epochs: int | None = None
) -> tuple[StagingResult, StagingChannels | None]:
    """Choose channels, read them and stage a whole recording.

    EOG/EMG recorded at another rate than the EEG are resampled to the EEG's
    rate. ``n_epochs`` defaults to the complete 30-s epochs of the EEG. A
    recording without a usable EEG gives an unstaged result whose note is the
    reason (and ``None`` channels), not an exception.
    """
    chans = reader.header.channels
    try:
        choice = choose_channels(chans)
    except NoStagingChannelError as e:
        n = n_epochs if n_epochs is not None else int(reader.header.duration_s // EPOCH_S)
        return unstaged(n, getattr(stager, "version", stager.name), e.reason), None
    data = dict(zip(choice.indices, reader.read_channels(choice.indices)))
    return stage_signals(choice, chans, data, stager, n_epochs), choice


def stage_signals(choice: StagingChannels, chans: list[ChannelInfo], data: dict[int, np.ndarray], stager: Stager,
                  n_epochs: int | None = None) -> StagingResult:
    """Stage the channels of ``choice`` from already-read signals (``data``: channel index -> µV array),
    for callers that read them along with other channels in one pass over the file (see :func:`stage_reader`)."""
    sf = chans[choice.eeg].sfreq
    eeg = data[choice.eeg]
    if choice.eeg_ref is not None:
        ref = data[choice.eeg_ref]
        m = min(len(eeg), len(ref))
        eeg = eeg[:m] - ref[:m]

    def at_eeg_rate(i):
        if i is None:
            return None
        x = data[i]
        if chans[i].sfreq == sf:
            return x
        return _resample(x, chans[i].sfreq, sf, int(round(len(x) * sf / chans[i].sfreq))).astype(np.float32)

    if n_epochs is None:
        n_epochs = n_complete_epochs(len(eeg), sf)
    res = stager.stage(eeg, sf, at_eeg_rate(choice.eog), at_eeg_rate(choice.emg), n_epochs)
    res.channels = {k: v for k, v in choice.names.items() if k in res.channels or stager.name == "none"}
    return res


def recording_channels(header, stager: str) -> tuple[StagingChannels | None, str | None]:
    """``(channel choice, None)`` for staging a recording of ``header`` with backend ``stager``, ``(None, why
    not)`` when no channel is usable, ``(None, None)`` for ``"none"``. The pipeline reads the chosen channels in
    the same pass as the EEG."""
    if stager == "none":
        return None, None
    try:
        return choose_channels(header.channels), None
    except NoStagingChannelError as exc:
        return None, exc.reason


def stage_epochs(stager_name: str, header, starts: list[float], epoch_s: float, choice: StagingChannels | None,
                 note: str | None, data: dict[int, np.ndarray]) -> tuple[list[EpochStage | None], str | None, list[str]]:
    """Stage and probabilities of the epochs starting at ``starts`` (s, recording time), the backend and the
    channels used; ``[None] * len(starts)`` for backend ``"none"``.

    ``choice``/``note`` come from :func:`recording_channels`, ``data`` holds the chosen channels' signals
    (channel index -> µV). The stager sees the recording's segments joined end to end (as readers return them);
    an epoch whose start in that joined time is not on the stager's grid of ``epoch_s`` (a later segment of an
    EDF+D file not starting at a multiple of 30 s) stays unstaged (an empty :class:`~ephys.schemas.EpochStage`).
    """
    if stager_name == "none":
        return [None] * len(starts), None, []
    stager = get_stager(stager_name)
    if choice is None:
        res = unstaged(int(header.duration_s // EPOCH_S), getattr(stager, "version", stager.name), note or "")
    else:
        res = stage_signals(choice, header.channels, data, stager)
    joined, offset = {}, 0.0
    for seg in header.segments:
        joined[seg.start_s] = offset
        offset += seg.duration_s
    seg_starts = sorted(joined)
    out: list[EpochStage | None] = []
    for s in starts:
        seg0 = max((x for x in seg_starts if x <= s + 1e-6), default=0.0)
        j = (joined.get(seg0, 0.0) + s - seg0) / epoch_s
        k = int(round(j))
        if abs(j - k) > 1e-6 or not 0 <= k < len(res.stages) or res.stages[k] < 0:
            out.append(EpochStage())
        else:
            out.append(EpochStage(stage=STAGES[int(res.stages[k])], probs=[round(float(p), 4) for p in res.probs[k]]))
    return out, res.backend or f"{stager.name} {stager.version}", list(res.channels.values())
