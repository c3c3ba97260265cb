"""Per-(shard, recording) summaries of the epoch rows, kept beside them so that corpus figures
(``catalog stats``, ``ephys report``) read ~10^5 summary rows instead of scanning 3·10^7 epochs.

A summary row holds, for the epochs of one recording in one shard: how many there are, how many are
valid, scored and staged, and ``figures_json``: the histograms of the quality score and the three
power ratios (bins of :data:`SCORE_EDGES` and :data:`RATIO_EDGES`) and the epoch count per sleep stage.

Bins: bin ``i`` holds ``edges[i] <= v < edges[i + 1]``; values below ``edges[1]`` fall in the first
bin and values at or above ``edges[-2]`` in the last, so no finite value is dropped; missing (NULL)
and NaN values are not counted. The rows are written in the transaction that writes their epochs
(:meth:`~ephys.catalog.db.Catalog.commit_shard`) and deleted with them; :func:`rebuild` recomputes
them all from the epochs with two grouped scans (migration ``0005``, and catalogs filled by other
means), binning in SQL, independently of the Python binning of :func:`summarise`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping

import numpy as np
from sqlalchemy import Float, and_, case, delete, func, insert, literal, select
from sqlalchemy.orm import Session

from ephys.catalog import models as m

#: Edges of the quality-score histogram (20 bins of 0.05 over [0, 1]).
SCORE_EDGES = tuple(round(i * 0.05, 2) for i in range(21))
#: Edges (log-spaced, dimensionless power ratios) of the line/EMG/drift ratio histograms.
RATIO_EDGES = tuple(10.0 ** (k / 4) for k in range(-16, 5))  # 1e-4 ... 10
#: The histogrammed epoch columns and their edges.
HISTOGRAMS = {"score": SCORE_EDGES, "line_ratio": RATIO_EDGES, "emg_ratio": RATIO_EDGES, "drift_ratio": RATIO_EDGES}


def _finite(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def summarise(epochs: Iterable[Mapping]) -> dict:
    """The summary of ``epochs`` (dicts with the :class:`~ephys.catalog.models.Epoch` columns
    ``valid``, ``score``, ``line_ratio``, ``emg_ratio``, ``drift_ratio`` and ``stage``; missing
    keys count as NULL).

    Returns
    -------
    dict
        ``n_epochs``, ``n_valid``, ``n_scored``, ``n_staged`` (int) and ``figures``:
        ``{column: [count per bin]}`` for each of :data:`HISTOGRAMS` and ``"stage": {stage: n}``.
    """
    epochs = list(epochs)
    figures: dict = {}
    for name, edges in HISTOGRAMS.items():
        values = np.array([e[name] for e in epochs if _finite(e.get(name))], dtype=float)
        bins = np.searchsorted(np.asarray(edges[1:-1]), values, side="right")
        figures[name] = np.bincount(bins, minlength=len(edges) - 1).tolist()
    stages: dict[str, int] = {}
    for e in epochs:
        if e.get("stage") is not None:
            stages[e["stage"]] = stages.get(e["stage"], 0) + 1
    figures["stage"] = dict(sorted(stages.items()))
    return {"n_epochs": len(epochs), "n_valid": sum(bool(e.get("valid")) for e in epochs),
            "n_scored": sum(_finite(e.get("score")) for e in epochs), "n_staged": sum(stages.values()),
            "figures": figures}


def summary_rows(shard_id: int, epochs: Iterable[Mapping]) -> list[dict]:
    """Rows of ``epoch_summaries`` for the epochs of one shard (dicts with ``recording_id``)."""
    by_rec: dict[int, list[Mapping]] = {}
    for e in epochs:
        by_rec.setdefault(e["recording_id"], []).append(e)
    rows = []
    for rid, eps in sorted(by_rec.items()):
        s = summarise(eps)
        rows.append({"shard_id": shard_id, "recording_id": rid, "n_epochs": s["n_epochs"], "n_valid": s["n_valid"],
                     "n_scored": s["n_scored"], "n_staged": s["n_staged"],
                     "figures_json": json.dumps(s["figures"], separators=(",", ":"))})
    return rows


def _present(col, dialect: str):
    """SQL for "``col`` holds a number": not NULL, and on PostgreSQL not NaN (which PostgreSQL
    sorts above every number and holds equal to itself; SQLite stores a NaN as NULL)."""
    if dialect == "postgresql":
        return and_(col.is_not(None), col != literal(float("nan"), Float))
    return col.is_not(None)


def _bins(col, edges, dialect: str) -> list:
    """One ``SUM(CASE ...)`` per bin of ``col`` (the bins of the module docstring): portable SQL,
    evaluated in the scan that holds the rows."""
    n = len(edges) - 1
    finite = _present(col, dialect)
    cols = []
    for i in range(n):
        cond = [finite] + ([col >= edges[i]] if i > 0 else []) + ([col < edges[i + 1]] if i < n - 1 else [])
        cols.append(func.coalesce(func.sum(case((and_(*cond), 1), else_=0)), 0))
    return cols


def rebuild(conn) -> int:
    """Recompute every summary row from the epochs, in the caller's transaction ``conn`` (a
    SQLAlchemy connection or session): two grouped scans of the epochs (counts and histograms, then
    stages). Returns the number of summary rows written."""
    E = m.Epoch
    dialect = (conn.get_bind() if isinstance(conn, Session) else conn).dialect.name
    conn.execute(delete(m.EpochSummary))
    keys = (E.shard_id, E.recording_id)
    hist_cols = [c for name, edges in HISTOGRAMS.items() for c in _bins(getattr(E, name), edges, dialect)]
    finite_score = _present(E.score, dialect)
    stmt = select(*keys, func.count(), func.coalesce(func.sum(case((E.valid, 1), else_=0)), 0),
                  func.coalesce(func.sum(case((finite_score, 1), else_=0)), 0),
                  func.count(E.stage), *hist_cols).group_by(*keys)
    rows: dict[tuple[int, int], dict] = {}
    for r in conn.execute(stmt):
        figures, pos = {}, 6
        for name, edges in HISTOGRAMS.items():
            figures[name], pos = [int(v) for v in r[pos : pos + len(edges) - 1]], pos + len(edges) - 1
        figures["stage"] = {}
        rows[(r[0], r[1])] = {"shard_id": r[0], "recording_id": r[1], "n_epochs": int(r[2]), "n_valid": int(r[3]),
                              "n_scored": int(r[4]), "n_staged": int(r[5]), "figures": figures}
    for sid, rid, stage, n in conn.execute(select(*keys, E.stage, func.count()).where(E.stage.is_not(None))
                                           .group_by(*keys, E.stage)):
        rows[(sid, rid)]["figures"]["stage"][stage] = int(n)
    out = []
    for row in rows.values():
        figures = row.pop("figures")
        figures["stage"] = dict(sorted(figures["stage"].items()))
        out.append(row | {"figures_json": json.dumps(figures, separators=(",", ":"))})
    for k in range(0, len(out), 5_000):
        conn.execute(insert(m.EpochSummary), out[k : k + 5_000])
    return len(out)


def corpus_figures(conn, where=()) -> dict:
    """The summaries of the recordings matching ``where`` (conditions on
    :class:`~ephys.catalog.models.Recording`) added up.

    Returns
    -------
    dict
        ``n_epochs``, ``n_valid``, ``n_scored``, ``n_staged`` and ``figures`` as in :func:`summarise`.
    """
    S, R = m.EpochSummary, m.Recording
    totals = {"n_epochs": 0, "n_valid": 0, "n_scored": 0, "n_staged": 0}
    hists = {name: np.zeros(len(edges) - 1, dtype=np.int64) for name, edges in HISTOGRAMS.items()}
    stages: dict[str, int] = {}
    stmt = select(S.n_epochs, S.n_valid, S.n_scored, S.n_staged, S.figures_json).join(R, R.id == S.recording_id)
    for n, valid, scored, staged, raw in conn.execute(stmt.where(*where)):
        totals["n_epochs"] += n
        totals["n_valid"] += valid
        totals["n_scored"] += scored
        totals["n_staged"] += staged
        fig = json.loads(raw)
        for name in hists:
            hists[name] += fig[name]
        for st, k in fig["stage"].items():
            stages[st] = stages.get(st, 0) + k
    return totals | {"figures": {name: h.tolist() for name, h in hists.items()} | {"stage": dict(sorted(stages.items()))}}
