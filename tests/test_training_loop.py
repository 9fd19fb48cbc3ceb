"""The meta-training loop in-process: the Python API, every algorithm for a few steps, and a non-finite loss."""

from __future__ import annotations

import math
import re

import pytest
import torch
import yaml
from _isolation import one_thread
from _training_helpers import (
    TINY_YAML,
    TWO_TASKS,
    body_names,
    body_vector,
    file_state,
    init_tensors,
    small_config,
    training_caches,
)

import lsml_hub
from lsml_hub.cli import main
from lsml_hub.errors import TrainingError
from lsml_hub.models import create_backbone, split_backbone_head
from lsml_hub.training import MetaTrainConfig, MetaTrainResult
from lsml_hub.training.checkpoint import Checkpoint
from lsml_hub.training.metrics import read_metrics

TASK_NAMES = ["printed_digits", "greek"]


@pytest.fixture(scope="module", autouse=True)
def _caches(tmp_path_factory):
    with training_caches(tmp_path_factory) as root, one_thread():
        yield root


def train_records(out):
    return [r for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "train"]


def test_python_api_returns_init_dir_and_final_eval(tmp_path):
    config = small_config(tmp_path / "run", eval_every=3)
    result = lsml_hub.meta_train(config, ("steps=4", "eval_batches=2", "algorithm.meta_lr=0.25"))
    assert isinstance(result, MetaTrainResult)
    assert result.output_dir == tmp_path / "run" and result.init_dir == tmp_path / "run" / "init"
    assert (result.init_dir / "model.safetensors").is_file() and (result.init_dir / "config.json").is_file()
    assert result.steps == 4
    assert sorted(result.final_eval) == sorted(TASK_NAMES)
    for r in result.final_eval.values():
        assert 0.0 <= r.accuracy <= 1.0 and math.isfinite(r.loss) and r.samples == 32
    evals = [r for r in read_metrics(result.output_dir / "metrics.jsonl") if r["kind"] == "eval"]
    assert [(r["step"], r["task"]) for r in evals] == [(3, t) for t in TASK_NAMES] + [(4, t) for t in TASK_NAMES]
    assert {r["task"]: r["accuracy"] for r in evals if r["step"] == 4} == \
        {name: r.accuracy for name, r in result.final_eval.items()}
    assert result.steps == 4
    # The overrides apply to the run, not to the caller's mapping.
    assert config["steps"] == 6 and config["algorithm"]["meta_lr"] == 0.5
    assert yaml.safe_load((result.output_dir / "config.yaml").read_text())["algorithm"]["meta_lr"] == 0.25


def test_python_api_takes_a_yaml_path_or_a_config_object(tmp_path):
    fast = ["tasks=[" + ", ".join(f"'{t}'" for t in TWO_TASKS) + "]", "steps=2", "eval_batches=1",
            "checkpoint_every=2"]
    from_path = lsml_hub.meta_train(TINY_YAML, [f"output_dir={tmp_path / 'a'}", *fast])
    tiny_algorithm = {"name": "cts", "meta_lr": 0.05, "aggregate_period": 1, "reset_period": 10}
    cfg = MetaTrainConfig.from_dict(small_config(tmp_path / "ignored", algorithm=tiny_algorithm))
    from_object = lsml_hub.meta_train(cfg, (f"output_dir={tmp_path / 'b'}", "steps=2", "checkpoint_every=10"))
    assert from_path.init_dir == tmp_path / "a" / "init" and from_object.init_dir == tmp_path / "b" / "init"
    assert from_path.steps == from_object.steps == 2
    # tiny.yaml with the same two tasks is the same run as the mapping: same init, bit for bit.
    assert all(torch.equal(a, b) for a, b in zip(init_tensors(from_path.init_dir).values(),
                                                  init_tensors(from_object.init_dir).values()))


# (algorithm, steps whose train line must show a meta-update, with log_every=1 over 6 steps)
ALGORITHMS = [
    ({"name": "cts", "meta_lr": 0.5, "aggregate_period": 2, "reset_period": 3}, [2, 4, 6]),
    ({"name": "cts", "meta_lr": 0.5, "aggregate_period": 1, "reset_period": 2, "hard_reset": True}, [1, 2, 3, 4, 5, 6]),
    ({"name": "reptile", "meta_lr": 1.0, "reset_period": 3}, [3, 6]),
    ({"name": "multitask"}, [1, 2, 3, 4, 5, 6]),
    ({"name": "fomaml", "meta_lr": 0.1, "reset_period": 3}, [3, 6]),
    ({"name": "fomaml_shift", "meta_lr": 0.1, "aggregate_period": 1, "reset_period": 3}, [1, 2, 3, 4, 5, 6]),
    ({"name": "none"}, []),
]


@pytest.mark.parametrize(("algorithm", "meta_steps"), ALGORITHMS,
                         ids=["cts", "cts-hard-reset", "reptile", "multitask", "fomaml", "fomaml_shift", "none"])
