"""`ephys export bids` (#18 part 1): the manifest's recordings as a BIDS EEG dataset that the official BIDS
validator accepts, with HED from the taxonomy, QC status per channel, and no identity in it.

Archive: the quickstart's (six clinical-like recordings tiled from real EEG, EDF+/BDF+/Micromed/Nicolet, German
annotations, an ephys seizure-list TSV) plus one EDF written here with a patient's name, ID and birth date in its
header, a name in an annotation, a flat C3 and a 128-Hz EMG channel beside 256-Hz EEG. Ingested with regional8
and --date-shift. Oracles: the archive files read by MNE (signals), the catalog (annotations, bad channels, shifted
start, age, sex), hedtools (HED strings), the npm ``bids-validator`` (the BIDS standard), ``ephys audit`` (identity).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ephys.cli import _register, app
from tests.ingest_helpers import REAL, rows_by_sha, sha

pytest.importorskip("mne_bids")
pytest.importorskip("hed")
_register()

BIDS_VALIDATOR = "bids-validator@1.15.0"
LABELS = ["Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T7", "C3", "Cz", "C4", "T8", "P7", "P3", "Pz", "P4", "P8", "O1",
          "O2"]


def _tsv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _validator() -> Path:
    """The npm BIDS validator, installed once into the user's cache (about a minute the first time)."""
    require = os.environ.get("EPHYS_TEST_REQUIRE_BIDS_VALIDATOR") == "1"
    npm, node = shutil.which("npm"), shutil.which("node")
    if not (npm and node):
        if require:
            pytest.fail("EPHYS_TEST_REQUIRE_BIDS_VALIDATOR=1 but Node.js/npm are not installed")
        pytest.skip("the BIDS validator needs Node.js and npm (not installed here)")
    prefix = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ephys-test" / BIDS_VALIDATOR
    exe = prefix / "node_modules" / ".bin" / "bids-validator"
    if not exe.exists():
        r = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--omit=dev", "--prefix", str(prefix),
                            BIDS_VALIDATOR], capture_output=True, text=True, timeout=900)
        if r.returncode != 0 or not exe.exists():
            if require:
                pytest.fail(f"npm install {BIDS_VALIDATOR} failed: {r.stderr[-2000:]}")
            pytest.skip(f"npm could not install {BIDS_VALIDATOR} (no registry?): {r.stderr[-300:]}")
    return exe


def _hed_schema_dir(folder: Path) -> Path:
    """HED 8.4.0 and SCORE 2.1.0 as the validator fetches them from hed-schemas, written by hedtools (the
    library merged with its standard: the form hed-validator 3.15's parser reads a partnered library in)."""
    import hed
    from hed.schema import load_schema_version

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(hed.__file__).parent / "schema" / "schema_data" / "HED8.4.0.xml", folder)
    load_schema_version("score_2.1.0").save_as_xml(str(folder / "HED_score_2.1.0.xml"), save_merged=True)
    return folder


def validate_bids(root: Path, work: Path) -> dict:
    """The validator's JSON report of ``root``."""
    env = dict(os.environ, EPHYS_HED_SCHEMA_DIR=str(_hed_schema_dir(work / "hed-schemas")),
               NODE_OPTIONS=f"--require {Path(__file__).parent / 'data' / 'hed_schemas_offline.cjs'}")
    r = subprocess.run([str(_validator()), str(root), "--json"], capture_output=True, text=True, env=env, timeout=600)
    return json.loads(r.stdout)


