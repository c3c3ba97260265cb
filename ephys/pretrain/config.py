"""Run configuration of ``ephys pretrain``: a TOML file validated by pydantic.

A run config has five tables; every key is optional and unknown keys are errors::

    [model]            # arch = "hiera" (EPI-250k) or "mae" (1-s patches of single channels, raw view)
    arch = "hiera"
    preset = "base50m" # hiera: tiny | base50m | large210m; any HieraConfig field may follow as an override
    mask_ratio = 0.6
    mask_mode = "amplitude"

    [view]             # see ephys.pretrain.views.ViewConfig
    kind = "spectrogram"

    [data]
    batch_size = 64
    min_score = 0.8    # load-time filters on each sample's metadata (see ephys.pretrain.data.SampleFilter)

    [optim]
    optimizer = "muon+adamw"

    [run]
    steps = 10000
    checkpoint_every = 500

:func:`load_config` reads a file; :meth:`RunConfig.with_overrides` applies dotted command-line overrides
(``run.steps=100``).  :meth:`RunConfig.build_model_config` sizes the model to a manifest's epochs.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, ValidationError, model_validator

from ephys.errors import ConfigError
from ephys.pretrain.arch import VIEW_INPUTS
from ephys.pretrain.arch import get as get_arch
from ephys.pretrain.views import ViewConfig

__all__ = ["ConfigError", "DataConfig", "ModelSection", "OptimConfig", "RunConfig", "RunSection", "dotted",
           "load_config", "parse_overrides"]


_MODEL_KEYS = {"arch", "preset", "mask_ratio"}


class ModelSection(BaseModel):
    """``[model]``: the architecture and its sizes.

    ``arch`` names a registered architecture (:mod:`ephys.pretrain.arch`).  ``arch = "hiera"`` builds
    :class:`~ephys.pretrain.hiera.HieraMAE` from ``preset`` plus any :class:`~ephys.pretrain.hiera.HieraConfig`
    field given here (``in_chans`` and ``image_size`` come from the manifest and the view).  ``arch = "mae"`` builds
    :class:`~ephys.pretrain.model.MaskedAutoencoder` from the :class:`~ephys.pretrain.model.MAEConfig` fields given
    here (``n_channels``, ``n_samples`` from the manifest).
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    arch: str = Field("hiera", description="a registered architecture: hiera or mae (ephys.pretrain.arch)")
    preset: str | None = Field(None, description="hiera preset (tiny, base50m, large210m); default base50m")
    mask_ratio: float = Field(0.6, gt=0.0, lt=1.0, description="fraction of the input hidden from the encoder")

    @property
    def overrides(self) -> dict[str, Any]:
        """The architecture fields given besides ``arch``, ``preset`` and ``mask_ratio``."""
        return dict(self.model_extra or {})

    @model_validator(mode="after")
    def _check(self) -> ModelSection:
        arch = get_arch(self.arch)
        if self.preset is not None and not arch.presets:
            raise ValueError(f"preset is not an option of arch {arch.name!r}; it takes {arch.config.__name__} fields only")
        if self.preset is not None and self.preset not in arch.presets:
            raise ValueError(f"unknown preset {self.preset!r}; choose from {sorted(arch.presets)}")
        if given := set(arch.sized_by_data) & self.overrides.keys():
            raise ValueError(f"{sorted(given)} come from the manifest and the view, not from [model]")
        return self

    def build(self, n_channels: int, n_samples: int, view: ViewConfig):
        """The model config for epochs ``(n_channels, n_samples)`` seen through ``view`` (the architecture's
        ``make_config``).

        Raises ``ValueError`` (pydantic ``ValidationError``) naming the field for unknown keys or impossible sizes.
        """
        arch = get_arch(self.arch)
        if view.kind != arch.view:
            raise ValueError(f"arch {arch.name!r} takes {VIEW_INPUTS.get(arch.view, arch.view)}: set [view] kind = "
                             f"'{arch.view}'")
        return arch.make_config(self.overrides, self.preset, self.mask_ratio, n_channels, n_samples, view)


class DataConfig(BaseModel):
    """``[data]``: batches and load-time filters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: PositiveInt = Field(64, description="epochs per step and per process")
    num_workers: NonNegativeInt = Field(0, description="DataLoader workers per process (0: in-process, exact)")
    shuffle_buffer: PositiveInt = Field(500, description="samples in the shuffle buffer")
    reseed_every: PositiveInt = Field(1000, description="steps per data segment (see StepBatches)")
    min_score: float | None = Field(None, ge=0, le=1, description="keep epochs with qc.score >= this")
    valid_only: bool = Field(False, description="keep epochs with qc.valid only")
    stages: list[Literal["W", "N1", "N2", "N3", "REM"]] | None = Field(None, description="keep these sleep stages")
    categories: list[str] | None = Field(None, description="keep epochs with an annotation of these categories")


class OptimConfig(BaseModel):
    """``[optim]``: optimisers and the learning-rate schedule (step-based)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    optimizer: Literal["muon+adamw", "adamw"] = Field(
        "muon+adamw", description="Muon on hidden 2-D weights + AdamW on the rest, or AdamW on everything"
    )
    lr: float = Field(1e-3, gt=0, description="peak AdamW learning rate")
    muon_lr: float = Field(0.02, gt=0, description="peak Muon learning rate")
    weight_decay: float = Field(0.05, ge=0, description="AdamW decoupled weight decay (not on norms/biases/embeddings)")
    muon_weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    muon_momentum: float = Field(0.95, ge=0, lt=1)
    grad_clip: float = Field(1.0, gt=0, description="max global gradient L2 norm")
    warmup_steps: NonNegativeInt | None = Field(None, description="linear warm-up; default 5% of decay_steps")
    decay_steps: PositiveInt | None = Field(None, description="cosine horizon; default run.steps")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="the cosine ends at lr * min_lr_ratio")


