"""A self-contained HTML report of a catalog: what was ingested, how clean it is, what it contains.

:func:`report_data` gathers every figure the page shows with aggregate SQL in one
consistent snapshot (a plain, JSON-serialisable dict, useful on its own); the epoch
figures add up the per-(shard, recording) summaries of :mod:`ephys.catalog.summary`
instead of scanning every epoch, so the report's cost grows with recordings and shards;
:func:`render_report` turns it into one HTML page whose plots are matplotlib PNGs
embedded as ``data:`` URIs, so the file can be mailed or archived with nothing
beside it; :func:`write_report` does both and writes the page atomically.

The page shows recordings by status and failure reason, EEG-hours by format,
the distribution of the epoch quality score and of its inputs (see
:mod:`ephys.qc.features`), bad channels, sleep-stage proportions with example
hypnograms, annotation categories and the most frequent unlabelled texts (so the
taxonomy can grow), channels and sampling rates seen, and the throughput of every
run with the time split per pipeline stage.

Only what the catalog holds is shown: pseudonymous subjects, scrubbed annotation
text, no paths unless the ingest kept them (the report never prints paths).
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections import Counter
from datetime import datetime, UTC
from pathlib import Path

from sqlalchemy import func, select

from ephys import __version__
from ephys.annotate.clusters import cluster_texts
from ephys.catalog import models as m
from ephys.catalog.db import Catalog, redact_url
from ephys.catalog.queries import _layout_in, _reading, _stats_in, json_or
from ephys.catalog.summary import RATIO_EDGES, SCORE_EDGES, corpus_figures

#: Sleep stages in display order.
STAGES = ("W", "N1", "N2", "N3", "REM")
#: Pipeline stages timed per recording (keys of ``recordings.seconds_json``) and their labels.
TIMED_STAGES = {
    "open": "open + header",
    "read": "read",
    "qc": "QC figures",
    "condition": "conditioning",
    "sleep": "sleep staging",
    "stage": "write spool file",
}
#: How many example hypnograms, failure reasons per code and unlabelled texts to show.
N_HYPNOGRAMS = 3
N_REASONS = 3
N_UNLABELLED = 15
#: Distinct unlabelled texts (the most frequent) clustered for the report.
N_CLUSTER_TEXTS = 2000
N_CHANNEL_NAMES = 30


def report_data(catalog: Catalog | str) -> dict:
    """Every figure of the report, read from the catalog in one snapshot.

    Returns
    -------
    dict
        JSON-serialisable. ``stats``: :func:`~ephys.catalog.queries.catalog_stats`;
        ``failures``: list of ``{"status", "code", "n", "reasons"}`` (up to
        :data:`N_REASONS` distinct reasons each, truncated to 200 characters);
        ``hours_by_format``: ``{format: {status: EEG-hours}}``; ``score_hist``:
        ``{"edges", "counts"}`` of the quality score of epochs of ok recordings;
        ``ratio_hists``: the same for ``line_ratio``, ``emg_ratio``, ``drift_ratio``
        (edges :data:`RATIO_EDGES`; values outside fall in the end bins);
        ``epochs``: ``{"valid", "invalid", "unscored"}``; ``bad_channels``:
        ``{"by_reason": {reason: n}, "by_channel": {name: n}, "recordings": n}``;
        ``stages``: ``{stage: epochs}`` (``"unstaged"`` for none);
        ``stagers``: ``{backend: recordings}``; ``hypnograms``: up to
        :data:`N_HYPNOGRAMS` ``{"recording": sha prefix, "start_s": [...],
        "stage": [...]}`` of the ok recordings with the most staged epochs;
        ``annotations``: ``{"categories", "subcategories", "negated", "uncertain",
        "unlabelled": [[text, n], ...], "unlabelled_clusters": [[representative, distinct texts, n, language],
        ...]}`` (the largest clusters of unlabelled texts, :mod:`ephys.annotate.clusters`); ``sfreqs``: ``{Hz: recordings}``;
        ``n_eeg_channels``: ``{n: recordings}``; ``channel_names``: the
        :data:`N_CHANNEL_NAMES` most frequent labels; ``montages``;
        ``runs``: list of per-run dicts (``eeg_hours_per_hour`` is EEG-hours per
        wall-clock hour); ``stage_seconds``: ``{stage: worker seconds}`` summed over
        recordings; ``layout``: ``{"sfreq", "epoch_s"}``; ``catalog``: the URL
        with any password removed; ``generated_at`` (UTC ISO 8601), ``ephys_version``.

    Raises
    ------
    RunError
        If the catalog cannot be opened or read.
    """
    return _report_data(catalog)


@_reading
def _report_data(cat: Catalog) -> dict:
    R, E, A = m.Recording, m.Epoch, m.Annotation
    in_corpus = [R.status == "ok"]
    with cat.snapshot() as s:
        sfreq, epoch_s = _layout_in(s)
        stats = _stats_in(s)
        failures = []
        rows = s.execute(select(R.status, R.failure_code, func.count()).where(R.status != "ok")
                         .group_by(R.status, R.failure_code).order_by(func.count().desc(), R.failure_code)).all()
        for status, code, n in rows:
            reasons = s.scalars(select(R.failure_reason).where(R.status == status, R.failure_code == code,
                                                               R.failure_reason.is_not(None))
                                .group_by(R.failure_reason).order_by(func.count().desc(), R.failure_reason)
                                .limit(N_REASONS)).all()
            failures.append({"status": status, "code": code or "unknown", "n": int(n),
                             "reasons": [r[:200] for r in reasons]})

        hours_by_format: dict[str, dict[str, float]] = {}
        for fmt, status, secs in s.execute(select(R.format, R.status, func.coalesce(func.sum(R.duration_s), 0.0))
                                           .group_by(R.format, R.status).order_by(R.format, R.status)):
            hours_by_format.setdefault(fmt, {})[status] = float(secs) / 3600.0

        # Epoch figures from the per-(shard, recording) summaries: ~10^5 rows at EPI-250k, not 3·10^7.
        fig = corpus_figures(s, in_corpus)
        hists = fig["figures"]
        valid, unscored = fig["n_valid"], fig["n_epochs"] - fig["n_scored"]
        invalid = fig["n_epochs"] - valid
        score_hist = {"edges": list(SCORE_EDGES), "counts": hists["score"]}
        ratio_hists = {name: {"edges": list(RATIO_EDGES), "counts": hists[name]}
                       for name in ("line_ratio", "emg_ratio", "drift_ratio")}

        by_reason: Counter[str] = Counter()
        by_channel: Counter[str] = Counter()
        n_with_bad = 0
        for raw in s.scalars(select(R.bad_channels_json).where(R.n_bad_channels > 0)):
            bad = json_or(raw, dict)
            n_with_bad += bool(bad)
            by_channel.update(str(k) for k in bad)
            by_reason.update(str(v) for v in bad.values())

        stage_counts = dict(hists["stage"])
        if fig["n_epochs"] > fig["n_staged"]:
            stage_counts["unstaged"] = fig["n_epochs"] - fig["n_staged"]
        stages = {st: int(stage_counts.pop(st, 0)) for st in STAGES}
        stages.update({k: int(v) for k, v in sorted(stage_counts.items())})
        stagers = {k or "none": int(n) for k, n in s.execute(select(R.stager, func.count()).where(*in_corpus)
                                                             .group_by(R.stager).order_by(R.stager))}

        hypnograms = []
        ES = m.EpochSummary
        top = s.execute(select(R.id, R.sha256).join(ES, ES.recording_id == R.id)
                        .where(*in_corpus).group_by(R.id, R.sha256).having(func.sum(ES.n_staged) > 0)
                        .order_by(func.sum(ES.n_staged).desc(), R.sha256).limit(N_HYPNOGRAMS)).all()
        for rid, sha in top:
            pts = s.execute(select(E.start_s, E.stage).where(E.recording_id == rid, E.stage.is_not(None))
                            .order_by(E.index)).all()
            hypnograms.append({"recording": sha[:12], "start_s": [float(p[0]) for p in pts],
                               "stage": [p[1] for p in pts]})

        subcats = {f"{c} / {sc}": int(n) for c, sc, n in s.execute(
            select(A.category, A.subcategory, func.count()).where(A.category.is_not(None), A.negated.is_not(True))
            .group_by(A.category, A.subcategory).order_by(func.count().desc(), A.category, A.subcategory))}
        negated = s.scalar(select(func.count(A.id)).where(A.negated.is_(True)))
        uncertain = s.scalar(select(func.count(A.id)).where(A.uncertain.is_(True)))
        unlabelled = [[t, int(n)] for t, n in s.execute(
            select(A.text, func.count()).where(A.category.is_(None)).group_by(A.text)
            .order_by(func.count().desc(), A.text).limit(N_UNLABELLED))]
        # The most frequent distinct unlabelled texts, clustered (ephys.annotate.clusters): variants of one
        # thing ("Bettgitter hoch", "bettgitter hochgeklappt") count together.
        pool = dict(s.execute(select(A.text, func.count()).where(A.category.is_(None)).group_by(A.text)
                              .order_by(func.count().desc(), A.text).limit(N_CLUSTER_TEXTS)).all())
        clusters = [[c.representative, len(c.members), c.count, c.language]
                    for c in cluster_texts(pool).clusters[:N_UNLABELLED]] if pool else []

        sfreqs = {f"{float(v):g}": int(n) for v, n in s.execute(
            select(R.sfreq, func.count()).where(R.sfreq.is_not(None)).group_by(R.sfreq).order_by(R.sfreq))}
        n_eeg = {str(int(v)): int(n) for v, n in s.execute(
            select(R.n_eeg_channels, func.count()).where(R.n_eeg_channels.is_not(None))
            .group_by(R.n_eeg_channels).order_by(R.n_eeg_channels))}
        montages = {k or "-": int(n) for k, n in s.execute(select(R.montage, func.count()).where(*in_corpus)
                                                           .group_by(R.montage).order_by(R.montage))}
        names: Counter[str] = Counter()
        stage_seconds: Counter[str] = Counter()
        for chans, secs in s.execute(select(R.channels_json, R.seconds_json)):
            for c in json_or(chans, list):
                name = c.get("name") if isinstance(c, dict) else c
                if isinstance(name, str):
                    names[name] += 1
            for k, v in json_or(secs, dict).items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    stage_seconds[k] += float(v)

        runs = []
        for r in s.scalars(select(m.Run).order_by(m.Run.id)):
            cfg = json_or(r.config_json, dict)
            runs.append({
                "id": r.id, "started_at": r.started_at.isoformat(timespec="seconds") if r.started_at else None,
                "status": r.status, "code_version": r.code_version, "workers": cfg.get("workers"),
                "stager": cfg.get("stager"), "n_discovered": r.n_discovered, "n_skipped": r.n_skipped,
                "n_ok": r.n_ok, "n_rejected": r.n_rejected, "n_failed": r.n_failed,
                "eeg_hours": float(r.eeg_hours or 0.0), "wall_s": float(r.wall_s or 0.0),
                "eeg_hours_per_hour": (float(r.eeg_hours) * 3600.0 / r.wall_s) if r.wall_s else None,
            })

    return {
        "catalog": redact_url(cat.url),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "ephys_version": __version__,
        "layout": {"sfreq": sfreq, "epoch_s": epoch_s},
        "stats": stats,
        "failures": failures,
        "hours_by_format": hours_by_format,
        "score_hist": score_hist,
        "ratio_hists": ratio_hists,
        "epochs": {"valid": int(valid), "invalid": int(invalid), "unscored": int(unscored)},
        "bad_channels": {"by_reason": dict(by_reason.most_common()), "by_channel": dict(by_channel.most_common(20)),
                         "recordings": n_with_bad},
        "stages": stages,
        "stagers": stagers,
        "hypnograms": hypnograms,
        "annotations": {"categories": stats["annotation_categories"], "subcategories": subcats,
                        "negated": int(negated or 0), "uncertain": int(uncertain or 0), "unlabelled": unlabelled,
                        "unlabelled_clusters": clusters},
        "sfreqs": sfreqs,
        "n_eeg_channels": n_eeg,
        "channel_names": dict(names.most_common(N_CHANNEL_NAMES)),
        "montages": montages,
        "runs": runs,
        "stage_seconds": {k: round(stage_seconds[k], 3) for k in TIMED_STAGES if k in stage_seconds},
    }


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------

_STATUS_COLOURS = {"ok": "#2e7d32", "rejected": "#f9a825", "failed": "#c62828"}
_STAGE_COLOURS = {"W": "#f4a261", "N1": "#a8dadc", "N2": "#457b9d", "N3": "#1d3557", "REM": "#e63946",
                  "unstaged": "#bbbbbb"}

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
.meta{color:#666;font-size:.9em} .grid{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0} figure img{max-width:100%;border:1px solid #eee}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0} td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
td.n,th.n{text-align:right} .empty{color:#888;font-style:italic}
.cards{display:flex;flex-wrap:wrap;gap:.8em} .card{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;min-width:9em}
.card b{display:block;font-size:1.5em}
"""


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(width: float = 5.2, height: float = 3.0):
    from matplotlib.figure import Figure  # no pyplot: no global state, safe off the main thread

    fig = Figure(figsize=(width, height))
    return fig, fig.add_subplot()


