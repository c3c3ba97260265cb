"""Attach annotations to the 30-s epochs they overlap."""

from __future__ import annotations

from ephys.schemas import Annotation, EpochAnnotation


def overlaps(ann: Annotation, start_s: float, epoch_s: float) -> bool:
    """An annotation ``[onset, onset + duration]`` overlaps epoch ``[start, start + epoch_s)``.

    A zero-duration annotation belongs to the epoch that contains its onset.
    """
    return start_s <= ann.onset_s + ann.duration_s and ann.onset_s < start_s + epoch_s


def label_annotations(annotations: list[Annotation], taxonomy: str | None = None) -> list[Annotation]:
    """Each annotation with the primary taxonomy label of its text (:meth:`Matcher.best`), or none.

    ``taxonomy``: a taxonomy YAML file (None: the packaged one). Uses the process-wide matcher of that
    file, whose cache makes repeated texts (every "Augen zu" of an archive) free.
    """
    from ephys.annotate.taxonomy import taxonomy_matcher

    matcher = taxonomy_matcher(taxonomy)
    out = []
    for a in annotations:
        m = matcher.best(a.text)
        out.append(a if m is None else a.model_copy(update=dict(
            category=m.category, subcategory=m.subcategory, keyword=m.keyword, negated=m.negated,
            uncertain=m.uncertain, match_score=round(float(m.score), 1))))
    return out


def epoch_annotations(annotations: list[Annotation], start_s: float, epoch_s: float) -> list[EpochAnnotation]:
    """Annotations overlapping one epoch, onsets made relative to the epoch start (s)."""
    return [
        EpochAnnotation(onset_s=round(a.onset_s - start_s, 6), duration_s=a.duration_s, text=a.text,
                        category=a.category, subcategory=a.subcategory, negated=a.negated, uncertain=a.uncertain)
        for a in annotations
        if overlaps(a, start_s, epoch_s)
    ]
