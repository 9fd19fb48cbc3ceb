"""Checkpoints: everything a run needs to resume exactly, in one atomically written file."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lsml_hub._io import atomic_write
from lsml_hub.errors import ConfigError, TrainingError, first_line
from lsml_hub.run_layout import CHECKPOINT_FILE

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_CHECKPOINT_KEYS = frozenset({"format", "step", "phi", "tasks", "identity", "rng"})


@dataclass
class Checkpoint:
    """State of a run after ``step`` inner steps.

    Attributes:
        step: Inner steps done.
        phi: Flat meta-parameters φ.
        tasks: Per-task learner state, keyed by global task index.
        identity: The config part that must match on resume (see ``config.identity``).
        rng: Torch CPU RNG state of rank 0.
    """

    step: int
    phi: torch.Tensor
    tasks: dict[int, dict[str, Any]]
    identity: dict[str, Any]
    rng: torch.Tensor

    def save(self, path: Path) -> None:
        payload = {"format": FORMAT_VERSION, "step": self.step, "phi": self.phi.detach().cpu(),
                   "tasks": self.tasks, "identity": self.identity, "rng": self.rng}
        with atomic_write(path, "wb") as f:
            torch.save(payload, f)

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        """Read a checkpoint written by :meth:`save`.

        Raises:
            TrainingError: The file is damaged or not a checkpoint (the message names it).
            ConfigError: It was written in another checkpoint format.
        """
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except MemoryError:
            raise
        except Exception as err:  # noqa: BLE001 - any failure of the weights-only unpickler means a damaged file
            raise TrainingError(f"{path} cannot be read ({type(err).__name__}: {first_line(err)}); "
                                f"move it away to start the run over, or use another output_dir") from None
        if not isinstance(payload, dict) or not _CHECKPOINT_KEYS <= payload.keys():
            raise TrainingError(f"{path} is not an lsml-hub checkpoint (expected the keys {sorted(_CHECKPOINT_KEYS)})")
        if payload["format"] != FORMAT_VERSION:
            raise ConfigError(f"{path}: checkpoint format {payload['format']!r}, expected {FORMAT_VERSION}")
        return cls(step=payload["step"], phi=payload["phi"], tasks=payload["tasks"],
                   identity=payload["identity"], rng=payload["rng"])


def checkpoint_path(output_dir: Path) -> Path:
    return output_dir / CHECKPOINT_FILE


def identity_differences(saved: dict[str, Any], current: dict[str, Any], saved_as: str = "checkpoint") -> list[str]:
    """What differs between a saved run identity and the current config's, one ``key: a vs b`` each.

    Example:
        >>> identity_differences({"seed": 0, "model": "m"}, {"seed": 1, "model": "m"})
        ['seed: checkpoint 0 vs config 1']
    """
    keys = sorted(set(saved) | set(current))
    return [f"{k}: {saved_as} {saved.get(k)!r} vs config {current.get(k)!r}" for k in keys
            if saved.get(k) != current.get(k)]


def check_identity(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """Refuse to resume a checkpoint made with a different config, naming what differs."""
    diffs = identity_differences(saved, current)
    if diffs:
        raise ConfigError(
            f"{path} was made with a different config ({'; '.join(diffs)}); use another output_dir "
            "or restore the original config"
        )
