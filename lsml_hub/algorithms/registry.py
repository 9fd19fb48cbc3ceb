"""Meta-learning rules by name: the builtin ones, ones registered with a decorator, and ``module:Class`` plug-ins.

A config names its rule in ``algorithm.name``. Three spellings reach a class:

* a builtin name (``"cts"``, ``"reptile"``, ...);
* a name registered at run time with :func:`register_algorithm`, as timm's ``register_model`` does for
  models: import the module that defines the rule, then use its name;
* ``"package.module:ClassName"``, which imports the module first, so the CLI, a copied recipe and every
  ``torchrun`` process find a rule defined outside this package without any code of theirs running
  first. The current directory is searched after ``sys.path``.

The spelling is recorded as written (in the run's config, its checkpoint and the init's metadata), so a
resumed run rebuilds the same rule.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from lsml_hub.algorithms.base import MetaAlgorithm
from lsml_hub.errors import ConfigError

#: Every rule a bare name reaches, builtin first; plug-ins add to it.
ALGORITHMS: dict[str, type[MetaAlgorithm]] = {}
# ``module:Class`` names already imported in this process.
_PLUGINS: dict[str, type[MetaAlgorithm]] = {}

A = TypeVar("A", bound=type[MetaAlgorithm])

_NAME = re.compile(r"[A-Za-z_][\w.-]*")
_PLUGIN = re.compile(r"(?P<module>[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*):(?P<attr>[A-Za-z_]\w*)")


def register_algorithm(cls: A | None = None, *, name: str | None = None,
                       overwrite: bool = False) -> A | Callable[[A], A]:
    """Class decorator: make a :class:`MetaAlgorithm` subclass usable as ``algorithm.name`` in configs.

    Args:
        cls: The rule (a dataclass subclass of :class:`MetaAlgorithm`).
        name: The name configs use; defaults to the class's ``name`` attribute, which is set to it.
        overwrite: Replace a rule already registered under that name (a builtin included). The same class
            defined again (a notebook cell run twice, a reloaded or twice-imported module) replaces itself
            without it.

    Example:
        >>> import torch
        >>> from lsml_hub.algorithms import MetaAlgorithm, build_algorithm, register_algorithm
        >>> @register_algorithm(name="doc_sign_sgd")
        ... class SignSGD(MetaAlgorithm):
        ...     '''Moves φ by β·sign(θ̄ − φ).'''
        ...     def accumulate_(self, total, task):
        ...         total.add_(task.theta)
        ...     def delta_(self, mean, phi):
        ...         return mean.sub_(phi).sign_().mul_(self.meta_lr)
        >>> algo = build_algorithm({"name": "doc_sign_sgd", "meta_lr": 0.1, "reset_period": 50})
        >>> algo.name, algo.delta_(torch.tensor([3.0, -2.0]), torch.zeros(2)).tolist()
        ('doc_sign_sgd', [0.10000000149011612, -0.10000000149011612])
    """
    def register(rule: A) -> A:
        _check_rule_class(rule, repr(rule))
        key = name if name is not None else getattr(rule, "name", None)
        if not isinstance(key, str) or not _NAME.fullmatch(key):
            raise ConfigError(f"{rule.__qualname__} needs a name for configs: a class attribute `name = \"...\"` "
                              f"or register_algorithm(name=...), letters, digits, '_', '.' or '-'; got {key!r}")
        if key in ALGORITHMS and not overwrite and not _same_definition(ALGORITHMS[key], rule):
            raise ConfigError(f"an algorithm named {key!r} is registered already ({ALGORITHMS[key].__qualname__}); "
                              "choose another name or pass overwrite=True")
        rule.name = key
        ALGORITHMS[key] = rule
        return rule

    return register(cls) if cls is not None else register


def algorithm_class(name: str) -> type[MetaAlgorithm]:
    """The rule ``name`` reaches: a registered name, or a ``module:Class`` plug-in (imported here).

    Example:
        >>> algorithm_class("reptile").__name__
        'Reptile'
        >>> algorithm_class("lsml_hub.algorithms.trajectory:MultiTask").name
        'multitask'
    """
    if not isinstance(name, str):
        raise ConfigError(f"algorithm.name must be a string, got {name!r}")
    if name in ALGORITHMS:
        return ALGORITHMS[name]
    match = _PLUGIN.fullmatch(name)
    if match is None:
        raise ConfigError(f"unknown algorithm {name!r}; valid: {', '.join(sorted(ALGORITHMS))}, a name registered with "
                          "lsml_hub.algorithms.register_algorithm, or 'package.module:ClassName'")
    rule = getattr(_import_plugin(match["module"], name), match["attr"], None)
    if rule is None:
        raise ConfigError(f"algorithm.name={name!r}: module {match['module']!r} has no {match['attr']!r}")
    _check_rule_class(rule, f"algorithm.name={name!r} names {rule!r}, which")
    _PLUGINS[name] = rule
    return rule


def find_algorithm(name: str) -> type[MetaAlgorithm] | None:
    """The rule ``name`` reaches without importing anything (a ``module:Class`` only once built); else None.

    Example:
        >>> find_algorithm("cts").title
        'Continual Trajectory Shifting (CTS)'
        >>> find_algorithm("someone_elses:Rule") is None
        True
    """
    return ALGORITHMS.get(name) or _PLUGINS.get(name)


def build_algorithm(config: Mapping[str, Any]) -> MetaAlgorithm:
    """Create the rule named by ``config["name"]`` (default ``"cts"``) with the other keys as its arguments.

    Example:
        >>> algo = build_algorithm({"name": "reptile", "meta_lr": 1.0, "reset_period": 100})
        >>> algo.aggregate_period
        100
        >>> build_algorithm({"name": "reptile", "lr": 1.0})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        lsml_hub.errors.ConfigError: unknown key(s) ['lr'] for algorithm 'reptile'; valid: ['aggregate_period', ...]
    """
    config = dict(config)
    name = config.pop("name", "cts")
    cls = algorithm_class(name)
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(config) - valid)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} for algorithm {name!r}; valid: {sorted(valid)}")
    algo = cls(**config)
    # As the config spelled it (a plug-in's "module:Class"), so the recorded hyper-parameters rebuild it.
    algo.name = name
    return algo


def _import_plugin(module: str, name: str):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name != module and not module.startswith(f"{err.name}."):
            raise  # the plug-in itself imports something missing: its own traceback says what
    cwd = os.getcwd()
    if cwd in sys.path or "" in sys.path:
        raise ConfigError(f"algorithm.name={name!r}: no module named {module!r} on sys.path or in {cwd}; "
                          "install it, or add its folder to PYTHONPATH")
    sys.path.append(cwd)  # `lsml-hub meta-train` run next to the user's my_rules.py finds it
    try:
        return _import_plugin(module, name)
    finally:
        sys.path.remove(cwd)


def _same_definition(old: type, new: type) -> bool:
    """``new`` is ``old`` defined again: same class name in the same module, or in the same source file."""
    if old is new:
        return True
    if old.__qualname__ != new.__qualname__:
        return False
    files = [getattr(sys.modules.get(cls.__module__), "__file__", None) for cls in (old, new)]
    return old.__module__ == new.__module__ or (files[0] is not None and files[0] == files[1])


def _check_rule_class(rule: Any, what: str) -> None:
    if not (isinstance(rule, type) and issubclass(rule, MetaAlgorithm)):
        raise ConfigError(f"{what} is not a subclass of lsml_hub.algorithms.MetaAlgorithm")
    missing = sorted(getattr(rule, "__abstractmethods__", ()))
    if missing:
        raise ConfigError(f"{what} does not define {', '.join(missing)}, which every rule must")
