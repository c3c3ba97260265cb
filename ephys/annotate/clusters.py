"""Group a corpus's annotation texts into clusters, so the taxonomy can grow from a centre's own words.

EPI-250k's design card clusters the free-text annotations of its archive before mapping them to a
clinical taxonomy. Here (:func:`cluster_texts`):

1. each distinct text (already scrubbed of names: these are catalog rows) is normalised as the
   matcher normalises it (:func:`ephys.annotate.taxonomy.normalise`: case, umlauts, punctuation)
   with digit runs masked (``photic 10 hz`` and ``photic 12 hz`` are one key), and counted;
2. keys are visited from the most frequent down; each joins the first cluster whose leader it
   resembles (rapidfuzz ``token_sort_ratio`` >= ``threshold``, default 85: word order free,
   misspellings and inflections close; or ``ratio`` of both without spaces, for words written
   apart or together), else founds a new cluster (greedy leader clustering:
   deterministic, O(keys x clusters), no distance matrix; Hartigan 1975, *Clustering Algorithms*,
   ch. 3);
3. each cluster gets its occurrence count, its most frequent text as representative, a language
   (``de``/``en`` by the taxonomy's keywords and function words, else ``unknown``), the label the
   matcher gives the representative (``category/subcategory``, or None) and the share of its
   occurrences the matcher labels.

:func:`proposals_yaml` writes the unlabelled clusters as a YAML patch of proposed keywords for a
reviewer, who fills in a subcategory (or deletes the entry); :func:`apply_proposals` adds the
reviewed keywords to a taxonomy file, validated by :func:`~ephys.annotate.taxonomy.load_taxonomy`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ephys.annotate.taxonomy import Matcher, Taxonomy, default_matcher, load_taxonomy, normalise
from ephys.errors import TaxonomyError

DEFAULT_THRESHOLD = 85.0
#: Distinct normalised texts clustered at most (the most frequent); the rest are counted, not clustered.
MAX_KEYS = 20_000
_DIGITS = re.compile(r"\d+(?:[.,]\d+)?")
_DE_WORDS = frozenset("und oder der die das den dem des ein eine einer nicht kein keine keinen mit ohne bei nach vor "
                      "auf zu im in am an ist sind wird wurde links rechts beidseits pat patient patientin schlaeft "
                      "wach augen offen geschlossen".split())
_EN_WORDS = frozenset("and or the a an of not no with without at after before on to in is are was were left right "
                      "bilateral patient pt asleep awake eyes open closed".split())


@dataclass
class Cluster:
    """One group of similar annotation texts.

    ``members``: ``(text, count)`` most frequent first (every distinct text of the cluster);
    ``label``: ``category/subcategory`` the matcher gives ``representative`` or None;
    ``labelled_share``: fraction of the cluster's occurrences with any label.
    """

    id: int
    count: int
    representative: str
    key: str
    language: str
    label: str | None
    labelled_share: float
    members: list[tuple[str, int]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["members"] = [list(m) for m in self.members]
        return d


@dataclass
class Clustering:
    """The clusters of a corpus (largest first) and what was left out."""

    clusters: list[Cluster]
    n_texts: int  # occurrences
    n_distinct: int
    n_not_clustered: int  # occurrences of keys beyond MAX_KEYS
    threshold: float
    taxonomy_version: str

    @property
    def unlabelled(self) -> list[Cluster]:
        return [c for c in self.clusters if c.label is None]

    def to_dict(self) -> dict[str, Any]:
        return dict(taxonomy_version=self.taxonomy_version, threshold=self.threshold, n_texts=self.n_texts,
                    n_distinct=self.n_distinct, n_not_clustered=self.n_not_clustered, n_clusters=len(self.clusters),
                    clusters=[c.to_dict() for c in self.clusters])


def cluster_key(text: str) -> str:
    """The text as clusters compare it: :func:`normalise` with digit runs as ``#``."""
    return _DIGITS.sub("#", normalise(text))


