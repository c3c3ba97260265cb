"""Pseudonymous subject ids and scrubbing of identity from free text.

Subjects are keyed pseudonyms: ``HMAC-SHA-256(site_secret, patient_id)``
(RFC 2104), so the same patient maps to the same subject across files and
sites cannot link their subjects without sharing the secret. The secret comes
from ``EPHYS_SITE_SECRET``, the file named by ``EPHYS_SITE_SECRET_FILE``, or
``~/.config/ephys/site-secret`` (created with 32 random bytes, mode 0600, on
first use). There is no built-in default. The catalog stores only a
fingerprint of the secret, to detect a changed secret.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import unicodedata
from datetime import date, datetime, timedelta
from pathlib import Path

from ephys.errors import SiteSecretError

log = logging.getLogger("ephys")


def _config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ephys"


def load_site_secret() -> bytes:
    """The site secret (bytes); created in the user's config folder when none exists.

    Raises
    ------
    SiteSecretError
        The secret file exists but is empty.
    """
    env = os.environ.get("EPHYS_SITE_SECRET")
    if env:
        return env.encode()
    path = Path(os.environ.get("EPHYS_SITE_SECRET_FILE") or _config_dir() / "site-secret")
    if path.exists():
        data = path.read_bytes().strip()
        if not data:
            raise SiteSecretError(f"site secret file {path} is empty")
        return data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    log.warning("created a new site secret for pseudonyms at %s; keep it safe and private", path)
    return path.read_bytes().strip()


def secret_fingerprint(secret: bytes) -> str:
    return hmac.new(secret, b"ephys-fingerprint", hashlib.sha256).hexdigest()[:16]


#: Name tokens that anonymised or test files put where a name belongs; never a person.
_PLACEHOLDERS = {"x", "xx", "xxx", "anonymous", "anon", "unknown", "noname", "no", "name", "patient", "none", "na", "n/a",
                 "test", "demo", "subject", "no_name", "no name"}


def subject_key(patient_id: str, names: list[str], birthdate: str | None) -> str | None:
    """What identifies a patient across files, or ``None`` when the file does not say.

    The patient ID when there is one; else (Micromed stores no ID) the names
    together with the birth date, both normalised, when both are present and the
    names are not placeholders ("X", "Anonymous", "No_Name"). Never stored.
    """
    pid = patient_id.strip()
    if pid and pid.lower() not in _PLACEHOLDERS:
        return f"patient\0{pid}"
    tokens = sorted({t.lower() for n in names for t in re.split(r"[\s,;_]+", n) if t} - _PLACEHOLDERS)
    born = parse_birthdate(birthdate)
    if tokens and born is not None:
        return f"name-born\0{' '.join(tokens)}\0{born.isoformat()}"
    return None


def pseudonym(secret: bytes, patient_id: str, recording_sha256: str, *, names: list[str] = (),
              birthdate: str | None = None) -> str:
    """``sub-`` + 16 hex of HMAC-SHA-256 (RFC 2104) of :func:`subject_key`.

    Without anything identifying the patient, one subject per recording.
    """
    msg = subject_key(patient_id, list(names), birthdate) or f"recording\0{recording_sha256}"
    return "sub-" + hmac.new(secret, msg.encode(), hashlib.sha256).hexdigest()[:16]


_MONTHS = {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())}


def parse_birthdate(text: str | None) -> date | None:
    """A birth date as the formats spell it: EDF+ ``02-MAY-1951``, ISO ``1951-05-02``,
    ``02.05.1951`` or ``02/05/1951`` (day first, as in Europe). ``None`` if unparseable."""
    if not text:
        return None
    t = str(text).strip().upper()
    try:
        if m := re.fullmatch(r"(\d{1,2})-([A-Z]{3})-(\d{4})", t):
            return date(int(m[3]), _MONTHS[m[2]], int(m[1]))
        if m := re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})(?:[ T].*)?", t):
            return date(int(m[1]), int(m[2]), int(m[3]))
        if m := re.fullmatch(r"(\d{1,2})[./](\d{1,2})[./](\d{4})", t):
            return date(int(m[3]), int(m[2]), int(m[1]))
    except (KeyError, ValueError):
        return None
    return None


#: Ages above this are reported as this (HIPAA Safe Harbor, 45 CFR 164.514(b)(2)(i)(C): ages over 89 are aggregated).
AGE_CAP = 90


def normalise_sex(text: str | None) -> str | None:
    """``"F"``, ``"M"`` or ``None`` from the formats' spellings (F/M, female/male, weiblich/männlich, w/m)."""
    t = (text or "").strip().lower()
    if t in {"f", "female", "w", "weiblich", "femme"}:
        return "F"
    if t in {"m", "male", "männlich", "maennlich", "homme", "h"}:
        return "M"
    return None


