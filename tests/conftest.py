"""Shared fixtures. Hub fixtures are prefixed ``hub_``."""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import timm
import torch
from huggingface_hub import constants

import lsml_hub

# A test that forgets to isolate its caches must not write into the user's ~/.cache/lsml_hub: by default
# every test (and every process it starts) gets a throw-away one. Tests that care set their own.
os.environ.setdefault("LSML_HUB_CACHE", tempfile.mkdtemp(prefix="lsml_hub_test_cache_"))

def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``gpu`` tests, saying why, where CUDA is missing (CI's machines have no GPU)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA: no GPU on this machine (benchmarks/gpu_check.sh runs these on one)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


HUB_LSML = {
    "algorithm": {"name": "cts", "meta_lr": 0.05, "aggregate_period": 1, "reset_period": 200, "hard_reset": False},
    "inner_optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4},
    "source_tasks": [
        {"name": "latin_upper", "source": "builtin:latin_upper", "revision": None, "num_classes": 26,
         "image_size": 32, "classes": None},
        {"name": "cifar100", "source": "uoft-cs/cifar100", "revision": None, "num_classes": 100,
         "image_size": 32, "classes": None},
    ],
    "steps": 2000,
    "seed": 0,
    "final_metrics": {"latin_upper": {"accuracy": 0.9}},
    "future_key": {"kept": True},
}


def _trained_model(arch: str = "resnet20_cifar", num_classes: int = 26, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = timm.create_model(arch, num_classes=num_classes)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) + 0.5 if "running_var" in name else torch.randn_like(tensor))
            elif "num_batches_tracked" in name:
                tensor.fill_(123)
    return model


@pytest.fixture
def hub_lsml() -> dict:
    """An ``lsml`` block like the training engine's, with an unknown key that must pass through."""
    return copy.deepcopy(HUB_LSML)


@pytest.fixture
def hub_trained_model() -> Callable[..., torch.nn.Module]:
    """Factory ``(arch, num_classes, seed)``: a timm model whose every tensor (BN stats too) is non-default."""
    return _trained_model


@pytest.fixture
def hub_make_init(tmp_path: Path) -> Callable[..., Path]:
    """Factory: save a perturbed model as an init folder under ``tmp_path`` and return the folder."""

    def make(arch: str = "resnet20_cifar", name: str = "init", num_classes: int = 26, **lsml_updates) -> Path:
        model = _trained_model(arch, num_classes)
        lsml = copy.deepcopy(HUB_LSML) | lsml_updates
        return lsml_hub.save_init(tmp_path / name, model, lsml=lsml,
                                  pretrained_cfg={"input_size": (3, 32, 32), "mean": (0.5,) * 3, "std": (0.25,) * 3})

    return make


@pytest.fixture
def hub_offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache with offline mode on (huggingface_hub reads both at call time)."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def hub_no_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No Hugging Face token anywhere: environment cleared, token file pointed at nothing."""
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HF_OIDC_ID_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-stored-tokens"), raising=False)
