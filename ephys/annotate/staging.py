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

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

import numpy as np

from ephys.errors import NoStagingChannelError, StagingBackendUnavailable
from ephys.ingest.channels import canonical_electrode

if TYPE_CHECKING:  # pragma: no cover
    from ephys.ingest.readers.base import Reader
    from ephys.schemas import ChannelInfo

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

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# errors


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
                                            f"pip install 'ephys[{need[1]}]'")  # fmt: skip


# --------------------------------------------------------------------------------------------
# channel choice


@dataclass(frozen=True)
class StagingChannels:
    """The channels one recording is staged with (indices into ``header.channels``).

    ``eeg_ref`` is set when ephys re-references the EEG itself
    (``EEG = channels[eeg] - channels[eeg_ref]``); ``None`` means the EEG is
    used as recorded. ``eeg_name`` is the derivation actually used
    (``"C3-A1"``, ``"C4-A1"``, ``"Fpz-Cz"``, ``"C4"`` for a common-reference
    channel).
    """

    eeg: int
    eeg_name: str
    eeg_ref: int | None = None
    eog: int | None = None
    eog_name: str | None = None
    emg: int | None = None
    emg_name: str | None = None
    reason: str = ""

    @property
    def indices(self) -> list[int]:
        """Every channel index to read, EEG first."""
        return [i for i in (self.eeg, self.eeg_ref, self.eog, self.emg) if i is not None]

    @property
    def names(self) -> dict[str, str]:
        """``{"eeg": ..., "eog": ..., "emg": ...}`` for the signals that are used."""
        out = {"eeg": self.eeg_name}
        if self.eog_name is not None:
            out["eog"] = self.eog_name
        if self.emg_name is not None:
            out["emg"] = self.emg_name
        return out


#: Referential sites in order of preference: central (AASM's C4-M1, backup C3-M2), then
#: vertex, then frontal (AASM alternative montage and GSSC's training sites C3/C4/F3/F4).
_SITE_ORDER = ("C4", "C3", "Cz", "F4", "F3", "Fz")
#: Bipolar derivations in order of preference (Sleep-EDF Fpz-Cz, its Pz-Oz; AASM Fz-Cz/Cz-Oz).
_BIPOLAR_ORDER = ("Fpz-Cz", "Fz-Cz", "Cz-Pz", "Cz-Oz", "Pz-Oz")
#: Fallback ranking of any other EEG electrode by its region (name prefix).
_REGION_ORDER = ("C", "CP", "FC", "F", "P", "AF", "Fp", "T", "TP", "FT", "PO", "O")
#: Reference electrodes (ear / mastoid): never staged on their own.
_REF_ELECTRODES = {"A1", "A2", "M1", "M2"}
#: Contralateral ear/mastoid references of the two central and frontal sites.
_CONTRA = {"C4": ("M1", "A1"), "C3": ("M2", "A2"), "F4": ("M1", "A1"), "F3": ("M2", "A2")}
_LEFT_EOG = ("HEOG", "HORIZ", "LOC", "E1", "EOGL", "EOG L", "LEOG", "L-EOG", "EOG1", "LEFT", "EOG LEFT")
_RIGHT_EOG = ("ROC", "E2", "EOGR", "EOG R", "REOG", "R-EOG", "EOG2", "RIGHT")
_VERTICAL_EOG = ("VEOG", "VERT")
_CHIN_EMG = ("CHIN", "SUBMENT", "MENT", "EMG1", "EMG")
_LEG_EMG = ("LEG", "TIB", "LAT", "RAT", "ARM", "DELT")


def _usable(ch: ChannelInfo, kind: str) -> bool:
    return ch.kind == kind and ch.to_uv is not None and ch.sfreq >= MIN_SFREQ


def _region(name: str) -> int:
    head = name.rstrip("0123456789z")
    return _REGION_ORDER.index(head) if head in _REGION_ORDER else len(_REGION_ORDER)


