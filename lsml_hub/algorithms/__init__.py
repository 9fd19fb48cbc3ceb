"""Meta-update rules as pure tensor math (docs/algorithm.md): one small class per rule, found by name.

Add a rule of your own with :func:`register_algorithm`, or name it ``"package.module:ClassName"`` in a
config (docs/extending.md).

Example:
    >>> algo = build_algorithm({"name": "reptile", "meta_lr": 1.0, "reset_period": 100})
    >>> algo.aggregate_period
    100
    >>> sorted(ALGORITHMS)[:3]
    ['anil', 'cts', 'fomaml']
"""

from __future__ import annotations

from lsml_hub.algorithms.base import HVP, INNER_STEPS, QUERY_GRAD, InnerStep, MetaAlgorithm, TaskSignals
from lsml_hub.algorithms.fomaml import ANIL, FOMAML, ShiftedFOMAML
from lsml_hub.algorithms.imaml import IMAML, conjugate_gradient
from lsml_hub.algorithms.independent import Independent
from lsml_hub.algorithms.leap import Leap
from lsml_hub.algorithms.registry import (
    ALGORITHMS,
    algorithm_class,
    build_algorithm,
    find_algorithm,
    register_algorithm,
)
from lsml_hub.algorithms.trajectory import ContinualTrajectoryShifting, MultiTask, Reptile

__all__ = [
    "ALGORITHMS", "ANIL", "FOMAML", "HVP", "IMAML", "INNER_STEPS", "QUERY_GRAD", "ContinualTrajectoryShifting",
    "Independent", "InnerStep", "Leap", "MetaAlgorithm", "MultiTask", "Reptile", "ShiftedFOMAML", "TaskSignals",
    "algorithm_class", "build_algorithm", "conjugate_gradient", "find_algorithm", "register_algorithm",
]
