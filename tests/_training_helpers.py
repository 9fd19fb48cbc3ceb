"""Helpers shared by the meta-training tests (``test_training_*.py``): caches, tiny configs, runs, comparisons.

Imported by the test modules (not a conftest, so it adds no fixtures to other people's tests).

Results are bit-exact only for the same thread count, so every run here is single-threaded:
``OMP_NUM_THREADS=1`` in subprocesses (torchrun sets it per worker by default) and
``_isolation.one_thread()`` around in-process runs.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from _isolation import isolated_caches
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
TINY_YAML = REPO / "recipes" / "configs" / "tiny.yaml"
RECIPE = REPO / "recipes" / "meta_train.py"
TORCHRUN = Path(sys.executable).with_name("torchrun")

# The same specs as tiny.yaml, so each glyph task is rendered once per session.
TINY_TASKS = {
    "latin_upper": "builtin:latin_upper?samples_per_class=20",
    "greek": "builtin:greek?samples_per_class=20",
    "printed_digits": "builtin:printed_digits?samples_per_class=20",
    "symbols": "builtin:symbols?samples_per_class=20",
}
TINY_NUM_CLASSES = {"latin_upper": 26, "greek": 24, "printed_digits": 10, "symbols": 30}
TWO_TASKS = [TINY_TASKS["printed_digits"], TINY_TASKS["greek"]]

SUBPROCESS_TIMEOUT = 600


def torchrun_two_processes() -> list[str]:
    """``torchrun --standalone --nproc-per-node=2`` of this interpreter's environment."""
    launcher = [str(TORCHRUN)] if TORCHRUN.exists() else [sys.executable, "-m", "torch.distributed.run"]
    return [*launcher, "--standalone", "--nproc-per-node=2"]


def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder for the whole session, whichever training module asks first."""
    root = tmp_path_factory.getbasetemp() / "lsml_training_caches"
    root.mkdir(exist_ok=True)
    return root


def training_caches(tmp_path_factory: pytest.TempPathFactory) -> contextlib.AbstractContextManager[Path]:
    """Point the builtin cache (``$LSML_HUB_CACHE``) and the ``datasets`` cache at the session folder, offline."""
    return isolated_caches(cache_root(tmp_path_factory))


def small_config(output_dir: Path | str, **overrides: Any) -> dict[str, Any]:
    """A seconds-long config on two glyph tasks; keyword arguments replace top-level keys."""
    config: dict[str, Any] = {
        "model": "test_resnet",
        "input_size": 32,
        "tasks": list(TWO_TASKS),
        "algorithm": {"name": "cts", "meta_lr": 0.5, "aggregate_period": 1, "reset_period": 4},
        "inner": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 16},
        "steps": 6,
        "seed": 0,
        "output_dir": str(output_dir),
        "eval_every": 100,
        "eval_batches": 1,
        "checkpoint_every": 100,
        "log_every": 1,
        "device": "cpu",
        "tensorboard": False,
    }
    config.update(overrides)
    return config


def subprocess_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = cache_root(tmp_path_factory)
    return {**os.environ, "LSML_HUB_CACHE": str(root / "lsml_hub"), "HF_DATASETS_CACHE": str(root / "hf_datasets"),
            "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def cli_command(config: Path | str, overrides: Sequence[str]) -> list[str]:
    """The real CLI in a fresh interpreter: ``python -m lsml_hub meta-train CONFIG KEY=VALUE ...``."""
    return [sys.executable, "-m", "lsml_hub", "meta-train", str(config), *overrides]


def recipe_command(config: Path | str, overrides: Sequence[str]) -> list[str]:
    return [sys.executable, str(RECIPE), str(config), *overrides]


def start(cmd: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start ``cmd`` in the repository root with stdout and stderr going to ``log`` (no pipe to fill)."""
    with open(log, "wb") as f:
        return subprocess.Popen(list(cmd), cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen, log: Path, timeout: float = SUBPROCESS_TIMEOUT) -> str:
    """Wait for ``proc``; fail with its output unless it exited 0. Returns the output."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"{proc.args} timed out; output:\n{log.read_text(errors='replace')[-4000:]}")
    out = log.read_text(errors="replace")
    assert proc.returncode == 0, f"{proc.args} exited {proc.returncode}; output:\n{out[-4000:]}"
    return out


def init_tensors(init_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(init_dir) / "model.safetensors"))


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 0.0) -> None:
    """Same keys; float tensors equal within ``atol`` (bit-identical when 0), others exactly equal."""
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].shape == b[key].shape, key
        if atol and a[key].is_floating_point():
            diff = (a[key].double() - b[key].double()).abs().max().item()
            assert diff <= atol, f"{key}: max abs difference {diff} > {atol}"
        else:
            assert torch.equal(a[key], b[key]), f"{key} differs"


def body_names(arch: str = "test_resnet") -> list[str]:
    """Names of the meta-learned backbone parameters, in φ's order."""
    from lsml_hub.models import create_backbone, split_backbone_head

    return split_backbone_head(create_backbone(arch, num_classes=1)).body_names


def body_vector(state: dict[str, torch.Tensor], arch: str = "test_resnet") -> torch.Tensor:
    """A task's backbone parameters from a model state dict, flattened in φ's order."""
    return torch.cat([state[name].reshape(-1) for name in body_names(arch)])


def file_state(path: Path) -> tuple[bytes, int]:
    """Content and modification time of a file, to prove it was not written."""
    return path.read_bytes(), path.stat().st_mtime_ns