def _eeg_rank(ch: ChannelInfo) -> tuple | None:
    """Sort key of an EEG channel (lower is better), ``None`` if it cannot be used alone."""
    name = ch.name
    ref = ch.reference
    ear_ref = ref in _REF_ELECTRODES
    if name in _REF_ELECTRODES:
        return None
    if "-" not in name:  # referential (recorded reference in ``ref``, or common reference)
        if name in _SITE_ORDER:
            contra = ref in _CONTRA.get(name, ())
            # C4-M1 > C3-M2 > C4 (other/common ref) > C3 ...; Cz, F4, F3, Fz after both centrals.
            tier = 0 if name in ("C4", "C3") else 1
            return (tier, 0 if contra else 1, _SITE_ORDER.index(name), 0 if ear_ref else 1)
        return (3, _region(name), -1 if ear_ref else len(_SITE_ORDER), name)
    if name in _BIPOLAR_ORDER:
        return (2, _BIPOLAR_ORDER.index(name), 0, "")
    # other bipolar pairs (clinical double banana): one containing C4, C3, Cz, F4... first
    sites = [_SITE_ORDER.index(e) for e in name.split("-") if e in _SITE_ORDER]
    a, _, b = name.partition("-")
    return (3, min(_region(a), _region(b)), min(sites, default=len(_SITE_ORDER)), name)


def _text_rank(ch: ChannelInfo, prefer: tuple[str, ...], then: tuple[str, ...], avoid: tuple[str, ...]) -> tuple:
    text = f"{ch.label} {ch.name}".upper()
    if any(w in text for w in avoid):
        return (3, ch.index)
    if any(w in text for w in prefer):
        return (0, ch.index)
    if any(w in text for w in then):
        return (1, ch.index)
    return (2, ch.index)


def choose_channels(channels: list[ChannelInfo]) -> StagingChannels:
    """Pick the EEG (and EOG/EMG) one recording is staged with.

    EEG, among voltage channels of kind ``"eeg"`` sampled at >= :data:`MIN_SFREQ`:

    1. a central referential channel: C4 or C3; one referenced to the
       contralateral ear/mastoid (C4-M1/A1, C3-M2/A2, the AASM derivations)
       wins over the other, then C4 over C3;
    2. Cz, then F4, F3, Fz (GSSC was trained mostly on C3/C4/F3/F4);
    3. a bipolar derivation: Fpz-Cz, Fz-Cz, Cz-Pz, Cz-Oz, Pz-Oz (Sleep-EDF);
    4. any other EEG, central before frontal, parietal, temporal, occipital.

    Ear and mastoid electrodes recorded as channels of their own are never
    staged alone.

    Reference: a channel whose label names its reference (``C3-A1``) is used
    as recorded. Scalp channels recorded against a common reference (labels
    ``C4``, ``C4-Ref``, ``C4-AVG``) are also used as recorded -- the amplifier
    reference is not known, and both models z-score or robust-scale the signal
    anyway -- except in one case: when the chosen C4/C3/F4/F3 has no ear
    reference and the contralateral mastoid/ear (M1/A1 for C4, M2/A2 for C3)
    exists as a channel at the same rate, the EEG is re-referenced to it
    (``eeg_ref``), giving the AASM derivation ``C4-M1``.

    EOG: one voltage channel of kind ``"eog"``; horizontal or left
    (HEOG, LOC, E1, EOG1, ...) before right, vertical last. EMG: one chin
    EMG (leg EMGs last) -- only YASA uses it.

    Raises
    ------
    NoStagingChannelError
        No EEG channel is usable (none, non-voltage, or all below :data:`MIN_SFREQ`).
    """
    eeg = [(r, ch) for ch in channels if _usable(ch, "eeg") and (r := _eeg_rank(ch)) is not None]
    if not eeg:
        rates = sorted({c.sfreq for c in channels if c.kind == "eeg"})
        why = (
            f"no EEG channel sampled at >= {MIN_SFREQ:g} Hz (EEG rates {rates})"
            if rates
            else "no EEG channel (besides ear/mastoid references)"
        )
        raise NoStagingChannelError(f"cannot stage sleep: {why}")
    eeg.sort(key=lambda rc: rc[0])
    best = eeg[0][1]
    reason = []
    ref_idx = None
    if "-" in best.name:
        eeg_name = best.name
        reason.append(f"EEG {eeg_name} (bipolar, as recorded)")
    elif best.reference and canonical_electrode(best.reference):
        eeg_name = f"{best.name}-{best.reference}"
        reason.append(f"EEG {eeg_name} (recorded reference)")
    else:  # common reference (no reference in the label, or Ref/AVG/CAR/LE...)
        eeg_name = f"{best.name}-{best.reference}" if best.reference else best.name
        for ref_name in _CONTRA.get(best.name, ()):
            cand = [
                c for c in channels
                if c.name == ref_name and c.kind == "eeg" and c.to_uv is not None and c.sfreq == best.sfreq
            ]  # fmt: skip
            if cand:
                ref_idx = cand[0].index
                eeg_name = f"{best.name}-{ref_name}"
                reason.append(f"EEG {eeg_name} (re-referenced to the contralateral {ref_name})")
                break
        else:
            reason.append(f"EEG {eeg_name} (common reference, as recorded)")
    tier = eeg[0][0][0]
    tiers = {0: "central site", 1: "vertex/frontal site", 2: "preferred bipolar derivation", 3: "fallback"}
    reason[-1] += f", {tiers[tier]}"

    eogs = sorted(
        (c for c in channels if _usable(c, "eog")), key=lambda c: _text_rank(c, _LEFT_EOG, _RIGHT_EOG, _VERTICAL_EOG)
    )
    eog = eogs[0] if eogs else None
    reason.append(f"EOG {eog.name}" if eog else "no EOG")
    emgs = sorted((c for c in channels if _usable(c, "emg")), key=lambda c: _text_rank(c, _CHIN_EMG, (), _LEG_EMG))
    emg = emgs[0] if emgs else None
    reason.append(f"EMG {emg.name}" if emg else "no EMG")
    return StagingChannels(
        eeg=best.index,
        eeg_name=eeg_name,
        eeg_ref=ref_idx,
        eog=eog.index if eog else None,
        eog_name=eog.name if eog else None,
        emg=emg.index if emg else None,
        emg_name=emg.name if emg else None,
        reason="; ".join(reason),
    )


