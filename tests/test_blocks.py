"""Block-wise processing: a recording is read, checked and conditioned a block of epochs at a
time (bounded memory), and the result equals conditioning each segment whole."""

from __future__ import annotations

import numpy as np
import pytest

from ephys.pipeline.task import process_recording
from ephys.schemas import IngestConfig
from ephys.ingest.writers.edf import write_edf

NAMES = ["Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T7", "C3", "Cz", "C4", "T8", "P7", "P3", "Pz", "P4", "P8", "O1", "O2"]


def _eeg(n: int, sfreq: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sfreq
    common = 20 * np.sin(2 * np.pi * 10 * t) + np.cumsum(rng.normal(0, 1, n)) * 0.2
    return [common + rng.normal(0, 10, n) + 15 * np.sin(2 * np.pi * 50 * t) for _ in NAMES]


def _run(path, tmp_path, monkeypatch, block_epochs: int, config: IngestConfig, name: str):
    config = config.model_copy(update={"block_epochs": block_epochs})
    d = tmp_path / name
    d.mkdir()
    reads: list[tuple[int, int]] = []
    real_read = None

    def spy(self, start, stop, channels):
        reads.append((start, stop))
        return real_read(self, start, stop, channels)

    from ephys.ingest.readers.edf import EDFReader

    real_read = EDFReader.read
    monkeypatch.setattr(EDFReader, "read", spy)
    r = process_recording(str(path), "edf", "ab" * 32, path.stat().st_size, config, str(d), b"k")
    monkeypatch.setattr(EDFReader, "read", real_read)
    assert r.status == "ok", r.failure
    return r, np.load(d / f"{'ab' * 32}.npy"), np.load(d / f"{'ab' * 32}.qc.npy"), reads


@pytest.mark.parametrize("sfreq,montage", [(256, "regional8"), (512, "native"), (200, "regional8")])
def test_blocks_equal_whole_segment(tmp_path, monkeypatch, sfreq, montage):
    n = int(sfreq * 30 * 13 + sfreq * 7)  # 13 epochs and 7 s left over
    path = write_edf(tmp_path / "r.edf", _eeg(n, sfreq, 0), [f"EEG {x}" for x in NAMES], [sfreq] * len(NAMES))
    cfg = IngestConfig(montage=montage, min_epochs=1)
    whole, ew, qw, reads_w = _run(path, tmp_path, monkeypatch, 1000, cfg, "whole")
    blocks, eb, qb, reads_b = _run(path, tmp_path, monkeypatch, 4, cfg, "blocks")
    # 13 epochs in blocks of 4: 4 blocks, each read once for QC and in channel groups for conditioning.
    assert eb.shape == ew.shape == (13, len(NAMES) if montage == "native" else 8, 7500) and eb.dtype == np.float16
    per = 30 * sfreq
    assert sorted({r for r in reads_b if r[1] - r[0] == 4 * per or r == (12 * per, 13 * per)}) == \
        [(0, 4 * per), (4 * per, 8 * per), (8 * per, 12 * per), (12 * per, 13 * per)]
    assert max(b - a for a, b in reads_b) < 6 * per < min(b - a for a, b in reads_w)
    np.testing.assert_allclose(qb, qw, rtol=1e-5, atol=1e-6)  # per-epoch QC figures: summation order only
    assert [e.qc.valid for e in blocks.epochs] == [e.qc.valid for e in whole.epochs]
    assert [e.qc.score for e in blocks.epochs] == pytest.approx([e.qc.score for e in whole.epochs], abs=1e-4)
    diff = np.abs(eb.astype(np.float32) - ew.astype(np.float32))
    scale = np.abs(ew.astype(np.float32)).max()
    assert diff.max() <= 2e-3 * scale, diff.max() / scale  # float16 rounding of float32 FFT differences
    assert np.mean(diff > 0) < 0.05


def test_fractional_rate_is_done_one_segment_at_a_time(tmp_path, monkeypatch):
    from ephys.pipeline.blocks import plan_blocks
    from ephys.pipeline.task import select_channels
    from ephys.ingest.readers import open_recording

    sfreq = 256
    n = sfreq * 30 * 5
    path = write_edf(tmp_path / "f.edf", _eeg(n, sfreq, 1), [f"EEG {x}" for x in NAMES], [sfreq] * len(NAMES))
    cfg = IngestConfig(min_epochs=1)
    with open_recording(str(path), "edf") as r:
        picked, _, _ = select_channels(r.header.channels, cfg, str(path))
        cfg = cfg.model_copy(update={"block_epochs": 2})
        assert [(b.e0, b.e1) for b in plan_blocks(r.header, picked, cfg)] == [(0, 2), (2, 4), (4, 5)]
        odd = [c.model_copy(update={"sfreq": 256.02}) for c in picked]
        assert [(b.e0, b.e1) for b in plan_blocks(r.header, odd, cfg)] == [(0, 5)]
