"""Find recordings in an archive, recognising formats by content.

Every file under the archive is sniffed (first 512 bytes): EDF/BDF by their
magic, Micromed .TRC by its title string, Nicolet .e by its GUID, BrainVision
by its header line (grouped with the .vmrk/.eeg it names into one recording),
and MNE formats by content and extension, each grouped with its sidecars
(EEGLAB .set + .fdt, Persyst .lay + .dat, Nihon Kohden .EEG + .PNT/.LOG/.21E). Files with an EEG extension
whose content matches nothing are still returned (format ``unknown``) so their
failure is recorded; seizure lists and annotation tables (:mod:`ephys.ingest.sidecars`: CHB-MIT
summaries, Siena seizure lists, ephys TSV), recognised by content, are returned apart
(``annotation_sidecars``); other files are counted as ignored. Symbolic links to
folders are not followed (no loops); links to files are.

Nothing found is dropped silently: a folder that cannot be listed becomes a recording that
fails with ``unreadable_folder``; a FIFO, socket or device is counted (``n_special``) and, when
its name has an EEG extension, a recording that fails with ``special_file`` (it is never
opened: reading one can block or never end). Names that are not valid UTF-8 are kept as
Python keeps them (surrogate escapes), so such files are read like any other.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ephys.errors import ReadError, RunError, SpecialFileError, UnreadableFolderError
from ephys.ingest import sidecars as sidecar_formats
from ephys.ingest.identity import HiddenPath
from ephys.ingest.readers.edf import sniff as sniff_edf

TRC_MAGIC = b"* MICROMED"
NICOLET_GUID = bytes.fromhex("0fc37b1ccf2d6d4b8aea1f64ced2b917")
EEG_EXTENSIONS = {".edf", ".bdf", ".rec", ".trc", ".e", ".vhdr", ".set", ".fif", ".lay", ".gdf", ".cnt"}
_BV_HEADER = re.compile(rb"^(\xef\xbb\xbf)?\s*Brain ?Vision Data Exchange Header File", re.I)
_BV_MEMBER = re.compile(r"^\s*(DataFile|MarkerFile)\s*=\s*(.+?)\s*$", re.I | re.M)


@dataclass
class Discovered:
    """One recording: its primary file, all member files, and the format sniffed.

    ``failure``: the error when discovery already knows it cannot be read
    (:class:`~ephys.errors.UnreadableFolderError`, :class:`~ephys.errors.SpecialFileError`);
    such a recording is recorded, never hashed.
    """

    primary: Path
    files: list[Path]
    format: str
    relpath: str
    failure: ReadError | None = None

    @property
    def file_strs(self) -> list[str]:
        """Member paths as :class:`~ephys.ingest.identity.HiddenPath` (safe as Dask task arguments)."""
        return [HiddenPath(f) for f in self.files]


@dataclass
class Discovery:
    recordings: list[Discovered] = field(default_factory=list)
    n_files: int = 0
    n_ignored: int = 0
    #: FIFOs, sockets and devices found (those with an EEG extension are also failed recordings).
    n_special: int = 0
    #: Folders that could not be listed (each is also a failed recording).
    n_unreadable_folders: int = 0
    #: Seizure lists and annotation tables (:mod:`ephys.ingest.sidecars`): ``(path, format, relpath)``.
    annotation_sidecars: list[tuple[Path, str, str]] = field(default_factory=list)


def sniff(path: Path) -> str | None:
    """Format of a single file from its content (and extension where content is ambiguous)."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return "unreadable"
    ext = path.suffix.lower()
    fmt = sniff_edf(head)
    if fmt:
        return fmt
    if ext in (".edf", ".rec") and head[:8] == b"0       ":
        return "edf"  # EDF magic and extension agree; the reader names what is damaged in the header
    if head.startswith(TRC_MAGIC):
        return "micromed_trc"
    if head[:16] == NICOLET_GUID:
        return "nicolet_e"
    if _BV_HEADER.match(head):
        return "brainvision"
    if ext == ".set" and (head.startswith(b"MATLAB 5.0 MAT-file") or head.startswith(b"\x89HDF")):
        return "eeglab"
    if ext == ".fif" and head[:4] == b"\x00\x00\x00\x64":
        return "fif"
    if ext == ".lay" and b"[FileInfo]" in head:
        return "persyst"
    # Nihon Kohden: the device/version string ("EEG-1100A V01.00", "QI-403A", "DAE-2100D") opens the file.
    if ext == ".eeg" and head[:4] in (b"EEG-", b"QI-4", b"DAE-"):
        return "nihon_kohden"
    if ext == ".gdf" and head.startswith(b"GDF"):
        return "gdf"
    return None


