"""Outcome of a recording: status and, when not ok, where and why."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel


class RecordingStatus(str, Enum):
    """``ok``: epochs are in shards; ``rejected``: readable but a curation rule
    excludes it (too short, no EEG, insufficient 10-20 coverage, no signal);
    ``failed``: it could not be read or processed (corrupt, unsupported,
    unreadable)."""

    ok = "ok"
    rejected = "rejected"
    failed = "failed"


class Failure(BaseModel):
    """Why a recording is not ``ok``.

    ``stage`` is where it stopped (``hash``, ``read``, ``qc``, ``condition``,
    ``run``); ``code`` the machine-readable reason (``corrupt``, ``too_short``,
    ...); ``reason`` a sentence for people, free of patient identity.
    """

    stage: str
    code: str
    reason: str

    @classmethod
    def from_exception(cls, exc: BaseException, stage: str | None = None) -> Failure:
        from ephys.errors import EphysError

        if isinstance(exc, EphysError):
            return cls(stage=stage or exc.stage, code=exc.code, reason=exc.reason)
        return cls(
            stage=stage or "ingest",
            code="internal_error",
            reason=f"{type(exc).__name__}: {exc}"[:500],
        )
