"""Spool files: worker outputs (``OUT/.spool/<sha256>.npy`` epochs, ``<sha256>.qc.npy`` QC figures) written
block by block to a ``.tmp`` file, fsynced and renamed into place, for the driver to pack."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ephys.errors import OutputError


class Target(NamedTuple):
    """Where a block task writes its epochs: the spool ``.tmp`` file, the byte offset of row 0,
    the bytes of one row (one epoch)."""

    path: str
    offset: int
    row_bytes: int


def write_rows(target: Target, first_row: int, rows: np.ndarray) -> None:
    """Write ``rows`` at rows ``first_row...`` of the spool file and fsync them.

    Raises
    ------
    OutputError
        On any OS error (a full disk names the bytes needed).
    """
    try:
        with open(target.path, "r+b") as f:
            f.seek(target.offset + first_row * target.row_bytes)
            f.write(np.ascontiguousarray(rows).tobytes())
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise spool_error(exc, Path(target.path).parent, len(rows) * target.row_bytes) from None


def spool_error(exc: OSError, folder: Path, nbytes: int) -> OutputError:
    reason = exc.strerror or str(exc)
    try:
        if shutil.disk_usage(folder).free < nbytes + (1 << 20):
            reason = f"No space left on device ({nbytes:,} bytes to write)"
    except OSError:
        pass
    return OutputError(f"cannot write spool file in {folder}: {reason}")


class SpoolArray:
    """A spool file (``.npy``, ``dtype``, ``shape``) written block by block along the first axis.

    A ``.tmp`` file takes the header and then each block in order; :meth:`commit` fsyncs it and
    renames it into place. Leaving the ``with`` block without :meth:`commit` deletes it.

    Raises
    ------
    OutputError
        On any OS error while writing (a full disk names the bytes needed).
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype=np.float16):
        self.path, self.shape, self.dtype = path, tuple(shape), np.dtype(dtype)
        self.tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        self.nbytes = int(np.prod(shape)) * self.dtype.itemsize
        self.row_bytes = int(np.prod(shape[1:])) * self.dtype.itemsize
        self.written = 0
        try:
            self._f = open(self.tmp, "wb")
            np.lib.format.write_array_header_1_0(self._f, {"descr": self.dtype.str, "fortran_order": False,
                                                           "shape": self.shape})
            self.offset = self._f.tell()
        except OSError as exc:
            self.tmp.unlink(missing_ok=True)
            raise spool_error(exc, path.parent, self.nbytes) from None

    def reserve(self) -> Target:
        """Size the file for every row and hand the rows to :func:`condition_part` calls, which write
        them at their offsets (from any process that sees this file). Call instead of :meth:`write`."""
        try:
            self._f.truncate(self.offset + self.nbytes)
            self._f.flush()
        except OSError as exc:
            raise spool_error(exc, self.path.parent, self.nbytes) from None
        self.written = self.shape[0]
        return Target(str(self.tmp), self.offset, self.row_bytes)

    def write(self, block: np.ndarray) -> None:
        if block.shape[1:] != self.shape[1:] or self.written + len(block) > self.shape[0]:
            raise ValueError(f"block of shape {block.shape} does not fit {self.shape} after {self.written} rows")
        try:
            self._f.write(np.ascontiguousarray(block, dtype=self.dtype).tobytes())
        except OSError as exc:
            raise spool_error(exc, self.path.parent, self.nbytes) from None
        self.written += len(block)

    def commit(self) -> None:
        if self.written != self.shape[0]:
            raise ValueError(f"{self.written} of {self.shape[0]} rows written")
        try:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            os.replace(self.tmp, self.path)
        except OSError as exc:
            raise spool_error(exc, self.path.parent, self.nbytes) from None

    def __enter__(self) -> SpoolArray:
        return self

    def __exit__(self, *exc) -> None:
        self._f.close()
        self.tmp.unlink(missing_ok=True)


def spool_array(path: Path, array: np.ndarray) -> None:
    """Write a whole array durably (tmp, fsync, rename); see :class:`SpoolArray`."""
    with SpoolArray(path, array.shape, array.dtype) as out:
        out.write(array)
        out.commit()
