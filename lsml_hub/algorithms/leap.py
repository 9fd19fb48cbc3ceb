"""Leap: meta-learn the start that shortens every task's learning path."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lsml_hub.algorithms.base import INNER_STEPS, InnerStep, MetaAlgorithm, TaskSignals
from lsml_hub.algorithms.registry import register_algorithm
from lsml_hub.errors import ConfigError


@register_algorithm
@dataclass
class Leap(MetaAlgorithm):
    """Leap: φ ← φ − β · mean_t g_t, with g_t the gradient of task t's path length with respect to its start.

    Flennerhag, Moreno, Lawrence, Damianou. "Transferring Knowledge across Learning Processes", ICLR 2019.
    The path runs through the points (θ_i, f_i) of the inner trajectory (f_i the batch loss at θ_i).
    Each segment i−1 → i adds, with d = f_i − f_{i−1} and u = θ_i − θ_{i−1}:

        g_t += (−u − d · ∇f_{i−1}) / sqrt(d² + ‖u‖²)

    (the Jacobian dθ/dφ taken as the identity). Options as in the authors' code: ``loss`` keeps the d
    terms (the path on the loss surface, not only in parameter space), ``stabilizer`` uses −|d| so that a
    rising loss still pulls the start the right way, ``norm`` divides by the segment length (path
    length) rather than not (path energy). Everything comes from what the inner step computed anyway:
    it costs three backbone-sized tensors per task (meta-gradient, last gradient, last update) and no
    extra forward or backward pass. The meta-step comes at every reset (P = K), and the accumulation
    restarts with the trajectory.

    Example:
        >>> leap = Leap(meta_lr=1.0, reset_period=2)
        >>> state = leap.task_state(torch.zeros(1))
        >>> leap.observe_(state, InnerStep(torch.tensor(2.0), torch.tensor([1.0]), torch.tensor([-0.5]), 0))
        >>> leap.observe_(state, InnerStep(torch.tensor(1.0), torch.tensor([0.5]), torch.tensor([-0.25]), 1))
        >>> round(float(state["meta_grad"]), 4)  # (0.5 − (−1) · 1) / sqrt(1 + 0.25)
        1.3416
    """

    name = "leap"
    title = "Leap"
    reference = "Flennerhag et al., Transferring Knowledge across Learning Processes, ICLR 2019"
    needs = frozenset({INNER_STEPS})
    shifts = False  # every trajectory restarts from φ right after the update

    aggregate_period: int | None = None  # None: equal to reset_period
    updates_at_reset = True
    norm: bool = True
    loss: bool = True
    stabilizer: bool = True

    def __post_init__(self) -> None:
        for key in ("norm", "loss", "stabilizer"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"algorithm.{key} must be true or false, got {getattr(self, key)!r}")
        super().__post_init__()

    def task_state(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        zeros = torch.zeros_like(theta)
        return {"meta_grad": zeros, "prev_grad": zeros.clone(), "prev_update": zeros.clone(),
                "prev_loss": torch.zeros((), dtype=theta.dtype, device=theta.device)}

    def observe_(self, state: dict[str, torch.Tensor], step: InnerStep) -> None:
        if step.index > 0:  # a segment needs the point before it
            self._add_segment(state, step.loss)
        state["prev_grad"].copy_(step.grad)
        state["prev_update"].copy_(step.update)
        state["prev_loss"].copy_(step.loss)

    def _add_segment(self, state: dict[str, torch.Tensor], loss: torch.Tensor) -> None:
        u = state["prev_update"]  # θ_i − θ_{i−1}
        add = -u
        length_sq = u.dot(u)
        if self.loss:
            d = loss - state["prev_loss"]
            if self.stabilizer:
                d = -d.abs()  # on the device: no host synchronisation
            add = add - d * state["prev_grad"]
            length_sq = length_sq + d * d
        if self.norm:
            add = add / length_sq.sqrt().clamp_min(torch.finfo(u.dtype).tiny)  # a zero-length segment adds 0
        state["meta_grad"].add_(add)

    def restart_(self, state: dict[str, torch.Tensor]) -> None:
        state["meta_grad"].zero_()

    def accumulate_(self, total: torch.Tensor, task: TaskSignals) -> None:
        total.add_(task.state["meta_grad"])

    def delta_(self, mean: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        return mean.mul_(-self.meta_lr)
