"""Parameter-averaging meta-learners: CTS, Reptile and multi-task learning are one rule.

With θ̄ the mean over tasks of their current backbone parameters, all three move φ by
Δ = β (θ̄ − φ). They differ only in when they update and reset:

* CTS updates every P steps (P ≪ K) and shifts in-flight trajectories by Δ;
* Reptile updates only at the reset (P = K), so the shift is moot;
* multi-task learning resets after every step (K = 1), so φ follows the averaged task updates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lsml_hub.algorithms.base import MetaAlgorithm, TaskSignals
from lsml_hub.algorithms.registry import register_algorithm
from lsml_hub.errors import ConfigError


@register_algorithm
@dataclass
class ContinualTrajectoryShifting(MetaAlgorithm):
    """Continual trajectory shifting (CTS).

    Shin, Lee, Gong, Hwang. "Large-Scale Meta-Learning with Continual Trajectory Shifting", ICML 2021.
    Since dθ/dφ ≈ I along a trajectory, a meta-step Δ on φ is carried over to every in-flight θ_t,
    so φ can move every P steps while trajectories grow to K steps.

    Example:
        >>> algo = ContinualTrajectoryShifting(meta_lr=0.5, aggregate_period=1, reset_period=10)
        >>> phi, theta = torch.zeros(2), torch.tensor([2.0, 4.0])
        >>> total = torch.zeros(2); algo.accumulate_(total, TaskSignals(theta))
        >>> algo.apply_(phi, [theta], algo.delta_(total / 1, phi)); phi.tolist(), theta.tolist()
        ([1.0, 2.0], [3.0, 6.0])
    """

    name = "cts"
    title = "Continual Trajectory Shifting (CTS)"
    reference = "Shin et al., Large-Scale Meta-Learning with Continual Trajectory Shifting, ICML 2021"

    def accumulate_(self, total: torch.Tensor, task: TaskSignals) -> None:
        total.add_(task.theta)

    def delta_(self, mean: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        return mean.sub_(phi).mul_(self.meta_lr)


@register_algorithm
@dataclass
class Reptile(ContinualTrajectoryShifting):
    """Reptile: a meta-update only when trajectories restart (P = K).

    Nichol, Achiam, Schulman. "On First-Order Meta-Learning Algorithms", arXiv:1803.02999, 2018.
    """

    name = "reptile"
    title = "Reptile"
    reference = "Nichol et al., On First-Order Meta-Learning Algorithms, arXiv:1803.02999"
    aggregate_period: int | None = None  # None: equal to reset_period
    updates_at_reset = True

    shifts = False  # every trajectory restarts from φ right after the update: shifting it would be wasted work


@register_algorithm
@dataclass
class MultiTask(ContinualTrajectoryShifting):
    """Multi-task learning: every step restarts from φ (K = P = 1); β = 1 is plain multi-task SGD."""

    name = "multitask"
    title = "multi-task learning"
    reference = "Caruana, Multitask Learning, Machine Learning 28, 1997"
    meta_lr: float = 1.0
    aggregate_period: int = 1
    reset_period: int = 1

    def __post_init__(self) -> None:
        if (self.aggregate_period, self.reset_period) != (1, 1):
            raise ConfigError(
                "multitask restarts after every step: algorithm.aggregate_period and reset_period must be 1, "
                f"got {self.aggregate_period} and {self.reset_period}"
            )
        super().__post_init__()

    shifts = False  # every trajectory restarts from φ right after each update