def _issues(report: dict, kind: str) -> list[str]:
    return [f"{i['key']}: {(i['files'][0].get('evidence') or '')[:200] if i['files'] else i.get('reason')}"
            for i in report["issues"][kind]]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from ephys.ingest.writers.edf import write_edf
    from ephys.manifest.create import create_manifest
    from ephys.pipeline.run import ingest
    from ephys.quickstart import build_archive
    from ephys.schemas import IngestConfig

    if not REAL.exists():
        pytest.skip("../shared/data/real is not present")
    root = tmp_path_factory.mktemp("bids")
    archive, _ = build_archive(root / "archive", REAL)
    shutil.rmtree(archive / "real")  # the tiled clinical recordings are enough; regional8 rejects most real ones
    rng = np.random.default_rng(0)
    sig = [rng.normal(0, 20, 256 * 600) for _ in LABELS]
    sig[LABELS.index("C3")] = np.zeros(256 * 600)  # flat: a bad channel with reason "flat"
    sig.append(rng.normal(0, 5, 128 * 600))  # EMG at 128 Hz beside 256-Hz EEG: BIDS through MNE holds one rate
    extra = archive / "clinical" / "Muster_Hans_2021" / "Muster_Hans.edf"
    extra.parent.mkdir(parents=True)
    write_edf(extra, sig, [*LABELS, "EMG chin"], [256] * 19 + [128], patient="MCH-0815 M 02-MAR-1961 Muster_Hans",
              recording="Startdate 02-MAR-2021 X X X", start="02.03.2113.45.00",
              annotations=[(60.0, 0.0, "Augen zu"), (90.0, 5.0, "Patient Hans Muster gähnt")])
    out = root / "corpus"
    ingest(archive, out, config=IngestConfig(date_shift=True), workers=1)
    url = f"sqlite:///{out / 'catalog.sqlite'}"
    manifest = root / "m.json"
    create_manifest(url, ["valid = true"], manifest)
    bids = root / "bids"
    r = CliRunner().invoke(app, ["export", "bids", "--manifest", str(manifest), "--archive", str(archive),
                                 "--out", str(bids), "--catalog", url])
    assert r.exit_code == 0, r.output
    return dict(root=root, archive=archive, url=url, manifest=manifest, bids=bids, output=r.output, stderr=r.stderr,
                extra=extra)


def test_official_validator_accepts_the_tree(exported, tmp_path):
    report = validate_bids(exported["bids"], tmp_path)
    assert _issues(report, "errors") == [] and _issues(report, "warnings") == []
    assert report["summary"]["modalities"] == ["EEG"] and len(report["summary"]["subjects"]) == 7
    # the validator checks HED for real: one unknown tag in a copy is an error
    broken = tmp_path / "broken"
    shutil.copytree(exported["bids"], broken)
    ev = sorted(broken.rglob("*_events.tsv"))[0]
    text = ev.read_text(encoding="utf-8").splitlines()
    text[1] = "\t".join(text[1].split("\t")[:-1] + ["sc:No-such-tag"])
    ev.write_text("\n".join(text) + "\n", encoding="utf-8")
    assert any("HED" in e for e in _issues(validate_bids(broken, tmp_path), "errors"))


def test_tree_holds_no_identity(exported):
    from ephys.catalog.audit import audit

    rep = audit(exported["bids"], exported["archive"])
    assert rep.n_files > 30 and rep.n_tokens > 0 and rep.ok, rep.hits
    names = " ".join(str(p) for p in exported["bids"].rglob("*"))
    assert "Muster" not in names and "Hans" not in names and "clinical/" not in names
    assert "Muster" not in exported["output"] + exported["stderr"] and "Hans" not in exported["stderr"]


