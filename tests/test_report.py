"""``ephys report``: the figures equal the catalog's, and the page renders in headless Chromium with
every plot present and nothing fetched from outside the file.

The render test needs Debian's Chromium (``apt-get install chromium``; the README's test command
installs it) and the ``playwright`` package (the test extra) to drive it. Without a Chromium it is
skipped unless ``EPHYS_TEST_REQUIRE_BROWSER=1`` (``.ci/run`` sets it), so CI can never skip it silently.
"""

from __future__ import annotations

import io
import os
import re
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from ephys.catalog.db import Catalog
from ephys.catalog.queries import catalog_stats, query_recordings, select_epochs
from ephys.catalog.report import SCORE_EDGES, STAGES, render_report, report_data, write_report
from ephys.cli import _register, app
from ephys.pipeline.run import ingest
from ephys.schemas import IngestConfig
from ephys.ingest.writers.edf import write_edf
from tests.ingest_helpers import REAL

BROWSER_ENV = "EPHYS_TEST_REQUIRE_BROWSER"
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")

#: Figures the page of the corpus below must show.
EXPECTED_FIGURES = ("fig-status", "fig-failures", "fig-hours", "fig-score", "fig-emg-ratio", "fig-drift-ratio",
                    "fig-stages", "fig-hypnogram-0", "fig-hypnogram-1", "fig-categories", "fig-subcategories",
                    "fig-sfreq", "fig-n-eeg", "fig-channel-names", "fig-stage-seconds")


@pytest.fixture(scope="module")
def corpus(staged_corpus, tmp_path_factory):
    """The staged DREAMS + Sleep-EDF ingest, copied, plus a second run that adds the real CRLF-damaged
    EDF (failed: corrupt) and a 12-s EDF with annotations (rejected: too short): 2 runs, 2 ok,
    1 rejected, 1 failed."""
    _, staged_out, _ = staged_corpus
    out = tmp_path_factory.mktemp("report") / "out"
    shutil.copytree(staged_out, out)
    extra = tmp_path_factory.mktemp("extra")
    shutil.copy(REAL / "eegmmidb" / "S001R03_damaged-crlf.edf", extra)
    rng = np.random.default_rng(0)
    write_edf(extra / "short.edf", [rng.normal(0, 20, 12 * 256) for _ in range(3)], ["EEG C3", "EEG C4", "EEG Cz"],
              [256] * 3, annotations=[(1.0, 0.0, "Anfall links temporal"), (4.0, 0.0, "kein Anfall"),
                                      (6.0, 2.0, "Augen zu"), (8.0, 0.0, "xyzzy Ereignis")])
    s = ingest(extra, out, config=IngestConfig(montage="native", stager="gssc"), workers=1)
    assert (s.n_ok, s.n_rejected, s.n_failed) == (0, 1, 1)
    return out, f"sqlite:///{out / 'catalog.sqlite'}"


