"""Channel labels to standard 10-20/10-10 names, and channel kinds.

Rules (applied in order, case-insensitive):

1. strip whitespace and trailing dots (``"Fc5."`` -> ``"Fc5"``, PhysioNet EEGMMIDB);
2. drop a type prefix ``EEG``/``EOG``/``EMG``/``ECG``/``POL`` (the prefix decides the kind);
3. a reference suffix ``-Ref``, ``-A1``, ``-A2``, ``-M1``, ``-M2``, ``-LE``, ``-RE``,
   ``-AVG``, ``-AV``, ``-CAR``, ``-AR`` makes a referential channel named by its
   electrode (``"EEG Fp1-Ref"`` -> ``"Fp1"``, ``"C3-A1"`` -> ``"C3"``);
4. two scalp electrodes joined by ``-`` are a bipolar derivation (``"Fpz-Cz"``);
5. old names T3/T4/T5/T6 become T7/T8/P7/P8 (ACNS 2006 / Jasper 10-20 renaming);
6. electrode names get their canonical case (``"FP1"`` -> ``"Fp1"``, ``"FCZ"`` -> ``"FCz"``).

Sources: the 10-10 nomenclature of Chatrian et al. (1985) and Oostenveld &
Praamstra (2001); the ACNS guideline 2 (2006) for the T3->T7 renaming.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: The 19 electrodes of the international 10-20 system (modern names).
TEN_TWENTY = (
    "Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8",
    "T7", "C3", "Cz", "C4", "T8",
    "P7", "P3", "Pz", "P4", "P8",
    "O1", "O2",
)

_ROWS = {
    "Fp": ["z", "1", "2"],
    "AF": ["z", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"],
    "F": ["z"] + [str(i) for i in range(1, 11)],
    "FT": ["z"] + [str(i) for i in range(7, 11)],
    "FC": ["z"] + [str(i) for i in range(1, 7)],
    "T": [str(i) for i in range(7, 11)],
    "C": ["z"] + [str(i) for i in range(1, 7)],
    "TP": ["z"] + [str(i) for i in range(7, 11)],
    "CP": ["z"] + [str(i) for i in range(1, 7)],
    "P": ["z"] + [str(i) for i in range(1, 11)],
    "PO": ["z"] + [str(i) for i in range(1, 11)],
    "O": ["z", "1", "2", "9", "10"],
    "I": ["z", "1", "2"],
    "A": ["1", "2"],
    "M": ["1", "2"],
    "N": ["z"],
}
#: Every 10-10 electrode (plus ear/mastoid references), keyed by upper case.
ELECTRODES: dict[str, str] = {(row + s).upper(): row + s for row, sfx in _ROWS.items() for s in sfx}
#: Ear and mastoid electrodes: usual references, not scalp sites.
REFERENCE_ELECTRODES = {"A1", "A2", "M1", "M2"}
OLD_NAMES = {"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}

_REF_SUFFIXES = {"REF", "A1", "A2", "M1", "M2", "LE", "RE", "AVG", "AV", "CAR", "AR", "A1A2", "A12", "LINKED"}
_PREFIX = re.compile(r"^(EEG|EOG|EMG|ECG|EKG|POL)[\s_:]+", re.IGNORECASE)
_KIND_WORDS = [
    ("eog", re.compile(r"EOG|LOC|ROC|HEOG|VEOG|EYE", re.I)),
    ("emg", re.compile(r"EMG|CHIN|LEG|TIBIA", re.I)),
    ("ecg", re.compile(r"ECG|EKG|CARDIAC|HEART", re.I)),
    ("resp", re.compile(r"RESP|THOR|ABDO|AIRFLOW|NASAL|SAO2|SPO2|PLETH|PULSE|BPM|NAF|VAB|VTH|PHONO|SNORE|POS", re.I)),
    ("stim", re.compile(r"TRIG|STATUS|STI|EVENT|MARK|PHOTIC", re.I)),
]


@dataclass(frozen=True)
class ParsedLabel:
    """Result of :func:`parse_label`.

    ``name``: standard electrode name, bipolar ``"A-B"`` name, or the cleaned
    label; ``kind_hint``: a kind named by a prefix or label word (``None`` if
    the label says nothing); ``is_standard``: ``name`` is a 10-10 electrode (a
    referential channel); ``is_bipolar``: two scalp electrodes; ``reference``:
    the reference named by the label, if any.
    """

    name: str
    kind_hint: str | None
    is_standard: bool
    is_bipolar: bool
    reference: str | None


def canonical_electrode(token: str) -> str | None:
    """Standard name of one electrode token (``"t3"`` -> ``"T7"``), else ``None``."""
    t = token.strip().rstrip(".").upper()
    if not t:
        return None
    t = OLD_NAMES.get(t, t)
    return ELECTRODES.get(t)


def parse_label(label: str) -> ParsedLabel:
    """Parse one channel label (see module docstring for the rules)."""
    raw = label.strip().rstrip(".").strip()
    kind_hint = None
    m = _PREFIX.match(raw)
    if m:
        p = m.group(1).upper()
        kind_hint = {"EEG": "eeg", "EOG": "eog", "EMG": "emg", "ECG": "ecg", "EKG": "ecg", "POL": "misc"}[p]
        raw = raw[m.end() :].strip()
    parts = [p.strip().rstrip(".") for p in re.split(r"\s*[-:]\s*", raw) if p.strip()]
    if len(parts) == 1:
        e = canonical_electrode(parts[0])
        if e is not None:
            return ParsedLabel(e, kind_hint, True, False, None)
    elif len(parts) == 2:
        a = canonical_electrode(parts[0])
        ref_token = parts[1].upper()
        if a is not None and ref_token in _REF_SUFFIXES:
            ref = canonical_electrode(parts[1]) or parts[1]
            return ParsedLabel(a, kind_hint, True, False, ref)
        b = canonical_electrode(parts[1])
        if a is not None and b is not None:
            if b in REFERENCE_ELECTRODES and a not in REFERENCE_ELECTRODES:
                return ParsedLabel(a, kind_hint, True, False, b)
            return ParsedLabel(f"{a}-{b}", kind_hint, False, True, None)
    if kind_hint is None:
        for kind, rx in _KIND_WORDS:
            if rx.search(raw):
                kind_hint = kind
                break
    cleaned = label.strip().rstrip(".").strip()
    return ParsedLabel(cleaned or "?", kind_hint, False, False, None)


def channel_kind(parsed: ParsedLabel, unit_to_uv: float | None, *, untyped_is_eeg: bool = False) -> str:
    """Kind of a channel from its parsed label and unit.

    EEG needs a voltage unit and either an ``EEG`` prefix, a standard electrode
    name, or a bipolar pair of standard electrodes. Channels of formats without
    types (``untyped_is_eeg``, e.g. BrainVision) with a voltage unit and no
    label word saying otherwise are EEG too.
    """
    if unit_to_uv is None:
        return parsed.kind_hint if parsed.kind_hint not in (None, "eeg") else "misc"
    if parsed.kind_hint and parsed.kind_hint != "eeg":
        return parsed.kind_hint
    if parsed.kind_hint == "eeg" or parsed.is_standard or parsed.is_bipolar or untyped_is_eeg:
        return "eeg"
    return "misc"


_UNIT_TO_UV = {"uv": 1.0, "µv": 1.0, "μv": 1.0, "mv": 1e3, "v": 1e6, "nv": 1e-3, "microvolt": 1.0, "microvolts": 1.0}


def unit_to_uv(unit: str) -> float | None:
    """Factor from a physical unit to µV (``"UV"`` -> 1.0, ``"mV"`` -> 1000), ``None`` if not a voltage.

    Case-insensitive on purpose: DREAMS writes ``UV``, which MNE reads as volts.
    """
    return _UNIT_TO_UV.get(unit.strip().lower())