def _language_words(taxonomy: Taxonomy) -> tuple[frozenset[str], frozenset[str]]:
    de, en = set(_DE_WORDS), set(_EN_WORDS)
    for s in taxonomy.subcategories:
        for k in s.de:
            de.update(normalise(k).split())
        for k in s.en:
            en.update(normalise(k).split())
    shared = de & en
    return frozenset(de - shared), frozenset(en - shared)


def language(key: str, words: tuple[frozenset[str], frozenset[str]]) -> str:
    """``de``, ``en`` or ``unknown`` for a normalised text, by its words found in one language only."""
    toks = key.split()
    n_de, n_en = sum(t in words[0] for t in toks), sum(t in words[1] for t in toks)
    if n_de == n_en:
        return "unknown"
    return "de" if n_de > n_en else "en"


def cluster_texts(counts: dict[str, int] | Counter, matcher: Matcher | None = None, *,
                  threshold: float = DEFAULT_THRESHOLD, max_keys: int = MAX_KEYS) -> Clustering:
    """Cluster annotation texts given as ``{text: occurrences}`` (see the module docstring).

    Returns
    -------
    Clustering
        Clusters sorted by occurrences (then representative), ids from 1 in that order.

    Raises
    ------
    ValueError
        When ``threshold`` is not in (0, 100].
    """
    from rapidfuzz import fuzz, process

    if not 0 < threshold <= 100:
        raise ValueError(f"threshold must be in (0, 100], got {threshold}")
    matcher = matcher or default_matcher()
    by_key: dict[str, Counter] = {}
    for text, n in counts.items():
        if not text or not text.strip() or n <= 0:
            continue
        by_key.setdefault(cluster_key(text), Counter())[text] += n
    keys = sorted(by_key, key=lambda k: (-sum(by_key[k].values()), k))
    kept, dropped = keys[:max_keys], keys[max_keys:]
    leaders: list[str] = []
    squashed: list[str] = []  # leaders without spaces: "hoch geklappt" = "hochgeklappt"
    groups: list[list[str]] = []
    for k in kept:
        hit = None
        if leaders:
            hit = process.extractOne(k, leaders, scorer=fuzz.token_sort_ratio, score_cutoff=threshold)
            hit = hit or process.extractOne(k.replace(" ", ""), squashed, scorer=fuzz.ratio, score_cutoff=threshold)
        if hit is None:
            leaders.append(k)
            squashed.append(k.replace(" ", ""))
            groups.append([k])
        else:
            groups[hit[2]].append(k)
    words = _language_words(matcher.taxonomy)
    clusters = []
    for keys_of in groups:
        members = Counter()
        for k in keys_of:
            members.update(by_key[k])
        ranked = sorted(members.items(), key=lambda x: (-x[1], x[0]))
        total = sum(members.values())
        rep = ranked[0][0]
        best = matcher.best(rep)
        labelled = sum(n for t, n in ranked if matcher.best(t) is not None)
        clusters.append(Cluster(0, total, rep, keys_of[0], language(keys_of[0], words), best.path if best else None,
                                round(labelled / total, 3), ranked))
    clusters.sort(key=lambda c: (-c.count, c.representative))
    for i, c in enumerate(clusters, 1):
        c.id = i
    return Clustering(clusters, n_texts=sum(n for c in by_key.values() for n in c.values()), n_distinct=len(counts),
                      n_not_clustered=sum(sum(by_key[k].values()) for k in dropped), threshold=threshold,
                      taxonomy_version=matcher.taxonomy.version)


PATCH_HEADER = """\
# Proposed taxonomy keywords from `ephys annotations cluster` (taxonomy {version}).
# Review each entry: set `subcategory` to CATEGORY/SUBCATEGORY of the taxonomy (e.g. state/eyes_open),
# trim `keywords` to the spellings that mean it, or delete the entry. Then:
#   ephys annotations apply THIS_FILE -o site-taxonomy.yaml     (keywords go to the `de` or `en` list)
#   ephys ingest ... --taxonomy site-taxonomy.yaml / ephys catalog relabel --taxonomy site-taxonomy.yaml
"""