def _img(fig, alt: str, figure_id: str) -> str:
    return f'<figure id="{figure_id}"><img alt="{html.escape(alt)}" src="data:image/png;base64,{_png(fig)}"></figure>'


def _barh(items: dict, title: str, xlabel: str, figure_id: str, colours=None) -> str:
    if not items or not any(items.values()):
        return f'<p class=empty id="{figure_id}">{html.escape(title)}: nothing to show</p>'
    labels = [str(k) for k in items][::-1]
    values = list(items.values())[::-1]
    fig, ax = _figure(5.2, max(1.6, 0.32 * len(labels) + 0.9))
    bars = ax.barh(labels, values, color=[(colours or {}).get(k, "#457b9d") for k in labels])
    ax.bar_label(bars, labels=[f"{v:g}" for v in values], padding=2, fontsize=8)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.margins(x=0.15)
    return _img(fig, title, figure_id)


def _hist(edges, counts, title: str, xlabel: str, figure_id: str, log_x: bool = False, note: str = "") -> str:
    if not sum(counts):
        return f'<p class=empty id="{figure_id}">{html.escape(title)}: no values{note}</p>'
    fig, ax = _figure()
    ax.stairs(counts, edges, fill=True, color="#457b9d")
    if log_x:
        ax.set_xscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("epochs")
    return _img(fig, title, figure_id)


