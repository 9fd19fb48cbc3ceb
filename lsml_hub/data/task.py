"""``load_task``: turn a spec into train and eval datasets with canonical columns."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import datasets

from lsml_hub.data.builtin import BUILTINS
from lsml_hub.data.builtin.arrays import stratified_split
from lsml_hub.data.columns import (
    IMAGE,
    LABEL,
    canonicalize,
    class_names_of,
    detect_column,
    label_array,
    select_classes,
)
from lsml_hub.data.decoded_splits import load_or_decode
from lsml_hub.data.sources import load_raw
from lsml_hub.data.spec import TaskSpec
from lsml_hub.data.tensors import ImageTensors, to_tensors
from lsml_hub.errors import DataError

logger = logging.getLogger(__name__)

EVAL_SPLIT_NAMES = ("test", "validation", "valid", "val")
HELD_OUT_FRACTION = 0.1


@dataclass
class Task:
    """A classification task: train and eval splits with an ``image`` and a ``label`` column.

    Attributes:
        name: Short name for logs and metrics.
        spec: The spec it was loaded from.
        train: Training split.
        eval: Evaluation split.
        class_names: One name per class; labels are 0..num_classes-1.
        image_size: Side length images are resized to.
        hflip: Whether training flips images horizontally.
        augment: The spec's augmentation kind, None to choose by image size (see ``Augment.for_size``).
        revision: For a Hub dataset, the commit its data was read at (the requested revision when
            that could not be resolved); None for builtin and local sources.
    """

    name: str
    spec: TaskSpec
    train: datasets.Dataset
    eval: datasets.Dataset
    class_names: list[str]
    image_size: int
    hflip: bool
    revision: str | None = None
    augment: str | None = None
    _tensors: dict[str, ImageTensors] = field(default_factory=dict, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def tensors(self, split: str) -> ImageTensors:
        """``split`` ("train" or "eval") decoded and resized once into uint8 tensors.

        Kept in memory, and on disk for later runs (``lsml_hub.data.decoded_splits``).
        """
        if split not in ("train", "eval"):
            raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
        if split not in self._tensors:
            ds = getattr(self, split)
            self._tensors[split] = load_or_decode(
                ds, self.image_size, lambda out=None: to_tensors(ds, self.image_size, f"{self.name}/{split}", out=out))
        return self._tensors[split]

    def summary(self) -> dict[str, Any]:
        """Plain-data description (for logs, configs and model cards)."""
        return {
            "name": self.name,
            "source": self.spec.source,
            "revision": self.revision,
            "classes": list(self.spec.classes) if self.spec.classes else None,
            "num_classes": self.num_classes,
            "image_size": self.image_size,
            "train_size": len(self.train),
            "eval_size": len(self.eval),
        }


def load_task(spec: TaskSpec | str | Mapping[str, Any]) -> Task:
    """Load a task from a spec, a spec string or a mapping.

    Example:
        >>> task = load_task("builtin:digits")
        >>> task.num_classes, task.image_size
        (10, 32)
    """
    spec = TaskSpec.parse(spec)
    raw = load_raw(spec)
    train, eval_ = _pick_splits(raw.splits, spec)
    image_col = detect_column(train.features, IMAGE, spec.image_column, spec.source)
    label_col = detect_column(train.features, LABEL, spec.label_column, spec.source)
    names = class_names_of(train, label_col, eval_)  # int labels: ids seen in either split
    train = canonicalize(train, image_col, label_col, names)
    if eval_ is None:
        train, eval_ = _hold_out(train, spec)
    else:
        eval_ = canonicalize(eval_, image_col, label_col, names)
    if spec.classes:
        train, eval_ = (select_classes(ds, spec.classes, names) for ds in (train, eval_))
        names = [names[c] for c in spec.classes]
    for split, ds in (("train", train), ("eval", eval_)):
        if len(ds) == 0:
            raise DataError(f"{spec.source}: the {split} split is empty after selecting classes")
    return Task(
        name=spec.display_name,
        spec=spec,
        train=train,
        eval=eval_,
        class_names=names,
        image_size=spec.image_size or _default_image_size(spec, train),
        hflip=spec.hflip if spec.hflip is not None else _default_hflip(spec),
        revision=raw.revision,
        augment=spec.augment,
    )


def _pick_splits(raw: datasets.DatasetDict, spec: TaskSpec) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    available = list(raw)
    if spec.train_split not in raw:
        raise DataError(f"{spec.source}: no split {spec.train_split!r}; splits are {available}")
    if spec.eval_split is not None:
        if spec.eval_split not in raw:
            raise DataError(f"{spec.source}: no split {spec.eval_split!r}; splits are {available}")
        return raw[spec.train_split], raw[spec.eval_split]
    found = next((s for s in EVAL_SPLIT_NAMES if s in raw and s != spec.train_split), None)
    return raw[spec.train_split], (raw[found] if found else None)


def _hold_out(train: datasets.Dataset, spec: TaskSpec) -> tuple[datasets.Dataset, datasets.Dataset]:
    logger.info("%s: no eval split; holding out %.0f%% of train", spec.source, 100 * HELD_OUT_FRACTION)
    kept, held = stratified_split(label_array(train), HELD_OUT_FRACTION, spec.seed)
    return train.select(kept), train.select(held)


def _default_image_size(spec: TaskSpec, train: datasets.Dataset) -> int:
    if spec.is_builtin:
        return BUILTINS[spec.builtin_name].image_size
    width, height = train[0][IMAGE].size
    return max(width, height)


def _default_hflip(spec: TaskSpec) -> bool:
    return BUILTINS[spec.builtin_name].natural_images if spec.is_builtin else True
