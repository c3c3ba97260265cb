"""Find the archive file behind a catalog row, on the operator's machine.

Logs, catalog rows and failure reasons name recordings by SHA-256 prefix only. The catalog keeps
keyed path hashes (``HMAC-SHA-256(site secret, relative path)``, :func:`ephys.ingest.identity.path_hash`),
so with the site secret and the archive the operator can find the file again: the archive is walked
(:func:`ephys.ingest.discover.discover`, no file is read or hashed) and each path's keyed hash is
compared with those recorded for the recording.
"""

from __future__ import annotations

import os

from sqlalchemy import or_, select

from ephys.catalog import models as m
from ephys.catalog.db import IN_CHUNK, Catalog
from ephys.errors import RunError
from ephys.ingest.discover import Discovered, discover
from ephys.ingest.identity import load_site_secret, path_hash


def locate(catalog_url: str, archive: str | os.PathLike, prefix: str, *, secret: bytes | None = None) -> dict[str, list[str]]:
    """``{recording sha256: [archive-relative paths]}`` of the recordings whose SHA-256 (or recorded
    path hash) starts with ``prefix``.

    Parameters
    ----------
    catalog_url : str
        The catalog of the ingest.
    archive : path
        The archive folder the ingest walked (the same root: paths are relative to it).
    prefix : str
        At least 6 hex digits of a recording's SHA-256 as logs print it (12), or of a path hash.
    secret : bytes
        The site secret; default :func:`ephys.ingest.identity.load_site_secret`.

    Raises
    ------
    RunError
        For a prefix shorter than 6 or not hexadecimal, or an archive that does not exist.
    """
    prefix = prefix.strip().lower()
    if len(prefix) < 6 or any(c not in "0123456789abcdef" for c in prefix):
        raise RunError("give at least 6 hex digits of a recording's SHA-256 (logs print 12)")
    catalog = Catalog(catalog_url)
    try:
        with catalog.session() as s:
            recs = s.execute(select(m.Recording.sha256).where(
                or_(m.Recording.sha256.startswith(prefix), m.Recording.path_hash.startswith(prefix)))).scalars().all()
        found = locate_recordings(catalog, archive, list(recs), secret=secret)
    finally:
        catalog.close()
    return {sha: [d.relpath for d in found.get(sha, [])] for sha in recs}


def locate_recordings(catalog: Catalog | str, archive: str | os.PathLike, shas: list[str], *,
                      secret: bytes | None = None) -> dict[str, list[Discovered]]:
    """``{sha256: [discovered recordings]}``: where in ``archive`` the catalog's recordings ``shas`` lie, by
    keyed path hash (no file is read or hashed: a caller that needs the content checks it). Recordings not
    found (or not in the catalog) are absent from the result.

    Raises
    ------
    RunError
        When ``archive`` does not exist.
    """
    if not os.path.isdir(archive):
        raise RunError(f"archive {archive} is not a folder")
    own = isinstance(catalog, str)
    catalog = Catalog(catalog, readonly=True) if own else catalog
    wanted: dict[str, str] = {}
    try:
        with catalog.session() as s:
            for i in range(0, len(shas), IN_CHUNK):
                chunk = shas[i : i + IN_CHUNK]
                ids = {}
                for rid, sha, ph in s.execute(select(m.Recording.id, m.Recording.sha256, m.Recording.path_hash)
                                              .where(m.Recording.sha256.in_(chunk))):
                    wanted[ph], ids[rid] = sha, sha
                for rid, ph in s.execute(select(m.RecordingPath.recording_id, m.RecordingPath.path_hash)
                                         .where(m.RecordingPath.recording_id.in_(list(ids)))):
                    wanted[ph] = ids[rid]
    finally:
        if own:
            catalog.close()
    out: dict[str, list[Discovered]] = {}
    if not wanted:
        return out
    secret = load_site_secret() if secret is None else secret
    for rec in discover(archive).recordings:
        sha = wanted.get(path_hash(secret, rec.relpath))
        if sha is not None:
            out.setdefault(sha, []).append(rec)
    return out
