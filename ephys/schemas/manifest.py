"""A manifest: a frozen, hashed selection of epochs to train on."""

from __future__ import annotations

import base64
import bisect
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field, model_validator

from ephys.errors import ManifestError
from ephys.schemas.urls import has_scheme

#: Written by this version: selections as runs of consecutive keys. ``ephys-manifest/1`` (keys listed
#: one by one) is still read.
MANIFEST_FORMAT = "ephys-manifest/2"
FORMATS = ("ephys-manifest/1", MANIFEST_FORMAT)
_KEY = re.compile(r"^(.*?)(\d*)$", re.S)


def _split_key(key: str) -> tuple[str, int, int]:
    """``(prefix, width, number)`` of a key: its trailing digits as a number of that many digits
    (``"3f9a..._000041"`` → ``("3f9a..._", 6, 41)``); a key without trailing digits has width 0."""
    if len(key) > 7 and key[-7] == "_" and key[-6:].isdigit() and not key[-8].isdigit():  # ephys's own keys
        return key[:-6], 6, int(key[-6:])
    prefix, digits = _KEY.match(key).groups()
    return prefix, len(digits), int(digits) if digits else 0


def key_runs(keys: Iterable[str]) -> list[tuple[str, int, int, int, str]]:
    """``keys`` (in order) as runs ``(prefix, width, first, last, mask)``: keys that follow each other,
    share a prefix and digit count and have increasing numbers form one run over ``first..last``;
    ``mask`` is ``""`` when every number in between is selected, else the selected ones as a bitmap
    (bit ``n - first``, little-endian bit order, base64). A shard holds one stretch of each recording's
    epochs, so a shard's selection is a few runs whatever its size or pattern. Exact: :func:`run_keys`
    gives ``keys`` back."""
    runs: list[tuple[str, int, int, int, str]] = []
    group: list[int] = []
    head: tuple[str, int] | None = None

    def close() -> None:
        if head is None:
            return
        first, last = group[0], group[-1]
        mask = "" if last - first + 1 == len(group) else _mask(np.asarray(group), first, last)
        runs.append((head[0], head[1], first, last, mask))

    for key in keys:
        prefix, width, n = _split_key(key)
        if head == (prefix, width) and width and n > group[-1]:
            group.append(n)
            continue
        close()
        head, group = (prefix, width), [n]
    close()
    return runs


def _mask(numbers: np.ndarray, first: int, last: int) -> str:
    bits = np.zeros(last - first + 1, dtype=bool)
    bits[numbers - first] = True
    return base64.b64encode(np.packbits(bits, bitorder="little").tobytes()).decode()


def joined_key_runs(keys: str, order: str, sep: str = ",") -> list[tuple[str, int, int, int, str]]:
    """:func:`key_runs` of the keys in ``keys`` (joined by ``sep``), taken in the order of the
    integers in ``order`` (as many, joined the same way; an epoch's index for its key), so a
    database's unordered aggregate of a selection gives the runs the ordered keys give.

    Vectorised when the keys share one prefix and digit count (every shard/recording group ephys
    writes): ~10 ns per key instead of ~1 µs; any other input goes through :func:`key_runs`.

    Raises
    ------
    ValueError
        If ``order`` does not hold one integer per key.
    """
    rank = np.array(order.split(sep), dtype=np.int64)
    n = len(rank)
    size, rest = divmod(len(keys) + len(sep), n)
    width_all = size - len(sep)
    if not rest and width_all > 0 and len(sep) == 1 and keys.isascii():
        mat = np.frombuffer((keys + sep).encode("ascii"), dtype=np.uint8).reshape(n, size)
        prefix, width, _ = _split_key(keys[:width_all])
        plen = width_all - width
        if width and (mat[:, -1] == ord(sep)).all() and (mat[:, :plen] == mat[0, :plen]).all():
            digits = mat[:, plen:width_all].astype(np.int64) - ord("0")
            if width <= 18 and ((digits >= 0) & (digits <= 9)).all():
                numbers = (digits @ 10 ** np.arange(width - 1, -1, -1, dtype=np.int64))[np.argsort(rank, kind="stable")]
                if n == 1 or (np.diff(numbers) > 0).all():  # one run, as key_runs makes of increasing numbers
                    first, last = int(numbers[0]), int(numbers[-1])
                    return [(prefix, width, first, last, "" if last - first + 1 == n else _mask(numbers, first, last))]
    split = keys.split(sep)
    if len(split) != n:
        raise ValueError(f"{len(split)} keys but {n} order numbers")
    return key_runs([split[i] for i in np.argsort(rank, kind="stable")])


