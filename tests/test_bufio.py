"""BufferedFile: split parallel reads return exactly the file's bytes."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ephys.ingest.readers.bufio import BufferedFile


def test_reads_equal_file_bytes(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, 3 * 2**20 + 12345, dtype=np.uint8).tobytes()
    p = tmp_path / "f.bin"
    p.write_bytes(data)
    with BufferedFile(p, io_threads=3, piece_bytes=4096 * 7) as f:
        for offset, n in [(0, len(data)), (5, 1 << 20), (len(data) - 100, 1000), (4096 * 7 - 1, 4096 * 20 + 3), (len(data), 10)]:
            buf = bytearray(n)
            f.seek(offset)
            got = f.readinto(buf)
            expect = data[offset : offset + n]
            assert got == len(expect) and bytes(buf[:got]) == expect and f.tell() == offset + got
        f.seek(0)
        before = f.n_requests
        f.readinto(bytearray(len(data)))
        assert f.n_requests - before == -(-len(data) // (4096 * 7))  # one pread per piece


def test_not_a_regular_file(tmp_path):
    with pytest.raises(IsADirectoryError):
        BufferedFile(tmp_path)
    with pytest.raises(FileNotFoundError):
        BufferedFile(tmp_path / "missing")


def test_closes_its_descriptor(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"x" * (3 << 20))
    f = BufferedFile(p)
    fd = f.fileno()
    f.readinto(bytearray(3 << 20))
    f.close()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_read_ranges_coalesces_nearby_spans_and_keeps_their_order(tmp_path):
    data = bytes(range(256)) * 64  # 16 KiB
    p = tmp_path / "f.bin"
    p.write_bytes(data)
    spans = [(9000, 10), (100, 20), (130, 5), (16380, 10)]  # the last one runs past the end
    with BufferedFile(p) as f:
        before = f.n_requests
        parts = f.read_ranges(spans, gap=64)
        assert parts == [data[9000:9010], data[100:120], data[130:135], data[16380:]]
        # Three reads (100-120 and 130-135 share one); the one reaching the end needs a 4th pread to see it.
        assert f.n_requests - before == 4
        assert f.read_at(16380, 10) == data[16380:] and f.read_at(5, 3) == data[5:8]
