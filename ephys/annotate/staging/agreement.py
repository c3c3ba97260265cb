"""Agreement with expert hypnograms: R&K codes to 30-s stages, accuracy and Cohen's kappa."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ephys.annotate.staging.base import EPOCH_S, UNSTAGED


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
