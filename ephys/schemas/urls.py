"""Shard and output locations: a local path or a URL. The one place that decides which is which.

Two questions, two answers: :func:`has_scheme` (any ``scheme://`` location, ``file://`` included: left as
written when relative paths are resolved) and :func:`is_url` (a location fsspec must open: any scheme but
``file://``, which names a local file or folder).
"""

from __future__ import annotations

import os


def has_scheme(location: str | os.PathLike) -> bool:
    """True for ``scheme://...`` (``file://`` included)."""
    return "://" in str(location)


def is_url(location: str | os.PathLike) -> bool:
    """True for a URL other than ``file://`` (which is a local path): a remote or fsspec location."""
    s = str(location)
    return has_scheme(s) and not s.startswith("file://")
