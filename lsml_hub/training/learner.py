"""One source task on its inner trajectory: its model, optimizer, batch stream and resets."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from lsml_hub._seed import derive_seed
from lsml_hub.algorithms import HVP, INNER_STEPS, QUERY_GRAD, Independent, InnerStep, MetaAlgorithm, TaskSignals
from lsml_hub.compute import ComputeConfig
from lsml_hub.data import Augment, Batch, BatchStream, ImageTensors, Task
from lsml_hub.errors import DataError
from lsml_hub.evaluation import EvalResult, evaluate_model, train_step
from lsml_hub.models import body_buffers, check_input_size, create_backbone, split_backbone_head
from lsml_hub.training.config import InnerConfig
from lsml_hub.training.flat import flat_values, flatten_params_, param_views

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
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                    nesterov=cfg.nesterov and cfg.momentum > 0, **kwargs)
        if fused and cfg.momentum > 0:
            # Fused SGD makes its momentum buffers with empty_like on the first step and leaves them unwritten
            # when the scaler skips that step (an overflow, common at the first scale). Zero buffers are the
            # same maths (with no dampening, 0.9 · 0 + g = g) and never hold garbage.
            for p in params:
                optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p)
        return optimizer
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
    algorithm: MetaAlgorithm = field(default_factory=Independent)
    data_budget: DataBudget = field(default_factory=lambda: DataBudget(0))
    #: The start's BatchNorm statistics, every task's first (empty: each model's own, as built).
    start_statistics: Mapping[str, torch.Tensor] = field(default_factory=dict)

    def needs(self, signal: str) -> bool:
        """Whether the meta-learning rule asks the learners for ``signal`` (QUERY_GRAD, HVP, INNER_STEPS)."""
        return signal in self.algorithm.needs

    def stream(self, data: ImageTensors, task: Task, seed: int) -> BatchStream:
        mean, std = self.mean_std
        return BatchStream(data, self.inner.batch_size, seed=seed, mean=mean, std=std,
                           augment=Augment.for_size(task.image_size, task.hflip, task.augment), device=self.device,
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
    """Task ``index``'s model θ_t = (body, head): the body is a flat view that meta-updates move.

    Besides training, it hands the meta-learning rule what the rule asks for (:meth:`signals`): its
    held-out gradient, Hessian-vector products of its training loss, its inner steps; and it keeps the
    rule's per-task tensors (``algo_state``) with its own state.
    """

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
    hvp_stream: BatchStream | None = None
    algo_state: dict[str, torch.Tensor] = field(default_factory=dict)
    resets: int = 0
    steps_since_reset: int = 0
    #: φ, which a rule's proximal term pulls θ_t toward: the loop's own tensor, so meta-updates move it too.
    phi: torch.Tensor | None = None

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
        with torch.no_grad():
            statistics = body_buffers(model)
            for name, value in setup.start_statistics.items():
                statistics[name].copy_(value)
        forward = compute.prepare(model)  # after flattening: the body's layout comes from the flat buffer
        if any(p.untyped_storage().data_ptr() != body.untyped_storage().data_ptr() for p in body_params):
            raise RuntimeError(f"{setup.arch}: a backbone parameter left the flat buffer; meta-updates would miss it")
        data = setup.place(task.tensors("train"), task)
        stream = setup.stream(data, task, task_seed(setup.seed, index, 1))
        query = setup.stream(data, task, task_seed(setup.seed, index, 2)) if setup.needs(QUERY_GRAD) else None
        # Four seed parts: a stream unlike any of task_seed's salts (hard resets use 4, 5, ...).
        hvp = setup.stream(data, task, derive_seed(setup.seed, index, 2, 1)) if setup.needs(HVP) else None
        scaler = compute.grad_scaler(setup.device)
        optimizer = _task_optimizer(model, body_params, setup, fused=scaler is not None)
        return cls(index, task, model, body, body_params, optimizer, stream, setup, forward, scaler, query, hvp,
                   algo_state=setup.algorithm.task_state(body), phi=phi)

    def inner_step(self) -> torch.Tensor:
        """One optimizer step on the next batch; returns the (detached) batch loss.

        The model stays in train mode throughout: only :meth:`evaluate` leaves it, and it switches back.
        A rule that needs INNER_STEPS sees the step's loss, gradient and parameter change.
        """
        observe = self.setup.needs(INNER_STEPS)
        before = self.body.clone() if observe else None
        pull = self._add_proximal_gradient if self.setup.algorithm.proximal_strength else None
        loss = train_step(self.forward, next(self.stream), self.optimizer, compute=self.setup.compute,
                          scaler=self.scaler, before_step=pull)
        if observe:
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.body_params]
            grad = flat_values(grads, self.setup.compute.channels_last)
            if self.scaler is not None:
                # A step the scaler skipped (an overflow) left inf gradients and no update: it adds nothing.
                grad = torch.where(torch.isfinite(grad).all(), grad, torch.zeros_like(grad))
            step = InnerStep(loss, grad, self.body - before, self.steps_since_reset)
            self.setup.algorithm.observe_(self.algo_state, step)
        self.steps_since_reset += 1
        return loss

    def _add_proximal_gradient(self) -> None:
        # μ/2 ‖θ − φ‖² is added as its gradient μ (θ − φ): a second forward over the parameters would cost more.
        assert self.phi is not None, "learner was built without φ"
        pull = (self.body - self.phi).mul_(self.setup.algorithm.proximal_strength)
        for param, term in zip(self.body_params, param_views(pull, self.body_params, self.setup.compute.channels_last)):
            if param.grad is None:  # a parameter the forward pass did not reach
                param.grad = term.clone()
            else:
                param.grad.add_(term)

    def signals(self) -> TaskSignals:
        """What the meta-learning rule asked for, at the current θ_t."""
        setup = self.setup
        query = self.query_grad(setup.algorithm.query_batches) if setup.needs(QUERY_GRAD) else None
        return TaskSignals(self.body, self.algo_state, query_grad=query,
                           hvp=self.hessian_vector_product() if setup.needs(HVP) else None)

    def query_grad(self, batches: int = 1) -> torch.Tensor:
        """Flat backbone gradient, averaged over ``batches`` held-out batches, at the current θ (in fp32)."""
        assert self.query_stream is not None, "learner was built without a query stream"
        total = self.gradient_on(next(self.query_stream))
        for _ in range(batches - 1):
            total.add_(self.gradient_on(next(self.query_stream)))
        return total.div_(batches)

    def gradient_on(self, batch: Batch) -> torch.Tensor:
        """Flat backbone gradient of the loss on ``batch`` at the current θ, leaving θ and its statistics alone.

        Train mode (batch statistics, as MAML's inner loop uses), but the batch must not move the running
        statistics: it is for a meta-gradient only, never for training θ.
        """
        with self._frozen_statistics(), _requiring_grad(self.body_params):
            with self.setup.compute.autocast(batch.images.device):
                logits = self.forward(batch.images)
            grads = torch.autograd.grad(F.cross_entropy(logits.float(), batch.labels), self.body_params)
        return flat_values(grads, self.setup.compute.channels_last)

    def hessian_vector_product(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """``v ↦ H v``, H the Hessian of the training loss at the current θ on one batch (fp32, eager).

        The batch comes from a stream of its own, so the training trajectory does not depend on it.
        """
        assert self.hvp_stream is not None, "learner was built without a Hessian-vector product stream"
        batch = next(self.hvp_stream)
        channels_last = self.setup.compute.channels_last
        # Fused attention kernels have no double backward; the math kernel does (transformers).
        with self._frozen_statistics(), _requiring_grad(self.body_params), sdpa_kernel(SDPBackend.MATH):
            loss = F.cross_entropy(self.model(batch.images), batch.labels)
            grads = torch.autograd.grad(loss, self.body_params, create_graph=True)

        def hvp(v: torch.Tensor) -> torch.Tensor:
            with _requiring_grad(self.body_params):
                dot = sum((g * u).sum() for g, u in zip(grads, param_views(v, self.body_params, channels_last)))
                products = torch.autograd.grad(dot, self.body_params, retain_graph=True)
            return flat_values(products, channels_last)

        return hvp

    @contextlib.contextmanager
    def _frozen_statistics(self) -> Iterator[None]:
        # BatchNorm layers keep normalizing with batch statistics but stop updating their running ones,
        # so nothing is written in place: a graph kept for Hessian-vector products stays valid.
        tracking = [m for m in self.model.modules() if getattr(m, "track_running_stats", False)]
        for module in tracking:
            module.track_running_stats = False
        try:
            yield
        finally:
            for module in tracking:
                module.track_running_stats = True

    def reset_(self, phi: torch.Tensor, hard: bool) -> None:
        """θ_t.body ← φ; a hard reset also draws a new head and forgets the optimizer state."""
        self.body.copy_(phi)
        self.phi = phi
        self.resets += 1
        self.steps_since_reset = 0
        self.setup.algorithm.restart_(self.algo_state)
        if hard:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(task_seed(self.setup.seed, self.index, 3 + self.resets))
                self.model.reset_classifier(self.task.num_classes)
            self.model.get_classifier().to(self.body.device)
            self.optimizer = _task_optimizer(self.model, self.body_params, self.setup, fused=self.scaler is not None)

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
        return body_buffers(self.model)

    def state_dict(self) -> dict[str, Any]:
        state = {
            "model": _to_cpu(self.model.state_dict()),
            "optimizer": _to_cpu(self.optimizer.state_dict()),
            "stream": self.stream.state_dict(),
            "resets": self.resets,
        }
        if self.query_stream is not None:
            state["query_stream"] = self.query_stream.state_dict()
        if self.hvp_stream is not None:
            state["hvp_stream"] = self.hvp_stream.state_dict()
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        if self.algo_state:
            state["algorithm"] = _to_cpu(self.algo_state)
        state["steps_since_reset"] = self.steps_since_reset
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])  # copies in place: body stays a view of the flat buffer
        self.optimizer.load_state_dict(state["optimizer"])
        self.stream.load_state_dict(state["stream"])
        if self.query_stream is not None and "query_stream" in state:
            self.query_stream.load_state_dict(state["query_stream"])
        if self.hvp_stream is not None and "hvp_stream" in state:
            self.hvp_stream.load_state_dict(state["hvp_stream"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        for name, value in state.get("algorithm", {}).items():
            self.algo_state[name].copy_(value)
        self.steps_since_reset = int(state.get("steps_since_reset", 0))
        self.resets = int(state["resets"])


def _task_optimizer(model: nn.Module, body_params: Sequence[nn.Parameter], setup: LearnerSetup, *,
                    fused: bool) -> torch.optim.Optimizer:
    # A rule that keeps the body at φ (ANIL) trains the head alone, and the body needs no gradient then.
    for p in body_params:
        p.requires_grad_(setup.algorithm.trains_body)
    return make_optimizer([p for p in model.parameters() if p.requires_grad], setup.inner, fused=fused)


@contextlib.contextmanager
def _requiring_grad(params: Sequence[nn.Parameter]) -> Iterator[None]:
    """Gradients for ``params`` inside the block, whatever their ``requires_grad`` (ANIL freezes the body)."""
    was = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p, flag in zip(params, was):
            p.requires_grad_(flag)


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj
