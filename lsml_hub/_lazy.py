"""Module-level ``__getattr__``/``__dir__`` that import a public name's module on first use (PEP 562)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, table: dict[str, str], namespace: dict[str, Any], extra: tuple[str, ...] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, resolving ``table`` (name -> defining module).

    A resolved name is stored in ``namespace``, so a submodule of the same name imported later
    cannot shadow it.

    Example:
        >>> getattr_, dir_ = lazy_exports("pkg", {"sqrt": "math"}, {})
        >>> getattr_("sqrt")(4.0)
        2.0
    """

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted([*extra, *table])

    return __getattr__, __dir__
