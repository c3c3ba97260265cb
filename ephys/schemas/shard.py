"""A finished WebDataset shard."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ShardInfo(BaseModel):
    index: int = Field(ge=0)
    name: str = Field(description="file name, e.g. 'shard-000000.tar'")
    sha256: str
    n_samples: int = Field(ge=0)
    n_bytes: int = Field(ge=0)
    keys: list[str] = []