def age_years(birthdate: str | None, start: datetime | None) -> int | None:
    """Completed years between birth and the recording start, capped at :data:`AGE_CAP`.

    ``None`` when either is unknown or the result is impossible (negative, > 130).
    The birth date itself is never stored; this is what replaces it.
    """
    born = parse_birthdate(birthdate)
    if born is None or start is None:
        return None
    on = start.date()
    years = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
    if years < 0 or years > 130:
        return None
    return min(years, AGE_CAP)


#: Date shifts are whole weeks (weekday and time of day kept) between 100 and 200 years into the
#: future, so a shifted date can never be mistaken for a real one (MIMIC shifts the same way).
_SHIFT_MIN_WEEKS, _SHIFT_SPAN_WEEKS = 5218, 5218


def date_shift(secret: bytes, subject: str) -> timedelta:
    """The keyed offset added to every date of one subject (``--date-shift``).

    ``HMAC-SHA-256(secret, subject)`` chooses a whole number of weeks between
    about 100 and 200 years, so intervals between a subject's recordings, the
    time of day and the weekday are kept, while absolute dates are not.
    """
    digest = hmac.new(secret, f"date-shift\0{subject}".encode(), hashlib.sha256).digest()
    return timedelta(weeks=_SHIFT_MIN_WEEKS + int.from_bytes(digest[:8], "big") % _SHIFT_SPAN_WEEKS)


def shifted_start(secret: bytes, subject: str, start: datetime | None) -> datetime | None:
    """The recording start moved by :func:`date_shift` (time zone dropped), or ``None``."""
    if start is None:
        return None
    try:
        return start.replace(tzinfo=None) + date_shift(secret, subject)
    except OverflowError:
        return None


def author_pseudonym(secret: bytes, author: str) -> str:
    """``author-`` + 12 hex of HMAC-SHA-256: the same annotating user maps to the same pseudonym."""
    return "author-" + hmac.new(secret, f"author\0{author.strip().lower()}".encode(), hashlib.sha256).hexdigest()[:12]


_MONTH_NAMES = (
    "jan(?:uary|uar)?|feb(?:ruary|ruar)?|m(?:ar(?:ch)?|ärz|aerz|rz)|apr(?:il)?|ma[iy]|jun[ei]?|jul[iy]?|aug(?:ust)?"
    "|sep(?:t(?:ember)?)?|o[ck]t(?:ober)?|nov(?:ember)?|de[cz](?:ember)?"
)
_DATE = re.compile(
    "|".join((
        r"\b\d{1,2}[./-]\d{1,2}[./-]\d{2,4}\b",  # 12.03.2019, 12/03/19, 12-3-2019
        r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b",  # 2019-03-12
        r"\b(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\b",  # 20190312
        r"\b(?:0[1-9]|[12]\d|3[01])(?:0[1-9]|1[0-2])(?:19|20)\d{2}\b",  # 17031961 (German compact, day first)
        rf"\b\d{{1,2}}\.?[ -]?(?:{_MONTH_NAMES})\.?[ ,-]*(?:\d{{2,4}})?\b",  # 12 March 2019, 12. März 2019, 12-MAR-19
        rf"\b(?:{_MONTH_NAMES})\.? \d{{1,2}}(?:st|nd|rd|th)?,? \d{{4}}\b",  # March 12, 2019
        r"\b(?:0?[1-9]|[12]\d|3[01])\.(?:0?[1-9]|1[0-2])\.(?!\d)",  # 12.03. (German, year left out)
    )),
    re.IGNORECASE,
)
#: What may stand next to a name: anything but a letter or digit (so ``Meier_Hans`` and ``(Meier)`` match).
_NOT_ALNUM_BEFORE, _NOT_ALNUM_AFTER = r"(?<![^\W_])", r"(?![^\W_])"


def _name_tokens(names: list[str]) -> list[str]:
    """Parts of names worth removing: split at spaces, commas, underscores, hyphens, apostrophes, dots."""
    tokens = {t for name in names for t in re.split(r"[\s,;_\-'’.]+", name) if len(t) >= 2 and t.isalpha()}
    return sorted(tokens - _PLACEHOLDERS, key=len, reverse=True)


