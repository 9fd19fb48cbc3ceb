"""Build timm models from init strings: resolve, fetch, verify the sha256, load the backbone strictly.

Every form of :func:`~lsml_hub.hub.resolve.parse_init` builds here: inits (``hf-hub:``, ``local-dir:``,
a folder, a registered name) are fetched, verified and loaded strictly; ``scratch:ARCH`` is timm's
random initialisation; ``timm:ARCH[.TAG]`` is timm's pretrained weights, read from the Hugging Face
cache only.
"""

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

from lsml_hub._checks import is_int
from lsml_hub.errors import ConfigError, InitError, IntegrityError
from lsml_hub.hub.config import SHA256_PATTERN, InitConfig, read_config
from lsml_hub.hub.format import check_sha256, recorded_sha256, sha256_file
from lsml_hub.hub.pretrained import CachedWeights, require_cached_pretrained
from lsml_hub.hub.resolve import (
    HF_HUB,
    SCRATCH,
    TIMM,
    VALID_FORMS,
    InitFiles,
    InitRef,
    fetch_init,
    fetch_weights,
    parse_init,
)
from lsml_hub.hub.weights import load_backbone, read_tensors, read_weights, tensors_from_bytes

logger = logging.getLogger(__name__)

_LARGE_WEIGHTS_BYTES = 16 << 20


def load_init_config(init: str | os.PathLike | InitRef, *, cache_dir: str | os.PathLike | None = None) -> InitConfig:
    """Read an init's ``config.json`` (fetching only that file from the Hub).

    Args:
        init: ``hf-hub:owner/name[@rev]``, ``local-dir:PATH``, a folder path or a registered name
            (``scratch:`` and ``timm:`` have no config.json: an :class:`InitError` says so).
        cache_dir: Hugging Face cache to use instead of ``HF_HUB_CACHE``.

    Returns:
        The config, with ``path`` set to the local folder that holds it.

    Raises:
        InitError: As :func:`create_model`, or the string names a ``scratch:``/``timm:`` model.

    Example:
        >>> import timm, tempfile, lsml_hub
        >>> folder = lsml_hub.save_init(tempfile.mkdtemp() + "/init", timm.create_model("test_resnet"),
        ...                             lsml={"algorithm": {"name": "cts"}})
        >>> load_init_config(f"local-dir:{folder}").algorithm_name
        'cts'
    """
    ref = parse_init(init)
    files = fetch_init(ref, cache_dir=cache_dir, weights=False)
    return _read_checked_config(files)


def create_model(
    init: str | os.PathLike | InitRef,
    *,
    num_classes: int = 0,
    pretrained: bool = True,
    **timm_kwargs: Any,
) -> nn.Module:
    """A timm model whose backbone is the init, with a fresh head of ``num_classes`` (0: headless).

    For an init, the weights' sha256 is checked against ``config.json`` before they are loaded, and
    every backbone tensor of the model must come from the file: a missing, unexpected or mis-shaped
    tensor is an error (plain timm loads non-strictly as soon as ``num_classes`` differs).

    Args:
        init: ``hf-hub:owner/name[@revision]``, ``local-dir:PATH``, a folder path, a registered name
            (``lsml-hub list``), ``scratch:ARCH`` (random weights) or ``timm:ARCH[.TAG]`` (timm's
            pretrained weights, read from the Hugging Face cache and never downloaded).
        num_classes: Classes of the new head; 0 returns pooled features.
        pretrained: False builds the architecture (and an init's config) with random weights, fetching
            no weights.
        **timm_kwargs: Passed to ``timm.create_model`` (``drop_rate``, ``global_pool``...);
            ``cache_dir`` selects the Hugging Face cache.

    Raises:
        ConfigError: ``num_classes`` is not an integer >= 0, ``pretrained`` not a bool, or
            ``scratch:``/``timm:`` names a model timm does not know.
        InitError: The string is malformed, or the init cannot be found, fetched or does not fit its
            architecture, or ``timm:`` weights are not in the Hugging Face cache.
        IntegrityError: ``model.safetensors`` does not match its recorded sha256.

    Example:
        >>> import timm, tempfile, lsml_hub
        >>> lsml_hub.create_model("scratch:resnet20_cifar", num_classes=5).num_classes
        5
        >>> folder = lsml_hub.save_init(tempfile.mkdtemp() + "/init", timm.create_model("test_resnet"),
        ...                             lsml={"algorithm": {"name": "cts"}})
        >>> model = lsml_hub.create_model(f"local-dir:{folder}", num_classes=10)
        >>> model.pretrained_cfg["source"], model.num_classes
        ('local-dir', 10)
    """
    check_num_classes(num_classes)
    if not isinstance(pretrained, bool):
        raise ConfigError(f"pretrained must be True or False, got {pretrained!r}")
    cache_dir = timm_kwargs.pop("cache_dir", None)
    ref = parse_init(init)
    if ref.kind == SCRATCH:
        return _create_scratch(ref, num_classes, timm_kwargs)
    if ref.kind == TIMM:
        return _create_timm(ref, num_classes, pretrained, cache_dir, timm_kwargs)
    files = fetch_init(ref, cache_dir=cache_dir, weights=pretrained)
    config = _read_checked_config(files)
    if not pretrained:
        return _build(config, files, num_classes, timm_kwargs)
    return _create_pretrained(config, files, num_classes, timm_kwargs)


