"""Records that describe a recording as read from its file(s).

Patient identity never appears here: readers keep the patient block in a
separate object (:class:`ephys.ingest.readers.base.PatientInfo`) that is used
for pseudonymisation and scrubbing and then dropped.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ChannelKind = Literal["eeg", "eog", "emg", "ecg", "resp", "stim", "misc", "annotation"]


class ChannelInfo(BaseModel):
    """One channel of a recording.

    ``label`` is the label stored in the file; ``name`` the standard 10-20/10-10
    electrode name (``"C3"``), a bipolar derivation of standard names
    (``"Fpz-Cz"``) or, for channels without one, the cleaned label.
    ``to_uv`` multiplies physical values into µV; it is ``None`` when the
    physical unit is not a voltage.
    """

    model_config = ConfigDict(frozen=True)

    index: int = Field(ge=0, description="position of the channel in the file")
    label: str
    name: str
    kind: ChannelKind
    sfreq: float = Field(gt=0, description="sampling frequency, Hz")
    unit: str = Field(description="physical unit as spelled in the file")
    to_uv: float | None = None
    physical_min: float | None = None
    physical_max: float | None = None
    digital_min: int | None = None
    digital_max: int | None = None
    reference: str | None = Field(
        default=None, description="reference electrode when the label names one ('A1', 'Ref')"
    )


class Segment(BaseModel):
    """A contiguous stretch of signal (EDF+D and multi-segment formats have several)."""

    model_config = ConfigDict(frozen=True)

    start_s: float = Field(ge=0, description="onset relative to the recording start, s")
    duration_s: float = Field(ge=0, description="length, s")


class Annotation(BaseModel):
    """A timed event: onset and duration in seconds from the recording start.

    ``author`` is the annotating user where the format stores one (Nicolet);
    readers return it as stored and the pipeline replaces it with a keyed
    pseudonym before anything leaves the worker. ``code`` is the format's own
    event code or type GUID, if any.
    """

    model_config = ConfigDict(frozen=True)

    onset_s: float
    duration_s: float = Field(ge=0)
    text: str
    source: str = Field(description="where it came from: 'edf+', 'brainvision', 'micromed', 'nicolet', ...")
    author: str | None = None
    code: str | None = None
    category: str | None = Field(None, description="taxonomy category of the primary label (ephys.annotate.taxonomy)")
    subcategory: str | None = None
    keyword: str | None = Field(None, description="the taxonomy keyword that matched")
    negated: bool | None = None
    uncertain: bool | None = None
    match_score: float | None = Field(None, description="100 exact (incl. inflection, compound), lower fuzzy")


class RecordingHeader(BaseModel):
    """What a reader learns from a recording's header(s), PHI excluded."""

    format: str = Field(description="'edf', 'edf+c', 'edf+d', 'bdf', 'bdf+c', 'brainvision', ...")
    channels: list[ChannelInfo]
    duration_s: float = Field(ge=0)
    segments: list[Segment]
    n_annotation_channels: int = 0

    @property
    def signal_channels(self) -> list[ChannelInfo]:
        return [c for c in self.channels if c.kind != "annotation"]