_UMLAUTS = (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ß", "ss"), ("Ä", "Ae"), ("Ö", "Oe"), ("Ü", "Ue"))


def _spellings(token: str) -> set[str]:
    """The ways a German name is typed: as written and with umlauts as ``ae``/``oe``/``ue`` and back
    (``Quäxelbröt`` and ``Quaexelbroet``). Accents are handled by matching folded text (:func:`_fold`)."""
    folded, unfolded = token, token
    for u, a in _UMLAUTS:
        folded = folded.replace(u, a)
        unfolded = re.sub(a, u, unfolded) if u != "ß" else unfolded
    return {t for t in (token, folded, unfolded) if t}


def _fold(text: str) -> str:
    """``text`` with accents dropped, one character for one (``Bratwürstová`` → ``Bratwurstova``), so
    match positions in the folded text are positions in the original."""
    return "".join((unicodedata.normalize("NFKD", c)[:1] or c) if ord(c) > 127 else c for c in text)


def _sub_folded(pattern: str, repl: str, text: str) -> tuple[str, int]:
    """``re.subn`` of an accent-folded pattern over the accent-folded ``text``, applied to ``text``:
    a name matches however its accents were typed, in the header or in the annotation."""
    folded = _fold(text)
    out, pos, n = [], 0, 0
    for m in re.finditer(pattern, folded, flags=re.IGNORECASE):
        out += [text[pos : m.start()], repl]
        pos, n = m.end(), n + 1
    return "".join(out) + text[pos:], n


def _id_parts(ids: list[str]) -> list[str]:
    """Identifiers and their digit runs of five or more (``4471982`` of ``PID4471982``: a case number
    typed without its prefix)."""
    out = {i.strip() for i in ids if len(i.strip()) >= 3}
    out |= {d for i in ids for d in re.findall(r"\d{5,}", i)}
    return sorted(out, key=len, reverse=True)


def scrub_text(text: str, names: list[str], ids: list[str] = ()) -> tuple[str, int]:
    """Replace person names, identifiers and dates in annotation free text.

    ``names``: the patient block's names, technicians, annotating users; each
    whole name and each of its parts (two letters or more) is replaced by
    ``[name]``, case-insensitively, wherever it is not part of a longer word
    (underscores and hyphens separate words here), in the spellings people type
    (umlauts as ``ae``/``oe``/``ue`` and back, accents dropped) and with a genitive
    ``s``. ``ids``: patient and admission codes, replaced by ``[id]`` wherever they
    occur, and their digit runs of five or more wherever they stand alone. Dates in the
    numeric, ISO, compact (``20190312``, ``17031961``) and written forms of English and
    German (``12 March 2019``, ``12. März 2019``, ``March 12, 2019``,
    ``12.03.``) become ``[date]``.

    Returns
    -------
    (str, int)
        The scrubbed text and how many replacements were made.
    """
    n = 0
    for ident in _id_parts(list(ids)):
        pattern = rf"(?<!\d){re.escape(ident)}(?!\d)" if ident.isdigit() else re.escape(ident)
        text, k = re.subn(pattern, "[id]", text, flags=re.IGNORECASE)
        n += k
    whole = sorted({w.strip() for w in names if len(w.strip()) >= 2}, key=len, reverse=True)
    seen: set[str] = set()
    for base in whole + _name_tokens(names):
        if base.lower() in _PLACEHOLDERS:
            continue
        for t in sorted({_fold(t).lower() for t in _spellings(base)} - seen, key=len, reverse=True):
            seen.add(t)
            # a genitive or plural s ("Quaexelbroets Mutter") belongs to the name
            text, k = _sub_folded(rf"{_NOT_ALNUM_BEFORE}{re.escape(t)}(?:['’]?s)?{_NOT_ALNUM_AFTER}", "[name]", text)
            n += k
    text, k = _DATE.subn("[date]", text)
    text, k2 = _LONG_NUMBER.subn("[id]", text)
    return text, n + k + k2


#: A code of six digits or more, standing alone or after a short prefix (``PID4471982``,
#: ``Fall-Nr 12345678``): no clinical EEG annotation writes such a number, case and patient numbers do.
_LONG_NUMBER = re.compile(r"(?<!\w)(?<!\d[.,:/])(?:[A-Za-z]{1,4}[-_#]?)?\d{6,}(?!\w)(?![.,:/]\d)")


def scrub_split(texts: list[str], names: list[str], ids: list[str] = ()) -> tuple[list[str], int]:
    """Names and identifiers typed across two neighbouring annotations (``Pat. Quaexel`` then
    ``broet Anfall``; ``PID44`` then ``71982``): where the end of one text and the start of the
    next join into a name part (four letters or more, in the spellings :func:`scrub_text` knows) or
    an identifier, both pieces become ``[name]`` or ``[id]``. ``texts`` in onset order.

    Returns
    -------
    (list of str, int)
        The texts, and how many split names or identifiers were removed.
    """
    targets = [(t, "[id]") for t in {_fold(i).lower() for i in _id_parts(list(ids))} if len(t) >= 4]
    whole = {w.strip() for w in names if len(w.strip()) >= 4}
    targets += [(t, "[name]") for base in whole | set(_name_tokens(names)) if base.lower() not in _PLACEHOLDERS
                for t in {_fold(x).lower() for x in _spellings(base)} if len(t) >= 4]
    out, n = list(texts), 0
    for i in range(len(out) - 1):
        a, b = out[i].rstrip(), out[i + 1].lstrip()
        joined, cut = _fold(a + b).lower(), len(a)
        for t, repl in sorted(targets, key=lambda x: -len(x[0])):
            start = joined.find(t, max(0, cut - len(t) + 1))
            if start == -1 or not (start < cut < start + len(t)):
                continue
            end = start + len(t)
            if (start and joined[start - 1].isalnum()) or (end < len(joined) and joined[end].isalnum()):
                continue  # inside a longer word
            out[i], out[i + 1] = a[:start] + repl, repl + b[end - cut :]
            n += 1
            break
    return out, n


def path_hash(secret: bytes, relpath: str, domain: bytes = b"path") -> str:
    """Keyed hash of an archive-relative path: ``HMAC-SHA-256(secret, domain NUL path bytes)``, hex.

    Keyed (RFC 2104) so that nobody without the site secret can confirm a guessed
    ``Name_ID/...`` path against the catalog or the hash log. The path is hashed as the bytes the
    file system holds (:func:`os.fsencode`), so names that are not valid UTF-8 hash too.
    ``domain`` separates uses of one secret (``b"path"``: catalog and hash-log path hashes).
    """
    raw = os.fsencode(relpath) if isinstance(relpath, str) else bytes(relpath)
    return hmac.new(secret, domain + b"\0" + raw, hashlib.sha256).hexdigest()


def printable_path(relpath: str) -> str:
    """``relpath`` as valid text: bytes that are not UTF-8 (kept by Python as surrogate escapes)
    become ``\\xNN``, control characters (a newline that would forge a log line) ``\\xNN`` too."""
    text = os.fsencode(relpath).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


#: A path in a message: rooted (``/a/b``, ``C:\\a``, ``~/a``, ``./a``) up to a space or quote, or
#: relative with folders and a file extension (``Meier_Hans/PX.vhdr``); not ``EDF/BDF`` or ``µV/s``.
_PATH = re.compile(r"""(?:[A-Za-z]:[\\/]|~[\\/]|\.{1,2}[\\/]|(?<![\w.])[\\/])[^\s'"`]*"""
                   r"""|(?:[^\s'"`\\/:;,()\[\]<>]+[\\/])+[^\s'"`\\/:;,()\[\]<>]*\.[A-Za-z0-9]{1,5}\b""")
_TIME = re.compile(r"\b\d{1,2}[:.]\d{2}[:.]\d{2}\b")


def redact(text: str, known: list[str] = ()) -> str:
    """A message (a reader's exception, a failure reason) with paths, file names and dates removed.

    Anything shaped like a path (:data:`_PATH`) becomes ``<path>``; then ``known``, strings
    that must go whatever their shape (the recording's paths and file names, three characters or
    more, where they stand as words), each become ``<file>``; dates in the forms :func:`scrub_text` knows become ``[date]`` and clock
    times ``[time]``. Control characters become spaces, so one reason is
    one line. Reasons stored in the catalog and printed in logs pass through this.
    """
    text = _PATH.sub("<path>", str(text))
    forms = set()
    for k in known:
        if not k:
            continue
        k = str(k)
        name = k.replace("\\", "/").rsplit("/", 1)[-1]
        forms.update(f for f in {k, printable_path(k), name, printable_path(name)} if len(f) >= 3)
    for k in sorted(forms, key=len, reverse=True):
        text = re.sub(rf"{_NOT_ALNUM_BEFORE}{re.escape(k)}{_NOT_ALNUM_AFTER}", "<file>", text, flags=re.IGNORECASE)
    text = _DATE.sub("[date]", text)
    text = _TIME.sub("[time]", text)
    return "".join(c if c.isprintable() else " " for c in text)


class HiddenPath(str):
    """A path (``str``) whose ``repr`` does not show it.

    Paths travel to Dask workers as task arguments, and a worker's "Compute Failed" log line
    prints ``repr`` of the task with its arguments; archive paths hold patient names and IDs.
    Everything else (``open``, ``os.fspath``, ``str()``, pickling) sees the real path.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "<path>"

    def __reduce__(self):
        return (HiddenPath, (str(self),))
