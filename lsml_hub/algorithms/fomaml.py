"""First-order MAML, with and without the trajectory shift (the paper's "FOMAML++")."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lsml_hub.algorithms.base import QUERY_GRAD, MetaAlgorithm, TaskSignals
from lsml_hub.algorithms.registry import register_algorithm


@register_algorithm
@dataclass
class FOMAML(MetaAlgorithm):
    """First-order MAML: φ ← φ − β · mean_t ∇L_t(θ_t) on a held-out batch of each task.

    Finn, Abbeel, Levine. "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017.
    Without the shift the update belongs at the reset (P = K, the default when P is left out).
    """

    name = "fomaml"
    title = "first-order MAML"
    reference = "Finn et al., Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks, ICML 2017"
    needs = frozenset({QUERY_GRAD})
    aggregate_period: int | None = None  # None: equal to reset_period

    def __post_init__(self) -> None:
        if self.aggregate_period is None:
            self.aggregate_period = self.reset_period
        super().__post_init__()

    shifts = False

    def accumulate_(self, total: torch.Tensor, task: TaskSignals) -> None:
        if task.query_grad is None:
            raise ValueError(f"{self.name} needs each task's gradient on a held-out batch")
        total.add_(task.query_grad)

    def delta_(self, mean: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        return mean.mul_(-self.meta_lr)


@register_algorithm
@dataclass
class ShiftedFOMAML(FOMAML):
    """FOMAML with continual trajectory shifting ("FOMAML++" in Shin et al., ICML 2021): P < K allowed."""

    name = "fomaml_shift"
    title = "first-order MAML with continual trajectory shifting (FOMAML++)"
    reference = "Shin et al., Large-Scale Meta-Learning with Continual Trajectory Shifting, ICML 2021"
    aggregate_period: int = 1

    shifts = True


@register_algorithm
@dataclass
class ANIL(ShiftedFOMAML):
    """ANIL: the inner loop trains only the head; φ ← φ − β · mean_t ∇_body L_t^val at every meta-update.

    Raghu, Raghu, Bengio, Vinyals. "Rapid Learning or Feature Reuse? Towards Understanding the
    Effectiveness of MAML", ICLR 2020. The body of every task is φ throughout: inner steps leave it alone
    and the meta-step moves it with φ (the shift). The first-order held-out gradient is taken at the
    task's current head.
    """

    name = "anil"
    title = "ANIL (almost no inner loop)"
    reference = ("Raghu et al., Rapid Learning or Feature Reuse? Towards Understanding the Effectiveness of MAML, "
                 "ICLR 2020")
    trains_body = False
