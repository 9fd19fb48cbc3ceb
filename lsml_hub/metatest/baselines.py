"""Baselines of a comparison: the init's architecture from random weights, and timm's pretrained weights.

The pretrained baseline is used only when its weights are already in the local Hugging Face cache:
comparisons run offline, and a download in the middle of one would be slow or fail. Asked for by
name it must be there (:func:`require_cached_pretrained`); as part of the default baselines it is
skipped with a log line when it is not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import timm
from torch import nn

from lsml_hub.hub.pretrained import (  # noqa: F401  (re-exported: compare's pretrained baseline)
    PRETRAINED_FILE,
    CachedWeights,
    PretrainedSource,
    find_cached_pretrained,
    pretrained_source,
    require_cached_pretrained,
)
from lsml_hub.metatest.comparison import PRETRAINED, SCRATCH
from lsml_hub.metatest.model import InputConfig, create_scratch

logger = logging.getLogger(__name__)

BASELINES = (SCRATCH, PRETRAINED)
# What compare says when the pretrained baseline it was asked for cannot run.
_BASELINE_NEEDS = ("the pretrained baseline", "compare with the scratch baseline only (--baselines scratch)",
                   "leave pretrained out of the baselines")


@dataclass(frozen=True)
class Baseline:
    """A baseline row: its name, kind, source, and a factory called once per seed (after seeding)."""

    name: str
    kind: str
    source: str
    make: Callable[[int], nn.Module]


def scratch_baseline(architecture: str, model_args: dict[str, Any], inputs: InputConfig) -> Baseline:
    """Random weights of ``architecture``, fed exactly the inputs (size, mean, std) of the init it is compared with."""

    def make(num_classes: int) -> nn.Module:
        return create_scratch(architecture, num_classes, image_size=inputs.image_size,
                              pretrained_cfg={"mean": inputs.mean, "std": inputs.std}, **model_args)

    return Baseline(SCRATCH, SCRATCH, f"scratch:{architecture}", make)


def require_pretrained_baseline(architecture: str) -> CachedWeights:
    """The cached timm weights the pretrained baseline needs, or an InitError saying how to get them."""
    return require_cached_pretrained(architecture, *_BASELINE_NEEDS)


def pretrained_baseline(architecture: str, *, required: bool = False) -> Baseline | None:
    """timm's default pretrained weights of ``architecture`` when cached; ``None`` (logged) otherwise.

    The model keeps its own ``pretrained_cfg``, so it sees the target at the size and normalization
    its weights were trained with.

    Args:
        architecture: The timm architecture of the init it is compared with.
        required: Raise instead of returning ``None`` (the user asked for this baseline by name).

    Raises:
        InitError: ``required`` and the weights are not cached (see :func:`require_cached_pretrained`).
    """
    weights = require_pretrained_baseline(architecture) if required else find_cached_pretrained(architecture)
    if weights is None:
        logger.info("skipping the pretrained baseline: no timm pretrained %s for %s in the Hugging Face cache",
                    PRETRAINED_FILE, architecture)
        return None

    def make(num_classes: int) -> nn.Module:
        # "file" makes timm load this path and never reach for the network.
        return timm.create_model(architecture, pretrained=True, num_classes=num_classes,
                                 pretrained_cfg_overlay={"file": str(weights.path)})

    return Baseline(PRETRAINED, PRETRAINED, weights.model_name, make)
