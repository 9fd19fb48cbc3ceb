"""Backbones: timm models by name, plus the seed paper's CIFAR ResNets registered with timm."""

from __future__ import annotations

import difflib
from typing import Any

import timm
from torch import nn

from lsml_hub.errors import ConfigError
from lsml_hub.models import resnet_cifar  # noqa: F401  (registers resnet{20,32,44,56}_cifar)
from lsml_hub.models.split import ParamSplit, split_backbone_head

__all__ = ["ParamSplit", "create_backbone", "split_backbone_head"]


def create_backbone(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Create a randomly initialised timm model by name, with a clear error for an unknown name.

    Example:
        >>> create_backbone("resnet20_cifar", num_classes=10).num_classes
        10
    """
    if not timm.is_model(name):
        close = difflib.get_close_matches(name.split(".")[0], timm.list_models(), n=8, cutoff=0.6)
        hint = f"; close names: {', '.join(close)}" if close else ""
        raise ConfigError(f"unknown model {name!r}: not a timm architecture{hint}")
    arch, _, tag = name.partition(".")
    known_tags = timm.list_pretrained(f"{arch}.*")
    if tag and name not in known_tags:
        raise ConfigError(f"unknown tag {tag!r} of {arch}; known: {', '.join(known_tags) or 'none'}")
    return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
