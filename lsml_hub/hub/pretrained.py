"""timm's pretrained weights of an architecture, found in the local Hugging Face cache and never downloaded.

Used where a run must not reach for the network in its middle: ``timm:ARCH[.TAG]`` init strings
(``create_model``, ``finetune``, ``compare``'s pretrained baseline) and meta-training that starts from
ImageNet weights (``start_from: pretrained`` or ``timm:ARCH[.TAG]``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import timm
from huggingface_hub import constants, try_to_load_from_cache

from lsml_hub.errors import InitError

# Only safetensors: never unpickle a cached checkpoint.
PRETRAINED_FILE = "model.safetensors"


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

    ``architecture`` may name a pretrained tag (``"resnet18.a1_in1k"``): then those weights.

    Example:
        >>> pretrained_source("test_resnet").hf_hub_id
        'timm/test_resnet.r160_in1k'
    """
    cfg = timm.models.get_pretrained_cfg(architecture)
    if cfg is None or not cfg.hf_hub_id:
        return None
    arch = architecture.partition(".")[0]
    return PretrainedSource(f"{arch}.{cfg.tag}" if cfg.tag else arch, cfg.hf_hub_id)


def find_cached_pretrained(architecture: str, *, cache_dir: str | os.PathLike | None = None) -> CachedWeights | None:
    """The default timm pretrained weights of ``architecture`` if they are in the HF cache; no network.

    Example:
        >>> find_cached_pretrained("resnet20_cifar") is None  # no timm weights exist for it
        True
    """
    source = pretrained_source(architecture)
    if source is None:
        return None
    path = try_to_load_from_cache(source.hf_hub_id, PRETRAINED_FILE, cache_dir=cache_dir)
    if not isinstance(path, str):  # None (never fetched) or the "known missing" sentinel
        return None
    return CachedWeights(source.model_name, source.hf_hub_id, Path(path))


def require_cached_pretrained(architecture: str, purpose: str, none_hint: str, missing_hint: str, *,
                              cache_dir: str | os.PathLike | None = None) -> CachedWeights:
    """:func:`find_cached_pretrained`, where the weights were asked for by name.

    Args:
        architecture: The timm architecture.
        purpose: What needs them, for the message (``"the pretrained baseline"``).
        none_hint: What to do instead when timm has no weights for the architecture.
        missing_hint: The alternative to pre-fetching them, when they are not cached.
        cache_dir: Hugging Face cache to look in instead of ``HF_HUB_CACHE``.

    Raises:
        InitError: timm has no pretrained weights for ``architecture``, or they are not in the
            Hugging Face cache; the message says how to pre-fetch them.

    Example:
        >>> require_cached_pretrained("test_resnet", "the pretrained baseline", "", "use scratch:test_resnet")
        Traceback (most recent call last):
        ...
        lsml_hub.errors.InitError: the pretrained baseline needs timm's test_resnet.r160_in1k weights (...), which ...
    """
    weights = find_cached_pretrained(architecture, cache_dir=cache_dir)
    if weights is not None:
        return weights
    source = pretrained_source(architecture)
    if source is None:
        raise InitError(f"{purpose} needs timm pretrained weights, but timm has none for {architecture}; {none_hint}")
    why = "HF_HUB_OFFLINE is set" if constants.is_offline_mode() else "runs never download in their middle"
    cache = cache_dir or constants.HF_HUB_CACHE
    raise InitError(f"{purpose} needs timm's {source.model_name} weights ({PRETRAINED_FILE} of "
                    f"{source.hf_hub_id}), which are not in the Hugging Face cache ({cache}) and "
                    f"are not fetched here ({why}); pre-fetch them on a connected machine with "
                    f"`hf download {source.hf_hub_id} {PRETRAINED_FILE}` (same HF_HUB_CACHE) and retry, "
                    f"or {missing_hint}")


