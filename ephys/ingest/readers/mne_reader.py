"""Formats read through MNE-Python: BrainVision, EEGLAB, FIF, Persyst, Nihon Kohden, ...

MNE reads these well; ephys takes channel names and types, sampling rate, and
annotations from it, and converts MNE's volts to µV. MNE is told to skip
memory maps (``preload=False``; data are read on demand with file reads).
"""

from __future__ import annotations

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
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._raw = mne.io.read_raw(self.path, preload=False, verbose="error")
        except PermissionError as exc:
            raise UnreadableFileError(f"cannot open: {exc.strerror}", str(path)) from None
        except Exception as exc:  # noqa: BLE001 - MNE raises many types for bad files
            msg = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise CorruptFileError(f"{fmt} file could not be parsed ({type(exc).__name__}: {msg})", str(path)) from None
        raw = self._raw
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
                                        reference=parsed.reference))  # fmt: skip
        duration = raw.n_times / sfreq
        self.header = RecordingHeader(
            format=fmt, channels=channels, duration_s=duration,
            segments=[Segment(start_s=0.0, duration_s=duration)] if raw.n_times else [],
        )  # fmt: skip
        info = raw.info.get("subject_info") or {}
        names = [str(info[k]) for k in ("first_name", "middle_name", "last_name") if info.get(k)]
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
        data = self._raw.get_data(picks=channels, start=start, stop=stop)
        scale = np.array([self.header.channels[c].to_uv or 1.0 for c in channels])[:, None]
        return (data * scale).astype(np.float32)

    def close(self) -> None:
        self._raw = None