# --------------------------------------------------------------------------------------------
# interface


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


# --------------------------------------------------------------------------------------------
# GSSC


_GSSC_LOCK = threading.Lock()
_GSSC_NETS: tuple | None = None  # (sig_net, gru_net), loaded once per process
_GSSC_VERSION = "0.0.9"
_GSSC_HINT = (
    f"the 'gssc' sleep-staging backend needs the optional package gssc=={_GSSC_VERSION} "
    "(pip install 'ephys[gssc]'). Note: gssc is licensed under the GNU AGPL-3.0 "
    "(its network weights ship in the same wheel); ephys itself is BSD-3-Clause. "
    "Choose the 'yasa' (BSD-3-Clause) or 'none' backend to avoid it."
)


def _import_gssc():
    try:
        import gssc  # noqa: F401
        import gssc.networks  # noqa: F401  (classes the pickled nets refer to)
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise StagingBackendUnavailable(_GSSC_HINT) from e
    return gssc


def gssc_net_paths():
    """Paths of the packaged GSSC networks (CNN, GRU) inside the installed wheel."""
    _import_gssc()
    from importlib.resources import files

    base = files("gssc.nets")
    return base.joinpath("sig_net_v1.pt"), base.joinpath("gru_net_v1.pt")


def load_gssc_nets() -> tuple:
    """The packaged GSSC networks ``(sig_net, gru_net)``, loaded once per process and cached.

    Workaround for gssc 0.0.9 bug 1: it calls ``torch.load(path)``, which since
    torch 2.6 defaults to ``weights_only=True`` and refuses the whole pickled
    modules (``UnpicklingError: Unsupported global: GLOBAL gssc.networks.ResSleep``;
    fixed upstream in 9c2fa58, unreleased). The files come from the installed,
    trusted wheel, so they are loaded with ``weights_only=False`` onto the CPU.
    """
    global _GSSC_NETS
    if _GSSC_NETS is not None:
        return _GSSC_NETS
    with _GSSC_LOCK:
        if _GSSC_NETS is None:
            import torch

            sig_path, gru_path = gssc_net_paths()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sig = torch.load(str(sig_path), weights_only=False, map_location="cpu")
                gru = torch.load(str(gru_path), weights_only=False, map_location="cpu")
            sig.eval()
            gru.eval()
            for p in list(sig.parameters()) + list(gru.parameters()):
                p.requires_grad_(False)
            _GSSC_NETS = (sig, gru)
    return _GSSC_NETS


