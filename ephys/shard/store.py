"""Where shards live: a local folder or any fsspec URL (``s3://bucket/corpus``, ``gs://...``, ``file:///...``).

Local folders keep the writer's tmp + fsync + rename protocol. For a URL with another
protocol the shard is written and hashed in a local spool folder first, then uploaded
with ``fs.put_file``: object stores (S3, GCS, Azure) make an object visible only once its
upload completes, so a shard under its final name is complete there too. The catalog row
is committed after the upload; a run killed between the two re-uploads the same shard name
when it resumes.

Credentials and endpoints come from fsspec's own configuration (``FSSPEC_S3_ENDPOINT_URL``
style environment variables, ``~/.config/fsspec``, or the backend's usual ones such as
``AWS_ACCESS_KEY_ID``); the protocol's package must be installed (``s3fs`` for ``s3://``:
the ``s3`` extra). Limits: the spool folder (``OUT/.spool``) and the catalog stay on
a shared POSIX path, and ``catalog verify --repair`` moves bad remote shards with
``fs.mv`` (a copy and delete on object stores).
"""

from __future__ import annotations

import os
from pathlib import Path

from ephys.schemas.urls import is_url

def local_path(root: str | os.PathLike) -> Path:
    """The folder of a local root (a path or a ``file://`` URL)."""
    return Path(str(root).removeprefix("file://"))


def join(root: str | os.PathLike, name: str) -> str:
    """``root/name`` for a URL or a local folder."""
    return f"{str(root).rstrip('/')}/{name}" if is_url(root) else str(local_path(root) / name)


def filesystem(root: str | os.PathLike):
    """``(fsspec filesystem, path within it)`` of a shard root, local or remote.

    Raises
    ------
    ImportError, ValueError
        The protocol's package is not installed, or the URL is not one fsspec knows.
    """
    import fsspec

    if not is_url(root):
        return fsspec.filesystem("file"), str(local_path(root).resolve())
    return fsspec.core.url_to_fs(str(root))


def upload(local: Path, root: str, name: str) -> None:
    """Copy the finished shard file ``local`` to ``root/name`` (one object, visible when complete)."""
    fs, path = filesystem(root)
    fs.put_file(str(local), f"{path.rstrip('/')}/{name}")
