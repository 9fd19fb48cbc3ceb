"""The only module that talks to ``torch.distributed``.

Everything works without a process group (one process, any number of tasks). Under ``torchrun``
(``env://``), each rank uses gloo on CPU or NCCL on its ``LOCAL_RANK`` GPU, and holds the tasks
``rank, rank + world, ...`` (round-robin).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from lsml_hub._device import resolve_device
from lsml_hub.errors import ConfigError, TrainingError

T = TypeVar("T")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank, the world size and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 and dist.is_initialized()

    def my_tasks(self, num_tasks: int) -> list[int]:
        """Indices of the tasks this rank trains (round-robin)."""
        if num_tasks < self.world_size:
            raise ConfigError(
                f"{self.world_size} processes but only {num_tasks} tasks: use at most {num_tasks} processes"
            )
        return list(range(self.rank, num_tasks, self.world_size))


def setup(device: str = "auto") -> DistContext:
    """Join the process group when started by torchrun (``WORLD_SIZE`` > 1), else run alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world_size == 1:
        return DistContext(device=dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        on_gpu = dev.type == "cuda"
        dist.init_process_group(backend="nccl" if on_gpu else "gloo", device_id=dev if on_gpu else None)
    ctx = DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank, device=dev)
    logger.debug("rank %d/%d on %s", ctx.rank, ctx.world_size, dev)
    return ctx


def teardown(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.destroy_process_group()


def all_reduce_sum_(ctx: DistContext, tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (SUM works on every backend; AVG is NCCL-only)."""
    if ctx.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_(ctx: DistContext, tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    if ctx.enabled:
        dist.broadcast(tensor, src=src)
    return tensor


def gather_objects(ctx: DistContext, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (small, picklable objects only)."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def gather_objects_to_main(ctx: DistContext, obj: Any) -> list[Any] | None:
    """Every rank's ``obj``, in rank order, on rank 0 only (None elsewhere).

    For large objects needed only where they are written (checkpoints): the other ranks never hold
    a copy of everyone's state.
    """
    if not ctx.enabled:
        return [obj]
    out: list[Any] | None = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def gather_dict(ctx: DistContext, local: dict[Any, Any], *, main_only: bool = False) -> dict[Any, Any] | None:
    """The union of every rank's ``local`` mapping (keys are disjoint: each rank holds its own tasks).

    With ``main_only`` the union is built on rank 0 and the other ranks get None.
    """
    parts = gather_objects_to_main(ctx, local) if main_only else gather_objects(ctx, local)
    if parts is None:
        return None
    merged: dict[Any, Any] = {}
    for part in parts:
        merged.update(part)
    return merged


def any_true(ctx: DistContext, flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any rank (so all ranks stop together)."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return bool(t.item() > 0)


def raise_together(ctx: DistContext, error: Exception | None) -> None:
    """Raise on every rank when any rank has an ``error``, so none is left waiting at a later collective.

    A rank with an error raises it; the others raise a TrainingError quoting the first failing rank.
    Every rank must call this at the same point.

    Example:
        >>> raise_together(DistContext(), None)  # nothing failed anywhere: returns
    """
    if not ctx.enabled:
        if error is not None:
            raise error
        return
    messages = gather_objects(ctx, None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    failed = [(rank, message) for rank, message in enumerate(messages) if message is not None]
    if failed:
        rank, message = failed[0]
        raise TrainingError(f"rank {rank} failed ({message}); its log says more")


def run_on_main(ctx: DistContext, fn: Callable[[], T]) -> T | None:
    """Run ``fn`` on rank 0 only; if it raises there, every rank raises, so none waits at a collective.

    Rank 0 re-raises its own exception; the others raise a TrainingError quoting it.
    """
    result, error = None, None
    if ctx.is_main:
        try:
            result = fn()
        except Exception as err:  # shared with the other ranks below, then re-raised
            error = err
    raise_together(ctx, error)
    return result


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()