class GSSCStager:
    """GSSC 0.0.9 networks driven by ephys (CPU).

    ``EEGInfer.mne_infer`` of gssc 0.0.9 is not used, because of these bugs
    (each covered by a test in ``tests/test_staging.py``):

    1. the networks do not load with torch >= 2.6 (``weights_only``) -- see :func:`load_gssc_nets`;
    2. it drops the last epoch of an exact-length recording (it crops to
       ``raw.times[-1]`` = duration - 1/sfreq): here the signal is cut into
       exactly ``n_epochs`` 30-s epochs and all are staged;
    3. it band-pass filters the caller's Raw in place: here the caller's arrays
       are only read (a float64 copy is resampled and filtered);
    4. EEG-only fails with ``eog_drop=False`` (argmin of an empty sequence):
       here the single combination (EEG, or EEG+EOG) is passed to the network
       directly, no permutation matrix;
    5. it returns no probabilities: here they are ``exp`` of the GRU's
       LogSoftmax output.

    One combination per recording (the chosen EEG and EOG, if any), instead of
    the ``(nEEG+1)(nEOG+1)-1`` combinations and per-epoch "loudest vote" that
    ``mne_infer`` runs by default.

    Preprocessing follows ``mne_infer``: 0.3-30 Hz band-pass (MNE FIR
    defaults), 2560 samples per epoch (85.33 Hz), µV, each signal z-scored
    over the whole recording. The order differs: ephys resamples first (so
    50-Hz recordings, whose Nyquist is below 30 Hz, can be filtered too), then
    filters; on 256-Hz data the stages agree with ``mne_infer`` on the epochs
    both stage (test).

    ``threads``: torch intra-op threads. torch's setting is process-wide;
    when not ``None`` it is set before each inference (default 1: the
    pipeline runs one recording per Dask worker process/thread, and the CNN
    gains little from a second thread on a shared 2-core machine -- see
    ``benchmarks/staging.py``). ``None`` leaves torch's setting alone.
    ``batch``: epochs per CNN forward pass (memory ~ 2 MB per epoch).
    """

    name = "gssc"
    version = f"gssc {_GSSC_VERSION} (sig_net_v1, gru_net_v1)"
    SIG_LEN = 2560
    SFREQ = SIG_LEN / EPOCH_S

    def __init__(self, threads: int | None = 1, batch: int = 128):
        self.threads = threads
        self.batch = batch
        self.sig_net, self.gru_net = load_gssc_nets()

    def _prepare(self, x: np.ndarray, sfreq: float, k: int) -> np.ndarray:
        """Float32 ``(k, 2560)`` z-scored epochs from a read-only 1-D signal."""
        import mne

        n_in = int(epoch_bounds(k, sfreq)[-1])
        sig = _resample(np.asarray(x)[:n_in], sfreq, self.SFREQ, k * self.SIG_LEN)
        with mne.utils.use_log_level("error"):
            sig = mne.filter.filter_data(sig, self.SFREQ, 0.3, 30.0, copy=False, verbose="error")
        sig -= sig.mean()
        sd = sig.std()
        if sd > 0:
            sig /= sd
        return sig.astype(np.float32).reshape(k, self.SIG_LEN)

    def stage(self, eeg_uv, sfreq, eog_uv=None, emg_uv=None, n_epochs=None) -> StagingResult:
        import torch

        eeg_uv = np.asarray(eeg_uv)
        if n_epochs is None:
            n_epochs = n_complete_epochs(len(eeg_uv), sfreq)
        k = _n_complete(len(eeg_uv), sfreq, n_epochs)
        if eog_uv is not None:
            k = min(k, _n_complete(len(eog_uv), sfreq, n_epochs))
        if k < 1:
            return unstaged(n_epochs, self.version, "no complete 30-s epoch")
        if not np.isfinite(np.asarray(eeg_uv[: int(epoch_bounds(k, sfreq)[-1])])).all():
            return unstaged(n_epochs, self.version, "EEG has non-finite samples")
        sigs = {"eeg": self._prepare(eeg_uv, sfreq, k)}
        if eog_uv is not None and np.isfinite(eog_uv[: int(epoch_bounds(k, sfreq)[-1])]).all():
            sigs["eog"] = self._prepare(eog_uv, sfreq, k)
        if self.threads is not None and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            reps = []
            for s in range(0, k, self.batch):
                x = {n: torch.from_numpy(v[s : s + self.batch, None, :]) for n, v in sigs.items()}
                reps.append(self.sig_net(x, rep_output="rep_only").swapaxes(-1, 1))
            rep = torch.cat(reps)  # (k, 1, features): the GRU's sequence axis is the epoch axis
            hidden = torch.zeros(10, 1, 256)
            logp, _ = self.gru_net(rep, hidden)
            probs = torch.exp(logp[:, 0, :].double()).numpy()
        probs /= probs.sum(axis=1, keepdims=True)
        stages = probs.argmax(axis=1).astype(np.int8)
        note = "" if k == n_epochs else f"{n_epochs - k} epoch(s) not completely covered by the signal"
        if sfreq < 2 * 30.0:
            note = (note + "; " if note else "") + f"input {sfreq:g} Hz: no content above {sfreq / 2:g} Hz"
        res = _pad_result(stages, probs.astype(np.float32), n_epochs, self.version, note)
        res.channels = {"eeg": "eeg", **({"eog": "eog"} if "eog" in sigs else {})}
        return res


