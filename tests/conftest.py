"""Shared fixtures.

``catalog_url`` runs a test once on a fresh SQLite file and once on a fresh
PostgreSQL database. The PostgreSQL run needs ``EPHYS_TEST_POSTGRES_URL``
(e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/test``), a URL of a user
that may create databases; without it that run is skipped.
"""

from __future__ import annotations

import os
import secrets

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_ENV = "EPHYS_TEST_POSTGRES_URL"


@pytest.fixture(params=["sqlite", "postgres"])
def catalog_url(request, tmp_path):
    """URL of an empty, uniquely named catalog database (SQLite file or PostgreSQL database)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.sqlite'}"
        return
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"set {POSTGRES_ENV} to run PostgreSQL catalog tests")
    name = f"ephys_test_{secrets.token_hex(6)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        try:
            with admin.connect() as conn:
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                )
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        finally:
            admin.dispose()
