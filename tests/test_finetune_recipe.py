"""recipes/finetune.py runs the library's fine-tuning from its YAML config (in process, via its ``main``)."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from _isolation import finetune_isolation

from lsml_hub.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "finetune.py"
CONFIG = ROOT / "recipes" / "configs" / "finetune_digits.yaml"


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory):
    """The shared builtin cache; one torch thread on the 2 shared cores."""
    with finetune_isolation(tmp_path_factory):
        yield


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
    with pytest.raises(ConfigError, match=r"unknown keys \['stepz'\]; valid keys: init"):
        recipe_main([str(CONFIG), "stepz=3"])
    with pytest.raises(ConfigError, match=r"unknown fine-tuning option\(s\) \['stepz'\]"):
        recipe_main([str(CONFIG), "finetune.stepz=3"])


def test_recipe_refuses_an_output_dir_of_other_files_before_any_work(recipe_main, tmp_path):
    init = tmp_path / "init"
    init.mkdir()
    (init / "model.safetensors").write_bytes(b"init weights")
    (init / "config.json").write_text("{}")
    # an unknown target: had any work started, the error would be about the data
    with pytest.raises(ConfigError, match=r"holds files that finetune does not write: config\.json \(it writes only"):
        recipe_main([str(CONFIG), "target=builtin:no_such_source", f"output_dir={init}"])
    with pytest.raises(ConfigError, match=r"output folder .*config\.json is a file; give a folder"):
        recipe_main([str(CONFIG), "target=builtin:no_such_source", f"output_dir={init / 'config.json'}"])
    assert (init / "model.safetensors").read_bytes() == b"init weights" and (init / "config.json").read_text() == "{}"


def test_recipe_refuses_fewer_samples_than_classes(recipe_main, tmp_path):
    with pytest.raises(DataError, match=r"max_train_samples=2 is fewer than the 3 classes of target 'digits_0-2'"):
        recipe_main([str(CONFIG), "init=scratch:test_resnet", "target=builtin:digits?classes=0-2",
                     "finetune.max_train_samples=2", f"output_dir={tmp_path / 'out'}"])
    assert not (tmp_path / "out").exists()


@pytest.fixture
def recipe_read_config():
    return runpy.run_path(str(RECIPE), run_name="finetune_recipe")["read_config"]


def test_recipe_reads_1e_minus_3_as_a_float(recipe_read_config, tmp_path):
    from lsml_hub.metatest import FinetuneConfig

    path = tmp_path / "ft.yaml"
    path.write_text("init: scratch:test_resnet\ntarget: builtin:digits\nfinetune:\n  lr: 1e-3\n  weight_decay: 5e-4\n")
    values = recipe_read_config(str(path), ["finetune.steps=10"])
    config = FinetuneConfig.from_dict(values["finetune"])
    assert config.lr == 0.001 and config.weight_decay == 0.0005 and config.steps == 10
    assert isinstance(config.lr, float) and isinstance(config.weight_decay, float)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("init: scratch:test_resnet\ntarget: [a\n", r"not valid YAML: expected ',' or '\]', but got '<stream end>' "
                                                    r"\(line 3, column 1\)"),
        ("- init\n- target\n", r"the top level must be a mapping with keys init, target, output_dir, finetune, "
                               r"got list \['init', 'target'\]"),
        ("just text\n", r"the top level must be a mapping .*, got str 'just text'"),
        ("init: scratch:test_resnet\ntarget: builtin:digits\nfinetune: 3\n",
         r"fine-tuning options must be a mapping of option: value, got 3"),
    ],
)
def test_recipe_refuses_bad_yaml_with_one_line(recipe_main, tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        recipe_main([str(path)])
    assert "\n" not in str(err.value)


def test_recipe_bad_yaml_exits_2_without_traceback(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("init: scratch:test_resnet\n target: builtin:digits\n")
    proc = subprocess.run([sys.executable, str(RECIPE), str(path)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (f"finetune.py: error: {path}: not valid YAML: mapping values are not allowed "
                                   "here (line 2, column 8)")
