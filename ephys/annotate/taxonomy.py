"""Versioned bilingual (English / German) clinical EEG annotation taxonomy and matcher.

Annotation texts in a clinical EEG archive are free text typed by technologists,
nurses and neurologists ("Anfall li temporal", "SW-Komplexe re frontal", "pt asleep",
"no sz but muscle artifact", "V.a. subklinisches Anfallsmuster").  This module maps
each text onto a small, versioned taxonomy so that annotations can be counted,
queried and used as weak labels.

The taxonomy
============

``taxonomy.yaml`` (shipped inside :mod:`ephys.annotate`) holds a ``version`` string
(``YYYY.MM.N``; bump it whenever a keyword or rule changes, because labels derived
from it change) and exactly five categories:

``seizure``     seizure / ictal / paroxysmal clinical events
``interictal``  interictal, rhythmic/periodic (ACNS) and background findings
``state``       sleep, vigilance, eyes open/closed and patient behaviour
``artifact``    biological and technical artifacts, recording events
``procedure``   activation procedures, stimulation, medication, care

Each subcategory carries ``id``, ``label``, ``source`` (one or more of
``HED-SCORE``, ``ACNS``, ``TUH``, ``clinical usage``), ``refs`` (the exact tag or
label code in that source), keyword lists ``en`` and ``de``, and ``abbr`` (short
abbreviations).  Optional: ``weak`` (keywords of the subcategory that only label an
annotation when nothing stronger matches, e.g. "onset", "artifact", "50 Hz"; the
string ``"all"`` makes all of them weak, used for ictal semiology signs) and
``patterns`` (regular expressions that must match the *whole* normalised text,
e.g. the bare photic-stimulation step "15 hz"; pattern matches are always weak),
and ``generic: true`` for the "type unspecified" subcategories (see :meth:`Matcher.best`).

Sources (tags and codes are cited per subcategory in the YAML ``refs``):

* HED-SCORE 2.1.0 library schema, ``hed-standard/hed-schemas``
  ``library_schemas/score/hedtsv/HED_score_2.1.0/HED_score_2.1.0_Tag.tsv``
  (Beniczky et al. 2013, https://pmc.ncbi.nlm.nih.gov/articles/PMC3759702; 2017);
  the artifact tags that SCORE v2 moved into the HED standard are cited from
  ``standard_schema/hedtsv/HED8.4.0/HED8.4.0_Tag.tsv`` under the same tag.
* ACNS Standardized Critical Care EEG Terminology 2021 (Hirsch et al.,
  J Clin Neurophysiol 38(1):1-29): LPD, GPD, BIPD, RDA, SW, ESz, ESE, IIC, BIRDs.
* TUH EEG corpus label codes: TUEV (spsw, gped, pled, eyem, artf), TUAR (eyem,
  chew, shiv, musc, elpp, elec), TUSZ (seiz, fnsz, gnsz, spsz, cpsz, absz, tnsz,
  cnsz, tcsz, atsz, mysz).
* clinical usage: German and English terms as written in EEG reports and
  annotation channels of epilepsy centres (not a published vocabulary; the list is
  meant to grow from :func:`summarise` output on the centre's real strings).

Normalisation (:func:`normalise`)
=================================

Applied identically to annotation texts and to taxonomy keywords, in this order:

1. Unicode NFC, then ``str.casefold`` (so "ß" becomes "ss", "Ä" becomes "ä").
2. German umlauts are transliterated *before* accents are stripped: ä→ae, ö→oe,
   ü→ue (also æ→ae, œ→oe, ø→oe), so "schläft" and "schlaeft" collapse to one form.
3. NFKD decomposition and removal of combining marks ("déjà vu" → "deja vu").
4. Dotted abbreviations are collapsed so that their dots are not read as sentence
   ends: two single letters with dots become one token ("V.a." → "va", "i.v." → "iv",
   "Z.n." → "zn", "a.e." → "ae"; also without the final dot, "V.a" → "va"),
   "St.n." → "stn"; the dot after a known
   abbreviation ("Pat.", "li.", "re.", "vs.", "sek.", "fragl." ...) and after any
   single letter is dropped.  Every other "." is a clause break.
5. Decimal separators between digits are kept inside the number ("1,5" → "1.5").
6. "&" becomes " and " ("14&6" → "14 and 6", "spike & wave" → "spike and wave").
7. Tokens are maximal runs of letters, maximal runs of digits (with one optional
   decimal part), or one of the punctuation marks ``, ; : . ! ?``.  Everything else
   (hyphens, underscores, slashes, "+", "#", brackets, quotes) separates tokens.
   Letter/digit runs are therefore split: "3Hz" → "3 hz", "SW2" → "sw 2",
   "T4" → "t 4", "N2" → "n 2".  Because keywords are normalised the same way the
   abbreviation "N2" still matches "N2" exactly, while electrode names ("T0", "T4",
   "Fp1") can never match a keyword by accident: no keyword is a single letter.
8. Tokens are joined by single spaces.

Matching rules (:class:`Matcher`)
=================================

Candidate matches are collected on the token sequence, then resolved greedily
(longest keyword in tokens first; then exact < stem < fuzzy < compound; a compound's
first part before an overlapping last part; then leftmost; then the longer keyword)
so that a token belongs to at most one keyword: "spike and wave" is one
spike-and-wave match, not also a spike match, and "eye movement artifact" is
"eye movement" + "artifact", not "eye" + "movement artifact".

* **Exact**: the keyword's tokens equal the text tokens.  Score 100.  A keyword of
  several words also matches its closed spelling ("spike wave" ~ "Spikewave"), and
  a one-word keyword matches two adjacent text words written apart ("post-ictal"
  ~ "postictal", "Schlaf-Spindeln" ~ "Schlafspindeln").
* **Abbreviations** (``abbr``) are matched *only* exactly, case-insensitively, as
  whole tokens (never stemmed, never fuzzy, never as compound parts).  An
  abbreviation of three or more letters may carry an English plural "s"
  ("PLEDs", "GPDs", "IEDs").  Two-letter codes such as "SW", "HV", "EO", "sz" would
  produce a flood of false positives under any approximate rule.  Deliberately
  *not* abbreviations: the R&K stage codes S1-S4 (BrainVision markers arrive as
  "Stimulus/S  1" and would become sleep stages; "Sleep stage 1" still matches via
  "sleep stage"), "SE" (status epilepticus, but also Schlafentzug), "AA", "PS".
  "AZ" (Augen zu) is kept although German "AZ" also means Allgemeinzustand;
  "FS" (Fotostimulation) is kept although it can mean febrile seizure.
* **Inflection** (method ``stem``): tokens of five or more letters are compared by a
  light suffix-stripping key shared by German and English: umlaut digraphs are
  folded (ae→a, oe→o, ue→u, so "Anfälle" meets "Anfall"), British "-ise/-isa" is
  spelled "-ize/-iza", then one suffix of ``ing en er es em ed e n s`` is
  removed if at least four letters remain ("-ers" loses both, so "Musters"
  meets "Muster").  "Anfälle", "Anfalls", "Anfällen" →
  "anfall"; "Schlafspindeln" → "schlafspindel"; "automatisms" and "Automatismen"
  → "automatism".  Score 100.
* **German compounds** (method ``compound``): a single text token of at least
  nine letters is searched for German (``de``) keywords of at least
  :data:`COMPOUND_MIN_PART` (5) letters as its *first* part (modifier, e.g.
  "Augenbewegung|sartefakt", "Anfall|smuster", "Impedanz|pruefung") or, by the
  inflection key, as its *last* part (head, e.g. "Nacht|schwester",
  "Spike|herd"); the rest of the token must be at least :data:`COMPOUND_MIN_REST`
  (4) letters, which also keeps English inflections ("-ing", "-ed", "-ers") from
  being read as compound parts.  A head is not accepted after the prefixes
  inter/prae/pre/post/peri/non/nicht/anti/sub/pseudo/para ("interiktal" is not
  "iktal").  English keywords are never split (English writes compounds with spaces
  or hyphens).  A compound whose token ends in "frei" ("anfallsfrei",
  "artefaktfrei") is negated.  Compound parts rank after whole-token matches,
  including fuzzy ones.  Score 100.
* **Misspellings** (method ``fuzzy``): only alphabetic text and keyword tokens of
  at least :data:`FUZZY_MIN_LEN` (8) letters that share their first letter are
  compared, with ``rapidfuzz.fuzz.ratio`` (normalised Indel similarity) on the
  surface form and on the inflection key, accepted at :data:`FUZZY_THRESHOLD` (91).
  Rationale: one inserted or deleted letter scores 1 - 1/(2n-1), i.e. >= 93.3 from
  eight letters on ("Hyperventilaton" 96.8, "Bewegungsartefackt" 97.1,
  "Fotostimulaton" 96.6); a substituted or transposed letter scores 1 - 1/n and is
  accepted from twelve letters on ("Levetiracetan" 92.3).  Shorter words and a
  lower threshold were measured to confuse real words: with 6 letters / 90,
  "starting" and "string" matched "staring", "readin" "reading", "connected"
  "reconnected" and "ventilation" "ventilator"; "klinische" vs "klonische" scores
  88.9.  Misspelt short words are therefore *not* recovered (a deliberate
  precision-over-recall choice; add frequent variants as keywords instead).
  Fuzzy scores are the rapidfuzz score (91 to < 100).
* **Patterns**: ``patterns`` regular expressions are tried against the whole
  normalised text (method ``pattern``, weak, score 100).

Negation and uncertainty (NegEx-style, Chapman et al. 2001, with German cues)
=============================================================================

Cue phrases are matched on the normalised tokens before keywords and claim their
tokens (a longer keyword still wins, so "nicht ansprechbar" is a semiology keyword,
not a negated "ansprechbar"; "absence of" is a negation cue, not an absence seizure).

* Negation before the term (scope: the term starts after at most :data:`PRE_WINDOW`
  = 5 further tokens):
  kein/keine/keinen/keiner/keines/keinem/keinerlei, nicht, ohne, weder, no, not,
  without, never, denies, "negative for", "negativ fuer", "free of", "absence of",
  "lack of", "no evidence of", "kein Hinweis auf".
* Negation after the term (scope: at most :data:`POST_WINDOW` = 3 tokens between
  term and cue):
  ausgeschlossen, excluded, "ruled out", free ("seizure free"), frei, absent,
  "not seen", "nicht nachweisbar"; and compounds ending in "-frei".
* Uncertainty before the term: V.a. ("va"), "Verdacht auf", Verdacht, fraglich,
  möglich, möglicherweise, vermutlich, wahrscheinlich, unklar, unsicher (German
  adjective cues in all endings -e/-er/-es/-en/-em), eher, "am ehesten" / a.e.,
  DD, DDx, differentialdiagnostisch, possible, possibly, probable, probably,
  suspected, suspect, "suspicious for", questionable, likely, unclear, equivocal,
  r/o, "rule out".
* Uncertainty after the term: fraglich, möglich, unklar, unsicher, "nicht sicher",
  vermutet, suspected, possible, questionable, uncertain, "not certain".
* Uncertainty in both directions: "vs", "versus", and the pseudo-negations
  "nicht ausgeschlossen", "not excluded", "cannot be excluded", "cannot exclude",
  "cannot rule out" (these are *uncertain*, not negated).
* "?" makes the clause it closes uncertain ("Anfall?", "Sleep stage ?"); at the
  start of a clause ("? Anfall") it applies forward.  It also ends a clause.
* Neutral phrases that only block cues: "nicht nur", "not only", "Status nach"
  (a German "history of", not status epilepticus), "ohne Befund".
* Scope ends at a clause break: the punctuation marks ``, ; . !`` (a "." only when
  it is not an abbreviation dot, see normalisation) and the words aber, jedoch,
  sondern, obwohl, trotzdem, während, bei, unter, nach, danach, dann, außer, but,
  however, though, although, yet, whereas, nevertheless, except, during, while,
  after, then.  So "keine Anfälle, aber Spikes" negates only the seizure, "keine
  Anfälle während HV" leaves HV un-negated, and in "no sz but muscle artifact"
  only "sz" is negated.

The primary label (:meth:`Matcher.best`)
========================================

Among the matches of one text the primary label is the first by: not negated;
not weak; not a ``generic`` subcategory (seizure type unspecified, epileptiform
discharge unspecified, artifact type unspecified) when a specific subcategory of the
same category also matched ("GTC seizure" → tonic-clonic, but "Anfall aus dem
Schlaf" stays a seizure); higher score (exact/stem/compound 100 before fuzzy);
longer keyword (characters, normalised); leftmost.  "no sz but muscle artifact" → muscle
artifact; "HV onset" → hyperventilation ("onset" is weak); "IPS 50 Hz" → photic
stimulation ("50 Hz" is weak); "kein Anfall" → the negated seizure (a negated
finding is still the primary label when nothing else is mentioned).

Results are cached per unique input string (:func:`functools.lru_cache`, bound
:data:`CACHE_SIZE`); annotation strings repeat heavily in an archive.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from rapidfuzz import fuzz, process

from ephys.errors import TaxonomyError

__all__ = [
    "CATEGORY_IDS",
    "SOURCE_TAGS",
    "Category",
    "Match",
    "Matcher",
    "Subcategory",
    "Taxonomy",
    "default_matcher",
    "load_taxonomy",
    "normalise",
    "stem",
    "summarise",
]

#: Allowed ``source`` tags of a subcategory.
SOURCE_TAGS: tuple[str, ...] = ("HED-SCORE", "ACNS", "TUH", "clinical usage")
#: The five category ids, in display order.
CATEGORY_IDS: tuple[str, ...] = ("seizure", "interictal", "state", "artifact", "procedure")

#: Minimum length (letters) of a text token and of a keyword token for fuzzy comparison.
FUZZY_MIN_LEN = 8
#: Minimum ``rapidfuzz.fuzz.ratio`` for a fuzzy token match (see module docstring).
FUZZY_THRESHOLD = 91.0
#: Longest abbreviation accepted in ``abbr`` (characters as written).
ABBR_MAX_LEN = 6
#: Minimum length of a German keyword used as a compound part.
COMPOUND_MIN_PART = 5
#: Minimum length of the remainder of a compound token.
COMPOUND_MIN_REST = 4
#: Tokens shorter than this are never stemmed.
STEM_MIN_TOKEN = 5
#: Minimum stem left after suffix stripping.
STEM_MIN_LEN = 4
#: Tokens a negation/uncertainty cue reaches forward / backward.
PRE_WINDOW = 5
POST_WINDOW = 3
#: Bound of the per-matcher result cache (unique strings).
CACHE_SIZE = 65536

_METHOD_RANK = {"exact": 0, "stem": 1, "fuzzy": 2, "compound": 3, "pattern": 4}

# ---------------------------------------------------------------------------------------
# normalisation
# ---------------------------------------------------------------------------------------

_TRANSLIT = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "æ": "ae", "œ": "oe", "ø": "oe"})
_DOTTED_PAIR = re.compile(r"(?<![a-z0-9])([a-z])\.\s?([a-z])\.")
_DOTTED_STN = re.compile(r"(?<![a-z0-9])st\.\s?n\.")
_DOTTED_PAIR_OPEN = re.compile(r"(?<![a-z0-9])([a-z])\.([a-z])(?![a-z0-9.])")
_KNOWN_ABBREV_DOT = re.compile(
    r"(?<![a-z0-9])(pat|pt|pts|li|re|lt|rt|ca|bzw|evtl|ggf|vs|dr|nr|sek|min|std|bds|usw|inkl|spont|"
    r"temp|occ|front|par|fragl|moegl|wahrsch|diff|sr|schw|approx|neg|pos|zust|"
    r"[a-z])\.(?=\s|$|[^a-z0-9])"
)
_DECIMAL = re.compile(r"(\d)[.,](\d)")
_TOKEN = re.compile(r"[a-z]+|\d+(?:\.\d+)?|[,;:.!?]")


@functools.lru_cache(maxsize=CACHE_SIZE)
def normalise(text: str) -> str:
    """Normalise an annotation text or keyword for matching (rules: module docstring).

    >>> normalise("SW-Komplexe re. frontal, 3Hz")
    'sw komplexe re frontal , 3 hz'
    >>> normalise("V.a. Anfälle?")
    'va anfaelle ?'
    >>> normalise("Schläft / schlaeft_ß")
    'schlaeft schlaeft ss'
    """
    s = unicodedata.normalize("NFC", text).casefold().translate(_TRANSLIT)
    s = "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))
    s = _DOTTED_STN.sub(" stn ", s)
    s = _DOTTED_PAIR.sub(r" \1\2 ", s)
    s = _DOTTED_PAIR_OPEN.sub(r" \1\2 ", s)
    s = _KNOWN_ABBREV_DOT.sub(r"\1", s)
    s = _DECIMAL.sub(r"\1.\2", s)
    s = s.replace("&", " and ")
    return " ".join(_TOKEN.findall(s))


_STEM_SUFFIXES = ("ing", "en", "er", "es", "em", "ed", "e", "n", "s")


@functools.lru_cache(maxsize=CACHE_SIZE)
def stem(token: str) -> str:
    """Inflection key of one normalised token (German and English, deliberately light).

    Tokens shorter than :data:`STEM_MIN_TOKEN` and non-alphabetic tokens are returned
    unchanged.  Otherwise: fold the umlaut digraphs (ae→a, oe→o, ue→u), spell British
    "-ise/-isa" as "-ize/-iza", then strip the first of ``ing en er es em ed e n s``
    that leaves at least :data:`STEM_MIN_LEN` letters; an "-ers" ending loses both
    suffixes, so that "Musters"/"Muster" and "filters"/"filter" meet.  The key is only ever compared
    with other keys, so over-stemming ("wellen" → "well") is harmless as long as two
    different keywords do not share a key (checked by the test-suite).

    >>> stem("anfaelle"), stem("anfalls"), stem("schlafspindeln"), stem("generalised")
    ('anfall', 'anfall', 'schlafspindel', 'generaliz')
    """
    if len(token) < STEM_MIN_TOKEN or not token.isalpha():
        return token
    key = token.replace("ae", "a").replace("oe", "o").replace("ue", "u")
    key = key.replace("ise", "ize").replace("isa", "iza")
    for suffix in _STEM_SUFFIXES:
        if key.endswith(suffix) and len(key) - len(suffix) >= STEM_MIN_LEN:
            key = key[: -len(suffix)]
            if suffix == "s" and key.endswith("er") and len(key) - 2 >= STEM_MIN_LEN:
                key = key[:-2]  # "musters" -> "must", as "muster"
            break
    return key


# ---------------------------------------------------------------------------------------
# cues
# ---------------------------------------------------------------------------------------

_ADJ_ENDINGS = ("", "e", "er", "es", "en", "em")


def _forms(*words: str) -> list[str]:
    return [w + e for w in words for e in _ADJ_ENDINGS]


_NEG_PRE = [
    "kein", "keine", "keinen", "keiner", "keines", "keinem", "keinerlei", "nicht", "ohne", "weder",
    "no", "not", "without", "never", "denies", "denied", "negative for", "negativ fuer", "free of",
    "absence of", "lack of", "no evidence of", "kein hinweis auf", "keine hinweise auf",
]
_NEG_POST = [
    "ausgeschlossen", "excluded", "ruled out", "free", "frei", "absent", "not seen",
    "nicht nachweisbar", "nicht gesehen",
]
_UNC_PRE = [
    "va", "v a", "verdacht auf", "verdacht", "fragl", "moegl", "moeglicherweise", "vermutlich", "eher",
    "am ehesten", "ae", "dd", "ddx", "differentialdiagnostisch", "possible", "possibly", "probable",
    "probably", "suspected", "suspect", "suspicious for", "suspicious", "questionable", "likely",
    "unclear", "equivocal", "r o", "rule out",
    *_forms("fraglich", "moeglich", "wahrscheinlich", "unklar", "unsicher"),
]
_UNC_POST = [
    "nicht sicher", "vermutet", "suspected", "possible", "questionable", "uncertain", "not certain",
    *_forms("fraglich", "moeglich", "unklar", "unsicher"),
]
_UNC_BOTH = [
    "vs", "versus", "nicht ausgeschlossen", "not excluded", "cannot be excluded", "cannot exclude",
    "cannot rule out", "kann nicht ausgeschlossen werden",
]
_NEUTRAL = ["nicht nur", "not only", "status nach", "ohne befund"]
_TERM_WORDS = {
    "aber", "jedoch", "sondern", "obwohl", "trotzdem", "waehrend", "bei", "unter", "nach", "danach",
    "dann", "ausser", "but", "however", "though", "although", "yet", "whereas", "nevertheless",
    "except", "during", "while", "after", "then",
}
_TERM_PUNCT = {",", ";", ".", "!"}


@dataclass(frozen=True, slots=True)
class _Cue:
    tokens: tuple[str, ...]
    neg_pre: bool = False
    neg_post: bool = False
    unc_pre: bool = False
    unc_post: bool = False


def _build_cues() -> dict[tuple[str, ...], _Cue]:
    flags: dict[tuple[str, ...], dict[str, bool]] = {}

    def add(phrases: Iterable[str], **kw: bool) -> None:
        for p in phrases:
            toks = tuple(normalise(p).split())
            d = flags.setdefault(toks, {})
            for k, v in kw.items():
                d[k] = d.get(k, False) or v

    add(_NEG_PRE, neg_pre=True)
    add(_NEG_POST, neg_post=True)
    add(_UNC_PRE, unc_pre=True)
    add(_UNC_POST, unc_post=True)
    add(_UNC_BOTH, unc_pre=True, unc_post=True)
    add(_NEUTRAL)
    return {t: _Cue(t, **f) for t, f in flags.items()}


_CUES = _build_cues()
_CUE_MAX_LEN = max(len(t) for t in _CUES)
#: Normalised phrases that may not be used as keywords (cues and clause terminators).
RESERVED_PHRASES = frozenset(" ".join(t) for t in _CUES) | _TERM_WORDS | {"?"}

_NO_HEAD_AFTER = ("inter", "prae", "pre", "post", "peri", "non", "nicht", "anti", "sub", "pseudo", "para")

# ---------------------------------------------------------------------------------------
# taxonomy
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subcategory:
    """One leaf of the taxonomy; ``keywords`` is the de-duplicated union of en, de and abbr."""

    id: str
    label: str
    category: str
    source: tuple[str, ...]
    en: tuple[str, ...]
    de: tuple[str, ...]
    abbr: tuple[str, ...]
    weak: frozenset[str] = frozenset()
    patterns: tuple[str, ...] = ()
    refs: tuple[str, ...] = ()
    generic: bool = False

    @property
    def keywords(self) -> tuple[str, ...]:
        seen: dict[str, str] = {}
        for k in (*self.en, *self.de, *self.abbr):
            seen.setdefault(normalise(k), k)
        return tuple(seen.values())

    @property
    def path(self) -> str:
        """``"category/subcategory"``."""
        return f"{self.category}/{self.id}"


@dataclass(frozen=True)
class Category:
    id: str
    label: str
    subcategories: tuple[Subcategory, ...]


@dataclass(frozen=True)
class Taxonomy:
    """A loaded, validated taxonomy (see :func:`load_taxonomy`)."""

    version: str
    categories: tuple[Category, ...]
    origin: str = "<packaged>"

    @property
    def subcategories(self) -> tuple[Subcategory, ...]:
        return tuple(s for c in self.categories for s in c.subcategories)

    @property
    def n_keywords(self) -> int:
        """Distinct keywords (en, de and abbr, normalised) over all subcategories."""
        return sum(len(s.keywords) for s in self.subcategories)

    def category(self, category_id: str) -> Category:
        for c in self.categories:
            if c.id == category_id:
                return c
        raise KeyError(category_id)

    def subcategory(self, category_id: str, subcategory_id: str) -> Subcategory:
        for s in self.category(category_id).subcategories:
            if s.id == subcategory_id:
                return s
        raise KeyError(f"{category_id}/{subcategory_id}")


_ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_VERSION_RE = re.compile(r"^\d{4}\.\d{1,2}\.\d+$")
_SUB_KEYS = {"id", "label", "source", "refs", "en", "de", "abbr", "weak", "patterns", "generic"}


def _str_list(value: Any, where: str, field: str, *, required: bool = False) -> tuple[str, ...]:
    if value is None:
        if required:
            raise TaxonomyError(f"{where}: missing '{field}'")
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise TaxonomyError(f"{where}: '{field}' must be a list of non-empty strings (quote yes/no/on/off)")
    return tuple(v.strip() for v in value)


def _parse(data: Any, origin: str) -> Taxonomy:
    if not isinstance(data, Mapping):
        raise TaxonomyError(f"{origin}: top level must be a mapping with 'version' and 'categories'")
    unknown = set(data) - {"version", "categories"}
    if unknown:
        raise TaxonomyError(f"{origin}: unknown top-level keys {sorted(unknown)}")
    version = data.get("version")
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise TaxonomyError(f"{origin}: 'version' must be a quoted string like \"2026.11.1\", got {version!r}")
    cats = data.get("categories")
    if not isinstance(cats, list) or not cats:
        raise TaxonomyError(f"{origin}: 'categories' must be a non-empty list")

    owner: dict[str, str] = {}  # normalised keyword -> subcategory path
    categories: list[Category] = []
    for ci, c in enumerate(cats):
        where = f"{origin}: categories[{ci}]"
        if not isinstance(c, Mapping):
            raise TaxonomyError(f"{where}: must be a mapping")
        cid, clabel, subs = c.get("id"), c.get("label"), c.get("subcategories")
        if set(c) - {"id", "label", "subcategories"}:
            raise TaxonomyError(f"{where}: unknown keys {sorted(set(c) - {'id', 'label', 'subcategories'})}")
        if cid not in CATEGORY_IDS:
            raise TaxonomyError(f"{where}: 'id' must be one of {CATEGORY_IDS}, got {cid!r}")
        if not isinstance(clabel, str) or not clabel.strip():
            raise TaxonomyError(f"{where} ({cid}): missing 'label'")
        if not isinstance(subs, list) or not subs:
            raise TaxonomyError(f"{where} ({cid}): 'subcategories' must be a non-empty list")
        parsed: list[Subcategory] = []
        for si, s in enumerate(subs):
            sw = f"{where}.subcategories[{si}]"
            if not isinstance(s, Mapping):
                raise TaxonomyError(f"{sw}: must be a mapping")
            sid = s.get("id")
            if not isinstance(sid, str) or not _ID_RE.match(sid):
                raise TaxonomyError(f"{sw}: 'id' must be a lower-case identifier, got {sid!r}")
            sw = f"{sw} ({cid}/{sid})"
            if set(s) - _SUB_KEYS:
                raise TaxonomyError(f"{sw}: unknown keys {sorted(set(s) - _SUB_KEYS)}")
            if any(p.id == sid for p in parsed):
                raise TaxonomyError(f"{sw}: duplicate subcategory id")
            label = s.get("label")
            if not isinstance(label, str) or not label.strip():
                raise TaxonomyError(f"{sw}: missing 'label'")
            source = _str_list(s.get("source"), sw, "source", required=True)
            if not source or any(t not in SOURCE_TAGS for t in source):
                raise TaxonomyError(f"{sw}: 'source' must be a non-empty list of {SOURCE_TAGS}, got {list(source)}")
            en = _str_list(s.get("en"), sw, "en")
            de = _str_list(s.get("de"), sw, "de")
            abbr = _str_list(s.get("abbr"), sw, "abbr")
            weak_all = s.get("weak") == "all"
            weak = () if weak_all else _str_list(s.get("weak"), sw, "weak")
            patterns = _str_list(s.get("patterns"), sw, "patterns")
            refs = _str_list(s.get("refs"), sw, "refs")
            if not (en or de or abbr):
                raise TaxonomyError(f"{sw}: no keywords (en, de, abbr all empty)")
            for a in abbr:
                if len(a) > ABBR_MAX_LEN or " " in a:
                    raise TaxonomyError(f"{sw}: abbreviation {a!r} longer than {ABBR_MAX_LEN} or contains a space")
            local: set[str] = set()
            for k in (*en, *de, *abbr):
                n = normalise(k)
                if not n or not any(ch.isalpha() for ch in n):
                    raise TaxonomyError(f"{sw}: keyword {k!r} has no letters after normalisation")
                if n in RESERVED_PHRASES:
                    raise TaxonomyError(f"{sw}: keyword {k!r} is a negation/uncertainty cue or clause terminator")
                if len(n.split()) == 1 and len(n) == 1:
                    raise TaxonomyError(f"{sw}: keyword {k!r} is a single letter")
                other = owner.get(n)
                if other is not None and other != f"{cid}/{sid}":
                    raise TaxonomyError(f"{sw}: keyword {k!r} (normalised {n!r}) duplicates one of {other}")
                owner[n] = f"{cid}/{sid}"
                local.add(n)
            for w in weak:
                if normalise(w) not in local:
                    raise TaxonomyError(f"{sw}: weak keyword {w!r} is not one of its en/de/abbr keywords")
            for p in patterns:
                try:
                    re.compile(p)
                except re.error as exc:
                    raise TaxonomyError(f"{sw}: pattern {p!r} does not compile: {exc}") from None
            if weak_all:
                weak = tuple(local)
            generic = s.get("generic", False)
            if not isinstance(generic, bool):
                raise TaxonomyError(f"{sw}: 'generic' must be true or false")
            parsed.append(
                Subcategory(
                    id=sid, label=label.strip(), category=cid, source=source, en=en, de=de, abbr=abbr,
                    weak=frozenset(normalise(w) for w in weak), patterns=patterns, refs=refs,
                    generic=generic,
                )
            )
        categories.append(Category(id=cid, label=clabel.strip(), subcategories=tuple(parsed)))
    stem_owner: dict[str, tuple[str, str]] = {}
    for c in categories:
        for sub in c.subcategories:
            for k in (*sub.en, *sub.de):
                key = " ".join(stem(t) for t in normalise(k).split())
                prev = stem_owner.setdefault(key, (sub.path, k))
                if prev[0] != sub.path:
                    raise TaxonomyError(
                        f"{origin}: keyword {k!r} of {sub.path} duplicates {prev[1]!r} of {prev[0]} "
                        f"after inflection folding ({key!r})"
                    )
    ids = [c.id for c in categories]
    if sorted(ids) != sorted(CATEGORY_IDS):
        raise TaxonomyError(f"{origin}: categories must be exactly {CATEGORY_IDS} once each, got {ids}")
    return Taxonomy(version=version, categories=tuple(categories), origin=origin)


def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """Load and validate a taxonomy YAML file.

    ``path=None`` loads the packaged ``ephys/annotate/taxonomy.yaml`` through
    :mod:`importlib.resources` (works from a wheel or an editable install).

    Raises :class:`~ephys.errors.TaxonomyError` (a ``ValueError``) naming the problem (with the position of the offending
    category/subcategory) when the YAML does not parse, a required field is missing,
    a source tag is unknown, an abbreviation is too long, a keyword is a cue word or
    appears (after normalisation, or after inflection folding with :func:`stem`) in
    two subcategories, a weak keyword is not a
    keyword of its subcategory, a pattern does not compile, or the five categories
    are not exactly ``CATEGORY_IDS``.  A missing file raises :class:`FileNotFoundError`.
    """
    if path is None:
        ref = resources.files("ephys.annotate").joinpath("taxonomy.yaml")
        text, origin = ref.read_text(encoding="utf-8"), "taxonomy.yaml"
    else:
        p = Path(path)
        text, origin = p.read_text(encoding="utf-8"), str(p)
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise TaxonomyError(f"{origin}: not valid YAML: {exc}") from None
    return _parse(data, origin)


# ---------------------------------------------------------------------------------------
# matcher
# ---------------------------------------------------------------------------------------


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
    cue: _Cue | None = None
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
            for n in range(1, min(_CUE_MAX_LEN, len(toks) - i) + 1):
                cue = _CUES.get(tuple(toks[i : i + n]))
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
            if t[:cut].endswith(_NO_HEAD_AFTER) or head.endswith("frei"):
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
        while k > 0 and term.start - k < PRE_WINDOW + _CUE_MAX_LEN:
            cue = ends.get(k)
            if cue is not None:
                if term.start - cue.end <= PRE_WINDOW:
                    neg |= cue.cue.neg_pre
                    unc |= cue.cue.unc_pre
                k = cue.start
                continue
            tok = toks[k - 1]
            if tok == "?":
                if k - 1 == 0 or toks[k - 2] in _TERM_PUNCT or toks[k - 2] in _TERM_WORDS:
                    unc = True  # "? Anfall": clause-initial question mark
                break
            if tok in _TERM_PUNCT or tok in _TERM_WORDS:
                break
            k -= 1
        # forwards from the term: post-cues
        k = term.end
        while k < len(toks) and k - term.end <= POST_WINDOW + _CUE_MAX_LEN:
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
            if tok in _TERM_PUNCT or tok in _TERM_WORDS:
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