def proposals_yaml(clustering: Clustering, *, top: int = 50, min_count: int = 2) -> str:
    """The ``top`` largest unlabelled clusters (``min_count`` occurrences or more) as a YAML patch."""
    entries = []
    for c in clustering.unlabelled:
        if c.count < min_count or len(entries) >= top:
            continue
        entries.append({"cluster": c.id, "count": c.count, "language": c.language, "subcategory": None,
                        "keywords": [t for t, _ in c.members[:10]]})
    body = yaml.safe_dump({"taxonomy_version": clustering.taxonomy_version, "proposals": entries},
                          sort_keys=False, allow_unicode=True, width=120)
    return PATCH_HEADER.format(version=clustering.taxonomy_version) + body


def apply_proposals(patch: str | Path, taxonomy: str | Path | None, dest: str | Path) -> dict[str, int]:
    """Add the reviewed keywords of ``patch`` to ``taxonomy`` (a YAML file; None: the packaged one) and
    write the result to ``dest`` (written to a temporary file, validated, then renamed).

    A proposal with ``subcategory: CATEGORY/SUBCATEGORY`` adds its ``keywords`` to that subcategory's
    ``de`` list (language ``de``) or ``en`` list (otherwise); keywords the taxonomy already matches to
    that subcategory are skipped. Proposals without a subcategory are left out. The version's last
    field is increased (``2026.11.1`` -> ``2026.11.2``).

    Returns ``{"applied": proposals used, "keywords": keywords added, "skipped": proposals left out}``.

    Raises
    ------
    TaxonomyError (a ValueError)
        A patch that is not a proposals file, an unknown subcategory, or a result the taxonomy
        validator refuses (a keyword now in two subcategories, a cue word, ...); ``dest`` is not written.
    """
    from importlib import resources

    try:
        doc = yaml.safe_load(Path(patch).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TaxonomyError(f"{patch}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("proposals"), list):
        raise TaxonomyError(f"{patch}: not a proposals file (no `proposals:` list)")
    text = (Path(taxonomy).read_text(encoding="utf-8") if taxonomy is not None
            else resources.files("ephys.annotate").joinpath("taxonomy.yaml").read_text(encoding="utf-8"))
    data = yaml.safe_load(text)
    current = Matcher(load_taxonomy(taxonomy))
    subs = {f"{c['id']}/{s['id']}": s for c in data["categories"] for s in c["subcategories"]}
    applied = added = skipped = 0
    for i, p in enumerate(doc["proposals"], 1):
        target = (p or {}).get("subcategory")
        if not target:
            skipped += 1
            continue
        if target not in subs:
            raise TaxonomyError(f"{patch}: proposal {i}: no subcategory {target!r} in the taxonomy")
        lang = "de" if p.get("language") == "de" else "en"
        new = []
        for kw in p.get("keywords") or []:
            best = current.best(str(kw))
            if best is not None and best.path == target and not best.negated:
                continue
            new.append(str(kw))
        subs[target].setdefault(lang, [])
        subs[target][lang] = list(subs[target][lang] or []) + new
        applied += 1
        added += len(new)
    head, _, last = str(data["version"]).rpartition(".")
    data["version"] = f"{head}.{int(last) + 1}"
    out = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120)
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_text(out, encoding="utf-8")
    try:
        load_taxonomy(tmp)
    except ValueError as exc:
        tmp.unlink(missing_ok=True)
        raise TaxonomyError(f"{patch}: the patched taxonomy is not valid: {str(exc).replace(str(tmp), str(dest))}") from None
    tmp.replace(dest)
    return {"applied": applied, "keywords": added, "skipped": skipped}
