"""Architecture and identity guards: stage imports flow one way; no header identity in outputs."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from ephys.pipeline.run import ingest
from ephys.schemas import IngestConfig
from tests.ingest_helpers import REAL

PKG = Path(__file__).resolve().parents[1] / "ephys"
ORDER = ["schemas", "ingest", "qc", "annotate", "shard", "catalog", "manifest", "export", "pretrain"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ephys."):
            out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("ephys.")}
    return out


@pytest.mark.parametrize("stage", ORDER)
def test_stages_import_only_earlier_stages(stage):
    common = {"errors", "progress", "digest"}  # error types, progress display and SHA-256 belong to no stage
    allowed = set(ORDER[: ORDER.index(stage) + 1]) | common
    if stage == "pretrain":
        allowed = {"schemas", "shard", "pretrain"} | common  # manifests and shards only, never readers
    for f in (PKG / stage).rglob("*.py"):
        if f.name == "__main__.py":  # `python -m ephys.pretrain` (for torchrun) is CLI glue, not stage code
            assert _imports(f) <= allowed | {"cli"}
            continue
        bad = _imports(f) - allowed
        assert not bad, f"{f.relative_to(PKG)} imports later stages {sorted(bad)}"


def test_phi_from_headers_never_reaches_outputs(tmp_path):
    """Identity fields of the real files' headers (names, birth date, IDs) appear nowhere in OUT."""
    if not REAL.exists():
        pytest.skip("../shared/data/real is not present")
    planted = [b"28/03/1957", b"2003-1085-508", b"DatabaseSpindles", b"Female_33yr", b"OPSA614", b"No_Name"]
    out = tmp_path / "out"
    ingest(REAL, out, config=IngestConfig(montage="native", min_epochs=1), workers=1)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.suffix == ".tar" for p in files) and any(p.name == "catalog.sqlite" for p in files)
    for p in files:
        data = p.read_bytes()
        for token in planted:
            assert token not in data, f"{token!r} leaked into {p.relative_to(out)}"
        assert not re.search(rb"shared/data/real|excerpt3\.edf|S001R03", data), f"a source path leaked into {p.name}"


def test_only_the_montage_module_knows_the_montages():
    """Stages own their rules (issue #21): no code outside ``ephys/ingest/montage.py`` branches on a montage name
    (the CLI and the config only list the names users may choose)."""
    allowed = {PKG / "ingest" / "montage.py", PKG / "schemas" / "config.py", PKG / "cli" / "ingest.py"}
    offenders = []
    for f in PKG.rglob("*.py"):
        if f in allowed:
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Compare) and any(
                isinstance(c, ast.Constant) and c.value in ("native", "regional8") for c in [node.left, *node.comparators]
            ):
                offenders.append(f"{f.relative_to(PKG)}:{node.lineno}")
    assert not offenders, offenders