def test_signals_events_channels_and_participants_follow_the_archive_and_catalog(exported):
    import mne
    import pyedflib

    from ephys.export.bids import check_bids_tree

    bids, rows = exported["bids"], rows_by_sha(exported["url"])
    rec = rows[sha(exported["extra"])]
    label = rec.subject.removeprefix("sub-")
    eeg = bids / f"sub-{label}" / "eeg"
    base = f"sub-{label}_task-clinical_run-1"
    # signals: the archive file as MNE reads it, to within one 16-bit code of each channel's own range
    want = mne.io.read_raw_edf(exported["extra"], preload=True, verbose="error").pick(LABELS)
    got = mne.io.read_raw_edf(eeg / f"{base}_eeg.edf", preload=True, verbose="error")
    assert got.ch_names == LABELS and got.info["sfreq"] == 256.0 and got.n_times == want.n_times
    w, g = want.get_data() * 1e6, got.get_data() * 1e6
    step = (w.max(axis=1) - w.min(axis=1)) / 65535 + 1e-6
    assert np.all(np.abs(g - w) <= step[:, None] * 1.01)
    with pyedflib.EdfReader(str(eeg / f"{base}_eeg.edf")) as f:  # anonymous EDF identity fields
        assert f.getPatientName() in ("X", "") and f.getStartdatetime().year == 1985
    # channels.tsv: QC status and reason; the 128-Hz EMG is left out (counted in the summary)
    ch = {r["name"]: r for r in _tsv(eeg / f"{base}_channels.tsv")}
    assert json.loads(rec.bad_channels_json) == {"C3": "flat"}
    assert (ch["C3"]["status"], ch["C3"]["status_description"]) == ("bad", "flat")
    assert {r["status"] for n, r in ch.items() if n != "C3"} == {"good"} and "EMG chin" not in ch
    assert "1 channels at another rate left out" in exported["output"]
    # events.tsv: the catalog's annotations (scrubbed), labels and HED
    ev = _tsv(eeg / f"{base}_events.tsv")
    assert [(float(e["onset"]), e["trial_type"], e["subcategory"], e["HED"]) for e in ev] == [
        (60.0, "Augen zu", "eyes_closed", "sc:Manual-eye-closure"),
        (90.0, "Patient [name] [name] gähnt", "patient_activity", "n/a"),
    ]
    sidecar = [e for f in bids.rglob("*_events.tsv") for e in _tsv(f) if e["source"] == "sidecar:tsv"]
    assert [(float(e["onset"]), float(e["duration"]), e["category"], e["HED"]) for e in sidecar] == [
        (120.0, 45.0, "seizure", "sc:Epileptic-seizure")]
    assert check_bids_tree(bids) == []  # every HED string valid for hedtools
    assert sum(len(_tsv(f)) for f in bids.rglob("*_events.tsv")) == _n_annotations(exported["url"])  # + 0 staged
    # participants: age and sex only; scans: the shifted start, never the header's date
    parts = _tsv(bids / "participants.tsv")
    assert list(parts[0]) == ["participant_id", "age", "sex"] and len(parts) == 7
    assert {"participant_id": f"sub-{label}", "age": str(rec.age_years), "sex": "M"} in parts and rec.age_years == 60
    scans = _tsv(bids / f"sub-{label}" / f"sub-{label}_scans.tsv")
    assert scans == [{"filename": f"eeg/{base}_eeg.edf", "acq_time": rec.start_time.strftime("%Y-%m-%dT%H:%M:%S")}]
    assert rec.start_time.year > 2100  # shifted by 100-200 years
    desc = json.loads((bids / "dataset_description.json").read_text())
    assert desc["HEDVersion"] == ["8.4.0", "sc:score_2.1.0"] and desc["GeneratedBy"][0]["Name"] == "ephys"


def _n_annotations(url: str) -> int:
    from sqlalchemy import func, select

    from ephys.catalog import models as m
    from ephys.catalog.db import Catalog

    cat = Catalog(url, readonly=True)
    try:
        with cat.session() as s:
            return s.execute(select(func.count(m.Annotation.id)).join(m.Recording).where(m.Recording.status == "ok")).scalar()
    finally:
        cat.close()


def test_refusals_name_what_and_leave_nothing_half_written(exported, tmp_path):
    from ephys.errors import BIDSLayoutError, ManifestError, MissingRecordingError, OutputError
    from ephys.export.bids import export_bids
    from ephys.ingest.writers.edf import write_edf
    from ephys.manifest.create import create_manifest
    from ephys.pipeline.run import ingest

    kw = dict(catalog=exported["url"])
    with pytest.raises(OutputError, match="exists"):
        export_bids(exported["manifest"], exported["archive"], exported["bids"], **kw)
    # a recording no longer in the archive: named by SHA-256 prefix, not by file; nothing written
    archive = tmp_path / "archive"
    shutil.copytree(exported["archive"], archive)
    gone = archive / "clinical" / "Muster_Hans_2021" / "Muster_Hans.edf"
    digest = sha(gone)
    gone.unlink()
    with pytest.raises(MissingRecordingError, match=digest[:12]) as exc:
        export_bids(exported["manifest"], archive, tmp_path / "b1", **kw)
    assert "Muster" not in str(exc.value) and not (tmp_path / "b1").exists()
    assert not list(tmp_path.glob(".b1.tmp*"))
    # the file changed since ingest
    shutil.copy(exported["extra"], gone)
    with open(gone, "r+b") as f:
        f.seek(-4, os.SEEK_END)
        f.write(b"\x01\x02\x03\x04")
    with pytest.raises(MissingRecordingError, match="changed"):
        export_bids(exported["manifest"], archive, tmp_path / "b2", **kw)
    assert not (tmp_path / "b2").exists() and not list(tmp_path.glob(".b2.tmp*"))
    # shards moved since the manifest was made
    moved = tmp_path / "m.json"
    doc = json.loads(exported["manifest"].read_text())
    for s in doc["shards"]:
        s["url"] = str(tmp_path / "nowhere" / Path(s["url"]).name)
    moved.write_text(json.dumps(doc))
    with pytest.raises(ManifestError, match="missing"):
        export_bids(moved, exported["archive"], tmp_path / "b3", **kw)
    # a discontinuous EDF+D (a gap between records): a layout BIDS through MNE cannot express
    a2 = tmp_path / "gappy"
    a2.mkdir()
    rng = np.random.default_rng(1)
    n_rec = 400
    onsets = [float(i) if i < 200 else float(i + 60) for i in range(n_rec)]
    write_edf(a2 / "d.edf", [rng.normal(0, 20, 256 * n_rec) for _ in LABELS], LABELS, [256] * 19, onsets=onsets)
    out = tmp_path / "gappy-out"
    ingest(a2, out, workers=1)
    url = f"sqlite:///{out / 'catalog.sqlite'}"
    create_manifest(url, ["valid = true"], tmp_path / "g.json")
    with pytest.raises(BIDSLayoutError, match=r"discontinuous \(2 segments, 1 gaps\)") as exc:
        export_bids(tmp_path / "g.json", a2, tmp_path / "b4", catalog=url)
    assert sha(a2 / "d.edf")[:12] in str(exc.value) and not (tmp_path / "b4").exists()


