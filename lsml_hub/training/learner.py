"""One source task on its inner trajectory: its model, optimizer, batch stream and resets."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lsml_hub._seed import derive_seed
from lsml_hub.compute import ComputeConfig
from lsml_hub.data import Augment, BatchStream, ImageTensors, Task
from lsml_hub.errors import DataError
from lsml_hub.evaluation import EvalResult, evaluate_model, train_step
from lsml_hub.models import check_input_size, create_backbone, split_backbone_head
from lsml_hub.training.config import InnerConfig
from lsml_hub.training.flat import flat_values, flatten_params_

logger = logging.getLogger(__name__)


def task_seed(seed: int, task_index: int, salt: int = 0) -> int:
    """A seed per (run seed, task, purpose), independent of which rank holds the task."""
    return derive_seed(seed, task_index, salt)


def make_optimizer(params: Sequence[nn.Parameter], cfg: InnerConfig, *, fused: bool = False) -> torch.optim.Optimizer:
    """The inner optimizer named by ``cfg`` (validated in InnerConfig).

    ``fused`` (CUDA, fp16) lets the gradient scaler skip a step on the device, without a host sync.
    """
    kwargs = {"fused": True} if fused else {}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=cfg.nesterov and cfg.momentum > 0, **kwargs)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kwargs)
    return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


@dataclass
class DataBudget:
    """Bytes of decoded training data this process may still keep on its device (the rest stays on the host).

    Example:
        >>> budget = DataBudget(100)
        >>> budget.take(60), budget.take(60), budget.left
        (True, False, 40)
    """

    left: int

    def take(self, nbytes: int) -> bool:
        """Reserve ``nbytes`` if they fit; whether they did."""
        if nbytes > self.left:
            return False
        self.left -= nbytes
        return True


@dataclass
class LearnerSetup:
    """What every task's learner of a run shares: model, inner optimizer, device, precision, data budget."""

    arch: str
    inner: InnerConfig
    seed: int
    device: torch.device
    mean_std: tuple[tuple[float, ...], tuple[float, ...]]
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    with_query: bool = False
    data_budget: DataBudget = field(default_factory=lambda: DataBudget(0))

    def stream(self, data: ImageTensors, task: Task, seed: int) -> BatchStream:
        mean, std = self.mean_std
        return BatchStream(data, self.inner.batch_size, seed=seed, mean=mean, std=std,
                           augment=Augment.for_size(task.image_size, task.hflip), device=self.device,
                           channels_last=self.compute.channels_last)

    def place(self, data: ImageTensors, task: Task) -> ImageTensors:
        """The training split on the device when it fits the budget (copied once), else on the host."""
        if self.device.type == "cpu":
            return data
        if self.data_budget.take(data.nbytes):
            logger.info("task %s: %.0f MB of training images held on %s", task.name, data.nbytes / 2**20, self.device)
            return data.to(self.device)
        logger.info("task %s: %.0f MB of training images exceed the device data budget; batches are copied "
                    "from pinned host memory", task.name, data.nbytes / 2**20)
        return data


