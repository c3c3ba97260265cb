"""Formats read through MNE-Python: BrainVision, EEGLAB, FIF, Persyst, Nihon Kohden, ...

MNE reads these well; ephys takes channel names and types, sampling rate, and
annotations from it, and converts MNE's volts to µV. MNE is told to skip
memory maps (``preload=False``; data are read on demand with file reads).

What MNE accepts silently is checked here: a BrainVision binary data file must hold a whole
number of samples of ``NumberOfChannels`` channels, ``[Channel Infos]`` must not list more
channels than declared, and no marker may lie past the end of the data (Brain Products,
"BrainVision Core Data Format 1.0": multiplexed or vectorised samples, 2 or 4 bytes each);
an error while reading data (a truncated FIF or EEGLAB ``.fdt``) is a ``corrupt`` file, not an
internal error. MNE's own prints and warnings never reach the console (they can name files).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import warnings
from pathlib import Path

import numpy as np

from ephys.errors import CorruptFileError, UnreadableFileError
from ephys.ingest.channels import channel_kind, parse_label
from ephys.ingest.readers.base import PatientInfo, Reader
from ephys.schemas import Annotation, ChannelInfo, RecordingHeader, Segment

_MNE_KIND = {"eeg": "eeg", "eog": "eog", "emg": "emg", "ecg": "ecg", "resp": "resp", "stim": "stim", "seeg": "eeg"}


class MNEReader(Reader):
    """A recording read with ``mne.io.read_raw`` (MNE picks the format by extension).

    Raises
    ------
    CorruptFileError
        When MNE cannot parse the file (the MNE message is kept, shortened).
    """

    def __init__(self, path, fmt: str):
        import mne

        self.path = Path(path)
        self._p = str(path)
        if fmt == "nihon_kohden":
            _check_nihon(self.path, self._p)
        elif fmt == "fif":
            _check_fif(self.path, self._p)
        vhdr = _check_brainvision_header(self.path, self._p) if fmt == "brainvision" else None
        try:
            with _quiet():
                self._raw = mne.io.read_raw(self.path, preload=False, verbose="error")
        except PermissionError as exc:
            raise UnreadableFileError(f"cannot open: {exc.strerror}", str(path)) from None
        except Exception as exc:  # noqa: BLE001 - MNE raises many types for bad files
            raise CorruptFileError(f"{fmt} file could not be parsed (MNE: {_first_line(exc)})", str(path)) from None
        raw = self._raw
        if vhdr is not None:
            _check_brainvision(self.path, vhdr, len(raw.ch_names), raw.n_times, self._p)
        sfreq = float(raw.info["sfreq"])
        types = raw.get_channel_types()
        channels = []
        for i, (label, mtype) in enumerate(zip(raw.ch_names, types)):
            parsed = parse_label(label)
            volt = mtype in ("eeg", "eog", "emg", "ecg", "seeg", "ecog")
            kind = channel_kind(parsed, 1e6 if volt else None, untyped_is_eeg=(mtype == "eeg"))
            if mtype in _MNE_KIND and mtype != "eeg":
                kind = _MNE_KIND[mtype]
            channels.append(ChannelInfo(index=i, label=label, name=parsed.name, kind=kind, sfreq=sfreq,
                                        unit="V" if volt else "", to_uv=1e6 if volt else None,
                                        reference=parsed.reference))
        duration = raw.n_times / sfreq
        self.header = RecordingHeader(
            format=fmt, channels=channels, duration_s=duration,
            segments=[Segment(start_s=0.0, duration_s=duration)] if raw.n_times else [],
        )
        info = raw.info.get("subject_info") or {}
        names = [str(info[k]) for k in ("first_name", "middle_name", "last_name") if info.get(k)]
        if raw.info.get("experimenter"):  # FIF: the person who recorded, also typed into annotations
            names.append(str(raw.info["experimenter"]))
        self.patient = PatientInfo(
            patient_id=str(info.get("his_id") or info.get("id") or ""),
            names=names,
            birthdate=str(info["birthday"]) if info.get("birthday") else None,
            start=raw.info["meas_date"].replace(tzinfo=None) if raw.info["meas_date"] else None,
        )

    def annotations(self) -> list[Annotation]:
        a = self._raw.annotations
        t0 = self._raw.first_time if a.orig_time is not None else 0.0
        return [
            Annotation(onset_s=float(o - t0), duration_s=float(max(d, 0.0)), text=str(t), source=self.header.format)
            for o, d, t in zip(a.onset, a.duration, a.description)
        ]

    def read_channels(self, channels: list[int]) -> list[np.ndarray]:
        return list(self.read(0, self._raw.n_times, channels))

    def read(self, start: int, stop: int, channels: list[int]) -> np.ndarray:
        self._check_range(start, stop, channels, self._raw.n_times)
        if not channels:
            return np.zeros((0, stop - start), np.float32)
        try:
            with _quiet():
                data = self._raw.get_data(picks=channels, start=start, stop=stop)
        except (OSError, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - MNE raises many types for truncated data
            raise CorruptFileError(f"{self.header.format} data could not be read, the file is truncated or damaged "
                                   f"(MNE: {_first_line(exc)})", self._p) from None
        scale = np.array([self.header.channels[c].to_uv or 1.0 for c in channels])[:, None]
        return (data * scale).astype(np.float32)

    def close(self) -> None:
        self._raw = None


@contextlib.contextmanager
def _quiet():
    """MNE's warnings, prints (some readers print to stdout) and log lines swallowed: they can
    name the file, and a worker's stdout is the driver's (``ingest --json`` must stay JSON)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


