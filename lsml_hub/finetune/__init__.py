"""Meta-testing: fine-tune an init on a target task, and compare inits side by side.

Names are imported on first use, so that the CLI can read :class:`FinetuneConfig` defaults without
loading ``datasets``. ``lsml_hub.finetune`` names both this package and the function
:func:`finetune`: Python binds a package to its parent's attribute once it is imported, so the
package itself is callable and ``lsml_hub.finetune(...)`` runs the function either way.

Example:
    >>> import lsml_hub
    >>> result = lsml_hub.finetune("scratch:resnet20_cifar", "builtin:digits", steps=100)  # doctest: +SKIP
    >>> cmp = lsml_hub.compare(["runs/demo/cts/init"], "builtin:digits", seeds=(0, 1))  # doctest: +SKIP
    >>> print(cmp.table())  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

# public name -> module that defines it; resolved lazily by __getattr__.
_LAZY = {
    "finetune": "lsml_hub.finetune.loop",
    "compare": "lsml_hub.finetune.compare_inits",
    "FinetuneConfig": "lsml_hub.finetune.config",
    "MODES": "lsml_hub.finetune.config",
    "SCHEDULES": "lsml_hub.finetune.config",
    "FinetuneResult": "lsml_hub.finetune.result",
    "EvalPoint": "lsml_hub.finetune.result",
    "Metrics": "lsml_hub.finetune.result",
    "Comparison": "lsml_hub.finetune.comparison",
    "ComparisonRow": "lsml_hub.finetune.comparison",
    "Curve": "lsml_hub.finetune.comparison",
    "SeedRun": "lsml_hub.finetune.comparison",
    "write_report": "lsml_hub.finetune.report",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lsml_hub.finetune' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    # A submodule called like the name ("compare") would otherwise shadow the function once imported.
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


class _CallablePackage(types.ModuleType):
    """This package, callable as :func:`finetune` (see the module docstring for why)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return __getattr__("finetune")(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
