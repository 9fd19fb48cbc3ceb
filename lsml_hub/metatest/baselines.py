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
from pathlib import Path
from typing import Any

import timm
from huggingface_hub import constants, try_to_load_from_cache
from torch import nn

from lsml_hub.errors import InitError
from lsml_hub.metatest.comparison import PRETRAINED, SCRATCH
from lsml_hub.metatest.model import InputConfig, create_scratch

logger = logging.getLogger(__name__)

BASELINES = (SCRATCH, PRETRAINED)
# Only safetensors: never unpickle a cached checkpoint (DESIGN.md §5).
PRETRAINED_FILE = "model.safetensors"


@dataclass(frozen=True)
class Baseline:
    """A baseline row: its name, kind, source, and a factory called once per seed (after seeding)."""

    name: str
    kind: str
    source: str
    make: Callable[[int], nn.Module]


@dataclass(frozen=True)
class CachedWeights:
    """timm pretrained weights found in the local Hugging Face cache."""

    model_name: str  # "arch.tag"
    hf_hub_id: str
    path: Path


@dataclass(frozen=True)
class PretrainedSource:
    """Where timm's default pretrained weights of an architecture live on the Hub."""

    model_name: str  # "arch.tag"
    hf_hub_id: str


def pretrained_source(architecture: str) -> PretrainedSource | None:
    """The Hub repo of timm's default pretrained weights of ``architecture``; ``None`` if timm has none.

    Example:
        >>> pretrained_source("test_resnet").hf_hub_id
        'timm/test_resnet.r160_in1k'
    """
    cfg = timm.models.get_pretrained_cfg(architecture)
    if cfg is None or not cfg.hf_hub_id:
        return None
    return PretrainedSource(f"{architecture}.{cfg.tag}" if cfg.tag else architecture, cfg.hf_hub_id)


def find_cached_pretrained(architecture: str) -> CachedWeights | None:
    """The default timm pretrained weights of ``architecture`` if they are in the HF cache; no network.

    Example:
        >>> find_cached_pretrained("resnet20_cifar") is None  # no timm weights exist for it
        True
    """
    source = pretrained_source(architecture)
    if source is None:
        return None
    path = try_to_load_from_cache(source.hf_hub_id, PRETRAINED_FILE)
    if not isinstance(path, str):  # None (never fetched) or the "known missing" sentinel
        return None
    return CachedWeights(source.model_name, source.hf_hub_id, Path(path))


def require_cached_pretrained(architecture: str) -> CachedWeights:
    """:func:`find_cached_pretrained`, for a pretrained baseline the user asked for by name.

    Raises:
        InitError: timm has no pretrained weights for ``architecture``, or they are not in the
            Hugging Face cache; the message says how to pre-fetch them.

    Example:
        >>> require_cached_pretrained("test_resnet").model_name  # doctest: +SKIP
        'test_resnet.r160_in1k'
    """
    weights = find_cached_pretrained(architecture)
    if weights is not None:
        return weights
    source = pretrained_source(architecture)
    if source is None:
        raise InitError(f"the pretrained baseline needs timm pretrained weights, but timm has none for "
                        f"{architecture}; compare with the scratch baseline only (--baselines scratch)")
    raise InitError(_not_cached_message(source))


def _not_cached_message(source: PretrainedSource) -> str:
    why = "HF_HUB_OFFLINE is set" if constants.is_offline_mode() else "compare never downloads during a run"
    return (f"the pretrained baseline needs timm's {source.model_name} weights ({PRETRAINED_FILE} of "
            f"{source.hf_hub_id}), which are not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and are "
            f"not fetched here ({why}); pre-fetch them on a connected machine with "
            f"`hf download {source.hf_hub_id} {PRETRAINED_FILE}` (same HF_HUB_CACHE) and retry, "
            f"or leave pretrained out of the baselines")


def scratch_baseline(architecture: str, model_args: dict[str, Any], inputs: InputConfig) -> Baseline:
    """Random weights of ``architecture``, fed exactly the inputs (size, mean, std) of the init it is compared with."""

    def make(num_classes: int) -> nn.Module:
        return create_scratch(architecture, num_classes, image_size=inputs.image_size,
                              pretrained_cfg={"mean": inputs.mean, "std": inputs.std}, **model_args)

    return Baseline(SCRATCH, SCRATCH, f"scratch:{architecture}", make)


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
    weights = require_cached_pretrained(architecture) if required else find_cached_pretrained(architecture)
    if weights is None:
        logger.info("skipping the pretrained baseline: no timm pretrained %s for %s in the Hugging Face cache",
                    PRETRAINED_FILE, architecture)
        return None

    def make(num_classes: int) -> nn.Module:
        # "file" makes timm load this path and never reach for the network.
        return timm.create_model(architecture, pretrained=True, num_classes=num_classes,
                                 pretrained_cfg_overlay={"file": str(weights.path)})

    return Baseline(PRETRAINED, PRETRAINED, weights.model_name, make)
