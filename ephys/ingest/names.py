"""Person names in annotation free text that no header names: relatives, staff, visitors.

The header-derived scrubbing (:func:`ephys.ingest.identity.scrub_text`) removes the
names a recording's own header or annotation authors give. Annotations also name
people no header knows: ``Mutter Erika anwesend``, ``Dr. Bernasconi informiert``,
``nurse Emily at bedside``. :class:`NameDetector` finds them with

* **name lists**: given names and surnames of the names-dataset package (Remy 2021,
  https://github.com/philipperemy/name-dataset, MIT licence; 730k given names and 980k
  surnames with their popularity rank per country, from public Facebook profiles),
  restricted to the countries of a site's patients (:data:`DEFAULT_COUNTRIES`);
* **word frequencies** of wordfreq (Speer 2022, https://github.com/rspeer/wordfreq,
  Apache-2.0 code, CC-BY-SA-4.0 data), so a surname that is also a common German or
  English word (``Koch``, ``Licht``, ``Zimmer``) is not removed on the list alone;
* **cues**: a title or a relation (``Frau``, ``Herr``, ``Dr.``, ``Mutter``, ``nurse``,
  ``Mme``, ``Signora``) makes the capitalised word after it a name;
* **neighbours**: a capitalised list name next to a found name is a name too
  (``Fatma Yilmaz``), and so is a rare capitalised word right after one (``Hans Quaexelbroet``);
* a **protected vocabulary** (electrodes, drugs and the clinical words the caller gives,
  e.g. every keyword of the annotation taxonomy) that is never removed.

The lists are reduced once per machine to a small table (given-name rank, surname rank,
word frequency per name), cached under ``$XDG_CACHE_HOME/ephys`` (``~/.cache/ephys``) or
``$EPHYS_CACHE_DIR``; building it reads the whole names-dataset (about 35 s, 1.2 GB of
memory, once). Measured on the labelled German/English/French/Italian sets written for
this purpose (``tests/data/names``): see ``tests/test_name_detector.py`` and the README.
"""

from __future__ import annotations

import fcntl
import gzip
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ephys.ingest.identity import _fold

#: Countries whose names are looked for (ISO 3166 alpha-2), for a Swiss or Central European
#: hospital: its own and its neighbours', and those of the larger immigrant groups.
DEFAULT_COUNTRIES = ("CH", "DE", "AT", "FR", "IT", "LU", "BE", "NL", "GB", "IE", "US", "CA", "ES", "PT",
                     "PL", "CZ", "HU", "HR", "RS", "SI", "AL", "TR", "GR")
#: A given name ranked at most this in one of the countries is a name on its own when it is not
#: also a common word (``Zimmer`` and ``File`` are listed as given names too) ...
FIRST_RANK = 1000
#: ... and one ranked at most this is a name even when it is a common word (``Hans``, ``Peter``).
TOP_FIRST_RANK = 100
#: A surname ranked at most this is a name on its own when it is not also a common word.
LAST_RANK = 5000
#: Zipf frequency (log10 of occurrences per 10^9 words, wordfreq) from which a word counts as
#: common in German, English, French or Italian, for surnames and for given names.
COMMON_ZIPF = 4.0
COMMON_FIRST_ZIPF = 4.5
#: Below this Zipf frequency an unlisted word is rare enough to be a surname after a given name.
RARE_ZIPF = 3.0
#: Names kept in the cached table: any rank up to this, for the neighbour and cue rules.
TABLE_RANK = 20000
_TABLE_VERSION = "2"
#: Languages whose word frequencies tell a common word from a name.
LANGUAGES = ("de", "en", "fr", "it")

#: Titles and relations after which a capitalised word is a name (lower case, without dots). Not the
#: abbreviations that also stand for words in clinical notes: ``m`` (metres, minutes), ``ca`` (circa),
#: ``la`` (the French article).
CUES = frozenset("""
frau herr hr fr dr drs prof pd oa med dipl mr mrs ms miss mme mlle sig signora signor sr sra
mutter vater sohn tochter bruder schwester ehemann ehefrau mann gatte gattin partner partnerin freund freundin
oma opa grossmutter großmutter grossvater großvater tante onkel cousin cousine nichte neffe enkel enkelin
schwager schwägerin pflege pfleger pflegerin pflegefachfrau pflegefachmann technikerin techniker mta mtra
dolmetscher dolmetscherin besuch familie fam
mother father mom mum dad son daughter brother sister husband wife boyfriend girlfriend friend grandmother
grandfather grandma grandpa aunt uncle nurse rn tech technologist doctor attending resident fellow interpreter
mère père fils fille frère sœur soeur mari épouse infirmière infirmier
madre padre figlio figlia fratello sorella marito moglie infermiera infermiere
""".split())

