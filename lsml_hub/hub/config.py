"""``config.json`` of an init: timm's keys plus the namespaced ``"lsml"`` block.

timm reads ``architecture``, ``num_classes``, ``model_args`` and ``pretrained_cfg``; everything this
package adds lives under ``"lsml"`` so that timm ignores it.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from timm.models import PretrainedCfg

from lsml_hub.errors import ConfigError, InitError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
INIT_FILES = (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE)

SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")

# timm's PretrainedCfg is a dataclass; a key outside it makes timm.create_model raise a TypeError.
PRETRAINED_CFG_KEYS = frozenset(f.name for f in dataclasses.fields(PretrainedCfg))
# Where the model's registry weights came from, what they were and their labels describe another
# checkpoint, not the init; the loader sets the source fields for the copy it reads.
_DROPPED_KEYS = ("url", "file", "state_dict", "hf_hub_id", "hf_hub_filename", "source", "architecture", "tag",
                 "description", "origin_url", "paper_name", "paper_ids", "notes",
                 "label_names", "label_descriptions", "label_offset")
# Test-time sizes recommended for the registry weights no longer hold once the input size changes.
_TEST_SIZE_KEYS = ("test_input_size", "test_pool_size", "pool_size")
# timm keeps these even when None, its loader expects them present.
_KEEP_NULL = ("pool_size", "first_conv", "classifier")
# Factory arguments that describe one run rather than the architecture.
_RUNTIME_ARGS = ("num_classes", "device", "dtype", "pretrained_model_args", "drop_rate", "drop_path_rate",
                 "drop_block_rate")


@dataclass
class InitConfig:
    """A typed view of an init's ``config.json``.

    Args:
        architecture: timm architecture name (``"resnet20_cifar"``).
        pretrained_cfg: timm's data and head config (input size, mean, std, license, classifier).
        lsml: The ``"lsml"`` block: algorithm, source tasks, steps, seed, ``sha256``,
            ``package_version``; unknown keys are kept as they are.
        num_features: Width of the pooled features, for information.
        model_args: Extra ``timm.create_model`` arguments the weights need (``in_chans``...).
        extra: Other top-level keys, written back unchanged.
        path: Folder holding ``config.json`` on this machine, when known.
        source: The init string it was resolved from (``"hf-hub:owner/name@rev"``...).

    Example:
        >>> cfg = InitConfig.from_dict({"architecture": "resnet20_cifar", "num_classes": 0,
        ...                             "pretrained_cfg": {"input_size": [3, 32, 32]},
        ...                             "lsml": {"algorithm": {"name": "cts"}}})
        >>> cfg.algorithm_name, cfg.input_size
        ('cts', (3, 32, 32))
    """

    architecture: str
    pretrained_cfg: dict[str, Any]
    lsml: dict[str, Any]
    num_features: int | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    source: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, path: Path | None = None,
                  source: str | None = None) -> InitConfig:
        """Check the keys an init needs and build the view; raises :class:`InitError` naming the bad key."""
        where = f"{CONFIG_FILE} of {source or path or 'this init'}"
        data = dict(data)
        architecture = data.pop("architecture", None)
        if not isinstance(architecture, str) or not architecture:
            raise InitError(f"{where} has no 'architecture' (a timm model name such as 'resnet20_cifar')")
        num_classes = data.pop("num_classes", 0)
        if num_classes != 0:
            raise InitError(f"{where} has num_classes={num_classes!r}; an init is headless (num_classes 0)")
        pretrained_cfg = _pop_mapping(data, "pretrained_cfg", where)
        lsml = _pop_mapping(data, "lsml", where)
        model_args = _pop_mapping(data, "model_args", where)
        return cls(
            architecture=architecture,
            pretrained_cfg=pretrained_cfg,
            lsml=lsml,
            num_features=data.pop("num_features", None),
            model_args=model_args,
            extra=data,
            path=path,
            source=source,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to ``config.json`` (timm's keys first, then ``"lsml"``)."""
        out: dict[str, Any] = {"architecture": self.architecture, "num_classes": 0}
        if self.num_features is not None:
            out["num_features"] = self.num_features
        if self.model_args:
            out["model_args"] = self.model_args
        out["pretrained_cfg"] = self.pretrained_cfg
        out.update(self.extra)
        out["lsml"] = self.lsml
        return out

    @property
    def sha256(self) -> str | None:
        """Hex sha256 of ``model.safetensors`` recorded at save time."""
        return self.lsml.get("sha256")

    @property
    def algorithm(self) -> dict[str, Any]:
        """The algorithm and its hyper-parameters (``{"name": "cts", "meta_lr": 0.05, ...}``)."""
        algo = self.lsml.get("algorithm") or {}
        return algo if isinstance(algo, dict) else {"name": str(algo)}

    @property
    def algorithm_name(self) -> str:
        return str(self.algorithm.get("name", "unknown"))

    @property
    def source_tasks(self) -> list[dict[str, Any]]:
        """Source tasks, each a dict with at least ``name`` (and ``source``, ``num_classes``...)."""
        tasks = self.lsml.get("source_tasks") or []
        return [t if isinstance(t, dict) else {"name": str(t)} for t in tasks]

    @property
    def input_size(self) -> tuple[int, ...] | None:
        size = self.pretrained_cfg.get("input_size")
        return tuple(size) if size is not None else None

    @property
    def license(self) -> str | None:
        return self.pretrained_cfg.get("license")

    @property
    def package_version(self) -> str | None:
        return self.lsml.get("package_version")

    def timm_pretrained_cfg(self, **source: Any) -> dict[str, Any]:
        """``pretrained_cfg`` ready for ``timm.create_model(pretrained_cfg=...)``, with JSON lists as tuples.

        Args:
            **source: Where the weights are (``hf_hub_id=``, ``file=``, ``source=``), for the record.
        """
        cfg = {k: _as_tuple(v) for k, v in self.pretrained_cfg.items() if k in PRETRAINED_CFG_KEYS}
        cfg.update(architecture=self.architecture, num_classes=0, **source)
        return cfg


