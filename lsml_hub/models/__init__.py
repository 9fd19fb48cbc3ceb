"""Backbones: timm models by name, plus the seed paper's CIFAR ResNets registered with timm."""

from __future__ import annotations

import difflib
from typing import Any

import timm
import torch
from torch import nn

from lsml_hub.errors import ConfigError, first_line
from lsml_hub.models import resnet_cifar  # noqa: F401  (registers resnet{20,32,44,56}_cifar)
from lsml_hub.models.split import ParamSplit, body_buffers, split_backbone_head

__all__ = ["ParamSplit", "body_buffers", "check_input_size", "create_backbone", "split_backbone_head"]


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
    if not kwargs:
        return timm.create_model(name, pretrained=False, num_classes=num_classes)
    try:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    except (TypeError, ValueError, AssertionError, KeyError) as err:
        # What timm's model classes raise for an argument they do not take or a value they refuse.
        raise ConfigError(f"model {name!r} cannot be built with model_kwargs {kwargs}: "
                          f"{type(err).__name__}: {first_line(err)}") from None


def check_input_size(model: nn.Module, image_size: int, what: str) -> None:
    """Raise :class:`ConfigError` unless ``model`` takes ``image_size`` x ``image_size`` images.

    Tried with one forward pass of a blank image in eval mode (BatchNorm statistics do not move), so a
    model that would fail at its first training step fails here, with what to change.

    Example:
        >>> check_input_size(timm.create_model("test_vit", num_classes=2), 32, "builtin:digits")
    """
    was_training = model.training
    param = next(model.parameters())
    chans = (getattr(model, "pretrained_cfg", None) or {}).get("input_size", (3,))[0]
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, chans, image_size, image_size, device=param.device, dtype=param.dtype))
    except torch.OutOfMemoryError:
        raise
    except (AssertionError, RuntimeError, ValueError) as err:
        arch = (getattr(model, "pretrained_cfg", None) or {}).get("architecture", type(model).__name__)
        # Patch-embedding models (ViT, Swin...) are built for one input size: the usual cause.
        hint = (f"; transformers need model_kwargs: {{img_size: {image_size}}}" if hasattr(model, "patch_embed")
                else "; check model_kwargs, or give the task ?image_size=N with a size the model takes")
        raise ConfigError(f"model {arch!r} fails a forward pass on the {image_size}x{image_size} images of "
                          f"{what} ({first_line(err)}){hint}") from None
    finally:
        model.train(was_training)