# --------------------------------------------------------------------------------------------
# YASA


_YASA_CLF: dict[str, object] = {}
_YASA_LOCK = threading.Lock()
_YASA_CLASS_TO_STAGE = {"W": 0, "WAKE": 0, "N1": 1, "N2": 2, "N3": 3, "R": 4, "REM": 4}


@contextlib.contextmanager
def _quiet():
    """Silence YASA's, MNE's, LightGBM's and scikit-learn's chatter (logs and warnings)."""
    import mne

    ylog = logging.getLogger("yasa")
    old = ylog.level
    ylog.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), mne.utils.use_log_level("error"):
            warnings.simplefilter("ignore")
            yield
    finally:
        ylog.setLevel(old)


class YASAStager:
    """``yasa.SleepStaging`` (yasa 0.8.1, BSD-3-Clause) on the chosen channels.

    The signals are resampled to 100 Hz by ephys (YASA's own rate, and its
    minimum input rate is 80 Hz; 50-Hz recordings are upsampled, which cannot
    restore content above 25 Hz -- the result carries a note) and given to
    YASA as an MNE RawArray in volts. Recordings shorter than 5 min (10
    epochs), YASA's stated minimum for reliable rolling features, are returned
    unstaged. The LightGBM classifier for each channel set
    (``clf_eeg[+eog][+emg]_lgb_*.joblib``, the one YASA picks) is loaded once
    per process. No demographic metadata is passed.
    """

    name = "yasa"
    MIN_EPOCHS = 10
    SFREQ = 100.0

    def __init__(self, use_emg: bool = True):
        try:
            import yasa
        except ImportError as e:  # pragma: no cover
            raise StagingBackendUnavailable(
                "the 'yasa' sleep-staging backend needs yasa (pip install 'ephys[staging]'; BSD-3-Clause)"
            ) from e
        self.use_emg = use_emg
        self.version = f"yasa {yasa.__version__}"

    @staticmethod
    def _classifier(sls) -> object:
        import glob
        import os
        import re

        import joblib
        import yasa

        name = "clf_eeg" + "".join(f"+{t}" for t in ("eog", "emg") if t in sls.ch_types)
        with _YASA_LOCK:
            if name not in _YASA_CLF:
                d = os.path.join(os.path.dirname(yasa.__file__), "classifiers")
                files = glob.glob(os.path.join(d, glob.escape(name) + "_lgb_*.joblib"))
                if not files:
                    raise RuntimeError(f"yasa has no classifier {name}")

                def ver(f):
                    return tuple(int(v) for v in re.findall(r"_lgb_([\d.]+)\.joblib$", f)[0].split("."))

                with _quiet():
                    _YASA_CLF[name] = joblib.load(max(files, key=ver))
        return _YASA_CLF[name]

    def stage(self, eeg_uv, sfreq, eog_uv=None, emg_uv=None, n_epochs=None) -> StagingResult:
        import mne
        import yasa

        eeg_uv = np.asarray(eeg_uv)
        if n_epochs is None:
            n_epochs = n_complete_epochs(len(eeg_uv), sfreq)
        sigs = {"eeg": eeg_uv, "eog": eog_uv, "emg": emg_uv if self.use_emg else None}
        sigs = {k: np.asarray(v) for k, v in sigs.items() if v is not None}
        k = min(_n_complete(len(v), sfreq, n_epochs) for v in sigs.values())
        if k < self.MIN_EPOCHS:
            return unstaged(
                n_epochs, self.version, f"YASA needs >= 5 min ({self.MIN_EPOCHS} complete epochs), got {k}"
            )
        n_in = int(epoch_bounds(k, sfreq)[-1])
        n_out = int(k * EPOCH_S * self.SFREQ)
        data = {}
        for t, v in sigs.items():
            x = _resample(v[:n_in], sfreq, self.SFREQ, n_out)
            if not np.isfinite(x).all():
                if t == "eeg":
                    return unstaged(n_epochs, self.version, "EEG has non-finite samples")
                continue
            data[t] = x * 1e-6  # µV -> V (MNE's unit); YASA converts back to µV
        names = list(data)
        info = mne.create_info(names, self.SFREQ, ch_types=names)
        with _quiet():
            raw = mne.io.RawArray(np.vstack([data[n] for n in names]), info, verbose="error")
            sls = yasa.SleepStaging(
                raw,
                eeg_name="eeg",
                eog_name="eog" if "eog" in data else None,
                emg_name="emg" if "emg" in data else None,
            )
            clf = self._classifier(sls)
            feats = sls.get_features()
            missing = set(clf.feature_name_) ^ set(feats.columns)
            if missing:
                raise RuntimeError(f"yasa features do not match its classifier: {sorted(missing)[:5]}")
            p = clf.predict_proba(feats[clf.feature_name_])
        probs = np.zeros((len(p), len(STAGES)), np.float64)
        for j, c in enumerate(clf.classes_):
            probs[:, _YASA_CLASS_TO_STAGE[str(c).upper()]] += p[:, j]
        probs /= probs.sum(axis=1, keepdims=True)
        stages = probs.argmax(axis=1).astype(np.int8)
        note = "" if k == n_epochs else f"{n_epochs - k} epoch(s) not completely covered by the signal"
        if sfreq < self.SFREQ:
            note = (note + "; " if note else "") + f"upsampled from {sfreq:g} Hz: no content above {sfreq / 2:g} Hz"
        res = _pad_result(stages, probs.astype(np.float32), n_epochs, self.version, note)
        res.channels = {n: n for n in names}
        return res


