"""Typed errors shared by every stage.

Every error carries a machine-readable ``code`` (stored in the catalog as
``recordings.failure_code``) and a human-readable reason, and the file in ``path``.
Errors about the operator's own files (manifests, configs, checkpoints, shards)
name the file in their message. Errors about an archive's recordings
(:class:`ReadError`, :class:`RejectedError`) keep the path apart: their ``str``
and ``repr`` are the reason alone, so one that reaches a log, a Dask worker's
"Compute Failed" line or a traceback names no file (archive file and folder names
hold patient names and IDs in hospitals). Reasons never quote header fields that
can hold identity.
"""

from __future__ import annotations


class EphysError(Exception):
    """Base class of every error ephys raises on purpose."""

    code = "error"
    stage = "ingest"
    #: Whether ``str(exc)`` names the file (not for archive recordings: their paths hold identity).
    path_in_message = True

    def __init__(self, reason: str, path: str | None = None):
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path and self.path_in_message else reason)

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


class OutputLockedError(RunError):
    """Another ``ephys ingest`` holds the output folder's lock."""

    code = "output_locked"


class ConfigMismatchError(RunError):
    """An output folder or catalog was built with other processing settings."""

    code = "config_mismatch"


class ReadError(EphysError):
    """A recording could not be read."""

    code = "read_error"
    stage = "read"
    path_in_message = False


class UnreadableFileError(ReadError):
    """The operating system refused to open or read the file (permissions, I/O)."""

    code = "unreadable"
    stage = "hash"


class SpecialFileError(UnreadableFileError):
    """A member of the recording is not a regular file (FIFO, socket, device): never opened for reading,
    since reading one can block forever or never end."""

    code = "special_file"
    default_reason = "not a regular file (a FIFO, socket or device); never read"


class UnreadableFolderError(UnreadableFileError):
    """A folder of the archive cannot be listed: what it holds is unknown, so it is recorded, not skipped."""

    code = "unreadable_folder"
    stage = "discover"


class ChangedDuringReadError(ReadError):
    """The file changed between hashing and the end of reading (replaced, rewritten or still growing):
    the stored hash would not be the content read. Retried on the next run without ``--retry-failed``."""

    code = "changed_during_read"


class InProgressError(ReadError):
    """The recording says it is still being written (EDF ``number of data records`` -1, file recently
    changed). Retried on the next run without ``--retry-failed``."""

    code = "in_progress"


#: Failure codes that a later run retries by itself: the file was not stable, not bad.
TRANSIENT_CODES = frozenset({ChangedDuringReadError.code, InProgressError.code})


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
    path_in_message = False


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


class ExportError(EphysError):
    """``ephys export``: what the manifest names cannot be exported (named by SHA-256 prefix, never by file)."""

    code = "export_error"
    stage = "export"


class MissingRecordingError(ExportError):
    """A manifest recording is not in the catalog, not in the archive, or its file changed since ingest."""

    code = "missing_recording"


class BIDSLayoutError(ExportError):
    """A recording BIDS (through MNE) cannot express: EEG channels at several rates, a discontinuous recording."""

    code = "bids_layout"


class NoStagingChannelError(RejectedError):
    """A recording has no EEG channel usable for sleep staging.

    A subclass of :class:`~ephys.errors.RejectedError` (code
    ``no_staging_eeg``, stage ``annotate``) so that the reason can be
    recorded like other curation outcomes. It does **not** mean the recording
    must be rejected: the pipeline should catch it, store the epochs as
    unstaged and keep the reason (see :func:`ephys.annotate.staging.stage_reader`, which does that).
    """

    code = "no_staging_eeg"
    stage = "annotate"


class UnknownStagerError(EphysError, ValueError):
    """A sleep-staging backend name that is none of ``gssc``, ``yasa``, ``ensemble``, ``none``; the message lists
    them. Also a ``ValueError``, as before."""

    code = "unknown_stager"
    stage = "annotate"


class StagingBackendUnavailable(ImportError):
    """The optional package a staging backend needs is not installed."""


class ConfigError(EphysError):
    """A run config file is unreadable, not TOML, or fails validation (the message names the field)."""

    code = "config_error"
    stage = "pretrain"


class PretrainError(EphysError):
    """Pretraining, embedding or probing cannot proceed (unreadable checkpoint, non-finite loss, a probe that
    cannot be made); the message names the file."""

    code = "pretrain_error"
    stage = "pretrain"


class CheckpointMismatchError(PretrainError):
    """``out_dir`` or ``--checkpoint`` holds a checkpoint of another manifest or model."""

    code = "checkpoint_mismatch"


class TaxonomyError(EphysError, ValueError):
    """A taxonomy file does not load (not YAML, a missing field, a duplicate keyword, a pattern that does not
    compile...); the message names the file and the category/subcategory. Also a ``ValueError``, as before."""

    code = "taxonomy_error"
    stage = "annotate"


class SiteSecretError(EphysError, ValueError):
    """The site secret file (``EPHYS_SITE_SECRET_FILE`` or ``~/.config/ephys/site-secret``) exists but is empty:
    pseudonyms cannot be made (a new secret is not created over it, which would change every pseudonym)."""

    code = "site_secret"
    stage = "ingest"


class FilterError(EphysError, ValueError):
    """A ``--where`` clause of the filter language does not parse (unknown field or operator, a value of the wrong
    type); the message quotes the clause and lists what is valid. Also a ``ValueError``, as before."""

    code = "filter_error"
    stage = "catalog"