def _run_numbers(first: int, last: int, mask: str) -> Iterator[int]:
    if not mask:
        yield from range(first, last + 1)
        return
    bits = np.unpackbits(np.frombuffer(base64.b64decode(mask), np.uint8), count=last - first + 1, bitorder="little")
    yield from (first + int(i) for i in np.flatnonzero(bits))


def run_keys(runs) -> Iterator[str]:
    """The keys of ``runs``, in order (see :func:`key_runs`)."""
    for prefix, width, first, last, mask in runs:
        if not width:
            yield prefix
            continue
        for n in _run_numbers(first, last, mask):
            yield f"{prefix}{n:0{width}d}"


def _run_size(first: int, last: int, mask: str) -> int:
    if not mask:
        return last - first + 1
    return int(np.unpackbits(np.frombuffer(base64.b64decode(mask), np.uint8), count=last - first + 1,
                             bitorder="little").sum())


class KeySet:
    """Membership of keys in a shard's runs without listing them: memory per run, not per key."""

    def __init__(self, runs):
        groups: dict[tuple[str, int], list[tuple[int, int, bytes]]] = {}
        self._n = 0
        for prefix, width, first, last, mask in runs:
            bits = np.unpackbits(np.frombuffer(base64.b64decode(mask), np.uint8), count=last - first + 1,
                                 bitorder="little").tobytes() if mask else b""
            groups.setdefault((prefix, width), []).append((first, last, bits))
            self._n += _run_size(first, last, mask)
        self._groups = {g: sorted(v) for g, v in groups.items()}
        self._starts = {g: [r[0] for r in v] for g, v in self._groups.items()}
        # A prefix whose runs overlap (not written by ephys: a shard holds one stretch per recording)
        # is held as a set of its numbers instead.
        self._sets = {g: {n for first, last, bits in v for n in range(first, last + 1) if not bits or bits[n - first]}
                      for g, v in self._groups.items() if any(b[0] <= a[1] for a, b in zip(v, v[1:]))}

    def __contains__(self, key) -> bool:
        if not isinstance(key, str):
            return False
        prefix, width, n = _split_key(key)
        runs = self._groups.get((prefix, width))
        if runs is None:
            return False
        if (prefix, width) in self._sets:
            return n in self._sets[(prefix, width)]
        i = bisect.bisect_right(self._starts[(prefix, width)], n) - 1
        if i < 0:
            return False
        first, last, bits = runs[i]
        return n <= last and (not bits or bits[n - first] == 1)

    def __len__(self) -> int:
        return self._n

    def __bool__(self) -> bool:
        return self._n > 0


