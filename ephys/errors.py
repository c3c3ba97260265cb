"""Typed errors shared by every stage.

Every error carries a machine-readable ``code`` (stored in the catalog as
``recordings.failure_code``) and a human-readable reason.  Messages name the
file by the path the user gave (relative to the archive where possible) and
never quote header fields that can hold patient identity.
"""

from __future__ import annotations


class EphysError(Exception):
    """Base class of every error ephys raises on purpose."""

    code = "error"
    stage = "ingest"

    def __init__(self, reason: str, path: str | None = None):
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path else reason)

    def __reduce__(self):
        # Pickle (Dask returns a block task's error to its recording task) keeps reason and path apart.
        return (self.__class__, (self.reason, self.path))


class RunError(EphysError):
    """The run itself cannot proceed (missing archive, unreachable catalog...)."""

    code = "run_error"
    stage = "run"


class OutputError(RunError):
    """The output storage failed (disk full, read-only, quota): stop the run, keep what is committed."""

    code = "output_error"


class ConfigMismatchError(RunError):
    """An output folder or catalog was built with other processing settings."""

    code = "config_mismatch"


class ReadError(EphysError):
    """A recording could not be read."""

    code = "read_error"
    stage = "read"


class UnreadableFileError(ReadError):
    """The operating system refused to open or read the file (permissions, I/O)."""

    code = "unreadable"
    stage = "hash"


class EmptyFileError(ReadError):
    code = "empty_file"


class WrongMagicError(ReadError):
    """The content does not match the format its extension claims."""

    code = "wrong_magic"


class CorruptFileError(ReadError):
    """Header fields are inconsistent or the file size does not match the header."""

    code = "corrupt"


class UnsupportedFormatError(ReadError):
    """The format was recognised but ephys has no reader for it yet."""

    code = "unsupported_format"


class RejectedError(EphysError):
    """A readable recording that a curation rule rejects (not a failure of ephys)."""

    code = "rejected"
    stage = "qc"


class NoSignalError(RejectedError):
    code = "no_signal"
    stage = "read"


class NoEEGError(RejectedError):
    code = "no_eeg_channels"


class InsufficientCoverageError(RejectedError):
    code = "insufficient_coverage"


class NoUsableChannelsError(RejectedError):
    """Every EEG channel is bad (flat, noisy or uncorrelated with its neighbours)."""

    code = "no_usable_channels"


class TooShortError(RejectedError):
    code = "too_short"


class ManifestError(EphysError):
    code = "manifest_error"
    stage = "manifest"
