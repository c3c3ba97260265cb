"""Freezing a catalog selection into a manifest, and summarising a manifest.

A manifest lists, shard by shard, the keys of the selected epochs in shard
order (as runs of consecutive keys: a few per shard, whatever the selection's
size), with each shard's SHA-256. Its content hash covers the query, the
signal layout and every (shard hash, keys) pair, not the shard locations: the
same catalog and clauses always give the same hash, wherever the shards live.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from datetime import datetime, UTC
from pathlib import Path

import ephys
from ephys.catalog.db import Catalog
from ephys.catalog.queries import (
    GROUP_SEP,
    corpus_layout,
    ingest_h_freq,
    iter_epoch_groups,
    opened_catalog,
    parse_all,
)
from ephys.errors import ManifestError
from ephys.schemas.config import lowpass_edge
from ephys.schemas.manifest import Manifest, ManifestShard, joined_key_runs, key_runs, run_keys
from ephys.schemas.urls import has_scheme, is_url
from ephys.shard.store import join, local_path

log = logging.getLogger(__name__)


def _shard_url(shards_root: str, name: str, output: Path, relative: bool) -> str:
    if is_url(shards_root):
        return join(shards_root, name)  # a remote shard has no path relative to the manifest
    path = local_path(shards_root) / name
    if relative:
        return Path(os.path.relpath(path, output.parent)).as_posix()
    return str(path)


def _preview(names: tuple[str, ...], n: int = 4) -> str:
    shown = ",".join(names[:n])
    return shown + (",..." if len(names) > n else "")


def _extend_runs(runs: list, more: list) -> None:
    """Append ``more`` (the runs of the next group of a shard) to ``runs`` as :func:`key_runs` of the
    shard's whole key sequence would have them: a run continuing the last one's prefix and digits
    with higher numbers joins it (recordings whose keys share a prefix; not written by ephys)."""
    if runs and more and runs[-1][:2] == more[0][:2] and more[0][2] > runs[-1][3]:
        more = key_runs([*run_keys([runs.pop()]), *run_keys([more[0]])]) + more[1:]
    runs.extend(more)


def create_manifest(
    catalog: Catalog | str,
    where: list[str] | None,
    output: str | Path,
    *,
    relative_urls: bool = False,
) -> Manifest:
    """Select epochs with the filter language and save them as a manifest.

    Shard URLs are the absolute shard paths (``meta.shards_root`` / shard name),
    or, with ``relative_urls``, paths relative to the manifest's folder. The
    output folder is created if needed; the file is replaced atomically.

    Returns
    -------
    Manifest
        The saved manifest (``content_hash`` set), with counts ``epochs``,
        ``recordings``, ``subjects`` and ``shards``.

    Raises
    ------
    ValueError
        If a clause does not parse (see :func:`ephys.catalog.queries.parse_where`).
    ManifestError
        If the selection is empty, mixes montages or output channel sets, or the
        catalog does not record where its shards are.
    RunError
        If the catalog cannot be opened or read.
    """
    query = [c.strip() for c in ([where] if isinstance(where, str) else where or [])]
    parse_all(query)  # fail on a bad clause before touching the catalog
    output = Path(output).resolve()
    layouts: dict[tuple[str | None, tuple[str, ...]], set[str]] = {}
    recordings: set[str] = set()
    subjects: set[str] = set()
    source_rates: Counter[float] = Counter()  # recordings per sampling rate
    shards: list[ManifestShard] = []
    n_epochs = 0
    with opened_catalog(catalog) as cat:
        shards_root = cat.get_meta("shards_root")
        sfreq, epoch_s = corpus_layout(cat)
        h_freq = ingest_h_freq(cat)
        root = str(shards_root) if shards_root else ""
        first, runs = None, []  # the current shard's first group, and its runs

        def close_shard() -> None:
            if first is not None:
                shards.append(ManifestShard(url=_shard_url(root, first.shard_name, output, relative_urls) if root else "",
                                            sha256=first.shard_sha256, n_samples=first.shard_n_samples,
                                            runs=runs))

        # One pass over the (shard, recording) groups as the database streams them, in shard order: the
        # database aggregates the epochs, so Python's work and memory are per group, not per epoch.
        for g in iter_epoch_groups(cat, query):
            if first is None or g.shard_index != first.shard_index:
                close_shard()
                first, runs = g, []
            _extend_runs(runs, joined_key_runs(g.keys, g.indices, GROUP_SEP))
            n_epochs += g.n_epochs
            if g.recording not in recordings:
                recordings.add(g.recording)
                if g.source_sfreq:
                    source_rates[float(g.source_sfreq)] += 1
                layouts.setdefault((g.montage, g.channel_names), set()).add(g.recording)
                if g.subject is not None:
                    subjects.add(g.subject)
        close_shard()
    if not n_epochs:
        shown = " AND ".join(query) if query else "(no clauses)"
        raise ManifestError(
            f"the selection is empty: no epoch of an 'ok' recording matches {shown}; "
            "check the clauses with `ephys catalog query`"
        )
    if not shards_root:
        raise ManifestError("the catalog does not record its shard folder (meta 'shards_root'); re-run the ingest")

    if len(layouts) > 1:
        montages = Counter()
        for (montage, _), recs in layouts.items():
            montages[montage] += len(recs)
        if len(montages) > 1:
            listed = ", ".join(f"{mo} ({n} recordings)" for mo, n in sorted(montages.items(), key=lambda x: str(x[0])))
            example = next((mo for mo in sorted(montages, key=str) if mo), "native")
            raise ManifestError(
                f"the selection mixes montages: {listed}; a manifest needs one montage and channel list. "
                f'Add a clause that picks one, e.g. --where "montage = {example}"'
            )
        sets = sorted(layouts.items(), key=lambda x: (len(x[0][1]), x[0][1]))
        listed = "; ".join(f"{len(ch)} channels [{_preview(ch)}] ({len(recs)} recordings)" for (_, ch), recs in sets)
        example = len(sets[0][0][1])
        raise ManifestError(
            f"the selection mixes {len(sets)} output channel sets of montage {next(iter(montages))}: {listed}. "
            f'Add a clause that picks one, e.g. --where "n_eeg_channels = {example}"'
        )
    (montage, channel_names), _ = next(iter(layouts.items()))
    if not montage or not channel_names:
        raise ManifestError("the selected recordings have no montage or output channel list in the catalog")

    manifest = Manifest(
        ephys_version=ephys.__version__,
        created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        query=query,
        montage=montage,
        channel_names=list(channel_names),
        sfreq=sfreq,
        n_samples=int(round(sfreq * epoch_s)),
        counts={"epochs": n_epochs, "recordings": len(recordings), "subjects": len(subjects), "shards": len(shards)},
        lowpass_hz=_lowest_edge(source_rates, h_freq),
        shards=shards,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    manifest.save(output)
    return manifest


def _lowest_edge(source_rates: Counter[float], h_freq: float) -> float | None:
    """The lowest low-pass edge (Hz) of the selected recordings (``source_rates``: recordings per sampling rate),
    None when no rate is known.  When the edges differ, a warning says so: ``ephys pretrain`` stops its spectrogram
    view at the lowest for every recording."""
    edges: Counter[float] = Counter()
    for rate, n in source_rates.items():
        edges[lowpass_edge(h_freq, rate)] += n
    if not edges:
        return None
    low = min(edges)
    if len(edges) < 2:
        return low
    listed = ", ".join(f"{e:g} Hz ({n} recordings)" for e, n in sorted(edges.items()))
    above = max(r for r in source_rates if lowpass_edge(h_freq, r) == low)
    log.warning("the selection mixes low-pass edges: %s; its lowpass_hz is %g Hz, where the spectrogram view of "
                "ephys pretrain will stop for every recording. To keep more of the band, leave the low-rate "
                'recordings out, e.g. --where "sfreq > %g"', listed, low, above)
    return low


def show_manifest(path: str | Path) -> dict:
    """Load and verify a manifest and summarise it.

    Returns
    -------
    dict
        ``path``, ``format``, ``ephys_version``, ``created_at``, ``content_hash``,
        ``query``, ``montage``, ``channel_names``, ``sfreq``, ``n_samples``,
        ``lowpass_hz``, ``counts``, ``n_epochs`` and ``shards`` (per shard: ``url``, ``resolved``
        (URL resolved against the manifest folder), ``exists`` (``None`` for
        remote URLs), ``sha256``, ``n_samples``, ``n_selected``); ``missing_shards``
        counts local shards that are not there.

    Raises
    ------
    ManifestError
        If the file is missing, not a manifest, or was edited after saving.
    """
    path = Path(path)
    man = Manifest.load(path)
    resolved = man.resolve_urls(path)
    shards = []
    for s, url in zip(man.shards, resolved):
        if not has_scheme(url):
            url = os.path.normpath(url)
        exists = None if has_scheme(url) else Path(url).is_file()
        shards.append(
            {
                "url": s.url,
                "resolved": url,
                "exists": exists,
                "sha256": s.sha256,
                "n_samples": s.n_samples,
                "n_selected": s.n_selected,
            }
        )
    return {
        "path": str(path),
        "format": man.format,
        "ephys_version": man.ephys_version,
        "created_at": man.created_at,
        "content_hash": man.content_hash,
        "query": man.query,
        "montage": man.montage,
        "channel_names": man.channel_names,
        "sfreq": man.sfreq,
        "n_samples": man.n_samples,
        "lowpass_hz": man.lowpass_hz,
        "counts": man.counts,
        "n_epochs": man.n_epochs,
        "shards": shards,
        "missing_shards": sum(1 for s in shards if s["exists"] is False),
    }
