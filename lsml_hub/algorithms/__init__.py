"""Meta-update rules as pure tensor math (the README's "The algorithm"): one small object per algorithm.

Example:
    >>> algo = build_algorithm({"name": "reptile", "meta_lr": 1.0, "reset_period": 100})
    >>> algo.aggregate_period
    100
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from lsml_hub.algorithms.base import HVP, INNER_STEPS, QUERY_GRAD, InnerStep, MetaAlgorithm, TaskSignals
from lsml_hub.algorithms.fomaml import ANIL, FOMAML, ShiftedFOMAML
from lsml_hub.algorithms.imaml import IMAML, conjugate_gradient
from lsml_hub.algorithms.independent import Independent
from lsml_hub.algorithms.leap import Leap
from lsml_hub.algorithms.trajectory import ContinualTrajectoryShifting, MultiTask, Reptile
from lsml_hub.errors import ConfigError

ALGORITHMS: dict[str, type[MetaAlgorithm]] = {
    cls.name: cls for cls in (ContinualTrajectoryShifting, Reptile, MultiTask, FOMAML, ShiftedFOMAML, Leap, IMAML,
                              ANIL, Independent)
}

__all__ = [
    "ALGORITHMS", "ANIL", "FOMAML", "HVP", "IMAML", "INNER_STEPS", "QUERY_GRAD", "ContinualTrajectoryShifting",
    "Independent", "InnerStep", "Leap", "MetaAlgorithm", "MultiTask", "Reptile", "ShiftedFOMAML", "TaskSignals",
    "build_algorithm", "conjugate_gradient",
]


def build_algorithm(config: Mapping[str, Any]) -> MetaAlgorithm:
    """Create the algorithm named by ``config["name"]`` with the remaining keys as its arguments."""
    config = dict(config)
    name = config.pop("name", "cts")
    cls = ALGORITHMS.get(name)
    if cls is None:
        raise ConfigError(f"unknown algorithm {name!r}; valid: {', '.join(ALGORITHMS)}")
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(config) - valid)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} for algorithm {name!r}; valid: {sorted(valid)}")
    return cls(**config)
