"""ruff, as configured in pyproject.toml ([tool.ruff]), finds nothing in the package, the tests and the benchmarks.

ruff is pinned in the test extra, so a new ruff release cannot turn CI red with rules the project never chose."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_is_clean():
    pytest.importorskip("ruff")
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "ephys", "tests", "benchmarks"],
                       cwd=ROOT, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
