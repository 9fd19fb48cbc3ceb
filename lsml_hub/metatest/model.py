"""The model side of fine-tuning: resolve what the user named, fit its head and input, freeze its body.

A model is named by an ``nn.Module`` (a timm model) or by any init string of
:func:`lsml_hub.hub.parse_init`: an init (folder, ``local-dir:``, ``hf-hub:``, a registered name),
``"timm:ARCH[.TAG]"`` (timm's pretrained weights) or ``"scratch:ARCH"`` (random weights, given the
target's image size as input size).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import adapt_input_conv
from torch import nn

from lsml_hub.errors import ConfigError
from lsml_hub.hub.resolve import SCRATCH, VALID_FORMS, parse_init
from lsml_hub.models import create_backbone, split_backbone_head

logger = logging.getLogger(__name__)

RGB = 3
# Factory arguments that describe one model instance, not the architecture: not copied to a scratch twin.
_INSTANCE_ARGS = frozenset({
    "num_classes", "in_chans", "pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "pretrained_model_args",
    "checkpoint_path", "cache_dir", "device", "dtype", "features_only",
})


@dataclass(frozen=True)
class InputConfig:
    """How target images are fed to a model: square side length and per-channel normalization.

    Example:
        >>> import timm
        >>> InputConfig.of(timm.create_model("resnet20_cifar")).image_size
        32
    """

    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of(cls, model: nn.Module, image_size: int | None = None, *, fallback_size: int | None = None) -> InputConfig:
        """Read ``model.pretrained_cfg``; ``image_size`` overrides its input size.

        A model without a ``pretrained_cfg`` gets ``fallback_size`` (the target's own size) and
        ImageNet statistics. A non-square ``input_size`` uses its larger side: targets are square,
        and conv nets take any size.

        Raises:
            ConfigError: No size from any of the three sources.
        """
        cfg = getattr(model, "pretrained_cfg", None) or {}
        input_size = cfg.get("input_size")
        size = image_size or (max(input_size[1:]) if input_size else fallback_size)
        if size is None:
            raise ConfigError(f"{type(model).__name__} has no pretrained_cfg input_size; pass image_size")
        mean = tuple(cfg.get("mean") or IMAGENET_DEFAULT_MEAN)
        std = tuple(cfg.get("std") or IMAGENET_DEFAULT_STD)
        # Targets are RGB; statistics of a grey (1-channel) init apply to each of the 3 channels.
        if len(mean) == 1:
            mean, std = mean * RGB, std * RGB
        return cls(image_size=int(size), mean=mean, std=std)


def create_scratch(
    architecture: str,
    num_classes: int,
    *,
    image_size: int | None = None,
    pretrained_cfg: dict[str, Any] | None = None,
    **model_args: Any,
) -> nn.Module:
    """A randomly initialised timm model whose ``pretrained_cfg`` carries the given input settings.

    Random weights have no resolution of their own, so ``image_size`` (usually the target's) becomes
    the model's ``input_size``; ``pretrained_cfg`` entries (an init's ``mean``/``std``) are overlaid
    so that a scratch baseline sees exactly the inputs of the init it is compared with.

    Example:
        >>> create_scratch("resnet20_cifar", 10, image_size=28).pretrained_cfg["input_size"]
        (3, 28, 28)
    """
    overlay = dict(pretrained_cfg or {})
    if image_size is not None:
        overlay["input_size"] = (RGB, image_size, image_size)
    return create_backbone(architecture, num_classes, pretrained_cfg_overlay=overlay or None, **model_args)


def resolve_model(model_or_init: nn.Module | str | os.PathLike, num_classes: int, *, image_size: int) -> nn.Module:
    """Turn what the user passed into a timm model with a fresh ``num_classes``-way head and RGB input.

    Args:
        model_or_init: A timm model (changed in place: its head is reset) or an init string that
            :func:`lsml_hub.create_model` builds; ``"scratch:ARCH"`` gets ``image_size`` as input size.
        num_classes: Classes of the target.
        image_size: Input size given to a scratch model (ignored otherwise).

    Raises:
        ConfigError: The model has no timm classifier API, or a first conv that cannot take RGB.
        InitError: The init string is malformed or the init cannot be loaded.
    """
    if isinstance(model_or_init, nn.Module):
        model = model_or_init
        _reset_head(model, num_classes)
    elif isinstance(model_or_init, (str, os.PathLike)):
        model = _create_from_init(model_or_init, num_classes, image_size)
    else:
        raise ConfigError(f"cannot fine-tune a {type(model_or_init).__name__}: pass a timm model or an init "
                          f"string ({VALID_FORMS})")
    adapt_to_rgb(model)
    return model


def _create_from_init(init: str | os.PathLike, num_classes: int, image_size: int) -> nn.Module:
    from lsml_hub.hub import create_model

    ref = parse_init(init)
    if ref.kind == SCRATCH:
        return create_scratch(ref.location, num_classes, image_size=image_size)
    return create_model(ref, num_classes=num_classes)


def _reset_head(model: nn.Module, num_classes: int) -> None:
    if not callable(getattr(model, "reset_classifier", None)):
        raise ConfigError(f"{type(model).__name__} has no reset_classifier(); pass a timm model")
    model.reset_classifier(num_classes)


def first_conv(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The input convolution named by timm's ``pretrained_cfg["first_conv"]``, if the model has one."""
    names = (getattr(model, "pretrained_cfg", None) or {}).get("first_conv")
    if not names:
        return None
    name = names if isinstance(names, str) else names[0]
    try:
        return name, model.get_submodule(name)
    except AttributeError:
        return None


def adapt_to_rgb(model: nn.Module) -> None:
    """Make a model built for 1 (or N != 3) input channels take RGB targets, in place.

    The first conv's weights go through timm's ``adapt_input_conv`` (channels repeated and scaled by
    N/3), so a grey init responds to a grey image given as RGB exactly as before.

    Raises:
        ConfigError: The input layer is not a Conv2d that timm can adapt.
    """
    found = first_conv(model)
    if found is None:
        return
    name, conv = found
    in_chans = getattr(conv, "in_channels", RGB)
    if in_chans == RGB:
        return
    if not isinstance(conv, nn.Conv2d) or conv.groups != 1:
        raise ConfigError(
            f"{name} of {type(model).__name__} takes {in_chans} input channels and cannot be adapted to the "
            f"{RGB} (RGB) channels of targets; create the model with in_chans={RGB}"
        )
    with torch.no_grad():
        weight = adapt_input_conv(RGB, conv.weight.detach(), base_chans=in_chans)
    conv.weight = nn.Parameter(weight)
    conv.in_channels = RGB
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict) and cfg.get("input_size"):
        model.pretrained_cfg = {**cfg, "input_size": (RGB, *tuple(cfg["input_size"])[1:])}
    logger.info("adapted %s from %d to %d input channels (timm adapt_input_conv)", name, in_chans, RGB)


