"""Meta-training configuration: YAML files, ``key=value`` overrides, strict validation."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lsml_hub._checks import is_int, is_number, require
from lsml_hub.algorithms import build_algorithm
from lsml_hub.compute import ComputeConfig
from lsml_hub.data import TaskSpec
from lsml_hub.errors import ConfigError, first_line
from lsml_hub.run_layout import RUN_CONFIG_FILE, RUN_MARKER
from lsml_hub.training.start import canonical_start

INNER_OPTIMIZERS = ("sgd", "adam", "rmsprop")


@dataclass
class InnerConfig:
    """Each task's own optimizer (the seed's defaults: SGD, lr 0.01, momentum 0.9, wd 5e-4, batch 128)."""

    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    batch_size: int = 128

    def __post_init__(self) -> None:
        if self.optimizer not in INNER_OPTIMIZERS:
            raise ConfigError(f"unknown inner.optimizer {self.optimizer!r}; valid: {', '.join(INNER_OPTIMIZERS)}")
        require("inner.batch_size", self.batch_size, is_int(self.batch_size) and self.batch_size > 0,
                 "a positive integer")
        require("inner.lr", self.lr, is_number(self.lr) and self.lr > 0, "a positive number")
        for key in ("momentum", "weight_decay"):
            value = getattr(self, key)
            require(f"inner.{key}", value, is_number(value) and value >= 0, "a number >= 0")
        require("inner.nesterov", self.nesterov, isinstance(self.nesterov, bool), "true or false")


@dataclass
class MetaTrainConfig:
    """Everything a meta-training run depends on.

    Example:
        >>> cfg = MetaTrainConfig.from_dict({"tasks": ["builtin:digits"], "steps": 10})
        >>> cfg.algorithm["name"], cfg.inner.optimizer
        ('cts', 'sgd')
    """

    tasks: list[TaskSpec]
    model: str = "resnet20_cifar"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    start_from: str | None = None
    algorithm: dict[str, Any] = field(default_factory=lambda: {"name": "cts"})
    inner: InnerConfig = field(default_factory=InnerConfig)
    steps: int = 200_000
    seed: int = 0
    output_dir: str = "runs/meta_train"
    input_size: int | None = None
    eval_every: int = 5000
    eval_batches: int | None = None
    checkpoint_every: int = 5000
    log_every: int = 500
    device: str = "auto"
    tensorboard: bool = True
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool | str = False
    device_data_gb: float = 8.0

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ConfigError("a meta-training config needs at least one task under 'tasks'")
        for key in ("steps", "eval_every", "checkpoint_every", "log_every"):
            value = getattr(self, key)
            require(key, value, is_int(value) and value > 0, "a positive integer")
        for key in ("eval_batches", "input_size"):
            value = getattr(self, key)
            require(key, value, value is None or (is_int(value) and value > 0), "a positive integer or null")
        require("seed", self.seed, is_int(self.seed) and self.seed >= 0, "a non-negative integer")
        for key in ("model", "output_dir", "device"):
            require(key, getattr(self, key), isinstance(getattr(self, key), str), "a string")
        require("tensorboard", self.tensorboard, isinstance(self.tensorboard, bool), "true or false")
        require("algorithm", self.algorithm, isinstance(self.algorithm, Mapping), "a name or a mapping")
        build_algorithm(self.algorithm)  # validates name and keys now, not at step 1
        check_model_kwargs(self.model_kwargs)
        require("start_from", self.start_from, self.start_from is None or (
            isinstance(self.start_from, str) and self.start_from.strip()),
            "null (random weights), pretrained (timm's weights) or an init string (hf-hub:..., local-dir:..., "
            "a folder, scratch:ARCH, timm:ARCH[.TAG])")
        _refuse_duplicate_names(self.tasks)
        self.compute  # noqa: B018 - validates precision, channels_last and compile now
        gb = self.device_data_gb
        require("device_data_gb", gb, is_number(gb) and math.isfinite(gb) and gb >= 0,
                 "a finite number of GB >= 0 (0 keeps every split on the host)")

    @property
    def compute(self) -> ComputeConfig:
        """Precision, layout and compilation of the inner steps."""
        return ComputeConfig(self.precision, self.channels_last, self.compile)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> MetaTrainConfig:
        values = dict(values)
        _check_keys(values, cls, "")
        if "inner" in values:
            inner = values["inner"] or {}
            if not isinstance(inner, Mapping):
                raise ConfigError(f"'inner' must be a mapping, got {inner!r}")
            _check_keys(inner, InnerConfig, "inner.")
            values["inner"] = InnerConfig(**inner)
        _expand_algorithm_name(values)
        tasks = values.get("tasks") or []
        if isinstance(tasks, (str, Mapping)):  # one task written without a list
            tasks = [tasks]
        values["tasks"] = [TaskSpec.parse(t) for t in tasks]
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["tasks"] = [t.to_dict() for t in self.tasks]
        return out


# Keys that may change between a checkpoint and its resumption without changing the result.
# precision and channels_last are not among them: a resumed run must compute as the checkpointed one did
# (channels_last also orders φ's values in the checkpoint).
RESUMABLE_KEYS = ("steps", "output_dir", "eval_every", "eval_batches", "checkpoint_every", "log_every",
                  "device", "tensorboard", "compile", "device_data_gb")


def identity(config: MetaTrainConfig) -> dict[str, Any]:
    """The part of the config a checkpoint must agree with to be resumed.

    The algorithm enters with its defaults filled in, and ``start_from`` in one spelling
    (:func:`~lsml_hub.training.start.canonical_start`), so equivalent spellings (Reptile with or
    without ``aggregate_period``, ``null`` and ``scratch:ARCH``) resume each other.
    """
    out = {k: v for k, v in config.to_dict().items() if k not in RESUMABLE_KEYS}
    out["algorithm"] = build_algorithm(config.algorithm).hyperparameters()
    out["start_from"] = canonical_start(config.model, config.start_from)
    return out


# timm.create_model arguments the trainer sets itself (per task, or never for an init).
# in_chans too: decoded images are always RGB.
RESERVED_MODEL_KWARGS = ("num_classes", "in_chans", "pretrained", "pretrained_cfg", "pretrained_cfg_overlay",
                         "checkpoint_path", "cache_dir", "device", "dtype", "features_only")


def check_model_kwargs(model_kwargs: Any) -> None:
    """Raise :class:`ConfigError` unless ``model_kwargs`` is a mapping of timm arguments an init can record.

    They end up in the init's ``config.json`` (timm's ``model_args``), so they must be JSON values.

    Example:
        >>> check_model_kwargs({"img_size": 32})
        >>> check_model_kwargs({"num_classes": 3})
        Traceback (most recent call last):
        ...
        lsml_hub.errors.ConfigError: model_kwargs may not set num_classes (the trainer sets it); ...
    """
    require("model_kwargs", model_kwargs, isinstance(model_kwargs, Mapping),
             "a mapping of timm.create_model arguments, e.g. {img_size: 32}")
    not_names = [k for k in model_kwargs if not isinstance(k, str) or not k.isidentifier()]
    if not_names:
        raise ConfigError(f"model_kwargs keys must be argument names, got {not_names!r}")
    reserved = [k for k in model_kwargs if k in RESERVED_MODEL_KWARGS]
    if reserved:
        raise ConfigError(f"model_kwargs may not set {', '.join(map(str, reserved))} (the trainer sets it); "
                          f"remove it and keep architecture arguments such as img_size or drop_path_rate")
    try:
        json.dumps(dict(model_kwargs), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model_kwargs must hold JSON values (they go to the init's config.json): {err}") from None


def _refuse_duplicate_names(tasks: Sequence[TaskSpec]) -> None:
    # Metrics, checkpoints and the init's metadata are keyed by a task's display name.
    seen: dict[str, str] = {}
    for spec in tasks:
        name = spec.display_name
        if name in seen:
            raise ConfigError(f"two tasks are both named {name!r} ({seen[name]!r} and {spec.source!r}); "
                              "give one a distinct name with ?name=... in its spec")
        seen[name] = spec.source


class _YamlLoader(yaml.SafeLoader):
    """YAML with 1.2 floats: ``1e-3`` is a number (PyYAML's YAML 1.1 reads it as a string)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)  # a SafeLoader subclass: no arbitrary objects


def _check_keys(values: Mapping[str, Any], cls: type, prefix: str) -> None:
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in valid]
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {[prefix + k for k in unknown]}; valid: {[prefix + k for k in valid]}"
        )


