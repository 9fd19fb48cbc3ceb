"""The contract every meta-learning rule follows: pure tensor math, no I/O, no process group.

The training loop keeps φ and each task's backbone parameters θ_t as flat 1-D tensors. A meta-update
is then three steps: every task adds its *contribution* into a shared sum buffer; the loop turns the
sum into a mean over all tasks (an all-reduce when several processes hold tasks); the algorithm turns
that mean into the step Δ, moves φ by Δ and, when it shifts, moves every θ_t by Δ as well.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from lsml_hub.errors import ConfigError


@dataclass
class MetaAlgorithm(ABC):
    """Base of the meta-update rules.

    Args:
        meta_lr: Meta learning rate β.
        aggregate_period: P, a meta-update every P inner steps.
        reset_period: K, every K inner steps each trajectory restarts from φ.
        hard_reset: On reset, also re-create the task head and the inner optimizer state.
    """

    name: ClassVar[str]
    reference: ClassVar[str]
    #: Whether tasks contribute a gradient on a held-out batch instead of their parameters.
    uses_query_grad: ClassVar[bool] = False
    #: Whether in-flight trajectories move with φ (the continual trajectory shift).
    shifts: ClassVar[bool] = True

    meta_lr: float = 0.01
    aggregate_period: int = 1
    reset_period: int = 1000
    hard_reset: bool = False

    def __post_init__(self) -> None:
        for key in ("aggregate_period", "reset_period"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"algorithm.{key} must be a positive integer, got {value!r}")
        if not isinstance(self.meta_lr, (int, float)) or isinstance(self.meta_lr, bool) or not self.meta_lr > 0:
            raise ConfigError(f"algorithm.meta_lr must be a positive number, got {self.meta_lr!r}")
        if not isinstance(self.hard_reset, bool):
            raise ConfigError(f"algorithm.hard_reset must be true or false, got {self.hard_reset!r}")

    def is_meta_step(self, step: int) -> bool:
        """A meta-update follows inner step ``step`` (counted from 1)."""
        return step % self.aggregate_period == 0

    def is_reset_step(self, step: int) -> bool:
        """Trajectories restart from φ after inner step ``step``."""
        return step % self.reset_period == 0

    @abstractmethod
    def accumulate_(self, total: torch.Tensor, theta: torch.Tensor, query_grad: torch.Tensor | None) -> None:
        """Add one task's contribution into ``total`` in place."""

    @abstractmethod
    def delta_(self, mean: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        """Turn the mean contribution into the meta step Δ, in place in ``mean``, and return it."""

    def apply_(self, phi: torch.Tensor, thetas: Sequence[torch.Tensor], delta: torch.Tensor) -> None:
        """φ ← φ + Δ, and θ_t ← θ_t + Δ for every local task when the algorithm shifts."""
        delta = delta.to(phi.dtype)
        phi.add_(delta)
        if self.shifts and thetas:
            torch._foreach_add_(list(thetas), [delta] * len(thetas))

    def hyperparameters(self) -> dict:
        """Plain-data description for configs and init metadata."""
        return {"name": self.name, **dataclasses.asdict(self)}
