"""The meta-training loop (docs/algorithm.md) on one process or many (torchrun); recipes/meta_train.py spells it out."""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch
import yaml
from timm.data import resolve_data_config
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from lsml_hub import distributed
from lsml_hub._io import atomic_write
from lsml_hub.algorithms import MetaAlgorithm, build_algorithm
from lsml_hub.data import Task, load_task
from lsml_hub.distributed import DistContext
from lsml_hub.errors import ConfigError, LsmlHubError, TrainingError
from lsml_hub.hub.format import INIT_FOLDER, foreign_init
from lsml_hub.models import body_buffers, split_backbone_head
from lsml_hub.run_layout import (
    CHECKPOINT_FILE,
    INIT_SUBDIR,
    RUN_CONFIG_FILE,
    RUN_FOLDER,
    read_run_marker,
    write_run_marker,
)
from lsml_hub.training.checkpoint import Checkpoint, check_identity, checkpoint_path, identity_differences
from lsml_hub.training.config import MetaTrainConfig, identity
from lsml_hub.training.export import averaged_buffers, build_init_model, init_metadata, write_init
from lsml_hub.training.flat import flatten_params_
from lsml_hub.training.learner import DataBudget, EvalResult, LearnerSetup, TaskLearner
from lsml_hub.training.metrics import MetricsWriter
from lsml_hub.training.start import start_model

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class MetaTrainResult:
    """What a finished run produced.

    Attributes:
        output_dir: The run folder (config, metrics, checkpoints, init).
        init_dir: The exported init, loadable with ``lsml_hub.create_model(f"local-dir:{init_dir}")``.
        steps: Inner steps done.
        final_eval: Per task name, its last evaluation.
    """

    output_dir: Path
    init_dir: Path
    steps: int
    final_eval: dict[str, EvalResult] = field(default_factory=dict)


