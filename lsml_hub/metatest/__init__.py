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
    A toy init (meta-trained in a second), fine-tuned on its own, then compared with the scratch baseline:

    >>> import lsml_hub
    >>> config = {"model": "test_resnet", "steps": 4, "inner": {"batch_size": 16}, "output_dir": "runs/demo",
    ...           "tasks": ["builtin:digits?classes=0-4", "builtin:digits?classes=5-9"]}
    >>> init = lsml_hub.meta_train(config).init_dir
    >>> result = lsml_hub.finetune(init, "builtin:digits", steps=10, batch_size=32, max_train_samples=100,
    ...                            eval_every=10, progress=False)
    >>> result.final.step, result.train_samples
    (10, 100)
    >>> cmp = lsml_hub.compare({"cts": init}, "builtin:digits", steps=10, batch_size=16, max_train_samples=100,
    ...                        eval_every=10, progress=False)
    >>> print(cmp.table())  # doctest: +ELLIPSIS, +NORMALIZE_WHITESPACE
    target digits (100 train / 359 eval samples), 10 steps, adam lr 0.001, step schedule, full fine-tuning; seeds 0
    name     kind     final acc (%)  best acc (%)  Δ final vs scratch (pp)
    cts      init     ... ± ...      ... ± ...     ... ± ...
    scratch  scratch  ... ± ...      ... ± ...     -
    (skipped pretrained: no timm pretrained weights of test_resnet in the Hugging Face cache)
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
