"""A dataset card for a manifest: a Hugging Face README (YAML metadata + text) and a Croissant JSON-LD file.

``write_card(M.json, DIR)`` writes ``DIR/README.md`` and ``DIR/croissant.json`` describing the manifest's corpus:
layout (WebDataset tar shards of ``<key>.eeg.npy`` float16 µV ``(n_channels, n_samples)`` and ``<key>.json``),
channels, sampling rate, counts, the query that made the selection and its content hash. The card's YAML follows
the Hugging Face dataset-card metadata (``configs`` with ``data_files``, so ``datasets.load_dataset`` on the folder
reads the shards with its ``webdataset`` builder); the JSON-LD follows MLCommons Croissant 1.0
(https://docs.mlcommons.org/croissant/docs/croissant-spec.html: ``sc:Dataset``, ``cr:FileObject`` per shard with
its SHA-256, a ``cr:RecordSet`` of the sample fields). Licence, citation and contact are the site's to give: they
are written as ``TODO`` fields, never guessed. No recording name or path enters the card; shard URLs are as the
manifest holds them (relative to the card when the card sits beside the manifest).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from ephys import __version__
from ephys.schemas.manifest import Manifest
from ephys.schemas.urls import has_scheme

LICENSE_TODO = "other"  # Hugging Face's value for "see the card"; the site fills in the real terms


def _rel(url: str, manifest_path: Path, dest: Path) -> str:
    if has_scheme(url):
        return url
    p = Path(url) if Path(url).is_absolute() else manifest_path.resolve().parent / url
    return os.path.relpath(p, dest.resolve())


def card_metadata(manifest: Manifest, shard_urls: list[str], name: str) -> dict:
    """The YAML metadata block of the README (Hugging Face dataset card fields)."""
    return {
        "pretty_name": name,
        "license": LICENSE_TODO,
        "license_details": "TODO: the data use agreement of the site that recorded the EEG",
        "tags": ["eeg", "electroencephalography", "clinical", "webdataset", "ephys"],
        "task_categories": ["time-series-forecasting", "feature-extraction"],
        "size_categories": [_size_category(manifest.n_epochs)],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": shard_urls}]}],
        "ephys": {"manifest_content_hash": manifest.content_hash, "manifest_format": manifest.format,
                  "ephys_version": manifest.ephys_version, "query": manifest.query},
    }


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                         (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")):
        if n < limit:
            return label
    return "n>100M"


def croissant(manifest: Manifest, shard_urls: list[str], name: str) -> dict:
    """The Croissant 1.0 JSON-LD description of the manifest's corpus."""
    n_ch, n_t = len(manifest.channel_names), manifest.n_samples
    files = [{"@type": "cr:FileObject", "@id": f"shard-{i}", "name": Path(u).name, "contentUrl": u,
              "encodingFormat": "application/x-tar", "sha256": s.sha256}
             for i, (u, s) in enumerate(zip(shard_urls, manifest.shards))]
    field = lambda fid, desc, dtype, ext: {  # noqa: E731
        "@type": "cr:Field", "@id": f"epochs/{fid}", "name": fid, "description": desc, "dataType": dtype,
        "source": {"fileSet": {"@id": "shards"}, "extract": {"fileProperty": "content"},
                   "transform": {"regex": rf"^.*\.{ext}$"}}}
    return {
        "@context": {"@language": "en", "@vocab": "https://schema.org/", "sc": "https://schema.org/",
                     "cr": "http://mlcommons.org/croissant/", "dct": "http://purl.org/dc/terms/"},
        "@type": "sc:Dataset",
        "conformsTo": "http://mlcommons.org/croissant/1.0",
        "name": name,
        "description": f"{manifest.n_epochs:,} 30-s EEG epochs ({n_ch} channels, {manifest.sfreq:g} Hz) selected by "
                       f"`{' AND '.join(manifest.query) or 'all'}` from an ephys corpus.",
        "license": "TODO: the site's data use terms",
        "citeAs": f"TODO: the site's citation of the recordings; made with ephys {__version__}",
        "version": manifest.content_hash[:16],
        "distribution": files + [{"@type": "cr:FileSet", "@id": "shards", "name": "shards",
                                  "containedIn": [{"@id": f["@id"]} for f in files],
                                  "encodingFormat": "application/x-tar", "includes": "*.tar"}],
        "recordSet": [{
            "@type": "cr:RecordSet", "@id": "epochs", "name": "epochs",
            "description": "one record per 30-s epoch (WebDataset sample)",
            "field": [
                field("eeg.npy", f"float16 µV, shape ({n_ch}, {n_t}): channels {', '.join(manifest.channel_names)}",
                      "sc:Float", "eeg.npy"),
                field("json", "epoch metadata: pseudonymous subject, recording SHA-256, start (s), QC figures, "
                              "sleep stage and probabilities, scrubbed annotations with taxonomy labels",
                      "sc:Text", "json"),
            ],
        }],
    }