#: Abbreviations of clinical notes that name lists also hold (``Pat``, ``Iv``).
ABBREVIATIONS = frozenset("pat pt pts iv im sc po mg ml hz uv eeg ekg ecg emg eog eeg-tech ok re li".split())

#: Antiseizure and emergency drugs and their common brand names (WHO ATC N03A, N05BA, N05CD,
#: N01AX10), some of which are also given names (``Lyrica``).
DRUGS = frozenset("""
levetiracetam keppra brivaracetam briviact lamotrigin lamotrigine lamictal valproat valproate valproic depakine
depakote orfiril carbamazepin carbamazepine tegretol oxcarbazepin oxcarbazepine trileptal eslicarbazepin
zebinix aptiom lacosamid lacosamide vimpat phenytoin phenhydan dilantin fosphenytoin phenobarbital luminal
primidon mysoline topiramat topiramate topamax zonisamid zonisamide zonegran perampanel fycompa cenobamat
cenobamate ontozry xcopri gabapentin neurontin pregabalin lyrica ethosuximid ethosuximide petinutin sultiam
ospolot stiripentol diacomit cannabidiol epidyolex rufinamid inovelon felbamat taloxa vigabatrin sabril
clobazam frisium onfi clonazepam rivotril klonopin lorazepam temesta ativan midazolam dormicum buccolam
diazepam valium stesolid propofol ketamin ketamine thiopental melatonin chloralhydrat
""".split())

#: A word: letters with inner hyphens or apostrophes, not glued to a digit (``Fp1`` is no word).
_WORD = re.compile(r"(?<![^\W_])[^\W\d_]+(?:[-'’][^\W\d_]+)*(?![^\W_])")


def _key(token: str) -> str:
    """Lower case, accents dropped as the header scrubber drops them (:func:`~ephys.ingest.identity._fold`):
    ``Müller`` → ``muller``; ``Mueller`` stays itself (the table holds every spelling the lists hold)."""
    return _fold(token).lower()


def _zipf(key: str) -> float:
    """The word's highest Zipf frequency (wordfreq) in :data:`LANGUAGES`."""
    import wordfreq

    return max(wordfreq.zipf_frequency(key, lang) for lang in LANGUAGES)


