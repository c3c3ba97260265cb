"""The matcher: annotation texts -> taxonomy subcategories with negation and uncertainty (rules:
:mod:`ephys.annotate.taxonomy`)."""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rapidfuzz import fuzz, process

from ephys.annotate.taxonomy.cues import CUE_MAX_LEN, CUES, NO_HEAD_AFTER, TERM_PUNCT, TERM_WORDS, Cue
from ephys.annotate.taxonomy.schema import CATEGORY_IDS, Subcategory, Taxonomy, load_taxonomy
from ephys.annotate.taxonomy.text import CACHE_SIZE, STEM_MIN_TOKEN, normalise, stem

#: Minimum length (letters) of a text token and of a keyword token for fuzzy comparison.
FUZZY_MIN_LEN = 8
#: Minimum ``rapidfuzz.fuzz.ratio`` for a fuzzy token match (see the package docstring).
FUZZY_THRESHOLD = 91.0
#: Minimum length of a German keyword used as a compound part.
COMPOUND_MIN_PART = 5
#: Minimum length of the remainder of a compound token.
COMPOUND_MIN_REST = 4
#: Tokens a negation/uncertainty cue reaches forward / backward.
PRE_WINDOW = 5
POST_WINDOW = 3

_METHOD_RANK = {"exact": 0, "stem": 1, "fuzzy": 2, "compound": 3, "pattern": 4}


@dataclass(frozen=True, slots=True)
class Match:
    """One taxonomy keyword found in an annotation text.

    ``keyword`` is the keyword as written in the taxonomy (or the pattern);
    ``matched_text`` the normalised text span it matched (the whole token for a
    compound part); ``start``/``end`` token indices into ``normalise(text).split()``;
    ``score`` 100 for exact, inflection, compound and pattern matches, the rapidfuzz
    ratio (91 to < 100) for fuzzy ones; ``method`` one of exact, stem, compound, fuzzy,
    pattern; ``weak`` whether the keyword is a weak one.
    """

    category: str
    subcategory: str
    keyword: str
    matched_text: str
    negated: bool
    uncertain: bool
    score: float
    method: str
    start: int
    end: int
    weak: bool = False
    generic: bool = False

    @property
    def path(self) -> str:
        """``"category/subcategory"``."""
        return f"{self.category}/{self.subcategory}"


@dataclass(frozen=True, slots=True)
class _Entry:
    sub: Subcategory
    keyword: str  # as written
    norm: str
    tokens: tuple[str, ...]
    stems: tuple[str, ...]
    is_abbr: bool
    lang: str  # "en" | "de" | "abbr"
    weak: bool


@dataclass(slots=True)
class _Cand:
    entry: _Entry | None
    start: int
    end: int
    method: str
    score: float
    chars: tuple[int, int] | None = None  # sub-token span for compound parts
    cue: Cue | None = None
    negated: bool = False

    def key(self) -> tuple:
        n_tok = self.end - self.start
        kw_len = len(self.entry.norm) if self.entry else 0
        # a compound's first part (modifier) is preferred to an overlapping last part (head):
        # "Augenbewegung|sartefakt" is an eye artifact, not a movement artifact
        part = 1 if self.chars is not None and self.chars[0] > 0 else 0
        return (-n_tok, 0 if self.cue else 1, _METHOD_RANK.get(self.method, 0), part, self.start, -kw_len)


