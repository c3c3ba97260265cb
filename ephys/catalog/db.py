"""Opening a catalog: engine, schema migrations, and the writes the ingest driver makes.

The catalog is any SQLAlchemy URL: ``sqlite:///OUT/catalog.sqlite`` (default;
WAL journal, one writer) or ``postgresql+psycopg://user@host/db``. Opening
applies pending Alembic migrations, so an old catalog is upgraded in place.
Only the ingest driver writes; workers never touch the catalog.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, UTC
from pathlib import Path

from sqlalchemy import create_engine, delete, event, func, insert, select, text, update
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ephys.catalog import models as m
from ephys.errors import RunError

MIGRATIONS = Path(__file__).parent / "migrations"


#: Values per ``IN (...)`` list: well under SQLite's 32,766 bound parameters and PostgreSQL's 65,535.
IN_CHUNK = 500


def _by_sha(s: Session, column, shas: list[str]) -> dict:
    """``{sha256: column}`` of the recordings among ``shas``, in ``IN`` lists of :data:`IN_CHUNK`."""
    out: dict = {}
    for i in range(0, len(shas), IN_CHUNK):
        out.update(s.execute(select(m.Recording.sha256, column)
                             .where(m.Recording.sha256.in_(shas[i : i + IN_CHUNK]))).all())
    return out


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


#: File name of the default SQLite catalog inside an ingest output folder.
DEFAULT_CATALOG_NAME = "catalog.sqlite"


@functools.cache
def _as_is() -> tuple[str, ...]:
    """RecordingResult fields stored as they are in the Recording column of the same name (format, subject,
    sfreq...): a new one needs its column, not an edit of :meth:`Catalog.record_result`, which converts the others.
    (Imported here, not at module level: ``catalog stats`` and queries load no NumPy.)"""
    from ephys.schemas import RecordingResult

    same = set(RecordingResult.model_fields) & set(m.Recording.__table__.columns.keys())
    return tuple(sorted(same - {"sha256", "status", "staging_channels"}))


def epoch_row(result, epoch, key: str) -> dict:
    """The :class:`~ephys.catalog.models.Epoch` columns (except ids) of one epoch, plus ``recording`` (sha256), as
    :meth:`Catalog.commit_shard` takes them: ``result`` a :class:`~ephys.schemas.RecordingResult`, ``epoch`` one of
    its :class:`~ephys.schemas.EpochRecord`, ``key`` the shard sample key. Sleep probabilities (``p_w`` ...
    ``p_rem``) only where the epoch was staged."""
    st = epoch.sleep
    probs = dict(zip(("p_w", "p_n1", "p_n2", "p_n3", "p_rem"), st.probs)) if st and st.probs else {}
    # every EpochQC figure is an Epoch column of the same name: a new figure needs its column, not an edit here
    return dict(recording=result.sha256, index=epoch.index, start_s=epoch.start_s, key=key, **epoch.qc.model_dump(),
                mask="".join("1" if b else "0" for b in result.mask), stage=st.stage if st else None, **probs)


def default_catalog_url(out: str | Path) -> str:
    """``sqlite:///OUT/catalog.sqlite`` (absolute): the catalog of an ingest output folder when no URL is given."""
    return f"sqlite:///{Path(out).resolve() / DEFAULT_CATALOG_NAME}"


def redact_url(url: str) -> str:
    """The URL with any password masked, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL is reported by the caller
        return "<invalid catalog URL>"


#: The schema revision this code reads and writes: the head of ``migrations/versions`` (a test checks
#: that it is). Opening a catalog already there imports no Alembic (about 0.2 s of every command).
SCHEMA_REVISION = "0006"


def _alembic_config():
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    """The head revision of the migration scripts, as Alembic reads them (equals :data:`SCHEMA_REVISION`)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def current_revision(conn: Connection) -> str | None:
    """The revision a catalog is at: the row of Alembic's ``alembic_version`` table, None when it has
    none (a new, empty database). Read with plain SQL, as Alembic's ``MigrationContext`` reads it."""
    if not conn.dialect.has_table(conn, "alembic_version"):
        return None
    heads = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return heads[0] if len(heads) == 1 else ",".join(sorted(heads)) or None


