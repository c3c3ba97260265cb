"""Outputs recorded once, compared on every run (issue #21: a refactor must leave shards, catalog rows and manifests
byte-identical on ../shared/data/real and the tiled clinical archive).

Two ingests with a fixed site secret: the quickstart's archive (six clinical-like recordings tiled from real EEG
beside a copy of ../shared/data/real) in the default regional8 montage, and the same real recordings in the native
montage. Recorded: every shard's SHA-256, a SHA-256 per catalog table of its rows (ids replaced by natural keys:
recording SHA-256, shard name; timestamps, timings and output paths left out) and the manifest content hash of
``valid = true``. They depend on floating-point results (filters, resampling), which differ with the CPU's vector
units and the BLAS kernels chosen for them (two VMs both named "AMD EPYC", one with AVX-512 and OpenBLAS's SkylakeX
kernels, give different float32 rounding), so the figures are kept per machine (:func:`_machine`: CPU model,
OpenBLAS kernel set, widest vector extension) and the test is skipped, saying so, on a machine with none recorded.

Record this machine's figures (the others are kept), only at a commit whose output is known to be the same as the
recorded one (or when the output is meant to change, then say why in the commit): ``python -m
tests.test_golden_outputs``."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "data" / "golden_outputs.json"
SECRET = "golden-outputs-test-secret"
#: Columns whose values are times, timings, paths or row ids (replaced by natural keys below).
VOLATILE = {"id", "processed_at", "seconds_json", "run_id", "created_at", "started_at", "finished_at", "wall_s",
            "recording_id", "shard_id", "config_json"}


def _cpuinfo(*fields: str) -> str | None:
    """The value of the first ``/proc/cpuinfo`` line starting with one of ``fields`` (None: none, or no such file)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(fields):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _machine() -> str:
    """What the floating-point results depend on: the CPU model, the OpenBLAS kernel set NumPy and SciPy chose
    (threadpoolctl) and the widest x86 vector extension the CPU has."""
    import numpy  # noqa: F401 - loads the BLAS that threadpoolctl reports
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_info

    kernels = sorted({i.get("architecture") or "?" for i in threadpool_info() if i.get("internal_api") == "openblas"})
    cpu = _cpuinfo("model name", "Model") or platform.processor() or platform.machine()
    flags = set((_cpuinfo("flags") or "").split())
    simd = next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), platform.machine())
    return f"{cpu}; OpenBLAS {'/'.join(kernels) or 'none'}; {simd}"


def _catalog_digests(url: str) -> dict[str, str]:
    from sqlalchemy import create_engine, inspect, text

    eng = create_engine(url)
    try:
        with eng.connect() as c:
            rec = dict(c.execute(text("SELECT id, sha256 FROM recordings")).fetchall())
            shard = dict(c.execute(text("SELECT id, name FROM shards")).fetchall())
            out = {}
            for table in sorted(inspect(eng).get_table_names()):
                cols = [x["name"] for x in inspect(eng).get_columns(table)]
                rows = []
                for r in c.execute(text(f"SELECT * FROM {table}")).fetchall():  # noqa: S608 - table names from the schema
                    d = dict(zip(cols, r))
                    if table == "meta" and d["key"] == "shards_root":
                        continue
                    keyed = {k: v for k, v in d.items() if k not in VOLATILE}
                    if "recording_id" in d:
                        keyed["recording"] = rec.get(d["recording_id"])
                    if "shard_id" in d:
                        keyed["shard"] = shard.get(d["shard_id"])
                    rows.append(json.dumps(keyed, sort_keys=True, default=str))
                out[table] = hashlib.sha256("\n".join(sorted(rows)).encode()).hexdigest()
            return out
    finally:
        eng.dispose()


def _ingest(archive: Path, out: Path, montage: str, manifest: Path | None) -> dict:
    from ephys.manifest.create import create_manifest
    from ephys.pipeline.run import ingest
    from ephys.schemas import IngestConfig

    ingest(archive, out, config=IngestConfig(montage=montage), workers=1)
    url = f"sqlite:///{out / 'catalog.sqlite'}"
    result = dict(shards={p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / "shards").glob("*.tar"))},
                  catalog=_catalog_digests(url))
    if manifest is not None:
        result["manifest"] = create_manifest(url, ["valid = true"], manifest).content_hash
    return result


def outputs(root: Path) -> dict:
    """The recorded figures of the two ingests, run under ``root`` (module docstring)."""
    from ephys.quickstart import build_archive
    from tests.ingest_helpers import REAL

    old = os.environ.get("EPHYS_SITE_SECRET")
    os.environ["EPHYS_SITE_SECRET"] = SECRET
    try:
        archive, _ = build_archive(root / "archive", REAL)
        return dict(regional8=_ingest(archive, root / "out-regional8", "regional8", root / "m.json"),
                    native=_ingest(archive / "real", root / "out-native", "native", None))
    finally:
        if old is None:
            os.environ.pop("EPHYS_SITE_SECRET", None)
        else:
            os.environ["EPHYS_SITE_SECRET"] = old


def test_outputs_are_the_recorded_ones(tmp_path):
    from tests.ingest_helpers import REAL

    if not REAL.exists():
        pytest.skip("../shared/data/real is not present")
    machines = json.loads(GOLDEN.read_text())["machines"]
    here = _machine()
    if here not in machines:
        pytest.skip(f"no golden outputs recorded on {here!r} (only on {sorted(machines)}): floating-point kernels "
                    "differ; record them with `python -m tests.test_golden_outputs` on this machine before a refactor")
    want = machines[here]
    got = outputs(tmp_path)
    for run in ("regional8", "native"):
        assert got[run]["shards"] == want[run]["shards"], f"{run}: shard bytes changed"
        changed = sorted(t for t in want[run]["catalog"] if got[run]["catalog"].get(t) != want[run]["catalog"][t])
        assert not changed and set(got[run]["catalog"]) == set(want[run]["catalog"]), f"{run}: catalog tables {changed}"
    assert got["regional8"]["manifest"] == want["regional8"]["manifest"], "manifest content hash changed"


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        figures = outputs(Path(d))
    machines = json.loads(GOLDEN.read_text()).get("machines", {}) if GOLDEN.exists() else {}
    machines[_machine()] = figures
    GOLDEN.write_text(json.dumps({"machines": machines}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN} for {_machine()!r}: {sum(len(figures[r]['shards']) for r in ('regional8', 'native'))} shards")
