"""No meta-learning at all: each task trains on its own (the speed baseline and a debugging aid)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lsml_hub.algorithms.base import MetaAlgorithm, TaskSignals
from lsml_hub.algorithms.registry import register_algorithm


@register_algorithm
@dataclass
class Independent(MetaAlgorithm):
    """Independent training of every task from the same start: φ never moves, trajectories never reset."""

    name = "none"
    title = "independent training of each task from one start"
    reference = "baseline: no meta-update"

    def is_meta_step(self, step: int) -> bool:
        return False

    def is_reset_step(self, step: int) -> bool:
        return False

    def accumulate_(self, total: torch.Tensor, task: TaskSignals) -> None:
        raise RuntimeError("the 'none' algorithm makes no meta-update")

    def delta_(self, mean: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("the 'none' algorithm makes no meta-update")
