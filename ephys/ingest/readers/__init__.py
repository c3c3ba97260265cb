"""Readers, chosen by content.

:func:`open_recording` returns a :class:`~ephys.ingest.readers.base.Reader`
for a discovered recording; formats that are recognised but not yet
readable raise :class:`~ephys.errors.UnsupportedFormatError`.
"""

from __future__ import annotations

from ephys.errors import UnsupportedFormatError, WrongMagicError
from ephys.ingest.readers.base import DEFAULT_BUFFER_BYTES, PatientInfo, Reader
from ephys.ingest.readers.edf import EDFReader

#: Formats whose reader is MNE's.
MNE_FORMATS = {"brainvision", "eeglab", "fif", "persyst", "nihon_kohden", "gdf", "cnt"}
#: Recognised formats without a reader yet.
UNSUPPORTED: dict[str, str] = {}


def open_recording(path, fmt: str, buffer_bytes: int = DEFAULT_BUFFER_BYTES) -> Reader:
    """Open ``path`` (the primary file of a recording) as format ``fmt`` (from discovery).

    Raises
    ------
    UnsupportedFormatError
        For recognised formats or variants ephys cannot read (e.g. compressed TRC).
    WrongMagicError
        When discovery could not recognise the content (``fmt`` starts with ``unknown``).
    ReadError
        Any reader error (corrupt, empty, unreadable).
    """
    if fmt in ("edf", "bdf", "unknown.edf", "unknown.bdf", "unknown.rec"):
        return EDFReader(path, buffer_bytes=buffer_bytes)
    if fmt == "micromed_trc":
        from ephys.ingest.readers.trc import TRCReader

        return TRCReader(path, buffer_bytes=buffer_bytes)
    if fmt == "nicolet_e":
        from ephys.ingest.readers.nicolet import NicoletReader

        return NicoletReader(path, buffer_bytes=buffer_bytes)
    if fmt in MNE_FORMATS:
        from ephys.ingest.readers.mne_reader import MNEReader

        return MNEReader(path, fmt)
    if fmt in UNSUPPORTED:
        raise UnsupportedFormatError(f"{UNSUPPORTED[fmt]} recognised, but this version of ephys cannot read it yet", str(path))
    raise WrongMagicError(f"content does not match any known EEG format ({fmt})", str(path))


__all__ = ["DEFAULT_BUFFER_BYTES", "EDFReader", "PatientInfo", "Reader", "open_recording"]