class MetaTrainer:
    """One meta-training job, as parts a loop is written from: ``recipes/meta_train.py`` spells that loop out.

    Building it checks the run folder (or loads the checkpoint to resume), then makes φ and one
    :class:`TaskLearner` per task of this rank. ``run()`` is the whole job; the recipe composes the same
    public parts (``train_step``'s body, ``meta_update``'s body, ``progress``, ``report``, ``export``).

    Example:
        >>> from lsml_hub.distributed import DistContext
        >>> config = MetaTrainConfig.from_dict({
        ...     "model": "test_resnet", "steps": 4, "inner": {"batch_size": 16}, "output_dir": "runs/demo",
        ...     "tasks": ["builtin:digits?classes=0-4", "builtin:digits?classes=5-9"]})
        >>> trainer = MetaTrainer(config, DistContext())  # on the CPU, one process
        >>> [learner.task.name for learner in trainer.learners], trainer.input_size
        (['digits_0-4', 'digits_5-9'], 32)
        >>> result = trainer.run()
        >>> result.steps, result.init_dir
        (4, PosixPath('runs/demo/init'))
    """

    def __init__(self, config: MetaTrainConfig, ctx: DistContext) -> None:
        self.cfg, self.ctx = config, ctx
        self.compute = config.compute.check_device(ctx.device)  # fp16 off CUDA fails here, before any data
        self.out = Path(config.output_dir)
        self.algo: MetaAlgorithm = build_algorithm(config.algorithm)
        self.num_tasks = len(config.tasks)
        self.local = ctx.my_tasks(self.num_tasks)
        # Before any dataset is loaded: a wrong output_dir or a changed config fails in a second, not minutes.
        resume_from = self._check_output()
        torch.manual_seed(config.seed)
        self.phi, self.mean_std = self._init_phi()
        self.learners = self._make_learners()
        self.step = 0
        self._sum = torch.empty_like(self.phi, dtype=torch.float64)
        self.final_eval: dict[str, EvalResult] = {}  # the last evaluation
        self._metrics: MetricsWriter | None = None
        self._bar: tqdm | None = None  # open_run() opens it around the loop
        self._tick = (time.perf_counter(), 0)  # (time, step) of the last log line, for steps/s
        self._losses: dict[int, list[torch.Tensor]] = collections.defaultdict(list)  # per task, since last log
        self._unchecked: list[tuple[int, TaskLearner, torch.Tensor]] = []  # (step, task, loss) not yet checked
        self._delta_norm = 0.0
        if resume_from is not None:
            self._resume(resume_from)

    def _init_phi(self) -> tuple[torch.Tensor, tuple]:
        self.start = start_model(self.cfg.model, self.cfg.model_kwargs, self.cfg.start_from)
        model = self.start.model.to(self.ctx.device)
        if not self.algo.trains_body and not split_backbone_head(model).head:
            raise ConfigError(f"{self.algo.name} trains only the classifier head in the inner loop, but "
                              f"{self.cfg.model!r} has no separate head (get_classifier() holds no parameters)")
        # A fresh, detached buffer, laid out as every learner's body is (NHWC 4-D weights under channels_last).
        phi = flatten_params_(list(split_backbone_head(model).body.values()), self.compute.channels_last)
        data_cfg = resolve_data_config({}, model=model)
        return distributed.broadcast_(self.ctx, phi), (tuple(data_cfg["mean"]), tuple(data_cfg["std"]))

    def _make_learners(self) -> list[TaskLearner]:
        # Ranks load different tasks: one rank's bad task must stop the others too, not leave them waiting.
        tasks = self._together(lambda: {i: load_task(self.cfg.tasks[i]) for i in self.local})
        # Before any split is decoded: the sizes come from the datasets' metadata.
        self.input_size = self._resolve_input_size({i: (t.name, t.image_size) for i, t in tasks.items()})
        return self._together(lambda: [self._make_learner(i, t) for i, t in tasks.items()])

    def _together(self, make: Callable[[], T]) -> T:
        result, problem = None, None
        try:
            result = make()
        except LsmlHubError as err:
            problem = err
        distributed.raise_together(self.ctx, problem)
        return result

    def _make_learner(self, index: int, task: Task) -> TaskLearner:
        return TaskLearner.create(index, task, self.phi, self.setup)

    @functools.cached_property
    def setup(self) -> LearnerSetup:
        """What every learner of this process shares (one device data budget among them)."""
        return LearnerSetup(self.cfg.model, self.cfg.inner, self.cfg.seed, self.ctx.device, self.mean_std,
                            model_kwargs=self.cfg.model_kwargs, compute=self.compute, algorithm=self.algo,
                            data_budget=DataBudget(int(self.cfg.device_data_gb * 2**30)),
                            start_statistics={n: b.detach().clone() for n, b in body_buffers(self.start.model).items()})

    # -- the loop (recipes/meta_train.py spells out the same steps) -------------------------------
    def run(self) -> MetaTrainResult:
        """Train until ``steps`` (logging, evaluating and checkpointing when due), then export the init."""
        with self.open_run():
            while self.step < self.cfg.steps:
                self.train_step()
                self.report()
        return self.export()

    def train_step(self) -> None:
        """Advance by one inner step: every local task steps, then the meta-update and the reset when due."""
        self.step += 1
        for learner in self.learners:
            self.track_loss(learner, learner.inner_step())
        if self.algo.is_meta_step(self.step):
            self.meta_update()
        if self.algo.is_reset_step(self.step):
            for learner in self.learners:
                learner.reset_(self.phi, self.algo.hard_reset)

    def meta_update(self) -> torch.Tensor:
        """φ moves by the rule's Δ from the mean over all tasks (every rank's); returns Δ."""
        total = self.new_sum()
        for learner in self.learners:
            self.algo.accumulate_(total, learner.signals())
        distributed.all_reduce_sum_(self.ctx, total).div_(self.num_tasks)
        delta = self.algo.delta_(total, self.phi)
        self.algo.apply_(self.phi, [learner.body for learner in self.learners], delta)
        self.track_meta_update(delta)
        return delta

    def new_sum(self) -> torch.Tensor:
        """The zeroed buffer tasks add their contributions into.

        float64: the sum of a handful of float32 terms is then exact, so the result does not depend on
        how tasks are spread over ranks (the order of the all-reduce).
        """
        return self._sum.zero_()

    def track_loss(self, learner: TaskLearner, loss: torch.Tensor) -> None:
        """Keep a task's step loss (on the device) for the next log line and the next finiteness check."""
        self._losses[learner.index].append(loss)
        self._unchecked.append((self.step, learner, loss))

    def track_meta_update(self, delta: torch.Tensor) -> None:
        """Keep the last meta-step Δ; its norm is computed only when a line is logged."""
        self._delta_norm = delta

    @contextlib.contextmanager
    def open_run(self, progress_bar: bool = True) -> Iterator[None]:
        """Around the loop: open the run folder and (by default) the progress bar; close them after.

        Rank 0 marks the folder as this run's (``run.json``), writes the resolved ``config.yaml`` and
        opens ``metrics.jsonl`` (and TensorBoard), which :meth:`report` writes to and ``lsml-hub publish``
        reads. A loop without it still trains and checkpoints, but leaves no run folder to publish.
        """
        self._metrics = distributed.run_on_main(self.ctx, self._open_run_folder)  # None except on rank 0
        self._bar = tqdm(total=self.cfg.steps, initial=self.step, desc=f"meta-train {self.algo.name}",
                         disable=not (self.ctx.is_main and progress_bar), dynamic_ncols=True)
        self._tick = (time.perf_counter(), self.step)
        try:
            with logging_redirect_tqdm():  # log lines print above the bar, not onto its line
                yield
        finally:
            self._bar.close()  # before the export logs, so they start on a line of their own
            if self._metrics is not None:
                self._metrics.close()

    def report(self) -> None:
        """After a step: check losses, log, evaluate and checkpoint when due; advance the progress bar.

        Losses stay on the device between reports; they are checked for NaN/inf (one host sync) at
        every step that logs, evaluates or checkpoints, so a non-finite run never reaches a checkpoint.
        """
        if any(self._due(every) for every in (self.cfg.log_every, self.cfg.eval_every, self.cfg.checkpoint_every)):
            self._check_finite()
        if self._due(self.cfg.log_every):
            tick, tick_step = self._tick
            self._log_train((self.step - tick_step) / (time.perf_counter() - tick))
            self._tick = (time.perf_counter(), self.step)
        if self._due(self.cfg.eval_every):
            self.final_eval = self._evaluate(self._metrics)
        if self._due(self.cfg.checkpoint_every):
            self._save_checkpoint()
        if self._bar is not None:
            self._bar.update(1)

    def _due(self, every: int) -> bool:
        return self.step % every == 0 or self.step == self.cfg.steps

    def _check_finite(self) -> None:
        bad = None
        if self._unchecked:
            finite = torch.isfinite(torch.stack([loss for _, _, loss in self._unchecked])).cpu()
            if not bool(finite.all()):
                step, learner, loss = self._unchecked[int((~finite).nonzero()[0])]
                bad = f"task {learner.task.name!r} (index {learner.index}) has loss {loss.item()} at step {step}"
        self._unchecked.clear()
        if distributed.any_true(self.ctx, bad is not None):
            reasons = [r for r in distributed.gather_objects(self.ctx, bad) if r]
            path = checkpoint_path(self.out)
            kept = f"the last good checkpoint is kept in {path}" if path.exists() else "no checkpoint was written yet"
            raise TrainingError(f"non-finite loss: {'; '.join(reasons)}; {kept} (try a lower inner.lr)")

    # -- logging, evaluation, checkpoints --------------------------------------------------------
    def _log_train(self, rate: float) -> None:
        local = {i: (self.cfg.tasks[i].display_name, torch.stack(v).mean().item())
                 for i, v in self._losses.items() if v}
        self._losses.clear()
        # In task order, whatever the world size (gathering gives rank order).
        losses = {name: loss for _, (name, loss) in sorted(distributed.gather_dict(self.ctx, local).items())}
        norm = float(self._delta_norm.norm()) if isinstance(self._delta_norm, torch.Tensor) else 0.0
        self._delta_norm = 0.0  # the norm of the last meta-update since the previous log line, 0 if none
        mean_loss = sum(losses.values()) / len(losses)
        if self._metrics is not None:
            self._metrics.write({"step": self.step, "kind": "train", "loss": mean_loss, "task_loss": losses,
                                 "meta_update_norm": norm, "steps_per_sec": rate})
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{mean_loss:.3f}", steps_s=f"{rate:.1f}")

    def _evaluate(self, metrics: MetricsWriter | None) -> dict[str, EvalResult]:
        local = {lrn.index: (lrn.task.name, vars(lrn.evaluate(self.cfg.eval_batches))) for lrn in self.learners}
        results = {name: EvalResult(**v) for _, (name, v) in sorted(distributed.gather_dict(self.ctx, local).items())}
        if metrics is not None:
            for name, r in results.items():
                metrics.write({"step": self.step, "kind": "eval", "task": name, "loss": r.loss,
                               "accuracy": r.accuracy})
            mean_acc = sum(r.accuracy for r in results.values()) / len(results)
            logger.info("step %d: mean eval accuracy %.4f over %d tasks", self.step, mean_acc, len(results))
        return results

    def _save_checkpoint(self) -> None:
        local = {learner.index: learner.state_dict() for learner in self.learners}
        states = distributed.gather_dict(self.ctx, local, main_only=True)  # None except on rank 0
        distributed.run_on_main(self.ctx, lambda: Checkpoint(
            self.step, self.phi.detach().cpu().clone(), states, identity(self.cfg), torch.get_rng_state(),
        ).save(checkpoint_path(self.out)))

    def _check_output(self) -> Checkpoint | None:
        """Refuse an output_dir meta-train may not write; return the checkpoint to resume (checked against the config).

        Rank 0 checks the folder (the check writes a probe file there); every outcome is shared, so that all
        ranks stop together even when only one sees a problem.
        """
        distributed.run_on_main(self.ctx, self._check_run_folder)
        path = checkpoint_path(self.out)
        seen = distributed.gather_objects(self.ctx, path.exists())
        if len(set(seen)) > 1:
            ranks = [r for r, found in enumerate(seen) if found]
            raise ConfigError(f"only ranks {ranks} see {path}: output_dir must be on storage every rank shares")
        if not seen[0]:
            return None
        ckpt, problem = None, None
        try:
            ckpt = self._load_checkpoint(path)
        except LsmlHubError as err:
            problem = err
        distributed.raise_together(self.ctx, problem)
        return ckpt

    def _check_run_folder(self) -> None:
        try:
            RUN_FOLDER.check(self.out, belongs=self._same_run)
            INIT_FOLDER.check(self.out / INIT_SUBDIR, belongs=foreign_init)
        except ConfigError as err:
            raise ConfigError(f"{err} (output_dir: a new folder, or a run folder to resume)") from None

    def _same_run(self, folder: Path) -> str | None:
        """Why the run ``folder`` holds cannot be continued with this config, or None when it can."""
        if checkpoint_path(folder).exists():
            return None  # the checkpoint's own identity is checked when it is loaded
        if (folder / INIT_SUBDIR).exists():
            return (f"holds a finished run ({INIT_SUBDIR}/ is written) without {CHECKPOINT_FILE} to resume from; "
                    "publish it, or choose a new output_dir")
        diffs = identity_differences(read_run_marker(folder), _as_json(identity(self.cfg)), saved_as="run")
        if diffs:
            return f"holds a run started with a different config ({'; '.join(diffs)}); choose a new output_dir"
        return None  # killed before its first checkpoint: it starts over

    def _load_checkpoint(self, path: Path) -> Checkpoint:
        ckpt = Checkpoint.load(path)
        check_identity(ckpt.identity, identity(self.cfg), path)
        if ckpt.step > self.cfg.steps:
            raise TrainingError(f"{path} is at step {ckpt.step}, beyond steps={self.cfg.steps}; raise steps")
        return ckpt

    def _open_run_folder(self) -> MetricsWriter:
        write_run_marker(self.out, _as_json(identity(self.cfg)))  # first: the folder is a run from now on
        with atomic_write(self.out / RUN_CONFIG_FILE, "w") as f:  # a resume may have raised steps
            yaml.safe_dump(self.cfg.to_dict(), f, sort_keys=False)
        return MetricsWriter(self.out, resume_step=self.step, tensorboard=self.cfg.tensorboard)

    def _resume(self, ckpt: Checkpoint) -> None:
        self.phi.copy_(ckpt.phi)
        for learner in self.learners:
            learner.load_state_dict(ckpt.tasks[learner.index])
        torch.set_rng_state(ckpt.rng)
        self.step = ckpt.step
        if self.ctx.is_main:
            logger.info("resuming %s from step %d", self.out, self.step)

    def export(self) -> MetaTrainResult:
        """Write the init (rank 0): φ with every task's BatchNorm statistics averaged, and its metadata."""
        final_eval = self.final_eval or self._evaluate(None)  # empty when resumed at the very end
        return MetaTrainResult(self.out, self._export(final_eval), self.step, final_eval)

    def _export(self, final_eval: dict[str, EvalResult]) -> Path:
        buffers = averaged_buffers(self.ctx, self.learners, self.num_tasks)
        summaries = distributed.gather_dict(self.ctx, {lrn.index: lrn.task.summary() for lrn in self.learners})
        init_dir = self.out / INIT_SUBDIR

        def write() -> None:
            metadata = init_metadata(self.algo, self.cfg, [summaries[i] for i in sorted(summaries)], self.step,
                                     self.start.record, self.ctx.world_size, final_eval)
            model = build_init_model(self.cfg.model, self.phi, buffers, self.cfg.model_kwargs,
                                     channels_last=self.compute.channels_last)
            write_init(init_dir, model, metadata, self.input_size, *self.mean_std)

        distributed.run_on_main(self.ctx, write)
        return init_dir

    def _resolve_input_size(self, local: dict[int, tuple[str, int]]) -> int:
        """The input size the init records: ``input_size`` when set (it must be a size some task trains at),
        else the most common of the tasks' sizes. ``local``: (name, image size) of this rank's tasks."""
        sizes = distributed.gather_dict(self.ctx, local)
        counts = collections.Counter(size for _, size in sizes.values())
        if self.cfg.input_size is None:
            return counts.most_common(1)[0][0]
        if self.cfg.input_size not in counts:
            trained = ", ".join(f"{name} {size}px" for _, (name, size) in sorted(sizes.items()))
            raise ConfigError(f"input_size={self.cfg.input_size} is a size no task is trained at ({trained}); "
                              f"set it to one of {sorted(counts)} or to null (the most common size)")
        return self.cfg.input_size


