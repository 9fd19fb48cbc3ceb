"""What a fine-tuning run returns: the model, its learning curve, and its final and best evaluation."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from lsml_hub.metatest.config import FinetuneConfig
from lsml_hub.metatest.model import InputConfig
from lsml_hub.output_folder import OutputFolder

RESULT_FILE = "result.json"
MODEL_FILE = "model.safetensors"
# What finetune writes into its output folder; any other file there makes it refuse the folder.
FINETUNE_OUTPUT = OutputFolder("finetune", (MODEL_FILE, RESULT_FILE), marker=RESULT_FILE)


@dataclass(frozen=True)
class EvalPoint:
    """One evaluation during training.

    Args:
        step: Optimizer steps done.
        train_loss: Mean training loss over the steps since the previous point.
        eval_loss: Mean cross-entropy on the eval split.
        eval_accuracy: Top-1 accuracy on the eval split, in [0, 1].
        lr: Learning rate of the last step.
    """

    step: int
    train_loss: float
    eval_loss: float
    eval_accuracy: float
    lr: float


@dataclass(frozen=True)
class Metrics:
    """Eval accuracy (in [0, 1]) and loss at one step."""

    step: int
    accuracy: float
    loss: float

    @classmethod
    def at(cls, point: EvalPoint) -> Metrics:
        return cls(step=point.step, accuracy=point.eval_accuracy, loss=point.eval_loss)


@dataclass
class FinetuneResult:
    """The outcome of :func:`lsml_hub.finetune`.

    Attributes:
        model: The fine-tuned model as of the last step (on the training device).
        history: Eval points in step order; the last one is after the final step.
        config: The settings it ran with.
        target: Summary of the target task (name, source, sizes, image size used).
        inputs: Image size and normalization the model was fed.
        train_samples: Training samples used (the subset size in the limited-data regime).
        seconds: Wall time of the training loop, evaluations included.
        source: What was fine-tuned: the init string, ``"scratch:ARCH"``, or the model's architecture.

    Example:
        >>> import lsml_hub
        >>> result = lsml_hub.finetune("scratch:test_resnet", "builtin:digits", steps=10, batch_size=32,
        ...                            max_train_samples=100, eval_every=5, progress=False)
        >>> result.source, [point.step for point in result.history], result.final.step
        ('scratch:test_resnet', [5, 10], 10)
        >>> result.best.step in (5, 10), result.best.accuracy >= result.final.accuracy
        (True, True)
        >>> sorted(result.to_dict())  # result.json
        ['best', 'config', 'final', 'history', 'inputs', 'seconds', 'source', 'target', 'train_samples']
    """

    model: nn.Module
    history: list[EvalPoint]
    config: FinetuneConfig
    target: dict[str, Any]
    inputs: InputConfig
    train_samples: int
    seconds: float = 0.0
    source: str = ""

    @property
    def final(self) -> Metrics:
        """Eval metrics after the last step."""
        return Metrics.at(self.history[-1])

    @property
    def best(self) -> Metrics:
        """The eval point with the highest accuracy (the earliest on ties)."""
        return Metrics.at(max(self.history, key=lambda p: (p.eval_accuracy, -p.step)))

    def to_dict(self) -> dict[str, Any]:
        """Everything but the model, as plain data (for ``result.json``)."""
        return {
            "source": self.source,
            "target": self.target,
            "config": self.config.to_dict(),
            "inputs": dataclasses.asdict(self.inputs),
            "train_samples": self.train_samples,
            "seconds": round(self.seconds, 3),
            "final": dataclasses.asdict(self.final),
            "best": dataclasses.asdict(self.best),
            "history": [dataclasses.asdict(p) for p in self.history],
        }

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write ``result.json`` and the fine-tuned weights (``model.safetensors``, head included) to ``out_dir``.

        ``out_dir`` may be new, empty, or hold only these two files with ``result.json`` among them
        (an earlier run's, replaced).

        Raises:
            ConfigError: ``out_dir`` is a file or holds other files (nothing is written).

        Example:
            >>> import lsml_hub
            >>> result = lsml_hub.finetune("scratch:test_resnet", "builtin:digits", steps=10, batch_size=32,
            ...                            max_train_samples=100, eval_every=10, progress=False)
            >>> result.save("runs/finetune_digits")
            PosixPath('runs/finetune_digits')
            >>> sorted(os.listdir("runs/finetune_digits"))
            ['model.safetensors', 'result.json']
        """
        import safetensors.torch
        import torch

        from lsml_hub._io import atomic_write, atomic_write_json

        out_dir = FINETUNE_OUTPUT.check(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        # Copied, contiguous: safetensors refuses tensors that share storage or are channels-last.
        state = {k: v.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
                 for k, v in self.model.state_dict().items()}
        # result.json first: it marks the folder as finetune's, so a run killed before the weights are
        # written can be rerun into it (until then the folder may pair it with an earlier run's weights).
        atomic_write_json(out_dir / RESULT_FILE, self.to_dict())
        with atomic_write(out_dir / MODEL_FILE, "wb") as f:
            f.write(safetensors.torch.save(state, metadata={"format": "pt"}))
        return out_dir
