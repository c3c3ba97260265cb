"""A new output folder that either appears whole or not at all (the exports' temp-folder-then-rename)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ephys.errors import OutputError


def refuse_existing(out: Path) -> None:
    """Raise OutputError when ``out`` exists (an export never writes into or over an existing folder)."""
    if out.exists():
        raise OutputError(f"{out} exists: export into a new folder")


@contextmanager
def new_folder(out: Path, what: str) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``out`` (``.<name>.tmp<pid>``); when the block ends without an
    error it is renamed to ``out`` (:func:`os.replace`, atomic on one file system), otherwise removed.

    Raises
    ------
    OutputError
        ``out`` exists, or an OSError in the block (disk full, read-only, permissions), naming ``what``.
    """
    refuse_existing(out)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        yield tmp
        os.replace(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"cannot write {what} to {out}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
