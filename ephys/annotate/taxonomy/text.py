"""Normalisation and inflection keys of annotation texts and taxonomy keywords (rules: the
"Normalisation" section of :mod:`ephys.annotate.taxonomy`)."""

from __future__ import annotations

import functools
import re
import unicodedata

#: Tokens shorter than this are never stemmed.
STEM_MIN_TOKEN = 5
#: Minimum stem left after suffix stripping.
STEM_MIN_LEN = 4
#: Bound of the per-function result caches (unique strings).
CACHE_SIZE = 65536

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
