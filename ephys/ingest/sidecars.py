"""Seizure lists and annotation tables kept beside recordings ("sidecars"), recognised by content.

Three formats are read:

* **CHB-MIT summary** (``chbNN-summary.txt``, PhysioNet CHB-MIT Scalp EEG Database, Shoeb 2009):
  blocks of ``File Name: chb05_06.edf`` followed by ``Number of Seizures in File: N`` and, per
  seizure, ``Seizure Start Time: 417 seconds`` / ``Seizure End Time: 532 seconds`` (later patients
  write ``Seizure 1 Start Time:``). Times are seconds from the file's start.
* **Siena seizure list** (``Seizures-list-PNxx.txt``, PhysioNet Siena Scalp EEG Database, Detti
  2020): blocks of ``Seizure n K``, ``File name: PN00-1.edf``, ``Registration start time: 19.39.33``,
  ``Registration end time``, ``Seizure start time`` / ``Seizure end time`` (some lists write
  ``Start time:`` / ``End time:``, or ``:`` between the clock fields). Times are wall-clock
  times; the onset is the seizure start minus the registration start, across midnight where the
  clock wrapped.
* **ephys TSV**: a tab-separated table whose first line is ``file	onset	duration	description``
  (more columns are allowed and ignored). ``file`` is a recording's file name or its path relative
  to the table's folder, or the recording's SHA-256 (64 hex digits, as in the catalog: no name in
  the table at all); ``onset`` and ``duration`` in seconds from the recording's start; ``description``
  is annotation text, labelled by the taxonomy and scrubbed like any annotation text.

This module only parses: :func:`read_sidecar` returns the entries with the file name each names;
matching names to recordings, clipping to a recording's length, labelling and recording them in
the catalog happen in the ingest driver (:mod:`ephys.pipeline.sidecars`). Names in a sidecar are
archive file names (which in hospitals hold patient names): they are never logged or raised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

#: Files larger than this are not sidecars (read whole, on the driver).
MAX_BYTES = 4 * 1024 * 1024
#: Extensions whose files are sniffed for a sidecar format.
EXTENSIONS = {".txt", ".tsv", ".csv"}
FORMATS = ("chbmit", "siena", "tsv")
SECONDS_PER_DAY = 24 * 3600
TSV_COLUMNS = ("file", "onset", "duration", "description")

_CHB_FILE = re.compile(r"^\s*File\s+Name\s*:\s*(?P<name>\S.*?)\s*$", re.I)
_CHB_COUNT = re.compile(r"^\s*Number\s+of\s+Seizures\s+in\s+File\s*:\s*(?P<n>\d+)\s*$", re.I)
_CHB_TIME = re.compile(r"^\s*Seizure(?:\s+\d+)?\s+(?P<which>Start|End)\s+Time\s*:\s*(?P<s>\d+(?:\.\d+)?)\s*(?:s|sec|seconds)?\s*$", re.I)
_SIENA_BLOCK = re.compile(r"^\s*Seizure\s+n\s*\.?\s*(?P<k>\d+)\s*$", re.I)
_SIENA_FIELD = re.compile(
    r"^\s*(?P<key>File\s+name|Registration\s+start\s+time|Registration\s+end\s+time|(?:Seizure\s+)?start\s+time|"
    r"(?:Seizure\s+)?end\s+time)\s*:\s*(?P<value>\S.*?)\s*$",
    re.I,
)
_CLOCK = re.compile(r"^(?P<h>\d{1,2})[.:](?P<m>\d{1,2})[.:](?P<s>\d{1,2})$")
_SHA = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class SidecarEntry:
    """One annotation a sidecar gives a named file.

    ``name``: the file name (or relative path, or SHA-256) as the sidecar writes it; ``onset_s``
    and ``duration_s`` in s from the file's start; ``end_limit_s``: the recording's length the
    sidecar itself states (Siena registration times), if any; ``number``: the entry's 1-based
    number in the sidecar (how reports name it: never by ``name``).
    """

    number: int
    name: str
    onset_s: float
    duration_s: float
    text: str
    end_limit_s: float | None = None


@dataclass
class Sidecar:
    """A parsed sidecar: its format, entries, the files it lists without any entry (CHB-MIT lists
    seizure-free files too) and ``problems``: ``(entry number, reason)`` for lines it could not use."""

    format: str
    entries: list[SidecarEntry] = field(default_factory=list)
    listed: list[str] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)


def sniff_sidecar(head: bytes) -> str | None:
    """The sidecar format of a file from its first bytes (``chbmit``, ``siena``, ``tsv``), or None."""
    text = head.decode("latin-1")
    first = text.lstrip("\ufeff\xef\xbb\xbf").split("\n", 1)[0].strip().lower()
    if tuple(c.strip() for c in first.split("\t")[:4]) == TSV_COLUMNS:
        return "tsv"
    if re.search(r"^\s*Seizure\s+n\s*\.?\s*\d+", text, re.I | re.M) and re.search(r"Registration\s+start\s+time", text, re.I):
        return "siena"  # before CHB-MIT: a Siena list also has "File name:" and "Seizure start time:"
    if re.search(r"^\s*File\s+Name\s*:", text, re.I | re.M) and re.search(
        r"Number\s+of\s+Seizures\s+in\s+File|Seizure(\s+\d+)?\s+Start\s+Time", text, re.I
    ):
        return "chbmit"
    if re.search(r"Data\s+Sampling\s+Rate", text, re.I) and re.search(r"^\s*File\s+Name\s*:", text, re.I | re.M):
        return "chbmit"  # a summary whose first files have no seizure (the first 512 bytes list channels)
    return None


def read_sidecar(path: Path, fmt: str | None = None) -> Sidecar:
    """Parse the sidecar at ``path`` (format sniffed when ``fmt`` is None): :func:`sidecar_bytes`, then
    :func:`parse_sidecar`. Raises what they raise."""
    return parse_sidecar(sidecar_bytes(path), fmt)


def sidecar_bytes(path: Path) -> bytes:
    """The content of a sidecar file. Raises ValueError when it is larger than :data:`MAX_BYTES` (the
    message names no file: the caller knows which), OSError when it cannot be read."""
    with open(path, "rb") as f:
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise ValueError(f"larger than {MAX_BYTES // (1024 * 1024)} MiB: not read as a sidecar")
    return data


def parse_sidecar(data: bytes, fmt: str | None = None) -> Sidecar:
    """Parse a sidecar's content (format sniffed when ``fmt`` is None).

    Raises
    ------
    ValueError
        When the content is not one of :data:`FORMATS`.
    """
    fmt = fmt or sniff_sidecar(data[:4096])
    text = _decode(data).replace("\r\n", "\n").replace("\r", "\n")
    if fmt == "chbmit":
        return parse_chbmit(text)
    if fmt == "siena":
        return parse_siena(text)
    if fmt == "tsv":
        return parse_tsv(text)
    raise ValueError("not a sidecar format ephys reads (CHB-MIT summary, Siena seizure list, ephys TSV)")


def _decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def parse_chbmit(text: str) -> Sidecar:
    """Entries of a CHB-MIT ``chbNN-summary.txt`` (see the module docstring); text ``seizure``."""
    out = Sidecar("chbmit")
    name: str | None = None
    declared: int | None = None
    starts: list[float] = []
    ends: list[float] = []

    def close() -> None:
        if name is None:
            return
        if not starts and not ends:
            out.listed.append(name)
        for start, end in zip(starts, ends):
            number = len(out.entries) + len(out.problems) + 1
            if end < start:
                out.problems.append((number, f"seizure ends ({end:g} s) before it starts ({start:g} s)"))
                continue
            out.entries.append(SidecarEntry(number, name, start, end - start, "seizure"))
        if len(starts) != len(ends):
            out.problems.append((len(out.entries) + len(out.problems) + 1,
                                 f"{len(starts)} seizure start times but {len(ends)} end times for one file"))
        if declared is not None and declared != len(starts):
            out.problems.append((len(out.entries) + len(out.problems) + 1,
                                 f"'Number of Seizures in File: {declared}' but {len(starts)} listed"))

    for line in text.split("\n"):
        if m := _CHB_FILE.match(line):
            close()
            name, declared, starts, ends = m["name"], None, [], []
        elif (m := _CHB_COUNT.match(line)) and name is not None:
            declared = int(m["n"])
        elif (m := _CHB_TIME.match(line)) and name is not None:
            (starts if m["which"].lower() == "start" else ends).append(float(m["s"]))
    close()
    return out


def _clock_s(value: str) -> float | None:
    m = _CLOCK.match(value.strip())
    if not m:
        return None
    h, mi, s = int(m["h"]), int(m["m"]), int(m["s"])
    if h > 47 or mi > 59 or s > 59:
        return None
    return float(h * 3600 + mi * 60 + s)


def parse_siena(text: str) -> Sidecar:
    """Entries of a Siena ``Seizures-list-PNxx.txt`` (see the module docstring); text ``seizure``.

    Each time is taken as the first time at or after the registration start (the clock wraps at
    midnight); a seizure end before its start is a problem, not an entry.
    """
    out = Sidecar("siena")
    blocks: list[dict[str, str]] = []
    for line in text.split("\n"):
        if _SIENA_BLOCK.match(line):
            blocks.append({})
        elif (m := _SIENA_FIELD.match(line)) and blocks:
            key = re.sub(r"\s+", " ", m["key"].lower()).removeprefix("seizure ")
            blocks[-1].setdefault(key, m["value"])
    for number, b in enumerate(blocks, 1):
        name = b.get("file name")
        reg0, reg1 = _clock_s(b.get("registration start time", "")), _clock_s(b.get("registration end time", ""))
        t0, t1 = _clock_s(b.get("start time", "")), _clock_s(b.get("end time", ""))
        if not name:
            out.problems.append((number, "no file name"))
            continue
        if reg0 is None or t0 is None or t1 is None:
            out.problems.append((number, "registration start, seizure start or seizure end is not a clock time HH.MM.SS"))
            continue
        onset = (t0 - reg0) % SECONDS_PER_DAY
        end = (t1 - reg0) % SECONDS_PER_DAY
        limit = (reg1 - reg0) % SECONDS_PER_DAY if reg1 is not None else None
        if end < onset:
            out.problems.append((number, "seizure ends before it starts"))
            continue
        out.entries.append(SidecarEntry(number, name, onset, end - onset, "seizure", end_limit_s=limit))
    return out


def parse_tsv(text: str) -> Sidecar:
    """Entries of an ephys TSV (``file	onset	duration	description``, see the module docstring)."""
    out = Sidecar("tsv")
    lines = text.split("\n")
    header = [c.strip().lower() for c in lines[0].lstrip("\ufeff").split("\t")]
    col = {c: header.index(c) for c in TSV_COLUMNS}
    number = 0
    for line in lines[1:]:
        if not line.strip():
            continue
        number += 1
        cells = line.split("\t")
        if len(cells) < len(header):
            out.problems.append((number, f"{len(cells)} columns, the header has {len(header)}"))
            continue
        name = cells[col["file"]].strip()
        try:
            onset = float(cells[col["onset"]])
            duration = float(cells[col["duration"]] or 0)
        except ValueError:
            out.problems.append((number, "onset or duration is not a number (seconds)"))
            continue
        if not name or not (onset >= 0 and duration >= 0):  # also refuses NaN
            out.problems.append((number, "empty file, or a negative onset or duration"))
            continue
        description = cells[col["description"]].strip()
        if not description:
            out.problems.append((number, "empty description"))
            continue
        out.entries.append(SidecarEntry(number, name.lower() if _SHA.match(name.lower()) else name, onset, duration,
                                        description))
    return out


def is_sha256(name: str) -> bool:
    """Whether a sidecar names a recording by its SHA-256 (64 lower-case hex digits)."""
    return bool(_SHA.match(name))
