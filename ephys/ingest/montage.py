"""Output montages: ``native`` (every EEG channel) and ``regional8``.

``regional8`` re-references the available 10-20 electrodes to their common
average and averages them into 8 regional groups (EPI-250k averages 19
electrodes into 8 regions; its exact grouping is unpublished, this one is ours)::

    L-frontal   Fp1 F3 F7       R-frontal   Fp2 F4 F8
    L-temporal  T7 P7           R-temporal  T8 P8
    L-central   C3 P3           R-central   C4 P4
    midline     Fz Cz Pz        occipital   O1 O2

Each region's channel is the mean of the electrodes present; a region with no
electrode is zero and ``False`` in the mask.
"""

from __future__ import annotations

import numpy as np

REGIONS: dict[str, tuple[str, ...]] = {
    "L-frontal": ("Fp1", "F3", "F7"),
    "R-frontal": ("Fp2", "F4", "F8"),
    "L-temporal": ("T7", "P7"),
    "R-temporal": ("T8", "P8"),
    "L-central": ("C3", "P3"),
    "R-central": ("C4", "P4"),
    "midline": ("Fz", "Cz", "Pz"),
    "occipital": ("O1", "O2"),
}
REGION_NAMES = list(REGIONS)


def region_coverage(electrodes: list[str]) -> list[bool]:
    """Per region (in :data:`REGION_NAMES` order): is at least one electrode present?"""
    have = set(electrodes)
    return [any(e in have for e in members) for members in REGIONS.values()]


def regional8_weights(electrodes: list[str]) -> tuple[np.ndarray, list[bool]]:
    """The ``regional8`` montage as a matrix: common-average reference over ``electrodes``, then
    the mean of each region's electrodes.

    Returns
    -------
    weights : ndarray, shape (8, n_electrodes), float32
        ``regions = weights @ x`` for ``x`` of shape ``(n_electrodes, n_samples)``.
    mask : list of 8 bool
    """
    n = len(electrodes)
    index = {e: i for i, e in enumerate(electrodes)}
    means = np.zeros((len(REGIONS), n))
    mask = []
    for r, members in enumerate(REGIONS.values()):
        rows = [index[e] for e in members if e in index]
        mask.append(bool(rows))
        means[r, rows] = 1.0 / max(len(rows), 1)
    car = np.eye(n) - 1.0 / n if n else np.zeros((0, 0))
    return (means @ car).astype(np.float32), mask


def regional8(x: np.ndarray, electrodes: list[str]) -> tuple[np.ndarray, list[bool]]:
    """Common-average reference over ``electrodes``, then mean per region (:func:`regional8_weights`).

    Parameters
    ----------
    x : ndarray, shape (n_electrodes, n_samples)
        Signals in µV of 10-20 electrodes named by ``electrodes``.

    Returns
    -------
    regions : ndarray, shape (8, n_samples), float32, µV
    mask : list of 8 bool
    """
    weights, mask = regional8_weights(electrodes)
    return weights @ np.asarray(x, dtype=np.float32), mask
