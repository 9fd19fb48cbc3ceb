"""Keep a model's backbone parameters in one flat buffer, so meta-updates are a few vector ops."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def flatten_params_(params: Sequence[nn.Parameter]) -> torch.Tensor:
    """Copy ``params`` into one contiguous 1-D tensor and make each parameter a view into it.

    Optimizers, ``load_state_dict`` and in-place updates keep working on the parameters, and every
    change shows in the returned buffer (and the other way round).

    Example:
        >>> lin = nn.Linear(2, 1)
        >>> flat = flatten_params_(list(lin.parameters()))
        >>> flat.add_(1.0).shape, bool((lin.bias == flat[-1]).all())
        (torch.Size([3]), True)
    """
    if not params:
        raise ValueError("no parameters to flatten")
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    offset = 0
    for p in params:
        n = p.numel()
        p.data = flat[offset:offset + n].view_as(p)
        offset += n
    return flat