def apply_overrides(values: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``values`` with ``key=value`` strings applied; dotted keys reach nested mappings, values parse as YAML.

    Example:
        >>> apply_overrides({"algorithm": {"name": "cts"}}, ["algorithm.meta_lr=0.1", "steps=5"])
        {'algorithm': {'name': 'cts', 'meta_lr': 0.1}, 'steps': 5}
    """
    if isinstance(overrides, str) or not all(isinstance(item, str) for item in overrides):
        raise ConfigError(f"overrides must be a list of key=value strings, e.g. ['steps=100'], got {overrides!r}")
    values = copy.deepcopy(dict(values))  # the caller's mapping (and the mappings inside it) stay as they were
    _expand_algorithm_name(values)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"bad override {item!r}: write key=value, e.g. steps=100 or algorithm.meta_lr=0.1")
        *parents, leaf = key.split(".")
        node = values
        for i, part in enumerate(parents):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"bad override {item!r}: {'.'.join(parents[: i + 1])} is not a mapping")
            node = child
        try:
            node[leaf] = _load_yaml(raw) if raw else None
        except yaml.YAMLError as err:
            raise ConfigError(f"bad override {item!r}: the value is not valid YAML ({first_line(err)}); quote "
                              "strings that hold ':', '?' or ',' inside lists") from err
        _expand_algorithm_name(values)  # so `algorithm=reptile algorithm.reset_period=3` works
    return values


def _expand_algorithm_name(values: dict[str, Any]) -> None:
    # "algorithm: reptile" is short for {name: reptile}: a new name drops the old algorithm's keys.
    if isinstance(values.get("algorithm"), str):
        values["algorithm"] = {"name": values["algorithm"]}


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> MetaTrainConfig:
    """Read a YAML config (or start empty when ``path`` is None) and apply overrides.

    A run's own ``config.yaml`` (beside its ``run.json``) trains that run: its ``output_dir`` becomes the
    folder it lies in, from wherever it is read, unless an override sets another.
    """
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            values = _load_yaml(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {first_line(err)}") from err
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of config keys")
        if path.name == RUN_CONFIG_FILE and (path.parent / RUN_MARKER).is_file():
            values["output_dir"] = str(path.parent)  # as written it is relative to where the run started
    try:
        return MetaTrainConfig.from_dict(apply_overrides(values, overrides))
    except TypeError as err:
        raise ConfigError(f"bad config value: {err}") from err
