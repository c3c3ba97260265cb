"""A hostile archive (issue #15): identity in folder and file names, names that are not UTF-8,
special files, a BrainVision header naming /dev/zero, truncated BrainVision and FIF data, a
recording still being written, a file changed after hashing, a second ingest on one output.

Nothing may reach the console, the catalog or the hash log by path; every bad file gets its
typed code; ``ephys audit`` finds nothing in the output and does find a planted leak.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3

import mne
import numpy as np
import pytest
from typer.testing import CliRunner

from ephys.catalog.db import Catalog
from ephys.cli import _register, app
from ephys.errors import ChangedDuringReadError, OutputLockedError, SpecialFileError
from ephys.ingest.discover import discover
from ephys.ingest.hashing import check_unchanged, hash_recording
from ephys.ingest.identity import path_hash, redact
from ephys.pipeline.lock import OutputLock
from ephys.pipeline.run import ingest
from ephys.schemas import IngestConfig
from ephys.ingest.writers.edf import write_edf
from tests.ingest_helpers import rows_by_sha, sha
from tests.test_formats_ingest import write_brainvision

RATE = 256
LABELS = ["Fp1", "Fp2", "C3", "C4"]
PERSON = "Zwetschgenbaum_Mechthild_1971"  # the folder, as hospitals name them
TOKENS = ["Zwetschgenbaum", "Mechthild"]


def _x(seconds: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 20, (len(LABELS), RATE * seconds))


def _edf(path, seconds=65, seed=0, patient="X X X X"):
    write_edf(path, list(_x(seconds, seed)), [f"EEG {c}" for c in LABELS], [RATE] * len(LABELS), patient=patient)


def _hostile(root):
    person = root / PERSON
    person.mkdir(parents=True)
    _edf(person / "Zwetschgenbaum_Mechthild.edf", patient="PID4471982 F 17-MAR-1961 Zwetschgenbaum_Mechthild")
    # BrainVision: data truncated mid-sample; a header whose data file is /dev/zero; a missing data file
    write_brainvision(person, "Mechthild_trunc", _x(65, 1), LABELS, RATE, [])
    eeg = person / "Mechthild_trunc.eeg"
    eeg.write_bytes(eeg.read_bytes()[: eeg.stat().st_size // 2 + 3])
    write_brainvision(person, "Mechthild_zero", _x(35, 2), LABELS, RATE, [])
    vhdr = person / "Mechthild_zero.vhdr"
    vhdr.write_text(vhdr.read_text(encoding="utf-8").replace("DataFile=Mechthild_zero.eeg", "DataFile=/dev/zero"), encoding="utf-8")
    write_brainvision(person, "Mechthild_nodata", _x(35, 3), LABELS, RATE, [])
    (person / "Mechthild_nodata.eeg").unlink()
    # FIF truncated in its data
    info = mne.create_info(LABELS, RATE, "eeg")
    mne.io.RawArray(_x(65, 4) * 1e-6, info, verbose="error").save(person / "Mechthild_raw.fif", verbose="error")
    fif = person / "Mechthild_raw.fif"
    fif.write_bytes(fif.read_bytes()[: fif.stat().st_size // 2])
    # a FIFO with an EEG extension, and a file name that is not valid UTF-8 (Latin-1 "ä")
    os.mkfifo(person / "Mechthild_live.edf")
    _edf(os.fsdecode(bytes(root / PERSON) + b"/Qu\xe4xelbr\xf6t.edf"), seed=5)
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    archive = _hostile(root / "archive")
    out = root / "out"
    _register()
    r = CliRunner().invoke(app, ["ingest", str(archive), "--out", str(out), "--workers", "1", "--montage", "native",
                                 "--min-epochs", "1", "--task-timeout", "120", "--show-paths"])
    return archive, out, r


def test_every_hostile_file_gets_its_code(run):
    archive, out, r = run
    assert r.exit_code == 0, r.output
    rows = rows_by_sha(f"sqlite:///{out / 'catalog.sqlite'}")
    codes = sorted((x.status, x.failure_code or "") for x in rows.values())
    assert codes == sorted([("ok", ""), ("ok", ""), ("failed", "corrupt"), ("failed", "corrupt"), ("failed", "corrupt"),
                            ("failed", "special_file"), ("failed", "special_file")]), codes
    person = archive / PERSON
    assert rows[sha(person / "Zwetschgenbaum_Mechthild.edf")].status == "ok"
    assert rows[sha(os.fsdecode(bytes(person) + b"/Qu\xe4xelbr\xf6t.edf"))].status == "ok"  # the non-UTF-8 name is ingested
    assert "1 special files" in r.stdout


def test_no_path_in_console_catalog_or_hash_log(run):
    archive, out, r = run
    # --show-paths is refused off a terminal (CliRunner is not one): recordings are named by hash prefix.
    assert "--show-paths ignored" in r.output
    texts = {"console": r.output, "hash log": (out / "hashlog.csv").read_text()}
    con = sqlite3.connect(out / "catalog.sqlite")
    for table in ("recordings", "recording_paths", "runs", "annotations"):
        texts[table] = repr(con.execute(f"SELECT * FROM {table}").fetchall())
    con.close()
    for where, text in texts.items():
        for token in TOKENS + [str(archive)]:
            assert token.lower() not in text.lower(), f"{token!r} in {where}"
    good = sha(archive / PERSON / "Zwetschgenbaum_Mechthild.edf")
    assert good[:12] in r.output  # named by its hash prefix instead
    # Path hashes are keyed: the plain SHA-256 of the path confirms nothing.
    rel = f"{PERSON}/Zwetschgenbaum_Mechthild.edf"
    assert hashlib.sha256(rel.encode()).hexdigest() not in texts["recording_paths"] + texts["hash log"]
    assert path_hash(os.environ["EPHYS_SITE_SECRET"].encode(), rel) in texts["recording_paths"]


def test_audit_finds_nothing_then_finds_a_planted_leak(run, tmp_path):
    archive, out, _ = run
    runner = CliRunner()
    r = runner.invoke(app, ["audit", str(out), "--archive", str(archive)])
    assert r.exit_code == 0, r.output
    assert "OK: no identity found" in r.stdout
    leaky = tmp_path / "leaky"
    shutil.copytree(out, leaky)
    (leaky / "worker.log").write_text("2026-12-01 INFO processing Zwetschgenbaum_Mechthild.edf\n", encoding="utf-16-le")
    r = runner.invoke(app, ["audit", str(leaky), "--archive", str(archive), "--json"])
    assert r.exit_code == 1
    hits = json.loads(r.stdout)["hits"]
    assert set(hits) == {"name", "path"} and set(hits["name"]) == {"logs"}  # only the planted log, as names and path parts
    assert all(t.lower() not in r.stdout.lower() for t in TOKENS)  # counts, never the tokens


def test_locate_finds_the_file_behind_a_prefix(run):
    archive, out, _ = run
    good = sha(archive / PERSON / "Zwetschgenbaum_Mechthild.edf")
    runner = CliRunner()
    r = runner.invoke(app, ["catalog", "locate", good[:12], "--archive", str(archive), "--out", str(out)])
    assert r.exit_code == 2 and "not a terminal" in r.output  # paths only to a terminal by default
    r = runner.invoke(app, ["catalog", "locate", good[:12], "--archive", str(archive), "--out", str(out), "--to-pipe"])
    assert r.exit_code == 0 and f"{PERSON}/Zwetschgenbaum_Mechthild.edf" in r.stdout


def test_second_ingest_on_one_output_is_refused(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    _edf(a / "r.edf")
    out = tmp_path / "out"
    out.mkdir()
    with OutputLock(out):
        with pytest.raises(OutputLockedError, match=f"pid {os.getpid()}"):
            ingest(a, out, config=IngestConfig(montage="native", min_epochs=1), workers=1)
        r = CliRunner().invoke(app, ["ingest", str(a), "--out", str(out), "--workers", "1"])
        assert r.exit_code == 2 and "in use by another ephys ingest" in r.output
    assert not list(out.glob("shards/*.tar"))
    s = ingest(a, out, config=IngestConfig(montage="native", min_epochs=1), workers=1)  # released: runs
    assert s.n_ok == 1


def test_special_files_are_never_read(tmp_path):
    fifo = tmp_path / "live.edf"
    os.mkfifo(fifo)
    for path in (str(fifo), "/dev/zero"):
        with pytest.raises(SpecialFileError):
            hash_recording([path])  # returns at once: neither blocks on the FIFO nor reads /dev/zero forever
    found = discover(tmp_path)
    assert (found.n_special, [r.failure.code for r in found.recordings]) == (1, ["special_file"])


def test_a_file_changed_after_hashing_is_not_ingested_under_the_old_hash(tmp_path):
    p = tmp_path / "r.edf"
    _edf(p, seed=1)
    fps: list = []
    sha_before, _ = hash_recording([str(p)], fingerprints=fps)
    check_unchanged([str(p)], fps)  # unchanged: no error
    data = bytearray(p.read_bytes())
    data[-2:] = b"\x01\x02"  # same size, other content
    p.write_bytes(bytes(data))
    with pytest.raises(ChangedDuringReadError):
        check_unchanged([str(p)], fps)
    from ephys.pipeline.task import process_recording

    r = process_recording(str(p), "edf", sha_before, p.stat().st_size, IngestConfig(montage="native", min_epochs=1),
                          str(tmp_path), b"secret", files=[str(p)], fingerprints=fps)
    assert (r.status.value, r.failure.code) == ("failed", "changed_during_read")
    assert not list(tmp_path.glob("*.npy"))


def test_a_recording_in_progress_waits_then_ingests_once(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    p = a / "live.edf"
    _edf(p)
    b = bytearray(p.read_bytes())
    b[236:244] = b"-1      "  # EDF: number of data records unknown while recording
    p.write_bytes(bytes(b))
    out, cfg = tmp_path / "out", IngestConfig(montage="native", min_epochs=1)
    s = ingest(a, out, config=cfg, workers=1)
    assert (s.n_ok, s.n_failed) == (0, 1) and s.outcomes[0][1] == "in_progress"
    old = p.stat().st_mtime - 3600
    os.utime(p, (old, old))  # the writer stopped an hour ago
    s = ingest(a, out, config=cfg, workers=1)  # no --retry-failed: in_progress is retried by itself
    assert (s.n_ok, s.n_failed, s.n_skipped) == (1, 0, 0)
    s = ingest(a, out, config=cfg, workers=1)
    assert (s.n_ok, s.n_skipped) == (0, 1)  # and only once
    c = Catalog(f"sqlite:///{out / 'catalog.sqlite'}")
    assert c.recording_states()[sha(p)][0] == "ok"
    c.close()


def test_unreadable_folder_is_recorded(tmp_path, monkeypatch):
    a = tmp_path / "a"
    (a / "Name_Locked").mkdir(parents=True)
    _edf(a / "ok.edf")
    real_scandir = os.scandir

    def scandir(path="."):  # the OS refusing to list one folder (root bypasses chmod 000)
        if os.fspath(path).endswith("Name_Locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found = discover(a)
    monkeypatch.undo()
    assert found.n_unreadable_folders == 1
    assert sorted((r.format, r.failure.code if r.failure else None) for r in found.recordings) == [
        ("edf", None), ("folder", "unreadable_folder")]


def test_redact_removes_paths_files_and_dates():
    msg = "[Errno 2] No such file or directory: '/srv/eeg/Meier Hans/PX77.eeg' (time data '12-AUG-2009' at 10:11:12)"
    out = redact(msg, ["Meier Hans/PX77.vhdr", "Meier Hans/PX77.eeg"])
    assert "Meier" not in out and "Hans" not in out and "PX77" not in out and "2009" not in out and "10:11" not in out
    assert out.startswith("[Errno 2] No such file or directory:")
    assert redact("not an EDF/BDF file; 2/3 epochs; 12 µV/s") == "not an EDF/BDF file; 2/3 epochs; 12 µV/s"
    assert "\n" not in redact("a\nforged log line")


def test_a_manifest_naming_a_device_is_refused_not_hung(tmp_path):
    from ephys.errors import ManifestError
    from ephys.pretrain.data import verify_shards
    from ephys.schemas import Manifest, ManifestShard

    os.mkfifo(tmp_path / "shard-000000.tar")
    for url in ("/dev/zero", str(tmp_path / "shard-000000.tar")):
        m = Manifest.model_construct(shards=[ManifestShard(url=url, sha256="0" * 64, n_samples=1, keys=["k"])])
        with pytest.raises(ManifestError, match="not a regular file"):
            verify_shards(m, tmp_path / "m.json")


# The red-team cases of issue #15 (header: "PID4471982 M 17-MAR-1961 Quaexelbroet_Hieronymus") and
# clinical text that must survive. The expected strings were written by hand.
_HEADER_NAMES, _HEADER_IDS = ["Quaexelbroet_Hieronymus", "Bratwurstova"], ["PID4471982"]


@pytest.mark.parametrize("text,expected", [
    ("Pat. Quäxelbröt Anfall", "Pat. [name] Anfall"),  # umlauts where the header wrote ae/oe
    ("Quaexelbroets Mutter anwesend", "[name] Mutter anwesend"),  # genitive s
    ("QUAEXELBROET, H. wach", "[name], H. wach"),
    ("Bratwürstová schläft", "[name] schläft"),  # accents the header did not have
    ("Fallnummer 4471982", "Fallnummer [id]"),  # the ID's digits without its prefix
    ("Geburtsdatum 17031961", "Geburtsdatum [date]"),  # compact day-first date
    ("Hieronymus' Anfall um 12:03", "[name]' Anfall um 12:03"),
    ("Anfall links temporal, Augen zu", "Anfall links temporal, Augen zu"),
    ("Fp1-F7 Artefakt, Levetiracetam 500 mg", "Fp1-F7 Artefakt, Levetiracetam 500 mg"),
    ("HV 3 min, Photostimulation 14 Hz", "HV 3 min, Photostimulation 14 Hz"),
    ("eyes closed, spike-wave 3 Hz, 44719 ms", "eyes closed, spike-wave 3 Hz, 44719 ms"),
])
def test_scrubbing_catches_the_spellings_people_type(text, expected):
    from ephys.ingest.identity import scrub_text

    assert scrub_text(text, _HEADER_NAMES, _HEADER_IDS)[0] == expected


def test_audit_ignores_the_placeholders_anonymised_files_carry(tmp_path):
    """An anonymised EDF+ patient field ("X F X Name", as exported files often have) holds no identity:
    "Name" is also a column of the catalog, so an audit that searched it would always fail."""
    from ephys.catalog.audit import audit

    a = tmp_path / "a"
    a.mkdir()
    _edf(a / "r.edf", patient="X F X Name")
    out = tmp_path / "out"
    ingest(a, out, config=IngestConfig(montage="native", min_epochs=1), workers=1)
    assert b"name" in (out / "catalog.sqlite").read_bytes().lower()
    assert audit(out, a).ok


def test_nihon_kohden_native_is_discovered_and_ingested(tmp_path):
    """A Nihon Kohden archive (.EEG with .21E/.PNT/.LOG) ingests: 19 channels at 500 Hz, its events as
    annotations, the samples the writer put in; a truncated copy is 'corrupt', not ingested short."""
    import datetime as dt

    from ephys.ingest.readers import open_recording
    from tests.nk_writer import CAL, OFFSET, to_units, write_nk

    a = tmp_path / "a"
    a.mkdir()
    x = np.random.default_rng(7).normal(0, 30, (19, 500 * 65))
    eeg = write_nk(a / "NK0001.EEG", x, 500, start=dt.datetime(2020, 1, 2, 3, 4, 5),
                   events=[(10, "Augen zu"), (20, "Mutter Erika da")])
    (a / "cut").mkdir()
    for ext in (".EEG", ".21E", ".PNT", ".LOG"):
        shutil.copyfile(eeg.with_suffix(ext), a / "cut" / ("NK0002" + ext))
    cut = a / "cut" / "NK0002.EEG"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size * 2 // 3])
    with open_recording(eeg, "nihon_kohden") as r:  # the samples, against the writer's own units
        assert np.allclose(r.read(0, 1000, [0, 18]), (to_units(x[[0, 18], :1000]) * CAL + OFFSET), atol=1e-3)
    out = tmp_path / "out"
    s = ingest(a, out, config=IngestConfig(montage="native", min_epochs=1), workers=1)
    rows = {r.status: r for r in rows_by_sha(f"sqlite:///{out / 'catalog.sqlite'}").values()}  # sidecars hash with it
    ok, bad = rows["ok"], rows["failed"]
    assert (s.n_discovered, s.n_ok, s.n_failed) == (2, 1, 1)
    assert (ok.format, ok.status, ok.sfreq, ok.n_eeg_channels, ok.n_epochs, ok.n_annotations) == (
        "nihon_kohden", "ok", 500.0, 19, 2, 2)
    assert (bad.status, bad.failure_code) == ("failed", "corrupt") and "truncated" in bad.failure_reason
    c = Catalog(f"sqlite:///{out / 'catalog.sqlite'}")
    with c.session() as sess:
        from ephys.catalog import models as m

        texts = sorted(t for t in sess.scalars(m.Annotation.__table__.select().with_only_columns(m.Annotation.text)))
    c.close()
    assert texts == ["Augen zu", "Mutter [name] da"]


def test_eeglab_data_file_truncated_is_corrupt(tmp_path):
    """An EEGLAB .set whose samples live in a .fdt cut short: 'corrupt' with MNE's count, no exception name."""
    import scipy.io

    a = tmp_path / "a"
    a.mkdir()
    raw = mne.io.RawArray(_x(65, 5) * 1e-6, mne.create_info(LABELS, float(RATE), "eeg"), verbose="error")
    mne.export.export_raw(a / "r.set", raw, fmt="eeglab", verbose="error")
    mat = scipy.io.loadmat(a / "r.set", appendmat=False)
    fields = {k: v for k, v in mat.items() if not k.startswith("__")}
    fields["data"].astype("<f4").T.tofile(a / "r.fdt")  # EEGLAB's .fdt: float32, channels per time point
    fields["data"] = "r.fdt"
    scipy.io.savemat(a / "r.set", fields, appendmat=False)
    assert np.allclose(mne.io.read_raw_eeglab(a / "r.set", verbose="error").get_data(), raw.get_data(), atol=1e-9)
    fdt = a / "r.fdt"
    fdt.write_bytes(fdt.read_bytes()[: fdt.stat().st_size // 2 + 3])
    out = tmp_path / "out"
    ingest(a, out, config=IngestConfig(montage="native", min_epochs=1), workers=1)
    (row,) = rows_by_sha(f"sqlite:///{out / 'catalog.sqlite'}").values()
    assert (row.format, row.status, row.failure_code) == ("eeglab", "failed", "corrupt")
    assert "truncated or damaged" in row.failure_reason and "Error" not in row.failure_reason


def _as_unprivileged() -> list[str] | None:
    """Command prefix under which file permissions apply even to root (``None``: none available)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"] if setpriv else None


def test_a_read_only_corpus_can_be_queried_verified_and_curated(tmp_path):
    """A finished corpus on read-only storage (a frozen, shared copy): query, stats, verify, manifest and
    report read it without writing a byte; a write (verify --repair) is refused with exit 2, not a traceback."""
    import subprocess
    import sys

    prefix = _as_unprivileged()
    if prefix is None:
        pytest.skip("running as root without util-linux setpriv: cannot make the corpus read-only")
    a = tmp_path / "a"
    a.mkdir()
    for i in range(2):
        _edf(a / f"r{i}.edf", seed=i)
    out = tmp_path / "out"
    ingest(a, out, config=IngestConfig(montage="native", min_epochs=1), workers=1)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    paths = [out, *out.rglob("*")]
    for p in paths:
        p.chmod(p.stat().st_mode & ~0o222)
    try:
        def ephys(*args):
            return subprocess.run([*prefix, sys.executable, "-m", "ephys", *args], capture_output=True, text=True,
                                  timeout=300, cwd=tmp_path)

        q = ephys("catalog", "query", "--out", str(out), "--json")
        assert q.returncode == 0, q.stderr
        assert sorted(r["status"] for r in json.loads(q.stdout)["recordings"]) == ["ok", "ok"]
        assert ephys("catalog", "stats", "--out", str(out)).returncode == 0
        v = ephys("catalog", "verify", "--out", str(out))
        assert v.returncode == 0 and "OK" in v.stdout, v.stdout + v.stderr
        mf = ephys("manifest", "create", "--out", str(out), "-o", str(tmp_path / "m.json"))
        assert mf.returncode == 0, mf.stderr
        assert json.loads((tmp_path / "m.json").read_text())["shards"]
        assert ephys("report", str(out), "-o", str(tmp_path / "r.html")).returncode == 0
        repair = ephys("catalog", "verify", "--out", str(out), "--repair")
        assert repair.returncode == 2 and "Traceback" not in repair.stderr, repair.stderr
    finally:
        for p in paths:
            p.chmod(p.stat().st_mode | 0o200)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_ingest_json_stdout_stays_json_when_a_reader_prints(tmp_path):
    """MNE's Persyst reader prints to stdout when it cannot parse a birth date (as in this file);
    ``ingest --json`` from a real worker process must still print one JSON document and nothing else."""
    import subprocess
    import sys

    from tests.test_discovery_and_damaged import _persyst

    a = tmp_path / "a"
    a.mkdir()
    _persyst(a, "routine", np.random.default_rng(0).normal(0, 20, (19, 256 * 65)), 256.0)
    r = subprocess.run([sys.executable, "-m", "ephys", "ingest", str(a), "--out", str(tmp_path / "out"), "--json",
                        "--workers", "1", "--min-epochs", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout)
    assert summary["ok"] == 1
    assert "birthdate" not in (r.stdout + r.stderr).lower() and "1961" not in r.stdout + r.stderr