def create_model_as(
    architecture: str,
    init: str | os.PathLike | InitRef | None,
    *,
    num_classes: int = 0,
    pretrained: bool = True,
    **timm_kwargs: Any,
) -> nn.Module:
    """Like :func:`create_model`, but the init must be for ``architecture`` (used by ``hubconf.py``).

    With ``pretrained=False`` nothing is fetched: the bare timm architecture is returned.

    Raises:
        InitError: The init is for another architecture, or none is given and ``pretrained`` is true.

    Example:
        >>> create_model_as("resnet20_cifar", None, pretrained=False).num_classes
        0
        >>> create_model_as("resnet20_cifar", "scratch:resnet20_cifar", num_classes=3).num_classes
        3
    """
    check_num_classes(num_classes)
    if not pretrained:
        return timm.create_model(architecture, pretrained=False, num_classes=num_classes, **timm_kwargs)
    if init is None:
        raise InitError(f"the {architecture} entry point needs init=...: an init of {architecture} "
                        f"({VALID_FORMS}); pretrained=False gives random weights without one")
    ref = parse_init(init)
    if ref.architecture is not None:
        _check_architecture(str(ref), ref.architecture, architecture)
        return create_model(ref, num_classes=num_classes, **timm_kwargs)
    cache_dir = timm_kwargs.pop("cache_dir", None)
    # config.json alone first: an init of another architecture is refused before its weights are fetched
    files = fetch_init(ref, cache_dir=cache_dir, weights=False)
    config = _read_checked_config(files)
    _check_architecture(config.source, config.architecture, architecture)
    return _create_pretrained(config, fetch_weights(files, cache_dir=cache_dir), num_classes, timm_kwargs)


def check_num_classes(num_classes: Any) -> None:
    """Raise :class:`ConfigError` unless ``num_classes`` is an integer >= 0 (0: headless).

    Example:
        >>> check_num_classes(2.5)
        Traceback (most recent call last):
        ...
        lsml_hub.errors.ConfigError: num_classes must be an integer >= 0 (0: headless), got 2.5
    """
    if not is_int(num_classes) or num_classes < 0:
        raise ConfigError(f"num_classes must be an integer >= 0 (0: headless), got {num_classes!r}")


def _check_architecture(source: str, found: str, wanted: str) -> None:
    if found != wanted:
        raise InitError(f"init {source} is for {found!r}, not {wanted!r}; use the {found} entry point or meta_init")


def _create_scratch(ref: InitRef, num_classes: int, timm_kwargs: dict[str, Any]) -> nn.Module:
    model = timm.create_model(ref.location, pretrained=False, num_classes=num_classes, **timm_kwargs)
    logger.info("built %s with random weights (%s)", ref.location, ref)
    return model


def _create_timm(ref: InitRef, num_classes: int, pretrained: bool, cache_dir: str | os.PathLike | None,
                 timm_kwargs: dict[str, Any]) -> nn.Module:
    if not pretrained:
        return timm.create_model(ref.location, pretrained=False, num_classes=num_classes, **timm_kwargs)
    weights = require_cached_pretrained(
        ref.location, f"init {str(ref)!r}", f"use scratch:{ref.architecture} for random weights",
        f"use scratch:{ref.architecture} for random weights", cache_dir=cache_dir,
    )
    _check_cached_blob(weights)
    # "file": timm loads this path and never reaches for the network.
    model = timm.create_model(ref.location, pretrained=True, num_classes=num_classes,
                              pretrained_cfg_overlay={"file": str(weights.path)}, **timm_kwargs)
    logger.info("loaded timm's %s weights from %s", ref.location, weights.path)
    return model


def _check_cached_blob(weights: CachedWeights) -> None:
    """A Hugging Face cache file links to a blob named by its sha256 (large files): check it matches."""
    path = weights.path
    if not path.is_symlink():
        return  # copied into the snapshot (no symlinks here): no name to check against
    expected = Path(os.readlink(path)).name
    if not SHA256_PATTERN.fullmatch(expected):
        return  # a small file's blob is named by its git sha1
    actual = sha256_file(path)
    if actual != expected:
        raise IntegrityError(f"{path}: sha256 {actual[:12]}... does not match its cache blob name {expected[:12]}...; "
                             f"the file is truncated or altered; fetch it again with `hf download "
                             f"{weights.hf_hub_id} {path.name} --force-download`")


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
