"""The command line answers at once: help loads no numerical stack, ``catalog stats`` no signal stack.

Each check runs in a fresh interpreter (the test process has long imported everything) and reads
``sys.modules`` after the command: which modules a command loads is behaviour, how fast they load
is a benchmark (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ephys.catalog.db import Catalog
from tests.catalog_helpers import populate

#: Top-level packages whose import costs a second or more together (and torch several).
HEAVY = ("numpy", "scipy", "torch", "mne", "dask", "distributed", "pandas", "matplotlib", "neo", "pyedflib")

_PROBE = r"""
import json, sys
import typer.main
from ephys.cli import _register, app

_register()
root = typer.main.get_command(app)
argvs = json.loads(sys.argv[1])
if argvs == "every --help":
    argvs, stack = [], [((), root)]
    while stack:  # every group and command of the tree
        path, cmd = stack.pop()
        argvs.append([*path, "--help"])
        for name, sub in getattr(cmd, "commands", {}).items():
            stack.append(((*path, name), sub))
codes = []
for argv in argvs:
    try:
        codes.append(root.main(argv, prog_name="ephys", standalone_mode=False) or 0)
    except SystemExit as exc:
        codes.append(exc.code)
print(json.dumps({"argvs": argvs, "codes": codes, "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def _run(argvs) -> dict:
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(argvs)], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_help_of_every_command_loads_no_heavy_module():
    out = _run("every --help")
    names = {" ".join(a[:-1]) for a in out["argvs"]}
    # The walk reached the whole tree (groups and leaves), and every help printed.
    assert {"", "ingest", "quickstart", "catalog", "catalog stats", "catalog verify", "manifest create",
            "pretrain", "report", "embed", "probe", "audit"} <= names
    assert set(out["codes"]) <= {0, None}
    assert sorted(set(out["modules"]) & set(HEAVY)) == []
    assert "sqlalchemy" not in out["modules"] and "alembic" not in out["modules"]


def test_catalog_stats_loads_no_signal_or_training_stack(tmp_path):
    cat = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    populate(cat, tmp_path)
    cat.close()
    out = _run([["catalog", "stats", "--out", str(tmp_path), "--json"]])
    assert out["codes"] == [0]
    assert "sqlalchemy" in out["modules"]  # it did open the catalog
    # A catalog at the current revision is opened without Alembic; no NumPy, SciPy, MNE, Dask or torch.
    assert sorted(set(out["modules"]) & {*HEAVY, "alembic"}) == []


@pytest.mark.parametrize("argv", [["ingest", "/nonexistent-archive", "--montage", "bogus"]])
def test_a_refused_option_fails_before_loading_the_pipeline(argv):
    # A typo costs no seconds of imports: the options are checked first.
    out = _run([argv])
    assert out["codes"] == [2]
    assert sorted(set(out["modules"]) & set(HEAVY)) == []


def test_help_keeps_square_brackets():
    # Rich markup took "[default: ...]" and "ephys[bids]" in help texts for style tags and dropped them.
    from typer.testing import CliRunner

    from ephys.cli import _register, app

    _register()
    r = CliRunner().invoke(app, ["export", "bids", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    assert "pip install 'ephys[bids]'" in r.output and "[default: the packaged one]" in r.output
    r = CliRunner().invoke(app, ["ingest", "--help"], env={"COLUMNS": "200"})
    assert "[default: a local cluster]" in r.output
