"""Shared helpers for ingest tests: the real archive, hashing, catalog rows."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from types import ModuleType

from sqlalchemy import func, select

from ephys.catalog import models as m
from ephys.catalog.db import Catalog

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
os.environ.setdefault("EPHYS_SITE_SECRET", "ephys-test-secret")


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def real(rel: str) -> Path:
    return REAL / rel


def benchmark(name: str) -> ModuleType:
    """The module ``benchmarks/<name>.py`` (benchmarks are scripts, not a package), so a test uses its code."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def rows_by_sha(url: str) -> dict[str, m.Recording]:
    c = Catalog(url)
    try:
        with c.session() as s:
            return {r.sha256: r for r in s.scalars(select(m.Recording))}
    finally:
        c.close()


def table_counts(url: str) -> dict[str, int]:
    c = Catalog(url)
    try:
        with c.session() as s:
            return {t.__tablename__: s.scalar(select(func.count()).select_from(t))
                    for t in (m.Recording, m.Epoch, m.Annotation, m.Shard)}
    finally:
        c.close()


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((Path(out) / "shards").glob("*"))}
