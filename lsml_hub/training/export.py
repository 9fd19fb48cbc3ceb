"""Turn φ, the tasks' BatchNorm statistics and the run's record into an init folder (timm Hub layout)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lsml_hub import distributed
from lsml_hub.algorithms import MetaAlgorithm
from lsml_hub.distributed import DistContext
from lsml_hub.models import create_backbone, split_backbone_head
from lsml_hub.training.config import MetaTrainConfig
from lsml_hub.training.flat import flatten_params_
from lsml_hub.training.learner import EvalResult, TaskLearner


def averaged_buffers(ctx: DistContext, learners: Sequence[TaskLearner], num_tasks: int) -> dict[str, torch.Tensor]:
    """BatchNorm running statistics averaged over all tasks (all ranks), so timm loads the init strictly."""
    per_learner = [learner.body_buffers() for learner in learners]
    names = list(per_learner[0])
    if not names:  # no BatchNorm (ConvNeXt, ViT...): nothing to average, but every rank still agrees
        return {}
    # float64, as for φ, so the mean does not depend on how tasks are spread over ranks.
    total = sum(torch.cat([b[n].reshape(-1) for n in names]).double() for b in per_learner)
    distributed.all_reduce_sum_(ctx, total).div_(num_tasks)
    out, offset = {}, 0
    for name in names:
        ref = per_learner[0][name]
        out[name] = total[offset:offset + ref.numel()].view_as(ref).to(ref.dtype).cpu()
        offset += ref.numel()
    return out


def build_init_model(arch: str, phi: torch.Tensor, buffers: dict[str, torch.Tensor],
                     model_kwargs: Mapping[str, Any] | None = None, *, channels_last: bool = False) -> nn.Module:
    """A headless ``arch`` (built with ``model_kwargs``, which the init records as timm's ``model_args``)
    whose backbone parameters are φ (laid out NHWC when ``channels_last``, as the learners' bodies were)
    and whose BN statistics are ``buffers``."""
    model = create_backbone(arch, num_classes=0, **(model_kwargs or {}))
    params = list(split_backbone_head(model).body.values())
    numel = sum(p.numel() for p in params)
    if numel != phi.numel():
        raise RuntimeError(f"φ has {phi.numel()} values but {arch}'s backbone has {numel}")
    with torch.no_grad():
        flatten_params_(params, channels_last).copy_(phi)  # the same layout the learners' bodies have
        named = dict(model.named_buffers())
        for name, value in buffers.items():
            named[name].copy_(value)
    return model


def init_metadata(algorithm: MetaAlgorithm, config: MetaTrainConfig, source_tasks: list[dict[str, Any]], steps: int,
                  start: dict[str, Any] | None, world_size: int,
                  final_eval: Mapping[str, EvalResult]) -> dict[str, Any]:
    """The init's ``"lsml"`` block as meta-training writes it (docs/init-format.md lists every field).

    ``save_init`` adds the weights' sha256 and the package version; ``compare --record`` adds meta-test
    results later. A new field of the block belongs here.
    """
    return {
        "algorithm": algorithm.hyperparameters(),
        # Cards made later, in a process that never imported a plug-in rule, still name and credit it.
        "credit": type(algorithm).credit(),
        "inner_optimizer": vars(config.inner).copy(),
        "source_tasks": source_tasks,
        "steps": steps,
        "seed": config.seed,
        "start": start,
        "world_size": world_size,
        "final_metrics": {k: {"loss": v.loss, "accuracy": v.accuracy} for k, v in final_eval.items()},
    }


def write_init(out_dir: Path, model: nn.Module, metadata: dict[str, Any], input_size: int,
               mean: Sequence[float], std: Sequence[float]) -> Path:
    """Save through the hub's ``save_init`` with the image size and normalization the init was trained with."""
    from lsml_hub.hub import save_init

    return save_init(out_dir, model, lsml=metadata,
                     pretrained_cfg={"input_size": (3, input_size, input_size), "mean": tuple(mean), "std": tuple(std)})
