"""A manifest: a frozen, hashed selection of epochs to train on."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel, Field

from ephys.errors import ManifestError

MANIFEST_FORMAT = "ephys-manifest/1"


class ManifestShard(BaseModel):
    url: str = Field(description="path or URL of the tar shard; relative paths are relative to the manifest")
    sha256: str
    n_samples: int = Field(ge=0, description="samples in the whole shard")
    keys: list[str] = Field(description="selected sample keys in this shard, in shard order")


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

        Shard locations are left out, so moving the shards keeps the hash.
        """
        body = {
            "format": self.format,
            "query": self.query,
            "montage": self.montage,
            "channel_names": self.channel_names,
            "sfreq": self.sfreq,
            "n_samples": self.n_samples,
            "shards": [(s.sha256, s.keys) for s in self.shards],
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    @property
    def n_epochs(self) -> int:
        return sum(len(s.keys) for s in self.shards)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        self.content_hash = self.compute_content_hash()
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.model_dump_json(indent=2))
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
        if m.format != MANIFEST_FORMAT:
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