def read_config(folder: Path, *, source: str | None = None) -> InitConfig:
    """Read and check ``folder/config.json``; a missing or broken file raises :class:`InitError`."""
    path = Path(folder) / CONFIG_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InitError(f"{path} is missing: an init folder holds {', '.join(INIT_FILES)}") from None
    except UnicodeDecodeError as err:
        raise InitError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InitError(f"{path} is not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, dict):
        raise InitError(f"{path} holds a {type(data).__name__}, not a JSON object")
    return InitConfig.from_dict(data, path=path.parent, source=source)


def build_config(model: Any, *, lsml: Mapping[str, Any],
                 pretrained_cfg: Mapping[str, Any] | None = None) -> InitConfig:
    """Describe ``model`` as a headless init: its timm config with ``pretrained_cfg`` overrides applied.

    Args:
        model: A timm model (any head); only its config is read here.
        lsml: The ``"lsml"`` block (copied; ``sha256`` is filled in by :func:`save_init`).
        pretrained_cfg: Overrides such as ``input_size``, ``mean``, ``std``, ``license``.

    Raises:
        ConfigError: ``model`` has no timm ``pretrained_cfg``, an override key is not one timm knows,
            or ``lsml`` is not JSON-serializable.
    """
    base = getattr(model, "pretrained_cfg", None)
    if not base or not base.get("architecture"):
        raise ConfigError(f"{type(model).__name__} has no timm pretrained_cfg; create it with timm.create_model")
    overrides = dict(pretrained_cfg or {})
    unknown = sorted(set(overrides) - PRETRAINED_CFG_KEYS)
    if unknown:
        raise ConfigError(f"unknown pretrained_cfg keys {unknown}; valid keys: {sorted(PRETRAINED_CFG_KEYS)}")
    cfg = {k: v for k, v in base.items() if k not in _DROPPED_KEYS and (v is not None or k in _KEEP_NULL)}
    if "input_size" in overrides and tuple(overrides["input_size"])[1:] != tuple(cfg.get("input_size", ()))[1:]:
        cfg.update(dict.fromkeys(_TEST_SIZE_KEYS))  # as timm's own export does
        cfg = {k: v for k, v in cfg.items() if v is not None or k in _KEEP_NULL}
    cfg.update(overrides)
    cfg.update(num_classes=0, custom_load=False)
    model_args = {k: v for k, v in getattr(model, "_model_args", {}).items() if k not in _RUNTIME_ARGS}
    config = InitConfig(
        architecture=base["architecture"],
        pretrained_cfg=_jsonable(cfg, "pretrained_cfg"),
        lsml=_jsonable(dict(lsml), "lsml"),
        num_features=getattr(model, "num_features", None),
        model_args=_jsonable(model_args, "model_args"),
    )
    return config


def _pop_mapping(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.pop(key, None)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InitError(f"{where}: '{key}' must be a JSON object, got {type(value).__name__}")
    return value


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _jsonable(obj: dict[str, Any], name: str) -> dict[str, Any]:
    # A round trip turns tuples into lists now, so the in-memory config equals what is read back.
    try:
        return json.loads(json.dumps(obj, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{name} cannot be written to {CONFIG_FILE}: {err}") from None
