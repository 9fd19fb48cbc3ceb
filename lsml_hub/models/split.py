"""Split a timm model into meta-parameters (the backbone) and its task-specific classifier head."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lsml_hub.errors import ConfigError


@dataclass
class ParamSplit:
    """Named trainable parameters of a model, divided into backbone ("body") and classifier ("head").

    The body is what meta-learning shares across tasks (φ); the head belongs to one task.
    """

    body: dict[str, nn.Parameter]
    head: dict[str, nn.Parameter]

    @property
    def body_names(self) -> list[str]:
        return list(self.body)


def body_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's floating-point buffers outside its classifier (BatchNorm running statistics), live.

    Example:
        >>> import timm
        >>> sorted(body_buffers(timm.create_model("test_resnet", num_classes=2)))[:2]
        ['bn1.running_mean', 'bn1.running_var']
    """
    head = {id(b) for b in model.get_classifier().buffers()}
    return {n: b for n, b in model.named_buffers() if b.is_floating_point() and id(b) not in head}


def split_backbone_head(model: nn.Module) -> ParamSplit:
    """Divide ``model``'s trainable parameters through timm's classifier API (``get_classifier``).

    Example:
        >>> import timm
        >>> split = split_backbone_head(timm.create_model("test_resnet", num_classes=5))
        >>> sorted(split.head)
        ['fc.bias', 'fc.weight']
    """
    get_classifier = getattr(model, "get_classifier", None)
    if get_classifier is None:
        raise ConfigError(f"{type(model).__name__} has no get_classifier(); only timm models are supported")
    head_ids = {id(p) for p in get_classifier().parameters()}
    body, head = {}, {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            (head if id(param) in head_ids else body)[name] = param
    return ParamSplit(body=body, head=head)