def cache_dir() -> Path:
    """Where the reduced name table is cached: ``$EPHYS_CACHE_DIR``, else ``$XDG_CACHE_HOME/ephys``,
    else ``~/.cache/ephys``."""
    if os.environ.get("EPHYS_CACHE_DIR"):
        return Path(os.environ["EPHYS_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ephys"


def _table_path(countries: tuple[str, ...], folder: Path) -> Path:
    from importlib.metadata import version

    tag = f"v{_TABLE_VERSION}-nd{version('names-dataset')}-wf{version('wordfreq')}-{'-'.join(sorted(countries))}"
    return folder / f"names-{tag}.tsv.gz"


def _best_ranks(path: Path, countries: set[str]) -> dict[str, int]:
    import pickle

    with gzip.open(path, "rb") as f:
        table = pickle.load(f)  # noqa: S301 - the names-dataset package's own data file
    out: dict[str, int] = {}
    for name, info in table.items():
        ranks = [r for c, r in (info.get("rank") or {}).items() if c in countries and r is not None]
        if ranks and min(ranks) <= TABLE_RANK and _WORD.fullmatch(name):
            k = _key(name)
            out[k] = min(out.get(k, TABLE_RANK + 1), min(ranks))
    return out


def build_table(countries: tuple[str, ...] = DEFAULT_COUNTRIES, folder: Path | None = None) -> Path:
    """Reduce names-dataset and wordfreq to the table :class:`NameDetector` reads, once per machine,
    in ``folder`` (default :func:`cache_dir`).

    Returns the table's path (a gzip TSV: key, given-name rank, surname rank, Zipf frequency;
    rank 0 = not listed). Safe to call from many processes at once: one builds, under a file
    lock, the others wait and read; the table is written to a temporary name and renamed.

    Raises
    ------
    OSError
        The cache folder cannot be written.
    """
    path = _table_path(tuple(countries), folder or cache_dir())
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            return path
        import names_dataset

        data = Path(names_dataset.__file__).parent / "v3"
        wanted = set(countries)
        first = _best_ranks(data / "first_names.pkl.gz", wanted)
        last = _best_ranks(data / "last_names.pkl.gz", wanted)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        with gzip.open(tmp, "wt", encoding="utf-8") as out:
            for k in sorted(first.keys() | last.keys()):
                z = _zipf(k)
                out.write(f"{k}\t{first.get(k, 0)}\t{last.get(k, 0)}\t{z:.2f}\n")
        os.replace(tmp, path)
    return path


@lru_cache(maxsize=4)
def _load_table(countries: tuple[str, ...]) -> dict[str, tuple[int, int, float]]:
    try:
        path = build_table(countries)
    except OSError:  # a cache folder that cannot be written: build in a private temporary one
        import tempfile

        path = build_table(countries, Path(tempfile.mkdtemp(prefix="ephys-names-")))
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = (line.rstrip("\n").split("\t") for line in f)
        return {k: (int(a), int(b), float(z)) for k, a, b, z in rows}


@lru_cache(maxsize=4096)
def _rare(key: str) -> bool:
    """A word no name list holds and no German, English, French or Italian text uses often: after a
    given name, a surname (``Hans Quaexelbroet``)."""
    return _zipf(key) < RARE_ZIPF


@dataclass(frozen=True)
class _Token:
    start: int
    end: int
    text: str
    key: str


class NameDetector:
    """Find person names in short annotation texts (German, English, French, Italian).

    Parameters
    ----------
    protected : iterable of str
        Words never taken for a name, e.g. the annotation taxonomy's keywords. Compared
        case- and accent-insensitively, word by word. Electrode names and :data:`DRUGS`
        are always protected.
    countries : tuple of str
        ISO 3166 alpha-2 codes whose given names and surnames are looked for.

    Notes
    -----
    A word is a name when it starts with a capital (or the whole text is in capitals) and
    is not protected, and: it is a given name ranked at most :data:`FIRST_RANK` in one of
    ``countries`` (:data:`TOP_FIRST_RANK` if it is also a common word); or a surname ranked at most
    :data:`LAST_RANK` whose word frequency is below :data:`COMMON_ZIPF`; or it follows a :data:`CUES`
    word; or it stands next to a name found so and is listed, or follows it and is rare
    (:data:`RARE_ZIPF`). The first use builds or reads the cached table (:func:`build_table`).
    """

    def __init__(self, protected=(), countries: tuple[str, ...] = DEFAULT_COUNTRIES):
        from ephys.ingest.channels import TEN_TWENTY

        self._table = _load_table(tuple(countries))
        words = {_key(w) for p in protected for w in _WORD.findall(str(p))}
        self._protected = frozenset(words | DRUGS | ABBREVIATIONS | {_key(e) for e in TEN_TWENTY} | CUES)

    def _listed(self, key: str) -> tuple[int, int, float]:
        return self._table.get(key, (0, 0, 0.0))

    def _strong(self, tok: _Token) -> bool:
        first, last, zipf = self._listed(tok.key)
        return (0 < first <= TOP_FIRST_RANK or (0 < first <= FIRST_RANK and zipf < COMMON_FIRST_ZIPF)
                or (0 < last <= LAST_RANK and zipf < COMMON_ZIPF))

    def spans(self, text: str) -> list[tuple[int, int]]:
        """``(start, end)`` character spans of the names in ``text``, in order."""
        caps = text.upper() == text and any(c.isalpha() for c in text)
        toks = [_Token(m.start(), m.end(), m.group(), _key(m.group())) for m in _WORD.finditer(text)]
        cand = [len(t.text) >= 2 and (t.text[0].isupper() or caps) and t.key not in self._protected for t in toks]
        name = [c and self._strong(t) for c, t in zip(cand, toks)]
        for i in range(1, len(toks)):  # the word right after a cue ("Dr. X", "Mutter X")
            if cand[i] and toks[i - 1].key in CUES and text[toks[i - 1].end : toks[i].start].strip(" .:") == "":
                name[i] = True
        changed = True
        while changed:  # a capitalised word next to a name is part of it ("Fatma Yilmaz", "Hans Quaexelbroet")
            changed = False
            for i, t in enumerate(toks):
                if name[i] or not cand[i]:
                    continue
                for j in (i - 1, i + 1):
                    if not 0 <= j < len(toks):
                        continue
                    gap = text[min(t.end, toks[j].end) : max(t.start, toks[j].start)]
                    if name[j] and gap.strip(" -") == "" and (t.key in self._table or (j == i - 1 and _rare(t.key))):
                        name[i] = changed = True
                        break
        return [(t.start, t.end) for t, n in zip(toks, name) if n]

    def scrub(self, text: str, repl: str = "[name]") -> tuple[str, int]:
        """``text`` with each name replaced by ``repl``, and how many were replaced."""
        spans = self.spans(text)
        for start, end in reversed(spans):
            text = text[:start] + repl + text[end:]
        return text, len(spans)
