"""Pretraining throughput: the shard loader, the training step and the spectrogram view, on CPU or a GPU.

Usage::

    python benchmarks/pretrain.py loader [--workers 0 2] [--batch-size 16] [--batches 40] [--device cpu|cuda]
    python benchmarks/pretrain.py train  [--config cpu-tiny] [--steps 20] [--warmup 5] [--device cpu|cuda]
    python benchmarks/pretrain.py view   [--config cpu-tiny] [--image-size S] [--batch-size 64] [--device ...]
    python benchmarks/pretrain.py all    [--device ...] [--out FILE.json] (same options, prefixed by the part)

    python benchmarks/pretrain.py --threads 1 ...   (torch CPU threads; the default is one per core)

Every part but ``view`` reads a synthetic manifest written to a temporary folder (``--data DIR`` keeps and reuses
it): ``--shards`` tar shards (8) of ``--per-shard`` epochs (64), each an 8 x 7500 float16 ``eeg.npy`` (30 s at
250 Hz, 120 KB) plus its ``json`` metadata, laid out like the ingest's shards.  The page cache is warm (the
shards were just written or read).

``loader`` times :func:`ephys.pretrain.data.make_loader` (resampled shards -> tar stream -> key selection ->
shuffle buffer -> float16 decode -> float32 batch), optionally moving each batch to ``--device``, for each worker
count: samples/s and MB/s of float16 payload over ``--batches`` batches after ``--warmup`` (worker start-up and the
shuffle buffer's first fill are in the warm-up).

``train`` runs :func:`ephys.pretrain.train.pretrain` itself for ``--warmup`` + ``--steps`` steps of a run config
(default ``cpu-tiny``) and reads its ``metrics.jsonl``: steps/s and samples/s over the last ``--steps`` steps
(per-step wall time: loader wait, view, forward, backward, optimiser; checkpoint writes fall between steps and are
not counted), the share of time waiting for data, and on CUDA the MFU = samples/s x ``train_flops_per_sample`` /
the GPU's dense bf16 peak (:func:`ephys.pretrain.train.peak_flops`).

``view`` times the spectrogram view (``flash_eeg.spectrogram``) on random µV batches already on the device:
images/s (one image = one epoch's C x S x S input) and channel images/s.

``all`` runs the three (loader with each ``--workers`` count), appends the record to ``--out`` (default
``benchmarks/results/pretrain-<GPU name or host>.json``, a JSON list) and prints a markdown table for
docs/benchmarks.md.  The other parts print one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import re
import shutil
import socket
import sys
import tarfile
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, UTC
from pathlib import Path

import numpy as np
import torch

import ingest as _ingest_bench  # noqa: E402 - benchmarks/ingest.py, next to this script
from ephys.pretrain.config import load_config
from ephys.pretrain.data import make_loader
from ephys.pretrain.train import METRICS, RUN_INFO, peak_flops, pretrain
from ephys.pretrain.views import make_view
from ephys.schemas.epoch import EpochMeta, EpochQC
from ephys.schemas.manifest import Manifest, ManifestShard
from ephys.shard.writer import npy_bytes

N_CH, N_T, SFREQ = 8, 7500, 250.0
RESULTS = Path(__file__).resolve().parent / "results"


# ------------------------------------------------------------------------------------------------- synthetic data


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_dataset(root: Path, n_shards: int = 8, per_shard: int = 64, seed: int = 0) -> Path:
    """Tar shards of ``per_shard`` epochs (8 x 7500 float16 µV: 1/f-ish noise plus a 10 Hz rhythm) and a manifest
    listing every epoch; returns the manifest path.  An existing manifest of the same size is reused."""
    path = root / "manifest.json"
    if path.exists():
        try:
            m = Manifest.load(path)
            if len(m.shards) == n_shards and all(len(s.keys) == per_shard for s in m.shards):
                return path
        except Exception:  # noqa: BLE001 - rewritten below
            pass
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = np.arange(N_T) / SFREQ
    channels = [f"E{i}" for i in range(N_CH)]
    shards = []
    for s in range(n_shards):
        shard = root / f"shard-{s:06d}.tar"
        keys = []
        with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(per_shard):
                key = f"{seed:08x}{s:08x}_{i:06d}"
                x = np.cumsum(rng.standard_normal((N_CH, N_T), dtype=np.float32), axis=1) * 0.5
                x -= x.mean(axis=1, keepdims=True)
                x += 20 * np.sin(2 * np.pi * 10.0 * t + rng.uniform(0, 2 * np.pi, (N_CH, 1)))
                arr = x.astype(np.float16)
                meta = EpochMeta(key=key, recording="ab" * 32, subject=f"sub-{s}", epoch_index=i, start_s=30.0 * i,
                                 sfreq=SFREQ, n_samples=N_T, montage="bench-8", channel_names=channels,
                                 mask=[True] * N_CH, qc=EpochQC(n_flat=0, n_clipped=0, nonfinite=False,
                                                                max_abs_uv=float(np.abs(arr).max()), valid=True))
                _add(tar, f"{key}.eeg.npy", npy_bytes(arr))
                _add(tar, f"{key}.json", meta.model_dump_json().encode())
                keys.append(key)
        digest = hashlib.sha256(shard.read_bytes()).hexdigest()
        shards.append(ManifestShard(url=shard.name, sha256=digest, n_samples=per_shard, keys=keys))
    Manifest(ephys_version="bench", created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
             query=["benchmark"], montage="bench-8", channel_names=channels, sfreq=SFREQ, n_samples=N_T,
             counts={"epochs": n_shards * per_shard, "shards": n_shards}, shards=shards).save(path)
    return path


@contextmanager
def dataset(data: Path | None, n_shards: int, per_shard: int):
    """The manifest under ``data`` (kept), or under a temporary folder removed afterwards."""
    if data is not None:
        yield write_dataset(data, n_shards, per_shard)
        return
    tmp = Path(tempfile.mkdtemp(prefix="pretrain-bench-"))
    try:
        t = time.perf_counter()
        path = write_dataset(tmp, n_shards, per_shard)
        print(f"synthetic manifest: {n_shards} x {per_shard} epochs in {time.perf_counter() - t:.1f} s",
              file=sys.stderr)
        yield path
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------------------------------- parts


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_loader(manifest_path: Path, workers: int, batch_size: int, batches: int, warmup: int,
                 device: str = "cpu") -> dict:
    """samples/s of ``make_loader`` with ``workers`` DataLoader workers, batches moved to ``device``."""
    dev = torch.device(device)
    manifest = Manifest.load(manifest_path)
    loader = make_loader(manifest, manifest_path, batch_size, seed=0, num_workers=workers)
    t_start = time.perf_counter()
    it = iter(loader)
    try:
        first_s = None
        for i in range(warmup + batches):
            if i == warmup:
                _sync(dev)
                t0 = time.perf_counter()
            x = next(it).to(dev, non_blocking=True)
            if first_s is None:
                first_s = time.perf_counter() - t_start
        _sync(dev)
        dt = time.perf_counter() - t0
    finally:
        getattr(it, "close", lambda: None)()
        del it
    assert x.shape == (batch_size, N_CH, N_T) and x.dtype == torch.float32
    rate = batches * batch_size / dt
    return dict(workers=workers, batch_size=batch_size, batches=batches, device=str(dev), seconds=dt,
                samples_per_s=rate, mb_per_s=rate * N_CH * N_T * 2 / 1e6, first_batch_s=first_s)


def bench_train(manifest_path: Path, config: str, steps: int, warmup: int, device: str, batch_size: int | None,
                precision: str, workers: int) -> dict:
    """steps/s, samples/s (and MFU on CUDA) of ``pretrain`` over its last ``steps`` steps."""
    overrides = {"run.steps": warmup + steps, "run.checkpoint_every": warmup + steps, "run.device": device,
                 "run.precision": precision, "run.progress": False, "data.num_workers": workers}
    if batch_size:
        overrides["data.batch_size"] = batch_size
    cfg = load_config(config, **overrides)
    with tempfile.TemporaryDirectory(prefix="pretrain-bench-run-") as out:
        t = time.perf_counter()
        pretrain(manifest_path, out, cfg)
        wall = time.perf_counter() - t
        rows = [json.loads(line) for line in (Path(out) / METRICS).read_text().splitlines()]
        info = json.loads((Path(out) / RUN_INFO).read_text())
    timed = [r for r in rows if r["step"] > warmup]
    batch = cfg.data.batch_size
    step_s = [batch / r["samples_per_s"] for r in timed]
    total = sum(step_s)
    rate = len(timed) * batch / total
    dev = torch.device(info["device"])
    peak = peak_flops(dev)
    flops = info["train_flops_per_sample"]
    return dict(config=config, device=info["device"], device_name=info["device_name"],
                torch_version=info["torch_version"], precision=info["precision"], batch_size=batch, steps=len(timed),
                warmup=warmup, num_workers=workers, steps_per_s=len(timed) / total, samples_per_s=rate,
                median_step_s=float(np.median(step_s)), data_wait_share=sum(r["data_wait_s"] for r in timed) / total,
                train_flops_per_sample=flops, achieved_tflops=rate * flops / 1e12, peak_flops=peak,
                mfu=rate * flops / peak if peak else None, n_parameters=info["n_parameters"],
                n_encoder_parameters=info.get("n_encoder_parameters"), input_shape=info["input_shape"],
                first_loss=rows[0]["loss"], last_loss=rows[-1]["loss"], wall_s=wall)


def bench_view(config: str, image_size: int | None, batch_size: int, iters: int, warmup: int, device: str) -> dict:
    """images/s of the run config's spectrogram view on random batches already on ``device``."""
    dev = torch.device(device)
    vc = load_config(config).view
    if vc.kind != "spectrogram":
        raise SystemExit(f"config {config} has a {vc.kind} view; the view benchmark times the spectrogram")
    if image_size:
        vc = vc.model_copy(update={"image_size": image_size})
    view = make_view(vc, SFREQ, N_T).to(dev)
    gen = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(batch_size, N_CH, N_T, device=dev, generator=gen) * 20.0
    with torch.no_grad():
        for _ in range(warmup):
            y = view(x)
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(iters):
            y = view(x)
        _sync(dev)
        dt = time.perf_counter() - t0
    assert y.shape == (batch_size, N_CH, vc.image_size, vc.image_size)
    rate = iters * batch_size / dt
    return dict(config=config, image_size=vc.image_size, n_fft=vc.n_fft, hop_length=vc.hop_length,
                batch_size=batch_size, iters=iters, device=str(dev), images_per_s=rate,
                channel_images_per_s=rate * N_CH, ms_per_batch=dt / iters * 1e3)


