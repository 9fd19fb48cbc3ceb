"""Build timm models from inits: resolve, fetch, verify the sha256, load the backbone strictly."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from lsml_hub.errors import ConfigError, InitError, IntegrityError
from lsml_hub.hub.config import InitConfig, read_config
from lsml_hub.hub.format import check_sha256, recorded_sha256, sha256_file
from lsml_hub.hub.resolve import HF_HUB, InitFiles, InitRef, fetch_init, fetch_weights, parse_init
from lsml_hub.hub.weights import load_backbone, read_tensors, read_weights, tensors_from_bytes

logger = logging.getLogger(__name__)

_LARGE_WEIGHTS_BYTES = 16 << 20


def load_init_config(init: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None) -> InitConfig:
    """Read an init's ``config.json`` (fetching only that file from the Hub).

    Args:
        init: ``hf-hub:owner/name[@rev]``, ``local-dir:PATH``, a folder path or a registry name.
        cache_dir: Hugging Face cache to use instead of ``HF_HUB_CACHE``.

    Returns:
        The config, with ``path`` set to the local folder that holds it.

    Example:
        >>> load_init_config("local-dir:runs/demo/inits/cts").algorithm_name  # doctest: +SKIP
        'cts'
    """
    ref = parse_init(init)
    files = fetch_init(ref, cache_dir=cache_dir, weights=False)
    return _read_checked_config(files)


def create_model(
    init: str | os.PathLike,
    *,
    num_classes: int = 0,
    pretrained: bool = True,
    **timm_kwargs: Any,
) -> nn.Module:
    """A timm model whose backbone is the init, with a fresh head of ``num_classes`` (0: headless).

    The weights' sha256 is checked against ``config.json`` before they are loaded, and every
    backbone tensor of the model must come from the file: a missing, unexpected or mis-shaped
    tensor is an error (plain timm loads non-strictly as soon as ``num_classes`` differs).

    Args:
        init: ``hf-hub:owner/name[@revision]``, ``local-dir:PATH``, a folder path, or a registry name.
        num_classes: Classes of the new head; 0 returns pooled features.
        pretrained: False builds the init's architecture and config with random weights.
        **timm_kwargs: Passed to ``timm.create_model`` (``drop_rate``, ``global_pool``...);
            ``cache_dir`` selects the Hugging Face cache.

    Raises:
        ConfigError: ``num_classes`` is not an integer >= 0.
        InitError: The init cannot be found, fetched or does not fit its architecture.
        IntegrityError: ``model.safetensors`` does not match its recorded sha256.

    Example:
        >>> import lsml_hub
        >>> model = lsml_hub.create_model("local-dir:runs/demo/inits/cts", num_classes=10)  # doctest: +SKIP
        >>> model.num_classes  # doctest: +SKIP
        10
    """
    check_num_classes(num_classes)
    cache_dir = timm_kwargs.pop("cache_dir", None)
    files = fetch_init(parse_init(init), cache_dir=cache_dir, weights=pretrained)
    config = _read_checked_config(files)
    if not pretrained:
        return _build(config, files, num_classes, timm_kwargs)
    return _create_pretrained(config, files, num_classes, timm_kwargs)


def create_model_as(
    architecture: str,
    init: str | os.PathLike,
    *,
    num_classes: int = 0,
    pretrained: bool = True,
    **timm_kwargs: Any,
) -> nn.Module:
    """Like :func:`create_model`, but the init must be for ``architecture`` (used by ``hubconf.py``).

    With ``pretrained=False`` nothing is fetched: the bare timm architecture is returned.

    Raises:
        InitError: The init is for another architecture.

    Example:
        >>> create_model_as("resnet20_cifar", "resnet20_cifar.cts_paper8", pretrained=False).num_classes
        0
    """
    check_num_classes(num_classes)
    if not pretrained:
        return timm.create_model(architecture, pretrained=False, num_classes=num_classes, **timm_kwargs)
    cache_dir = timm_kwargs.pop("cache_dir", None)
    # config.json alone first: an init of another architecture is refused before its weights are fetched
    files = fetch_init(parse_init(init), cache_dir=cache_dir, weights=False)
    config = _read_checked_config(files)
    if config.architecture != architecture:
        raise InitError(f"init {config.source} is for {config.architecture!r}, not {architecture!r}; "
                        f"use the {config.architecture} entry point or meta_init")
    return _create_pretrained(config, fetch_weights(files, cache_dir=cache_dir), num_classes, timm_kwargs)


def check_num_classes(num_classes: Any) -> None:
    """Raise :class:`ConfigError` unless ``num_classes`` is an integer >= 0 (0: headless).

    Example:
        >>> check_num_classes(2.5)
        Traceback (most recent call last):
        ...
        lsml_hub.errors.ConfigError: num_classes must be an integer >= 0 (0: headless), got 2.5
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ConfigError(f"num_classes must be an integer >= 0 (0: headless), got {num_classes!r}")