class RunSection(BaseModel):
    """``[run]``: length, seeds, outputs, device."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: PositiveInt = Field(1000, description="total optimizer steps")
    seed: NonNegativeInt = 0
    checkpoint_every: PositiveInt = 500
    log_every: PositiveInt = 10
    device: str | None = Field(None, description="torch device; default cuda if available, else cpu")
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto: bf16 autocast on CUDA, fp32 on CPU")
    tensorboard: bool = Field(False, description="also write TensorBoard events (needs the tensorboard package)")
    progress: bool = Field(True, description="a progress bar on a terminal (rank 0)")


class RunConfig(BaseModel):
    """A whole run config (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelSection = ModelSection()
    view: ViewConfig = ViewConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    run: RunSection = RunSection()

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        # Catch unknown model keys and impossible sizes now, not after the shards were hashed.  The probe epoch is
        # 8 channels of 30 patches (the channel count never makes a config invalid; the manifest's length may).
        self.model.build(8, 30 * int(self.model.overrides.get("patch_size", 250)), self.view)
        decay = self.optim.decay_steps or self.run.steps
        if self.optim.warmup_steps is not None and self.optim.warmup_steps > decay:
            raise ValueError(f"optim.warmup_steps {self.optim.warmup_steps} exceeds the {decay}-step decay")
        return self

    @property
    def decay_steps(self) -> int:
        return self.optim.decay_steps or self.run.steps

    @property
    def warmup_steps(self) -> int:
        return self.decay_steps // 20 if self.optim.warmup_steps is None else self.optim.warmup_steps

    def with_overrides(self, **overrides: Any) -> RunConfig:
        """A copy with ``section.key`` values replaced, validated again (e.g. ``{"run.steps": 10}``; keywords may
        spell it ``run__steps``)."""
        data = self.model_dump(exclude_none=False)
        for key, value in dotted(overrides).items():
            section, _, field = key.partition(".")
            if not field or section not in data:
                raise ValueError(f"override {key!r} is not section.key with a section of {sorted(data)}")
            data[section][field] = value
        return RunConfig.model_validate(data)

    def model_dump_toml(self) -> str:
        """The config as TOML (None values left out), readable by :func:`load_config`."""
        lines: list[str] = []
        for section, values in self.model_dump().items():
            lines.append(f"[{section}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in values.items() if v is not None]
            lines.append("")
        return "\n".join(lines)


def dotted(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Override keys as ``section.key`` (``section__key``, the keyword-argument spelling, converted)."""
    return {k.replace("__", "."): v for k, v in overrides.items()}


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["run.steps=10", 'view.kind="raw"']`` -> ``{"run.steps": 10, "view.kind": "raw"}`` (``--set`` options).

    Values are TOML values; a bare word that is not valid TOML is taken as a string.  Raises ``ValueError`` for an
    item that is not ``section.key=value``.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ValueError(f"--set {item!r} is not section.key=value")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value.strip()
    return out


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _describe(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors())


CONFIG_DIR = Path(__file__).parent / "configs"


def packaged_configs() -> list[str]:
    """Names of the run configs shipped with ephys (``cpu-tiny``, ``epi250k-base``, ``epi250k-large``)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def choose_config(out_dir: str | Path, device: str | None = None) -> tuple[str | Path, str]:
    """The run config ``ephys pretrain`` uses without ``--config``, and why (a phrase to show the user).

    * ``out_dir/config.toml`` when the run folder holds one: a resumed run keeps its own config;
    * else ``epi250k-base`` on a CUDA device (``device``, or CUDA available when it is None);
    * else ``cpu-tiny``: the base model runs at seconds per step on a CPU.
    """
    saved = Path(out_dir) / "config.toml"
    if saved.is_file():
        return saved, "the run's own config: resuming"
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.split(":")[0] == "cuda":
        return "epi250k-base", f"device {device}"
    return "cpu-tiny", f"device {device}: no GPU, the CPU-sized config"


def load_config(path: str | Path | None = None, **overrides: Any) -> RunConfig:
    """Read a run config from TOML (defaults when ``path`` is None) and apply dotted ``overrides``.

    ``path`` may also be the name of a packaged config (:func:`packaged_configs`), e.g. ``"cpu-tiny"``.

    Raises
    ------
    ConfigError
        Naming the file and, for a validation failure, every offending ``section.key``.
    """
    if path is not None and not Path(path).exists() and str(path) in packaged_configs():
        path = CONFIG_DIR / f"{path}.toml"
    source = str(path) if path is not None else "default config"
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8")) if path is not None else {}
    except OSError as exc:
        raise ConfigError(f"config cannot be read ({exc.strerror or exc})", source) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config is not valid TOML ({exc})", source) from None
    try:
        config = RunConfig.model_validate(raw)
        return config.with_overrides(**overrides) if overrides else config
    except ValidationError as exc:
        raise ConfigError(_describe(exc), source) from None
    except ValueError as exc:
        raise ConfigError(str(exc), source) from None
