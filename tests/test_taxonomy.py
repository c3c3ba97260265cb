"""The bilingual annotation taxonomy and its matcher (ephys.annotate.taxonomy).

The labelled set tests/data/annotation_labels.tsv holds German and English
annotation strings as written at a Swiss/German and a US epilepsy centre
(misspelt, abbreviated, negated, uncertain), the real strings of the recordings
in ../shared/data/real, and strings that must match nothing (trigger codes,
electrode names, vendor markers).  Columns: text, category, subcategory (both
empty: no label), negated, uncertain (flags of the expected primary label).

Measured on taxonomy 2026.11.1 (512 strings, 487 with a label):
precision 0.998, recall 0.992, negated/uncertain flag accuracy 1.000 / 1.000.
These are optimistic: the taxonomy author wrote most of the set.  Two batches
(101 and 90 strings) were written *before* the matcher saw them and scored at
first run precision 0.978 / recall 0.935 and precision 0.949 / recall 0.915; the
misses were then fixed in the taxonomy or kept as known misses (below) and the
batches merged into the set.  Known misses: "A1+A2 OFF", "Ligths-Off#1"
(transposition in a short word), "Essen", "NCSE vs. encephalopathy".
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import pickle
import time
from collections import defaultdict
from importlib import resources
from pathlib import Path

import pytest
import yaml

from ephys.annotate.taxonomy import (
    CATEGORY_IDS,
    FUZZY_THRESHOLD,
    SOURCE_TAGS,
    Match,
    Matcher,
    load_taxonomy,
    normalise,
    stem,
    summarise,
)

DATA = Path(__file__).parent / "data" / "annotation_labels.tsv"


@pytest.fixture(scope="module")
def taxonomy():
    return load_taxonomy()


@pytest.fixture(scope="module")
def matcher(taxonomy):
    return Matcher(taxonomy)


def _rows() -> list[dict[str, str]]:
    with DATA.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def _paths(m: Matcher, text: str) -> list[tuple[str, bool, bool]]:
    return [(x.path, x.negated, x.uncertain) for x in m.match(text)]


# ---------------------------------------------------------------------------------------
# labelled set
# ---------------------------------------------------------------------------------------


def test_labelled_set_is_well_formed(taxonomy):
    rows = _rows()
    assert len(rows) >= 150
    assert list(rows[0]) == ["text", "category", "subcategory", "negated", "uncertain"]
    known = {s.path for s in taxonomy.subcategories}
    texts = [r["text"] for r in rows]
    assert len(texts) == len(set(texts)), "duplicate strings in the labelled set"
    for r in rows:
        assert r["negated"] in ("0", "1") and r["uncertain"] in ("0", "1"), r
        if r["category"]:
            assert f"{r['category']}/{r['subcategory']}" in known, r
        else:
            assert not r["subcategory"] and r["negated"] == r["uncertain"] == "0", r
    assert sum(1 for r in rows if not r["category"]) >= 20
    assert sum(1 for r in rows if r["negated"] == "1") >= 10
    assert sum(1 for r in rows if r["uncertain"] == "1") >= 10


def test_precision_recall_and_flags(taxonomy):
    """Precision/recall of best() (category + subcategory) and accuracy of its flags.

    Precision = correct labels / labels given; recall = correct labels / strings with
    an expected label; flag accuracy over the correctly labelled strings.  Measured:
    precision 0.998, recall 0.992, negated 1.000, uncertain 1.000 (see module docstring).
    """
    m = Matcher(taxonomy)
    rows = _rows()
    t0 = time.perf_counter()
    tp = fp = fn = 0
    neg_ok = unc_ok = n_flags = 0
    errors = []
    for r in rows:
        b = m.best(r["text"])
        expected = (r["category"], r["subcategory"]) if r["category"] else None
        got = (b.category, b.subcategory) if b else None
        if got is not None:
            tp += got == expected
            fp += got != expected
        if expected is not None and got != expected:
            fn += 1
        if got != expected:
            errors.append(f"{r['text']!r}: expected {expected}, got {got}")
        elif b is not None:
            n_flags += 1
            neg_ok += int(b.negated) == int(r["negated"])
            unc_ok += int(b.uncertain) == int(r["uncertain"])
    elapsed = time.perf_counter() - t0
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    print(
        f"\ntaxonomy {taxonomy.version}: {len(rows)} strings, precision {precision:.3f}, recall {recall:.3f}, "
        f"negated {neg_ok / n_flags:.3f}, uncertain {unc_ok / n_flags:.3f}, {elapsed * 1e3:.0f} ms uncached"
    )
    print("\n".join(errors))
    assert precision >= 0.95, errors
    assert recall >= 0.90, errors
    assert neg_ok / n_flags >= 0.95
    assert unc_ok / n_flags >= 0.95


# ---------------------------------------------------------------------------------------
# normalisation
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Schläft", "schlaeft"),
        ("schlaeft", "schlaeft"),
        ("Anfälle", "anfaelle"),
        ("Augenöffnen", "augenoeffnen"),
        ("Übelkeit", "uebelkeit"),
        ("Schweiß", "schweiss"),
        ("Déjà-vu", "deja vu"),
        ("a\u0308", "ae"),  # decomposed umlaut
        ("SW-Komplexe", "sw komplexe"),
        ("signal_start", "signal start"),
        ("F8/T4", "f 8 t 4"),
        ("3Hz", "3 hz"),
        ("SW2", "sw 2"),
        ("N2", "n 2"),
        ("T0", "t 0"),
        ("14&6", "14 and 6"),
        ("1,5 Hz", "1.5 hz"),
        ("  viel   Platz \t hier ", "viel platz hier"),
        ("V.a. Anfall", "va anfall"),
        ("i.v.", "iv"),
        ("St.n. Anfall", "stn anfall"),
        ("Pat. schläft", "pat schlaeft"),
        ("no sz. Muscle artifact", "no sz . muscle artifact"),
        ("Anfall?", "anfall ?"),
        ("Spikes li., aber", "spikes li , aber"),
        ("LTM+6 #1", "ltm 6 1"),
    ],
)
def test_normalise(text, expected):
    assert normalise(text) == expected


def test_stem_folds_inflection():
    assert stem("anfaelle") == stem("anfalls") == stem("anfallen") == stem("anfall") == "anfall"
    assert stem("schlafspindeln") == stem("schlafspindel")
    assert stem("automatisms") == stem("automatismen")
    assert stem("generalised") == stem("generalized")
    assert stem("sz") == "sz" and stem("t") == "t"  # short tokens are never stemmed


# ---------------------------------------------------------------------------------------
# inflection, compounds, misspellings, abbreviations
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, path, methods",
    [
        ("Anfälle", "seizure/seizure", {"stem"}),
        ("Anfalls", "seizure/seizure", {"stem"}),
        ("Anfällen li temporal", "seizure/seizure", {"stem"}),
        ("Anfallsbeginn", "seizure/onset", {"exact"}),
        ("Schlafspindeln", "state/graphoelements", {"exact"}),
        ("Spindeln", "state/graphoelements", {"exact", "stem"}),
        ("Elektrodenartefakte", "artifact/electrode", {"stem"}),
        ("Muskelartefakte", "artifact/muscle", {"stem"}),
        ("Kauartefakte", "artifact/chewing", {"stem"}),
        ("Augenbewegungsartefakt", "artifact/eye", {"compound"}),  # modifier beats the head
        ("Impedanzprüfungen", "artifact/technical", {"stem"}),
        ("Nachtschwester", "procedure/care", {"compound"}),  # head part
        ("Spikeherd", "interictal/spike", {"compound"}),  # modifier part
        ("Anfallsmusters", "seizure/electrographic", {"stem"}),
        ("Schlaf-Spindeln", "state/graphoelements", {"exact"}),  # written apart
        ("post-ictal", "seizure/end", {"exact"}),
        ("Spikewave", "interictal/spike_wave", {"exact"}),  # written closed
    ],
)
def test_inflection_and_compounds(matcher, text, path, methods):
    b = matcher.best(text)
    assert b is not None and b.path == path, matcher.match(text)
    assert b.method in methods and b.score == 100.0


def test_compound_rules(matcher):
    neg = matcher.best("anfallsfrei")
    assert neg.path == "seizure/seizure" and neg.negated and neg.method == "compound"
    assert matcher.best("artefaktfrei").negated
    assert matcher.best("interiktal").path == "interictal/ied"  # not the head "iktal"
    assert matcher.match("processes") == []  # English inflections are not compound parts
    assert matcher.match("essentially") == []


def test_fuzzy_threshold(matcher):
    hv = matcher.best("Hyperventilaton")
    assert hv.path == "procedure/hyperventilation" and hv.method == "fuzzy"
    assert FUZZY_THRESHOLD <= hv.score < 100
    assert matcher.best("Bewegungsartefackt").path == "artifact/movement"
    assert matcher.best("Fotostimulaton").path == "procedure/photic"
    assert matcher.best("Levetiracetan 1000 mg").path == "procedure/medication"
    # short words: no approximate matching at all
    for typo in ("GTX", "PLD", "Sx", "Aurra", "Anfal", "tonik", "Spik"):
        assert matcher.match(typo) == [], typo
    # real words next to keywords stay apart
    for word in ("klinische Zeichen", "starting", "string", "connected", "ventilation", "Montag"):
        assert all(m.method != "fuzzy" for m in matcher.match(word)), (word, matcher.match(word))


@pytest.mark.parametrize(
    "text, path",
    [
        ("sz", "seizure/seizure"),
        ("Sz", "seizure/seizure"),
        ("SW", "interictal/spike_wave"),
        ("PLED", "interictal/lpd"),
        ("PLEDs left", "interictal/lpd"),
        ("GPDs", "interictal/gpd"),
        ("HV", "procedure/hyperventilation"),
        ("IPS", "procedure/photic"),
        ("EOG", "artifact/eye"),
        ("N2", "state/sleep_stage"),
        ("14&6", "interictal/uncertain_pattern"),
        ("fnsz", "seizure/focal"),
    ],
)
def test_abbreviations_exact(matcher, text, path):
    b = matcher.best(text)
    assert b is not None and b.path == path and b.method == "exact"


@pytest.mark.parametrize(
    "text",
    ["T0", "T1", "T2", "T4", "Fp1", "C3-P3", "Stimulus/S  1", "Response/R 128", "New Segment", "+0.000000",
     "Start", "Ende", "Beginn", "SWW", "HVV", "PLEDX", "xsz", "Status nach SHT", "klinisch unauffällig"],
)
def test_no_accidental_match(matcher, text):
    assert matcher.match(text) == []


# ---------------------------------------------------------------------------------------
# negation and uncertainty
# ---------------------------------------------------------------------------------------


def test_negation_scope_ends_at_aber_and_but(matcher):
    assert _paths(matcher, "keine Anfälle, aber Spikes li temporal") == [
        ("seizure/seizure", True, False),
        ("interictal/spike", False, False),
    ]
    assert _paths(matcher, "keine Anfälle aber Spikes") == [
        ("seizure/seizure", True, False),
        ("interictal/spike", False, False),
    ]
    assert _paths(matcher, "no sz but muscle artifact") == [
        ("seizure/seizure", True, False),
        ("artifact/muscle", False, False),
    ]
    assert matcher.best("no sz but muscle artifact").path == "artifact/muscle"
    assert _paths(matcher, "keine Anfälle während HV")[1] == ("procedure/hyperventilation", False, False)
    assert _paths(matcher, "kein Anfall; Pat. schläft")[1] == ("state/sleep", False, False)
    # and does not end at "und"/"or": both findings negated
    assert [p[1] for p in _paths(matcher, "keine Spikes oder steilen Wellen")] == [True, True]


@pytest.mark.parametrize(
    "text, negated, uncertain",
    [
        ("kein Anfall", True, False),
        ("keine Anfälle", True, False),
        ("no sz", True, False),
        ("no seizure", True, False),
        ("not a seizure", True, False),
        ("ohne Anfallsmuster", True, False),
        ("negative for seizures", True, False),
        ("Anfall ausgeschlossen", True, False),
        ("seizure free", True, False),
        ("V.a. Anfall", False, True),
        ("V.a Anfall", False, True),
        ("Verdacht auf Anfall", False, True),
        ("fraglicher Anfall", False, True),
        ("möglicher Anfall", False, True),
        ("possible seizure", False, True),
        ("probable seizure", False, True),
        ("suspected seizure", False, True),
        ("Anfall?", False, True),
        ("? Anfall", False, True),
        ("DD Anfall", False, True),
        ("Anfall nicht ausgeschlossen", False, True),  # pseudo-negation
        ("seizure cannot be excluded", False, True),
        ("Anfall", False, False),
    ],
)
def test_negation_and_uncertainty_cues(matcher, text, negated, uncertain):
    b = matcher.best(text)
    assert b.path in ("seizure/seizure", "seizure/electrographic")
    assert (b.negated, b.uncertain) == (negated, uncertain), matcher.match(text)


def test_cue_scope_details(matcher):
    # uncertainty also ends at a clause break
    assert _paths(matcher, "fraglich Anfall, sicher Spikes") == [
        ("seizure/seizure", False, True),
        ("interictal/spike", False, False),
    ]
    # a "?" closing one clause does not reach the next
    assert _paths(matcher, "Anfall? Spikes")[1] == ("interictal/spike", False, False)
    # pre-cue window: at most five tokens
    assert matcher.best("keine Hinweise auf Anfall").negated
    assert matcher.best("kein EKG Kanal vorhanden heute morgen Anfall").negated  # 5 tokens between
    assert not matcher.best("kein EKG Kanal vorhanden heute morgen leider Anfall").negated  # 6
    # keywords containing a cue word are not negated by it; "absence of" is a cue
    assert _paths(matcher, "Pat. nicht ansprechbar") == [("seizure/semiology", False, False)]
    assert matcher.best("Absence").path == "seizure/absence"
    assert _paths(matcher, "absence of spikes") == [("interictal/spike", True, False)]
    # "vs" marks both sides as uncertain
    assert [p[2] for p in _paths(matcher, "Anfall vs. Artefakt")] == [True, True]


# ---------------------------------------------------------------------------------------
# primary label, Match, cache, summary
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, path",
    [
        ("HV onset", "procedure/hyperventilation"),  # "onset" is weak
        ("IPS 50 Hz", "procedure/photic"),  # "50 Hz" is weak
        ("50 Hz", "artifact/interference"),
        ("15 Hz", "procedure/photic"),  # pattern
        ("GTC seizure", "seizure/tonic_clonic"),  # specific beats generic in its category
        ("Anfall mit Automatismen", "seizure/seizure"),  # semiology signs are weak
        ("Anfall aus dem Schlaf", "seizure/seizure"),  # generic only yields to its own category
        ("Muskelartefakte, kein Anfall", "artifact/muscle"),  # non-negated first
        ("kein Anfall", "seizure/seizure"),  # negated label when nothing else
        ("electrographic seizure onset", "seizure/electrographic"),
        ("eye movement artifact", "artifact/eye"),
    ],
)
def test_best_ordering(matcher, text, path):
    assert matcher.best(text).path == path, matcher.match(text)


def test_match_fields(matcher):
    (m,) = matcher.match("V.a. SW-Komplexe re frontal")
    assert isinstance(m, Match)
    assert (m.category, m.subcategory, m.keyword) == ("interictal", "spike_wave", "SW-Komplex")
    assert m.matched_text == "sw komplexe" and m.uncertain and not m.negated
    assert (m.score, m.method, m.start, m.end) == (100.0, "stem", 1, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.negated = True  # type: ignore[misc]
    assert matcher.best("") is None and matcher.match("   ") == []


def test_cache_hits_on_repeated_strings(taxonomy):
    m = Matcher(taxonomy, cache_size=128)
    before = m.cache_info()
    assert before.hits == 0 and before.currsize == 0
    first = m.match("Anfall li temporal")
    for _ in range(5):
        assert m.match("Anfall li temporal") == first
        m.best("Anfall li temporal")
    info = m.cache_info()
    assert info.misses == 1 and info.hits == 10 and info.currsize == 1
    first.clear()  # callers get a copy; the cached result is unchanged
    assert m.match("Anfall li temporal")
    m.cache_clear()
    assert m.cache_info().currsize == 0


def test_matcher_pickles_without_its_cache(taxonomy):
    m = Matcher(taxonomy)
    m.match("Anfall")
    clone = pickle.loads(pickle.dumps(m))
    assert clone.cache_info().currsize == 0 and clone.taxonomy.version == taxonomy.version
    assert clone.match("no sz but muscle artifact") == m.match("no sz but muscle artifact")


def test_summarise(matcher):
    texts = ["Anfall", "Anfall", "kein Anfall", "T0", "T0", "T0", "Marker 7", "HV Beginn", "V.a. Anfall"]
    s = summarise(texts, matcher=matcher)
    assert s["taxonomy_version"] == matcher.taxonomy.version
    assert (s["n_texts"], s["n_unique"], s["n_matched"]) == (9, 6, 5)
    assert s["categories"] == {"seizure": 4, "interictal": 0, "state": 0, "artifact": 0, "procedure": 1}
    assert s["subcategories"] == {"seizure/seizure": 4, "procedure/hyperventilation": 1}
    assert (s["negated"], s["uncertain"]) == (1, 1)
    assert s["unmatched"] == [("T0", 3), ("Marker 7", 1)]
    assert matcher.summarise(["T0"])["unmatched"] == [("T0", 1)]
    assert summarise(["Anfall"])["n_matched"] == 1  # default (packaged) matcher


# ---------------------------------------------------------------------------------------
# taxonomy structure and validation
# ---------------------------------------------------------------------------------------


def test_taxonomy_structure(taxonomy):
    assert resources.files("ephys.annotate").joinpath("taxonomy.yaml").is_file()
    assert taxonomy.version.count(".") == 2
    assert [c.id for c in taxonomy.categories] == list(CATEGORY_IDS)
    subs = taxonomy.subcategories
    assert 50 <= len(subs) <= 62
    assert taxonomy.n_keywords >= 200
    print(f"\ntaxonomy {taxonomy.version}: {len(subs)} subcategories, {taxonomy.n_keywords} keywords")
    owner: dict[str, str] = {}
    stems: dict[str, set[str]] = defaultdict(set)
    for s in subs:
        assert s.source and set(s.source) <= set(SOURCE_TAGS), s.path
        assert s.refs, s.path
        assert s.en or s.de, s.path
        for k in s.keywords:
            n = normalise(k)
            assert owner.setdefault(n, s.path) == s.path, f"{k!r} in {owner[n]} and {s.path}"
        for k in (*s.en, *s.de):
            stems[" ".join(stem(t) for t in normalise(k).split())].add(s.path)
        for a in s.abbr:
            assert len(a) <= 6
    collisions = {k: v for k, v in stems.items() if len(v) > 1}
    assert not collisions, collisions


_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _write(tmp_path: Path, data) -> Path:
    p = tmp_path / "taxonomy.yaml"
    text = data if isinstance(data, str) else yaml.dump(data, Dumper=_DUMPER, allow_unicode=True)
    p.write_text(text, encoding="utf-8")
    return p


@functools.cache
def _packaged_text() -> str:
    return resources.files("ephys.annotate").joinpath("taxonomy.yaml").read_text(encoding="utf-8")


def _packaged() -> dict:
    return yaml.load(_packaged_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _mutate(fn):
    def apply():
        d = _packaged()
        fn(d)
        return d

    return apply


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: "version: '2026.11.1'\ncategories: [ {id: seizure\n", "not valid YAML"),
        (lambda: "- just\n- a list\n", "top level must be a mapping"),
        (_mutate(lambda d: d.pop("version")), "'version'"),
        (_mutate(lambda d: d.update(version=2026.11)), "'version'"),
        (_mutate(lambda d: d["categories"].pop()), "categories must be exactly"),
        (_mutate(lambda d: d["categories"][0].update(id="ictal")), "'id' must be one of"),
        (_mutate(lambda d: d["categories"][1]["subcategories"][0].update(source=["Wikipedia"])), "'source'"),
        (_mutate(lambda d: d["categories"][1]["subcategories"][0].pop("source")), "missing 'source'"),
        (_mutate(lambda d: d["categories"][2]["subcategories"][0].pop("label")), "missing 'label'"),
        (_mutate(lambda d: d["categories"][3]["subcategories"][0].update(colour="red")), "unknown keys"),
        (_mutate(lambda d: d["categories"][3]["subcategories"][0].update(en=[True])), "list of non-empty strings"),
        (_mutate(lambda d: d["categories"][4]["subcategories"][0]["en"].append("ANFALL")), "duplicates"),
        (_mutate(lambda d: d["categories"][4]["subcategories"][0]["en"].append("Anfälle")), "inflection folding"),
        (_mutate(lambda d: d["categories"][4]["subcategories"][0]["en"].append("kein")), "cue"),
        (_mutate(lambda d: d["categories"][4]["subcategories"][0]["abbr"].append("TOOLONGX")), "abbreviation"),
        (_mutate(lambda d: d["categories"][0]["subcategories"][1].update(weak=["nope"])), "weak keyword"),
        (_mutate(lambda d: d["categories"][4]["subcategories"][1].update(patterns=["(unclosed"])), "does not compile"),
        (_mutate(lambda d: d["categories"][0]["subcategories"].append({"id": "seizure", "label": "x",
                                                                      "source": ["TUH"], "en": ["x y"]})),
         "duplicate subcategory id"),
        (_mutate(lambda d: d["categories"].__setitem__(0, "seizure")), r"categories\[0\]: must be a mapping"),
        (_mutate(lambda d: d["categories"][0]["subcategories"][0].update(generic="yes")), "'generic' must be true"),
        (_mutate(lambda d: d["categories"][0]["subcategories"][0].update(id="Bad-Id")), "lower-case identifier"),
        (_mutate(lambda d: d["categories"][0]["subcategories"][0].update(weak=[True])), "'weak' must be a list"),
        (_mutate(lambda d: d["categories"][0]["subcategories"][0].update(en=[], de=[], abbr=[])), "no keywords"),
        (_mutate(lambda d: d.update({True: "an unquoted yes/on key"})), r"unknown top-level keys \[True\]"),
        (_mutate(lambda d: d["categories"][0]["subcategories"][0].update({True: ["x"]})), r"unknown keys \[True\]"),
        (_mutate(lambda d: d["categories"][0]["subcategories"][0].update(label=None)), "missing 'label'"),
        (_mutate(lambda d: d["categories"][0]["subcategories"][0].update(source=None)), "missing 'source'"),
        (_mutate(lambda d: d["categories"][0]["subcategories"][0].update(source=["TUH", "Wiki"])), "got 'Wiki'"),
    ],
)
def test_malformed_taxonomy_raises_value_error(tmp_path, make, message):
    with pytest.raises(ValueError, match=message):
        load_taxonomy(_write(tmp_path, make()))


def test_errors_name_the_position_and_ids_and_empty_lists_may_be_null(tmp_path, taxonomy):
    d = _packaged()
    d["categories"][4]["subcategories"][0]["abbr"].append("TOOLONGX")
    with pytest.raises(ValueError, match=r"taxonomy\.yaml: categories\[4\]\.subcategories\[0\] "
                                         r"\(procedure/hyperventilation\): abbreviation 'TOOLONGX'"):
        load_taxonomy(_write(tmp_path, d))
    d = _packaged()
    d["categories"][0]["subcategories"][0]["de"] = None  # `de:` with nothing after it
    sub = load_taxonomy(_write(tmp_path, d)).subcategory("seizure", d["categories"][0]["subcategories"][0]["id"])
    assert sub.de == () and sub.en == taxonomy.categories[0].subcategories[0].en
    d["categories"][0]["subcategories"][0]["source"] = [" TUH "]  # tags are compared stripped, as keywords are
    assert load_taxonomy(_write(tmp_path, d)).categories[0].subcategories[0].source == ("TUH",)


def test_roundtrip_of_packaged_yaml(tmp_path, taxonomy):
    again = load_taxonomy(_write(tmp_path, _packaged()))
    assert again.version == taxonomy.version and again.n_keywords == taxonomy.n_keywords


# ---------------------------------------------------------------------------------------
# the real recordings' annotation texts
# ---------------------------------------------------------------------------------------


def test_real_recording_annotations(matcher):
    from tests.ingest_helpers import REAL

    if not REAL.exists():
        pytest.skip("../shared/data/real is not present")
    from ephys.ingest.readers.edf import EDFReader

    texts: list[str] = []
    for rel in (
        "eegmmidb/S001R03.edf",
        "bci2000-edf/test_edf_overlapping_annotations.edf",
        "sleep-edf/SC4001EC-Hypnogram.edf",
        "nihonkohden-edf-export/chtypes_edf.edf",
    ):
        with EDFReader(REAL / rel) as r:
            texts += [a.text for a in r.annotations()]
    s = summarise(texts, matcher=matcher)
    unmatched = dict(s["unmatched"])
    assert {"T0", "T1", "T2"} <= set(unmatched)  # motor-imagery cue codes are not findings
    assert s["subcategories"]["state/sleep_stage"] == 154  # the whole Sleep-EDF hypnogram
    assert matcher.best("Sleep stage ?").uncertain
    assert matcher.best("high amp RDA F4, C4").path == "interictal/rhythmic_delta"
    assert matcher.best("starts turning head").path == "seizure/semiology"
