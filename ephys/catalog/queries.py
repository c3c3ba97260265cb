"""Reading the catalog: corpus statistics, recording and epoch selections.

Selections are written in the filter language of :mod:`ephys.catalog.filters` (``FIELD OP VALUE``
clauses that must all hold; its names are re-exported here); this module turns parsed clauses
into SQL and runs them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import ColumnElement, String, and_, case, cast, func, literal, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from ephys.catalog import models as m
from ephys.catalog.filters import (  # noqa: F401 - the filter language, re-exported
    ANNOTATION_FIELD,
    EPOCH_FIELDS,
    LABEL_FIELDS,
    OPERATORS,
    RECORDING_FIELDS,
    STATUSES,
    Clause,
    FieldType,
    parse_all,
    parse_where,
    valid_fields_text,
)
from ephys.catalog.db import Catalog, on_readonly_storage, redact_url
from ephys.errors import RunError

#: Default output sampling frequency (Hz) and epoch length (s) when no run recorded them.
DEFAULT_SFREQ = 250.0
DEFAULT_EPOCH_S = 30.0

# ---------------------------------------------------------------------------
# SQL expressions
# ---------------------------------------------------------------------------


def _compare(col, op: str, value) -> ColumnElement[bool]:
    if op == "~":
        return col.icontains(str(value), autoescape=True)
    if op == "=":
        return col == value
    if op == "!=":
        return col.is_distinct_from(value)
    if op == "<":
        return col < value
    if op == "<=":
        return col <= value
    if op == ">":
        return col > value
    if op == ">=":
        return col >= value
    raise ValueError(f"unknown operator {op!r}")  # pragma: no cover - parse_where rejects it


def _annotation_text(clause: Clause) -> ColumnElement[bool]:
    """An annotation clause: text, or a taxonomy label of a non-negated annotation."""
    if clause.field == ANNOTATION_FIELD:
        return _compare(m.Annotation.text, clause.op, clause.value)
    col = getattr(m.Annotation, clause.field)
    return and_(_compare(col, clause.op, clause.value), m.Annotation.negated.is_not(True))


def _epoch_overlaps_annotation(clause: Clause, epoch_s: float) -> ColumnElement[bool]:
    """EXISTS an annotation of the epoch's recording that overlaps the epoch and matches the text."""
    a = m.Annotation
    end = a.onset_s + case((a.duration_s > 0, a.duration_s), else_=literal(0.0))
    return (
        select(a.id)
        .where(
            a.recording_id == m.Epoch.recording_id,
            m.Epoch.start_s <= end,
            a.onset_s < m.Epoch.start_s + epoch_s,
            _annotation_text(clause),
        )
        .exists()
    )


def recording_conditions(clauses: Sequence[Clause]) -> list[ColumnElement[bool]]:
    """SQL conditions on ``recordings`` for a recording query.

    Recording clauses compare columns; epoch clauses together become one
    "has an epoch matching all of them"; each annotation clause becomes
    "has an annotation with that text".
    """
    conds: list[ColumnElement[bool]] = []
    epoch_conds: list[ColumnElement[bool]] = []
    for c in clauses:
        if c.kind == "recording":
            conds.append(_compare(getattr(m.Recording, c.field), c.op, c.value))
        elif c.kind == "epoch":
            epoch_conds.append(_compare(getattr(m.Epoch, c.field), c.op, c.value))
        else:
            conds.append(
                select(m.Annotation.id)
                .where(m.Annotation.recording_id == m.Recording.id, _annotation_text(c))
                .exists()
            )
    if epoch_conds:
        conds.append(select(m.Epoch.id).where(m.Epoch.recording_id == m.Recording.id, *epoch_conds).exists())
    return conds


