"""The reader interface every format implements.

A reader opens a recording once, parses its header(s) into a
:class:`~ephys.schemas.RecordingHeader` (PHI-free) and a separate
:class:`PatientInfo` (PHI, used for pseudonymisation and scrubbing, then
dropped), lists annotations, and reads signals as µV float32.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from ephys.schemas import Annotation, RecordingHeader

#: Default size of one buffered read (bytes). Large sequential reads keep
#: network file systems at one round-trip per chunk.
DEFAULT_BUFFER_BYTES = 8 * 1024 * 1024


@dataclass
class PatientInfo:
    """Identity fields of a recording. Never stored, logged or raised.

    ``patient_id`` keys the subject pseudonym (HMAC); ``names`` (patient,
    relatives, technicians) and ``ids`` (patient, alternative and admission
    codes) feed the annotation scrubber; ``start`` is the recording start (wall clock).
    """

    patient_id: str = ""
    names: list[str] = field(default_factory=list)
    birthdate: str | None = None
    sex: str | None = None
    start: datetime | None = None
    ids: list[str] = field(default_factory=list)

    def __repr__(self) -> str:  # keep identity out of tracebacks and logs
        return "PatientInfo(<redacted>)"

    __str__ = __repr__


class Reader(abc.ABC):
    """A recording opened for reading. Use as a context manager."""

    path: Path
    header: RecordingHeader
    patient: PatientInfo

    @abc.abstractmethod
    def annotations(self) -> list[Annotation]:
        """All annotations, onsets in s from the recording start."""

    @abc.abstractmethod
    def read_channels(self, channels: list[int]) -> list[np.ndarray]:
        """Whole-recording signals of the given channel indices (any mix of sampling rates).

        Returns one float32 array per channel, in µV, of shape
        ``(n_samples_of_that_channel,)``; segments of discontinuous
        recordings are concatenated in time order (see ``header.segments``).
        """

    @abc.abstractmethod
    def read(self, start: int, stop: int, channels: list[int]) -> np.ndarray:
        """Samples ``[start, stop)`` of channels that share one sampling rate.

        Sample indices count from the first sample of the recording at that
        rate, segments concatenated as in :meth:`read_channels`.

        Returns
        -------
        ndarray, shape (n_channels, stop - start), float32, µV

        Raises
        ------
        ValueError
            If the channels have different sampling rates, or the range is out of bounds.
        """

    def _check_range(self, start: int, stop: int, channels: list[int], n_total: int) -> float:
        rates = {self.header.channels[c].sfreq for c in channels}
        if len(rates) > 1:
            raise ValueError(f"channels {channels} have different sampling rates {sorted(rates)}")
        if not 0 <= start <= stop <= n_total:
            raise ValueError(f"sample range [{start}, {stop}) is outside [0, {n_total}]")
        return rates.pop() if rates else 0.0

    def close(self) -> None:  # noqa: B027 - optional
        pass

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
