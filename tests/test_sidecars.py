"""Annotation sidecars: the real CHB-MIT summary and Siena seizure list, and the ephys TSV, parsed
and attached to the recordings they name, so ``category = seizure`` selects those epochs.

Oracle: the times written in the real sidecar files (read by hand: chb05_06 417-532 s; PN00-1
19.39.33 registration, 19.58.36-19.59.46 seizure = 1143 s for 70 s; PN00-3 ends 19.29.29 after the
registration ends 18.57.13, so its end is clipped to the recording)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from ephys.catalog.queries import select_epochs
from ephys.ingest.discover import discover
from ephys.ingest.sidecars import parse_tsv, read_sidecar, sniff_sidecar
from ephys.ingest.writers.edf import write_edf
from ephys.pipeline.progress import summary_lines
from ephys.pipeline.run import ingest
from ephys.schemas import IngestConfig
from tests.damaged_corpus import RATE, _eeg
from tests.ingest_helpers import sha

SIDECARS = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "annotation-sidecars"
CHB = SIDECARS / "chb05-summary.txt"
SIENA = SIDECARS / "Seizures-list-PN00.txt"
LABELS = ["Fp1", "Fp2", "C3", "C4"]

pytestmark = pytest.mark.skipif(not SIDECARS.exists(), reason="../shared/data/real/annotation-sidecars is not present")


def test_real_sidecars_parse_to_the_times_they_state():
    chb = read_sidecar(CHB)
    assert chb.format == "chbmit" and not chb.problems
    assert [(e.name, e.onset_s, e.duration_s) for e in chb.entries] == [
        ("chb05_06.edf", 417, 115), ("chb05_13.edf", 1086, 110), ("chb05_16.edf", 2317, 96),
        ("chb05_17.edf", 2451, 120), ("chb05_22.edf", 2348, 117)]
    assert len(chb.listed) == 39 - 5 and "chb05_01.edf" in chb.listed  # seizure-free files are listed too
    siena = read_sidecar(SIENA)
    assert siena.format == "siena" and not siena.problems
    assert [(e.name, e.onset_s, e.duration_s, e.end_limit_s) for e in siena.entries] == [
        ("PN00-1.edf", 1143, 70, 2605), ("PN00-2.edf", 1220, 54, 2282), ("PN00-3.edf", 765, 3660, 2489),
        ("PN00-4.edf", 1006, 74, 2082), ("PN00-5.edf", 904, 67, 2123)]
    # The summary's first 512 bytes list only channels: a file is sniffed on its first 4 KiB.
    assert sniff_sidecar(CHB.read_bytes()[:4096]) == "chbmit" and sniff_sidecar(b"Fp1 F3 C3\n") is None


def test_chbmit_variants_and_siena_midnight():
    from ephys.ingest.sidecars import parse_chbmit, parse_siena

    chb = parse_chbmit("File Name: a.edf\nNumber of Seizures in File: 2\nSeizure 1 Start Time: 10 seconds\n"
                       "Seizure 1 End Time: 20 seconds\nSeizure 2 Start Time: 30 seconds\nSeizure 2 End Time: 25 seconds\n"
                       "File Name: b.edf\nNumber of Seizures in File: 1\n")
    assert [(e.name, e.onset_s, e.duration_s) for e in chb.entries] == [("a.edf", 10, 10)]
    assert [r for _, r in chb.problems] == ["seizure ends (25 s) before it starts (30 s)",
                                            "'Number of Seizures in File: 1' but 0 listed"]
    siena = parse_siena("Seizure n 1\nFile name: x.edf\nRegistration start time: 23.50.00\n"
                        "Registration end time: 00.40:00\nStart time: 00:05:10\nEnd time: 00.06.00\n"
                        "Seizure n 2\nFile name: x.edf\nRegistration start time: 23.50.00\nSeizure start time: 99.00.00\n")
    assert [(e.onset_s, e.duration_s, e.end_limit_s) for e in siena.entries] == [(910, 50, 3000)]
    assert siena.problems == [(2, "registration start, seizure start or seizure end is not a clock time HH.MM.SS")]


def test_tsv_rows_and_their_refusals():
    tsv = parse_tsv("file\tonset\tduration\tdescription\n"
                    "a.edf\t12.5\t30\tSeizure (left temporal)\n"
                    f"{'AB' * 32}\t1\t0\tspike\n"
                    "a.edf\tsoon\t1\tx\n"
                    "a.edf\t-1\t1\tx\n"
                    "a.edf\t1\n"
                    "a.edf\t1\t1\t \n")
    assert [(e.number, e.name, e.onset_s, e.duration_s, e.text) for e in tsv.entries] == [
        (1, "a.edf", 12.5, 30, "Seizure (left temporal)"), (2, "ab" * 32, 1, 0, "spike")]
    assert [n for n, _ in tsv.problems] == [3, 4, 5, 6]


def _archive(root: Path) -> dict[str, Path]:
    """chb05/ and PN00/ folders as the databases lay them out, with short EDF+ files of the names
    the sidecars give, a TSV, a name the summary lists twice in the archive, and a text file that is
    not a sidecar."""
    files = {}
    for rel, seconds, seed in [("chb05/chb05_06.edf", 600, 1), ("chb05/chb05_13.edf", 1230, 2),
                               ("PN00/PN00-1.edf", 1230, 3), ("PN00/PN00-3.edf", 900, 4),
                               ("other/chb05_16.edf", 120, 5), ("other2/chb05_16.edf", 150, 6),
                               ("tsvs/night.edf", 300, 7)]:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        files[rel] = write_edf(p, _eeg(len(LABELS), seconds, seed), LABELS, [RATE] * len(LABELS))
    shutil.copy(CHB, root / "chb05" / CHB.name)
    shutil.copy(SIENA, root / "PN00" / SIENA.name)
    night = sha(files["tsvs/night.edf"])
    (root / "tsvs" / "events.tsv").write_text(
        "file\tonset\tduration\tdescription\n"
        "night.edf\t95\t20\tAnfall, Mueller informiert am 12.03.2024 (PID4471982)\n"  # a surname, a date, an ID
        f"{night}\t250\t10\tspike wave\n"
        "missing.edf\t5\t1\tseizure\n",
        encoding="utf-8",
    )
    (root / "tsvs" / "notes.txt").write_text("routine EEG, nothing to report\n")
    return files


def test_ingest_attaches_sidecar_entries_and_reports_the_rest(tmp_path, catalog_url):
    archive, out = tmp_path / "archive", tmp_path / "out"
    files = _archive(archive)
    found = discover(archive)
    assert sorted((rel, fmt) for _, fmt, rel in found.annotation_sidecars) == [
        ("PN00/Seizures-list-PN00.txt", "siena"), ("chb05/chb05-summary.txt", "chbmit"), ("tsvs/events.tsv", "tsv")]
    assert found.n_ignored == 1  # notes.txt

    config = IngestConfig(montage="native", min_epochs=1)
    summary = ingest(archive, out, config=config, catalog_url=catalog_url, workers=1)
    sc = summary.sidecars
    assert (sc.n_sidecars, sc.n_entries, sc.n_attached, sc.n_recordings, sc.n_clipped) == (3, 13, 6, 5, 1)
    by_reason = sorted(why for _, _, why in sc.problems)
    assert by_reason == [
        "clipped: ends 3525 s after the recording",  # PN00-3: 765 + 3660 - 900 (the catalog's length)
        "names 2 recordings of different content (the same file name in several folders)",  # chb05_16
        "names no recording in the archive",  # chb05_17
        "names no recording in the archive",  # chb05_22
        "names no recording in the archive",  # PN00-2
        "names no recording in the archive",  # PN00-4
        "names no recording in the archive",  # PN00-5
        "names no recording in the archive",  # missing.edf
    ]

    engine = create_engine(catalog_url)
    with engine.connect() as c:
        rows = c.execute(text(
            "SELECT r.sha256, a.onset_s, a.duration_s, a.text, a.source, a.category, a.subcategory FROM annotations a "
            "JOIN recordings r ON r.id = a.recording_id WHERE a.source LIKE 'sidecar:%' ORDER BY r.sha256, a.onset_s"
        )).all()
        sidecar_rows = c.execute(text("SELECT format, n_entries, n_attached, n_recordings, problems_json "
                                      "FROM annotation_sidecars ORDER BY format")).all()
    engine.dispose()
    got = {(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows}
    s = {rel: sha(p) for rel, p in files.items()}
    assert got == {
        (s["chb05/chb05_06.edf"], 417, 115, "seizure", "sidecar:chbmit", "seizure"),
        (s["chb05/chb05_13.edf"], 1086, 110, "seizure", "sidecar:chbmit", "seizure"),
        (s["PN00/PN00-1.edf"], 1143, 70, "seizure", "sidecar:siena", "seizure"),
        (s["PN00/PN00-3.edf"], 765, 135, "seizure", "sidecar:siena", "seizure"),
        (s["tsvs/night.edf"], 95, 20, "Anfall, [name] informiert am [date] ([id])", "sidecar:tsv", "seizure"),
        (s["tsvs/night.edf"], 250, 10, "spike wave", "sidecar:tsv", "interictal"),
    }, got
    assert [(f, n, a, k) for f, n, a, k, _ in sidecar_rows] == [("chbmit", 5, 2, 2), ("siena", 5, 2, 2), ("tsv", 3, 2, 1)]
    assert json.loads(sidecar_rows[0][4])[0] == [3, "names 2 recordings of different content (the same file name "
                                                     "in several folders)"]

    # category = seizure selects exactly the epochs the seizures overlap (30-s epochs from 0 s).
    chosen = {(e.recording, int(e.key.rsplit("_", 1)[1])) for e in select_epochs(catalog_url, ["category = seizure"])}
    expected = {(s["chb05/chb05_06.edf"], i) for i in range(13, 18)} | {(s["chb05/chb05_13.edf"], i) for i in range(36, 40)}
    expected |= {(s["PN00/PN00-1.edf"], i) for i in range(38, 41)} | {(s["PN00/PN00-3.edf"], i) for i in range(25, 30)}
    expected |= {(s["tsvs/night.edf"], i) for i in range(3, 4)}
    assert chosen == expected

    # Named by sidecar hash prefix and entry number: no file name reaches the summary.
    lines = "\n".join(summary_lines(summary, archive))
    assert "annotation sidecars: 3 (13 entries: 6 attached to 5 recordings, 1 of them clipped)" in lines
    assert not any(token in lines for token in ("chb05_", "PN00", "missing.edf", "night.edf", "Mueller"))

    from ephys.catalog.queries import catalog_stats

    st = catalog_stats(catalog_url)
    assert st["annotations_from_sidecars"] == 6 and st["sidecars"] == {"files": 3, "entries": 13, "attached": 6}

    # A rerun gives the same rows; a sidecar removed takes its annotations with it.
    again = ingest(archive, out, config=config, catalog_url=catalog_url, workers=1)
    assert again.n_skipped == 7 and again.sidecars.n_attached == 6
    (archive / "tsvs" / "events.tsv").unlink()
    ingest(archive, out, config=config, catalog_url=catalog_url, workers=1)
    engine = create_engine(catalog_url)
    with engine.connect() as c:
        n = c.execute(text("SELECT source, COUNT(*) FROM annotations WHERE source LIKE 'sidecar:%' GROUP BY source "
                           "ORDER BY source")).all()
    engine.dispose()
    assert [tuple(r) for r in n] == [("sidecar:chbmit", 2), ("sidecar:siena", 2)]
