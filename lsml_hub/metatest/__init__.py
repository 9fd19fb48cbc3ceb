"""Meta-testing: fine-tune an init on a target task, and compare inits side by side.

Modules, in the order a reader looks for them (docs/architecture.md draws the imports):

* ``finetuning`` — :func:`finetune` and its optimizer and schedule; ``config`` (:class:`FinetuneConfig`),
  ``model`` (what the user named, with its head and input fitted), ``target`` (the target task's data)
  and ``result`` (:class:`FinetuneResult`) serve it;
* ``comparing`` — :func:`compare` and its baselines; ``comparison`` holds its result types and table;
* ``report`` — what ``compare`` writes (CSV, JSON, the curves' PNG); ``record`` adds results to init folders.

Names are imported on first use, so that the CLI can read :class:`FinetuneConfig` defaults without
loading ``datasets``. No module is named after the function it defines, so importing a module never
replaces ``lsml_hub.metatest.finetune`` (the function) with a module.

Example:
    >>> import lsml_hub
    >>> result = lsml_hub.finetune("scratch:resnet20_cifar", "builtin:digits", steps=100)  # doctest: +SKIP
    >>> cmp = lsml_hub.compare(["runs/demo/inits/cts"], "builtin:digits", seeds=(0, 1))  # doctest: +SKIP
    >>> print(cmp.table())  # doctest: +SKIP
"""

from __future__ import annotations

from lsml_hub._lazy import lazy_exports

# public name -> module that defines it; resolved lazily by __getattr__.
_LAZY = {
    "finetune": "lsml_hub.metatest.finetuning",
    "compare": "lsml_hub.metatest.comparing",
    "FinetuneConfig": "lsml_hub.metatest.config",
    "MODES": "lsml_hub.metatest.config",
    "SCHEDULES": "lsml_hub.metatest.config",
    "FinetuneResult": "lsml_hub.metatest.result",
    "EvalPoint": "lsml_hub.metatest.result",
    "Metrics": "lsml_hub.metatest.result",
    "Comparison": "lsml_hub.metatest.comparison",
    "ComparisonRow": "lsml_hub.metatest.comparison",
    "Curve": "lsml_hub.metatest.comparison",
    "SeedRun": "lsml_hub.metatest.comparison",
    "write_report": "lsml_hub.metatest.report",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(), ())