def epoch_conditions(clauses: Sequence[Clause], epoch_s: float = DEFAULT_EPOCH_S) -> list[ColumnElement[bool]]:
    """SQL conditions for an epoch query joined to ``recordings``.

    Annotation clauses select epochs overlapping a matching annotation of
    their own recording (epoch length ``epoch_s``).
    """
    conds: list[ColumnElement[bool]] = []
    for c in clauses:
        if c.kind == "recording":
            conds.append(_compare(getattr(m.Recording, c.field), c.op, c.value))
        elif c.kind == "epoch":
            conds.append(_compare(getattr(m.Epoch, c.field), c.op, c.value))
        else:
            conds.append(_epoch_overlaps_annotation(c, epoch_s))
    return conds


# ---------------------------------------------------------------------------
# Opening
# ---------------------------------------------------------------------------


def open_catalog(url: str, *, must_exist: bool = True) -> Catalog:
    """Open a catalog for reading.

    Returns
    -------
    Catalog
        The open catalog (migrated to the current schema; on storage this process cannot write,
        opened read-only instead, which needs the current schema); close it when done.

    Raises
    ------
    RunError
        If the URL is malformed, the server is unreachable, or (with
        ``must_exist``) a SQLite catalog file does not exist, so that a typo
        in ``--out`` does not silently create an empty catalog.
    """
    try:
        u = make_url(url)
    except (ArgumentError, ValueError):
        raise RunError(f"not a catalog URL: {redact_url(url)}") from None
    if must_exist and u.get_backend_name() == "sqlite":
        db = u.database
        if db and db != ":memory:" and not db.startswith("file:") and not Path(db).is_file():
            raise RunError(f"no catalog at {db} (run `ephys ingest` first, or give --catalog URL)")
    try:
        return Catalog(url, readonly=on_readonly_storage(url))
    except ImportError as exc:
        raise RunError(f"catalog {redact_url(url)}: database driver missing ({exc.name})") from None


@contextmanager
def opened_catalog(catalog: Catalog | str) -> Iterator[Catalog]:
    """Context manager yielding ``catalog`` as is, or, for a URL, a catalog opened with
    :func:`open_catalog` and closed on exit (raises RunError like it)."""
    if isinstance(catalog, Catalog):
        yield catalog
        return
    cat = open_catalog(catalog)
    try:
        yield cat
    finally:
        cat.close()


def _query_failed(cat: Catalog, exc: SQLAlchemyError) -> RunError:
    """The RunError for a database error during a query (the CLI reports it without a traceback)."""
    return RunError(f"catalog {redact_url(cat.url)} query failed: {exc.__class__.__name__}: "
                    f"{str(exc).splitlines()[0][:200]}")


def _reading(fn):
    """Turn database errors during a query into RunError (the CLI reports them without a traceback)."""

    def wrapper(catalog, *args, **kwargs):
        with opened_catalog(catalog) as cat:
            try:
                return fn(cat, *args, **kwargs)
            except SQLAlchemyError as exc:
                raise _query_failed(cat, exc) from None

    wrapper.__name__ = fn.__name__
    wrapper.__qualname__ = fn.__qualname__
    wrapper.__doc__ = fn.__doc__
    wrapper.__wrapped__ = fn
    return wrapper


def corpus_layout(catalog: Catalog | str) -> tuple[float, float]:
    """Output sampling frequency (Hz) and epoch length (s) of the corpus.

    Returns
    -------
    tuple[float, float]
        ``(sfreq, epoch_s)`` from the latest run's ``config_json`` keys ``"sfreq"``
        and ``"epoch_s"``; :data:`DEFAULT_SFREQ` / :data:`DEFAULT_EPOCH_S` where
        there is no run, the JSON is unreadable, or a key is missing.

    Raises
    ------
    RunError
        If the catalog cannot be opened or read.
    """
    return _corpus_layout(catalog)


def json_or(raw: str | None, kind: type):
    """``raw`` parsed as JSON if it is a ``kind`` (dict or list), else an empty ``kind()``."""
    try:
        v = json.loads(raw or "null")
    except ValueError:
        return kind()
    return v if isinstance(v, kind) else kind()


@_reading
def _corpus_layout(cat: Catalog) -> tuple[float, float]:
    with cat.snapshot() as s:
        return _layout_in(s)


