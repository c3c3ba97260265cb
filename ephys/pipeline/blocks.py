"""Blocks: a recording cut into runs of ``config.block_epochs`` epochs, the samples each block reads, and
the conditioning of one block into output epochs (memory bounded by the block, not the recording)."""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

from ephys.ingest.condition import condition, fir_kernel, resample_ratio
from ephys.ingest.montage import get_montage
from ephys.qc.epochs import whole_epochs


F16_MAX = float(np.finfo(np.float16).max)
#: Channels conditioned together (float32 filter buffers of a few block lengths each).
CONDITION_GROUP = 4


class Block(NamedTuple):
    """Epochs ``[e0, e1)`` of segment ``seg`` (epoch indices within the segment)."""

    seg: int
    e0: int
    e1: int


def exact_epochs(picked, config) -> bool:
    """Every picked rate has a whole number of samples per epoch that the resampling ratio divides,
    so a block boundary falls on the same instant at every rate, in and out."""
    for ch in picked:
        per = config.epoch_s * ch.sfreq
        if abs(per - round(per)) > 1e-9 or round(per) % resample_ratio(ch.sfreq, config.sfreq)[1]:
            return False
    return True


def plan_blocks(header, picked, config) -> list[Block]:
    """The blocks of ``config.block_epochs`` epochs (20 min by default) of every segment, in time order.

    Worker memory is bounded by the block, not the recording; the filters see real signal across
    block edges (:func:`filter_pad`), so blocks equal conditioning a segment whole up to float
    rounding.

    A recording whose rates do not give whole samples per epoch (256.02 Hz) is done one
    segment at a time, as before blocks existed; such rates come from odd headers, not from
    long monitoring files.
    """
    step = config.block_epochs if exact_epochs(picked, config) else None
    out = []
    for k, seg in enumerate(header.segments):
        n = whole_epochs(seg.duration_s, config.epoch_s)
        for e0 in range(0, n, step or max(n, 1)):
            out.append(Block(k, e0, min(n, e0 + (step or n))))
    return out


def segment_samples(header, picked) -> list[list[tuple[int, int]]]:
    """Per segment, per picked channel: ``(first sample, n samples)`` at the channel's rate, segments
    concatenated as readers return them."""
    out, offsets = [], [0] * len(picked)
    for seg in header.segments:
        row = []
        for i, ch in enumerate(picked):
            n = int(round(seg.duration_s * ch.sfreq))
            row.append((offsets[i], n))
            offsets[i] += n
        out.append(row)
    return out


def read_rows(reader, picked, rows: list[int], spans: dict[int, tuple[int, int]]) -> dict[int, np.ndarray]:
    """Samples ``spans[i] = (start, stop)`` of each picked channel ``i`` in ``rows``, one read per rate."""
    by_span: dict[tuple, list[int]] = {}
    for i in rows:
        by_span.setdefault((picked[i].sfreq, *spans[i]), []).append(i)
    out = {}
    for (_, a, b), group in by_span.items():
        for i, x in zip(group, reader.read(a, b, [picked[i].index for i in group])):
            out[i] = x
    return out


def block_span(block: Block, ch, seg: tuple[int, int], config, pad: int = 0) -> tuple[int, int, int]:
    """``(start, stop, lead)``: samples to read for a block, ``pad`` each side within the segment;
    ``lead`` samples precede the block's first epoch. A whole-segment block (odd rates) reads the segment."""
    first, n = seg
    per = config.epoch_s * ch.sfreq
    if abs(per - round(per)) > 1e-9:
        return first, first + n, 0
    lo, hi = block.e0 * round(per), block.e1 * round(per)
    a, b = max(0, lo - pad), min(n, hi + pad)
    if block.e1 == whole_epochs(n / ch.sfreq, config.epoch_s) and pad:
        b = n  # the last block filters up to the segment's end, as a whole-segment filter would
    return first + a, first + b, lo - a


def filter_pad(ch, config) -> int:
    """Samples of real signal each side of a block so that its epochs equal a whole-segment
    conditioning: the FIR's half length plus the resampler's, rounded up to a multiple of the
    resampling ratio's denominator (so the block start maps to a whole output sample)."""
    up, down = resample_ratio(ch.sfreq, config.sfreq)
    half = (len(fir_kernel(float(ch.sfreq), config.l_freq or None, float(config.h_freq), float(config.line_freq))) - 1) // 2
    need = half + int(np.ceil(10 * max(up, down) / up)) + 1
    return -(-need // down) * down


def condition_block(reader, picked, good: list[int], block: Block, segs, config) -> np.ndarray:
    """Conditioned epochs of one block, ``(n_epochs, n_out_channels, n_samples)`` float16 µV.

    Only ``good`` channels (positions in ``picked``) are read and conditioned; in ``native`` the
    others stay zero (their mask bit is cleared), in ``regional8`` they are left out of the average
    reference and the regional means.
    """
    n_out = config.n_samples
    n_epochs = block.e1 - block.e0
    montage = get_montage(config.montage)
    n_rows = montage.n_rows(len(picked))
    if n_epochs == 0:
        return np.zeros((0, n_rows, n_out), np.float16)
    out = np.zeros((len(picked), n_epochs * n_out), np.float32)
    by_rate: dict[float, list[int]] = {}
    for i in good:
        by_rate.setdefault(picked[i].sfreq, []).append(i)
    for sf, rows in by_rate.items():
        ch0 = picked[rows[0]]
        a, b, lead = block_span(block, ch0, segs[block.seg][rows[0]], config, filter_pad(ch0, config))
        up, down = resample_ratio(sf, config.sfreq)
        skip = lead * up // down
        # A few channels at a time bounds the filter buffers.
        for k in range(0, len(rows), CONDITION_GROUP):
            group = rows[k : k + CONDITION_GROUP]
            x = reader.read(a, b, [picked[i].index for i in group])
            if not np.isfinite(x).all():
                np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
            y = condition(x, sf, l_freq=config.l_freq, h_freq=config.h_freq, line_freq=config.line_freq,
                          sfreq_out=config.sfreq)[:, skip : skip + n_epochs * n_out]
            out[group, : y.shape[1]] = y  # a fractional input rate can leave the last sample short
    out = montage.combine(out, picked, good)
    np.clip(out, -F16_MAX, F16_MAX, out=out)
    return out.reshape(out.shape[0], n_epochs, n_out).transpose(1, 0, 2).astype(np.float16)


@lru_cache(maxsize=1)
def _blas():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread():
    """Context: BLAS matrix products (resampling, montage, QC band sums) on one thread. A
    multi-threaded BLAS splits sums differently, so without this a block would differ in float32
    rounding between a Dask worker (one BLAS thread by default) and a plain Python process."""
    return _blas().limit(limits=1, user_api="blas")
