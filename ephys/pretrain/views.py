"""Epoch-to-model-input transforms ("views"), batched, on the training device.

A view maps a batch of epochs ``(B, C, T)`` float32 in µV, already on the device, to what a model takes:

* ``"raw"``: the signal itself, ``(B, C, T)`` µV (the 1-s-patch :class:`~ephys.pretrain.model.MaskedAutoencoder`
  scales it to µV/100 inside).
* ``"spectrogram"``: the EPI-250k image, ``(B, C, S, S)`` float32 in [0, 1] (``S = image_size``, 224 by default): a
  short-time Fourier transform by ``flash_eeg.spectrogram`` (flash-eeg 0.4.1, MIT).  Its steps, read from the
  package source (``flash_eeg/transforms.py: SpectrogramSTFT``): a centred, Hann-windowed STFT (``n_fft`` 1024,
  hop 128, so 59 frames per 30-s epoch at 250 Hz) -> power in dB, ``10*log10(|X|**2 + 1e-10)`` -> the bins from
  ``freq_min_hz`` to ``freq_max_hz`` resampled to ``image_size`` rows (log-spaced up to ``freq_breakpoint_hz``, linear
  above) -> **min-max normalised per epoch and channel** -> bilinear resize to ``S x S``.

  The per-image min-max makes the image invariant to a channel's gain: 10 µV and 100 µV of the same shape give
  the same image, so absolute amplitude (clinical slowing, voltage attenuation) is not in this view; and the
  amplitude-aware mask of :class:`~ephys.pretrain.hiera.HieraMAE` sees relative, not absolute, energy.  The view
  must be fed µV, not volts: in volts the power of a typical EEG is close to the ``1e-10`` floor of the dB, and
  the image changes (research notes, flash-eeg section, item 3).

  A corpus whose recordings were sampled at different rates holds no signal above the lowest one's low-pass edge
  (0.4 x sfreq at ingest: 20 Hz for 50 Hz): its images would differ by recording in rows the lower-rate recordings
  leave empty, and the min-max of those images is set by that empty band, so the same EEG gives different rows
  below 20 Hz too.  ``ephys pretrain`` therefore caps ``freq_max_hz`` at the manifest's ``lowpass_hz``
  (:meth:`ViewConfig.within`; issue #20, docs/benchmarks.md: 7 one-channel subjects recorded at 50, 100 and
  200 Hz probed at kappa 0.51 with the 100-Hz top row, below a random encoder's 0.54, and 0.80 with the cap,
  mean-pooled readout, 3 train seeds).

  flash-eeg's other transforms are not used.  Its WPLI connectivity reads only the first ``n_fft`` (512) samples of
  an epoch (``rfft(..., n=n_fft)`` truncates; the DPSS tapers span the epoch) and its set-up solves a dense
  ``T x T`` float64 eigenproblem (218 s on 2 cores for ``T`` = 7500); ``tests/test_views.py`` shows both defects.
  ``compile`` defaults to False: flash-eeg otherwise compiles with ``mode="max-autotune"`` on H100/H200-class GPUs,
  minutes of start-up for a cheap op.
"""

from __future__ import annotations

import functools
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator
from torch import nn

__all__ = ["View", "ViewConfig", "make_view"]