def _layout_in(s) -> tuple[float, float]:
    """:func:`corpus_layout` inside an open session ``s``."""
    cfg = _latest_run_config(s)
    return _positive(cfg, "sfreq", DEFAULT_SFREQ), _positive(cfg, "epoch_s", DEFAULT_EPOCH_S)


def _latest_run_config(s) -> dict:
    return json_or(s.scalar(select(m.Run.config_json).order_by(m.Run.id.desc()).limit(1)), dict)


def _positive(cfg: dict, key: str, default: float) -> float:
    """``cfg[key]`` as a finite positive float, else ``default``."""
    try:
        v = float(cfg[key])
    except (KeyError, TypeError, ValueError):
        return default
    return v if math.isfinite(v) and v > 0 else default


@_reading
def ingest_h_freq(cat: Catalog) -> float:
    """The band-pass low-pass setting (Hz) of the latest run's ``config_json`` (``h_freq``), or the default of
    :class:`~ephys.schemas.config.IngestConfig` where there is no run or no readable value.  Each recording's own
    edge is ``ephys.schemas.config.lowpass_edge(h_freq, its sfreq)``.

    Raises
    ------
    RunError
        If the catalog cannot be opened or read.
    """
    from ephys.schemas.config import IngestConfig  # the schemas package loads NumPy: not for catalog stats

    with cat.snapshot() as s:
        return _positive(_latest_run_config(s), "h_freq", float(IngestConfig.model_fields["h_freq"].default))


# ---------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------


def catalog_stats(catalog: Catalog | str) -> dict:
    """Summary figures of a catalog.

    Returns
    -------
    dict
        ``recordings``: ``{"total", "ok", "rejected", "failed"}`` (plus any other
        status found); ``failure_codes``: ``{"rejected": {code: n}, "failed": {code: n}}``;
        ``eeg_hours``: ``{"ok": hours of ok recordings, "read": hours of every
        recording with a known duration}``; ``epochs``: ``{"total", "valid"}``
        (epochs of ok recordings, i.e. in the corpus); ``shards``:
        ``{"count", "samples", "bytes"}``; ``annotations``: number of annotation
        rows; ``annotation_categories``: ``{category: non-negated annotations}``;
        ``annotations_unlabelled``: annotations no taxonomy label matched; ``subjects``:
        ``{"total", "ok"}`` distinct subjects of all / ok
        recordings; ``formats``: ``{format: recordings}``; ``runs``:
        ``{"count", "last_status", "last_started_at"}``.

    Raises
    ------
    RunError
        If the catalog cannot be opened or read.
    """
    return _catalog_stats(catalog)


@_reading
def _catalog_stats(cat: Catalog) -> dict:
    with cat.snapshot() as s:
        return _stats_in(s)