def _as_json(values: dict) -> dict:
    # As run.json holds it (tuples become lists), so the two compare equal.
    return json.loads(json.dumps(values))


def meta_train(config: MetaTrainConfig | dict | str | Path, overrides: tuple[str, ...] = ()) -> MetaTrainResult:
    """Meta-train an init; works alone or under torchrun (every rank calls it).

    Args:
        config: A config object, a mapping, or a YAML path.
        overrides: ``key=value`` strings applied on top (``"algorithm.meta_lr=0.1"``).

    Example:
        >>> config = {"model": "test_resnet", "steps": 4, "inner": {"batch_size": 16}, "output_dir": "runs/demo",
        ...           "tasks": ["builtin:digits?classes=0-4", "builtin:digits?classes=5-9"]}
        >>> result = meta_train(config, ["algorithm.meta_lr=0.5", "output_dir=runs/digits"])
        >>> result.init_dir
        PosixPath('runs/digits/init')
        >>> sorted(path.name for path in result.init_dir.iterdir())
        ['README.md', 'config.json', 'model.safetensors']
        >>> sorted(result.final_eval)
        ['digits_0-4', 'digits_5-9']
    """
    from lsml_hub.training.config import apply_overrides, load_config

    if isinstance(config, (str, Path)):
        config = load_config(config, overrides)
    elif isinstance(config, dict):
        config = MetaTrainConfig.from_dict(apply_overrides(dict(config), overrides))
    elif isinstance(config, MetaTrainConfig):
        if overrides:
            config = MetaTrainConfig.from_dict(apply_overrides(config.to_dict(), overrides))
    else:
        raise ConfigError(f"config must be a MetaTrainConfig, a mapping or a YAML path, got {type(config).__name__}")
    ctx = distributed.setup(config.device)
    try:
        return MetaTrainer(config, ctx).run()
    finally:
        distributed.teardown(ctx)
