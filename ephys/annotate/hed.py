"""HED tags for taxonomy labels, from the taxonomy's own HED-SCORE references, checked with hedtools.

Each subcategory of the taxonomy cites the HED-SCORE 2.1.0 library tags it stands for in ``refs``
(``"HED-SCORE: Myoclonic-seizure, Tonic-seizure, ..."``; artifact tags that SCORE v2 moved to the standard
schema as ``"HED 8.4: Eye-blink-artifact, ..."``). :func:`hed_tags` turns each into one HED tag:

- the cited tags that exist in the schema (:data:`HED_VERSION`, HED 8.4.0 with the SCORE 2.1.0 library under
  the ``sc:`` prefix, both bundled with hedtools, so no download) are looked up;
- the tag is their deepest common ancestor in the schema tree (``Sleep-stage-N1`` ... ``Sleep-stage-REM`` give
  ``Sleep-stage-reached``; ``Eye-blink-artifact``, ``Eye-movement-artifact`` give ``Eye-artifact``), so it is true
  of every annotation the subcategory labels; when that ancestor is a top-level node or a ``*-property`` grouping
  node (``Spike`` and ``Runs-of-rapid-spikes`` meet at ``Signal-morphology-property``: too vague to say anything),
  the first cited tag is used instead (so ``motor`` seizures, whose cited tags span three branches, are tagged
  with its first, ``Myoclonic-seizure``: a known imprecision of a one-tag-per-subcategory mapping);
- subcategories that cite no HED tag, or only tags the schema lacks, get none (``"n/a"`` in a BIDS column), and
  so does one whose common ancestor the schema does not allow alone (``Sleep-stage-reached`` requires a child:
  :func:`stage_tag` tags such an annotation by the stage its text names).

Sleep stages (AASM W, N1, N2, N3, REM) map to ``Awake`` (HED 8.4 standard) and ``sc:Sleep-stage-N1`` ...
``sc:Sleep-stage-REM``. Every string is validated by hedtools' ``HedString.validate`` before it is returned.

Sources: HED specification 3.2 (hed-specification.readthedocs.io), library schema prefixes and partnered
schemas; hed-schemas ``library_schemas/score/hedxml/HED_score_2.1.0.xml``; hedtools (hed-python, MIT).

hedtools is an optional dependency (``pip install 'ephys[bids]'``); :class:`~ephys.errors.RunError` says so.
"""

from __future__ import annotations

import re
from functools import lru_cache

from ephys.errors import RunError

#: The HED schemas tags are validated against (``HEDVersion`` of a BIDS dataset_description.json).
HED_VERSION = ["8.4.0", "sc:score_2.1.0"]
#: Prefix of the SCORE library's tags.
SCORE_PREFIX = "sc:"
#: AASM sleep stage -> HED tag.
STAGE_TAGS = {"W": "Awake", "N1": "sc:Sleep-stage-N1", "N2": "sc:Sleep-stage-N2", "N3": "sc:Sleep-stage-N3",
              "REM": "sc:Sleep-stage-REM"}

_STAGE_RE = re.compile(r"\b(?:(W|N1|N2|N3|REM|R)|(?:stage|stadium|schlafstadium|s)\s*-?\s*([1-4]|w|r|rem))\b", re.IGNORECASE)
_REF_RE = re.compile(r"^\s*(HED-SCORE|HED 8\.4)\s*:\s*(.*)$", re.DOTALL)


def _hed():
    try:
        from hed import HedString
        from hed.schema import load_schema_version
    except ImportError:
        raise RunError("HED tags need hedtools: pip install 'ephys[bids]'") from None
    return HedString, load_schema_version


@lru_cache(maxsize=1)
def hed_schema():
    """The HED schema group of :data:`HED_VERSION` (hedtools; loaded once, from hedtools' bundled copies)."""
    _, load_schema_version = _hed()
    return load_schema_version(list(HED_VERSION))


def cited_tags(refs: tuple[str, ...] | list[str]) -> list[str]:
    """The HED tags a subcategory's ``refs`` cite, in order, SCORE's with the ``sc:`` prefix.

    Parenthesised remarks and ``+ ...`` qualifiers are dropped (``"Spike-and-slow-wave + generalized location"``
    cites ``sc:Spike-and-slow-wave``); references of other sources (ACNS, TUH, clinical usage) are ignored.
    """
    out: list[str] = []
    for ref in refs:
        m = _REF_RE.match(ref)
        if not m:
            continue
        prefix = SCORE_PREFIX if m.group(1) == "HED-SCORE" else ""
        for part in re.sub(r"\([^)]*\)", "", m.group(2)).split(","):
            tag = part.split("+")[0].strip()
            if tag and re.fullmatch(r"[A-Za-z0-9-]+", tag):
                out.append(prefix + tag)
    return out


def _long_name(tag: str) -> str | None:
    schema = hed_schema()
    prefix, _, short = tag.rpartition(":")
    entry = schema.schema_for_namespace(f"{prefix}:" if prefix else "").tags.get(short.lower())
    return None if entry is None else entry.long_tag_name


def hed_issues(hed_string: str) -> list[str]:
    """hedtools' validation messages for ``hed_string`` against :data:`HED_VERSION` (empty when valid)."""
    HedString, _ = _hed()
    return [str(i.get("message", i)).strip() for i in HedString(hed_string, hed_schema()).validate()]


def _common_tag(tags: list[str]) -> str | None:
    longs = [(t, _long_name(t)) for t in tags]
    longs = [(t, ln) for t, ln in longs if ln]
    if not longs:
        return None
    if len(longs) == 1:
        return longs[0][0]
    parts = [ln.split("/") for _, ln in longs]
    common = []
    for level in zip(*parts):
        if len(set(level)) > 1:
            break
        common.append(level[0])
    if len(common) < 2 or common[-1].endswith("-property"):  # a top-level or grouping node says too little
        return longs[0][0]
    prefix = longs[0][0].rpartition(":")[0]
    return f"{prefix}:{common[-1]}" if prefix else common[-1]


def hed_tags(taxonomy=None) -> dict[str, str]:
    """``{"category/subcategory": HED tag}`` for every subcategory of ``taxonomy`` (default: the packaged one)
    that cites a HED tag the schema has (module docstring); each tag validated by hedtools.

    Raises
    ------
    RunError
        hedtools is not installed.
    """
    from ephys.annotate.taxonomy import load_taxonomy

    taxonomy = taxonomy if taxonomy is not None else load_taxonomy()
    return dict(_tags_of(tuple((s.path, s.refs) for s in taxonomy.subcategories)))


@lru_cache(maxsize=4)
def _tags_of(subs: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[tuple[str, str], ...]:
    out = []
    for path, refs in subs:
        tag = _common_tag(cited_tags(refs))
        if tag is not None and not hed_issues(tag):
            out.append((path, tag))
    return tuple(out)


def stage_tag(text: str) -> str | None:
    """The HED tag of the AASM sleep stage an annotation's text names (``"Sleep stage N2"``, ``"Stadium 3"``,
    ``"S4"`` (R&K 3 and 4 are AASM N3), ``"REM"``), or ``None``."""
    m = _STAGE_RE.search(text or "")
    if not m:
        return None
    code = (m.group(1) or m.group(2)).upper()
    stage = {"1": "N1", "2": "N2", "3": "N3", "4": "N3", "R": "REM"}.get(code, code)
    return STAGE_TAGS.get(stage)
