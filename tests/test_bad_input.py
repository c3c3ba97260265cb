"""Bad input: each case gets its own clear reason, the run completes, nothing is half-written."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from ephys.cli import _register, app
from ephys.errors import RunError
from ephys.pipeline.run import ingest
from ephys.schemas import IngestConfig
from tests.ingest_helpers import REAL, real, rows_by_sha, sha

_register()
runner = CliRunner()


@pytest.fixture(scope="module")
def bad_archive(tmp_path_factory):
    a = tmp_path_factory.mktemp("bad")
    good = real("sleep-edf/short_psg.edf").read_bytes()
    (a / "good.edf").write_bytes(good)
    (a / "zero.edf").write_bytes(b"")
    (a / "truncated.edf").write_bytes(good[: len(good) // 2])
    (a / "header-only-part.edf").write_bytes(good[:200])
    (a / "text.edf").write_text("patient notes, not a recording\n")
    (a / "sub").mkdir()
    (a / "sub" / "copy-of-good.edf").write_bytes(good)  # same content under two paths
    (a / "readme.txt").write_text("ignored")
    (a / "loop").symlink_to(a, target_is_directory=True)  # a symlink loop must not hang discovery
    out = tmp_path_factory.mktemp("bad-out")
    (out / ".staging").mkdir()  # an earlier version's spool folder, with a half-written file
    (out / ".staging" / "0123.npy.tmp").write_bytes(b"half")
    s = ingest(a, out, config=IngestConfig(montage="native"), workers=1)
    return a, out, s


def test_each_bad_file_has_its_reason(bad_archive):
    a, out, s = bad_archive
    rows = rows_by_sha(f"sqlite:///{out / 'catalog.sqlite'}")
    codes = {r.failure_code for r in rows.values()}
    by = lambda name: rows[sha(a / name)]  # noqa: E731
    assert by("good.edf").status == "ok" and by("good.edf").n_epochs == 10
    assert (by("zero.edf").failure_code, by("zero.edf").failure_reason) == ("empty_file", "file is empty (0 bytes)")
    assert by("truncated.edf").failure_code == "corrupt"
    assert "does not match its header" in by("truncated.edf").failure_reason
    assert by("header-only-part.edf").failure_code == "corrupt"
    assert "truncated header" in by("header-only-part.edf").failure_reason
    assert by("text.edf").failure_code == "wrong_magic"
    assert "not an EDF/BDF file" in by("text.edf").failure_reason
    assert codes == {None, "empty_file", "corrupt", "wrong_magic"}
    assert (s.n_ok, s.n_failed, s.n_duplicates, s.n_ignored) == (1, 4, 1, 1)


def test_nothing_half_written(bad_archive):
    _, out, _ = bad_archive
    assert [p.name for p in (out / "shards").iterdir()] == ["shard-000000.tar"]
    assert not list((out / ".spool").iterdir())
    assert not (out / ".staging").exists()  # an earlier version's spool folder is removed
    assert not list(out.rglob("*.tmp"))


def test_failures_are_not_retried_unless_asked(bad_archive):
    a, out, _ = bad_archive
    s = ingest(a, out, config=IngestConfig(montage="native"), workers=1)
    assert (s.n_skipped, s.n_failed, s.n_ok) == (5, 0, 0)
    s = ingest(a, out, config=IngestConfig(montage="native"), workers=1, retry_failed=True)
    assert (s.n_skipped, s.n_failed, s.n_ok) == (1, 4, 0)


def test_missing_archive_exit_code(tmp_path):
    with pytest.raises(RunError, match="does not exist"):
        ingest(tmp_path / "nope", tmp_path / "out")
    r = runner.invoke(app, ["ingest", str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    assert r.exit_code == 2 and "does not exist" in r.output
    assert not (tmp_path / "out").exists()


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    r = runner.invoke(app, ["ingest", str(tmp_path / "empty"), "--out", str(tmp_path / "out"), "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert "no recordings found" in r.output
    assert not list((tmp_path / "out" / "shards").iterdir())


def test_unreachable_catalog(tmp_path):
    (tmp_path / "a").mkdir()
    r = runner.invoke(app, ["ingest", str(tmp_path / "a"), "--out", str(tmp_path / "out"),
                            "--catalog", "postgresql+psycopg://nobody@127.0.0.1:1/none"])
    assert r.exit_code == 2 and "unreachable" in r.output


def test_force_rebuilds(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    shutil.copy(real("sleep-edf/short_psg.edf"), a / "x.edf")
    out = tmp_path / "out"
    first = ingest(a, out, config=IngestConfig(montage="native"), workers=1)
    again = ingest(a, out, config=IngestConfig(montage="native", min_epochs=2), workers=1, force=True)
    assert (first.n_ok, again.n_ok, again.n_skipped) == (1, 1, 0)
    assert [p.name for p in (out / "shards").iterdir()] == ["shard-000000.tar"]


def _without_read_override() -> list[str]:
    """A command prefix under which file permissions apply even to root."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without util-linux setpriv: cannot make a file unreadable")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


def test_unreadable_file_is_recorded(tmp_path):
    a, out = tmp_path / "archive", tmp_path / "out"
    a.mkdir()
    f = a / "locked.edf"
    f.write_bytes(real("sleep-edf/short_psg.edf").read_bytes())
    shutil.copy(real("sleep-edf/short_psg.bdf"), a / "fine.bdf")
    f.chmod(0o000)
    try:
        cmd = _without_read_override() + [sys.executable, "-m", "ephys", "ingest", str(a), "--out", str(out),
                                          "--montage", "native", "--workers", "1"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    finally:
        f.chmod(0o644)
    assert r.returncode == 0, r.stderr
    rows = rows_by_sha(f"sqlite:///{out / 'catalog.sqlite'}")
    bad = [x for x in rows.values() if x.status == "failed"]
    assert len(rows) == 2 and len(bad) == 1
    assert (bad[0].failure_stage, bad[0].failure_code) == ("hash", "unreadable")
    assert "Permission denied" in bad[0].failure_reason
    assert bad[0].sha256[:12] in r.stdout  # named by its (keyed) hash prefix, never by path
    assert "locked" not in r.stdout + r.stderr


def test_real_archive_present_for_e2e():
    assert REAL.exists(), "the end-to-end tests need ../shared/data/real"
