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

A montage is an object (:class:`NativeMontage`, :class:`Regional8Montage`, by name from
:func:`get_montage`) that owns its rules: which EEG channels it reads (:meth:`~Montage.pick`),
how many output rows it writes, which output mask remains once QC has found bad channels
(:meth:`~Montage.layout`), and how conditioned channels become output rows
(:meth:`~Montage.combine`). The pipeline asks it; it never branches on the name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ephys.errors import InsufficientCoverageError
from ephys.ingest.channels import TEN_TWENTY

if TYPE_CHECKING:  # pragma: no cover
    from ephys.schemas import ChannelInfo

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


def _first_by_name(channels: list[ChannelInfo]) -> dict[str, ChannelInfo]:
    seen: dict[str, ChannelInfo] = {}
    for c in channels:
        seen.setdefault(c.name, c)
    return seen


class Montage:
    """The rules of one output montage (see the module docstring). Subclasses set ``name``."""

    name: ClassVar[str]

    def pick(self, eeg: list[ChannelInfo], min_regions: int, path: str) -> tuple[list[ChannelInfo], list[str], list[bool]]:
        """``(channels to read, output channel names, output mask)`` from a recording's usable EEG channels
        (``eeg``, in header order; of channels with the same name the first is used, e.g. C3-A1 and C3-A2).

        Raises
        ------
        InsufficientCoverageError
            Too little of what the montage needs is present (``path`` names the recording).
        """
        raise NotImplementedError

    def n_rows(self, n_picked: int) -> int:
        """Output channels (rows of each epoch) for ``n_picked`` channels read."""
        raise NotImplementedError

    def layout(self, picked: list[ChannelInfo], bad: dict[int, str], min_regions: int, path: str) -> list[bool]:
        """The output mask once the channels at positions ``bad`` (position in ``picked`` -> reason) are left out
        (the output names do not change).

        Raises
        ------
        InsufficientCoverageError
            The channels left no longer cover what the montage needs.
        """
        raise NotImplementedError

    def combine(self, x: np.ndarray, picked: list[ChannelInfo], good: list[int]) -> np.ndarray:
        """Output rows ``(n_rows, n_samples)`` float32 µV from conditioned channels ``x`` ``(len(picked),
        n_samples)`` float32 µV, whose rows not in ``good`` are zero."""
        raise NotImplementedError


class NativeMontage(Montage):
    """Every EEG channel as recorded, in header order; a bad channel stays a zero row with its mask bit cleared."""

    name = "native"

    def pick(self, eeg, min_regions, path):
        picked = list(_first_by_name(eeg).values())
        return picked, [c.name for c in picked], [True] * len(picked)

    def n_rows(self, n_picked):
        return n_picked

    def layout(self, picked, bad, min_regions, path):
        return [i not in bad for i in range(len(picked))]

    def combine(self, x, picked, good):
        return x


class Regional8Montage(Montage):
    """The 19 10-20 electrodes averaged into the 8 :data:`REGIONS` (:func:`regional8_weights`); needs
    ``min_regions`` regions covered, before and after bad channels are left out."""

    name = "regional8"

    def pick(self, eeg, min_regions, path):
        by_name = _first_by_name(eeg)
        picked = [by_name[e] for e in TEN_TWENTY if e in by_name]
        cover = region_coverage([c.name for c in picked])
        if sum(cover) < min_regions:
            rest = [c.name for c in eeg if c.name not in TEN_TWENTY][:6]
            raise InsufficientCoverageError(
                f"insufficient 10-20 coverage for regional8: {sum(cover)} of 8 regions (needs {min_regions}) "
                f"from {len(picked)} of 19 electrodes" + (f"; other EEG channels: {', '.join(rest)}" if rest else ""),
                path,
            )
        return picked, list(REGION_NAMES), cover

    def n_rows(self, n_picked):
        return len(REGION_NAMES)

    def layout(self, picked, bad, min_regions, path):
        cover = region_coverage([picked[i].name for i in range(len(picked)) if i not in bad])
        if sum(cover) < min_regions:
            why = ", ".join(f"{picked[i].name} {r}" for i, r in sorted(bad.items()))
            raise InsufficientCoverageError(
                f"insufficient 10-20 coverage for regional8 after excluding bad channels ({why}): "
                f"{sum(cover)} of 8 regions (needs {min_regions})", path)
        return cover

    def combine(self, x, picked, good):
        weights = np.zeros((len(REGION_NAMES), len(picked)), np.float32)
        weights[:, good] = regional8_weights([picked[i].name for i in good])[0]
        return weights @ x


MONTAGES: dict[str, Montage] = {m.name: m for m in (Regional8Montage(), NativeMontage())}


def get_montage(name: str) -> Montage:
    """The montage called ``name`` (``"regional8"`` or ``"native"``). Raises ``KeyError`` for another name
    (:class:`~ephys.schemas.IngestConfig` only admits these two)."""
    return MONTAGES[name]
