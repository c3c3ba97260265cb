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

from ephys.annotate.taxonomy.cues import RESERVED_PHRASES
from ephys.annotate.taxonomy.matcher import (
    COMPOUND_MIN_PART,
    COMPOUND_MIN_REST,
    FUZZY_MIN_LEN,
    FUZZY_THRESHOLD,
    POST_WINDOW,
    PRE_WINDOW,
    Match,
    Matcher,
    default_matcher,
    summarise,
    taxonomy_matcher,
)
from ephys.annotate.taxonomy.schema import (
    ABBR_MAX_LEN,
    CATEGORY_IDS,
    SOURCE_TAGS,
    Category,
    CategoryFile,
    Subcategory,
    SubcategoryFile,
    Taxonomy,
    TaxonomyFile,
    load_taxonomy,
    parse_taxonomy,
)
from ephys.annotate.taxonomy.text import CACHE_SIZE, STEM_MIN_LEN, STEM_MIN_TOKEN, normalise, stem

__all__ = [
    "ABBR_MAX_LEN",
    "CACHE_SIZE",
    "CATEGORY_IDS",
    "COMPOUND_MIN_PART",
    "COMPOUND_MIN_REST",
    "FUZZY_MIN_LEN",
    "FUZZY_THRESHOLD",
    "POST_WINDOW",
    "PRE_WINDOW",
    "RESERVED_PHRASES",
    "SOURCE_TAGS",
    "STEM_MIN_LEN",
    "STEM_MIN_TOKEN",
    "Category",
    "CategoryFile",
    "Match",
    "Matcher",
    "Subcategory",
    "SubcategoryFile",
    "Taxonomy",
    "TaxonomyFile",
    "default_matcher",
    "load_taxonomy",
    "normalise",
    "parse_taxonomy",
    "stem",
    "summarise",
    "taxonomy_matcher",
]
