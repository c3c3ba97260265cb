"""Negation and uncertainty cues and clause terminators (German and English; rules: the "Negation and
uncertainty" section of :mod:`ephys.annotate.taxonomy`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ephys.annotate.taxonomy.text import normalise

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
TERM_WORDS = {
    "aber", "jedoch", "sondern", "obwohl", "trotzdem", "waehrend", "bei", "unter", "nach", "danach",
    "dann", "ausser", "but", "however", "though", "although", "yet", "whereas", "nevertheless",
    "except", "during", "while", "after", "then",
}
TERM_PUNCT = {",", ";", ".", "!"}


@dataclass(frozen=True, slots=True)
class Cue:
    tokens: tuple[str, ...]
    neg_pre: bool = False
    neg_post: bool = False
    unc_pre: bool = False
    unc_post: bool = False


def _build_cues() -> dict[tuple[str, ...], Cue]:
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
    return {t: Cue(t, **f) for t, f in flags.items()}


CUES = _build_cues()
CUE_MAX_LEN = max(len(t) for t in CUES)
#: Normalised phrases that may not be used as keywords (cues and clause terminators).
RESERVED_PHRASES = frozenset(" ".join(t) for t in CUES) | TERM_WORDS | {"?"}

NO_HEAD_AFTER = ("inter", "prae", "pre", "post", "peri", "non", "nicht", "anti", "sub", "pseudo", "para")
