"""Checkpoints and resume: stopping halfway, a real SIGKILL, and checkpoints from another config.

Every run here uses the same config (CTS with hard resets, so heads, optimizer state, stream positions and
reset counts all have to come back) and is compared bit for bit with one uninterrupted run.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch
import yaml
from _isolation import one_thread
from _training_helpers import (
    assert_same_tensors,
    cli_command,
    file_state,
    init_tensors,
    small_config,
    start,
    subprocess_env,
    training_caches,
)

import lsml_hub
from lsml_hub.cli import main
from lsml_hub.errors import ConfigError, TrainingError
from lsml_hub.training.checkpoint import Checkpoint
from lsml_hub.training.metrics import read_metrics

STEPS = 20
ALGORITHM = {"name": "cts", "meta_lr": 0.5, "aggregate_period": 1, "reset_period": 6, "hard_reset": True}


def config(output_dir: Path, **overrides) -> dict:
    values = {"algorithm": dict(ALGORITHM), "steps": STEPS, "eval_every": 5, "checkpoint_every": 7} | overrides
    return small_config(output_dir, **values)


def write_config(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def task_losses(out: Path) -> list[tuple[int, dict]]:
    return [(r["step"], r["task_loss"]) for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "train"]


@pytest.fixture(scope="module", autouse=True)
def _caches(tmp_path_factory):
    with training_caches(tmp_path_factory) as root, one_thread():
        yield root


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("resume") / "reference"
    lsml_hub.meta_train(config(out))
    return out


@pytest.mark.slow  # three runs of 10 to 20 steps
def test_stopping_halfway_and_resuming_gives_the_same_init(reference, tmp_path):
    out = tmp_path / "run"
    half = lsml_hub.meta_train(config(out), [f"steps={STEPS // 2}"])
    assert half.steps == STEPS // 2 and Checkpoint.load(out / "checkpoints" / "last.pt").step == STEPS // 2
    # Logging, evaluation and checkpoint periods may change on resume; they do not change the result.
    result = lsml_hub.meta_train(config(out), ["checkpoint_every=3", "eval_every=4", "log_every=2"])
    assert result.steps == STEPS
    assert_same_tensors(init_tensors(result.init_dir), init_tensors(reference / "init"))
    again = lsml_hub.meta_train(config(out))  # resumes at the very end: evaluates and exports again, same init
    assert again.steps == STEPS and again.final_eval == result.final_eval
    assert_same_tensors(init_tensors(again.init_dir), init_tensors(reference / "init"))
    # Metrics: the first run's lines, then the resumed run's, none twice.
    steps = [s for s, _ in task_losses(out)]
    assert steps == list(range(1, STEPS // 2 + 1)) + list(range(STEPS // 2 + 2, STEPS + 1, 2))
    expected = dict(task_losses(reference))
    assert all(losses == expected[s] for s, losses in task_losses(out)[: STEPS // 2])


@pytest.mark.slow  # two runs of 10 steps
def test_a_runs_own_config_yaml_resumes_it_from_any_folder(reference, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lsml_hub.meta_train(config(Path("runs/r")), [f"steps={STEPS // 2}"])  # output_dir relative, as users write it
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["meta-train", str(tmp_path / "runs" / "r" / "config.yaml"), f"steps={STEPS}"]) == 0
    assert_same_tensors(init_tensors(tmp_path / "runs" / "r" / "init"), init_tensors(reference / "init"))
    assert list(elsewhere.iterdir()) == []  # no new run started here


@pytest.mark.slow  # a fresh interpreter imports torch and timm before it can be killed
def test_sigkill_and_resume_gives_the_same_init(reference, tmp_path_factory, tmp_path):
    out = tmp_path / "run"
    cfg = write_config(tmp_path / "config.yaml", config(out, checkpoint_every=2))
    ckpt_path = out / "checkpoints" / "last.pt"
    proc = start(cli_command(cfg, []), subprocess_env(tmp_path_factory), tmp_path / "killed.log")
    try:
        deadline = time.monotonic() + 300
        while not ckpt_path.exists():
            assert proc.poll() is None, f"exited {proc.returncode} early:\n{(tmp_path / 'killed.log').read_text()}"
            assert time.monotonic() < deadline, "no checkpoint after 300 s"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = Checkpoint.load(ckpt_path).step
    assert 2 <= killed_at < STEPS and killed_at % 2 == 0
    assert not (out / "init").exists()

    assert main(["meta-train", str(cfg)]) == 0  # runs again on the same folder: resumes
    assert_same_tensors(init_tensors(out / "init"), init_tensors(reference / "init"))
    assert Checkpoint.load(ckpt_path).step == STEPS
    # Lines the killed run wrote after its checkpoint are replaced, not doubled.
    assert task_losses(out) == task_losses(reference)


def test_a_checkpoint_from_another_config_is_refused_and_kept(reference, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(reference, out)  # keeps modification times
    watched = [out / "checkpoints" / "last.pt", out / "init" / "model.safetensors", out / "metrics.jsonl",
               out / "config.yaml"]
    before = [file_state(p) for p in watched]

    cfg = write_config(tmp_path / "seed1.yaml", config(out, seed=1))
    capsys.readouterr()
    assert main(["meta-train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("lsml-hub meta-train: error: ")
    assert "seed: checkpoint 0 vs config 1" in err and str(out / "checkpoints" / "last.pt") in err
    assert "inner" not in err and "tasks" not in err  # only what differs is named

    cfg = write_config(tmp_path / "lr.yaml", config(out, inner={"optimizer": "sgd", "lr": 0.02, "momentum": 0.9,
                                                                "weight_decay": 5e-4, "batch_size": 16}))
    assert main(["meta-train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "inner: checkpoint" in err and "'lr': 0.02" in err

    # A checkpoint past the requested steps is refused too, and says so.
    assert main(["meta-train", str(write_config(tmp_path / "short.yaml", config(out, steps=STEPS - 5)))]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"step {STEPS}" in err and f"steps={STEPS - 5}" in err

    assert [file_state(p) for p in watched] == before


def test_a_changed_config_is_refused_before_any_dataset_is_loaded(reference, tmp_path, monkeypatch):
    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    loaded = []
    monkeypatch.setattr("lsml_hub.training.loop.load_task", lambda spec: loaded.append(spec))
    with pytest.raises(ConfigError, match="seed: checkpoint 0 vs config 1"):
        lsml_hub.meta_train(config(out, seed=1))
    assert loaded == []


@pytest.mark.parametrize("damage", ["truncated", "text"])
def test_a_damaged_checkpoint_is_a_one_line_error_naming_it(reference, tmp_path, capsys, damage):
    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    ckpt = out / "checkpoints" / "last.pt"
    if damage == "truncated":  # as by a full disk outside atomic_write
        ckpt.write_bytes(ckpt.read_bytes()[:1000])
    else:  # the weights-only unpickler fails with a KeyError on this one
        ckpt.write_text("hello world")
    before = file_state(ckpt)
    cfg = write_config(tmp_path / "same.yaml", config(out))
    capsys.readouterr()
    assert main(["meta-train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert str(ckpt) in err and "cannot be read" in err and "another output_dir" in err
    assert file_state(ckpt) == before
    with pytest.raises(TrainingError, match="not an lsml-hub checkpoint"):
        torch.save({"step": 3}, tmp_path / "other.pt")
        Checkpoint.load(tmp_path / "other.pt")


def test_an_output_dir_that_is_a_file_is_refused_before_training(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("not a folder")
    cfg = write_config(tmp_path / "c.yaml", config(target))
    capsys.readouterr()
    assert main(["meta-train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"output folder {target} is a file" in err and "(output_dir: a new folder" in err
    assert target.read_text() == "not a folder"


def test_an_output_dir_inside_a_file_is_refused_before_any_dataset_is_loaded(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setattr("lsml_hub.training.loop.load_task", lambda spec: pytest.fail("loaded a dataset"))
    with pytest.raises(ConfigError, match=r"output folder .*afile/sub is inside .*afile, which is a file"):
        lsml_hub.meta_train(config(tmp_path / "afile" / "sub"))


def test_a_damaged_metrics_log_on_resume_is_a_one_line_error(reference, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    metrics = out / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")
    before = file_state(metrics)
    capsys.readouterr()
    assert main(["meta-train", str(write_config(tmp_path / "same.yaml", config(out)))]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"cannot resume the metrics log {metrics}: {metrics}:2 is not JSON" in err
    assert file_state(metrics) == before


def test_a_run_from_before_run_json_resumes_from_its_checkpoint(reference, tmp_path):
    out = tmp_path / "old_run"
    shutil.copytree(reference, out)
    (out / "run.json").unlink()  # what runs written before the marker look like
    result = lsml_hub.meta_train(config(out))
    assert result.steps == config(out)["steps"] and (out / "run.json").is_file()
