"""Turn a device name from a config or the command line into a ``torch.device``, or a clear error."""

from __future__ import annotations

import torch

from lsml_hub.errors import ConfigError

VALID = "auto, cpu, cuda, cuda:N, mps"


def resolve_device(requested: str | torch.device | None, local_rank: int = 0) -> torch.device:
    """``auto``/None picks ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if isinstance(requested, torch.device):
        requested = str(requested)
    if requested in (None, "auto"):
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        requested = f"cuda:{local_rank}"
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {requested!r}; valid: {VALID}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {requested!r} requested but CUDA is not available; use cpu or auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {requested!r} requested but MPS is not available; use cpu or auto")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unsupported device {requested!r}; valid: {VALID}")
    return device
