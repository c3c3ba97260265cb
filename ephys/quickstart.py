"""``ephys quickstart``: the whole product on a small archive, in about a minute on two cores.

One call walks every stage a user meets, with the defaults they would get:

1. **archive**: a small clinical-like archive tiled from real EEG (:mod:`ephys.ingest.tiled`:
   three 6-min EDF+ routine EEGs, a Micromed .TRC, a Nicolet .e, a 12-min BDF+, German clinical
   annotations), beside a copy of the project's real recordings (``shared/data/real``: vendors'
   files, short and bipolar recordings the regional8 montage rejects, a damaged EDF);
2. **ingest** (:func:`ephys.pipeline.run.ingest`, regional8, local Dask cluster, SQLite catalog);
3. **catalog**: the corpus figures (:func:`ephys.catalog.queries.catalog_stats`);
4. **manifest** of the valid epochs (:func:`ephys.manifest.create_manifest`);
5. **pretrain**: a few dozen CPU steps of the ``cpu-tiny`` masked autoencoder (:func:`ephys.pretrain.pretrain`);
6. **probe**: a linear probe of the frozen encoder on the annotation category, against a random encoder
   (:func:`ephys.pretrain.evaluate.probe`);
7. **report**: the HTML report (:func:`ephys.catalog.report.write_report`).

Without the real recordings (an installed wheel, not a source checkout) it falls back to the
synthetic archive of ``ephys demo-archive``. Running it again reuses what is there: the archive is
kept, the ingest skips what its hash log holds, and training resumes at its last step.
Everything is written under one folder (:class:`QuickstartResult` names each artefact).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ephys.errors import EphysError

#: Optimizer steps of the quickstart's training run: enough to see the loss fall, not to learn much.
STEPS = 40
#: What the manifest selects, and the label the probe predicts.
WHERE = ["valid = true"]
PROBE_LABEL = "category"
#: Split seeds the probe step tries in turn (see :func:`quickstart`).
PROBE_SEEDS = range(20)


@dataclass
class QuickstartResult:
    """Where each artefact is, and the figures the walk printed."""

    out: Path
    archive: Path
    catalog: str
    shards: Path
    manifest: Path
    run: Path
    report: Path
    stats: dict = field(default_factory=dict)
    probe: dict | None = None
    #: Why a step that could not run was skipped (e.g. the probe without scikit-learn).
    skipped: dict[str, str] = field(default_factory=dict)


def find_real(start: Path | None = None) -> Path | None:
    """The project's real recordings: ``shared/data/real`` beside the source checkout (or beside the
    working directory, as ``../shared/data/real``); None when neither exists."""
    from ephys.ingest.tiled import REAL

    for cand in (REAL, Path(start or Path.cwd()).resolve().parent / "shared" / "data" / "real"):
        if cand.is_dir():
            return cand
    return None


def build_archive(folder: Path, real: Path | None, *, seed: int = 20261121) -> tuple[Path, str]:
    """Write the quickstart archive into ``folder`` (kept if it is already complete); returns it and a
    sentence saying what it holds.

    With ``real`` (the real recordings): ``folder/clinical`` (6 files tiled from two of them, plan
    ``quickstart`` of :func:`ephys.ingest.tiled.plan`) and ``folder/real`` (a copy). Without: the synthetic
    archive of :func:`ephys.ingest.demo.write_demo_archive`.
    """
    done = folder.parent / f".{folder.name}-complete"  # beside it: ingest would count a file inside
    if real is None:
        from ephys.ingest.demo import write_demo_archive

        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            write_demo_archive(folder)
            done.touch()
        return folder, f"a synthetic demo archive in {folder} (no real recordings found)"
    from ephys.ingest import tiled

    specs = tiled.plan("quickstart")
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)
        pools: dict = {}
        for i, spec in enumerate(specs):
            tiled.write_file(folder / "clinical", spec, pools, seed + 1000 * i, real=real)
        # A seizure list beside the recordings (ephys TSV; the copied real folder adds a CHB-MIT summary and a
        # Siena list whose files are not here): ingest attaches it, `category = seizure` selects its epochs.
        (folder / "clinical" / "routine" / "seizure-list.tsv").write_text(
            "file\tonset\tduration\tdescription\neeg_003.edf\t120\t45\tAnfall (Klinikliste)\n", encoding="utf-8")
        shutil.copytree(real, folder / "real")
        done.touch()
    hours = sum(s.duration_s for s in specs) / 3600
    return folder, (f"{len(specs)} clinical-like recordings tiled from real EEG (EDF+, BDF+, Micromed .TRC, "
                    f"Nicolet .e; {hours:.1f} EEG-h, German annotations) in {folder / 'clinical'}, and a copy "
                    f"of the real recordings of {real} in {folder / 'real'}")


def _stats_lines(st: dict) -> list[str]:
    r, e, sh = st["recordings"], st["epochs"], st["shards"]
    codes = "; ".join(f"{status} {', '.join(f'{c} {n}' for c, n in sorted(cs.items()))}"
                      for status, cs in sorted(st["failure_codes"].items()))
    return [
        f"  {r['total']} recordings: {r.get('ok', 0)} ok, {r.get('rejected', 0)} rejected, {r.get('failed', 0)} failed"
        + (f" ({codes})" if codes else ""),
        f"  {st['eeg_hours']['ok']:.2f} EEG-hours in ok recordings; {e['total']} epochs ({e['valid']} valid) in "
        f"{sh['count']} shards ({sh['bytes'] / 2**20:.1f} MiB); {st['subjects']['ok']} subjects; "
        f"{st['annotations']} annotations",
    ]


def quickstart(out: str | Path = "ephys-quickstart", *, real: str | Path | None = None, use_real: bool = True,
               workers: int | None = None, steps: int = STEPS, say: Callable[[str], None] = print,
               reporter=None) -> QuickstartResult:
    """Run the walk of the module docstring into ``out``; ``say`` receives each line to show.

    Parameters
    ----------
    out
        Folder of everything written: ``archive/``, ``corpus/`` (shards, catalog), ``manifest.json``,
        ``pretrain/`` (checkpoint, metrics), ``report.html``.
    real
        The real recordings to tile and copy [default: :func:`find_real`]; ``use_real=False`` uses the
        synthetic demo archive instead.
    workers
        Local Dask worker processes [default: CPU count].
    steps
        Training steps (``cpu-tiny`` config, CPU).
    reporter
        An :class:`ephys.pipeline.progress.Reporter` for the ingest (the CLI passes a progress bar
        on a terminal, log lines otherwise).

    Raises
    ------
    RunError, ManifestError, PretrainError
        When a step cannot run (as the step's own function raises them). The probe step is skipped,
        with the reason in ``QuickstartResult.skipped``, when its data cannot support a probe (one
        class or one subject).
    """
    from ephys.catalog.queries import catalog_stats
    from ephys.catalog.report import write_report
    from ephys.manifest import create_manifest
    from ephys.catalog.db import default_catalog_url
    from ephys.pipeline.progress import summary_lines
    from ephys.pipeline.run import ingest

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    real_dir = (Path(real) if real is not None else find_real()) if use_real else None
    corpus = out / "corpus"
    res = QuickstartResult(out=out, archive=out / "archive", catalog=default_catalog_url(corpus),
                           shards=corpus / "shards", manifest=out / "manifest.json", run=out / "pretrain",
                           report=out / "report.html")

    say(f"[1/7] archive: {build_archive(res.archive, real_dir)[1]}")
    say(f"[2/7] ingest {res.archive} -> {corpus} (regional8 montage, local Dask cluster, SQLite catalog)")
    s = ingest(res.archive, corpus, workers=workers, reporter=reporter)
    for line in summary_lines(s, res.archive):
        say("  " + line)

    res.stats = catalog_stats(res.catalog)
    say("[3/7] catalog")
    for line in _stats_lines(res.stats):
        say(line)

    man = create_manifest(res.catalog, WHERE, res.manifest)
    c = man.counts
    say(f"[4/7] manifest {res.manifest} ({' AND '.join(WHERE)}): {c['epochs']} epochs from {c['recordings']} "
        f"recordings, {c['subjects']} subjects, {c['shards']} shards; content hash {man.content_hash[:16]}")

    from ephys.pretrain import load_config, pretrain  # torch loads here

    say(f"[5/7] pretrain: cpu-tiny masked autoencoder, {steps} steps on the CPU -> {res.run}")
    t = pretrain(res.manifest, res.run, load_config("cpu-tiny", **{"run.steps": steps, "run.device": "cpu"}))
    if t["steps_run"]:
        say(f"  loss {t['first_loss']:.4f} -> {t['last_loss']:.4f} over steps {t['start_step'] + 1}-{t['step']}")
    else:
        say(f"  already at step {t['step']} ({res.run / 'checkpoint.pt'})")

    from ephys.pretrain.evaluate import probe

    # The subject split follows the pseudonyms, hence the site secret: on a few subjects one split can leave
    # a class without training epochs. The first of PROBE_SEEDS whose split has every class is used.
    p = None
    for split_seed in PROBE_SEEDS:
        try:
            p = probe(res.run / "checkpoint.pt", res.manifest, PROBE_LABEL, device="cpu", seed=split_seed)
            break
        except EphysError as exc:
            res.skipped["probe"] = exc.reason
            if "no epoch among the training subjects" not in exc.reason:
                break
    if p is None:
        say(f"[6/7] probe skipped: {res.skipped['probe']}")
    else:
        res.skipped.pop("probe", None)
        res.probe = p.to_dict()
        say(f"[6/7] probe of {PROBE_LABEL!r} ({', '.join(p.classes)}), {p.n_train_subjects} training and "
            f"{p.n_test_subjects} held-out subjects: balanced accuracy trained {p.trained.balanced_accuracy:.3f} / "
            f"random init {p.random.balanced_accuracy:.3f} / log band powers {p.band_power.balanced_accuracy:.3f}; "
            f"kappa {p.trained.kappa:.3f} / {p.random.kappa:.3f} / {p.band_power.kappa:.3f} "
            f"({steps} steps on {c['epochs']} epochs is a demonstration, not a model)")

    write_report(res.catalog, res.report, title="ephys quickstart")
    say(f"[7/7] report {res.report}")
    say("")
    say("next:")
    for cmd in (f"ephys catalog stats --out {corpus}",
                f"ephys catalog query --out {corpus} --status rejected",
                f"ephys manifest create --out {corpus} -w 'score >= 0.8' -o {out / 'clean.json'}",
                f"ephys pretrain --manifest {res.manifest} --out {res.run} --steps {steps * 5}   # resumes at {steps}",
                f"ephys embed --checkpoint {res.run / 'checkpoint.pt'} --manifest {res.manifest} -o {out / 'emb.npy'}",
                f"ephys audit {corpus} --archive {res.archive}   # no patient identity in any output byte",
                "ephys ingest YOUR_ARCHIVE --out YOUR_OUT"):
        say(f"  {cmd}")
    return res
