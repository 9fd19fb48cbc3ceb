"""Write and verify an init folder: ``model.safetensors`` + ``config.json`` + ``README.md``."""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import timm
import torch
from torch import nn

from lsml_hub._io import atomic_dir, atomic_write_json
from lsml_hub.errors import ConfigError, InitError, IntegrityError, first_line
from lsml_hub.hub.card import build_model_card
from lsml_hub.hub.config import (
    CARD_FILE,
    CONFIG_FILE,
    INIT_FILES,
    SHA256_PATTERN,
    WEIGHTS_FILE,
    InitConfig,
    build_config,
    read_config,
)
from lsml_hub.output_folder import OutputFolder
from lsml_hub.run_layout import init_of_run_hint
from lsml_hub.version import __version__

logger = logging.getLogger(__name__)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, hashed straight from a read-only memory map (no copy into Python buffers).

    hashlib releases the GIL while it hashes, so this can run beside other work on a thread.

    Example:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile() as f:
        ...     sha256_file(f.name)[:12]
        'e3b0c44298fc'
    """
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:  # an empty file cannot be mapped
            return hashlib.sha256().hexdigest()
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return hashlib.sha256(mapped).hexdigest()


def check_sha256(path: Path, actual: str, config: InitConfig, *, hint: str = "") -> None:
    """Raise :class:`IntegrityError` (one line naming ``path``) unless ``actual`` is the recorded sha256."""
    expected = recorded_sha256(config)
    if actual != expected:
        raise IntegrityError(
            f"{path}: sha256 {actual[:12]}... does not match {expected[:12]}... recorded in {CONFIG_FILE}; "
            f"the file is truncated or altered{hint}"
        )


def recorded_sha256(config: InitConfig) -> str:
    """The sha256 the config records, checked to be 64 hex digits."""
    sha = config.sha256
    if not isinstance(sha, str) or not SHA256_PATTERN.fullmatch(sha):
        where = config.path / CONFIG_FILE if config.path else CONFIG_FILE
        raise InitError(f"{where} records no valid lsml.sha256 (got {sha!r}); is this an lsml-hub init?")
    return sha


def headless_state_dict(model: nn.Module, architecture: str, model_args: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors a headless ``timm.create_model(architecture, num_classes=0)`` has, taken from ``model``.

    The key set comes from a freshly built headless twin rather than from dropping the classifier by
    name, so the result is exactly what timm's strict ``num_classes=0`` load expects (BN buffers
    included); the twin then loads it strictly as a check.

    Raises:
        InitError: ``model`` lacks a tensor of the headless architecture, or a shape differs.
    """
    if not timm.is_model(architecture):
        raise InitError(f"model's architecture {architecture!r} is not registered with timm")
    twin = timm.create_model(architecture, pretrained=False, num_classes=0, **model_args)
    source, wanted = model.state_dict(), list(twin.state_dict())
    missing = [k for k in wanted if k not in source]
    if missing:
        raise InitError(f"model lacks {len(missing)} tensors of a headless {architecture}: {', '.join(missing[:3])}")
    # A copy on the CPU: no tensor shared with the live model or with another key (safetensors refuses those).
    headless = {k: source[k].detach().to("cpu", copy=True).contiguous() for k in wanted}
    try:
        twin.load_state_dict(headless, strict=True)
    except RuntimeError as err:
        raise InitError(f"model does not fit {architecture} with num_classes=0: {first_line(err)}") from None
    dropped = sorted(set(source) - set(headless))
    logger.debug("headless export of %s drops %s", architecture, dropped)
    return headless