def test_report_figures_equal_the_catalog(corpus):
    out, url = corpus
    d = report_data(url)
    st = catalog_stats(url)
    assert d["stats"] == {**st, "runs": d["stats"]["runs"]}
    assert st["recordings"] == {"total": 4, "ok": 2, "rejected": 1, "failed": 1}
    assert {(f["status"], f["code"], f["n"]) for f in d["failures"]} == {("failed", "corrupt", 1), ("rejected", "too_short", 1)}
    assert all(f["reasons"] for f in d["failures"])
    # 70 epochs in the corpus (60 DREAMS + 10 Sleep-EDF), each scored and staged.
    n = len(select_epochs(url, []))
    assert n == 70 == st["epochs"]["total"]
    assert sum(d["score_hist"]["counts"]) == n and d["score_hist"]["edges"] == list(SCORE_EDGES)
    assert d["score_hist"]["counts"][-1] == len(select_epochs(url, ["score >= 0.95"]))
    assert d["epochs"]["valid"] + d["epochs"]["invalid"] == n and d["epochs"]["unscored"] == 0
    assert list(d["stages"])[:5] == list(STAGES) and sum(d["stages"].values()) == n
    for stage in STAGES:
        assert d["stages"][stage] == len(select_epochs(url, [f"stage = {stage}"]))
    assert [len(h["stage"]) for h in d["hypnograms"]] == [60, 10]
    assert d["hypnograms"][0]["start_s"][:3] == [0.0, 30.0, 60.0] and set(d["hypnograms"][0]["stage"]) <= set(STAGES)
    assert sum(d["stagers"].values()) == 2 and all(k.startswith("gssc 0.0.9") for k in d["stagers"])
    # Annotations: "Anfall" counts as seizure, "kein Anfall" is negated, "xyzzy Ereignis" is unlabelled.
    assert d["annotations"]["categories"] == st["annotation_categories"] and st["annotation_categories"]["seizure"] == 1
    assert d["annotations"]["negated"] == 1
    assert ["xyzzy Ereignis", 1] in d["annotations"]["unlabelled"]
    assert ["xyzzy Ereignis", 1, 1, "de"] in d["annotations"]["unlabelled_clusters"]
    assert sum(d["hours_by_format"]["edf"].values()) > 0 and d["hours_by_format"]["edf"]["ok"] > 0.5
    assert sum(d["sfreqs"].values()) == sum(r["sfreq"] is not None for r in query_recordings(url)) >= 3
    assert d["channel_names"]["C3"] == 2 and d["channel_names"]["Cz"] == 1  # DREAMS C3-A1 and short.edf "EEG C3"
    # Two runs with their throughput; per-stage worker seconds include sleep staging.
    assert [r["id"] for r in d["runs"]] == [1, 2] and [r["n_ok"] for r in d["runs"]] == [2, 0]
    assert d["runs"][0]["eeg_hours_per_hour"] == pytest.approx(d["runs"][0]["eeg_hours"] * 3600 / d["runs"][0]["wall_s"])
    assert d["stage_seconds"]["sleep"] > 0 and set(d["stage_seconds"]) <= {"open", "read", "qc", "condition", "sleep", "stage"}
    assert d["catalog"] == url


def test_cli_writes_a_self_contained_page(corpus, tmp_path):
    out, url = corpus
    _register()
    page = tmp_path / "report.html"
    r = CliRunner().invoke(app, ["report", str(out), "--out", str(page)])
    assert r.exit_code == 0, r.output
    assert f"wrote {page}" in r.stdout
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!doctype html>") and text.rstrip().endswith("</html>")
    for fid in EXPECTED_FIGURES:
        assert re.search(rf'<figure id="{fid}"><img alt="[^"]+" src="data:image/png;base64,[A-Za-z0-9+/=]+">', text), fid
    assert text.count("<img ") == len(EXPECTED_FIGURES)
    # Nothing outside the file: no scripts, no remote or relative URLs.
    assert "<script" not in text and not re.search(r'(src|href)="(?!data:)', text)
    assert "xyzzy Ereignis" in text  # unlabelled texts are listed for the taxonomy
    assert not list(tmp_path.glob(".report.html.tmp*"))
    # --catalog URL gives the same page (but for the generation time).
    page2 = tmp_path / "r2.html"
    assert CliRunner().invoke(app, ["report", "--catalog", url, "-o", str(page2)]).exit_code == 0
    strip = lambda s: re.sub(r"generated [^ ]+", "", s)  # noqa: E731
    assert strip(page2.read_text()) == strip(text)


def test_missing_catalog_is_a_clear_error(tmp_path):
    _register()
    r = CliRunner().invoke(app, ["report", str(tmp_path / "nope"), "--out", str(tmp_path / "r.html")])
    assert r.exit_code == 2 and "no catalog at" in r.stderr
    assert not (tmp_path / "r.html").exists()


def test_empty_catalog_renders_without_plots(tmp_path):
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    Catalog(url).close()
    page = write_report(url, tmp_path / "empty.html")
    text = page.read_text()
    assert "<img" not in text and text.count("class=empty") >= 8 and "no runs recorded" in text


def _chromium() -> str | None:
    found = shutil.which("chromium") or next((p for p in CHROMIUM_PATHS if os.path.exists(p)), None)
    if found is None and os.environ.get(BROWSER_ENV) == "1":
        pytest.fail(f"{BROWSER_ENV}=1 but no Chromium found: apt-get install chromium (see the README)")
    return found


