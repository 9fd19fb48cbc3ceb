"""iMAML: the implicit meta-gradient, by conjugate gradient on Hessian-vector products."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from lsml_hub._checks import is_int, is_number
from lsml_hub.algorithms.base import HVP, QUERY_GRAD, MetaAlgorithm, TaskSignals
from lsml_hub.algorithms.registry import register_algorithm
from lsml_hub.errors import ConfigError


def conjugate_gradient(apply_a: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` iterations of conjugate gradient for A x = b (A symmetric positive definite), from x = 0.

    A fixed number of iterations and no early exit, so nothing waits for the device; a residual that
    reaches exactly 0 stops the updates (the step sizes become 0).

    Example:
        >>> a = torch.tensor([[4.0, 1.0], [1.0, 3.0]])
        >>> conjugate_gradient(lambda v: a @ v, torch.tensor([1.0, 2.0]), 2)
        tensor([0.0909, 0.6364])
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = r.dot(r)
    for _ in range(steps):
        ap = apply_a(p)
        pap = p.dot(ap)
        alpha = torch.where(pap > 0, rr / pap, torch.zeros_like(rr))
        x.add_(alpha * p)
        r.sub_(alpha * ap)
        rr_next = r.dot(r)
        beta = torch.where(rr > 0, rr_next / rr, torch.zeros_like(rr))
        p = r + beta * p
        rr = rr_next
    return x


@register_algorithm
@dataclass
class IMAML(MetaAlgorithm):
    """iMAML: φ ← φ − β · mean_t v_t, with (I + H_t / λ) v_t = ∇L_t^val(θ_t) solved by conjugate gradient.

    Rajeswaran, Finn, Kakade, Levine. "Meta-Learning with Implicit Gradients", NeurIPS 2019.
    H_t is the Hessian of task t's training loss at θ_t (Hessian-vector products by double backward on
    one training batch), ∇L_t^val the mean gradient over ``held_out_batches`` held-out batches. Each
    meta-update costs each task ``held_out_batches`` forward/backward passes plus ``cg_steps``
    Hessian-vector products (each about two backward passes). The meta-step comes at every reset (P = K).

    The implicit gradient is exact for a task trained to the minimum of its loss plus λ/2 ‖θ − φ‖². With
    ``proximal`` the inner steps add that term (the paper's inner problem); without it (the default) they train
    on the plain task loss and λ enters only through the linear system.

    Args:
        reg_lambda: λ, the strength of the proximal term the implicit gradient assumes (seed: 0.5).
        cg_steps: Conjugate-gradient iterations (seed: 10).
        held_out_batches: Held-out batches averaged into the outer gradient (seed: 10).
        proximal: Add λ/2 ‖θ_t − φ‖² to every inner step's loss.

    Example:
        >>> imaml = IMAML(meta_lr=1.0, reset_period=1, reg_lambda=1.0, cg_steps=2)
        >>> h = torch.tensor([[1.0, 0.0], [0.0, 3.0]])  # (I + H) v = g  →  v = g / [2, 4]
        >>> total = torch.zeros(2)
        >>> imaml.accumulate_(total, TaskSignals(torch.zeros(2), query_grad=torch.tensor([2.0, 4.0]),
        ...                                      hvp=lambda v: h @ v))
        >>> [round(v, 4) for v in total.tolist()]  # CG in float32: exact up to rounding
        [1.0, 1.0]
    """

    name = "imaml"
    title = "implicit MAML (iMAML)"
    reference = "Rajeswaran et al., Meta-Learning with Implicit Gradients, NeurIPS 2019"
    needs = frozenset({QUERY_GRAD, HVP})
    shifts = False

    meta_lr: float = 0.1
    aggregate_period: int | None = None  # None: equal to reset_period
    updates_at_reset = True
    reg_lambda: float = 0.5
    cg_steps: int = 10
    held_out_batches: int = 10
    proximal: bool = False

    def __post_init__(self) -> None:
        lam = self.reg_lambda
        if not is_number(lam) or not lam > 0:
            raise ConfigError(f"algorithm.reg_lambda must be a positive number, got {self.reg_lambda!r}")
        for key in ("cg_steps", "held_out_batches"):
            value = getattr(self, key)
            if not is_int(value) or value <= 0:
                raise ConfigError(f"algorithm.{key} must be a positive integer, got {value!r}")
        if not isinstance(self.proximal, bool):
            raise ConfigError(f"algorithm.proximal must be true or false, got {self.proximal!r}")
        super().__post_init__()

    @property
    def query_batches(self) -> int:
        return self.held_out_batches

    @property
    def proximal_strength(self) -> float:
        return float(self.reg_lambda) if self.proximal else 0.0

    def accumulate_(self, total: torch.Tensor, task: TaskSignals) -> None:
        if task.query_grad is None or task.hvp is None:
            raise ValueError("imaml needs each task's held-out gradient and Hessian-vector products")
        hvp, lam = task.hvp, self.reg_lambda
        total.add_(conjugate_gradient(lambda v: v + hvp(v) / lam, task.query_grad, self.cg_steps))

    def delta_(self, mean: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        return mean.mul_(-self.meta_lr)