def save_init(
    out_dir: str | os.PathLike,
    model: nn.Module,
    *,
    lsml: dict[str, Any],
    pretrained_cfg: dict[str, Any] | None = None,
) -> Path:
    """Save ``model``'s backbone as an init folder, atomically (the folder appears whole or not at all).

    Writes ``model.safetensors`` (the headless state dict, BN running statistics included),
    ``config.json`` (timm's keys, ``num_classes: 0``, plus ``"lsml"`` = ``lsml`` with the weights'
    ``sha256`` and ``package_version``) and ``README.md`` (a model card).

    Args:
        out_dir: Folder to write: new, empty, or an lsml-hub init folder (replaced whole); any other
            folder is refused before anything is written.
        model: A timm model with any head; the head is not saved.
        lsml: Algorithm, hyper-parameters, source tasks, steps, seed, metrics; unknown keys pass through.
        pretrained_cfg: Overrides of the model's timm ``pretrained_cfg`` (``input_size``, ``mean``,
            ``std``, ``license``...) describing how the init was trained.

    Returns:
        The init folder.

    Raises:
        ConfigError: ``lsml`` or ``pretrained_cfg`` is invalid, or ``out_dir`` holds something else.
        InitError: ``model`` is not a timm model whose architecture can be rebuilt headless.

    Example:
        >>> import timm, tempfile
        >>> model = timm.create_model("resnet20_cifar", num_classes=26)
        >>> folder = save_init(tempfile.mkdtemp() + "/init", model, lsml={"algorithm": {"name": "cts"}},
        ...                    pretrained_cfg={"input_size": (3, 32, 32)})
        >>> sorted(p.name for p in folder.iterdir())
        ['README.md', 'config.json', 'model.safetensors']
    """
    out_dir = Path(out_dir)
    if not isinstance(lsml, Mapping):
        raise ConfigError(f"lsml must be a dict, got {type(lsml).__name__}")
    INIT_FOLDER.check(out_dir, belongs=foreign_init)
    config = build_config(model, lsml=lsml, pretrained_cfg=pretrained_cfg)
    tensors = headless_state_dict(model, config.architecture, config.model_args)
    with atomic_dir(out_dir) as tmp:
        write_init_files(tmp, tensors, config)
    logger.info("saved %s init (%d tensors) to %s", config.architecture, len(tensors), out_dir)
    return out_dir


def write_init_files(folder: Path, tensors: Mapping[str, torch.Tensor], config: InitConfig) -> InitConfig:
    """Write the three init files into ``folder`` (a fresh temp folder); returns the config with its sha."""
    weights = folder / WEIGHTS_FILE
    safetensors.torch.save_file(dict(tensors), weights, metadata={"format": "pt"})
    config.lsml.update(sha256=sha256_file(weights), package_version=__version__)
    atomic_write_json(folder / CONFIG_FILE, config.to_dict())
    build_model_card(config).save(folder / CARD_FILE)
    return config


def verify_init(folder: str | os.PathLike) -> InitConfig:
    """Check an init folder without loading a model: all files present, config valid, sha256 matching.

    Returns:
        The folder's :class:`InitConfig`.

    Raises:
        InitError: A file is missing or ``config.json`` is invalid.
        IntegrityError: ``model.safetensors`` does not match its recorded sha256 or is not safetensors.

    Example:
        >>> import timm, tempfile
        >>> folder = save_init(tempfile.mkdtemp() + "/init", timm.create_model("test_resnet"),
        ...                    lsml={"algorithm": {"name": "cts"}})
        >>> verify_init(folder).architecture
        'test_resnet'
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise InitError(f"{folder} {problem}; an init folder holds {', '.join(INIT_FILES)}")
    missing = [name for name in INIT_FILES if not (folder / name).is_file()]
    if missing:
        raise InitError(f"{folder} is not a complete init: missing {', '.join(missing)}{init_of_run_hint(folder)}")
    config = read_config(folder)
    recorded_sha256(config)
    weights = folder / WEIGHTS_FILE
    check_sha256(weights, sha256_file(weights), config)
    check_safetensors_header(weights)
    return config


def check_safetensors_header(path: Path) -> None:
    """Raise :class:`IntegrityError` if ``path`` is not a readable safetensors file."""
    try:
        with safetensors.safe_open(path, framework="pt") as f:
            f.keys()
    except (safetensors.SafetensorError, OSError) as err:
        raise IntegrityError(f"{path} is not a valid safetensors file: {first_line(err)}") from None


#: An init folder. It appears whole (``atomic_dir``), so an lsml-hub init's ``config.json`` marks it.
INIT_FOLDER = OutputFolder("save_init", INIT_FILES, marker=CONFIG_FILE)


def foreign_init(folder: Path) -> str | None:
    """Why ``folder``'s ``config.json`` is not an lsml-hub init's (so the folder is someone else's), or None.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "config.json").write_text('{"architecture": "bert"}')
        >>> print(foreign_init(folder))
        holds a config.json that is not an lsml-hub init's (no lsml.sha256); choose a new or empty folder
    """
    try:
        config = read_config(folder)
        recorded_sha256(config)
    except InitError:
        return (f"holds a {CONFIG_FILE} that is not an lsml-hub init's (no lsml.sha256); "
                "choose a new or empty folder")
    return None