class ViewConfig(BaseModel):
    """How epochs become model inputs (the ``[view]`` table of a run config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["raw", "spectrogram"] = Field("spectrogram", description="raw µV signal or STFT image")
    image_size: PositiveInt = Field(224, description="spectrogram image side S, pixels")
    n_fft: PositiveInt = Field(1024, description="STFT window, samples")
    hop_length: PositiveInt = Field(128, description="STFT hop, samples")
    freq_min_hz: float = Field(1.0, gt=0, description="lowest image row, Hz")
    freq_max_hz: float = Field(100.0, gt=0, description="highest image row, Hz (pretrain caps it at the manifest's lowpass_hz)")
    freq_breakpoint_hz: float = Field(30.0, gt=0, description="rows are log-spaced below, linear above, Hz")
    compile: bool = Field(False, description="torch.compile the STFT module (GPU; slow start)")

    @model_validator(mode="after")
    def _check(self) -> ViewConfig:
        if not self.freq_min_hz < self.freq_breakpoint_hz < self.freq_max_hz:
            raise ValueError(
                f"need freq_min_hz < freq_breakpoint_hz < freq_max_hz, got {self.freq_min_hz}, "
                f"{self.freq_breakpoint_hz}, {self.freq_max_hz}"
            )
        if self.hop_length > self.n_fft:
            raise ValueError(f"hop_length {self.hop_length} exceeds n_fft {self.n_fft}")
        return self

    def check_signal(self, sfreq: float, n_samples: int) -> None:
        """Raise ``ValueError`` if the view cannot be computed on ``(C, n_samples)`` epochs at ``sfreq`` Hz."""
        if self.kind != "spectrogram":
            return
        if self.freq_max_hz > sfreq / 2:
            raise ValueError(f"view freq_max_hz {self.freq_max_hz} is above the Nyquist frequency {sfreq / 2} Hz")
        if self.n_fft > n_samples:
            raise ValueError(f"view n_fft {self.n_fft} exceeds the {n_samples}-sample epoch")

    def within(self, lowpass_hz: float | None) -> ViewConfig:
        """This view with its top row at or below ``lowpass_hz`` (a manifest's lowest low-pass edge, Hz).

        A spectrogram view whose ``freq_max_hz`` lies above the edge gets ``freq_max_hz = lowpass_hz`` and, when the
        breakpoint no longer fits below it, ``freq_breakpoint_hz = lowpass_hz / 2`` (rows log-spaced up to half the
        band, linear above).  Otherwise (raw view, no edge known, edge at or above the top row, or an edge that
        leaves no band above ``freq_min_hz``) the view is returned unchanged.
        """
        if self.kind != "spectrogram" or lowpass_hz is None or lowpass_hz >= self.freq_max_hz:
            return self
        breakpoint_hz = self.freq_breakpoint_hz if self.freq_breakpoint_hz < lowpass_hz else lowpass_hz / 2
        if not self.freq_min_hz < breakpoint_hz:
            return self
        return self.model_copy(update={"freq_max_hz": float(lowpass_hz), "freq_breakpoint_hz": float(breakpoint_hz)})

    def input_shape(self, n_channels: int, n_samples: int) -> tuple[int, ...]:
        """Shape of one model input: ``(C, T)`` for ``raw``, ``(C, S, S)`` for ``spectrogram``."""
        if self.kind == "raw":
            return (n_channels, n_samples)
        return (n_channels, self.image_size, self.image_size)


class View(nn.Module):
    """``forward(x)``: ``(B, C, T)`` float µV on any device -> model input (see :class:`ViewConfig`).

    Parameter-free; the result is float32 and on ``x``'s device.  Runs outside autocast (the STFT and the dB are
    computed in float32 whatever the surrounding precision).
    """

    def __init__(self, config: ViewConfig, sfreq: float):
        super().__init__()
        self.config, self.sfreq = config, float(sfreq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            raise ValueError(f"expected epochs (B, C, T), got {tuple(x.shape)}")
        x = x.float()
        c = self.config
        if c.kind == "raw":
            return x
        with torch.autocast(x.device.type, enabled=False):
            return _flash_spectrogram()(
                x, sfreq=self.sfreq, n_fft=c.n_fft, hop_length=c.hop_length, freq_min=c.freq_min_hz,
                freq_max=c.freq_max_hz, freq_breakpoint=c.freq_breakpoint_hz, n_freqs_out=c.image_size,
                output_size=c.image_size, output="image", compile=c.compile,
            )


@functools.cache
def _flash_spectrogram():
    from flash_eeg import spectrogram

    return spectrogram


def make_view(config: ViewConfig, sfreq: float, n_samples: int) -> View:
    """A :class:`View` for epochs of ``n_samples`` at ``sfreq`` Hz.

    Raises
    ------
    ValueError
        The view's frequencies or window do not fit the epochs.
    """
    config.check_signal(sfreq, n_samples)
    return View(config, sfreq)