# ------------------------------------------------------------------------------------------------------- report


_cpu_name = _ingest_bench._cpu_name  # one /proc/cpuinfo reader for both benchmark scripts


def environment(device: str) -> dict:
    dev = torch.device(device)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return dict(date=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), host=socket.gethostname(),
                cpu=_cpu_name(), cores=cores, torch_threads=torch.get_num_threads(), python=platform.python_version(),
                torch_version=torch.__version__, device=str(dev),
                device_name=torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                load_before=os.getloadavg()[0] if hasattr(os, "getloadavg") else None)


def default_out(env: dict) -> Path:
    name = env["device_name"] if env["device_name"] != "cpu" else env["host"]
    return RESULTS / f"pretrain-{re.sub(r'[^A-Za-z0-9._-]+', '-', name).strip('-').lower()}.json"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def markdown(res: dict) -> str:
    env, tr, vw = res["env"], res["train"], res["view"]
    lines = [f"Machine: {env['cpu']}, {env['cores']} cores ({env['torch_threads']} torch threads), device "
             f"{env['device_name']}; torch {env['torch_version']}, "
             f"Python {env['python']}; load average {_num(env['load_before'])} before; {env['date']}.", "",
             "| part | setting | throughput |", "|---|---|---:|"]
    for ld in res["loader"]:
        lines.append(f"| loader (`make_loader` -> {ld['device']}) | batch {ld['batch_size']}, {ld['workers']} workers "
                     f"| {ld['samples_per_s']:,.0f} samples/s ({ld['mb_per_s']:,.0f} MB/s float16) |")
    mfu = f", MFU {tr['mfu'] * 100:.1f} %" if tr["mfu"] is not None else ""
    lines.append(f"| train (`pretrain`, {tr['config']}, {tr['precision']}) | batch {tr['batch_size']}, "
                 f"{tr['n_parameters'] / 1e6:.2f}M params, {tr['train_flops_per_sample'] / 1e9:.3g} GFLOP/sample "
                 f"| {tr['steps_per_s']:.2f} steps/s, {tr['samples_per_s']:,.0f} samples/s, "
                 f"{tr['achieved_tflops']:.3g} TFLOP/s{mfu}; {tr['data_wait_share'] * 100:.0f} % waiting for data |")
    lines.append(f"| view (spectrogram {vw['image_size']}x{vw['image_size']}, n_fft {vw['n_fft']}) "
                 f"| batch {vw['batch_size']} on {vw['device']} | {vw['images_per_s']:,.0f} images/s "
                 f"({vw['channel_images_per_s']:,.0f} channel images/s) |")
    return "\n".join(lines) + "\n"


