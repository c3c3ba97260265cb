"""De-identification through a real ingest: ages not birth dates, keyed date shifts, every path of a duplicate."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import select

from ephys.catalog import models as m
from ephys.catalog.db import Catalog
from ephys.pipeline.run import ingest
from ephys.schemas import IngestConfig
from ephys.ingest.writers.edf import write_edf
from tests.ingest_helpers import sha

RATE = 128
LABELS = ["EEG C3-Ref", "EEG C4-Ref", "EEG O1-Ref"]


def _edf(path, seed: int, patient: str, start: str) -> None:
    rng = np.random.default_rng(seed)
    n = 120 * RATE
    x = [20 * rng.standard_normal(n) for _ in LABELS]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_edf(path, x, LABELS, [RATE] * 3, patient=patient, start=start)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    a = tmp_path_factory.mktemp("id")
    _edf(a / "first.edf", 1, "PAT-77 F 02-MAY-1951 Hans_Muster", "01.05.2009.30.00")
    _edf(a / "later.edf", 2, "PAT-77 F 02-MAY-1951 Hans_Muster", "04.05.2011.45.30")  # 3 d 2 h 15 min 30 s later
    _edf(a / "other.edf", 3, "PAT-78 M 01-JAN-1910 Otto_Beispiel", "01.05.2009.30.00")
    (a / "copies").mkdir()
    shutil.copy(a / "first.edf", a / "copies" / "first-again.edf")
    return a


def _rows(out) -> tuple[dict, list]:
    c = Catalog(f"sqlite:///{out / 'catalog.sqlite'}")
    try:
        with c.session() as s:
            recs = {r.sha256: r for r in s.scalars(select(m.Recording))}
            paths = s.execute(select(m.Recording.sha256, m.RecordingPath.path_hash, m.RecordingPath.relpath)
                              .join(m.RecordingPath)).all()
            return recs, paths
    finally:
        c.close()


@pytest.mark.parametrize("shift", [False, True], ids=["default", "date-shift"])
def test_ages_dates_and_paths(archive, tmp_path, shift):
    out = tmp_path / "out"
    cfg = IngestConfig(montage="native", min_epochs=1, date_shift=shift, keep_paths=shift)
    s = ingest(archive, out, config=cfg, workers=1)
    assert (s.n_ok, s.n_duplicates) == (3, 1)
    recs, paths = _rows(out)
    first, later, other = (recs[sha(archive / n)] for n in ("first.edf", "later.edf", "other.edf"))
    assert first.subject == later.subject != other.subject
    assert (first.age_years, first.sex, later.age_years, other.age_years, other.sex) == (68, "F", 69, 90, "M")  # birthday between the two
    # The duplicate: one recording, both paths (relative, and only with --keep-paths).
    of_first = sorted((ph, rp) for sh, ph, rp in paths if sh == first.sha256)
    assert len(of_first) == 2 and len({ph for ph, _ in of_first}) == 2 and len(paths) == 4
    if not shift:
        assert all(r.start_time is None for r in recs.values()) and all(rp is None for _, _, rp in paths)
        return
    assert sorted(rp for _, rp in of_first) == ["copies/first-again.edf", "first.edf"]
    real = datetime(2020, 5, 1, 9, 30)
    assert later.start_time - first.start_time == timedelta(days=3, hours=2, minutes=15, seconds=30)
    assert first.start_time.time() == real.time() and first.start_time.weekday() == real.weekday()
    assert first.start_time.year >= 2120 and first.start_time != other.start_time  # per-subject offsets


def test_a_rerun_records_a_new_path_of_known_content(archive, tmp_path):
    out = tmp_path / "out"
    cfg = IngestConfig(montage="native", min_epochs=1)
    ingest(archive, out, config=cfg, workers=1)
    moved = tmp_path / "moved"
    shutil.copytree(archive, moved)
    shutil.copy(moved / "other.edf", moved / "other-renamed.edf")
    s = ingest(moved, out, config=cfg, workers=1)
    assert (s.n_ok, s.n_skipped, s.n_duplicates) == (0, 3, 2)
    recs, paths = _rows(out)
    assert len(recs) == 3 and len(paths) == 5  # the same relative paths are known; the new name is added
