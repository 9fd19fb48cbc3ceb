"""recipes/finetune.py runs the library's fine-tuning from its YAML config (in process, via its ``main``)."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
import torch

from lsml_hub.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "finetune.py"
CONFIG = ROOT / "recipes" / "configs" / "finetune_digits.yaml"


# The builtin cache of every fine-tuning test module: builtin:digits materializes once per session.
SHARED_CACHE = "finetune_tests_lsml_hub_cache"


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    """Temporary builtin cache; one torch thread on the 2 shared cores."""
    monkeypatch.setenv("LSML_HUB_CACHE", str(tmp_path_factory.getbasetemp() / SHARED_CACHE))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def recipe_main():
    return runpy.run_path(str(RECIPE), run_name="finetune_recipe")["main"]


def test_recipe_config_holds_the_seed_defaults():
    import yaml

    from lsml_hub.metatest import FinetuneConfig

    values = yaml.safe_load(CONFIG.read_text())
    config = FinetuneConfig.from_dict(values["finetune"])
    assert config == FinetuneConfig(max_train_samples=100, eval_every=100)  # all else: the library defaults
    assert values["target"] == "builtin:digits"


def test_recipe_runs_with_overrides_and_writes_results(recipe_main, tmp_path):
    out = tmp_path / "out"
    rc = recipe_main([str(CONFIG), "init=scratch:test_resnet", "target=builtin:digits?classes=0-2",
                      "finetune.steps=4", "finetune.batch_size=8", "finetune.max_train_samples=12",
                      "finetune.eval_every=2", f"output_dir={out}"])

    assert rc == 0
    result = json.loads((out / "result.json").read_text())
    assert result["source"] == "scratch:test_resnet" and result["train_samples"] == 12
    assert [p["step"] for p in result["history"]] == [2, 4]
    assert result["config"]["optimizer"] == "adam" and result["config"]["schedule"] == "step"
    assert (out / "model.safetensors").is_file()


def test_recipe_refuses_unknown_keys(recipe_main):
    with pytest.raises(ConfigError, match=r"unknown keys \['stepz'\], missing keys \[\]; valid keys: init"):
        recipe_main([str(CONFIG), "stepz=3"])
    with pytest.raises(ConfigError, match=r"unknown fine-tuning option\(s\) \['stepz'\]"):
        recipe_main([str(CONFIG), "finetune.stepz=3"])