def save(res: dict, out: Path) -> None:
    """Append ``res`` to the JSON list in ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    runs = json.loads(out.read_text()) if out.exists() else []
    runs.append(res)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(runs, indent=1) + "\n")
    os.replace(tmp, out)


# --------------------------------------------------------------------------------------------------- command line


def _data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, help="keep (and reuse) the synthetic shards here")
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--per-shard", type=int, default=64)


def _device_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, help="torch intra-op CPU threads (default: torch's, one per core); on a "
                    "shared machine 1 avoids threads that wait on each other")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("loader", help="make_loader samples/s; prints JSON lines")
    _data_options(p)
    _device_option(p)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)

    p = sub.add_parser("train", help="pretrain steps/s, samples/s, MFU; prints a JSON line")
    _data_options(p)
    _device_option(p)
    p.add_argument("--config", default="cpu-tiny", help="run config path or packaged name")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch-size", type=int, help="default: the config's")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    p.add_argument("--workers", type=int, default=0, help="data.num_workers")

    p = sub.add_parser("view", help="spectrogram view images/s; prints a JSON line")
    _device_option(p)
    p.add_argument("--config", default="cpu-tiny")
    p.add_argument("--image-size", type=int, help="default: the config's")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)

    p = sub.add_parser("all", help="the three parts; appends to --out and prints a markdown table")
    _data_options(p)
    _device_option(p)
    p.add_argument("--config", default="cpu-tiny")
    p.add_argument("--out", type=Path, help="JSON list to append to (default benchmarks/results/pretrain-<name>.json)")
    p.add_argument("--loader-workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--loader-batch-size", type=int, default=16)
    p.add_argument("--loader-batches", type=int, default=40)
    p.add_argument("--train-steps", type=int, default=20)
    p.add_argument("--train-warmup", type=int, default=5)
    p.add_argument("--train-batch-size", type=int)
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    p.add_argument("--view-batch-size", type=int, default=64)
    p.add_argument("--view-iters", type=int, default=10)
    p.add_argument("--image-size", type=int)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)

    if a.cmd == "view":
        print(json.dumps(bench_view(a.config, a.image_size, a.batch_size, a.iters, a.warmup, a.device)))
        return
    with dataset(a.data, a.shards, a.per_shard) as manifest:
        if a.cmd == "loader":
            for w in a.workers:
                print(json.dumps(bench_loader(manifest, w, a.batch_size, a.batches, a.warmup, a.device)), flush=True)
        elif a.cmd == "train":
            print(json.dumps(bench_train(manifest, a.config, a.steps, a.warmup, a.device, a.batch_size, a.precision,
                                         a.workers)))
        else:
            env = environment(a.device)
            res = dict(env=env, data=dict(shards=a.shards, per_shard=a.per_shard, epoch_shape=[N_CH, N_T]))
            res["loader"] = [bench_loader(manifest, w, a.loader_batch_size, a.loader_batches, 5, a.device)
                             for w in a.loader_workers]
            res["train"] = bench_train(manifest, a.config, a.train_steps, a.train_warmup, a.device,
                                       a.train_batch_size, a.precision, 0)
            res["view"] = bench_view(a.config, a.image_size, a.view_batch_size, a.view_iters, 2, a.device)
            res["env"]["load_after"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
            out = a.out or default_out(env)
            save(res, out)
            print(f"appended to {out}", file=sys.stderr)
            print(markdown(res))


if __name__ == "__main__":
    main()