def test_page_renders_in_headless_chromium(corpus, tmp_path):
    chromium = _chromium()
    if chromium is None:
        pytest.skip(f"no Chromium (apt-get install chromium); set {BROWSER_ENV}=1 to make this a failure")
    from PIL import Image
    from playwright.sync_api import sync_playwright

    out, url = corpus
    page_path = write_report(url, tmp_path / "report.html")
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("request", lambda req: requests.append(req.url))
            page.goto(page_path.as_uri(), wait_until="load")
            images = page.evaluate("Array.from(document.images).map(i => ({id: i.parentElement.id, "
                                   "complete: i.complete, w: i.naturalWidth, h: i.naturalHeight, "
                                   "x: i.getBoundingClientRect().left + window.scrollX, "
                                   "y: i.getBoundingClientRect().top + window.scrollY, "
                                   "shown: i.getBoundingClientRect().width, shown_h: i.getBoundingClientRect().height}))")
            title = page.title()
            h2 = page.locator("h2").all_inner_texts()
            shot = page.screenshot(full_page=True)
        finally:
            browser.close()
    assert title == "ephys corpus report"
    assert h2 == ["Recordings", "Quality", "Sleep stages", "Annotations", "Channels and sampling rates", "Runs and throughput"]
    assert [i["id"] for i in images] == list(EXPECTED_FIGURES)
    broken = [i["id"] for i in images if not (i["complete"] and i["w"] > 100 and i["h"] > 50 and i["shown"] > 100)]
    assert not broken, f"images not decoded or not laid out: {broken}"
    assert all(u.startswith(("file:", "data:")) for u in requests), [u for u in requests if not u.startswith("data:")][:3]
    img = Image.open(io.BytesIO(shot)).convert("RGB")
    assert img.width == 1200 and img.height > 3000, img.size  # the whole page, not the viewport
    px = np.asarray(img).astype(np.int16)
    # Each plot is painted where the layout put it: its box holds dark axis/text pixels and coloured
    # plot pixels (bars, or the hypnogram's line), as a blank or broken image would not.
    for i in images:
        box = px[int(i["y"]) : int(i["y"] + i["shown_h"]), int(i["x"]) : int(i["x"] + i["shown"])]
        dark = (box.max(axis=2) < 100).mean()
        blue = ((box[..., 2] - box[..., 0]) > 30).mean()  # the plots' #457b9d / #1d3557
        assert dark > 0.002 and (blue > 0.002 or i["id"] in ("fig-status", "fig-stages")), (i["id"], dark, blue)
    assert (px[: 900].min(axis=2) < 100).mean() > 0.005, "the top of the page (title, summary cards) is blank"


def _comparable(d: dict) -> dict:
    """report_data without what differs between two ingests of the same files (URL, clock)."""
    d = {k: v for k, v in d.items() if k not in ("catalog", "generated_at", "stage_seconds")}
    d["stats"] = {k: v for k, v in d["stats"].items() if k != "runs"}
    d["runs"] = [{k: v for k, v in r.items() if k not in ("started_at", "wall_s", "eeg_hours_per_hour")} for r in d["runs"]]
    return d


@pytest.mark.parametrize("catalog_url", ["postgres"], indirect=True)
def test_same_report_on_sqlite_and_postgres(catalog_url, tmp_path):
    """Every report query runs on both backends and gives the same figures (PostgreSQL is strict
    about GROUP BY expressions, SQLite is not)."""
    from ephys.ingest.demo import write_demo_archive

    archive = tmp_path / "a"
    write_demo_archive(archive, n_recordings=2, minutes=2.5)
    cfg = IngestConfig(min_epochs=1)
    ingest(archive, tmp_path / "pg", config=cfg, catalog_url=catalog_url, workers=1)
    ingest(archive, tmp_path / "lite", config=cfg, workers=1)
    pg, lite = report_data(catalog_url), report_data(f"sqlite:///{tmp_path / 'lite' / 'catalog.sqlite'}")
    assert pg["stats"]["recordings"]["ok"] == 2 and pg["failures"] and sum(pg["score_hist"]["counts"]) == pg["stats"]["epochs"]["total"] > 0
    assert _comparable(pg) == _comparable(lite)
    assert "<img" in render_report(pg)