class Matcher:
    """Match annotation texts against a :class:`Taxonomy` (rules: module docstring).

    >>> m = Matcher(load_taxonomy())
    >>> [(x.path, x.negated) for x in m.match("no sz but muscle artifact")]
    [('seizure/seizure', True), ('artifact/muscle', False)]
    >>> m.best("no sz but muscle artifact").path
    'artifact/muscle'
    """

    def __init__(self, taxonomy: Taxonomy | None = None, *, cache_size: int = CACHE_SIZE) -> None:
        self.taxonomy = taxonomy if taxonomy is not None else load_taxonomy()
        self._cache_size = cache_size
        self._by_first: dict[str, list[_Entry]] = {}
        self._by_first_stem: dict[str, list[_Entry]] = {}
        self._de_prefix: dict[str, _Entry] = {}
        self._de_head: dict[str, _Entry] = {}
        self._closed: dict[str, list[_Entry]] = {}
        self._patterns: list[tuple[re.Pattern[str], str, Subcategory]] = []
        for sub in self.taxonomy.subcategories:
            for lang, words in (("en", sub.en), ("de", sub.de), ("abbr", sub.abbr)):
                for kw in words:
                    self._add(sub, kw, lang)
            for p in sub.patterns:
                self._patterns.append((re.compile(p), p, sub))
        self._fuzzy_surface = sorted(k for k in self._by_first if k.isalpha() and len(k) >= FUZZY_MIN_LEN)
        self._fuzzy_stems = sorted(k for k in self._by_first_stem if k.isalpha() and len(k) >= FUZZY_MIN_LEN)
        self._cached = functools.lru_cache(maxsize=cache_size)(self._match_uncached)

    # -- index -------------------------------------------------------------------------
    def _add(self, sub: Subcategory, kw: str, lang: str) -> None:
        norm = normalise(kw)
        toks = tuple(norm.split())
        is_abbr = lang == "abbr"
        entry = _Entry(
            sub=sub, keyword=kw, norm=norm, tokens=toks,
            stems=tuple(t if is_abbr else stem(t) for t in toks),
            is_abbr=is_abbr, lang=lang, weak=norm in sub.weak,
        )
        self._by_first.setdefault(toks[0], []).append(entry)
        if is_abbr:
            if len(toks) == 1 and len(toks[0]) >= 3 and toks[0].isalpha():
                self._by_first.setdefault(toks[0] + "s", []).append(entry)  # "PLEDs"
            return
        self._by_first_stem.setdefault(entry.stems[0], []).append(entry)
        if len(toks) > 1 and all(len(x) >= 3 and x.isalpha() for x in toks):
            # also the closed form, exact or inflected only: "spike wave" ~ "spikewave"
            joined = "".join(toks)
            closed = _Entry(sub, kw, norm, (joined,), (stem(joined),), False, lang, entry.weak)
            self._closed.setdefault(joined, []).append(closed)
            self._closed.setdefault(closed.stems[0], []).append(closed)
        if lang == "de" and len(toks) == 1 and toks[0].isalpha() and len(toks[0]) >= COMPOUND_MIN_PART:
            self._de_prefix.setdefault(toks[0], entry)
            self._de_head.setdefault(entry.stems[0], entry)

    def __getstate__(self) -> dict[str, Any]:
        # pickle (e.g. to a Dask worker) as taxonomy + cache bound; the index and an
        # empty cache are rebuilt on arrival
        return {"taxonomy": self.taxonomy, "cache_size": self._cache_size}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["taxonomy"], cache_size=state["cache_size"])

    # -- public API --------------------------------------------------------------------
    def match(self, text: str) -> list[Match]:
        """All keyword matches in ``text``, in text order (cached per unique string)."""
        return list(self._cached(text))

    def best(self, text: str) -> Match | None:
        """The primary label of ``text`` (ordering: module docstring), or ``None``."""
        found = self._cached(text)
        if not found:
            return None
        specific = {m.category for m in found if not (m.negated or m.weak or m.generic)}
        return min(
            found,
            key=lambda m: (
                m.negated,
                m.weak,
                m.generic and m.category in specific,
                -m.score,
                -len(normalise(m.keyword)),
                m.start,
            ),
        )

    def cache_info(self) -> functools._CacheInfo:
        """Hit/miss statistics of the per-string result cache."""
        return self._cached.cache_info()

    def cache_clear(self) -> None:
        self._cached.cache_clear()

    def summarise(self, texts: Iterable[str]) -> dict[str, Any]:
        """See :func:`summarise`."""
        return summarise(texts, matcher=self)

    # -- matching ----------------------------------------------------------------------
    def _match_uncached(self, text: str) -> tuple[Match, ...]:
        norm = normalise(text)
        toks = norm.split()
        if not toks:
            return ()
        cands = self._cue_candidates(toks) + self._term_candidates(toks)
        chosen = self._resolve(cands)
        cues = [c for c in chosen if c.cue is not None]
        terms = [c for c in chosen if c.entry is not None]
        out: list[Match] = []
        for t in terms:
            neg, unc = self._scope(t, toks, cues)
            e = t.entry
            out.append(
                Match(
                    category=e.sub.category, subcategory=e.sub.id, keyword=e.keyword,
                    matched_text=" ".join(toks[t.start : t.end]), negated=neg or t.negated,
                    uncertain=unc, score=round(float(t.score), 1), method=t.method,
                    start=t.start, end=t.end, weak=e.weak, generic=e.sub.generic,
                )
            )
        if not out:
            for rx, p, sub in self._patterns:
                if rx.fullmatch(norm):
                    neg, unc = False, False
                    out.append(
                        Match(sub.category, sub.id, p, norm, neg, unc, 100.0, "pattern", 0, len(toks), True, sub.generic)
                    )
                    break
        out.sort(key=lambda m: (m.start, m.end))
        return tuple(out)

    def _cue_candidates(self, toks: list[str]) -> list[_Cand]:
        out = []
        for i in range(len(toks)):
            for n in range(1, min(CUE_MAX_LEN, len(toks) - i) + 1):
                cue = CUES.get(tuple(toks[i : i + n]))
                if cue is not None:
                    out.append(_Cand(None, i, i + n, "exact", 100.0, cue=cue))
        return out

    def _token_score(self, t: str, k: str, kst: str, abbr: bool) -> tuple[str, float] | None:
        if t == k:
            return "exact", 100.0
        if abbr:
            return ("exact", 100.0) if (len(k) >= 3 and k.isalpha() and t == k + "s") else None
        if len(t) >= STEM_MIN_TOKEN and len(k) >= STEM_MIN_TOKEN and stem(t) == kst:
            return "stem", 100.0
        if (
            t.isalpha() and k.isalpha() and t[0] == k[0]
            and len(t) >= FUZZY_MIN_LEN and len(k) >= FUZZY_MIN_LEN
        ):
            sc = max(fuzz.ratio(t, k), fuzz.ratio(stem(t), kst))
            if sc >= FUZZY_THRESHOLD:
                return "fuzzy", min(sc, 99.9)
        return None

    def _term_candidates(self, toks: list[str]) -> list[_Cand]:
        out: list[_Cand] = []
        seen: set[tuple[int, int, int]] = set()
        for i, t in enumerate(toks):
            entries: dict[int, _Entry] = {}
            for e in self._by_first.get(t, ()):
                entries[id(e)] = e
            if len(t) >= STEM_MIN_TOKEN:
                for e in self._by_first_stem.get(stem(t), ()):
                    entries[id(e)] = e
            for e in (*self._closed.get(t, ()), *self._closed.get(stem(t), ())):
                if t == e.tokens[0] or (len(t) >= STEM_MIN_TOKEN and stem(t) == e.stems[0]):
                    entries[id(e)] = e
            if t.isalpha() and len(t) >= FUZZY_MIN_LEN:
                for choices, probe in ((self._fuzzy_surface, t), (self._fuzzy_stems, stem(t))):
                    for key, _sc, _ in process.extract(
                        probe, choices, scorer=fuzz.ratio, score_cutoff=FUZZY_THRESHOLD, limit=None
                    ):
                        src = self._by_first if choices is self._fuzzy_surface else self._by_first_stem
                        for e in src.get(key, ()):
                            entries[id(e)] = e
            for e in entries.values():
                n = len(e.tokens)
                if i + n > len(toks):
                    continue
                methods, scores = [], []
                for j in range(n):
                    r = self._token_score(toks[i + j], e.tokens[j], e.stems[j], e.is_abbr)
                    if r is None:
                        break
                    methods.append(r[0])
                    scores.append(r[1])
                else:
                    method = max(methods, key=_METHOD_RANK.__getitem__)
                    k = (i, i + n, id(e))
                    if k not in seen:
                        seen.add(k)
                        out.append(_Cand(e, i, i + n, method, min(scores)))
            out.extend(self._compound_candidates(i, t))
            # the text splits what a keyword writes closed: "post-ictal" ~ "postictal"
            if i + 1 < len(toks) and t.isalpha() and toks[i + 1].isalpha() and min(len(t), len(toks[i + 1])) >= 2:
                joined = t + toks[i + 1]
                pool = {id(e): e for e in self._by_first.get(joined, ())}
                pool.update({id(e): e for e in self._by_first_stem.get(stem(joined), ())})
                for e in pool.values():
                    if len(e.tokens) == 1 and not e.is_abbr:
                        r = self._token_score(joined, e.tokens[0], e.stems[0], False)
                        if r is not None:
                            out.append(_Cand(e, i, i + 2, r[0], r[1]))
        return out

    def _compound_candidates(self, i: int, t: str) -> list[_Cand]:
        if not t.isalpha() or len(t) < COMPOUND_MIN_PART + COMPOUND_MIN_REST:
            return []
        negated = t.endswith("frei")
        out = []
        for cut in range(len(t) - COMPOUND_MIN_REST, COMPOUND_MIN_PART - 1, -1):  # longest prefix first
            e = self._de_prefix.get(t[:cut])
            if e is not None:
                out.append(_Cand(e, i, i + 1, "compound", 100.0, chars=(0, cut), negated=negated))
                break
        for cut in range(COMPOUND_MIN_REST, len(t) - COMPOUND_MIN_PART + 1):  # longest head first
            head = t[cut:]
            if t[:cut].endswith(NO_HEAD_AFTER) or head.endswith("frei"):
                continue
            e = self._de_prefix.get(head) or self._de_head.get(stem(head))
            if e is not None:
                out.append(_Cand(e, i, i + 1, "compound", 100.0, chars=(cut, len(t))))
                break
        return out

    @staticmethod
    def _resolve(cands: list[_Cand]) -> list[_Cand]:
        whole: set[int] = set()
        parts: dict[int, list[tuple[int, int]]] = {}
        chosen: list[_Cand] = []
        for c in sorted(cands, key=_Cand.key):
            rng = range(c.start, c.end)
            if any(k in whole for k in rng):
                continue
            if c.chars is None:
                if any(k in parts for k in rng):
                    continue
                whole.update(rng)
            else:
                a, b = c.chars
                if any(a < y and x < b for x, y in parts.get(c.start, ())):
                    continue
                if any(x.entry is c.entry and x.start == c.start for x in chosen):
                    continue
                parts.setdefault(c.start, []).append(c.chars)
            chosen.append(c)
        return chosen

    @staticmethod
    def _scope(term: _Cand, toks: list[str], cues: list[_Cand]) -> tuple[bool, bool]:
        starts = {c.start: c for c in cues}
        ends = {c.end: c for c in cues}
        neg = unc = False
        # backwards from the term: pre-cues
        k = term.start
        while k > 0 and term.start - k < PRE_WINDOW + CUE_MAX_LEN:
            cue = ends.get(k)
            if cue is not None:
                if term.start - cue.end <= PRE_WINDOW:
                    neg |= cue.cue.neg_pre
                    unc |= cue.cue.unc_pre
                k = cue.start
                continue
            tok = toks[k - 1]
            if tok == "?":
                if k - 1 == 0 or toks[k - 2] in TERM_PUNCT or toks[k - 2] in TERM_WORDS:
                    unc = True  # "? Anfall": clause-initial question mark
                break
            if tok in TERM_PUNCT or tok in TERM_WORDS:
                break
            k -= 1
        # forwards from the term: post-cues
        k = term.end
        while k < len(toks) and k - term.end <= POST_WINDOW + CUE_MAX_LEN:
            cue = starts.get(k)
            if cue is not None:
                if cue.start - term.end <= POST_WINDOW:
                    neg |= cue.cue.neg_post
                    unc |= cue.cue.unc_post
                k = cue.end
                continue
            tok = toks[k]
            if tok == "?":
                unc = True
                break
            if tok in TERM_PUNCT or tok in TERM_WORDS:
                break
            k += 1
        return neg, unc