def _stats_in(s) -> dict:
    """:func:`catalog_stats` inside an open session ``s`` (a caller's snapshot)."""
    R, S = m.Recording, m.Shard
    by_status = {st: n for st, n in s.execute(select(R.status, func.count()).group_by(R.status))}
    recordings = {"total": sum(by_status.values())}
    recordings.update({st: by_status.get(st, 0) for st in STATUSES})
    recordings.update({st: n for st, n in sorted(by_status.items()) if st not in STATUSES})

    failure_codes: dict[str, dict[str, int]] = {"rejected": {}, "failed": {}}
    rows = s.execute(
        select(R.status, R.failure_code, func.count())
        .where(R.status != "ok")
        .group_by(R.status, R.failure_code)
        .order_by(R.status, R.failure_code)
    )
    for st, code, n in rows:
        failure_codes.setdefault(st, {})[code or "unknown"] = n

    ok_s = s.scalar(select(func.coalesce(func.sum(R.duration_s), 0.0)).where(R.status == "ok"))
    read_s = s.scalar(select(func.coalesce(func.sum(R.duration_s), 0.0)).where(R.duration_s.is_not(None)))

    ES = m.EpochSummary  # per-(shard, recording) counts: ~10^5 rows at EPI-250k, not 3·10^7 epochs
    n_epochs, n_valid = s.execute(
        select(func.coalesce(func.sum(ES.n_epochs), 0), func.coalesce(func.sum(ES.n_valid), 0))
        .join(R, R.id == ES.recording_id)
        .where(R.status == "ok")
    ).one()
    n_shards, samples, n_bytes = s.execute(
        select(func.count(S.id), func.coalesce(func.sum(S.n_samples), 0), func.coalesce(func.sum(S.n_bytes), 0))
    ).one()
    n_annotations = s.scalar(select(func.count(m.Annotation.id)))
    A = m.Annotation
    by_category = dict(s.execute(select(A.category, func.count()).where(A.category.is_not(None), A.negated.is_not(True))
                                 .group_by(A.category).order_by(A.category)).all())
    n_unlabelled = s.scalar(select(func.count(A.id)).where(A.category.is_(None)))
    n_from_sidecars = s.scalar(select(func.count(A.id)).where(A.source.like("sidecar:%")))
    SC = m.AnnotationSidecar
    n_sidecars, sc_entries, sc_attached = s.execute(
        select(func.count(SC.id), func.coalesce(func.sum(SC.n_entries), 0), func.coalesce(func.sum(SC.n_attached), 0))
    ).one()
    subjects_all = s.scalar(select(func.count(func.distinct(R.subject))))
    subjects_ok = s.scalar(select(func.count(func.distinct(R.subject))).where(R.status == "ok"))
    formats = {
        f: n for f, n in s.execute(select(R.format, func.count()).group_by(R.format).order_by(R.format))
    }
    n_runs = s.scalar(select(func.count(m.Run.id)))
    last = s.execute(select(m.Run.status, m.Run.started_at).order_by(m.Run.id.desc()).limit(1)).first()

    return {
        "recordings": recordings,
        "failure_codes": failure_codes,
        "eeg_hours": {"ok": float(ok_s) / 3600.0, "read": float(read_s) / 3600.0},
        "epochs": {"total": int(n_epochs), "valid": int(n_valid)},
        "shards": {"count": int(n_shards), "samples": int(samples), "bytes": int(n_bytes)},
        "annotations": int(n_annotations),
        "annotation_categories": {k: int(v) for k, v in by_category.items()},
        "annotations_unlabelled": int(n_unlabelled or 0),
        "annotations_from_sidecars": int(n_from_sidecars or 0),
        "sidecars": {"files": int(n_sidecars), "entries": int(sc_entries), "attached": int(sc_attached)},
        "subjects": {"total": int(subjects_all), "ok": int(subjects_ok)},
        "formats": formats,
        "runs": {
            "count": int(n_runs),
            "last_status": last[0] if last else None,
            "last_started_at": last[1].isoformat() if last and last[1] else None,
        },
    }


# ---------------------------------------------------------------------------
# Recordings
# ---------------------------------------------------------------------------

#: Keys of every row :func:`query_recordings` returns, in display order.
RECORDING_COLUMNS = (
    "sha256",
    "format",
    "status",
    "failure_code",
    "failure_reason",
    "duration_s",
    "n_channels",
    "n_eeg_channels",
    "sfreq",
    "n_epochs",
    "n_valid_epochs",
    "n_annotations",
    "subject",
    "n_bad_channels",
)


def query_recordings(catalog: Catalog | str, where: Sequence[str] | None = None, limit: int | None = None) -> list[dict]:
    """Recordings matching every clause, ordered by SHA-256.

    Returns
    -------
    list[dict]
        One dict per recording with the keys of :data:`RECORDING_COLUMNS`;
        ``sha256`` is the first 16 hex digits. At most ``limit`` rows.

    Raises
    ------
    ValueError
        If a clause does not parse (see :func:`parse_where`) or ``limit`` is negative.
    RunError
        If the catalog cannot be opened or read.
    """
    clauses = parse_all(where)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be 0 or more, got {limit}")
    return _query_recordings(catalog, clauses, limit)


