"""Progress of a long command: a rich bar on a terminal, plain log lines otherwise.

What a progress display shows is counts and the caller's short text (a loss, a shard name), never
a recording's path: archive file and folder names hold patient names, and a non-interactive run's
stderr goes to files (Slurm, cron). Free of heavy imports; rich loads only on a terminal.
"""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("ephys")


class Progress:
    """``with Progress("verify", total, "shards") as p: ... p.advance()``.

    On a terminal (stderr is a TTY) a rich progress bar; otherwise one INFO line on the ``ephys``
    logger at most every ``every_s`` seconds and one at the end: ``verify: 120/2500 shards (4.8 %),
    31 s, about 10 min left``. ``enabled=False`` shows nothing (other ranks of a distributed run).
    """

    def __init__(self, label: str, total: int | None, unit: str = "", *, every_s: float = 10.0,
                 enabled: bool = True):
        self.label, self.total, self.unit, self.every_s = label, total, unit, every_s
        self.done, self.info = 0, ""
        self.t0 = self.last = time.monotonic()
        self.bar = None
        self.enabled = enabled
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

            self.bar = Bar(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                           TextColumn("{task.fields[info]}"), transient=True)
            self.bar.start()
            self.task = self.bar.add_task(label, total=total, info="")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close(failed=exc[0] is not None)

    def advance(self, n: int = 1, info: str = "") -> None:
        """Count ``n`` more items done; ``info`` (short, identity-free) is shown beside the count."""
        self.done += n
        self.info = info or self.info
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(self.task, advance=n, info=self.info)
            return
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            log.info("%s", self.line())

    def line(self) -> str:
        """The plain line: count, share, elapsed time and an estimate of what is left."""
        elapsed = time.monotonic() - self.t0
        unit = f" {self.unit}" if self.unit else ""
        text = f"{self.label}: {self.done:,}" + (f"/{self.total:,}" if self.total else "") + unit
        if self.total:
            text += f" ({100 * self.done / self.total:.1f} %)"
        text += f", {_duration(elapsed)}"
        if self.total and 0 < self.done < self.total:
            text += f", about {_duration(elapsed / self.done * (self.total - self.done))} left"
        return text + (f"; {self.info}" if self.info else "")

    def close(self, failed: bool = False) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
        elif self.enabled and not failed and self.done:
            log.info("%s", self.line())
        self.enabled = False


def _duration(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


class _StderrHandler(logging.StreamHandler):
    """A stream handler that writes to whatever ``sys.stderr`` is when a line is emitted, not what
    it was when the handler was made (a test runner or a caller may swap stderr, and a handler
    holding a closed stream turns every later line into a "Logging error")."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # noqa: D102
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_logging(level: int = logging.INFO) -> None:
    """Log lines of ephys (only) to stderr with a time stamp; Dask's, Alembic's and bokeh's INFO chatter
    stays quiet. Idempotent."""
    if not log.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(level)
    for noisy in ("distributed", "alembic", "bokeh", "tornado"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
