"""Long commands show progress: plain lines when stderr is not a terminal (logs, Slurm), counts only."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

from ephys.catalog.db import Catalog
from ephys.catalog.queries import catalog_stats
from ephys.progress import Progress
from tests.catalog_helpers import populate


def test_plain_lines_count_share_and_time_left(caplog):
    caplog.set_level(logging.INFO, logger="ephys")
    with Progress("verify", 4, "shards", every_s=0.0) as p:  # a line at every step (pytest's stderr is no TTY)
        for i in range(4):
            p.advance(info=f"shard-{i:06d}.tar")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 5  # four steps and the closing line
    assert lines[0].startswith("verify: 1/4 shards (25.0 %), 0 s, about 0 s left; shard-000000.tar")
    assert lines[-1].startswith("verify: 4/4 shards (100.0 %)") and "left" not in lines[-1]


def test_throttled_disabled_and_failed_show_what_they_should(caplog):
    caplog.set_level(logging.INFO, logger="ephys")
    with Progress("embed", None, "epochs", every_s=3600) as p:
        p.advance(64)
        p.advance(20)
    assert [r.getMessage() for r in caplog.records] == ["embed: 84 epochs, 0 s"]  # no total: no share, no estimate
    caplog.clear()
    with Progress("embed", 10, enabled=False) as p:  # e.g. a rank other than 0
        p.advance(10)
    try:
        with Progress("embed", 10, every_s=3600) as p:
            p.advance(3)
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert caplog.records == []  # nothing from the disabled one; no "done" line after a failure


def test_verify_prints_progress_lines_without_paths(tmp_path):
    cat = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    populate(cat, tmp_path)
    n = catalog_stats(cat)["shards"]["count"]
    cat.close()
    exe = Path(sys.executable).with_name("ephys")
    r = subprocess.run([str(exe), "catalog", "verify", "--out", str(tmp_path)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    (line,) = [ln for ln in r.stderr.splitlines() if " verify: " in ln]
    assert line.split(" INFO ")[1].startswith(f"verify: {n}/{n} shards (100.0 %)")
    assert str(tmp_path) not in r.stderr


def test_report_prints_its_steps_without_paths(tmp_path):
    cat = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    populate(cat, tmp_path)
    cat.close()
    exe = Path(sys.executable).with_name("ephys")
    r = subprocess.run([str(exe), "report", str(tmp_path), "-o", str(tmp_path / "r.html")], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    (line,) = [ln for ln in r.stderr.splitlines() if " report: " in ln]
    assert line.split(" INFO ")[1].startswith("report: 2/2 steps (100.0 %)") and line.endswith("page rendered")
    assert str(tmp_path) not in r.stderr