@_reading
def _query_recordings(cat: Catalog, clauses: list[Clause], limit: int | None) -> list[dict]:
    R = m.Recording
    cols = [getattr(R, c) for c in RECORDING_COLUMNS]
    stmt = select(*cols).where(*recording_conditions(clauses)).order_by(R.sha256)
    if limit is not None:
        stmt = stmt.limit(limit)
    with cat.snapshot() as s:
        rows = s.execute(stmt).all()
    out = []
    for row in rows:
        d = dict(zip(RECORDING_COLUMNS, row))
        d["sha256"] = d["sha256"][:16]
        out.append(d)
    return out


# ---------------------------------------------------------------------------
# Epochs
# ---------------------------------------------------------------------------


class EpochRow(NamedTuple):
    """One selected epoch with its shard and recording."""

    key: str
    shard_name: str
    shard_sha256: str
    shard_n_samples: int
    shard_index: int
    recording: str
    """full SHA-256 of the recording"""
    subject: str | None
    montage: str | None
    channel_names: tuple[str, ...]
    """the recording's output channels (``output_channels_json``)"""
    source_sfreq: float | None
    """the recording's own sampling frequency (Hz, before resampling); None where the catalog has none"""


def select_epochs(catalog: Catalog | str, where: Sequence[str] | None = None) -> list[EpochRow]:
    """Epochs of ``ok`` recordings matching every clause, in shard order.

    Rows are ordered by shard index, then recording SHA-256, then epoch index:
    the ingest packs recordings in ascending SHA-256 order and each recording's
    epochs in index order, so this is the order of the members in each shard.

    Returns
    -------
    list[EpochRow]
        One row per selected epoch.

    Raises
    ------
    ValueError
        If a clause does not parse (see :func:`parse_where`).
    RunError
        If the catalog cannot be opened or read.
    """
    clauses = parse_all(where)
    return _select_epochs(catalog, clauses)


@_reading
def _select_epochs(cat: Catalog, clauses: list[Clause]) -> list[EpochRow]:
    return list(_epoch_rows(cat, clauses))


#: Rows fetched from the database at a time while streaming a selection.
STREAM_ROWS = 20_000


def iter_epochs(cat: Catalog, where: Sequence[str] | None = None) -> Iterator[EpochRow]:
    """:func:`select_epochs` as a stream: rows come from the database :data:`STREAM_ROWS` at a time
    (a server-side cursor on PostgreSQL), in one snapshot, so memory does not grow with the selection.
    ``cat`` is an open :class:`Catalog`; consume the iterator while it is open.

    Raises
    ------
    ValueError
        If a clause does not parse.
    RunError
        If the catalog cannot be read.
    """
    yield from _streamed(cat, where, _epoch_rows)


def _streamed(cat: Catalog, where: Sequence[str] | None, rows) -> Iterator:
    """``rows(cat, clauses)`` for the parsed ``where``, with a database error as the RunError that
    names the catalog."""
    clauses = parse_all(where)
    try:
        yield from rows(cat, clauses)
    except SQLAlchemyError as exc:
        raise _query_failed(cat, exc) from None


def _selection_context(cat: Catalog, s) -> tuple[float, dict, dict]:
    """Start streaming a selection in snapshot ``s``: the epoch length, ``{shard id: (name, sha256,
    n_samples, index)}`` and ``{recording id: (sha256, subject, montage, channel names, sfreq)}`` of the ok
    recordings. Shards and recordings are few (25,000 and 100,000 at EPI-250k scale): read once, in
    the same snapshot, so the streamed rows carry only ids."""
    R, S = m.Recording, m.Shard
    if cat.engine.dialect.name == "postgresql":  # every row is read: plan for the whole result, not the first
        s.execute(text("SET LOCAL cursor_tuple_fraction = 1.0"))  # rows of the server-side cursor
    _, epoch_s = _layout_in(s)  # the annotation-overlap clauses need the epoch length
    shards = {sid: (name, sha, n, idx) for sid, name, sha, n, idx in s.execute(
        select(S.id, S.name, S.sha256, S.n_samples, S.index))}
    channels: dict[str, tuple[str, ...]] = {}
    recordings = {}
    for rid, sha, subject, montage, chans_json, sfreq in s.execute(
            select(R.id, R.sha256, R.subject, R.montage, R.output_channels_json, R.sfreq).where(R.status == "ok")):
        chans = channels.get(chans_json)
        if chans is None:
            chans = channels[chans_json] = tuple(str(c) for c in json_or(chans_json, list))
        recordings[rid] = (sha, subject, montage, chans, sfreq)
    return epoch_s, shards, recordings


