"""Alembic migrations upgrade an existing catalog in place, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from ephys.catalog.db import SCHEMA_REVISION, Catalog, _alembic_config, current_revision, head_revision, make_engine
from ephys.errors import RunError


def test_upgrade_existing_catalog_keeps_rows(catalog_url):
    engine = make_engine(catalog_url)
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO meta (key, value) VALUES ('shards_root', '/x')"))
        conn.execute(text(
            "INSERT INTO recordings (sha256, format, n_files, path_hash, relpath, file_bytes, channels_json, "
            "output_channels_json, status, n_epochs, n_valid_epochs, n_packed, n_annotations, n_scrubbed, "
            "processing_hash, seconds_json, processed_at) VALUES ('ab' || repeat('0', 62), 'edf', 1, 'ph1', NULL, 10, "
            "'[]', '[]', 'failed', 0, 0, 0, 0, 0, 'h', '{}', CURRENT_TIMESTAMP)"
        ).bindparams() if catalog_url.startswith("postgresql") else text(
            "INSERT INTO recordings (sha256, format, n_files, path_hash, relpath, file_bytes, channels_json, "
            "output_channels_json, status, n_epochs, n_valid_epochs, n_packed, n_annotations, n_scrubbed, "
            "processing_hash, seconds_json, processed_at) VALUES ('ab' || printf('%062d', 0), 'edf', 1, 'ph1', NULL, 10, "
            "'[]', '[]', 'failed', 0, 0, 0, 0, 0, 'h', '{}', CURRENT_TIMESTAMP)"
        ))
        cols = {c["name"] for c in inspect(conn).get_columns("annotations")}
        assert "author" not in cols
    engine.dispose()

    c = Catalog(catalog_url)  # opening applies 0002 to 0006
    try:
        assert c.get_meta("shards_root") == "/x"
        with c.engine.connect() as conn:
            cols = {col["name"] for col in inspect(conn).get_columns("annotations")}
            rev = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            rec_cols = {col["name"] for col in inspect(conn).get_columns("recordings")}
            paths = conn.execute(text("SELECT r.sha256, p.path_hash FROM recording_paths p JOIN recordings r "
                                      "ON r.id = p.recording_id")).all()
        assert {"author", "code"} <= cols and rev == head_revision() == "0006"
        assert {"age_years", "sex", "start_time"} <= rec_cols
        assert paths == [("ab" + "0" * 62, "ph1")]  # 0003 carries each existing recording's path over
    finally:
        c.close()
    Catalog(catalog_url).close()  # opening again is a no-op


def test_schema_revision_is_the_migrations_head():
    # Opening a catalog compares with SCHEMA_REVISION without loading Alembic; a new migration must bump it.
    assert SCHEMA_REVISION == head_revision()


@pytest.mark.parametrize("target", [None, "0001", "0004", "head"])
def test_current_revision_reads_what_alembic_reads(catalog_url, target):
    engine = make_engine(catalog_url)
    try:
        if target is not None:
            cfg = _alembic_config()
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, target)
        with engine.connect() as conn:
            expected = MigrationContext.configure(conn).get_current_revision()
            assert current_revision(conn) == expected
        assert expected == {None: None, "head": SCHEMA_REVISION}.get(target, target)
        if target not in (None, "head"):  # read-only, an older catalog is refused with both revisions named
            with pytest.raises(RunError, match=f"revision {target}, this ephys needs {SCHEMA_REVISION}"):
                Catalog(catalog_url, readonly=True)
    finally:
        engine.dispose()
