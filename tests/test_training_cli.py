"""``tiny.yaml`` through the real entry points (``lsml-hub meta-train`` and ``recipes/meta_train.py``) and its init.

Both entry points run once per module, side by side in fresh interpreters (single-threaded, so their results
are bit-identical); the tests then read what they wrote.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import timm
import torch
import yaml
from _training_helpers import (
    REPO,
    SUBPROCESS_TIMEOUT,
    TINY_NUM_CLASSES,
    TINY_TASKS,
    TINY_YAML,
    assert_same_tensors,
    body_names,
    body_vector,
    cli_command,
    file_state,
    finish,
    init_tensors,
    recipe_command,
    start,
    subprocess_env,
    training_caches,
)

import lsml_hub
from lsml_hub.data import load_task
from lsml_hub.hub.format import sha256_file
from lsml_hub.training.checkpoint import Checkpoint
from lsml_hub.training.metrics import read_metrics

pytestmark = pytest.mark.slow  # two fresh interpreters import torch and timm and train 20 steps


@dataclass
class Runs:
    cli: Path
    recipe: Path
    cli_log: str
    recipe_log: str


@pytest.fixture(scope="module", autouse=True)
def _caches(tmp_path_factory):
    with training_caches(tmp_path_factory) as root:
        yield root


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
    root = tmp_path_factory.mktemp("tiny")
    env = subprocess_env(tmp_path_factory)
    cli_out, recipe_out = root / "cli", root / "recipe"
    for spec in TINY_TASKS.values():  # render the glyphs once, here, rather than in both processes
        load_task(spec)
    cli = start(cli_command(TINY_YAML, [f"output_dir={cli_out}"]), env, root / "cli.log")
    recipe = start(recipe_command(TINY_YAML, [f"output_dir={recipe_out}"]), env, root / "recipe.log")
    cli_log, recipe_log = finish(cli, root / "cli.log"), finish(recipe, root / "recipe.log")
    return Runs(cli_out, recipe_out, cli_log, recipe_log)


def test_the_progress_bar_is_closed_before_the_export_logs(runs):
    for log in (runs.cli_log, runs.recipe_log):
        saved = [line for line in log.splitlines() if "saved test_resnet init" in line]
        assert len(saved) == 1 and saved[0].startswith("saved test_resnet init"), saved


def test_both_entry_points_write_the_run_folder(runs):
    for out in (runs.cli, runs.recipe):
        assert (out / "config.yaml").is_file() and (out / "metrics.jsonl").is_file()
        assert (out / "checkpoints" / "last.pt").is_file()
        assert sorted(p.name for p in (out / "init").iterdir()) == ["README.md", "config.json", "model.safetensors"]
        assert not (out / "tensorboard").exists()  # tensorboard: false
        saved = yaml.safe_load((out / "config.yaml").read_text())
        assert saved["output_dir"] == str(out) and saved["steps"] == 20 and saved["model"] == "test_resnet"
        assert [t["source"] for t in saved["tasks"]] == [s.split("?")[0] for s in TINY_TASKS.values()]
    assert f"init written to {runs.cli / 'init'}" in runs.cli_log
    assert f"init written to {runs.recipe / 'init'}" in runs.recipe_log
    assert "Traceback" not in runs.cli_log + runs.recipe_log


def test_cli_and_recipe_give_the_same_init(runs):
    assert_same_tensors(init_tensors(runs.cli / "init"), init_tensors(runs.recipe / "init"))


def test_metrics_hold_train_and_eval_lines(runs):
    records = read_metrics(runs.cli / "metrics.jsonl")
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    assert len(train) + len(evals) == len(records)
    assert [r["step"] for r in train] == [5, 10, 15, 20]  # log_every: 5
    for r in train:
        assert math.isfinite(r["loss"]) and 0 < r["loss"] < 10
        assert sorted(r["task_loss"]) == sorted(TINY_TASKS)
        assert r["loss"] == pytest.approx(sum(r["task_loss"].values()) / 4)
        assert r["meta_update_norm"] > 0  # CTS with P = 1 moves φ every step
        assert r["steps_per_sec"] > 0
    assert [(r["step"], r["task"]) for r in evals] == [(s, t) for s in (10, 20) for t in TINY_TASKS]
    for r in evals:
        assert 0.0 <= r["accuracy"] <= 1.0 and math.isfinite(r["loss"])
        # eval_batches: 2 of batch 16 → accuracy is a multiple of 1/32
        assert (r["accuracy"] * 32) == pytest.approx(round(r["accuracy"] * 32))
    # The init's metadata carries the last evaluation.
    lsml = json.loads((runs.cli / "init" / "config.json").read_text())["lsml"]
    assert lsml["final_metrics"] == {r["task"]: {"loss": r["loss"], "accuracy": r["accuracy"]}
                                     for r in evals if r["step"] == 20}


def test_init_metadata_names_algorithm_tasks_steps_and_seed(runs):
    config = json.loads((runs.cli / "init" / "config.json").read_text())
    assert config["architecture"] == "test_resnet" and config["num_classes"] == 0
    assert config["pretrained_cfg"]["input_size"] == [3, 32, 32]
    lsml = config["lsml"]
    assert lsml["algorithm"] == {"name": "cts", "meta_lr": 0.05, "aggregate_period": 1, "reset_period": 10,
                                 "hard_reset": False}
    assert lsml["inner_optimizer"]["optimizer"] == "sgd" and lsml["inner_optimizer"]["lr"] == 0.01
    assert [(t["name"], t["num_classes"]) for t in lsml["source_tasks"]] == list(TINY_NUM_CLASSES.items())
    assert [t["train_size"] for t in lsml["source_tasks"]] == [20 * n for n in TINY_NUM_CLASSES.values()]
    assert (lsml["steps"], lsml["seed"], lsml["world_size"]) == (20, 0, 1)
    assert lsml["sha256"] == sha256_file(runs.cli / "init" / "model.safetensors")
    readme = (runs.cli / "init" / "README.md").read_text()
    assert "test_resnet" in readme


def test_init_is_phi_and_the_task_averaged_batchnorm_statistics(runs):
    tensors = init_tensors(runs.cli / "init")
    ckpt = Checkpoint.load(runs.cli / "checkpoints" / "last.pt")
    assert ckpt.step == 20 and sorted(ckpt.tasks) == [0, 1, 2, 3]
    names = body_names()
    assert torch.equal(torch.cat([tensors[n].reshape(-1) for n in names]), ckpt.phi)
    stats = [n for n in tensors if n.endswith(("running_mean", "running_var"))]
    assert stats
    for name in stats:
        mean = sum(ckpt.tasks[i]["model"][name].double() for i in range(4)) / 4
        torch.testing.assert_close(tensors[name].double(), mean, rtol=0, atol=1e-6)
    # A soft reset at step 20 (K = 10) put every task's body back on φ.
    for i in range(4):
        assert torch.equal(body_vector(ckpt.tasks[i]["model"]), ckpt.phi)


def test_init_loads_in_timm_with_every_backbone_tensor_from_the_file(runs):
    tensors = init_tensors(runs.cli / "init")
    model = timm.create_model(f"local-dir:{runs.cli / 'init'}", pretrained=True, num_classes=7)
    state = model.state_dict()
    assert model.get_classifier().out_features == 7
    assert sorted(k for k in state if not k.startswith("fc.")) == sorted(tensors)
    for name, value in tensors.items():
        assert torch.equal(state[name], value), name
    with torch.no_grad():
        assert model.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


def test_init_loads_through_lsml_hub_create_model(runs):
    tensors = init_tensors(runs.cli / "init")
    model = lsml_hub.create_model(f"local-dir:{runs.cli / 'init'}", num_classes=7)
    state = model.state_dict()
    assert model.get_classifier().out_features == 7
    for name, value in tensors.items():
        assert torch.equal(state[name], value), name
    headless = lsml_hub.create_model(str(runs.recipe / "init"))
    with torch.no_grad():
        assert headless.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 96)
    assert lsml_hub.load_init_config(f"local-dir:{runs.cli / 'init'}").lsml["seed"] == 0


def test_a_real_process_refuses_another_configs_checkpoint_in_one_line(runs, tmp_path, tmp_path_factory):
    out = tmp_path / "copy"
    shutil.copytree(runs.cli, out)  # keeps modification times
    ckpt, weights = out / "checkpoints" / "last.pt", out / "init" / "model.safetensors"
    before = [file_state(ckpt), file_state(weights)]
    proc = subprocess.run(cli_command(TINY_YAML, [f"output_dir={out}", "seed=1"]), cwd=REPO, capture_output=True,
                          text=True, env=subprocess_env(tmp_path_factory), timeout=SUBPROCESS_TIMEOUT)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("lsml-hub meta-train: error: ")
    assert "seed: checkpoint 0 vs config 1" in proc.stderr and str(ckpt) in proc.stderr
    assert [file_state(ckpt), file_state(weights)] == before


def test_ctrl_c_during_meta_train_says_how_to_resume(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr("lsml_hub.cli.train_command.run", interrupted)
    from lsml_hub.cli import main as cli_main

    assert cli_main(["meta-train", str(TINY_YAML)]) == 130
    assert capsys.readouterr().err == ("lsml-hub meta-train: interrupted; run the same command again to resume from "
                                       "the last checkpoint (checkpoint_every steps apart; RUN/config.yaml holds the "
                                       "config)\n")