@dataclass
class TaskLearner:
    """Task ``index``'s model θ_t = (body, head): the body is a flat view that meta-updates move."""

    index: int
    task: Task
    model: nn.Module
    body: torch.Tensor
    body_params: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    stream: BatchStream
    setup: LearnerSetup
    forward: Callable[[torch.Tensor], torch.Tensor]
    scaler: torch.amp.GradScaler | None = None
    query_stream: BatchStream | None = None
    resets: int = 0

    @classmethod
    def create(cls, index: int, task: Task, phi: torch.Tensor, setup: LearnerSetup) -> TaskLearner:
        """Build task ``index``'s model with its own head (seeded per task) and its body set to φ.

        Raises:
            DataError: The task has fewer training images than one batch.
            ConfigError: The model cannot take the task's image size.
        """
        batch_size = setup.inner.batch_size
        if len(task.train) < batch_size:
            raise DataError(f"task {task.name!r} has {len(task.train)} training images, fewer than "
                            f"inner.batch_size={batch_size}; use a batch size of at most {len(task.train)}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(task_seed(setup.seed, index))
            model = create_backbone(setup.arch, num_classes=task.num_classes, **setup.model_kwargs).to(setup.device)
        check_input_size(model, task.image_size, f"task {task.name!r}")
        compute = setup.compute
        body_params = list(split_backbone_head(model).body.values())
        body = flatten_params_(body_params, channels_last=compute.channels_last)
        body.copy_(phi)
        forward = compute.prepare(model)  # after flattening: the body's layout comes from the flat buffer
        if any(p.untyped_storage().data_ptr() != body.untyped_storage().data_ptr() for p in body_params):
            raise RuntimeError(f"{setup.arch}: a backbone parameter left the flat buffer; meta-updates would miss it")
        data = setup.place(task.tensors("train"), task)
        stream = setup.stream(data, task, task_seed(setup.seed, index, 1))
        query = setup.stream(data, task, task_seed(setup.seed, index, 2)) if setup.with_query else None
        scaler = compute.grad_scaler(setup.device)
        optimizer = make_optimizer(list(model.parameters()), setup.inner, fused=scaler is not None)
        return cls(index, task, model, body, body_params, optimizer, stream, setup, forward, scaler, query)

    def inner_step(self) -> torch.Tensor:
        """One optimizer step on the next batch; returns the (detached) batch loss.

        The model stays in train mode throughout: only :meth:`evaluate` leaves it, and it switches back.
        """
        return train_step(self.forward, next(self.stream), self.optimizer, compute=self.setup.compute,
                          scaler=self.scaler)

    def query_grad(self) -> torch.Tensor:
        """Flat gradient of the body on a held-out batch at the current θ (FOMAML's meta-gradient), in fp32."""
        assert self.query_stream is not None, "learner was built without a query stream"
        batch = next(self.query_stream)
        # Train mode (batch statistics, as MAML's inner loop uses), but the held-out batch must not
        # move the running statistics: it is for the meta-gradient only, never for training θ.
        saved = [b.clone() for b in self.model.buffers()]
        with self.setup.compute.autocast(batch.images.device):
            logits = self.forward(batch.images)
        loss = F.cross_entropy(logits.float(), batch.labels)
        grads = torch.autograd.grad(loss, self.body_params)
        with torch.no_grad():  # after the backward pass, which checks the buffers' versions
            for buffer, value in zip(self.model.buffers(), saved):
                buffer.copy_(value)
        return flat_values(grads, self.setup.compute.channels_last)

    def reset_(self, phi: torch.Tensor, hard: bool) -> None:
        """θ_t.body ← φ; a hard reset also draws a new head and forgets the optimizer state."""
        self.body.copy_(phi)
        self.resets += 1
        if hard:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(task_seed(self.setup.seed, self.index, 3 + self.resets))
                self.model.reset_classifier(self.task.num_classes)
            self.model.get_classifier().to(self.body.device)
            self.optimizer = make_optimizer(list(self.model.parameters()), self.setup.inner,
                                            fused=self.scaler is not None)

    def evaluate(self, max_batches: int | None = None) -> EvalResult:
        """Mean loss and accuracy on the eval split (the first ``max_batches`` batches when given)."""
        mean, std = self.setup.mean_std
        try:
            return evaluate_model(self.model, self.task.tensors("eval"), mean=mean, std=std, device=self.body.device,
                                  batch_size=self.setup.inner.batch_size, max_batches=max_batches,
                                  compute=self.setup.compute)
        finally:
            self.model.train()

    def body_buffers(self) -> dict[str, torch.Tensor]:
        """Floating-point buffers of the backbone (BatchNorm running statistics)."""
        head = {id(b) for b in self.model.get_classifier().buffers()}
        return {n: b for n, b in self.model.named_buffers() if b.is_floating_point() and id(b) not in head}

    def state_dict(self) -> dict[str, Any]:
        state = {
            "model": _to_cpu(self.model.state_dict()),
            "optimizer": _to_cpu(self.optimizer.state_dict()),
            "stream": self.stream.state_dict(),
            "resets": self.resets,
        }
        if self.query_stream is not None:
            state["query_stream"] = self.query_stream.state_dict()
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])  # copies in place: body stays a view of the flat buffer
        self.optimizer.load_state_dict(state["optimizer"])
        self.stream.load_state_dict(state["stream"])
        if self.query_stream is not None and "query_stream" in state:
            self.query_stream.load_state_dict(state["query_stream"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        self.resets = int(state["resets"])


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj
