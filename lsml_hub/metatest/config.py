"""``FinetuneConfig``: the hyper-parameters of target training, checked once where they enter.

Defaults follow the seed paper's target training (``train_tgt.py``): Adam, lr 1e-3, weight decay
5e-4, batch 128, 1,000 steps, lr x 0.3 at 40/70/90 % of the steps.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lsml_hub._checks import check_positive_int, is_int
from lsml_hub.compute import ComputeConfig
from lsml_hub.errors import ConfigError

SCHEDULES = ("step", "cosine", "constant")
MODES = ("full", "linear")
# The seed's step schedule: lr is multiplied by STEP_GAMMA at each of these fractions of the steps.
STEP_MILESTONES = (0.4, 0.7, 0.9)
STEP_GAMMA = 0.3
# Evaluations per run when eval_every is not given: enough points for a learning curve.
DEFAULT_EVALS = 10
# Seeds reach torch.manual_seed and numpy; both take any integer in this range.
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class FinetuneConfig:
    """How a model is fine-tuned on a target task.

    Args:
        steps: Optimizer steps.
        batch_size: Training samples per step.
        optimizer: Any name ``timm.optim.create_optimizer_v2`` knows (``"adam"``, ``"adamw"``,
            ``"sgd"`` = Nesterov momentum 0.9, ``"momentum"`` = plain momentum 0.9, ...).
        lr: Peak learning rate.
        weight_decay: Weight decay; as in the seed it applies to every trained parameter.
        schedule: ``"step"`` (lr x 0.3 at 40/70/90 % of the steps), ``"cosine"`` (to 0 at the last
            step) or ``"constant"``.
        max_train_samples: Train on a stratified subset of this many samples (the limited-data
            regime); the subset is a pure function of ``seed``. ``None`` trains on the whole split.
            It must be at least the target's number of classes, so that every class gets a sample
            (checked against the target when fine-tuning starts).
        mode: ``"full"`` trains every parameter; ``"linear"`` trains only the classifier on a frozen
            backbone whose BatchNorm statistics stay frozen too (the body runs in eval mode).
        eval_every: Evaluate every this many steps (and always after the last); ``None`` gives
            ``steps // 10`` (at least 1).
        seed: Seeds the head initialization, the batch order and augmentation, and the subset
            (an integer from 0 to 2**63 - 1).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``, checked against this machine;
            ``None`` or ``"auto"`` picks CUDA when available.
        image_size: Side length the target is resized to; ``None`` uses the model's
            ``pretrained_cfg["input_size"]`` (the size the init was trained at).
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (CUDA only): autocast of the forward; the
            weights stay fp32 (see :class:`~lsml_hub.compute.ComputeConfig`).
        channels_last: NHWC weights and batches.
        compile: ``torch.compile`` the training forward: False, True or a torch.compile mode.

    Example:
        >>> FinetuneConfig(steps=300, max_train_samples=100).eval_interval
        30
    """

    steps: int = 1000
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 5e-4
    schedule: str = "step"
    max_train_samples: int | None = None
    mode: str = "full"
    eval_every: int | None = None
    seed: int = 0
    device: str | None = None
    image_size: int | None = None
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool | str = False

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            check_positive_int(name, getattr(self, name))
        for name in ("max_train_samples", "eval_every", "image_size"):
            if getattr(self, name) is not None:
                check_positive_int(name, getattr(self, name))
        check_seed("seed", self.seed)
        object.__setattr__(self, "device", check_device(self.device))
        object.__setattr__(self, "lr", _as_float("lr", self.lr))
        object.__setattr__(self, "weight_decay", _as_float("weight_decay", self.weight_decay))
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr!r}")
        if not self.weight_decay >= 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        object.__setattr__(self, "optimizer", check_optimizer(self.optimizer))
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("mode", self.mode, MODES)
        self.compute  # noqa: B018 - validates precision, channels_last and compile now

    @property
    def compute(self) -> ComputeConfig:
        """Precision, layout and compilation of the training steps."""
        return ComputeConfig(self.precision, self.channels_last, self.compile)

    @property
    def eval_interval(self) -> int:
        """Steps between evaluations."""
        return self.eval_every or max(1, self.steps // DEFAULT_EVALS)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> FinetuneConfig:
        """Build a config from a mapping (a YAML section, CLI options); unknown keys are refused.

        Example:
            >>> FinetuneConfig.from_dict({"steps": 20, "schedule": "cosine"}).schedule
            'cosine'
        """
        if not isinstance(values, Mapping):
            raise ConfigError(f"fine-tuning options must be a mapping of option: value, got {values!r}")
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise ConfigError(f"unknown fine-tuning option(s) {unknown}; valid: {', '.join(valid)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for JSON reports and init metadata."""
        return dataclasses.asdict(self)


def check_optimizer(name: str) -> str:
    """Lower-case ``name`` and check that timm's optimizer factory knows it.

    Raises:
        ConfigError: Naming the bad value, close matches, and every valid name.
    """
    from timm.optim import list_optimizers

    if not isinstance(name, str):
        raise ConfigError(f"optimizer must be a name such as 'adam', got {name!r}")
    lowered = name.lower()
    valid = list_optimizers()
    # timm accepts a "lookahead_" prefix on any optimizer.
    if lowered.removeprefix("lookahead_") not in valid:
        close = difflib.get_close_matches(lowered, valid, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown optimizer {name!r}{hint}; valid (timm.optim.list_optimizers()): {', '.join(valid)}")
    return lowered


def check_seed(name: str, value: Any) -> int:
    """``value`` if it is an integer from 0 to ``MAX_SEED``.

    Raises:
        ConfigError: Naming ``name``, the value, and the valid range.
    """
    if not is_int(value) or not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{name} must be a non-negative integer (at most 2**63 - 1), got {value!r}")
    return value


def check_device(device: Any) -> str | None:
    """``device`` as a string, after checking that it names a device this machine has.

    ``None`` and ``"auto"`` are kept (CUDA when available, else the CPU, decided when training starts).

    Raises:
        ConfigError: An unknown device name, or a CUDA/MPS device this machine does not have.

    Example:
        >>> check_device("cpu"), check_device(None)
        ('cpu', None)
    """
    import torch

    from lsml_hub._device import VALID, resolve_device

    if isinstance(device, torch.device):
        device = str(device)
    if device is None or device == "auto":
        return device
    if not isinstance(device, str):
        raise ConfigError(f"unknown device {device!r}; valid: {VALID}")
    if device.partition(":")[0] == "cuda" and not torch.cuda.is_available():  # named as given ('cuda', not 'cuda:0')
        raise ConfigError(f"device {device!r} requested but CUDA is not available; use cpu or auto")
    resolved = resolve_device(device)  # unknown names, MPS missing
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ConfigError(f"device {device!r} requested but this machine has {count} CUDA device(s); "
                          f"valid: cuda:0 to cuda:{count - 1}, cpu or auto")
    return device


def _as_float(name: str, value: Any) -> float:
    # YAML 1.1 reads "1e-3" (no dot) as a string; accept it like a number.
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None


def _check_choice(name: str, value: Any, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")
