"""The GSSC backend (gssc 0.0.9, AGPL-3.0, imported lazily), driven by ephys around its bugs."""

from __future__ import annotations

import threading
import warnings

import numpy as np

from ephys.annotate.staging.base import (EPOCH_S, StagingResult, _n_complete, _pad_result, _resample, epoch_bounds,
                                         n_complete_epochs, unstaged)
from ephys.errors import StagingBackendUnavailable


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