@functools.lru_cache(maxsize=1)
def default_matcher() -> Matcher:
    """A process-wide :class:`Matcher` over the packaged taxonomy."""
    return Matcher(load_taxonomy())


def taxonomy_matcher(path: str | Path | None = None) -> Matcher:
    """The process-wide :class:`Matcher` of the taxonomy file ``path`` (None: the packaged one,
    :func:`default_matcher`), built once per file version (path, size, modification time), so a
    reviewed taxonomy edited between runs is picked up. Raises what :func:`load_taxonomy` raises."""
    if path is None:
        return default_matcher()
    p = Path(path).resolve()
    st = p.stat()
    return _file_matcher(str(p), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _file_matcher(path: str, _size: int, _mtime_ns: int) -> Matcher:
    return Matcher(load_taxonomy(path))


def summarise(texts: Iterable[str], matcher: Matcher | None = None) -> dict[str, Any]:
    """Count primary labels over a stream of annotation texts (one entry per occurrence).

    Returns a dict with ``taxonomy_version``; ``n_texts`` (occurrences), ``n_unique``,
    ``n_matched`` (occurrences with a primary label); ``categories`` (every category
    id → count, zeros included); ``subcategories`` (``"category/subcategory"`` →
    count); ``negated`` / ``uncertain`` (occurrences whose primary label carries the
    flag); and ``unmatched``: ``[(text, count), ...]`` for texts without any match,
    most frequent first, so the taxonomy can be grown from a centre's real strings.
    """
    m = matcher if matcher is not None else default_matcher()
    counts = Counter(texts)
    cats = {c: 0 for c in CATEGORY_IDS}
    subs: Counter[str] = Counter()
    unmatched: list[tuple[str, int]] = []
    neg = unc = matched = 0
    for text, n in counts.items():
        b = m.best(text)
        if b is None:
            unmatched.append((text, n))
            continue
        matched += n
        cats[b.category] += n
        subs[b.path] += n
        neg += n * b.negated
        unc += n * b.uncertain
    unmatched.sort(key=lambda x: (-x[1], x[0]))
    return {
        "taxonomy_version": m.taxonomy.version,
        "n_texts": sum(counts.values()),
        "n_unique": len(counts),
        "n_matched": matched,
        "categories": cats,
        "subcategories": dict(sorted(subs.items(), key=lambda x: (-x[1], x[0]))),
        "negated": neg,
        "uncertain": unc,
        "unmatched": unmatched,
    }