def architecture_of(model: nn.Module) -> tuple[str, dict[str, Any]]:
    """The timm architecture name of ``model`` and the factory arguments that shape it (for a scratch twin).

    Raises:
        ConfigError: The model was not made by ``timm.create_model``.
    """
    arch = (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
    if not arch or not timm.is_model(arch):
        raise ConfigError(f"cannot tell the timm architecture of {type(model).__name__}; create it with timm")
    args = {**(getattr(model, "pretrained_model_args", None) or {}), **getattr(model, "_model_args", {})}
    return arch, {k: v for k, v in args.items() if k not in _INSTANCE_ARGS}


def init_architecture(init: nn.Module | str | os.PathLike) -> str:
    """The timm architecture ``init`` builds, without building it (an init's ``config.json`` only).

    Raises:
        ConfigError: A model not made by timm, or a ``scratch:``/``timm:`` model timm does not know.
        InitError: The init string is malformed, or the init cannot be found or its config is invalid.

    Example:
        >>> init_architecture("scratch:resnet20_cifar"), init_architecture("timm:resnet18.a1_in1k")
        ('resnet20_cifar', 'resnet18')
    """
    if isinstance(init, nn.Module):
        return architecture_of(init)[0]
    ref = parse_init(init)
    if ref.architecture is not None:
        return ref.architecture
    from lsml_hub.hub import load_init_config

    return load_init_config(ref).architecture


def set_trainable(model: nn.Module, mode: str) -> None:
    """Which parameters train: all of them for "full"; only the classifier's for "linear" (the body is frozen).

    "full" also unfreezes a model that an earlier linear run froze.
    """
    model.requires_grad_(True)
    if mode == "linear":
        for param in split_backbone_head(model).body.values():
            param.requires_grad_(False)


def set_train_mode(model: nn.Module, mode: str) -> None:
    """Training mode for ``mode``: all of the model for "full"; only the classifier for "linear".

    In linear mode the body stays in eval mode so that BatchNorm running statistics do not move.
    """
    if mode == "linear":
        model.eval()
        model.get_classifier().train()
    else:
        model.train()
