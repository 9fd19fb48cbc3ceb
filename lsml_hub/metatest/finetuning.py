"""``finetune``: train a model or an init on a target task (the seed's ``train_tgt.py`` as an API).

Its optimizer and learning-rate schedule come from timm's and torch's factories (:func:`build_optimizer`,
:func:`build_scheduler`). The module is not called ``finetune`` so that importing it never shadows the
function of that name in the package namespace.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping
from typing import Any

import torch
from timm.optim import create_optimizer_v2
from torch import nn
from torch.optim.lr_scheduler import ConstantLR, CosineAnnealingLR, LRScheduler, MultiStepLR
from tqdm.auto import tqdm

from lsml_hub._device import resolve_device
from lsml_hub.compute import ComputeConfig
from lsml_hub.data import Augment, BatchStream, ImageTensors, Task, TaskSpec
from lsml_hub.errors import TrainingError
from lsml_hub.evaluation import evaluate_model, train_step
from lsml_hub.metatest.config import STEP_GAMMA, STEP_MILESTONES, FinetuneConfig
from lsml_hub.metatest.model import InputConfig, resolve_model, set_train_mode, set_trainable
from lsml_hub.metatest.result import FINETUNE_OUTPUT, MODEL_FILE, RESULT_FILE, EvalPoint, FinetuneResult
from lsml_hub.metatest.target import Target

logger = logging.getLogger(__name__)

ModelOrInit = nn.Module | str | os.PathLike
MIN_EVAL_BATCH = 64


def finetune(
    model_or_init: ModelOrInit,
    target: Task | TaskSpec | str | Mapping[str, Any],
    *,
    steps: int = 1000,
    batch_size: int = 128,
    optimizer: str = "adam",
    lr: float = 1e-3,
    weight_decay: float = 5e-4,
    schedule: str = "step",
    max_train_samples: int | None = None,
    mode: str = "full",
    eval_every: int | None = None,
    seed: int = 0,
    device: str | None = None,
    image_size: int | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool | str = False,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> FinetuneResult:
    """Fine-tune a model or an init on a target task and evaluate it along the way.

    Defaults follow the seed paper's target training: Adam, lr 1e-3, weight decay 5e-4, batch 128,
    1,000 steps, lr x 0.3 at 40/70/90 % of the steps (see :class:`FinetuneConfig` for every option).

    Images are resized to the model's ``pretrained_cfg["input_size"]`` (the size the init was trained
    at; conv nets take targets of any native size) and normalized with its ``mean``/``std``. Training
    uses the task's augmentation (random crop after padding; flips for natural images). Runs are
    deterministic on CPU for a given ``seed``: it seeds the new head, the batch order and augmentation,
    and the limited-data subset.

    Args:
        model_or_init: A timm model (trained in place; its head is replaced by a fresh one for the
            target's classes), anything :func:`lsml_hub.create_model` resolves (an init folder,
            ``local-dir:``, ``hf-hub:``, a registered name, ``timm:ARCH[.TAG]``), or ``"scratch:ARCH"``
            for random weights.
        target: A loaded :class:`~lsml_hub.data.Task` or a spec for :func:`~lsml_hub.data.load_task`.
        steps, batch_size, optimizer, lr, weight_decay, schedule, max_train_samples, mode, eval_every,
            seed, device, image_size, precision, channels_last, compile: See :class:`FinetuneConfig`.
        out_dir: If given, write ``result.json`` and the fine-tuned ``model.safetensors`` there
            (see :meth:`FinetuneResult.save`); the folder is checked before training starts.
        progress: Show a progress bar.

    Returns:
        A :class:`FinetuneResult` with ``.model``, ``.final``, ``.best`` and ``.history``.

    Raises:
        ConfigError: A bad option (unknown optimizer or schedule, ``steps <= 0``, ...) or model, or an
            ``out_dir`` that is a file or holds files other than those two.
        DataError: The target has an empty split, or ``max_train_samples`` is more than its training
            samples or fewer than its classes.
        TrainingError: The loss became NaN or infinite.

    Example:
        >>> import os
        >>> import lsml_hub
        >>> result = lsml_hub.finetune("scratch:test_resnet", "builtin:digits", steps=20, batch_size=32,
        ...                            max_train_samples=100, eval_every=10, out_dir="runs/finetune_digits",
        ...                            progress=False)
        >>> [point.step for point in result.history]  # evaluated every 10 steps
        [10, 20]
        >>> result.train_samples, result.inputs.image_size, result.final.step
        (100, 32, 20)
        >>> sorted(os.listdir("runs/finetune_digits"))
        ['model.safetensors', 'result.json']
    """
    config = FinetuneConfig(
        steps=steps, batch_size=batch_size, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
        schedule=schedule, max_train_samples=max_train_samples, mode=mode, eval_every=eval_every,
        seed=seed, device=device, image_size=image_size, precision=precision, channels_last=channels_last,
        compile=compile,
    )
    if out_dir is not None:
        FINETUNE_OUTPUT.check(out_dir)  # now, not after the last step
    result = run_finetune(model_or_init, Target(target), config, progress=progress)
    logger.info("fine-tuned %s on %s: final accuracy %.4f, best %.4f at step %d (%.1f s)", result.source,
                result.target["name"], result.final.accuracy, result.best.accuracy, result.best.step, result.seconds)
    if out_dir is not None:
        logger.info("wrote %s and %s to %s", RESULT_FILE, MODEL_FILE, result.save(out_dir))
    return result


def run_finetune(model_or_init: ModelOrInit, target: Target, config: FinetuneConfig, *,
                 progress: bool = True) -> FinetuneResult:
    """:func:`finetune` with a checked config and a :class:`Target` (shared across runs by ``compare``)."""
    target.check_train_samples(config.max_train_samples)
    device = resolve_device(config.device)  # FinetuneConfig checked it
    compute = config.compute.check_device(device)  # fp16 off CUDA fails here, before the model is built
    torch.manual_seed(config.seed)  # the new head's (or a scratch model's) weights
    model = resolve_model(model_or_init, target.task.num_classes,
                          image_size=config.image_size or target.task.image_size)
    inputs = InputConfig.of(model, config.image_size, fallback_size=target.task.image_size)
    task = target.at_size(inputs.image_size)
    train = target.train_tensors(inputs.image_size, config.max_train_samples, config.seed)
    set_trainable(model, config.mode)
    model.to(device)
    start = time.perf_counter()
    history = _train(model, task, train, inputs, config, device, compute, progress)
    return FinetuneResult(
        model=model, history=history, config=config, target={**task.summary(), "train_samples": len(train)},
        inputs=inputs, train_samples=len(train), seconds=time.perf_counter() - start,
        source=_describe(model_or_init, model),
    )


def _train(model: nn.Module, task: Task, train: ImageTensors, inputs: InputConfig, config: FinetuneConfig,
           device: torch.device, compute: ComputeConfig, progress: bool) -> list[EvalPoint]:
    """The training steps; ``compute`` is ``config.compute`` as checked for ``device``."""
    forward = compute.prepare(model)
    scaler = compute.grad_scaler(device)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config)
    augment = Augment.for_size(inputs.image_size, task.hflip, task.augment)
    stream = BatchStream(train, config.batch_size, seed=config.seed, augment=augment, mean=inputs.mean,
                         std=inputs.std, device=device, channels_last=compute.channels_last)
    history: list[EvalPoint] = []
    # Summed on the device and read at eval points only, so a GPU step never waits for the host.
    loss_sum, since = torch.zeros((), device=device), 0
    set_train_mode(model, config.mode)
    with tqdm(range(1, config.steps + 1), desc=f"fine-tune {task.name}", unit="step", disable=not progress,
              leave=False) as bar:
        for step in bar:
            lr = optimizer.param_groups[0]["lr"]
            loss_sum += train_step(forward, next(stream), optimizer, compute=compute, scaler=scaler)
            scheduler.step()
            since += 1
            if step % config.eval_interval == 0 or step == config.steps:
                point = _eval_point(model, task, inputs, config, device, compute, step,
                                    _finite_mean(loss_sum, since, step), lr)
                history.append(point)
                bar.set_postfix(loss=f"{point.train_loss:.3f}", acc=f"{point.eval_accuracy:.3f}")
                loss_sum.zero_()
                since = 0
    return history


def _eval_point(model: nn.Module, task: Task, inputs: InputConfig, config: FinetuneConfig, device: torch.device,
                compute: ComputeConfig, step: int, train_loss: float, lr: float) -> EvalPoint:
    result = evaluate_model(model, task.tensors("eval"), mean=inputs.mean, std=inputs.std, device=device,
                            batch_size=_eval_batch_size(config), compute=compute)
    eval_loss, accuracy = result.loss, result.accuracy
    set_train_mode(model, config.mode)
    logger.debug("step %d: train loss %.4f, eval loss %.4f, accuracy %.4f", step, train_loss, eval_loss, accuracy)
    return EvalPoint(step, train_loss, eval_loss, accuracy, lr)


def _eval_batch_size(config: FinetuneConfig) -> int:
    # No gradients are kept in evaluation, so twice the training batch fits; tiny training batches
    # are raised to MIN_EVAL_BATCH because per-call overhead dominates small forward passes.
    return max(2 * config.batch_size, MIN_EVAL_BATCH)


def _finite_mean(loss_sum: torch.Tensor, count: int, step: int) -> float:
    value = loss_sum.item() / count
    if not math.isfinite(value):
        raise TrainingError(f"training loss became {value} by step {step}; lower lr (or check the target's labels)")
    return value


def _describe(model_or_init: ModelOrInit, model: nn.Module) -> str:
    if isinstance(model_or_init, nn.Module):
        return (getattr(model, "pretrained_cfg", None) or {}).get("architecture") or type(model).__name__
    return os.fspath(model_or_init)


# -- optimizer and schedule ---------------------------------------------------------------------
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
