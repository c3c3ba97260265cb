"""The one shard reader (ephys.shard.reader) and the one streaming hash (ephys.digest), against independent
oracles: webdataset's own tar-to-samples grouping and hashlib over the whole file."""

from __future__ import annotations

import hashlib
import io
import tarfile

import numpy as np
import pytest

from ephys.digest import HashingReader, HashingWriter, sha256_stream
from ephys.shard.reader import EEG_MEMBER, META_MEMBER, iter_samples, npy_shape, open_shard, split_name


def _tar(path, members) -> bytes:
    """A tar of ``(name, bytes | None)`` members (None: a directory entry), returned as bytes."""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            if data is None:
                ti.type = tarfile.DIRTYPE
                tar.addfile(ti)
            else:
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
    return path.read_bytes()


def _npy(shape) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.arange(np.prod(shape), dtype=np.float16).reshape(shape))
    return buf.getvalue()


MEMBERS = [
    ("a.eeg.npy", _npy((3, 5))), ("a.json", b'{"k": "a"}'),
    ("sub", None),  # not a regular file: skipped
    ("sub/b.eeg.npy", _npy((3, 5))), ("sub/b.json", b'{"k": "b"}'),
    ("README", b"no dot: not a sample member"),
    ("c.json", b'{"k": "c"}'),  # a sample with one member
    ("d.eeg.npy", _npy((2, 4))), ("d.json", b"{}"), ("d.extra.txt", b"x"),
]


def _wds_samples(path) -> list[dict]:
    """Oracle: webdataset's own grouping of a tar's members into samples."""
    from webdataset.tariterators import group_by_keys, tar_file_expander

    with open(path, "rb") as f:
        return [{k: v for k, v in s.items() if k != "__url__"}
                for s in group_by_keys(tar_file_expander([{"url": str(path), "stream": f}]))]


@pytest.mark.parametrize("seekable", [True, False], ids=["seek", "stream"])
def test_samples_are_grouped_as_webdataset_groups_them(tmp_path, seekable):
    path = tmp_path / "s.tar"
    raw = _tar(path, MEMBERS)
    with open(path, "rb") as f:
        stream = f if seekable else HashingReader(io.BytesIO(raw))  # a HashingReader cannot seek: stream mode
        got = [{"__key__": k, **m} for k, m in iter_samples(stream)]
    assert got == _wds_samples(path)
    assert [s["__key__"] for s in got] == ["a", "sub/b", "c", "d"]


def test_keys_and_read_select_without_reading_the_rest(tmp_path):
    path = tmp_path / "s.tar"
    _tar(path, MEMBERS)
    with open_shard(str(path)) as f:
        got = dict(iter_samples(f, keys={"a", "d"}, read=(META_MEMBER,)))
    assert got == {"a": {EEG_MEMBER: None, META_MEMBER: b'{"k": "a"}'},
                   "d": {EEG_MEMBER: None, META_MEMBER: b"{}", "extra.txt": None}}


def test_a_returning_key_or_repeated_member_starts_a_new_sample(tmp_path):
    path = tmp_path / "s.tar"
    _tar(path, [("a.json", b"1"), ("b.json", b"2"), ("a.json", b"3"), ("a.json", b"4")])
    with open_shard(str(path)) as f:
        assert list(iter_samples(f)) == [("a", {"json": b"1"}), ("b", {"json": b"2"}), ("a", {"json": b"3"}),
                                         ("a", {"json": b"4"})]


def test_hashing_while_reading_equals_hashlib_of_the_file(tmp_path):
    path = tmp_path / "s.tar"
    raw = _tar(path, MEMBERS)
    with open_shard(str(path)) as f:
        reader = HashingReader(f)
        n = sum(1 for _ in iter_samples(reader, keys={"c"}))  # skipped members pass through the hash too
        assert n == 1
        assert reader.finish() == hashlib.sha256(raw).hexdigest()
        assert reader.n_bytes == len(raw)


class _ReadOnly:
    """A stream with ``read`` but no ``readinto`` (webdataset's pipe streams)."""

    def __init__(self, data: bytes):
        self._f = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._f.read(n)


@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
def test_sha256_stream_equals_hashlib_for_any_chunk_and_limit(chunk):
    data = np.random.default_rng(0).bytes(100_003)
    want = hashlib.sha256(data).hexdigest()
    assert sha256_stream(io.BytesIO(data), buffer=bytearray(chunk)) == (want, len(data))
    assert sha256_stream(_ReadOnly(data), buffer=bytearray(chunk)) == (want, len(data))
    assert sha256_stream(io.BytesIO(data), limit=1000, buffer=bytearray(chunk)) == (
        hashlib.sha256(data[:1000]).hexdigest(), 1000)
    assert sha256_stream(io.BytesIO(b"")) == (hashlib.sha256(b"").hexdigest(), 0)


def test_hashing_writer_hashes_and_counts_what_passes():
    out = io.BytesIO()
    w = HashingWriter(out)
    with tarfile.open(fileobj=w, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        ti = tarfile.TarInfo("a.json")
        ti.size = 2
        tar.addfile(ti, io.BytesIO(b"{}"))
    assert w.digest.hexdigest() == hashlib.sha256(out.getvalue()).hexdigest()
    assert w.tell() == len(out.getvalue())


def test_split_name_and_npy_shape():
    assert split_name("a/b.eeg.npy") == ("a/b", "eeg.npy")
    assert split_name("x.y/k.json") == ("x.y/k", "json")
    assert split_name("README") == (None, "")
    assert split_name(".hidden") == (None, "")
    assert npy_shape(_npy((19, 7500))) == (19, 7500)
    with pytest.raises(ValueError):
        npy_shape(b"not npy")


def test_open_shard_refuses_what_is_not_a_regular_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_shard(str(tmp_path / "missing.tar"))
    with pytest.raises(OSError, match="not a regular file"):
        open_shard("/dev/zero")


def test_iter_members_stops_where_the_reader_stops(tmp_path):
    """The layout check reads one header: taking the first member leaves the rest of the shard unread."""
    from ephys.shard.reader import iter_members

    path = tmp_path / "s.tar"
    raw = _tar(path, [(f"k{i:04d}.eeg.npy", _npy((19, 750))) for i in range(50)])
    with open_shard(str(path)) as f:
        key, ext, data = next(iter_members(f, keys={"k0000"}, read=(EEG_MEMBER,)))
        assert (key, ext, npy_shape(data)) == ("k0000", EEG_MEMBER, (19, 750))
        assert f.tell() < len(raw) / 10


@pytest.mark.parametrize("seekable", [True, False], ids=["seek", "stream"])
def test_a_compressed_or_non_tar_file_is_a_tar_error(tmp_path, seekable):
    import gzip

    path = tmp_path / "s.tar"
    raw = gzip.compress(_tar(path, MEMBERS))  # ephys writes plain tars; a gzipped one is not a shard
    for data in (raw, b"not a tar at all" * 100):
        stream = io.BytesIO(data) if seekable else HashingReader(io.BytesIO(data))
        with pytest.raises(tarfile.TarError):
            list(iter_samples(stream))