def _brainvision_members(vhdr: Path) -> list[Path]:
    try:
        text = vhdr.read_text(encoding="latin-1")
    except OSError:
        return [vhdr]
    members = [vhdr]
    for _, name in _BV_MEMBER.findall(text):
        p = vhdr.parent / name
        if p.exists():
            members.append(p)
    return members


#: Sidecar files (same folder, same stem, these extensions) that belong to a primary file.
SIDECARS = {
    "eeglab": (".fdt",),
    "persyst": (".dat",),
    "nihon_kohden": (".pnt", ".log", ".21e", ".11d", ".cmt", ".egf"),
}


def _sidecars(primary: Path, fmt: str | None) -> list[Path] | None:
    """``[primary, *sidecars]`` for multi-file formats (case-insensitive extensions), else ``None``."""
    if fmt not in SIDECARS:
        return None
    wanted = SIDECARS[fmt]
    try:
        siblings = sorted(primary.parent.iterdir())
    except OSError:
        return [primary]
    return [primary] + [q for q in siblings if q != primary and q.stem == primary.stem and q.suffix.lower() in wanted]


def discover(archive: str | os.PathLike) -> Discovery:
    """Walk ``archive`` and return its recordings, sorted by path.

    Raises
    ------
    RunError
        If ``archive`` does not exist or is not a folder (or readable file).
    """
    root = Path(archive)
    if not root.exists():
        raise RunError(f"archive {root} does not exist")
    failed: list[Discovered] = []
    n_special = 0
    if root.is_file():
        paths, base = [root], root.parent
    elif root.is_dir():
        paths, base = [], root

        def unlistable(err: OSError) -> None:
            folder = Path(err.filename) if err.filename else root
            reason = f"folder cannot be listed: {err.strerror or type(err).__name__}"
            failed.append(Discovered(folder, [folder], "folder", _rel(folder, base) or ".",
                                     UnreadableFolderError(reason, str(folder))))

        for d, dirs, files in os.walk(root, followlinks=False, onerror=unlistable):
            dirs.sort()
            for name in sorted(files):
                p = Path(d) / name
                try:
                    mode = p.stat().st_mode  # follows file links
                except OSError:
                    continue  # a broken link: nothing to read
                if stat.S_ISREG(mode):
                    paths.append(p)
                elif not stat.S_ISDIR(mode):
                    n_special += 1
                    if p.suffix.lower() in EEG_EXTENSIONS:
                        failed.append(Discovered(p, [p], "special", _rel(p, base),
                                                 SpecialFileError(SpecialFileError.default_reason, str(p))))
    else:
        raise RunError(f"archive {root} is not a folder or file")

    out = Discovery(n_files=len(paths), n_special=n_special,
                    n_unreadable_folders=sum(isinstance(r.failure, UnreadableFolderError) for r in failed))
    sniffed = {p: sniff(p) for p in paths}
    claimed: set[Path] = set()
    grouped: set[Path] = set()
    for p, fmt in sniffed.items():
        members = _brainvision_members(p) if fmt == "brainvision" else _sidecars(p, fmt)
        if members is not None:
            claimed.update(members[1:])
            grouped.add(p)
            out.recordings.append(Discovered(p, members, fmt, _rel(p, base)))
    for p, fmt in sniffed.items():
        if p in grouped or p in claimed:
            continue
        if fmt is None:
            if p.suffix.lower() in EEG_EXTENSIONS:
                fmt = f"unknown{p.suffix.lower()}"
            elif kind := _annotation_sidecar(p):
                out.annotation_sidecars.append((p, kind, _rel(p, base)))
                continue
            else:
                out.n_ignored += 1
                continue
        out.recordings.append(Discovered(p, [p], fmt, _rel(p, base)))
    out.recordings += failed
    out.recordings.sort(key=lambda r: os.fsencode(r.relpath))
    return out


def _annotation_sidecar(p: Path) -> str | None:
    """The :mod:`ephys.ingest.sidecars` format of a text file (first 4 KiB: a CHB-MIT summary lists
    channels before its first seizure), or None."""
    if p.suffix.lower() not in sidecar_formats.EXTENSIONS:
        return None
    try:
        if p.stat().st_size > sidecar_formats.MAX_BYTES:
            return None
        with open(p, "rb") as f:
            return sidecar_formats.sniff_sidecar(f.read(4096))
    except OSError:
        return None


def _rel(p: Path, base: Path) -> str:
    return str(p.relative_to(base)) if p != base else ""