def readme(manifest: Manifest, meta: dict, name: str) -> str:
    """The card's Markdown: YAML front matter, then the layout, counts and how to load it."""
    c = manifest.counts
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=100)
    n_ch, n_t = len(manifest.channel_names), manifest.n_samples
    edge = "" if manifest.lowpass_hz is None else (
        f"| low-pass edge | {manifest.lowpass_hz:g} Hz (the lowest of the recordings: no signal above it) |\n")
    return f"""---
{front}---

# {name}

A curated selection of 30-s EEG epochs made with ephys {__version__}
(manifest content hash `{manifest.content_hash}`).

## Contents

| | |
|---|---|
| epochs | {manifest.n_epochs:,} |
| recordings | {c.get('recordings', 'n/a')} |
| subjects (pseudonymous) | {c.get('subjects', 'n/a')} |
| shards | {len(manifest.shards)} |
| montage | {manifest.montage} ({n_ch} channels: {', '.join(manifest.channel_names)}) |
| signal | {manifest.sfreq:g} Hz × {n_t} samples per epoch ({n_t / manifest.sfreq:g} s), float16 µV |
{edge}| selection | `{' AND '.join(manifest.query) or '(all)'}` |

## Layout

WebDataset tar shards; each sample is `<key>.eeg.npy` (NumPy float16, µV, `({n_ch}, {n_t})`, channels in the
order above; a channel QC found bad is zero with its mask bit cleared) and `<key>.json` (subject pseudonym,
recording SHA-256, epoch start in s, per-channel QC figures, epoch validity and quality score, sleep stage and
probabilities where staged, annotations with their taxonomy category). A shard may hold samples the selection
leaves out: the manifest (`keys` per shard) is the selection.

```python
import datasets
ds = datasets.load_dataset("webdataset", data_files={{"train": [...the shard paths above...]}}, split="train")
ds = ds.with_format("numpy")   # ds[0]["eeg.npy"]: ({n_ch}, {n_t}) (float32 via Arrow); ds[0]["json"]["subject"]
```

or, with ephys: `from ephys.data import EpochDataset; EpochDataset("manifest.json", label="stage", split="train")`.

## De-identification

Subjects are keyed pseudonyms; no names, birth dates, identifiers or file names are stored; recording dates are
removed (or shifted per subject); annotation text was scrubbed of names, dates and numbers.

## Licence, citation, contact

TODO: the site's data use terms, how to cite the recordings, and whom to contact. Cite ephys as software.
"""


def write_card(manifest_path: str | Path, dest: str | Path, name: str | None = None) -> tuple[Path, Path]:
    """Write ``dest/README.md`` and ``dest/croissant.json`` for the manifest (see the module docstring).

    Returns the two paths. Raises ManifestError when the manifest does not load, OSError when ``dest`` cannot be
    written.
    """
    manifest_path, dest = Path(manifest_path), Path(dest)
    manifest = Manifest.load(manifest_path)
    dest.mkdir(parents=True, exist_ok=True)
    urls = [_rel(u, manifest_path, dest) for u in manifest.resolve_urls(manifest_path)]
    name = name or f"ephys corpus {manifest.content_hash[:12]}"
    card, cr = dest / "README.md", dest / "croissant.json"
    for path, text in ((card, readme(manifest, card_metadata(manifest, urls, name), name)),
                       (cr, json.dumps(croissant(manifest, urls, name), indent=1, ensure_ascii=False))):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return card, cr
