"""``compare``: fine-tune several inits and baselines on one target with the same seeds, side by side.

The baselines are the init's architecture from random weights (``scratch``) and timm's pretrained
weights (``pretrained``). The pretrained baseline is used only when its weights are already in the
local Hugging Face cache: comparisons run offline, and a download in the middle of one would be slow
or fail. Asked for by name it must be there (:func:`require_cached_pretrained`); as part of the default
baselines it is skipped with a log line when it is not.

The module is not called ``compare`` so that importing it never shadows the function of that name
in the package namespace.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from lsml_hub._checks import is_int
from lsml_hub.data import Task, TaskSpec
from lsml_hub.errors import ConfigError
from lsml_hub.hub.load import create_model
from lsml_hub.hub.pretrained import (
    PRETRAINED_FILE,
    CachedWeights,
    find_cached_pretrained,
    require_cached_pretrained,
)
from lsml_hub.metatest.comparison import INIT, PRETRAINED, SCRATCH, Comparison, ComparisonRow, SeedRun
from lsml_hub.metatest.config import MAX_SEED, FinetuneConfig
from lsml_hub.metatest.finetuning import ModelOrInit, run_finetune
from lsml_hub.metatest.model import InputConfig, architecture_of, create_scratch, init_architecture
from lsml_hub.metatest.report import COMPARE_OUTPUT, write_report
from lsml_hub.metatest.result import FinetuneResult
from lsml_hub.metatest.target import Target

logger = logging.getLogger(__name__)

Inits = ModelOrInit | Sequence[ModelOrInit] | Mapping[str, ModelOrInit]


BASELINES = (SCRATCH, PRETRAINED)
# What compare says when the pretrained baseline it was asked for cannot run.
_BASELINE_NEEDS = ("the pretrained baseline", "compare with the scratch baseline only (--baselines scratch)",
                   "leave pretrained out of the baselines")


@dataclass(frozen=True)
class Baseline:
    """A baseline row: its name, kind, source, and a factory called once per seed (after seeding)."""

    name: str
    kind: str
    source: str
    make: Callable[[int], nn.Module]


def scratch_baseline(architecture: str, model_args: dict[str, Any], inputs: InputConfig) -> Baseline:
    """Random weights of ``architecture``, fed exactly the inputs (size, mean, std) of the init it is compared with."""

    def make(num_classes: int) -> nn.Module:
        return create_scratch(architecture, num_classes, image_size=inputs.image_size,
                              pretrained_cfg={"mean": inputs.mean, "std": inputs.std}, **model_args)

    return Baseline(SCRATCH, SCRATCH, f"scratch:{architecture}", make)


def require_pretrained_baseline(architecture: str) -> CachedWeights:
    """The cached timm weights the pretrained baseline needs, or an InitError saying how to get them."""
    return require_cached_pretrained(architecture, *_BASELINE_NEEDS)


def pretrained_baseline(architecture: str, *, required: bool = False) -> Baseline | None:
    """timm's default pretrained weights of ``architecture`` when cached; ``None`` (logged) otherwise.

    The model keeps its own ``pretrained_cfg``, so it sees the target at the size and normalization
    its weights were trained with.

    Args:
        architecture: The timm architecture of the init it is compared with.
        required: Raise instead of returning ``None`` (the user asked for this baseline by name).

    Raises:
        InitError: ``required`` and the weights are not cached (see :func:`require_cached_pretrained`).
    """
    weights = require_pretrained_baseline(architecture) if required else find_cached_pretrained(architecture)
    if weights is None:
        logger.info("skipping the pretrained baseline: no timm pretrained %s for %s in the Hugging Face cache",
                    PRETRAINED_FILE, architecture)
        return None

    source = f"timm:{weights.model_name}"  # an init string every entry point loads the same way

    def make(num_classes: int) -> nn.Module:
        return create_model(source, num_classes=num_classes)

    return Baseline(PRETRAINED, PRETRAINED, source, make)


@dataclass(frozen=True)
class _Entry:
    name: str
    kind: str
    source: str
    make: Callable[[int], ModelOrInit]  # num_classes -> what run_finetune takes (called after seeding)
    init: ModelOrInit | None = None  # what the user passed (inits only)


@dataclass(frozen=True)
class _Baselines:
    """The baselines to run, and whether the user named them (then a missing pretrained one is an error)."""

    names: list[str]
    explicit: bool


def compare(
    inits: Inits,
    target: Task | TaskSpec | str | Mapping[str, Any],
    *,
    seeds: Iterable[int] = (0,),
    baselines: Iterable[str] | None = None,
    out_dir: str | os.PathLike | None = None,
    record: bool = False,
    progress: bool = True,
    **finetune_kwargs: Any,
) -> Comparison:
    """Fine-tune each init and each baseline on ``target`` with every seed, and summarize side by side.

    Every run uses the same settings and, per seed, the same head initialization, batch order,
    augmentation and limited-data subset, so differences between rows come from the starting weights.

    Args:
        inits: Inits to compare: a sequence of anything :func:`lsml_hub.finetune` takes (named by
            their string; a model is copied for each seed, never changed), or a mapping name -> init.
        target: The target task, loaded once for all runs.
        seeds: Seeds every row runs with; several give mean ± std.
        baselines: ``"scratch"`` (the first init's architecture from random weights, fed the same
            inputs) and/or ``"pretrained"`` (timm's default pretrained weights of that architecture,
            read from the local Hugging Face cache, never downloaded). ``None`` (the default) runs
            scratch, and pretrained when its weights are cached (otherwise it is skipped with an info
            log); naming ``"pretrained"`` makes uncached weights an error, raised before any run.
        out_dir: If given, write ``comparison.csv``, ``comparison.json`` and ``curves.png`` there; it
            must be new, empty, or an earlier compare output: only those files, ``comparison.json``
            among them (checked before any run).
        record: Write each local init folder's results into its ``config.json`` (``"lsml"`` ->
            ``"meta_test"``) and model card; the weights and their sha256 are untouched.
        progress: Show progress bars.
        **finetune_kwargs: Options of :func:`lsml_hub.finetune` (``steps``, ``max_train_samples``,
            ``lr``...), shared by every run; ``seed`` is set per run from ``seeds``.

    Returns:
        A :class:`~lsml_hub.metatest.comparison.Comparison`; ``.table()`` renders it as text.

    Raises:
        ConfigError: No init, duplicate names, an unknown baseline, a bad fine-tuning option, or an
            ``out_dir`` that is a file or holds other files.
        DataError: The target is unusable (empty split, ``max_train_samples`` above its training
            samples or below its classes).
        InitError: An init cannot be loaded, or ``"pretrained"`` was named and its weights are not cached.

    Example:
        A toy init, meta-trained in a second, against the scratch baseline with two seeds:

        >>> import lsml_hub
        >>> config = {"model": "test_resnet", "steps": 4, "inner": {"batch_size": 16}, "output_dir": "runs/demo",
        ...           "tasks": ["builtin:digits?classes=0-4", "builtin:digits?classes=5-9"]}
        >>> init = lsml_hub.meta_train(config).init_dir
        >>> cmp = lsml_hub.compare({"cts": init}, "builtin:digits", seeds=(0, 1), steps=10, batch_size=16,
        ...                        max_train_samples=100, eval_every=10, out_dir="runs/compare", progress=False)
        >>> print(cmp.table())  # doctest: +ELLIPSIS, +NORMALIZE_WHITESPACE
        target digits (100 train / 359 eval samples), 10 steps, adam lr 0.001, step schedule, full ...; seeds 0, 1
        name     kind     final acc (%)  best acc (%)  Δ final vs scratch (pp)
        cts      init     ... ± ...      ... ± ...     ... ± ...
        scratch  scratch  ... ± ...      ... ± ...     -
        (skipped pretrained: no timm pretrained weights of test_resnet in the Hugging Face cache)
        >>> sorted(os.path.basename(path) for path in cmp.files.values())
        ['comparison.csv', 'comparison.json', 'curves.png']
    """
    config, seeds, baselines = _check_arguments(finetune_kwargs, seeds, baselines)
    if out_dir is not None:
        COMPARE_OUTPUT.check(out_dir)  # now, not after the last run
    entries = named_inits(inits)
    # Every init's config.json now, not after the inits before it have run.
    architectures = [init_architecture(entry.init) for entry in entries]
    if record:
        from lsml_hub.metatest.record import check_recordable

        check_recordable([entry.source for entry in entries])  # now, not after the runs
    if baselines.explicit and PRETRAINED in baselines.names:
        require_pretrained_baseline(architectures[0])  # now, not after the inits ran
    shared = Target(target)
    shared.check_train_samples(config.max_train_samples)
    runs = _RunBar(len(seeds) * (len(entries) + len(baselines.names)), progress)
    try:
        rows, skipped = _run_rows(entries, baselines, shared, config, seeds, runs)
    finally:
        runs.close()  # an error then prints on a line of its own, not after the bar
    comparison = Comparison(
        target={**shared.task.summary(), "train_samples": config.max_train_samples or len(shared.task.train)},
        seeds=seeds, config={k: v for k, v in config.to_dict().items() if k != "seed"}, rows=rows,
        skipped=skipped,
    )
    if out_dir is not None:
        write_report(comparison, out_dir)
    if record:
        from lsml_hub.metatest.record import record_meta_test

        record_meta_test(comparison)
    logger.debug("%s", comparison.table())
    return comparison


def _run_rows(entries: list[_Entry], baselines: _Baselines, shared: Target, config: FinetuneConfig,
              seeds: list[int], runs: _RunBar) -> tuple[list[ComparisonRow], dict[str, str]]:
    """Every init's row, then every baseline's (and why a default baseline was skipped)."""
    rows, reference = [], None
    for entry in entries:
        row, first = _run_row(entry, shared, config, seeds, runs)
        rows.append(row)
        if reference is None and baselines.names:
            # The first init's model tells the baselines which architecture and inputs to use.
            reference = _Reference.of(first)
    skipped: dict[str, str] = {}
    built = _build_baselines(baselines, reference, skipped)
    runs.resize(len(seeds) * (len(entries) + len(built)))
    for baseline in built:
        rows.append(_run_row(_entry_of(baseline), shared, config, seeds, runs)[0])
    return rows, skipped


def _check_arguments(finetune_kwargs: dict[str, Any], seeds: Iterable[int],
                     baselines: Iterable[str] | None) -> tuple[FinetuneConfig, list[int], _Baselines]:
    if "seed" in finetune_kwargs:
        raise ConfigError("compare() takes seeds=(...), not seed=; every row runs with every seed")
    if isinstance(seeds, (int, str)) or not isinstance(seeds, Iterable):
        raise ConfigError(f"seeds must be a sequence of integers such as (0, 1, 2), got {seeds!r}")
    seeds = list(seeds)
    if not seeds or not all(_is_seed(s) for s in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct non-negative integers (at most 2**63 - 1), at least one; "
                          f"got {seeds!r}")
    return FinetuneConfig.from_dict({**finetune_kwargs, "seed": seeds[0]}), seeds, _check_baselines(baselines)


def _check_baselines(baselines: Iterable[str] | None) -> _Baselines:
    if baselines is None:
        return _Baselines(list(BASELINES), explicit=False)
    if isinstance(baselines, str) or not isinstance(baselines, Iterable):
        raise ConfigError(f"baselines must be a sequence of names such as ('scratch',), got {baselines!r}; "
                          f"valid names: {', '.join(BASELINES)}")
    names = list(baselines)
    unknown = [b for b in names if b not in BASELINES]
    if unknown or len(set(names)) != len(names):
        raise ConfigError(f"bad baselines {names!r}; valid: {', '.join(BASELINES)} (each at most once)")
    return _Baselines(names, explicit=True)


def _is_seed(value: Any) -> bool:
    return is_int(value) and 0 <= value <= MAX_SEED


def named_inits(inits: Inits) -> list[_Entry]:
    """Name each init: its mapping key, else the init string, else the model's architecture.

    Raises:
        ConfigError: No init, two inits with one name, an empty name, or a baseline's name.
    """
    if isinstance(inits, (str, os.PathLike, nn.Module)):
        inits = [inits]
    pairs = list(inits.items()) if isinstance(inits, Mapping) else [(None, init) for init in inits]
    if not pairs:
        raise ConfigError("compare() needs at least one init (a model, an init path or name, or 'scratch:ARCH')")
    entries, seen = [], set()
    for name, init in pairs:
        source = _source_name(init)
        name = str(name) if name is not None else source
        if not name.strip():
            raise ConfigError(f"an init name is empty (for {source!r}); give each init a name")
        if name in BASELINES:
            raise ConfigError(f"init name {name!r} is the {name} baseline's row; name the init otherwise, "
                              f"e.g. {name}_init")
        if name in seen:
            raise ConfigError(f"init name {name!r} appears twice; pass a mapping {{name: init}} to name them")
        seen.add(name)
        entries.append(_Entry(name, INIT, source, _factory(init), init))
    return entries


def _source_name(init: ModelOrInit) -> str:
    if isinstance(init, nn.Module):
        return architecture_of(init)[0]
    if isinstance(init, (str, os.PathLike)):
        return os.fspath(init)
    raise ConfigError(f"cannot compare a {type(init).__name__}: pass models, init paths or names, or 'scratch:ARCH'")


def _factory(init: ModelOrInit) -> Callable[[int], ModelOrInit]:
    if isinstance(init, nn.Module):
        # A fresh copy per seed: every seed starts from the same weights and the caller's model is kept.
        return lambda num_classes: copy.deepcopy(init)
    return lambda num_classes: init


def _entry_of(baseline: Baseline) -> _Entry:
    return _Entry(baseline.name, baseline.kind, baseline.source, baseline.make)


@dataclass(frozen=True)
class _Reference:
    """What the baselines copy from the first init: its architecture, factory arguments and inputs."""

    architecture: str
    model_args: dict[str, Any]
    inputs: InputConfig

    @classmethod
    def of(cls, result: FinetuneResult) -> _Reference:
        architecture, model_args = architecture_of(result.model)
        return cls(architecture, model_args, result.inputs)


def _run_row(entry: _Entry, target: Target, config: FinetuneConfig, seeds: list[int],
             bar: _RunBar) -> tuple[ComparisonRow, FinetuneResult]:
    """Run ``entry`` with every seed; returns its row and the first seed's full result (model included)."""
    row, first = ComparisonRow(entry.name, entry.kind, entry.source), None
    for seed in seeds:
        bar.describe(f"{entry.name} seed {seed}")
        torch.manual_seed(seed)  # random weights of a scratch baseline
        with _load_logged(first is None):  # the same init is loaded for every seed: say so once
            model = entry.make(target.task.num_classes)
            result = run_finetune(model, target, dataclasses.replace(config, seed=seed), progress=bar.enabled)
        first = first or result
        row.inputs = result.inputs
        row.runs.append(SeedRun.of(result))
        bar.update()
    return row, first


