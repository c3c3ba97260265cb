"""The YASA backend (``yasa.SleepStaging`` 0.8.1, BSD-3-Clause)."""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings

import numpy as np

from ephys.annotate.staging.base import (EPOCH_S, STAGES, StagingResult, _n_complete, _pad_result, _resample,
                                         epoch_bounds, n_complete_epochs, unstaged)
from ephys.errors import StagingBackendUnavailable


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
