"""Keep a model's backbone parameters in one flat buffer, so meta-updates are a few vector ops."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def flat_values(tensors: Sequence[torch.Tensor], channels_last: bool = False) -> torch.Tensor:
    """``tensors`` concatenated in the flat layout :func:`flatten_params_` uses (a new tensor).

    With ``channels_last`` a 4-D tensor contributes its values in NHWC order, so that a gradient
    lines up with the parameters it belongs to.

    Example:
        >>> w = torch.arange(8.).view(1, 2, 2, 2)
        >>> flat_values([w], channels_last=True)[:4]
        tensor([0., 4., 1., 5.])
    """
    return torch.cat([_in_flat_order(t.detach(), channels_last) for t in tensors])


def flatten_params_(params: Sequence[nn.Parameter], channels_last: bool = False) -> torch.Tensor:
    """Copy ``params`` into one contiguous 1-D tensor and make each parameter a view into it.

    Optimizers, ``load_state_dict`` and in-place updates keep working on the parameters, and every
    change shows in the returned buffer (and the other way round). With ``channels_last``, 4-D
    parameters are stored NHWC, so each becomes a channels-last view (what fast convolutions want)
    without leaving the buffer.

    Example:
        >>> lin = nn.Linear(2, 1)
        >>> flat = flatten_params_(list(lin.parameters()))
        >>> flat.add_(1.0).shape, bool((lin.bias == flat[-1]).all())
        (torch.Size([3]), True)
    """
    if not params:
        raise ValueError("no parameters to flatten")
    flat = flat_values(params, channels_last)
    for p, view in zip(params, param_views(flat, params, channels_last)):
        p.data = view
    return flat


def param_views(flat: torch.Tensor, params: Sequence[torch.Tensor], channels_last: bool = False) -> list[torch.Tensor]:
    """``flat`` (in :func:`flatten_params_`'s layout) seen as one tensor per parameter, shaped as each.

    Example:
        >>> [v.shape for v in param_views(torch.arange(5.), [torch.zeros(2, 1), torch.zeros(3)])]
        [torch.Size([2, 1]), torch.Size([3])]
    """
    views, offset = [], 0
    for p in params:
        segment = flat[offset:offset + p.numel()]
        if channels_last and p.dim() == 4:
            out_c, in_c, h, w = p.shape
            views.append(segment.view(out_c, h, w, in_c).permute(0, 3, 1, 2))
        else:
            views.append(segment.view_as(p))
        offset += p.numel()
    return views


def _in_flat_order(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return t.permute(0, 2, 3, 1).reshape(-1) if channels_last and t.dim() == 4 else t.reshape(-1)
