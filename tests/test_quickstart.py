"""``ephys quickstart`` walks the whole product on a fresh folder and ends with a non-empty corpus.

Run as a user runs it (the installed ``ephys`` script, not a terminal), on the real recordings of
``../shared/data/real``. The expected outcomes of those recordings are the ones their README states
(too short, bipolar only, damaged); the tiled files are six 19-electrode recordings in four formats.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ephys.catalog.queries import catalog_stats, query_recordings
from ephys.manifest import show_manifest
from ephys.quickstart import find_real

REAL = find_real()
pytestmark = pytest.mark.skipif(REAL is None, reason="the real recordings (shared/data/real) are not here")


def _ephys(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("ephys")
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "ephys"]
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=600, cwd=cwd)


@pytest.fixture(scope="module")
def walked(tmp_path_factory):
    base = tmp_path_factory.mktemp("quickstart")
    out = base / "qs"
    first = _ephys("quickstart", "--out", str(out), "--workers", "2", cwd=base)
    assert first.returncode == 0, first.stderr[-3000:]
    return out, first


def test_quickstart_builds_a_corpus_and_walks_every_stage(walked):
    out, run = walked
    lines = run.stdout.splitlines()
    assert [ln[:5] for ln in lines if ln.startswith("[")] == [f"[{i}/7]" for i in range(1, 8)]

    url = f"sqlite:///{(out / 'corpus' / 'catalog.sqlite').resolve()}"
    st = catalog_stats(url)
    # 6 tiled recordings ok; the real ones as their README says: the damaged EDF corrupt, the short
    # ones too short, the bipolar/sparse ones without regional8 coverage, the hypnogram without signal.
    assert st["recordings"] == {"total": 16, "ok": 6, "rejected": 9, "failed": 1}
    assert st["failure_codes"] == {"failed": {"corrupt": 1},
                                   "rejected": {"insufficient_coverage": 4, "no_signal": 1, "too_short": 4}}
    ok = query_recordings(url, ["status = ok"])
    assert sorted(r["format"] for r in ok) == ["bdf+c", "edf+c", "edf+c", "edf+c", "micromed_trc", "nicolet_e"]
    assert st["subjects"]["ok"] == 6 and st["epochs"]["total"] == 5 * 12 + 24  # five 6-min files, one 12-min
    assert st["annotations"] > 0
    # The clinical archive's seizure list attaches; the real folder's CHB-MIT and Siena lists name files not there.
    assert st["sidecars"] == {"files": 3, "entries": 11, "attached": 1} and st["annotations_from_sidecars"] == 1
    assert "annotation sidecars: 3 (11 entries: 1 attached to 1 recordings, 0 of them clipped)" in run.stdout

    info = show_manifest(out / "manifest.json")
    assert info["counts"]["epochs"] == st["epochs"]["valid"] and info["missing_shards"] == 0
    metrics = [json.loads(line) for line in (out / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m][-1] == 40
    assert (out / "pretrain" / "checkpoint.pt").stat().st_size > 0
    probe = next(ln for ln in lines if ln.startswith("[6/7]"))
    assert "probe of 'category'" in probe and "random init" in probe
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<html" in html.lower() and "corrupt" in html
    assert any(ln.strip().startswith("ephys catalog query") for ln in lines)  # next steps printed


def test_quickstart_console_names_no_recording(walked):
    # Not a terminal: recordings appear by SHA-256 prefix only, never by a file or folder name.
    out, run = walked
    text = run.stdout + run.stderr
    archive = out / "archive"
    names = {p.stem for p in archive.rglob("*") if p.is_file()} | {p.name for p in archive.rglob("*") if p.is_dir()}
    names -= {"clinical", "real"}  # the quickstart's own folders, printed on purpose
    assert names and not [n for n in names if n in text]


def test_quickstart_again_reuses_what_is_there(walked):
    out, _ = walked
    again = _ephys("quickstart", "--out", str(out), "--workers", "1", cwd=out.parent)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 ok, 0 rejected, 0 failed, 16 skipped (done before)" in again.stdout
    assert "already at step 40" in again.stdout