class ManifestShard(BaseModel):
    """One shard of a manifest and the epochs selected in it.

    Construct with ``keys=[...]`` (converted) or ``runs=[...]``; :attr:`keys` lists them in shard order.
    """

    url: str = Field(description="path or URL of the tar shard; relative paths are relative to the manifest")
    sha256: str
    n_samples: int = Field(ge=0, description="samples in the whole shard")
    runs: list[tuple[str, int, int, int, str]] = Field(
        description="selected sample keys in this shard, in shard order, as runs (prefix, digits, first, last, "
                    "mask) of keys prefix + number written with that many digits; see key_runs")

    @model_validator(mode="before")
    @classmethod
    def _from_keys(cls, data):
        if isinstance(data, dict) and "keys" in data:
            data = {k: v for k, v in data.items() if k != "keys"} | {"runs": key_runs(data["keys"])}
        return data

    @property
    def keys(self) -> list[str]:
        """The selected keys, in shard order."""
        return list(run_keys(self.runs))

    @property
    def n_selected(self) -> int:
        return sum(_run_size(first, last, mask) for _, _, first, last, mask in self.runs)

    def selection(self) -> KeySet:
        """The selected keys as a set (``key in shard.selection()``), held as runs."""
        return KeySet(self.runs)


class Manifest(BaseModel):
    format: str = MANIFEST_FORMAT
    ephys_version: str
    created_at: str = Field(description="ISO 8601, UTC; not part of the content hash")
    query: list[str] = Field(description="the --where clauses that made the selection")
    montage: str
    channel_names: list[str]
    sfreq: float
    n_samples: int = Field(description="samples per epoch (time axis)")
    counts: dict[str, int]
    lowpass_hz: float | None = Field(
        None, description="lowest low-pass edge among the selected recordings, Hz (ingest's min(h_freq, 0.4 x "
                          "sfreq) of each recording): no epoch holds signal above it; None where unknown. "
                          "Not part of the content hash (it follows from the selection)")
    shards: list[ManifestShard]
    content_hash: str = ""

    def compute_content_hash(self) -> str:
        """SHA-256 of the selection: query, signal layout, and every shard hash with its keys.

        Shard locations are left out, so moving the shards keeps the hash. Format 1 hashes each
        shard's key list, format 2 its runs (the same selection; the format is part of the body, so
        the two hashes differ). The JSON text hashed is the one format 1 always hashed
        (``json.dumps(body, sort_keys=True)``, "shards" the last key), fed shard by shard.
        """
        body = {
            "format": self.format,
            "query": self.query,
            "montage": self.montage,
            "channel_names": self.channel_names,
            "sfreq": self.sfreq,
            "n_samples": self.n_samples,
        }
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()[:-1])
        digest.update(b', "shards": [')  # the shards streamed into the same JSON text: no whole copy in memory
        for i, s in enumerate(self.shards):
            item = [s.sha256, s.keys if self.format == "ephys-manifest/1" else [list(r) for r in s.runs]]
            digest.update((", " if i else "").encode() + json.dumps(item).encode())
        digest.update(b"]}")
        return digest.hexdigest()

    @property
    def n_epochs(self) -> int:
        return sum(s.n_selected for s in self.shards)

    def save(self, path: str | Path) -> Path:
        """Write the manifest (in the current format, compact JSON) atomically; sets ``content_hash``."""
        path = Path(path)
        self.format = MANIFEST_FORMAT
        self.content_hash = self.compute_content_hash()
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.model_dump_json())
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        """Read and verify a manifest.

        Raises
        ------
        ManifestError
            If the file is missing, not a manifest, or its content hash does not match.
        """
        path = Path(path)
        try:
            m = cls.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            raise ManifestError("no such manifest", str(path)) from None
        except ValueError as exc:
            raise ManifestError(f"not an ephys manifest ({exc.__class__.__name__})", str(path)) from None
        if m.format not in FORMATS:
            raise ManifestError(f"unknown manifest format {m.format!r}", str(path))
        if m.content_hash != m.compute_content_hash():
            raise ManifestError("content hash does not match: the manifest was edited", str(path))
        return m

    def resolve_urls(self, manifest_path: str | Path) -> list[str]:
        """Shard URLs with relative paths resolved against the manifest's folder."""
        base = Path(manifest_path).resolve().parent
        out = []
        for s in self.shards:
            if has_scheme(s.url) or Path(s.url).is_absolute():
                out.append(s.url)
            else:
                out.append(str(base / s.url))
        return out
