"""A manifest: a frozen, hashed selection of epochs to train on."""

from __future__ import annotations

import bisect
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from ephys.errors import ManifestError

#: Written by this version: selections as runs of consecutive keys. ``ephys-manifest/1`` (keys listed
#: one by one) is still read.
MANIFEST_FORMAT = "ephys-manifest/2"
FORMATS = ("ephys-manifest/1", MANIFEST_FORMAT)
_KEY = re.compile(r"^(.*?)(\d*)$", re.S)


def _split_key(key: str) -> tuple[str, int, int]:
    """``(prefix, width, number)`` of a key: its trailing digits as a number of that many digits
    (``"3f9a..._000041"`` → ``("3f9a..._", 6, 41)``); a key without trailing digits has width 0."""
    prefix, digits = _KEY.match(key).groups()
    return prefix, len(digits), int(digits) if digits else 0


def key_runs(keys: Iterable[str]) -> list[tuple[str, int, int, int]]:
    """``keys`` (in order) as runs ``(prefix, width, first, last)``: consecutive keys that share a prefix and
    digit count and whose numbers follow each other form one run. Exact: :func:`run_keys` gives ``keys`` back."""
    runs: list[list] = []
    for key in keys:
        prefix, width, n = _split_key(key)
        last = runs[-1] if runs else None
        if last is not None and width and last[0] == prefix and last[1] == width and last[3] + 1 == n:
            last[3] = n
        else:
            runs.append([prefix, width, n, n])
    return [tuple(r) for r in runs]


def run_keys(runs) -> Iterator[str]:
    """The keys of ``runs``, in order (see :func:`key_runs`)."""
    for prefix, width, first, last in runs:
        if not width:
            yield prefix
            continue
        for n in range(first, last + 1):
            yield f"{prefix}{n:0{width}d}"


class KeySet:
    """Membership of keys in a shard's runs without listing them: memory per run, not per key."""

    def __init__(self, runs):
        groups: dict[tuple[str, int], list[tuple[int, int]]] = {}
        for prefix, width, first, last in runs:
            groups.setdefault((prefix, width), []).append((first, last))
        self._groups = {g: (tuple(a for a, _ in sorted(v)), tuple(b for _, b in sorted(v))) for g, v in groups.items()}
        self._n = sum(last - first + 1 for _, _, first, last in runs)

    def __contains__(self, key) -> bool:
        if not isinstance(key, str):
            return False
        prefix, width, n = _split_key(key)
        found = self._groups.get((prefix, width))
        if found is None:
            return False
        starts, ends = found
        i = bisect.bisect_right(starts, n) - 1
        return i >= 0 and n <= ends[i]

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
    runs: list[tuple[str, int, int, int]] = Field(
        description="selected sample keys in this shard, in shard order, as runs (prefix, digits, first, last) "
                    "of consecutive keys prefix + number written with that many digits")  # fmt: skip

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
        return sum(last - first + 1 for _, _, first, last in self.runs)

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
    def load(cls, path: str | Path) -> "Manifest":
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
            if "://" in s.url or Path(s.url).is_absolute():
                out.append(s.url)
            else:
                out.append(str(base / s.url))
        return out
