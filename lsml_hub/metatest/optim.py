"""Optimizer and learning-rate schedule of target training, from timm's and torch's factories."""

from __future__ import annotations

import torch
from timm.optim import create_optimizer_v2
from torch import nn
from torch.optim.lr_scheduler import ConstantLR, CosineAnnealingLR, LRScheduler, MultiStepLR

from lsml_hub.metatest.config import STEP_GAMMA, STEP_MILESTONES, FinetuneConfig


def build_optimizer(model: nn.Module, config: FinetuneConfig) -> torch.optim.Optimizer:
    """The optimizer named by ``config`` over ``model``'s trainable parameters.

    Frozen parameters (``requires_grad=False``, as in linear mode) are left out by timm's factory.
    Weight decay applies to every trained parameter, biases and norm weights included, as the seed's
    ``Adam(params, weight_decay=5e-4)`` did (timm's default would exempt them).

    Example:
        >>> import timm
        >>> opt = build_optimizer(timm.create_model("resnet20_cifar", num_classes=10), FinetuneConfig())
        >>> type(opt).__name__, opt.param_groups[0]["lr"]
        ('Adam', 0.001)
    """
    return create_optimizer_v2(
        model, opt=config.optimizer, lr=config.lr, weight_decay=config.weight_decay, filter_bias_and_bn=False,
    )


def step_milestones(steps: int) -> list[int]:
    """Steps after which the "step" schedule multiplies the lr by ``STEP_GAMMA`` (40/70/90 %).

    Example:
        >>> step_milestones(1000)
        [400, 700, 900]
    """
    return [int(fraction * steps) for fraction in STEP_MILESTONES]


def build_scheduler(optimizer: torch.optim.Optimizer, config: FinetuneConfig) -> LRScheduler:
    """A per-step lr schedule: call ``scheduler.step()`` after every ``optimizer.step()``.

    With "step", the lr of (1-based) step ``s`` is ``lr * 0.3 ** k`` where ``k`` counts the
    milestones ``m < s``; with "cosine" it falls from ``lr`` to 0 over ``config.steps``.

    Example:
        >>> import timm
        >>> model = timm.create_model("resnet20_cifar", num_classes=10)
        >>> cfg = FinetuneConfig(steps=10)
        >>> opt = build_optimizer(model, cfg)
        >>> sched = build_scheduler(opt, cfg)
        >>> for _ in range(5):
        ...     opt.step()
        ...     sched.step()
        >>> round(sched.get_last_lr()[0], 6)  # milestone 4 passed
        0.0003
    """
    if config.schedule == "step":
        return MultiStepLR(optimizer, milestones=step_milestones(config.steps), gamma=STEP_GAMMA)
    if config.schedule == "cosine":
        return CosineAnnealingLR(optimizer, T_max=config.steps)
    return ConstantLR(optimizer, factor=1.0, total_iters=0)