def _selected(stmt, clauses: list[Clause], epoch_s: float):
    """``stmt`` over the epochs of ok recordings that match ``clauses``, joined to their recording
    and shard."""
    R, E, S = m.Recording, m.Epoch, m.Shard
    return (stmt.select_from(E).join(R, R.id == E.recording_id).join(S, S.id == E.shard_id)
            .where(and_(R.status == "ok", *epoch_conditions(clauses, epoch_s))))


def _epoch_rows(cat: Catalog, clauses: list[Clause]) -> Iterator[EpochRow]:
    R, E, S = m.Recording, m.Epoch, m.Shard
    with cat.snapshot() as s:
        epoch_s, shards, recordings = _selection_context(cat, s)
        stmt = (_selected(select(E.key, E.shard_id, E.recording_id), clauses, epoch_s)
                .order_by(S.index, R.sha256, E.index).execution_options(yield_per=STREAM_ROWS))
        for key, sid, rid in s.execute(stmt):
            sname, ssha, sn, sidx = shards[sid]
            yield EpochRow(key, sname, ssha, sn, sidx, *recordings[rid])


class EpochGroup(NamedTuple):
    """The selected epochs of one recording in one shard."""

    shard_name: str
    shard_sha256: str
    shard_n_samples: int
    shard_index: int
    recording: str
    """full SHA-256 of the recording"""
    subject: str | None
    montage: str | None
    channel_names: tuple[str, ...]
    source_sfreq: float | None
    """the recording's own sampling frequency (Hz, before resampling); None where the catalog has none"""
    n_epochs: int
    keys: str
    """the ``n_epochs`` keys joined by :data:`GROUP_SEP`, in no particular order"""
    indices: str
    """their epoch indices joined by :data:`GROUP_SEP`, in the same order as ``keys``"""


#: Separator of the keys and indices of an :class:`EpochGroup` (sample keys hold no comma).
GROUP_SEP = ","
#: Groups fetched from the database at a time.
STREAM_GROUPS = 2_000


def iter_epoch_groups(cat: Catalog, where: Sequence[str] | None = None) -> Iterator[EpochGroup]:
    """:func:`iter_epochs` aggregated in the database: one row per (shard, recording) of the
    selection, ordered by shard index then recording SHA-256, with the keys and epoch indices
    concatenated (``group_concat`` on SQLite, ``string_agg`` on PostgreSQL). The database does the
    per-epoch work; Python sees ~10^5 rows at EPI-250k scale whatever the selection's size.
    ``cat`` is an open :class:`Catalog`; consume the iterator while it is open.

    Raises
    ------
    ValueError
        If a clause does not parse.
    RunError
        If the catalog cannot be read.
    """
    yield from _streamed(cat, where, _epoch_groups)


def _epoch_groups(cat: Catalog, clauses: list[Clause]) -> Iterator[EpochGroup]:
    R, E, S = m.Recording, m.Epoch, m.Shard
    with cat.snapshot() as s:
        epoch_s, shards, recordings = _selection_context(cat, s)
        stmt = (_selected(select(S.id, R.id, func.count(), func.aggregate_strings(E.key, GROUP_SEP),
                                 func.aggregate_strings(cast(E.index, String), GROUP_SEP)), clauses, epoch_s)
                .group_by(S.id, R.id).order_by(S.index, R.sha256).execution_options(yield_per=STREAM_GROUPS))
        for sid, rid, n, keys, indices in s.execute(stmt):
            yield EpochGroup(*shards[sid], *recordings[rid], int(n), keys, indices)
