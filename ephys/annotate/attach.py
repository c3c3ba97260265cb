"""Attach annotations to the 30-s epochs they overlap."""

from __future__ import annotations

from ephys.schemas import Annotation, EpochAnnotation


def overlaps(ann: Annotation, start_s: float, epoch_s: float) -> bool:
    """An annotation ``[onset, onset + duration]`` overlaps epoch ``[start, start + epoch_s)``.

    A zero-duration annotation belongs to the epoch that contains its onset.
    """
    return start_s <= ann.onset_s + ann.duration_s and ann.onset_s < start_s + epoch_s


def epoch_annotations(annotations: list[Annotation], start_s: float, epoch_s: float) -> list[EpochAnnotation]:
    """Annotations overlapping one epoch, onsets made relative to the epoch start (s)."""
    return [
        EpochAnnotation(onset_s=round(a.onset_s - start_s, 6), duration_s=a.duration_s, text=a.text)
        for a in annotations
        if overlaps(a, start_s, epoch_s)
    ]
