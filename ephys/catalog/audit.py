"""``ephys audit``: does any identity of the archive appear anywhere in an ingest's output?

Every recording of the archive is opened with the ingest's readers (the header only; no signal is
read) and its identity fields collected: patient ID and other IDs, names and each part of them,
birth date, recording start date (in the forms a header or a text can spell them: ISO, ``dd.mm.yyyy``,
``dd-MON-yyyy``, ``ddmmyyyy``, ``yyyymmdd``), and the parts of the archive's file and folder names
(which hold names and IDs in hospitals) that are not words ephys itself writes. Then every byte of
every file under the output folder (shards, catalog, hash log, manifests, report, logs) and every
file name is searched for each token, case-insensitively, in UTF-8, cp1252/Latin-1, UTF-16-LE/BE and
JSON ``\\uXXXX`` escapes. The result holds counts per kind of field and per output file kind, never a
token: an audit report must not become a leak itself.

Tokens shorter than :data:`MIN_TOKEN` characters (sex codes, initials) are not searched: in
megabytes of binary samples they match by chance.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from ephys.ingest.discover import discover
from ephys.ingest.identity import _PLACEHOLDERS, parse_birthdate

#: Shortest token searched (characters).
MIN_TOKEN = 4
_SPLIT = re.compile(r"[\s,;_\-'’.()/\\]+")


@dataclass
class AuditReport:
    """Counts of an audit: ``hits[field kind][output kind]``; ``ok`` when there is none."""

    n_recordings: int = 0
    n_unreadable: int = 0
    n_tokens: int = 0
    n_files: int = 0
    n_bytes: int = 0
    hits: dict[str, Counter] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(self.hits.values())

    def to_dict(self) -> dict:
        return dict(ok=self.ok, recordings=self.n_recordings, unreadable=self.n_unreadable, tokens=self.n_tokens,
                    files=self.n_files, bytes=self.n_bytes,
                    hits={k: dict(v) for k, v in sorted(self.hits.items()) if v})


def _date_forms(d: date | datetime | None) -> set[str]:
    if d is None:
        return set()
    mon = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()[d.month - 1]
    return {f"{d:%Y-%m-%d}", f"{d:%d.%m.%Y}", f"{d:%d/%m/%Y}", f"{d:%m/%d/%Y}", f"{d:%d.%m.%y}",
            f"{d.day:02d}-{mon}-{d.year}", f"{d:%d%m%Y}", f"{d:%Y%m%d}"}


def _own_words() -> set[str]:
    """Words ephys writes by itself (its source and taxonomy): a path part equal to one is no identity."""
    words: set[str] = set()
    root = Path(__file__).resolve().parents[1]
    for p in list(root.rglob("*.py")) + list(root.rglob("*.yaml")):
        try:
            words.update(w.lower() for w in re.findall(r"[A-Za-zÀ-ÿ]{4,}", p.read_text(encoding="utf-8", errors="ignore")))
        except OSError:
            pass
    return words


def identity_tokens(archive: str | os.PathLike) -> tuple[dict[str, set[str]], int, int]:
    """``({field kind: tokens}, n recordings, n unreadable)`` of an archive (see the module docstring)."""
    from ephys.ingest.readers import open_recording

    tokens: dict[str, set[str]] = {"id": set(), "name": set(), "birth_date": set(), "start_date": set(), "path": set()}
    own = _own_words()
    found = discover(archive)
    n_bad = 0
    for rec in found.recordings:
        for part in Path(rec.relpath).parts:
            stem = part.rsplit(".", 1)[0] if "." in part else part
            pieces = {stem, *_SPLIT.split(stem)}
            tokens["path"].update(t for t in pieces if len(t) >= MIN_TOKEN and t.lower() not in own)
        if rec.failure is not None:
            continue
        try:
            reader = open_recording(rec.primary, rec.format)
        except Exception:  # noqa: BLE001 - a file ephys cannot read has no header identity to audit
            n_bad += 1
            continue
        try:
            p = reader.patient
            tokens["id"].update(i.strip() for i in [p.patient_id, *p.ids] if i and i.strip())
            for n in p.names:
                tokens["name"].update({n.strip(), *(t for t in _SPLIT.split(n) if t.isalpha())})
            tokens["birth_date"] |= _date_forms(parse_birthdate(p.birthdate))
            tokens["start_date"] |= _date_forms(p.start)
            authors = {a.author for a in reader.annotations() if a.author}
            tokens["name"].update(t for a in authors for t in {a.strip(), *_SPLIT.split(a)})
        except Exception:  # noqa: BLE001 - a damaged annotation block: the header tokens are kept
            n_bad += 1
        finally:
            reader.close()
    for kind in tokens:  # the placeholders anonymised files put where a name belongs ("X", "Name") are no identity
        tokens[kind] = {t for t in tokens[kind] if len(t) >= MIN_TOKEN and t.lower() not in _PLACEHOLDERS}
    return tokens, len(found.recordings), n_bad


def _needles(token: str) -> set[bytes]:
    out = set()
    for form in {token, token.lower(), token.upper(), token.casefold()}:
        for enc in ("utf-8", "cp1252", "latin-1", "utf-16-le", "utf-16-be"):
            try:
                out.add(form.encode(enc).lower())
            except UnicodeEncodeError:
                pass
        out.add(json.dumps(form).strip('"').encode().lower())  # \u00e4 escapes
    return {n for n in out if len(n) >= MIN_TOKEN}


def _kind(rel: str) -> str:
    name = rel.rsplit("/", 1)[-1]
    if name.startswith("shard-"):
        return "shards"
    if name.startswith("catalog.sqlite"):
        return "catalog"
    if name.endswith(".csv"):
        return "hash log"
    if name.endswith(".json"):
        return "manifests and JSON"
    if name.endswith((".log", ".out", ".err", ".txt")):
        return "logs"
    return "other files"


def audit(output: str | os.PathLike, archive: str | os.PathLike, extra: list[str | os.PathLike] = ()) -> AuditReport:
    """Search every byte under ``output`` (and the files or folders in ``extra``: manifests kept
    elsewhere, Slurm logs) for the identity tokens of ``archive``.

    Returns
    -------
    AuditReport
        Counts only; ``report.ok`` is False on any hit.
    """
    tokens, n_rec, n_bad = identity_tokens(archive)
    report = AuditReport(n_recordings=n_rec, n_unreadable=n_bad, n_tokens=sum(map(len, tokens.values())))
    needles = {kind: [_needles(t) for t in sorted(ts)] for kind, ts in tokens.items()}
    files: list[tuple[str, Path]] = []
    for root in [Path(output), *map(Path, extra)]:
        if root.is_file():
            files.append((root.name, root))
        elif root.is_dir():
            files += [(str(p.relative_to(root)), p) for p in sorted(root.rglob("*")) if p.is_file()]
    for rel, path in files:
        report.n_files += 1
        data = path.read_bytes().lower()
        report.n_bytes += len(data)
        name = os.fsencode(rel).lower()
        for kind, forms in needles.items():
            for nds in forms:
                if any(nd in data or nd in name for nd in nds):
                    report.hits.setdefault(kind, Counter())[_kind(rel)] += 1
    return report
