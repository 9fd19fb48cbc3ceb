"""One source task on its inner trajectory: its model, optimizer, batch stream and resets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lsml_hub._seed import derive_seed
from lsml_hub.data import Augment, BatchStream, Task
from lsml_hub.errors import DataError
from lsml_hub.evaluation import EvalResult, evaluate_model, train_step
from lsml_hub.models import check_input_size, create_backbone, split_backbone_head
from lsml_hub.training.config import InnerConfig
from lsml_hub.training.flat import flatten_params_


def task_seed(seed: int, task_index: int, salt: int = 0) -> int:
    """A seed per (run seed, task, purpose), independent of which rank holds the task."""
    return derive_seed(seed, task_index, salt)


def make_optimizer(params: Sequence[nn.Parameter], cfg: InnerConfig) -> torch.optim.Optimizer:
    """The inner optimizer named by ``cfg`` (validated in InnerConfig)."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


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
    inner: InnerConfig
    seed: int
    query_stream: BatchStream | None = None
    resets: int = 0
    mean_std: tuple[tuple[float, ...], tuple[float, ...]] = field(default=((0.0,), (1.0,)))

    @classmethod
    def create(cls, index: int, task: Task, arch: str, phi: torch.Tensor, inner: InnerConfig, *, seed: int,
               device: torch.device, mean_std: tuple, with_query: bool = False,
               model_kwargs: Mapping[str, Any] | None = None) -> TaskLearner:
        """Build task ``index``'s model with its own head (seeded per task) and its body set to φ.

        Raises:
            DataError: The task has fewer training images than one batch.
            ConfigError: The model cannot take the task's image size.
        """
        if len(task.train) < inner.batch_size:
            raise DataError(f"task {task.name!r} has {len(task.train)} training images, fewer than "
                            f"inner.batch_size={inner.batch_size}; use a batch size of at most {len(task.train)}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(task_seed(seed, index))
            model = create_backbone(arch, num_classes=task.num_classes, **(model_kwargs or {})).to(device)
        check_input_size(model, task.image_size, f"task {task.name!r}")
        body_params = list(split_backbone_head(model).body.values())
        body = flatten_params_(body_params)
        body.copy_(phi)
        data = task.tensors("train")
        mean, std = mean_std
        stream = BatchStream(data, inner.batch_size, seed=task_seed(seed, index, 1), mean=mean, std=std,
                             augment=Augment.for_size(task.image_size, task.hflip), device=device)
        query = None
        if with_query:
            query = BatchStream(data, inner.batch_size, seed=task_seed(seed, index, 2), mean=mean, std=std,
                                augment=Augment.for_size(task.image_size, task.hflip), device=device)
        return cls(index, task, model, body, body_params, make_optimizer(list(model.parameters()), inner),
                   stream, inner, seed, query, mean_std=mean_std)

    def inner_step(self) -> torch.Tensor:
        """One optimizer step on the next batch; returns the (detached) batch loss.

        The model stays in train mode throughout: only :meth:`evaluate` leaves it, and it switches back.
        """
        return train_step(self.model, next(self.stream), self.optimizer)

    def query_grad(self) -> torch.Tensor:
        """Flat gradient of the body on a held-out batch at the current θ (FOMAML's meta-gradient)."""
        assert self.query_stream is not None, "learner was built without a query stream"
        batch = next(self.query_stream)
        # Train mode (batch statistics, as MAML's inner loop uses), but the held-out batch must not
        # move the running statistics: it is for the meta-gradient only, never for training θ.
        saved = [b.clone() for b in self.model.buffers()]
        loss = F.cross_entropy(self.model(batch.images), batch.labels)
        grads = torch.autograd.grad(loss, self.body_params)
        with torch.no_grad():  # after the backward pass, which checks the buffers' versions
            for buffer, value in zip(self.model.buffers(), saved):
                buffer.copy_(value)
        return torch.cat([g.reshape(-1) for g in grads])

    def reset_(self, phi: torch.Tensor, hard: bool) -> None:
        """θ_t.body ← φ; a hard reset also draws a new head and forgets the optimizer state."""
        self.body.copy_(phi)
        self.resets += 1
        if hard:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(task_seed(self.seed, self.index, 3 + self.resets))
                self.model.reset_classifier(self.task.num_classes)
            self.model.get_classifier().to(self.body.device)
            self.optimizer = make_optimizer(list(self.model.parameters()), self.inner)

    def evaluate(self, max_batches: int | None = None) -> EvalResult:
        """Mean loss and accuracy on the eval split (the first ``max_batches`` batches when given)."""
        mean, std = self.mean_std
        try:
            return evaluate_model(self.model, self.task.tensors("eval"), mean=mean, std=std, device=self.body.device,
                                  batch_size=self.inner.batch_size, max_batches=max_batches)
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
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])  # copies in place: body stays a view of the flat buffer
        self.optimizer.load_state_dict(state["optimizer"])
        self.stream.load_state_dict(state["stream"])
        if self.query_stream is not None and "query_stream" in state:
            self.query_stream.load_state_dict(state["query_stream"])
        self.resets = int(state["resets"])


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj
