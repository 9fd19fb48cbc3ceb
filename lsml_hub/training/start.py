"""Where meta-training starts φ: random weights (seeded), timm's pretrained weights, or an existing init.

Checked and loaded before any dataset: a start that cannot be had is a one-line error in the run's
first seconds. The start is recorded in the init's metadata and model card.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from lsml_hub.errors import ConfigError
from lsml_hub.models import create_backbone

logger = logging.getLogger(__name__)

#: ``start_from`` value for timm's default pretrained weights of the model (from the Hugging Face cache).
PRETRAINED = "pretrained"


@dataclass
class Start:
    """The model φ starts as (a one-class head; its backbone is φ's first value) and how it was made.

    Attributes:
        model: The architecture with the start's weights and BatchNorm statistics.
        record: What the init's metadata says about the start (None for random weights).
    """

    model: nn.Module
    record: dict[str, Any] | None = None


def start_model(arch: str, model_kwargs: Mapping[str, Any], start_from: str | None) -> Start:
    """Build ``arch`` for φ's start: random (``None``), ``"pretrained"``, or an init string.

    ``start_from`` takes the init strings every entry point takes: ``scratch:ARCH`` is the same as
    ``None``, ``timm:ARCH[.TAG]`` picks timm's weights by tag (``"pretrained"`` is the default tag), and
    anything else names an init to continue meta-training.

    Example:
        >>> start_model("test_resnet", {}, None).record is None
        True
        >>> start_model("test_resnet", {}, "scratch:test_resnet").record is None
        True

    Raises:
        InitError: The pretrained weights are not in the Hugging Face cache (the message gives the
            ``hf download`` command), or the init cannot be found or verified.
        ConfigError: The start is of another architecture, or was built with other model arguments.
    """
    if start_from is None:
        return Start(create_backbone(arch, num_classes=1, **model_kwargs))
    if start_from == PRETRAINED:
        return _pretrained(arch, model_kwargs, arch, "start_from: pretrained")
    from lsml_hub.hub.resolve import SCRATCH, TIMM, parse_init

    ref = parse_init(start_from)
    if ref.kind in (SCRATCH, TIMM) and ref.architecture != arch:
        raise ConfigError(f"start_from {start_from!r} is a {ref.architecture!r}, but model is {arch!r}; "
                          f"set model: {ref.architecture}, or start_from: {ref.kind}:{arch}")
    if ref.kind == SCRATCH:
        return Start(create_backbone(arch, num_classes=1, **model_kwargs))
    if ref.kind == TIMM:
        return _pretrained(arch, model_kwargs, ref.location, f"start_from: {start_from}")
    return _from_init(arch, model_kwargs, start_from)


def canonical_start(arch: str, start_from: str | None) -> str | None:
    """``start_from`` with spellings of one start made one, so a run resumes under any of them.

    ``scratch:ARCH`` of the run's model is ``None``; ``timm:ARCH`` and ``timm:ARCH.TAG`` with timm's
    default tag are ``"pretrained"``. Anything else, bad values included, is returned as it is.

    Example:
        >>> canonical_start("test_resnet", "scratch:test_resnet"), canonical_start("resnet18", "timm:resnet18.a1_in1k")
        (None, 'pretrained')
        >>> canonical_start("resnet18", "timm:resnet18.tv_in1k")  # another tag: another start
        'timm:resnet18.tv_in1k'
    """
    from lsml_hub.errors import LsmlHubError
    from lsml_hub.hub.resolve import ARCHITECTURE_KINDS, SCRATCH, TIMM, parse_init

    if not isinstance(start_from, str) or start_from.partition(":")[0].lower() not in ARCHITECTURE_KINDS:
        return start_from
    try:
        ref = parse_init(start_from)
        if ref.architecture != arch:
            return start_from
        if ref.kind == SCRATCH:
            return None
        return PRETRAINED if ref == parse_init(f"{TIMM}:{arch}") else start_from
    except LsmlHubError:  # start_model refuses it with its own message, before any data
        return start_from


def _pretrained(arch: str, model_kwargs: Mapping[str, Any], weights_name: str, purpose: str) -> Start:
    from lsml_hub.hub.pretrained import require_cached_pretrained

    create_backbone(arch, num_classes=1, **model_kwargs)  # an unknown model or bad kwargs: their own error
    weights = require_cached_pretrained(weights_name, purpose, "start from random weights (start_from: "
                                        "null) or from an init", "start from random weights (start_from: null)")
    from lsml_hub.hub import create_model

    # Found above with a message for this purpose; loaded the way every timm: string is (blob checked, offline).
    model = create_model(f"timm:{weights.model_name}", num_classes=1, **model_kwargs)
    logger.info("meta-training starts from timm's %s weights (%s)", weights.model_name, weights.path)
    return Start(model, {"kind": PRETRAINED, "weights": weights.model_name, "hf_hub_id": weights.hf_hub_id})


def _from_init(arch: str, model_kwargs: Mapping[str, Any], init: str) -> Start:
    from lsml_hub.hub import create_model, load_init_config

    config = load_init_config(init)  # config.json alone: a wrong architecture fails before the weights load
    if config.architecture != arch:
        raise ConfigError(f"start_from {init!r} is an init of {config.architecture!r}, but model is {arch!r}; "
                          f"set model: {config.architecture} or start from an init of {arch}")
    if dict(config.model_args) != dict(model_kwargs):
        raise ConfigError(f"start_from {init!r} was built with model_args {config.model_args}, but model_kwargs "
                          f"is {dict(model_kwargs)}; set model_kwargs to {config.model_args}")
    model = create_model(init, num_classes=1)  # checks the sha256 and loads every backbone tensor strictly
    logger.info("meta-training continues from init %s (%s)", init, config.algorithm_name)
    return Start(model, {"kind": "init", "init": str(init), "sha256": config.sha256,
                         "algorithm": config.algorithm_name})

