"""The append-only resume log (EPI-250k's SHA-256 CSV), one row per finished recording.

Columns: ``sha256, outcome, code, n_epochs, finished_at, path_hash[, relpath]``.
Each row is flushed and fsynced as it is written, and only after the
recording's outputs are durable (shards renamed, catalog committed), so the
log never calls a recording done whose output could still be lost.
"""

from __future__ import annotations

import csv
import os
from datetime import datetime, UTC
from pathlib import Path

FIELDS = ["sha256", "outcome", "code", "n_epochs", "finished_at", "path_hash", "relpath"]


class HashLog:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.done: dict[str, str] = {}
        if self.path.exists():
            with open(self.path, newline="") as f:
                for row in csv.DictReader(f):
                    if row.get("sha256"):
                        self.done[row["sha256"]] = row.get("outcome", "")
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._f = open(self.path, "a", newline="")
        self._w = csv.DictWriter(self._f, fieldnames=FIELDS)
        if new:
            self._w.writeheader()
            self._sync()

    def _sync(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())

    def append(self, sha256: str, outcome: str, code: str | None, n_epochs: int, path_hash: str, relpath: str | None) -> None:
        self._w.writerow(dict(sha256=sha256, outcome=outcome, code=code or "", n_epochs=n_epochs,
                              finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
                              path_hash=path_hash, relpath=relpath or ""))
        self._sync()
        self.done[sha256] = outcome

    def close(self) -> None:
        self._f.close()
