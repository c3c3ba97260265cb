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


@pytest.fixture(scope="session")
def staged_corpus(tmp_path_factory):
    """``(archive, out, summary)`` of one ingest, staged with GSSC, of the DREAMS excerpt (60 epochs)
    and the Sleep-EDF PSG (10 epochs), native montage. Shared by the staging and report tests (GSSC
    loads its networks once per worker process, the slow part); treat ``out`` as read-only."""
    import shutil

    from ephys.pipeline.run import ingest
    from ephys.schemas import IngestConfig
    from tests.ingest_helpers import REAL

    if not REAL.exists():
        pytest.skip("../shared/data/real is not present")
    pytest.importorskip("gssc")
    a = tmp_path_factory.mktemp("sleep")
    for rel in ("dreams-sleep/excerpt3.edf", "sleep-edf/short_psg.edf"):
        shutil.copy(REAL / rel, a)
    out = tmp_path_factory.mktemp("out")
    s = ingest(a, out, config=IngestConfig(montage="native", stager="gssc"), workers=1)
    return a, out, s


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a test module of tiny CPU models and FFTs: fastest at that size, and it does not
    fight other jobs for the cores.  The previous count is restored after the module."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
