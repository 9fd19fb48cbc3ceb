"""Offline sources built from data that ships inside installable packages.

``builtin:digits`` (scikit-learn's handwritten digits), six glyph alphabets rendered from
matplotlib's fonts (``builtin:latin_upper``, ...), and ``builtin:fashion_mnist`` from a local copy.
Each is materialized once into lsml-hub's cache folder and read back with ``datasets``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

import datasets

from lsml_hub._checks import is_int
from lsml_hub.data.builtin import fashion_mnist
from lsml_hub.data.builtin.glyphs import ALPHABETS
from lsml_hub.data.builtin.materialize import cached_dataset
from lsml_hub.errors import DataError

__all__ = ["BUILTINS", "BuiltinSource", "hub_fallback", "load_builtin"]

# Bump when generated content changes, so stale cache folders are not reused.
_GENERATOR_VERSION = 1
DEFAULT_SAMPLES_PER_CLASS = 100


@dataclass(frozen=True)
class BuiltinSource:
    """One builtin source: how it is built and what its images look like."""

    name: str
    description: str
    image_size: int
    natural_images: bool
    generated: bool  # True when samples_per_class applies


BUILTINS: dict[str, BuiltinSource] = {
    "digits": BuiltinSource("digits", "scikit-learn's 8x8 handwritten digits (10)", 32, False, False),
    "fashion_mnist": BuiltinSource(
        "fashion_mnist", "Fashion-MNIST from a local copy, else its Hub id (10)", 28, True, False
    ),
    **{
        name: BuiltinSource(name, f"glyphs: {a.description}", 32, False, True)
        for name, a in ALPHABETS.items()
    },
}


def _builder(name: str, samples_per_class: int, seed: int) -> tuple[dict, Callable[[], datasets.DatasetDict]]:
    from lsml_hub.data.builtin.digits import build_digits
    from lsml_hub.data.builtin.glyphs import build_glyphs

    if name == "digits":
        return {"seed": seed}, lambda: build_digits(seed)
    if name == "fashion_mnist":
        folder = fashion_mnist.local_dir()
        return {"folder": str(folder)}, lambda: fashion_mnist.build_fashion_mnist(folder)
    params = {"samples_per_class": samples_per_class, "seed": seed}
    return params, lambda: build_glyphs(ALPHABETS[name], samples_per_class, seed)


def load_builtin(name: str, *, samples_per_class: int | None = None, seed: int = 0) -> datasets.DatasetDict:
    """Load builtin source ``name`` (train and test splits), materializing it on first use.

    Example:
        >>> load_builtin("digits")["train"].features["label"].num_classes
        10
    """
    source = BUILTINS.get(name)
    if source is None:
        close = difflib.get_close_matches(name, BUILTINS, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise DataError(f"unknown builtin source {name!r}{hint}; valid: {', '.join(sorted(BUILTINS))}")
    if samples_per_class is not None and not source.generated:
        raise DataError(f"samples_per_class applies to generated glyph sources, not builtin:{name}")
    if hub_fallback(name) is not None:
        raise DataError(f"{no_local_copy_hint(name)}; read it with lsml_hub.data.load_task, which falls back "
                        "to the Hugging Face Hub")
    if samples_per_class is not None and not (is_int(samples_per_class) and samples_per_class > 0):
        raise DataError(f"samples_per_class must be a positive integer, got {samples_per_class!r}")
    default = DEFAULT_SAMPLES_PER_CLASS if samples_per_class is None else samples_per_class
    params, build = _builder(name, default, seed)
    return cached_dataset(name, {"version": _GENERATOR_VERSION, **params}, build)


def hub_fallback(name: str) -> tuple[str, str] | None:
    """(Hub dataset id, config) to read builtin ``name`` from when it has no local copy; None when it has one.

    Example:
        >>> hub_fallback("digits") is None  # built from scikit-learn's copy, always there
        True
    """
    if name == "fashion_mnist" and fashion_mnist.local_dir() is None:
        return fashion_mnist.HUB_ID, "fashion_mnist"
    return None


def no_local_copy_hint(name: str) -> str:
    """How to give builtin ``name`` the local copy it lacks."""
    return (f"builtin:{name} has no local copy (install Debian's dataset-fashion-mnist or set "
            f"{fashion_mnist.DIR_ENV} to a folder of the idx files)")