def make_engine(url: str, *, readonly: bool = False) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys and a busy timeout.

    ``readonly``: a SQLite file is opened with ``mode=ro`` and its journal mode is left as it is,
    so a catalog on read-only storage (a frozen, shared corpus) can be queried; where its folder
    cannot be written and no write-ahead log is left beside it, also ``immutable=1`` (SQLite could
    not create the log's shared-memory index there; nothing can change such a file anyway). Source:
    https://www.sqlite.org/uri.html (``mode``, ``immutable``), https://www.sqlite.org/wal.html#readonly.
    """
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        db = u.database
        if readonly and db and db != ":memory:" and not db.startswith("file:"):
            import sqlite3
            import urllib.parse

            path = Path(db).resolve()
            query = "mode=ro"
            if not os.access(path.parent, os.W_OK) and not Path(f"{path}-wal").exists():
                query += "&immutable=1"
            target = f"file:{urllib.parse.quote(str(path))}?{query}"
            engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(target, uri=True, timeout=30,
                                                                                 check_same_thread=False))
        else:
            if db and db != ":memory:":
                Path(db).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            if not readonly:
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    engine = create_engine(url, pool_pre_ping=True)
    if readonly:
        engine = engine.execution_options(postgresql_readonly=True) if engine.dialect.name == "postgresql" else engine
    return engine


def on_readonly_storage(url: str) -> bool:
    """Whether ``url`` is a SQLite file that this process cannot write (the file or its folder):
    readers then open it with ``readonly=True`` instead of failing on the first write."""
    try:
        u = make_url(url)
    except Exception:  # noqa: BLE001 - a malformed URL is reported when it is opened
        return False
    db = u.database
    if u.get_backend_name() != "sqlite" or not db or db == ":memory:" or db.startswith("file:"):
        return False
    path = Path(db)
    return path.is_file() and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))


def upgrade(engine: Engine) -> None:
    """Apply pending migrations (idempotent)."""
    with engine.begin() as conn:
        if current_revision(conn) == SCHEMA_REVISION:
            return
        from alembic import command

        cfg = _alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class Catalog:
    """A live catalog: ``Catalog(url).session()`` for queries, plus the driver's writes."""

    def __init__(self, url: str, *, migrate: bool = True, readonly: bool = False):
        """Open the catalog at ``url``; ``migrate`` applies pending migrations; ``readonly`` opens it for
        reading only (queries, stats, verify, manifests): nothing is migrated or written, so a catalog on
        read-only storage works. Raises RunError when it is unreachable or, read-only, at an older schema
        revision than this code needs."""
        self.url = url
        try:
            self.engine = make_engine(url, readonly=readonly)
            if readonly:
                with self.engine.connect() as conn:
                    current = current_revision(conn)
                if current != SCHEMA_REVISION:
                    raise RunError(f"catalog {redact_url(url)} is at schema revision {current}, this ephys needs "
                                   f"{SCHEMA_REVISION}: open it once where it can be written (any ephys catalog command "
                                   "that writes, or ingest) to upgrade it")
            elif migrate:
                upgrade(self.engine)
            else:
                with self.engine.connect():
                    pass
        except (SQLAlchemyError, OSError) as exc:
            raise RunError(
                f"catalog {redact_url(url)} is unreachable: {exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}"
            ) from None
        self.session = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A read-only session whose statements all see one consistent state of the catalog.

        Readers (queries, manifests, verify) run while an ingest writes; without a
        snapshot two statements could straddle a shard commit (epochs counted
        before it, shards after). PostgreSQL: ``REPEATABLE READ``. SQLite: an
        explicit ``BEGIN``, since pysqlite opens no transaction for ``SELECT``; in
        WAL mode the read transaction keeps its snapshot and never blocks the writer.
        """
        with self.session() as s:
            if self.engine.dialect.name == "postgresql":
                s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            elif self.engine.dialect.name == "sqlite":
                s.connection().exec_driver_sql("BEGIN")
            yield s

    # -- meta ---------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        with self.session() as s:
            row = s.get(m.Meta, key)
            return row.value if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.session.begin() as s:
            row = s.get(m.Meta, key)
            if row is None:
                s.add(m.Meta(key=key, value=value))
            else:
                row.value = value

    # -- runs ---------------------------------------------------------------
    def begin_run(self, *, code_version: str, processing_hash: str, config: dict) -> int:
        with self.session.begin() as s:
            run = m.Run(
                started_at=utcnow(),
                status="running",
                code_version=code_version,
                processing_hash=processing_hash,
                config_json=json.dumps(config, sort_keys=True, default=str),
                n_discovered=0,
                n_skipped=0,
                n_ok=0,
                n_rejected=0,
                n_failed=0,
                eeg_hours=0.0,
                wall_s=0.0,
            )
            s.add(run)
            s.flush()
            return run.id

    def finish_run(self, run_id: int, status: str, **counts) -> None:
        with self.session.begin() as s:
            s.execute(
                update(m.Run).where(m.Run.id == run_id).values(status=status, finished_at=utcnow(), **counts)
            )

    # -- recordings ---------------------------------------------------------
    def recording_states(self) -> dict[str, tuple[str, int, int, str | None]]:
        """``{sha256: (status, n_epochs, n_packed, failure_code)}`` of every recording in the catalog."""
        with self.session() as s:
            rows = s.execute(select(m.Recording.sha256, m.Recording.status, m.Recording.n_epochs, m.Recording.n_packed,
                                    m.Recording.failure_code))
            return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}

    def packed_epochs(self, shas: list[str]) -> dict[str, set[int]]:
        """``{sha256: {epoch index, ...}}`` of the epochs already in committed shards."""
        out: dict[str, set[int]] = {sha: set() for sha in shas}
        if not shas:
            return out
        with self.session() as s:
            for i in range(0, len(shas), IN_CHUNK):
                rows = s.execute(select(m.Recording.sha256, m.Epoch.index).join(m.Epoch, m.Epoch.recording_id == m.Recording.id)
                                 .where(m.Recording.sha256.in_(shas[i : i + IN_CHUNK])))
                for sha, index in rows:
                    out[sha].add(index)
        return out

    def add_paths(self, paths: list[tuple[str, str, str | None]], *, run_id: int) -> int:
        """Record every archive path a recording was found at (``(sha256, path_hash, relpath)``;
        duplicates of one content share the recording). Known paths are left alone. Returns rows added."""
        if not paths:
            return 0
        with self.session.begin() as s:
            ids = _by_sha(s, m.Recording.id, sorted({p[0] for p in paths}))
            known = set(s.execute(select(m.RecordingPath.recording_id, m.RecordingPath.path_hash)
                                  .where(m.RecordingPath.recording_id.in_(list(ids.values())))).all())
            new = []
            for sha, path_hash, relpath in paths:
                rid = ids.get(sha)
                if rid is None or (rid, path_hash) in known:
                    continue
                known.add((rid, path_hash))
                new.append(m.RecordingPath(recording_id=rid, path_hash=path_hash, relpath=relpath, run_id=run_id))
            s.add_all(new)
            return len(new)

    def next_shard_index(self) -> int:
        with self.session() as s:
            top = s.scalar(select(func.max(m.Shard.index)))
            return 0 if top is None else top + 1

    # -- the ingest driver's writes -------------------------------------------
    def record_result(self, result, *, run_id: int, path_hash: str, relpath: str | None, processing_hash: str) -> None:
        """Insert or update a recording row and replace its annotation rows (one transaction).

        ``result`` is a :class:`~ephys.schemas.RecordingResult`. ``n_packed`` of
        an existing row is kept, so a recording whose epochs were partly packed
        before an interruption resumes where it stopped.
        """
        f = result.failure
        ok = result.status.value == "ok"
        values = {k: getattr(result, k) for k in _as_is()} | dict(
            n_files=1,
            path_hash=path_hash,
            relpath=relpath,
            channels_json=json.dumps(result.channels),
            output_channels_json=json.dumps(result.channel_names),
            status=result.status.value,
            failure_stage=f.stage if f else None,
            failure_code=f.code if f else None,
            failure_reason=f.reason if f else None,
            n_epochs=result.n_epochs,
            n_valid_epochs=result.n_valid_epochs,
            n_annotations=len(result.annotations),
            n_bad_channels=len(result.bad_channels) if ok else None,
            bad_channels_json=json.dumps(result.bad_channels) if ok else None,
            staging_channels=",".join(result.staging_channels) or None,
            processing_hash=processing_hash,
            seconds_json=json.dumps(result.seconds),
            run_id=run_id,
            processed_at=utcnow(),
        )
        with self.session.begin() as s:
            rec = s.scalar(select(m.Recording).where(m.Recording.sha256 == result.sha256))
            if rec is None:
                rec = m.Recording(sha256=result.sha256, n_packed=0, **values)
                s.add(rec)
                s.flush()
            else:
                if result.status.value != "ok":
                    s.execute(delete(m.EpochSummary).where(m.EpochSummary.recording_id == rec.id))
                    s.execute(delete(m.Epoch).where(m.Epoch.recording_id == rec.id))
                    values["n_packed"] = 0
                for k, v in values.items():
                    setattr(rec, k, v)
                s.execute(delete(m.Annotation).where(m.Annotation.recording_id == rec.id))
            s.add_all(
                m.Annotation(recording_id=rec.id, onset_s=a.onset_s, duration_s=a.duration_s, text=a.text,
                             source=a.source, author=a.author, code=a.code, category=a.category,
                             subcategory=a.subcategory, keyword=a.keyword, negated=a.negated, uncertain=a.uncertain,
                             match_score=a.match_score)
                for a in result.annotations
            )

    def recording_durations(self, shas: list[str]) -> dict[str, float | None]:
        """``{sha256: duration_s}`` of the catalog's recordings among ``shas`` (None where not known)."""
        with self.session() as s:
            return _by_sha(s, m.Recording.duration_s, shas)

    def replace_sidecar_annotations(self, recordings: list[str], annotations: dict[str, list], sidecars: list[dict],
                                    *, run_id: int) -> int:
        """Replace the sidecar annotations of ``recordings`` (sha256s: this run's) in one transaction.

        Every annotation row with a source ``sidecar:...`` of those recordings is deleted, then
        ``annotations`` (``{sha256: [Annotation, ...]}``, labelled) inserted, so a run gives the
        same rows however often it runs and a sidecar edited or removed takes its entries along.
        ``sidecars``: :class:`~ephys.catalog.models.AnnotationSidecar` column dicts, upserted by
        ``path_hash``. Returns the annotation rows inserted.
        """
        with self.session.begin() as s:
            ids: dict[str, int] = _by_sha(s, m.Recording.id, recordings)
            rec_ids = list(ids.values())
            for i in range(0, len(rec_ids), IN_CHUNK):
                s.execute(delete(m.Annotation).where(m.Annotation.recording_id.in_(rec_ids[i : i + IN_CHUNK]),
                                                     m.Annotation.source.like("sidecar:%")))
            rows = [
                m.Annotation(recording_id=ids[sha], onset_s=a.onset_s, duration_s=a.duration_s, text=a.text,
                             source=a.source, category=a.category, subcategory=a.subcategory, keyword=a.keyword,
                             negated=a.negated, uncertain=a.uncertain, match_score=a.match_score)
                for sha, anns in annotations.items() if sha in ids for a in anns
            ]
            s.add_all(rows)
            for row in sidecars:
                old = s.scalar(select(m.AnnotationSidecar).where(m.AnnotationSidecar.path_hash == row["path_hash"]))
                if old is None:
                    s.add(m.AnnotationSidecar(run_id=run_id, **row))
                else:
                    for k, v in (row | {"run_id": run_id}).items():
                        setattr(old, k, v)
            return len(rows)

    def commit_shard(self, info, *, run_id: int, epochs: list[dict], packed: dict[str, int]) -> None:
        """Record a finished shard, its epoch rows, their summaries (:mod:`ephys.catalog.summary`)
        and the recordings' packing progress atomically.

        ``epochs``: dicts with ``recording`` (sha256) and the :class:`~ephys.catalog.models.Epoch`
        columns except ids; ``packed``: ``{sha256: n_packed}`` after this shard.
        """
        from ephys.catalog.summary import summary_rows  # NumPy: only for writers, not stats or queries

        with self.session.begin() as s:
            shard = m.Shard(index=info.index, name=info.name, sha256=info.sha256, n_samples=info.n_samples,
                            n_bytes=info.n_bytes, run_id=run_id, created_at=utcnow())
            s.add(shard)
            s.flush()
            ids = dict(s.execute(select(m.Recording.sha256, m.Recording.id).where(m.Recording.sha256.in_(list(packed)))).all())
            cols = {k for e in epochs for k in e if k != "recording"}  # sleep probabilities only with a stager
            rows = [{k: e.get(k) for k in cols} | {"recording_id": ids[e["recording"]], "shard_id": shard.id} for e in epochs]
            if rows:
                s.execute(insert(m.Epoch), rows)  # one executemany, not 1,000 ORM objects
                s.execute(insert(m.EpochSummary), summary_rows(shard.id, rows))
            for sha, n in packed.items():
                s.execute(update(m.Recording).where(m.Recording.sha256 == sha).values(n_packed=n))

    def reset(self) -> None:
        """Delete every recording, epoch, annotation and shard row and the processing
        settings (``ingest --force``); runs and the secret fingerprint stay."""
        with self.session.begin() as s:
            for table in (m.EpochSummary, m.Epoch, m.Annotation, m.RecordingPath, m.Shard, m.AnnotationSidecar,
                          m.Recording):
                s.execute(delete(table))
            s.execute(delete(m.Meta).where(m.Meta.key.in_(["processing_hash", "processing_config"])))