def test_each_algorithm_runs_through_the_loop(tmp_path, algorithm, meta_steps):
    out = tmp_path / "run"
    result = lsml_hub.meta_train(small_config(out, algorithm=algorithm, checkpoint_every=6))
    assert result.steps == 6 and sorted(result.final_eval) == sorted(TASK_NAMES)
    records = train_records(out)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(r["loss"]) for r in records)
    assert [r["step"] for r in records if r["meta_update_norm"] > 0] == meta_steps
    assert all(r["meta_update_norm"] == 0.0 for r in records if r["step"] not in meta_steps)

    ckpt = Checkpoint.load(out / "checkpoints" / "last.pt")
    tensors = init_tensors(result.init_dir)
    assert torch.equal(torch.cat([tensors[n].reshape(-1) for n in body_names()]), ckpt.phi)
    torch.manual_seed(0)  # the seed; φ starts as a fresh model's backbone
    fresh = torch.cat([p.detach().reshape(-1) for p in
                       split_backbone_head(create_backbone("test_resnet", num_classes=1)).body.values()])
    bodies = [body_vector(ckpt.tasks[i]["model"]) for i in (0, 1)]
    if algorithm["name"] == "none":
        assert torch.equal(ckpt.phi, fresh)  # φ never moves
        assert not torch.equal(bodies[0], ckpt.phi) and not torch.equal(bodies[0], bodies[1])  # tasks trained alone
        assert [ckpt.tasks[i]["resets"] for i in (0, 1)] == [0, 0]
    else:
        assert not torch.equal(ckpt.phi, fresh)
        # Every reset period here divides 6, so each trajectory has just restarted from φ.
        assert all(torch.equal(body, ckpt.phi) for body in bodies)
        resets = 6 // algorithm.get("reset_period", 1)
        assert [ckpt.tasks[i]["resets"] for i in (0, 1)] == [resets, resets]
    # A hard reset (the last one at step 6) forgets the inner optimizer's momentum; a soft one keeps it.
    assert [ckpt.tasks[i]["optimizer"]["state"] == {} for i in (0, 1)] == [bool(algorithm.get("hard_reset"))] * 2
    if algorithm["name"].startswith("fomaml"):
        assert ckpt.tasks[0]["query_stream"]["position"] == 16 * len(meta_steps)  # one held-out batch per update


def test_non_finite_loss_stops_naming_task_and_step_and_keeps_the_last_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    config = small_config(out, steps=10, checkpoint_every=1,
                          inner={"optimizer": "sgd", "lr": 1e30, "momentum": 0.0, "weight_decay": 0.0,
                                 "batch_size": 16})
    with pytest.raises(TrainingError) as excinfo:
        lsml_hub.meta_train(config)
    message = str(excinfo.value)
    match = re.search(r"task '(\w+)' \(index \d\) has loss (nan|inf|-inf) at step (\d+)", message)
    assert match, message
    assert match.group(1) in TASK_NAMES and "\n" not in message
    bad_step = int(match.group(3))
    assert 2 <= bad_step <= 10
    ckpt_path = out / "checkpoints" / "last.pt"
    assert str(ckpt_path) in message
    ckpt = Checkpoint.load(ckpt_path)
    assert ckpt.step == bad_step - 1  # the last good step; nothing was saved after the bad one
    assert not (out / "init").exists()

    # The CLI resumes from that checkpoint, meets the same loss at the same step, exits 2 in one line,
    # and does not touch the checkpoint.
    before = file_state(ckpt_path)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    capsys.readouterr()
    assert main(["meta-train", str(tmp_path / "config.yaml")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    # Besides the progress bar, stderr holds one line: the error, last.
    error_lines = [line for line in err.splitlines() if "error" in line]
    assert len(error_lines) == 1 and err.rstrip().endswith(error_lines[0])
    assert error_lines[0].startswith("lsml-hub meta-train: error: non-finite loss")
    assert f"at step {bad_step}" in error_lines[0] and f"'{match.group(1)}'" in error_lines[0]
    assert file_state(ckpt_path) == before
    assert Checkpoint.load(ckpt_path).step == bad_step - 1
    assert not (out / "init").exists()


def test_the_held_out_batch_gives_a_gradient_but_leaves_the_batchnorm_statistics_alone():
    from lsml_hub.algorithms import FOMAML
    from lsml_hub.data import load_task
    from lsml_hub.training.config import InnerConfig
    from lsml_hub.training.learner import LearnerSetup, TaskLearner

    task = load_task("builtin:printed_digits")
    torch.manual_seed(0)
    phi = torch.cat([p.detach().reshape(-1) for p in
                     split_backbone_head(create_backbone("test_resnet", num_classes=1)).body.values()])
    setup = LearnerSetup("test_resnet", InnerConfig(batch_size=8), seed=0, device=torch.device("cpu"),
                         mean_std=((0.5,), (0.5,)), algorithm=FOMAML(reset_period=5))
    learner = TaskLearner.create(0, task, phi, setup)
    learner.inner_step()  # running statistics move during training...
    before = {k: v.clone() for k, v in learner.model.state_dict().items()}
    grad = learner.query_grad()
    after = learner.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # ...but not on the held-out batch
    assert grad.shape == learner.body.shape and grad.abs().sum() > 0 and torch.isfinite(grad).all()
    assert learner.query_stream.state_dict()["position"] == 8


def test_a_non_finite_loss_before_any_checkpoint_says_none_was_written(tmp_path):
    out = tmp_path / "run"
    config = small_config(out, steps=6, log_every=1, checkpoint_every=100,
                          inner={"optimizer": "sgd", "lr": 1e30, "momentum": 0.0, "weight_decay": 0.0,
                                 "batch_size": 16})
    with pytest.raises(TrainingError, match="no checkpoint was written yet") as excinfo:
        lsml_hub.meta_train(config)
    assert "last.pt" not in str(excinfo.value) and not (out / "checkpoints").exists()