def test_hed_follows_the_site_taxonomy_the_catalog_was_labelled_with(exported, tmp_path):
    # A site's taxonomy (ingest --taxonomy / catalog relabel --taxonomy) that cites another SCORE tag for
    # eyes_closed: the export's HED follows the file given, not the packaged taxonomy. One recording's manifest.
    from importlib.resources import files

    from ephys.errors import RunError
    from ephys.export.bids import export_bids
    from ephys.manifest.create import create_manifest

    packaged = files("ephys.annotate").joinpath("taxonomy.yaml").read_text(encoding="utf-8")
    old = 'refs: ["HED-SCORE: Manual-eye-closure"]'
    assert packaged.count(old) == 1
    site = tmp_path / "site-taxonomy.yaml"
    site.write_text(packaged.replace(old, 'refs: ["HED-SCORE: Manual-eye-opening"]'), encoding="utf-8")
    rec = rows_by_sha(exported["url"])[sha(exported["extra"])]
    manifest = tmp_path / "one.json"
    create_manifest(exported["url"], ["valid = true", f"subject = {rec.subject}"], manifest)
    with pytest.raises(RunError, match="no-such.yaml"):
        export_bids(manifest, exported["archive"], tmp_path / "b0", catalog=exported["url"],
                    taxonomy=tmp_path / "no-such.yaml")
    assert not (tmp_path / "b0").exists()
    r = CliRunner().invoke(app, ["export", "bids", "--manifest", str(manifest), "--archive", str(exported["archive"]),
                                 "--out", str(tmp_path / "b1"), "--catalog", exported["url"], "--taxonomy", str(site)])
    assert r.exit_code == 0, r.output
    label = rec.subject.removeprefix("sub-")
    ev = _tsv(tmp_path / "b1" / f"sub-{label}" / "eeg" / f"sub-{label}_task-clinical_run-1_events.tsv")
    assert [(e["subcategory"], e["HED"]) for e in ev] == [("eyes_closed", "sc:Manual-eye-opening"),
                                                          ("patient_activity", "n/a")]


def test_hed_tags_come_from_the_taxonomy_and_validate():
    from ephys.annotate.hed import STAGE_TAGS, cited_tags, hed_issues, hed_tags, stage_tag
    from ephys.annotate.taxonomy import load_taxonomy

    tags = hed_tags()
    subs = load_taxonomy().subcategories
    cited = [s for s in subs if cited_tags(s.refs)]
    assert len(tags) >= 45 and set(tags) <= {s.path for s in cited}
    assert all(hed_issues(t) == [] for t in [*tags.values(), *STAGE_TAGS.values()])
    assert tags["seizure/seizure"] == "sc:Epileptic-seizure" and tags["interictal/spike"] == "sc:Spike"
    assert tags["artifact/eye"] == "Eye-artifact"  # common ancestor of Eye-blink- and Eye-movement-artifact
    assert "state/sleep_stage" not in tags  # Sleep-stage-reached requires a child: tagged by the text's stage
    assert (stage_tag("Schlafstadium 2"), stage_tag("S4"), stage_tag("REM"), stage_tag("Augen zu")) == (
        "sc:Sleep-stage-N2", "sc:Sleep-stage-N3", "sc:Sleep-stage-REM", None)
    assert hed_issues("sc:No-such-tag") != []
