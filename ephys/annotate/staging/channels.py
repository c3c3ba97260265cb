"""Which channels a recording is staged from (:func:`choose_channels`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ephys.annotate.staging.base import MIN_SFREQ
from ephys.errors import NoStagingChannelError
from ephys.ingest.channels import canonical_electrode

if TYPE_CHECKING:  # pragma: no cover
    from ephys.schemas import ChannelInfo


@dataclass(frozen=True)
class StagingChannels:
    """The channels one recording is staged with (indices into ``header.channels``).

    ``eeg_ref`` is set when ephys re-references the EEG itself
    (``EEG = channels[eeg] - channels[eeg_ref]``); ``None`` means the EEG is
    used as recorded. ``eeg_name`` is the derivation actually used
    (``"C3-A1"``, ``"C4-A1"``, ``"Fpz-Cz"``, ``"C4"`` for a common-reference
    channel).
    """

    eeg: int
    eeg_name: str
    eeg_ref: int | None = None
    eog: int | None = None
    eog_name: str | None = None
    emg: int | None = None
    emg_name: str | None = None
    reason: str = ""

    @property
    def indices(self) -> list[int]:
        """Every channel index to read, EEG first."""
        return [i for i in (self.eeg, self.eeg_ref, self.eog, self.emg) if i is not None]

    @property
    def names(self) -> dict[str, str]:
        """``{"eeg": ..., "eog": ..., "emg": ...}`` for the signals that are used."""
        out = {"eeg": self.eeg_name}
        if self.eog_name is not None:
            out["eog"] = self.eog_name
        if self.emg_name is not None:
            out["emg"] = self.emg_name
        return out


#: Referential sites in order of preference: central (AASM's C4-M1, backup C3-M2), then
#: vertex, then frontal (AASM alternative montage and GSSC's training sites C3/C4/F3/F4).
_SITE_ORDER = ("C4", "C3", "Cz", "F4", "F3", "Fz")
#: Bipolar derivations in order of preference (Sleep-EDF Fpz-Cz, its Pz-Oz; AASM Fz-Cz/Cz-Oz).
_BIPOLAR_ORDER = ("Fpz-Cz", "Fz-Cz", "Cz-Pz", "Cz-Oz", "Pz-Oz")
#: Fallback ranking of any other EEG electrode by its region (name prefix).
_REGION_ORDER = ("C", "CP", "FC", "F", "P", "AF", "Fp", "T", "TP", "FT", "PO", "O")
#: Reference electrodes (ear / mastoid): never staged on their own.
_REF_ELECTRODES = {"A1", "A2", "M1", "M2"}
#: Contralateral ear/mastoid references of the two central and frontal sites.
_CONTRA = {"C4": ("M1", "A1"), "C3": ("M2", "A2"), "F4": ("M1", "A1"), "F3": ("M2", "A2")}
_LEFT_EOG = ("HEOG", "HORIZ", "LOC", "E1", "EOGL", "EOG L", "LEOG", "L-EOG", "EOG1", "LEFT", "EOG LEFT")
_RIGHT_EOG = ("ROC", "E2", "EOGR", "EOG R", "REOG", "R-EOG", "EOG2", "RIGHT")
_VERTICAL_EOG = ("VEOG", "VERT")
_CHIN_EMG = ("CHIN", "SUBMENT", "MENT", "EMG1", "EMG")
_LEG_EMG = ("LEG", "TIB", "LAT", "RAT", "ARM", "DELT")


def _usable(ch: ChannelInfo, kind: str) -> bool:
    return ch.kind == kind and ch.to_uv is not None and ch.sfreq >= MIN_SFREQ


def _region(name: str) -> int:
    head = name.rstrip("0123456789z")
    return _REGION_ORDER.index(head) if head in _REGION_ORDER else len(_REGION_ORDER)


def _eeg_rank(ch: ChannelInfo) -> tuple | None:
    """Sort key of an EEG channel (lower is better), ``None`` if it cannot be used alone."""
    name = ch.name
    ref = ch.reference
    ear_ref = ref in _REF_ELECTRODES
    if name in _REF_ELECTRODES:
        return None
    if "-" not in name:  # referential (recorded reference in ``ref``, or common reference)
        if name in _SITE_ORDER:
            contra = ref in _CONTRA.get(name, ())
            # C4-M1 > C3-M2 > C4 (other/common ref) > C3 ...; Cz, F4, F3, Fz after both centrals.
            tier = 0 if name in ("C4", "C3") else 1
            return (tier, 0 if contra else 1, _SITE_ORDER.index(name), 0 if ear_ref else 1)
        return (3, _region(name), -1 if ear_ref else len(_SITE_ORDER), name)
    if name in _BIPOLAR_ORDER:
        return (2, _BIPOLAR_ORDER.index(name), 0, "")
    # other bipolar pairs (clinical double banana): one containing C4, C3, Cz, F4... first
    sites = [_SITE_ORDER.index(e) for e in name.split("-") if e in _SITE_ORDER]
    a, _, b = name.partition("-")
    return (3, min(_region(a), _region(b)), min(sites, default=len(_SITE_ORDER)), name)


def _text_rank(ch: ChannelInfo, prefer: tuple[str, ...], then: tuple[str, ...], avoid: tuple[str, ...]) -> tuple:
    text = f"{ch.label} {ch.name}".upper()
    if any(w in text for w in avoid):
        return (3, ch.index)
    if any(w in text for w in prefer):
        return (0, ch.index)
    if any(w in text for w in then):
        return (1, ch.index)
    return (2, ch.index)


def choose_channels(channels: list[ChannelInfo]) -> StagingChannels:
    """Pick the EEG (and EOG/EMG) one recording is staged with.

    EEG, among voltage channels of kind ``"eeg"`` sampled at >= :data:`MIN_SFREQ`:

    1. a central referential channel: C4 or C3; one referenced to the
       contralateral ear/mastoid (C4-M1/A1, C3-M2/A2, the AASM derivations)
       wins over the other, then C4 over C3;
    2. Cz, then F4, F3, Fz (GSSC was trained mostly on C3/C4/F3/F4);
    3. a bipolar derivation: Fpz-Cz, Fz-Cz, Cz-Pz, Cz-Oz, Pz-Oz (Sleep-EDF);
    4. any other EEG, central before frontal, parietal, temporal, occipital.

    Ear and mastoid electrodes recorded as channels of their own are never
    staged alone.

    Reference: a channel whose label names its reference (``C3-A1``) is used
    as recorded. Scalp channels recorded against a common reference (labels
    ``C4``, ``C4-Ref``, ``C4-AVG``) are also used as recorded -- the amplifier
    reference is not known, and both models z-score or robust-scale the signal
    anyway -- except in one case: when the chosen C4/C3/F4/F3 has no ear
    reference and the contralateral mastoid/ear (M1/A1 for C4, M2/A2 for C3)
    exists as a channel at the same rate, the EEG is re-referenced to it
    (``eeg_ref``), giving the AASM derivation ``C4-M1``.

    EOG: one voltage channel of kind ``"eog"``; horizontal or left
    (HEOG, LOC, E1, EOG1, ...) before right, vertical last. EMG: one chin
    EMG (leg EMGs last) -- only YASA uses it.

    Raises
    ------
    NoStagingChannelError
        No EEG channel is usable (none, non-voltage, or all below :data:`MIN_SFREQ`).
    """
    eeg = [(r, ch) for ch in channels if _usable(ch, "eeg") and (r := _eeg_rank(ch)) is not None]
    if not eeg:
        rates = sorted({c.sfreq for c in channels if c.kind == "eeg"})
        why = (
            f"no EEG channel sampled at >= {MIN_SFREQ:g} Hz (EEG rates {rates})"
            if rates
            else "no EEG channel (besides ear/mastoid references)"
        )
        raise NoStagingChannelError(f"cannot stage sleep: {why}")
    eeg.sort(key=lambda rc: rc[0])
    best = eeg[0][1]
    reason = []
    ref_idx = None
    if "-" in best.name:
        eeg_name = best.name
        reason.append(f"EEG {eeg_name} (bipolar, as recorded)")
    elif best.reference and canonical_electrode(best.reference):
        eeg_name = f"{best.name}-{best.reference}"
        reason.append(f"EEG {eeg_name} (recorded reference)")
    else:  # common reference (no reference in the label, or Ref/AVG/CAR/LE...)
        eeg_name = f"{best.name}-{best.reference}" if best.reference else best.name
        for ref_name in _CONTRA.get(best.name, ()):
            cand = [
                c for c in channels
                if c.name == ref_name and c.kind == "eeg" and c.to_uv is not None and c.sfreq == best.sfreq
            ]
            if cand:
                ref_idx = cand[0].index
                eeg_name = f"{best.name}-{ref_name}"
                reason.append(f"EEG {eeg_name} (re-referenced to the contralateral {ref_name})")
                break
        else:
            reason.append(f"EEG {eeg_name} (common reference, as recorded)")
    tier = eeg[0][0][0]
    tiers = {0: "central site", 1: "vertex/frontal site", 2: "preferred bipolar derivation", 3: "fallback"}
    reason[-1] += f", {tiers[tier]}"

    eogs = sorted(
        (c for c in channels if _usable(c, "eog")), key=lambda c: _text_rank(c, _LEFT_EOG, _RIGHT_EOG, _VERTICAL_EOG)
    )
    eog = eogs[0] if eogs else None
    reason.append(f"EOG {eog.name}" if eog else "no EOG")
    emgs = sorted((c for c in channels if _usable(c, "emg")), key=lambda c: _text_rank(c, _CHIN_EMG, (), _LEG_EMG))
    emg = emgs[0] if emgs else None
    reason.append(f"EMG {emg.name}" if emg else "no EMG")
    return StagingChannels(
        eeg=best.index,
        eeg_name=eeg_name,
        eeg_ref=ref_idx,
        eog=eog.index if eog else None,
        eog_name=eog.name if eog else None,
        emg=emg.index if emg else None,
        emg_name=emg.name if emg else None,
        reason="; ".join(reason),
    )
