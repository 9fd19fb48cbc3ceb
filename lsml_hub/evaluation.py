"""One training step, and loss and accuracy on decoded eval tensors: shared by meta-training and fine-tuning."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lsml_hub.compute import ComputeConfig
from lsml_hub.data import Batch, ImageTensors, eval_batches

FP32 = ComputeConfig()


@dataclass
class EvalResult:
    """Mean loss and top-1 accuracy over ``samples`` evaluated samples."""

    loss: float
    accuracy: float
    samples: int


@torch.inference_mode()
def evaluate_model(model: nn.Module, data: ImageTensors, *, mean: Sequence[float], std: Sequence[float],
                   device: torch.device, batch_size: int = 256, max_batches: int | None = None,
                   compute: ComputeConfig = FP32) -> EvalResult:
    """Evaluate ``model`` in eval mode on ``data`` (its first ``max_batches`` batches when given).

    The forward runs in ``compute``'s precision and layout, as training does (uncompiled: the last
    batch is smaller, and evaluation is rare).

    Sums stay on the device until the end (one host sync); the caller restores train mode.

    Example:
        >>> from lsml_hub.data import load_task
        >>> import timm
        >>> data = load_task("builtin:digits").tensors("eval")
        >>> result = evaluate_model(timm.create_model("test_resnet", num_classes=10), data, mean=(0.5,) * 3,
        ...                         std=(0.5,) * 3, device=torch.device("cpu"))
        >>> result.samples, 0.0 <= result.accuracy <= 1.0
        (359, True)
    """
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    seen = 0
    # islice stops before the stream prepares a batch past the limit (None: no limit)
    batches = eval_batches(data, batch_size, mean=mean, std=std, device=device, channels_last=compute.channels_last)
    for batch in itertools.islice(batches, max_batches):
        with compute.autocast(device):
            logits = model(batch.images)
        loss_sum += F.cross_entropy(logits.float(), batch.labels, reduction="sum").double()
        correct += (logits.argmax(dim=1) == batch.labels).sum()
        seen += len(batch.labels)
    return EvalResult(loss=loss_sum.item() / seen, accuracy=correct.item() / seen, samples=seen)


def train_step(forward: Callable[[torch.Tensor], torch.Tensor], batch: Batch, optimizer: torch.optim.Optimizer, *,
               compute: ComputeConfig = FP32, scaler: torch.amp.GradScaler | None = None,
               before_step: Callable[[], None] | None = None) -> torch.Tensor:
    """One optimizer step of cross-entropy on ``batch``; returns the (detached) batch loss, on the device.

    Args:
        forward: The model, or its compiled form (:meth:`ComputeConfig.prepare`).
        batch: Images and labels on the model's device.
        optimizer: Steps the model's parameters (fp32 whatever the precision).
        compute: Precision of the forward (autocast); the loss is computed in fp32.
        scaler: fp16's gradient scaler; None otherwise. With a fused optimizer (what fp16 learners use for
            SGD and Adam) its overflow check stays on the device and nothing in this step waits for the
            host; with another optimizer (RMSprop, fine-tuning's timm optimizers) the scaler reads the
            overflow flag on the host once per step.
        before_step: Called once the gradients are in (unscaled) and before the optimizer steps, to add a
            term of the caller's own to them (the learners' proximal term).

    Example:
        >>> from lsml_hub.data import Batch
        >>> g = torch.Generator().manual_seed(0)
        >>> batch = Batch(torch.randn(8, 3, 4, 4, generator=g), torch.tensor([0, 1] * 4))
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        >>> losses = [train_step(model, batch, optimizer) for _ in range(3)]
        >>> losses[0].requires_grad, bool(losses[-1] < losses[0])  # detached; the same batch's loss goes down
        (False, True)
    """
    with compute.autocast(batch.images.device):
        logits = forward(batch.images)
    loss = F.cross_entropy(logits.float(), batch.labels)
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        if before_step is not None:
            before_step()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        if before_step is not None:
            scaler.unscale_(optimizer)  # the hook adds to true gradients; step() then knows they are unscaled
            before_step()
        scaler.step(optimizer)
        scaler.update()
    return loss.detach()
