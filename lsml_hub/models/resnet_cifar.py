"""CIFAR-style ResNets (He et al., 2016, §4.2), registered as timm models.

The seed paper's backbone is ResNet-20: a 3x3 stem of 16 channels, then three stages of BasicBlocks
with 16, 32 and 64 channels (stride 1, 2, 2), global average pooling and a linear head. Depth
6n + 2 gives ResNet-20/32/44/56 with n = 3/5/7/9 blocks per stage. Shortcuts that change shape
are 1x1 convolutions with BatchNorm (option B).

Registering them with timm makes every timm tool work on them:

Example:
    >>> import timm, lsml_hub
    >>> model = timm.create_model("resnet20_cifar", num_classes=10)
    >>> model.num_features
    64
"""

from __future__ import annotations

from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import ClassifierHead
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

__all__ = ["CifarResNet"]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.act2 = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_chs != out_chs:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=False), nn.BatchNorm2d(out_chs)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        return self.act2(x + shortcut)


class CifarResNet(nn.Module):
    """ResNet for small images, with timm's classifier API (``get_classifier``, ``reset_classifier``).

    Args:
        blocks_per_stage: BasicBlocks in each of the three stages (3 for ResNet-20).
        channels: Output channels of the three stages.
        num_classes: Classes of the linear head; 0 makes the model headless (pooled features out).
        in_chans: Input image channels.
        global_pool: timm pooling type of the head.
        drop_rate: Dropout before the head.
    """

    def __init__(
        self,
        blocks_per_stage: int = 3,
        channels: tuple[int, int, int] = (16, 32, 64),
        num_classes: int = 1000,
        in_chans: int = 3,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = channels[-1]
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, channels[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(inplace=True),
        )
        stages, in_chs = [], channels[0]
        for i, out_chs in enumerate(channels):
            blocks = [BasicBlock(in_chs if j == 0 else out_chs, out_chs, 2 if (i > 0 and j == 0) else 1)
                      for j in range(blocks_per_stage)]
            stages.append(nn.Sequential(*blocks))
            in_chs = out_chs
        self.stages = nn.Sequential(*stages)
        self.feature_info = [
            dict(num_chs=c, reduction=2**i, module=f"stages.{i}") for i, c in enumerate(channels)
        ]
        self.head = ClassifierHead(self.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.head.reset(num_classes, pool_type=global_pool)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "",
        "num_classes": 0,
        "input_size": (3, 32, 32),
        "pool_size": (8, 8),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "stem.0",
        "classifier": "head.fc",
        "license": "apache-2.0",
        **kwargs,
    }


# Untagged configs: these architectures have no weights of their own; inits come from lsml-hub.
default_cfgs = generate_default_cfgs({f"resnet{d}_cifar": _cfg() for d in (20, 32, 44, 56)})


def _create(variant: str, pretrained: bool, blocks_per_stage: int, **kwargs: Any) -> CifarResNet:
    return build_model_with_cfg(
        CifarResNet, variant, pretrained, blocks_per_stage=blocks_per_stage,
        feature_cfg=dict(out_indices=(0, 1, 2), flatten_sequential=True), **kwargs,
    )


@register_model
def resnet20_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-20 for 32 px images: the seed paper's backbone (0.27 M parameters)."""
    return _create("resnet20_cifar", pretrained, 3, **kwargs)


@register_model
def resnet32_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-32 for 32 px images."""
    return _create("resnet32_cifar", pretrained, 5, **kwargs)


@register_model
def resnet44_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-44 for 32 px images."""
    return _create("resnet44_cifar", pretrained, 7, **kwargs)


@register_model
def resnet56_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-56 for 32 px images."""
    return _create("resnet56_cifar", pretrained, 9, **kwargs)