@contextlib.contextmanager
def _load_logged(log: bool) -> Iterator[None]:
    loader = logging.getLogger(create_model.__module__)
    level = loader.level
    if not log:
        loader.setLevel(logging.WARNING)
    try:
        yield
    finally:
        loader.setLevel(level)


def _build_baselines(baselines: _Baselines, reference: _Reference | None,
                     skipped: dict[str, str]) -> list[Baseline]:
    """The baselines, built from the first init; a default pretrained one without cached weights is skipped."""
    built = []
    for name in baselines.names:
        if name == SCRATCH:
            built.append(scratch_baseline(reference.architecture, reference.model_args, reference.inputs))
            continue
        baseline = pretrained_baseline(reference.architecture, required=baselines.explicit)
        if baseline is None:
            skipped[name] = f"no timm pretrained weights of {reference.architecture} in the Hugging Face cache"
        else:
            built.append(baseline)
    return built


class _RunBar:
    """The outer progress bar: one tick per (row, seed) run."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.enabled = enabled
        self._bar = tqdm(total=total, desc="compare", unit="run", disable=not enabled)

    def describe(self, text: str) -> None:
        self._bar.set_description(f"compare: {text}")

    def resize(self, total: int) -> None:
        self._bar.total = total
        self._bar.refresh()

    def update(self) -> None:
        self._bar.update()

    def close(self) -> None:
        self._bar.close()
