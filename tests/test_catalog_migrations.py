"""Alembic migrations upgrade an existing catalog in place, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from ephys.catalog.db import Catalog, _alembic_config, head_revision, make_engine


def test_upgrade_existing_catalog_keeps_rows(catalog_url):
    engine = make_engine(catalog_url)
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO meta (key, value) VALUES ('shards_root', '/x')"))
        cols = {c["name"] for c in inspect(conn).get_columns("annotations")}
        assert "author" not in cols
    engine.dispose()

    c = Catalog(catalog_url)  # opening applies 0002
    try:
        assert c.get_meta("shards_root") == "/x"
        with c.engine.connect() as conn:
            cols = {col["name"] for col in inspect(conn).get_columns("annotations")}
            rev = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert {"author", "code"} <= cols and rev == head_revision() == "0002"
    finally:
        c.close()
    Catalog(catalog_url).close()  # opening again is a no-op
