"""One training step, and loss and accuracy on decoded eval tensors: shared by meta-training and fine-tuning."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lsml_hub.data import Batch, ImageTensors, eval_batches


@dataclass
class EvalResult:
    """Mean loss and top-1 accuracy over ``samples`` evaluated samples."""

    loss: float
    accuracy: float
    samples: int


@torch.inference_mode()
def evaluate_model(model: nn.Module, data: ImageTensors, *, mean: Sequence[float], std: Sequence[float],
                   device: torch.device, batch_size: int = 256, max_batches: int | None = None) -> EvalResult:
    """Evaluate ``model`` in eval mode on ``data`` (its first ``max_batches`` batches when given).

    Sums stay on the device until the end (one host sync); the caller restores train mode.

    Example:
        >>> from lsml_hub.data import load_task
        >>> import timm
        >>> data = load_task("builtin:digits").tensors("eval")  # doctest: +SKIP
        >>> evaluate_model(timm.create_model("test_resnet", num_classes=10), data, mean=(0.5,) * 3,
        ...                std=(0.5,) * 3, device=torch.device("cpu")).samples  # doctest: +SKIP
        359
    """
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    seen = 0
    # islice stops before the stream prepares a batch past the limit (None: no limit)
    for batch in itertools.islice(eval_batches(data, batch_size, mean=mean, std=std, device=device), max_batches):
        logits = model(batch.images)
        loss_sum += F.cross_entropy(logits, batch.labels, reduction="sum").double()
        correct += (logits.argmax(dim=1) == batch.labels).sum()
        seen += len(batch.labels)
    return EvalResult(loss=loss_sum.item() / seen, accuracy=correct.item() / seen, samples=seen)


def train_step(model: nn.Module, batch: Batch, optimizer: torch.optim.Optimizer) -> torch.Tensor:
    """One optimizer step of cross-entropy on ``batch``; returns the (detached) batch loss, on the device.

    Example:
        >>> loss = train_step(model, next(stream), optimizer)  # doctest: +SKIP
    """
    loss = F.cross_entropy(model(batch.images), batch.labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()
