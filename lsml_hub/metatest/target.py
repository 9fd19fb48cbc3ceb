"""The target side of fine-tuning: a task at the image size each model needs, and its limited-data subset."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import torch

from lsml_hub.data import ImageTensors, Task, TaskSpec, load_task, stratified_subset
from lsml_hub.errors import DataError

logger = logging.getLogger(__name__)


class Target:
    """A target task that hands out its splits at any image size, decoding each size once.

    Conv nets take any input size, so a target whose own size differs from an init's input size is
    resized to the init's (the task is re-decoded at that size, as if loaded with ``image_size=``).
    Comparing several inits keeps one ``Target``, so each size is decoded once for all runs.

    Args:
        target: A loaded task, or a spec :func:`lsml_hub.data.load_task` accepts.

    Raises:
        DataError: The task's train or eval split is empty.

    Example:
        >>> target = Target("builtin:digits")
        >>> target.task.image_size, target.at_size(16).tensors("eval").images.shape[-1]
        (32, 16)
    """

    def __init__(self, target: Task | TaskSpec | str | Mapping[str, Any]) -> None:
        task = target if isinstance(target, Task) else load_task(target)
        for split in ("train", "eval"):
            if len(getattr(task, split)) == 0:
                raise DataError(f"target {task.name!r} has an empty {split} split; it needs samples in both")
        self.task = task
        self._sized: dict[int, Task] = {task.image_size: task}

    @property
    def name(self) -> str:
        return self.task.name

    def at_size(self, image_size: int) -> Task:
        """The task with images resized to ``image_size`` (same samples, same class names)."""
        if image_size not in self._sized:
            logger.info("target %s: resizing %d px images to the model's %d px", self.name,
                        self.task.image_size, image_size)
            self._sized[image_size] = dataclasses.replace(self.task, image_size=image_size, _tensors={})
        return self._sized[image_size]

    def check_train_samples(self, max_train_samples: int | None) -> None:
        """Raise :class:`DataError` before any work unless ``max_train_samples`` is None or from the
        number of classes to the number of training samples.

        The stratified subset gives every class at least one sample exactly when it has at least as
        many samples as there are classes; fewer would train a head with classes it never sees.
        """
        if max_train_samples is None:
            return
        available, classes = len(self.task.train), self.task.num_classes
        valid = f"valid: {classes}-{available}, or None for all" if classes <= available else "valid: None for all"
        if max_train_samples > available:
            raise DataError(f"max_train_samples={max_train_samples} but target {self.name!r} has {available} "
                            f"training samples ({valid})")
        if max_train_samples < classes:
            raise DataError(f"max_train_samples={max_train_samples} is fewer than the {classes} classes of target "
                            f"{self.name!r}, so some classes would get no training sample ({valid})")

    def train_tensors(self, image_size: int, max_train_samples: int | None, seed: int) -> ImageTensors:
        """Train split at ``image_size``, cut to a stratified subset of ``max_train_samples`` when given.

        The subset is :func:`lsml_hub.data.stratified_subset` of the labels: class proportions kept,
        every class present when the size allows, and the same samples for the same ``seed``.
        """
        self.check_train_samples(max_train_samples)
        data = self.at_size(image_size).tensors("train")
        if max_train_samples is None:
            return data
        index = torch.from_numpy(stratified_subset(data.labels.numpy(), max_train_samples, seed))
        return ImageTensors(images=data.images[index], labels=data.labels[index])