_BV_BYTES = {"INT_16": 2, "UINT_16": 2, "INT_32": 4, "IEEE_FLOAT_32": 4}


def _ini_value(text: str, key: str) -> str | None:
    m = re.search(rf"^\s*{key}\s*=\s*(.*?)\s*$", text, re.I | re.M)
    return m[1] if m else None


def _first_line(exc: Exception) -> str:
    """The first line of an MNE error message (at most 160 characters), or its kind when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__.removesuffix("Error").lower() + " error"


#: Device strings a Nihon Kohden ``.EEG`` file opens with (and repeats at 0x81), as MNE accepts them.
_NK_VERSIONS = (b"EEG-1100A V01.00", b"EEG-1100B V01.00", b"EEG-1100C V01.00", b"QI-403A   V01.00", b"QI-403A   V02.00",
                b"EEG-2100  V01.00", b"EEG-2100  V02.00", b"DAE-2100D V01.30", b"DAE-2100D V02.00", b"EEG-1200A V01.00")


def _check_nihon(eeg: Path, path: str) -> None:
    """Raise CorruptFileError for a Nihon Kohden ``.EEG`` file whose block structure is broken.

    Layout as MNE-Python reads it (``mne/io/nihon/nihon.py``, BSD-3-Clause): the device string at 0
    and 0x81, the control-block count at 0x91 and addresses (uint32 LE) from 0x92, the waveform sign
    1 at 0x17FE; per control block the data-block count at +17 and addresses from +18; per data block
    the rate (uint16, low 14 bits) at +0x1A, the duration in 0.1 s (uint32) at +0x1C, the channel count
    at +0x26, 10 bytes per channel from +0x27, then 2 bytes per channel and one marks word per sample.
    MNE reads what the header promises without checking the file's size.
    """
    import struct

    try:
        with open(eeg, "rb", buffering=0) as f:
            head = f.read(0x1800)
            size = os.fstat(f.fileno()).st_size
            if len(head) < 0x1800 or head[:16] not in _NK_VERSIONS or head[0x81:0x91] not in _NK_VERSIONS:
                raise CorruptFileError(f"Nihon Kohden header truncated or not a known device string ({size} bytes)", path)
            if head[0x17FE] != 1:
                raise CorruptFileError(f"Nihon Kohden waveform-block sign is {head[0x17FE]}, expected 1", path)
            n_ctl = head[0x91]
            if n_ctl < 1:
                raise CorruptFileError("Nihon Kohden file has no control block", path)
            (ctl,) = struct.unpack_from("<I", head, 0x92)

            def at(offset: int, n: int) -> bytes:
                if offset + n > size:
                    raise CorruptFileError(f"Nihon Kohden block at byte {offset} lies past the end of the file "
                                           f"({size} bytes): truncated", path)
                f.seek(offset)
                return f.read(n)

            n_data = at(ctl + 17, 1)[0]
            if n_data < 1:
                raise CorruptFileError("Nihon Kohden control block lists no data block", path)
            for k in range(n_data):
                (block,) = struct.unpack("<I", at(ctl + 18 + 20 * k, 4))
                fields = at(block, 0x27)
                rate = struct.unpack_from("<H", fields, 0x1A)[0] & 0x3FFF
                (tenths,) = struct.unpack_from("<I", fields, 0x1C)
                n_ch = fields[0x26]
                if rate < 1 or n_ch < 1:
                    raise CorruptFileError(f"Nihon Kohden data block {k}: sampling rate {rate} Hz, {n_ch} channels", path)
                end = block + 0x27 + 10 * n_ch + tenths * rate // 10 * (n_ch + 1) * 2
                if end > size:
                    raise CorruptFileError(f"Nihon Kohden data block {k} needs {end} bytes, the file has {size}: "
                                           "truncated", path)
    except OSError:
        return  # the read itself reports I/O errors


def _check_fif(fif: Path, path: str) -> None:
    """Raise CorruptFileError for a FIF file cut short: MNE scans a file without a tag directory
    (MNE itself writes none) tag by tag and reads a truncated one as a shorter recording.

    FIF is a chain of tags, each a big-endian header ``kind, type, size, next`` (int32) and ``size``
    data bytes; ``next`` 0 means the next tag follows, -1 that none does, a positive value its
    position. Blocks open with a FIFF_BLOCK_START tag (kind 104) and close with FIFF_BLOCK_END (105).
    A complete file closes every block it opens and no tag runs past its end. Source: the FIF format
    as MNE-Python reads it (``mne/_fiff/tag.py``, ``mne/_fiff/open.py``, ``mne/_fiff/constants.py``).
    """
    import struct

    try:
        with open(fif, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            pos, depth, seen = 0, 0, set()
            while pos is not None and pos < size:
                if pos in seen:
                    raise CorruptFileError(f"FIF tag chain loops at byte {pos}", path)
                seen.add(pos)
                f.seek(pos)
                head = f.read(16)
                if len(head) < 16:
                    raise CorruptFileError(f"FIF tag at byte {pos} is cut off by the end of the file ({size} bytes): "
                                           "truncated", path)
                kind, _, n, nxt = struct.unpack(">iiii", head)
                if n < 0 or pos + 16 + n > size:
                    raise CorruptFileError(f"FIF tag at byte {pos} needs {16 + n} bytes, the file ends at {size}: "
                                           "truncated", path)
                depth += (kind == 104) - (kind == 105)
                pos = pos + 16 + n if nxt == 0 else (nxt if nxt > 0 else None)
            if depth > 0:
                raise CorruptFileError(f"FIF file ends inside {depth} open blocks ({size} bytes): truncated", path)
    except OSError:
        return  # the read itself reports I/O errors


def _check_brainvision_header(vhdr: Path, path: str) -> str | None:
    """The header's text (``None`` when it cannot be read: MNE then reports it). Raises CorruptFileError
    for a header whose channel count disagrees with its channel list (checked before MNE, whose own
    message for it is about units)."""
    try:
        text = vhdr.read_text(encoding="latin-1")
    except OSError:
        return None
    declared = _ini_value(text, "NumberOfChannels")
    listed = len(re.findall(r"^\s*Ch\d+\s*=", text.split("[Channel Infos]", 1)[-1].split("\n[", 1)[0], re.M))
    if declared and declared.isdigit() and "[Channel Infos]" in text and listed != int(declared):
        raise CorruptFileError(f"BrainVision header declares NumberOfChannels={declared} but lists {listed} channels", path)
    return text


def _check_brainvision(vhdr: Path, text: str, n_channels: int, n_times: int, path: str) -> None:
    """Raise CorruptFileError for a BrainVision set that MNE would read with a wrong duration or layout
    (``text``: the header, as :func:`_check_brainvision_header` read it)."""
    if (_ini_value(text, "DataFormat") or "BINARY").upper() == "BINARY":
        nbytes = _BV_BYTES.get((_ini_value(text, "BinaryFormat") or "").upper())
        data = _ini_value(text, "DataFile")
        if nbytes and data:
            try:
                size = (vhdr.parent / data).stat().st_size
            except OSError:
                size = None
            frame = nbytes * max(n_channels, 1)
            if size is not None and size % frame:
                raise CorruptFileError(f"BrainVision data file of {size} bytes is not a whole number of {frame}-byte "
                                       f"samples of {n_channels} channels: truncated, or NumberOfChannels is wrong", path)
    marker = _ini_value(text, "MarkerFile")
    if marker:
        try:
            mtext = (vhdr.parent / marker).read_text(encoding="latin-1")
        except OSError:
            return
        positions = [int(m[1]) for m in re.finditer(r"^\s*Mk\d+\s*=[^,\n]*,[^,\n]*,\s*(\d+)", mtext, re.M)]
        if positions and max(positions) > n_times + 1:
            raise CorruptFileError(f"a BrainVision marker lies at sample {max(positions)}, past the end of the data "
                                   f"({n_times} samples): the data file is truncated", path)