def _hypnogram(h: dict, figure_id: str) -> str:
    order = {st: i for i, st in enumerate(("N3", "N2", "N1", "REM", "W"))}
    t = [x / 3600.0 for x in h["start_s"]]
    y = [order.get(st, math.nan) for st in h["stage"]]
    fig, ax = _figure(10.4, 2.2)
    ax.step(t, y, where="post", color="#1d3557", lw=1.2)
    ax.set_yticks(range(5), list(order))
    ax.set_ylim(-0.5, 4.5)
    ax.set_xlabel("time from recording start (h)")
    title = f"hypnogram, recording {h['recording']} ({len(t)} epochs)"
    ax.set_title(title)
    return _img(fig, title, figure_id)


def _table(header: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    def cell(i, v, tag):
        cls = " class=n" if i in numeric else ""
        if isinstance(v, float):
            v = f"{v:,.2f}"
        elif isinstance(v, int):
            v = f"{v:,}"
        return f"<{tag}{cls}>{html.escape('-' if v is None else str(v))}</{tag}>"

    head = "".join(cell(i, h, "th") for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell(i, v, "td") for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_report(data: dict, title: str = "ephys corpus report") -> str:
    """The HTML page for :func:`report_data`'s ``data``.

    Returns
    -------
    str
        One self-contained HTML5 document: inline CSS, every plot an ``<img>``
        with a ``data:image/png;base64`` source, no scripts and no external
        resources. Sections with nothing to plot say so instead of showing an
        empty axis.
    """
    st = data["stats"]
    rec, ep = st["recordings"], data["epochs"]
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><p class=meta>catalog {html.escape(data['catalog'])} · "
             f"generated {html.escape(data['generated_at'])} · ephys {html.escape(data['ephys_version'])} · "
             f"{data['layout']['sfreq']:g} Hz, {data['layout']['epoch_s']:g}-s epochs</p>"]

    cards = [("recordings", rec["total"]), ("ok", rec["ok"]), ("rejected", rec["rejected"]), ("failed", rec["failed"]),
             ("EEG-hours in corpus", f"{st['eeg_hours']['ok']:,.1f}"), ("EEG-hours read", f"{st['eeg_hours']['read']:,.1f}"),
             ("subjects", st["subjects"]["ok"]), ("epochs", f"{st['epochs']['total']:,}"),
             ("valid epochs", f"{st['epochs']['valid']:,}"), ("shards", st["shards"]["count"]),
             ("GiB in shards", f"{st['shards']['bytes'] / 2**30:,.2f}"), ("annotations", f"{st['annotations']:,}")]
    parts.append("<div class=cards>" + "".join(f"<div class=card><b>{html.escape(str(v))}</b>{html.escape(k)}</div>"
                                               for k, v in cards) + "</div>")

    parts.append("<h2 id=recordings>Recordings</h2><div class=grid>")
    parts.append(_barh({k: rec.get(k, 0) for k in ("ok", "rejected", "failed")}, "recordings by status",
                       "recordings", "fig-status", _STATUS_COLOURS))
    parts.append(_barh({f"{f['status']}: {f['code']}": f["n"] for f in data["failures"]},
                       "rejections and failures by reason", "recordings", "fig-failures"))
    hours = {fmt: round(v.get("ok", 0.0), 2) for fmt, v in data["hours_by_format"].items()}
    parts.append(_barh(hours, "EEG-hours in the corpus by format", "hours", "fig-hours"))
    parts.append("</div>")
    if data["failures"]:
        parts.append(_table(["status", "code", "recordings", "most frequent reasons"],
                            [[f["status"], f["code"], f["n"], " | ".join(f["reasons"])] for f in data["failures"]],
                            {2}))

    parts.append("<h2 id=qc>Quality</h2>")
    unscored = f", {ep['unscored']:,} without a score" if ep["unscored"] else ""
    parts.append(f"<p>Epochs of ok recordings: {ep['valid']:,} valid, {ep['invalid']:,} invalid{unscored}. "
                 "The score and its inputs are defined in <code>ephys.qc.features</code>; "
                 "re-threshold with <code>--where 'score &gt;= 0.8'</code>.</p><div class=grid>")
    sh = data["score_hist"]
    parts.append(_hist(sh["edges"], sh["counts"], "epoch quality score", "score (0 worst, 1 clean)", "fig-score"))
    labels = {"line_ratio": "mains (line-noise) power ratio", "emg_ratio": "EMG (high-frequency) power ratio",
              "drift_ratio": "drift (< 0.3 Hz) power ratio"}
    for name, h in data["ratio_hists"].items():
        parts.append(_hist(h["edges"], h["counts"], labels[name], "median over channels (log scale)",
                           f"fig-{name.replace('_', '-')}", log_x=True,
                           note=" (undefined where the band lies above 0.45 × sfreq)"))
    bc = data["bad_channels"]
    parts.append(_barh(bc["by_channel"], f"bad channels ({bc['recordings']} recordings with any)", "recordings",
                       "fig-bad-channels"))
    parts.append("</div>")

    parts.append("<h2 id=sleep>Sleep stages</h2>")
    parts.append("<p>Backends: " + html.escape(", ".join(f"{k} ({v})" for k, v in data["stagers"].items()) or "-")
                 + "</p><div class=grid>")
    staged = {k: v for k, v in data["stages"].items() if v}
    parts.append(_barh(staged, "epochs by sleep stage", "epochs", "fig-stages", _STAGE_COLOURS))
    parts.append("</div>")
    if data["hypnograms"]:
        parts.extend(_hypnogram(h, f"fig-hypnogram-{i}") for i, h in enumerate(data["hypnograms"]))
    else:
        parts.append("<p class=empty id=fig-hypnogram-none>no staged recordings (ingest with --stager gssc or yasa)</p>")

    an = data["annotations"]
    parts.append("<h2 id=annotations>Annotations</h2>")
    parts.append(f"<p>{st['annotations']:,} annotations; {st['annotations_unlabelled']:,} matched no taxonomy "
                 f"keyword; {an['negated']:,} negated, {an['uncertain']:,} uncertain.</p><div class=grid>")
    parts.append(_barh(an["categories"], "annotations by category (not negated)", "annotations", "fig-categories"))
    top_sub = dict(list(an["subcategories"].items())[:20])
    parts.append(_barh(top_sub, "top subcategories", "annotations", "fig-subcategories"))
    parts.append("</div>")
    if an["unlabelled_clusters"]:
        parts.append("<p id=unlabelled-clusters>Largest clusters of unlabelled texts (candidates for the taxonomy; "
                     "<code>ephys annotations cluster</code> writes them as proposed keywords to review):</p>")
        parts.append(_table(["representative text", "distinct texts", "annotations", "language"],
                            an["unlabelled_clusters"], {1, 2}))

    parts.append("<h2 id=signals>Channels and sampling rates</h2><div class=grid>")
    parts.append(_barh({f"{k} Hz": v for k, v in data["sfreqs"].items()}, "sampling rates", "recordings", "fig-sfreq"))
    parts.append(_barh({f"{k} EEG": v for k, v in data["n_eeg_channels"].items()}, "EEG channels per recording",
                       "recordings", "fig-n-eeg"))
    parts.append(_barh(data["channel_names"], "most frequent channel labels", "recordings", "fig-channel-names"))
    parts.append("</div>")
    parts.append("<p>Output montages: " + html.escape(", ".join(f"{k} ({v})" for k, v in data["montages"].items())
                                                      or "-") + "</p>")

    parts.append("<h2 id=throughput>Runs and throughput</h2>")
    if data["runs"]:
        parts.append(_table(
            ["run", "started (UTC)", "status", "ephys", "workers", "discovered", "skipped", "ok", "rejected",
             "failed", "EEG-hours", "wall (s)", "EEG-h per wall-h"],
            [[r["id"], r["started_at"], r["status"], r["code_version"], r["workers"], r["n_discovered"],
              r["n_skipped"], r["n_ok"], r["n_rejected"], r["n_failed"], r["eeg_hours"], r["wall_s"],
              r["eeg_hours_per_hour"]] for r in data["runs"]], set(range(4, 13))))
    else:
        parts.append("<p class=empty>no runs recorded</p>")
    secs = {TIMED_STAGES[k]: round(v, 1) for k, v in data["stage_seconds"].items()}
    parts.append("<div class=grid>" + _barh(secs, "worker time per pipeline stage (all runs)", "seconds",
                                            "fig-stage-seconds") + "</div>")
    parts.append("</body></html>\n")
    return "".join(parts)


def write_report(catalog: Catalog | str, out: str | os.PathLike, title: str = "ephys corpus report", *,
                 progress: bool = False) -> Path:
    """Write the HTML report of ``catalog`` to ``out`` atomically (temporary file, then rename).

    ``progress``: show its two steps (catalog figures, page) with :class:`ephys.progress.Progress`.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    RunError
        If the catalog cannot be opened or read.
    OSError
        If ``out`` cannot be written.
    """
    from ephys.progress import Progress

    with Progress("report", 2, "steps", enabled=progress) as bar:
        data = report_data(catalog)
        bar.advance(info="catalog figures read")
        page = render_report(data, title=title)
        bar.advance(info="page rendered")
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
