"""The contract every meta-learning rule follows: pure tensor math, no I/O, no process group.

The training loop keeps φ and each task's backbone parameters θ_t as flat 1-D tensors. A meta-update
is then three steps: every task adds its *contribution* into a shared sum buffer; the loop turns the
sum into a mean over all tasks (an all-reduce when several processes hold tasks); the algorithm turns
that mean into the step Δ, moves φ by Δ and, when it shifts, moves every θ_t by Δ as well.

What needs a model comes from the task's learner, and only when the rule asks for it (``needs``):
the gradient on held-out batches, Hessian-vector products of the training loss, or every inner step's
loss, gradient and parameter change. A rule may pull the inner steps toward φ (``proximal_strength``),
and may keep per-task tensors (``task_state``) that the learner stores with the task and checkpoints.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from lsml_hub._checks import is_int, is_number
from lsml_hub.errors import ConfigError

#: ``needs``: the task's gradient on held-out batches at θ_t (``TaskSignals.query_grad``).
QUERY_GRAD = "query_grad"
#: ``needs``: Hessian-vector products of the task's training loss at θ_t (``TaskSignals.hvp``).
HVP = "hvp"
#: ``needs``: every inner step's loss, gradient and parameter change (:meth:`MetaAlgorithm.observe_`).
INNER_STEPS = "inner_steps"


@dataclass
class InnerStep:
    """One inner step of one task, as its learner computed it (flat tensors in φ's layout).

    Attributes:
        loss: f_i, the batch loss at θ_i (0-d, detached).
        grad: ∇f_i, the backbone gradient of that loss at θ_i.
        update: θ_{i+1} − θ_i, the step the inner optimizer took.
        index: Inner steps since the trajectory last (re)started from φ, this one excluded (0: the first).
    """

    loss: torch.Tensor
    grad: torch.Tensor
    update: torch.Tensor
    index: int


@dataclass
class TaskSignals:
    """What one task's learner hands the rule at a meta-update; what the rule did not ask for is None.

    Attributes:
        theta: The task's backbone θ_t (flat; moving it moves the task).
        state: The rule's per-task tensors (from :meth:`MetaAlgorithm.task_state`).
        query_grad: Mean backbone gradient over ``query_batches`` held-out batches at θ_t.
        hvp: ``v ↦ H v`` with H the Hessian of the task's training loss at θ_t (on one batch).
    """

    theta: torch.Tensor
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    query_grad: torch.Tensor | None = None
    hvp: Callable[[torch.Tensor], torch.Tensor] | None = None


@dataclass
class MetaAlgorithm(ABC):
    """Base of the meta-update rules.

    Args:
        meta_lr: Meta learning rate β.
        aggregate_period: P, a meta-update every P inner steps.
        reset_period: K, every K inner steps each trajectory restarts from φ.
        hard_reset: On reset, also re-create the task head and the inner optimizer state.
    """

    #: The name configs use (set by :func:`~lsml_hub.algorithms.register_algorithm`).
    name: ClassVar[str] = ""
    #: How model cards name the rule, e.g. "Continual Trajectory Shifting (CTS)"; the name when empty.
    title: ClassVar[str] = ""
    #: The paper to credit, e.g. "Shin et al., ..., ICML 2021"; cards leave it out when empty.
    reference: ClassVar[str] = ""
    #: What the learners must provide: a subset of QUERY_GRAD, HVP, INNER_STEPS.
    needs: ClassVar[frozenset[str]] = frozenset()
    #: Whether the inner loop trains the backbone (False: only the head, as ANIL).
    trains_body: ClassVar[bool] = True
    #: Whether in-flight trajectories move with φ (the continual trajectory shift).
    shifts: ClassVar[bool] = True
    #: Whether the meta-step belongs at the reset: P is then K (left out or given equal) and nothing else.
    updates_at_reset: ClassVar[bool] = False

    meta_lr: float = 0.01
    aggregate_period: int = 1
    reset_period: int = 1000
    hard_reset: bool = False

    def __post_init__(self) -> None:
        if not is_int(self.reset_period) or self.reset_period <= 0:  # first: P may be filled in from it
            raise ConfigError(f"algorithm.reset_period must be a positive integer, got {self.reset_period!r}")
        if self.updates_at_reset:
            if self.aggregate_period not in (None, self.reset_period):
                raise ConfigError(
                    f"{self.name or type(self).__name__} meta-updates at every reset: "
                    f"algorithm.aggregate_period must equal reset_period "
                    f"({self.reset_period}) or be left out, got {self.aggregate_period}; use cts for P < K"
                )
            self.aggregate_period = self.reset_period
        for key in ("aggregate_period", "reset_period"):
            value = getattr(self, key)
            if not is_int(value) or value <= 0:
                raise ConfigError(f"algorithm.{key} must be a positive integer, got {value!r}")
        if not is_number(self.meta_lr) or not self.meta_lr > 0:
            raise ConfigError(f"algorithm.meta_lr must be a positive number, got {self.meta_lr!r}")
        if not isinstance(self.hard_reset, bool):
            raise ConfigError(f"algorithm.hard_reset must be true or false, got {self.hard_reset!r}")

    def is_meta_step(self, step: int) -> bool:
        """A meta-update follows inner step ``step`` (counted from 1)."""
        return step % self.aggregate_period == 0

    def is_reset_step(self, step: int) -> bool:
        """Trajectories restart from φ after inner step ``step``."""
        return step % self.reset_period == 0

    @property
    def query_batches(self) -> int:
        """Held-out batches averaged into ``TaskSignals.query_grad``."""
        return 1

    @property
    def proximal_strength(self) -> float:
        """μ of a term μ/2 ‖θ_t − φ‖² that every inner step adds to its task loss (0: none, the default).

        The learners add its gradient μ (θ_t − φ) to the backbone's before the inner optimizer steps.
        """
        return 0.0

    def task_state(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Fresh per-task tensors the rule keeps across inner steps (none by default)."""
        return {}

    def observe_(self, state: dict[str, torch.Tensor], step: InnerStep) -> None:  # noqa: B027 - optional hook
        """Take one inner step into the task's ``state`` (rules that need INNER_STEPS)."""

    def restart_(self, state: dict[str, torch.Tensor]) -> None:  # noqa: B027 - optional hook
        """The task's trajectory restarts from φ: forget what ``state`` gathered along the old one."""

    @abstractmethod
    def accumulate_(self, total: torch.Tensor, task: TaskSignals) -> None:
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

    @classmethod
    def credit(cls) -> dict[str, str]:
        """The rule's own ``title`` and ``reference`` (empty when it names none: never a parent's).

        Example:
            >>> from lsml_hub.algorithms import Reptile
            >>> Reptile.credit()["title"]
            'Reptile'
        """
        return {"title": cls.__dict__.get("title") or "", "reference": cls.__dict__.get("reference") or ""}

    def hyperparameters(self) -> dict:
        """Plain-data description for configs and init metadata."""
        return {"name": self.name, **dataclasses.asdict(self)}