# --------------------------------------------------------------------------------------------
# registry and reader helper


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
    ValueError
        Unknown name.
    StagingBackendUnavailable
        The backend's optional package is not installed (an ``ImportError``).
    """
    key = (name or "none").strip().lower()
    if key not in BACKENDS:
        raise ValueError(f"unknown sleep-staging backend {name!r}; choose one of {', '.join(BACKENDS)}")
    with _STAGERS_LOCK:
        if key not in _STAGERS:
            if key == "ensemble":  # its parts are the process-wide ones (the lock is not re-entrant)
                parts = [_STAGERS.get(k) or _STAGERS.setdefault(k, {"gssc": GSSCStager, "yasa": YASAStager}[k]())
                         for k in ENSEMBLE]  # fmt: skip
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
                  n_epochs: int | None = None) -> StagingResult:  # fmt: skip
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


# --------------------------------------------------------------------------------------------
# evaluation helpers


#: DREAMS / Rechtschaffen & Kales codes -> stage index (S3 and S4 -> N3).
RK_CODES = {5: 0, 3: 1, 2: 2, 1: 3, 0: 3, 4: 4}


def hypnogram_from_rk(codes_5s, epoch_s: float = EPOCH_S) -> np.ndarray:
    """30-s stages (int8, 0..4 / -1) from 5-s R&K codes (DREAMS ``Hypnogram_*.txt``).

    Codes: 5 wake, 4 REM, 3 S1, 2 S2, 1 S3, 0 S4 (S3 and S4 -> N3); any other
    code (movement, unscored) is ``-1``. Each 30-s epoch takes the stage of the
    majority of its six 5-s values (``-1`` values vote too); a tie (3/3, 2/2/2)
    gives ``-1``. A trailing incomplete group is dropped.
    """
    per = int(round(epoch_s / 5.0))
    codes = np.asarray(codes_5s).astype(np.int64).ravel()
    mapped = np.array([RK_CODES.get(int(c), UNSTAGED) for c in codes], dtype=np.int64)
    n = len(mapped) // per
    out = np.full(n, UNSTAGED, np.int8)
    for i in range(n):
        vals, counts = np.unique(mapped[i * per : (i + 1) * per], return_counts=True)
        top = counts.max()
        if (counts == top).sum() == 1:
            out[i] = vals[counts.argmax()]
    return out


class Agreement(NamedTuple):
    """Epoch-by-epoch agreement over epochs both hypnograms stage."""

    accuracy: float
    kappa: float


def accuracy_kappa(pred, truth) -> Agreement:
    """Accuracy and Cohen's kappa over the epochs where both ``pred`` and ``truth`` are >= 0.

    Both are NaN when no epoch is staged in both; kappa is NaN when it is
    undefined (both hypnograms a single, identical stage).
    """
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    n = min(len(pred), len(truth))
    pred, truth = pred[:n], truth[:n]
    both = (pred >= 0) & (truth >= 0)
    if not both.any():
        return Agreement(float("nan"), float("nan"))
    p, t = pred[both], truth[both]
    acc = float((p == t).mean())
    # Cohen's kappa (same value as sklearn.metrics.cohen_kappa_score, without the dependency)
    labels = np.union1d(p, t)
    if len(labels) < 2:
        return Agreement(acc, float("nan"))
    cm = np.zeros((len(labels), len(labels)))
    np.add.at(cm, (np.searchsorted(labels, t), np.searchsorted(labels, p)), 1)
    expected = (cm.sum(axis=1) @ cm.sum(axis=0)) / cm.sum() ** 2
    kappa = (acc - expected) / (1 - expected) if expected < 1 else float("nan")
    return Agreement(acc, float(kappa))


__all__ = [
    "BACKENDS",
    "ENSEMBLE",
    "EPOCH_S",
    "EnsembleStager",
    "MIN_SFREQ",
    "STAGES",
    "UNSTAGED",
    "Agreement",
    "GSSCStager",
    "NoStagingChannelError",
    "NoStager",
    "StagingBackendUnavailable",
    "Stager",
    "StagingChannels",
    "StagingResult",
    "YASAStager",
    "accuracy_kappa",
    "choose_channels",
    "epoch_bounds",
    "get_stager",
    "hypnogram_from_rk",
    "load_gssc_nets",
    "n_complete_epochs",
    "stage_reader",
    "unstaged",
]
