"""How a training step runs on its device: precision (autocast), memory layout and compilation.

Shared by meta-training and fine-tuning. Parameters, the meta-update and exported inits stay fp32
whatever the precision: autocast only runs the forward (and so the backward) in bf16 or fp16, and
fp16 gets a gradient scaler (one per model, so one per task in meta-training).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lsml_hub.errors import ConfigError

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: ``compile`` values: off, on (torch.compile's default mode), or one of torch.compile's modes.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class ComputeConfig:
    """Precision, memory layout and compilation of training steps.

    Args:
        precision: ``"fp32"``, ``"bf16"`` (autocast) or ``"fp16"`` (autocast and a gradient scaler;
            CUDA only).
        channels_last: Keep 4-D weights and image batches in NHWC layout (faster convolutions on
            GPUs with tensor cores).
        compile: ``torch.compile`` each model's training forward: False, True (the default mode) or a
            mode name (``"reduce-overhead"`` adds CUDA graphs). Shapes are static per task.

    Example:
        >>> cfg = ComputeConfig(precision="bf16")
        >>> with cfg.autocast(torch.device("cpu")):
        ...     torch.ones(2, 2) @ torch.ones(2, 2)
        tensor([[2., 2.],
                [2., 2.]], dtype=torch.bfloat16)
    """

    precision: str = "fp32"
    channels_last: bool = False
    compile: bool | str = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; valid: {', '.join(PRECISIONS)}")
        if not isinstance(self.channels_last, bool):
            raise ConfigError(f"channels_last must be true or false, got {self.channels_last!r}")
        if not (isinstance(self.compile, bool) or self.compile in COMPILE_MODES):
            raise ConfigError(f"compile must be true, false or one of {', '.join(COMPILE_MODES)}; "
                              f"got {self.compile!r}")

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype, None for fp32."""
        return _DTYPES.get(self.precision)

    def check_device(self, device: torch.device) -> ComputeConfig:
        """This config, or one with compilation off, after checking it can run on ``device``.

        On CUDA it also turns on cuDNN's autotuner (``torch.backends.cudnn.benchmark``).

        Raises:
            ConfigError: fp16 off CUDA, or bf16 on a GPU without bf16 support.
        """
        if self.precision == "fp16" and device.type != "cuda":
            raise ConfigError(f"precision fp16 needs a CUDA device (its gradient scaler), not {device.type}; "
                              "use bf16 or fp32")
        if self.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError(f"precision bf16 is not supported by {torch.cuda.get_device_name(device)}; "
                              "use fp16 or fp32")
        if device.type == "cuda":
            # Shapes are static per task (one image size, one batch size): let cuDNN pick its fastest kernels.
            torch.backends.cudnn.benchmark = True
        problem = _why_no_compile(device) if self.compile else None
        if problem is not None:
            logger.warning("compile: %s; training uncompiled", problem)
            return ComputeConfig(self.precision, self.channels_last, False)
        return self

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """Autocast to this precision on ``device`` (a no-op context for fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.dtype)

    def grad_scaler(self, device: torch.device) -> torch.amp.GradScaler | None:
        """A gradient scaler for fp16, else None."""
        return torch.amp.GradScaler(device.type) if self.precision == "fp16" else None

    def prepare(self, model: nn.Module) -> Callable[..., Any]:
        """Put ``model`` in this layout and return what to call for its training forward.

        The model itself is kept (its state dict, its parameters and any flat buffer they are views
        of are unchanged); the returned callable is ``model`` or its compiled form.
        """
        if self.channels_last:
            to_channels_last_(model)
        if not self.compile:
            return model
        mode = None if self.compile in (True, "default") else self.compile
        return torch.compile(model, mode=mode, dynamic=False)

    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


def to_channels_last_(model: nn.Module) -> None:
    """Give every 4-D parameter and buffer that is not NHWC yet NHWC strides (a copy of its data).

    Parameters that are views into a flat buffer (meta-training's φ) must keep pointing at it: they
    are laid out NHWC by :func:`lsml_hub.training.flat.flatten_params_` and so are left alone here.
    """
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.dim() == 4 and not tensor.is_contiguous(memory_format=torch.channels_last):
                tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)


def _why_no_compile(device: torch.device) -> str | None:
    if device.type == "mps":
        return "torch.compile does not support MPS training here"
    if device.type == "cpu" and shutil.which("c++") is None and shutil.which("g++") is None:
        return "torch.compile needs a C++ compiler on the CPU (none found on PATH)"
    return None
