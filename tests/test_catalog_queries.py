"""The filter language, catalog statistics, recording and epoch queries, and ``ephys catalog``."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import ephys.cli
from ephys.catalog import models as m
from ephys.catalog.db import Catalog
from ephys.catalog.queries import (
    RECORDING_COLUMNS,
    Clause,
    EpochRow,
    catalog_stats,
    corpus_layout,
    open_catalog,
    parse_where,
    query_recordings,
    select_epochs,
)
from ephys.errors import RunError
from tests.catalog_helpers import REGIONS, SHA, SHARD_NAMES, key, populate


@pytest.fixture
def cat(catalog_url, tmp_path):
    catalog = Catalog(catalog_url)
    info = populate(catalog, tmp_path)
    catalog.info = info
    yield catalog
    catalog.close()


def recs(catalog, *where) -> list[str]:
    """Letters of the recordings a query returns, in order."""
    by_prefix = {sha[:16]: letter for letter, sha in SHA.items()}
    return [by_prefix[r["sha256"]] for r in query_recordings(catalog, list(where))]


def keys(catalog, *where) -> list[str]:
    return [r.key for r in select_epochs(catalog, list(where))]


def k(*names: str) -> list[str]:
    """Keys from short names like 'a1' (recording a, epoch 1)."""
    return [key(n[0], int(n[1:])) for n in names]


# ---------------------------------------------------------------------------
# parse_where
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("status = ok", Clause("status", "=", "ok", "recording")),
        ("status=ok", Clause("status", "=", "ok", "recording")),
        ("  STATUS   !=  failed ", Clause("status", "!=", "failed", "recording")),
        ("format ~ ED", Clause("format", "~", "ED", "recording")),
        ("subject = 'S 01'", Clause("subject", "=", "S 01", "recording")),
        ('subject = "S01"', Clause("subject", "=", "S01", "recording")),
        ("duration_s >= 3600", Clause("duration_s", ">=", 3600.0, "recording")),
        ("sfreq < 256.5", Clause("sfreq", "<", 256.5, "recording")),
        ("n_eeg_channels > 18", Clause("n_eeg_channels", ">", 18, "recording")),
        ("n_channels <= 32", Clause("n_channels", "<=", 32, "recording")),
        ("valid = true", Clause("valid", "=", True, "epoch")),
        ("valid = FALSE", Clause("valid", "=", False, "epoch")),
        ("nonfinite = 1", Clause("nonfinite", "=", True, "epoch")),
        ("nonfinite != 0", Clause("nonfinite", "!=", False, "epoch")),
        ("max_abs_uv < 1e3", Clause("max_abs_uv", "<", 1000.0, "epoch")),
        ("annotation ~ eyes open", Clause("annotation", "~", "eyes open", "annotation")),
        ("annotation = a=b", Clause("annotation", "=", "a=b", "annotation")),
    ],
)
def test_parse_where(text, expected):
    clause = parse_where(text)
    assert clause == expected
    assert type(clause.value) is type(expected.value)


def test_clause_str():
    assert str(parse_where("valid=1")) == "valid = true"
    assert str(parse_where("n_flat<=2")) == "n_flat <= 2"


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("colour = red", "unknown field 'colour'"),
        ("n_channels == 19", "unknown operator '=='"),
        ("n_channels => 19", "unknown operator '=>'"),
        ("n_channels 19", "expected FIELD OP VALUE"),
        ("", "expected FIELD OP VALUE"),
        ("= ok", "expected FIELD OP VALUE"),
        ("n_channels ~ 19", "operator '~' does not apply to n_channels"),
        ("status < ok", "operator '<' does not apply to status"),
        ("valid > 0", "operator '>' does not apply to valid"),
        ("annotation != T1", "operator '!=' does not apply to annotation"),
        ("n_channels >= 19.5", "n_channels takes an integer, got '19.5'"),
        ("duration_s >= long", "duration_s takes a number, got 'long'"),
        ("duration_s >= nan", "duration_s takes a finite number"),
        ("valid = yes", "valid is true/false (or 1/0), got 'yes'"),
        ("status = okay", "status must be one of ok, rejected, failed, got 'okay'"),
        ("subject =", "has no value"),
        ("subject = ''", "has no value"),
    ],
)
def test_parse_where_rejects(text, fragment):
    with pytest.raises(ValueError) as err:
        parse_where(text)
    assert fragment in str(err.value)


def test_unknown_field_lists_valid_fields():
    with pytest.raises(ValueError) as err:
        parse_where("channels >= 19")
    msg = str(err.value)
    assert (
        "recording fields: status, format, subject, duration_s, n_channels, n_eeg_channels, sfreq, n_epochs, "
        "n_valid_epochs, n_annotations, failure_code, failure_stage, montage, n_bad_channels, age_years, sex, "
        "stager; epoch fields: valid, n_flat, n_clipped, nonfinite, max_abs_uv, start_s, score, n_artifact, "
        "max_ptp_uv, line_ratio, emg_ratio, drift_ratio, max_kurtosis, stage, p_w, p_n1, p_n2, p_n3, p_rem; "
        "special: annotation, category, subcategory (with = or ~)"
    ) in msg


#: Epoch columns that are identifiers or layout, not figures one selects by.
EPOCH_NOT_FILTERED = {"id", "recording_id", "shard_id", "key", "index", "mask"}


def test_filter_fields_are_catalog_columns_of_the_same_type():
    # The filter language's field lists are written by hand (the command line describes them without importing
    # SQLAlchemy); this ties them to the ORM: every field is a column of its table with the same Python type, and
    # a new epoch column is filterable unless it is added to the identifiers above.
    from ephys.catalog.filters import EPOCH_FIELDS, RECORDING_FIELDS

    for model, fields in ((m.Recording, RECORDING_FIELDS), (m.Epoch, EPOCH_FIELDS)):
        columns = {c.name: c.type.python_type.__name__ for c in model.__table__.columns}
        assert {f: columns.get(f) for f in fields} == dict(fields), model.__name__
    assert set(m.Epoch.__table__.columns.keys()) - set(EPOCH_FIELDS) == EPOCH_NOT_FILTERED


def test_bad_clause_raises_before_query(cat):
    with pytest.raises(ValueError, match="unknown field 'durations'"):
        query_recordings(cat, ["durations > 3"])
    with pytest.raises(ValueError, match="unknown field 'x'"):
        select_epochs(cat, ["status = ok", "x = 1"])
    with pytest.raises(ValueError, match="limit must be 0 or more"):
        query_recordings(cat, [], limit=-1)


# ---------------------------------------------------------------------------
# stats
# ---------------------------------------------------------------------------


def test_catalog_stats(cat):
    info = cat.info
    assert catalog_stats(cat) == {
        "recordings": {"total": 4, "ok": 2, "rejected": 1, "failed": 1},
        "failure_codes": {"rejected": {"too_short": 1}, "failed": {"corrupt": 1}},
        "eeg_hours": {"ok": 225.0 / 3600.0, "read": 237.0 / 3600.0},
        "epochs": {"total": 7, "valid": 5},
        "shards": {"count": 2, "samples": 7, "bytes": sum(info.shard_bytes)},
        "annotations": 6,
        "annotation_categories": {},
        "annotations_unlabelled": 6,
        "annotations_from_sidecars": 0,
        "sidecars": {"files": 0, "entries": 0, "attached": 0},
        "subjects": {"total": 3, "ok": 2},
        "formats": {"bdf": 1, "edf": 3},
        "runs": {"count": 1, "last_status": "complete", "last_started_at": "2026-11-20T09:00:00"},
    }


def test_catalog_stats_empty(catalog_url):
    catalog = Catalog(catalog_url)
    try:
        assert catalog_stats(catalog) == {
            "recordings": {"total": 0, "ok": 0, "rejected": 0, "failed": 0},
            "failure_codes": {"rejected": {}, "failed": {}},
            "eeg_hours": {"ok": 0.0, "read": 0.0},
            "epochs": {"total": 0, "valid": 0},
            "shards": {"count": 0, "samples": 0, "bytes": 0},
            "annotations": 0,
            "annotation_categories": {},
            "annotations_unlabelled": 0,
            "annotations_from_sidecars": 0,
            "sidecars": {"files": 0, "entries": 0, "attached": 0},
            "subjects": {"total": 0, "ok": 0},
            "formats": {},
            "runs": {"count": 0, "last_status": None, "last_started_at": None},
        }
        assert corpus_layout(catalog) == (250.0, 30.0)
    finally:
        catalog.close()


def test_stats_accepts_url(cat):
    assert catalog_stats(cat.url)["recordings"]["total"] == 4


# ---------------------------------------------------------------------------
# recordings
# ---------------------------------------------------------------------------


def test_query_recordings_rows(cat):
    rows = query_recordings(cat, [])
    assert [r["sha256"] for r in rows] == [SHA[x][:16] for x in "abcd"]
    assert all(tuple(r) == RECORDING_COLUMNS for r in rows)
    assert rows[0] == {
        "sha256": SHA["a"][:16],
        "format": "edf",
        "status": "ok",
        "failure_code": None,
        "failure_reason": None,
        "duration_s": 100.0,
        "n_channels": 23,
        "n_eeg_channels": 19,
        "sfreq": 256.0,
        "n_epochs": 3,
        "n_valid_epochs": 2,
        "n_annotations": 2,
        "subject": "S01",
        "n_bad_channels": None,
    }
    assert rows[3] == {
        "sha256": SHA["d"][:16],
        "format": "edf",
        "status": "failed",
        "failure_code": "corrupt",
        "failure_reason": "file size does not match the header",
        "duration_s": None,
        "n_channels": None,
        "n_eeg_channels": None,
        "sfreq": None,
        "n_epochs": 0,
        "n_valid_epochs": 0,
        "n_annotations": 0,
        "subject": None,
        "n_bad_channels": None,
    }


def test_query_recordings_limit(cat):
    assert recs(cat) == ["a", "b", "c", "d"]
    assert [r["sha256"] for r in query_recordings(cat, [], limit=2)] == [SHA["a"][:16], SHA["b"][:16]]
    assert query_recordings(cat, [], limit=0) == []


@pytest.mark.parametrize(
    "clauses, expected",
    [
        # status
        (["status = ok"], ["a", "b"]),
        (["status != ok"], ["c", "d"]),
        (["status ~ EJ"], ["c"]),
        # format
        (["format = edf"], ["a", "c", "d"]),
        (["format != edf"], ["b"]),
        (["format ~ DF"], ["a", "b", "c", "d"]),
        # subject (NULL-safe !=)
        (["subject = S02"], ["b"]),
        (["subject != S02"], ["a", "c", "d"]),
        (["subject ~ s0"], ["a", "b", "c"]),
        # numbers
        (["duration_s > 100"], ["b"]),
        (["duration_s >= 100"], ["a", "b"]),
        (["duration_s < 100"], ["c"]),
        (["duration_s <= 100"], ["a", "c"]),
        (["duration_s = 12"], ["c"]),
        (["duration_s != 12"], ["a", "b", "d"]),
        (["n_channels >= 23"], ["a", "b"]),
        (["n_eeg_channels = 19"], ["a", "c"]),
        (["n_eeg_channels > 19"], ["b"]),
        (["sfreq >= 256"], ["a", "b"]),
        (["sfreq < 256"], ["c"]),
        (["n_epochs >= 1"], ["a", "b"]),
        (["n_epochs = 0"], ["c", "d"]),
        (["n_valid_epochs >= 3"], ["b"]),
        (["n_annotations > 0"], ["a", "b", "c"]),
        (["n_annotations = 0"], ["d"]),
        # failures
        (["failure_code = too_short"], ["c"]),
        (["failure_code != too_short"], ["a", "b", "d"]),
        (["failure_code ~ CORR"], ["d"]),
        (["failure_stage = read"], ["d"]),
        (["failure_stage = qc"], ["c"]),
        # montage
        (["montage = regional8"], ["a", "b"]),
        (["montage != regional8"], ["c", "d"]),
        # several clauses (AND)
        (["format = edf", "status = ok"], ["a"]),
        (["format = edf", "n_eeg_channels = 19", "duration_s < 50"], ["c"]),
        # epoch fields: has an epoch matching
        (["valid = false"], ["a", "b"]),
        (["nonfinite = true"], ["b"]),
        (["n_flat >= 5"], ["a"]),
        (["n_clipped >= 2"], ["b"]),
        (["max_abs_uv > 200"], ["b"]),
        (["start_s >= 90"], ["b"]),
        # epoch clauses together must hold for one epoch
        (["valid = false", "n_flat >= 1"], ["a"]),
        (["nonfinite = true", "start_s < 90"], []),
        # annotations: recordings having one (any status)
        (["annotation ~ t1"], ["a", "c"]),
        (["annotation = T1"], ["a", "c"]),
        (["annotation = t1"], []),
        (["annotation ~ anfall"], ["a", "b"]),
        (["annotation = Anfall"], ["a"]),
        (["annotation ~ anfall", "annotation ~ spike"], ["b"]),
        (["annotation ~ t1", "status = ok"], ["a"]),
    ],
)
def test_query_recordings_filters(cat, clauses, expected):
    assert recs(cat, *clauses) == expected


def test_substring_escapes_like_wildcards(cat):
    assert recs(cat, "subject ~ %") == []
    assert recs(cat, "format ~ _") == []
    assert recs(cat, "annotation ~ %") == []


# ---------------------------------------------------------------------------
# epochs
# ---------------------------------------------------------------------------


def test_select_epochs_rows_in_shard_order(cat):
    info = cat.info
    rows = select_epochs(cat, [])
    assert [r.key for r in rows] == info.shard_keys[0] + info.shard_keys[1]
    assert [r.key for r in rows] == k("a0", "a1", "a2", "b0", "b1", "b2", "b3")
    assert rows[0] == EpochRow(
        key=key("a", 0),
        shard_name=SHARD_NAMES[0],
        shard_sha256=info.shard_sha256[0],
        shard_n_samples=4,
        shard_index=0,
        recording=SHA["a"],
        subject="S01",
        montage="regional8",
        channel_names=tuple(REGIONS),
        source_sfreq=256.0,
    )
    assert rows[6] == EpochRow(
        key=key("b", 3),
        shard_name=SHARD_NAMES[1],
        shard_sha256=info.shard_sha256[1],
        shard_n_samples=3,
        shard_index=1,
        recording=SHA["b"],
        subject="S02",
        montage="regional8",
        channel_names=tuple(REGIONS),
        source_sfreq=512.0,
    )


def test_epochs_of_non_ok_recordings_are_not_selected(cat):
    """Epoch rows of a recording that is not 'ok' are not in the corpus."""
    with cat.session.begin() as s:
        s.query(m.Recording).filter(m.Recording.sha256 == SHA["b"]).update({"status": "failed"})
    assert keys(cat) == k("a0", "a1", "a2")
    assert catalog_stats(cat)["epochs"] == {"total": 3, "valid": 2}


@pytest.mark.parametrize(
    "clauses, expected",
    [
        (["valid = true"], ["a0", "a2", "b0", "b1", "b2"]),
        (["valid = 0"], ["a1", "b3"]),
        (["valid != true"], ["a1", "b3"]),
        (["nonfinite = true"], ["b3"]),
        (["nonfinite = false"], ["a0", "a1", "a2", "b0", "b1", "b2"]),
        (["n_flat = 0"], ["a0", "a2", "b0", "b2", "b3"]),
        (["n_flat > 0"], ["a1", "b1"]),
        (["n_flat != 5"], ["a0", "a2", "b0", "b1", "b2", "b3"]),
        (["n_clipped >= 1"], ["a2", "b2"]),
        (["n_clipped < 1"], ["a0", "a1", "b0", "b1", "b3"]),
        (["max_abs_uv > 100"], ["a2", "b2"]),
        (["max_abs_uv <= 60"], ["a1", "b0", "b3"]),
        (["max_abs_uv = 95"], ["b1"]),
        (["start_s = 0"], ["a0", "b0"]),
        (["start_s >= 60"], ["a2", "b2", "b3"]),
        (["start_s < 30"], ["a0", "b0"]),
        # recording fields apply to the epoch's recording
        (["subject = S02"], ["b0", "b1", "b2", "b3"]),
        (["format = edf"], ["a0", "a1", "a2"]),
        (["n_eeg_channels >= 20", "valid = true"], ["b0", "b1", "b2"]),
        (["status = rejected"], []),
        (["montage = regional8", "max_abs_uv < 90", "valid = true"], ["a0", "b0"]),
    ],
)
def test_select_epochs_filters(cat, clauses, expected):
    assert keys(cat, *clauses) == k(*expected)


@pytest.mark.parametrize(
    "clauses, expected",
    [
        # T1 at 35 s for 2 s: inside a1 only; the rejected recording's T1 brings no epochs
        (["annotation ~ t1"], ["a1"]),
        (["annotation = T1"], ["a1"]),
        (["annotation = t1"], []),
        # zero duration at 60 s: the epoch that contains 60 (a2), not the one ending there (a1)
        (["annotation = Anfall"], ["a2"]),
        # 25 s + 10 s spans b0 and b1
        (["annotation = Anfall rechts"], ["b0", "b1"]),
        (["annotation ~ anfall"], ["a2", "b0", "b1"]),
        # [0, 30] is closed: it touches the start of b1
        (["annotation = Spike"], ["b0", "b1"]),
        # negative duration counts as zero: 90 s lies in b3 only
        (["annotation = artefakt"], ["b3"]),
        # several annotation clauses: each must overlap
        (["annotation ~ anfall", "annotation ~ spike"], ["b0", "b1"]),
        (["annotation ~ anfall", "valid = true", "start_s > 0"], ["a2", "b1"]),
        (["annotation ~ nothing like this"], []),
    ],
)
def test_annotation_overlap(cat, clauses, expected):
    assert keys(cat, *clauses) == k(*expected)


def test_annotation_overlap_follows_run_epoch_length(cat):
    """The overlap window is the corpus epoch length recorded in the latest run."""
    with cat.session.begin() as s:
        run = s.get(m.Run, cat.info.run_id)
        run.config_json = json.dumps({"sfreq": 250.0, "epoch_s": 20.0})
    assert corpus_layout(cat) == (250.0, 20.0)
    # Anfall rechts [25, 35]: with 20-s epochs at 0 and 30 only b1 overlaps it
    assert keys(cat, "annotation = Anfall rechts") == k("b1")


def test_zero_duration_annotation_at_epoch_boundary(cat):
    with cat.session.begin() as s:
        rec_b = s.query(m.Recording).filter(m.Recording.sha256 == SHA["b"]).one()
        s.add(m.Annotation(recording_id=rec_b.id, onset_s=30.0, duration_s=0.0, text="Marker", source="edf+"))
        s.add(m.Annotation(recording_id=rec_b.id, onset_s=119.5, duration_s=0.0, text="Ende", source="edf+"))
    assert keys(cat, "annotation = Marker") == k("b1")
    assert keys(cat, "annotation = Ende") == k("b3")


# ---------------------------------------------------------------------------
# opening
# ---------------------------------------------------------------------------


def test_open_missing_sqlite_catalog(tmp_path):
    path = tmp_path / "nothing" / "catalog.sqlite"
    with pytest.raises(RunError, match="no catalog at"):
        open_catalog(f"sqlite:///{path}")
    with pytest.raises(RunError, match="no catalog at"):
        catalog_stats(f"sqlite:///{path}")
    assert not path.exists()


def test_open_unreachable_catalog():
    with pytest.raises(RunError, match="is unreachable"):
        query_recordings("postgresql+psycopg://nobody@127.0.0.1:1/none", [])
    with pytest.raises(RunError, match="not a catalog URL"):
        open_catalog("not a url")


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


@pytest.fixture
def cli():
    ephys.cli._register()
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(ephys.cli.app, list(args))

    return invoke


def test_cli_stats_json(cat, cli):
    res = cli("catalog", "stats", "--catalog", cat.url, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == catalog_stats(cat)


def test_cli_stats_table(cat, cli):
    res = cli("catalog", "stats", "--catalog", cat.url)
    assert res.exit_code == 0, res.output
    lines = [" ".join(line.replace("│", " ").split()) for line in res.stdout.splitlines()]
    assert "recordings 4" in lines
    assert "failed: corrupt 1" in lines
    assert "rejected: too_short 1" in lines
    assert "epochs 7" in lines
    assert "valid 5" in lines
    assert "EEG hours (ok) 0.06" in lines


def test_cli_stats_out_folder(cat, cli, tmp_path):
    if not cat.url.startswith("sqlite"):
        pytest.skip("--out names a SQLite catalog")
    res = cli("catalog", "stats", "--out", str(tmp_path), "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["recordings"]["total"] == 4


def test_cli_query_json(cat, cli):
    res = cli("catalog", "query", "--catalog", cat.url, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["count"] == 4
    assert out["where"] == []
    assert out["recordings"] == query_recordings(cat, [])


@pytest.mark.parametrize(
    "options, clauses, expected",
    [
        (["--status", "ok"], ["status = ok"], ["a", "b"]),
        (["--format", "bdf"], ["format = bdf"], ["b"]),
        (["--min-duration", "100"], ["duration_s >= 100.0"], ["a", "b"]),
        (["--min-channels", "20"], ["n_eeg_channels >= 20"], ["b"]),
        (["--min-valid-epochs", "2"], ["n_valid_epochs >= 2"], ["a", "b"]),
        (["--subject", "S03"], ["subject = S03"], ["c"]),
        (["--annotation", "t1"], ["annotation ~ t1"], ["a", "c"]),
        (["--failure-code", "corrupt"], ["failure_code = corrupt"], ["d"]),
        (
            ["--status", "ok", "--where", "valid = false", "--where", "n_flat >= 1"],
            ["status = ok", "valid = false", "n_flat >= 1"],
            ["a"],
        ),
        (["--where", "status != ok", "--limit", "1"], ["status != ok"], ["c"]),
    ],
)
def test_cli_query_options(cat, cli, options, clauses, expected):
    res = cli("catalog", "query", "--catalog", cat.url, "--json", *options)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["where"] == clauses
    assert out["count"] == len(expected)
    assert [r["sha256"] for r in out["recordings"]] == [SHA[x][:16] for x in expected]


def test_cli_query_table(cat, cli):
    res = cli("catalog", "query", "--catalog", cat.url, "--status", "ok")
    assert res.exit_code == 0, res.output
    assert "2 recordings where status = ok" in res.stdout
    assert SHA["a"][:16] in res.stdout
    assert SHA["b"][:16] in res.stdout
    assert SHA["c"][:16] not in res.stdout


def test_cli_query_bad_clause(cat, cli):
    res = cli("catalog", "query", "--catalog", cat.url, "--where", "colour = red")
    assert res.exit_code == 2
    assert res.stdout == ""
    assert res.stderr.startswith("error: unknown field 'colour' in clause 'colour = red'; recording fields: status,")
    assert "Traceback" not in res.output


def test_cli_missing_catalog(cli, tmp_path):
    res = cli("catalog", "stats", "--out", str(tmp_path / "none"))
    assert res.exit_code == 2
    assert res.stderr == f"error: no catalog at {tmp_path / 'none' / 'catalog.sqlite'} (run `ephys ingest` first, or give --catalog URL)\n"
    res = cli("catalog", "query", "--catalog", "postgresql+psycopg://nobody@127.0.0.1:1/none", "--json")
    assert res.exit_code == 2
    assert res.stderr.startswith("error: catalog postgresql+psycopg://nobody@127.0.0.1:1/none is unreachable")


def test_cli_needs_catalog_or_out(cli):
    res = cli("catalog", "stats")
    assert res.exit_code == 2
    assert "give --catalog URL or --out DIR" in res.output
