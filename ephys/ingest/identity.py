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
from pathlib import Path

log = logging.getLogger("ephys")


def _config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ephys"


def load_site_secret() -> bytes:
    """The site secret (bytes); created in the user's config folder when none exists."""
    env = os.environ.get("EPHYS_SITE_SECRET")
    if env:
        return env.encode()
    path = Path(os.environ.get("EPHYS_SITE_SECRET_FILE") or _config_dir() / "site-secret")
    if path.exists():
        data = path.read_bytes().strip()
        if not data:
            raise ValueError(f"site secret file {path} is empty")
        return data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    log.warning("created a new site secret for pseudonyms at %s; keep it safe and private", path)
    return path.read_bytes().strip()


def secret_fingerprint(secret: bytes) -> str:
    return hmac.new(secret, b"ephys-fingerprint", hashlib.sha256).hexdigest()[:16]


def pseudonym(secret: bytes, patient_id: str, recording_sha256: str) -> str:
    """``sub-`` + 16 hex of HMAC-SHA-256. Without a patient id, one subject per recording."""
    msg = f"patient\0{patient_id}" if patient_id else f"recording\0{recording_sha256}"
    return "sub-" + hmac.new(secret, msg.encode(), hashlib.sha256).hexdigest()[:16]


def author_pseudonym(secret: bytes, author: str) -> str:
    """``author-`` + 12 hex of HMAC-SHA-256: the same annotating user maps to the same pseudonym."""
    return "author-" + hmac.new(secret, f"author\0{author.strip().lower()}".encode(), hashlib.sha256).hexdigest()[:12]


_DATE = re.compile(
    r"\b(\d{1,2}[./-]\d{1,2}[./-]\d{2,4}|\d{4}-\d{2}-\d{2}|\d{1,2}[.-]?(JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)[A-Z]*[.-]?\d{2,4})\b",
    re.IGNORECASE,
)


def scrub_text(text: str, names: list[str]) -> tuple[str, int]:
    """Replace person names (from the patient block) and dates in annotation text.

    Returns the scrubbed text and how many replacements were made.
    """
    n = 0
    tokens = sorted({t for name in names for t in re.split(r"[\s,;_]+", name) if len(t) >= 2 and t.isalpha()},
                    key=len, reverse=True)  # fmt: skip
    for t in tokens:
        text, k = re.subn(rf"(?<!\w){re.escape(t)}(?!\w)", "[name]", text, flags=re.IGNORECASE)
        n += k
    text, k = _DATE.subn("[date]", text)
    return text, n + k