def _create_pretrained(config: InitConfig, files: InitFiles, num_classes: int,
                       timm_kwargs: dict[str, Any]) -> nn.Module:
    recorded_sha256(config)
    if files.weights.stat().st_size < _LARGE_WEIGHTS_BYTES:
        model = _create_small(config, files, num_classes, timm_kwargs)
    else:
        model = _create_large(config, files, num_classes, timm_kwargs)
    logger.info("loaded init %s (%s, sha256 %s...)", files.ref, config.architecture, config.sha256[:12])
    return model


def _create_small(config: InitConfig, files: InitFiles, num_classes: int,
                  timm_kwargs: dict[str, Any]) -> nn.Module:
    data = _read_verified(files, config)
    model = _build(config, files, num_classes, timm_kwargs)
    load_backbone(model, tensors_from_bytes(data, files.weights), files.weights)
    return model


def _create_large(config: InitConfig, files: InitFiles, num_classes: int,
                  timm_kwargs: dict[str, Any]) -> nn.Module:
    # The file is hashed on a second thread while the model is built on the meta device: random
    # initialisation, which the file overwrites anyway, dominates building a large model (3x for
    # ResNet-18), while torch's meta-device mode costs more than it saves on small ones. The tensors
    # then come through load_file's memory map (copying out of it is faster than reading the file into
    # Python bytes and deserializing them), so the file is opened twice; an unchanged inode, size and
    # mtime across both says it is the verified one.
    meta = not ({"dtype", "device"} & timm_kwargs.keys())  # those would have to be applied to a new head
    before = _file_identity(files.weights)
    with ThreadPoolExecutor(max_workers=1) as pool:
        digest = pool.submit(sha256_file, files.weights)
        model = _build(config, files, num_classes, timm_kwargs, meta=meta)
        check_sha256(files.weights, digest.result(), config, hint=_refetch_hint(files.ref))
    # Cloned out of the memory map: the model must not change if the file is rewritten later.
    tensors = {k: v.clone() for k, v in read_tensors(files.weights).items()}
    if _file_identity(files.weights) != before:
        raise IntegrityError(f"{files.weights} changed while it was being loaded; load the init again")
    load_backbone(model, tensors, files.weights)
    return _materialize(model, tensors, config, files, num_classes, timm_kwargs) if meta else model


def _file_identity(path: Path) -> tuple[int, ...]:
    st = path.stat()
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _read_verified(files: InitFiles, config: InitConfig) -> bytes:
    # One read serves the hash and the tensors: the loaded bytes are the verified ones.
    data = read_weights(files.weights)
    check_sha256(files.weights, hashlib.sha256(data).hexdigest(), config, hint=_refetch_hint(files.ref))
    return data


def _materialize(model: nn.Module, tensors: dict[str, torch.Tensor], config: InitConfig, files: InitFiles,
                 num_classes: int, timm_kwargs: dict[str, Any]) -> nn.Module:
    # A model built on the meta device has the file's backbone; its head exists only on meta.
    if num_classes and _has_meta_tensors(model):
        model.reset_classifier(num_classes)
    if _has_meta_tensors(model):
        # Something the file does not hold (a non-persistent buffer, a head timm did not redraw) is still
        # only on the meta device: build normally and copy the (verified) tensors in.
        model = _build(config, files, num_classes, timm_kwargs)
        load_backbone(model, tensors, files.weights)
    return model


def _read_checked_config(files: InitFiles) -> InitConfig:
    config = read_config(files.folder, source=str(files.ref))
    if not timm.is_model(config.architecture):
        raise InitError(f"{files.config} names architecture {config.architecture!r}, which timm does not "
                        f"know (timm {timm.__version__}); is lsml_hub imported and timm recent enough?")
    return config


def _has_meta_tensors(model: nn.Module) -> bool:
    return any(t.is_meta for t in itertools.chain(model.parameters(), model.buffers()))


def _build(config: InitConfig, files: InitFiles, num_classes: int, timm_kwargs: dict[str, Any],
           meta: bool = False) -> nn.Module:
    kwargs = {**config.model_args, **timm_kwargs}
    kwargs.pop("num_classes", None)  # configs written by other tools may record the source head size
    with torch.device("meta") if meta else contextlib.nullcontext():
        return timm.create_model(
            config.architecture,
            pretrained=False,
            num_classes=num_classes,
            pretrained_cfg=config.timm_pretrained_cfg(**_source_fields(files.ref, files.folder)),
            **kwargs,
        )


def _source_fields(ref: InitRef, folder: Path) -> dict[str, str]:
    # Recorded the way timm records its own sources, so model.pretrained_cfg says where weights came from.
    if ref.kind == HF_HUB:
        return {"hf_hub_id": f"{ref.location}@{ref.revision}" if ref.revision else ref.location,
                "source": "hf-hub"}
    return {"file": str(folder), "source": "local-dir"}


def _refetch_hint(ref: InitRef) -> str:
    if ref.kind != HF_HUB:
        return ""
    return f"; fetch it again with `{ref.download_command()} --force-download`"
