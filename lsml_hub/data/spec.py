"""Task specs: which data a task is made of, as a dataclass, a string or a YAML mapping."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from lsml_hub._checks import is_int
from lsml_hub.data.stream import AUGMENTS
from lsml_hub.errors import ConfigError

BUILTIN_PREFIX = "builtin:"


def parse_class_subset(value: str | int | list | tuple | None) -> tuple[int, ...] | None:
    """Parse ``"0-99"``, ``"0-9,20,30-31"`` or a list of ints into a tuple of class ids.

    Example:
        >>> parse_class_subset("0-2,7")
        (0, 1, 2, 7)
    """
    if value is None:
        return None
    if isinstance(value, int):
        return (value,)
    if isinstance(value, (list, tuple)):
        ids = [int(v) for v in value]
    else:
        ids = []
        for part in str(value).replace(" ", "").split(","):
            lo, sep, hi = part.partition("-")
            try:
                first, last = int(lo), int(hi) if sep else int(lo)
            except ValueError:
                raise ConfigError(
                    f"bad class subset {value!r}: use ids and ranges such as '0-99' or '0-9,20'"
                ) from None
            if last < first:
                raise ConfigError(f"bad class subset {value!r}: the range {part!r} runs backwards; write "
                                  f"{last}-{first}")
            ids.extend(range(first, last + 1))
    if not ids or len(set(ids)) != len(ids) or min(ids) < 0:
        raise ConfigError(f"bad class subset {value!r}: ids must be distinct, non-negative, and at least one")
    return tuple(ids)


@dataclass(frozen=True)
class TaskSpec:
    """Where a task's data comes from and how it is cut.

    Args:
        source: A Hugging Face dataset id (``"uoft-cs/cifar100"``), a local path that ``datasets``
            reads (image folder, parquet files, ``save_to_disk`` output), or ``"builtin:NAME"``.
        name: Short name for logs and metrics; defaults to one derived from the source.
        config: Dataset config (``"cropped_digits"`` for SVHN).
        revision: Git revision of a Hub dataset, for reproducibility.
        train_split: Split to train on.
        eval_split: Split to evaluate on; by default the first of test/validation/valid/val that
            exists, else a stratified 10 % held out from the train split.
        image_column: Image column; detected from the features when unambiguous.
        label_column: Label column; detected from the features when unambiguous.
        classes: Subset of class ids kept, remapped to 0..n-1 in the given order (``"0-99"``).
        image_size: Side length images are resized to; defaults to the source's own size.
        hflip: Random horizontal flips in training; defaults to on for natural images, off for
            builtin glyphs and digits.
        augment: ``"crop"`` (pad and crop, for small images) or ``"resized_crop"`` (timm's random
            resized crop, for large natural images); by default chosen by the image size (128 px and up:
            resized crop).
        samples_per_class: Train samples per class for generated builtin sources.
        seed: Seed of generated builtin sources and of the held-out eval split.

    Example:
        >>> TaskSpec.parse("zh-plus/tiny-imagenet?classes=0-99&image_size=64&eval_split=valid").classes[-1]
        99
    """

    source: str
    name: str | None = None
    config: str | None = None
    revision: str | None = None
    train_split: str = "train"
    eval_split: str | None = None
    image_column: str | None = None
    label_column: str | None = None
    classes: tuple[int, ...] | None = None
    image_size: int | None = None
    hflip: bool | None = None
    augment: str | None = None
    samples_per_class: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source:
            raise ConfigError(f"task source must be a non-empty string, got {self.source!r}")
        object.__setattr__(self, "classes", parse_class_subset(self.classes))
        for key in ("image_size", "samples_per_class"):
            value = getattr(self, key)
            if value is not None and not (is_int(value) and value > 0):
                raise ConfigError(f"task spec key {key!r} must be a positive integer, got {value!r} "
                                  f"(in the spec of {self.source})")
        if self.augment is not None and self.augment not in AUGMENTS:
            raise ConfigError(f"task spec key 'augment' must be one of {', '.join(AUGMENTS)}, got {self.augment!r}")
        if not (is_int(self.seed) and self.seed >= 0):
            raise ConfigError(f"task spec key 'seed' must be an integer >= 0, got {self.seed!r}")

    @property
    def is_builtin(self) -> bool:
        return self.source.startswith(BUILTIN_PREFIX)

    @property
    def builtin_name(self) -> str:
        return self.source[len(BUILTIN_PREFIX):]

    @property
    def display_name(self) -> str:
        """``name`` if given, else the source's last path part (plus the class range)."""
        if self.name:
            return self.name
        base = self.source.rstrip("/").split("/")[-1].split(":")[-1]
        if self.classes:
            base += f"_{self.classes[0]}-{self.classes[-1]}"
        return base

    @classmethod
    def parse(cls, value: TaskSpec | str | Mapping[str, Any]) -> TaskSpec:
        """Build a spec from itself, a string ``SOURCE[@REVISION][?key=value&...]`` or a mapping."""
        if isinstance(value, TaskSpec):
            return value
        if isinstance(value, str):
            return cls._from_mapping(_parse_string(value))
        if isinstance(value, Mapping):
            return cls._from_mapping(dict(value))
        raise ConfigError(f"a task spec must be a string or a mapping, got {type(value).__name__}: {value!r}")

    @classmethod
    def _from_mapping(cls, values: dict[str, Any]) -> TaskSpec:
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - valid)
        if unknown:
            raise ConfigError(f"unknown task spec key(s) {unknown}; valid keys: {sorted(valid)}")
        if "source" not in values:
            raise ConfigError(f"a task spec needs a 'source'; got keys {sorted(values)}")
        return cls(**{k: _coerce(k, v) for k, v in values.items()})

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for configs, metadata and checkpoints); defaults are left out."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "source" or value != f.default:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


_INT_KEYS = {"image_size", "samples_per_class", "seed"}
_BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _coerce(key: str, value: Any) -> Any:
    # Values from a query string arrive as text; YAML already gives ints and bools.
    if value is None or not isinstance(value, str):
        return value
    if key in _INT_KEYS:
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"task spec key {key!r} needs an integer, got {value!r}") from None
    if key == "hflip":
        if value.lower() not in _BOOL_WORDS:
            raise ConfigError(f"task spec key 'hflip' needs true or false, got {value!r}")
        return _BOOL_WORDS[value.lower()]
    return value


def _parse_string(text: str) -> dict[str, Any]:
    source, _, query = text.partition("?")
    values: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False))
    if "?" in text and not values:
        raise ConfigError(f"bad task spec {text!r}: after '?' write key=value pairs joined by '&'")
    # "owner/name@rev" pins a Hub revision; local paths and builtins have no revision.
    if "@" in source and not source.startswith(BUILTIN_PREFIX) and not is_local_path(source):
        source, _, values["revision"] = source.partition("@")
    values["source"] = source
    return values


_FILE_SUFFIXES = (".parquet", ".arrow", ".csv", ".json", ".jsonl", ".zip", ".tar")


def is_local_path(source: str) -> bool:
    """Whether ``source`` names a local path rather than a Hub id ``name`` or ``owner/name[@revision]``.

    A leading ``.``, ``/`` or ``~``, a second ``/`` before any ``@``, a data file suffix, or an existing
    path mean a path (which may hold ``@`` anywhere).
    """
    head = source.partition("@")[0]
    return (source.startswith((".", "/", "~")) or head.count("/") > 1 or source.endswith(_FILE_SUFFIXES)
            or Path(source).expanduser().exists())
