"""Meta-training configs: YAML, dotted overrides, strict keys, and one-line errors for bad values."""

from __future__ import annotations

import pytest
from _training_helpers import TINY_YAML, small_config

import lsml_hub
from lsml_hub.cli import main
from lsml_hub.distributed import DistContext
from lsml_hub.errors import ConfigError
from lsml_hub.training import MetaTrainConfig, apply_overrides, load_config


def one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert message and "\n" not in message, f"not one line: {message!r}"
    return message


def assert_load_config_refuses(overrides: list[str], words: list[str]) -> None:
    """``load_config(TINY_YAML, overrides)`` raises a one-line ConfigError that names every one of ``words``."""
    with pytest.raises(ConfigError) as excinfo:
        load_config(TINY_YAML, overrides)
    message = one_line_error(excinfo)
    for word in words:
        assert word in message, message


def test_tiny_yaml_loads():
    cfg = load_config(TINY_YAML)
    assert cfg.model == "test_resnet" and cfg.input_size == 32
    assert [t.source for t in cfg.tasks] == ["builtin:latin_upper", "builtin:greek", "builtin:printed_digits",
                                             "builtin:symbols"]
    assert all(t.samples_per_class == 20 for t in cfg.tasks)
    assert cfg.algorithm == {"name": "cts", "meta_lr": 0.05, "aggregate_period": 1, "reset_period": 10}
    assert (cfg.inner.optimizer, cfg.inner.lr, cfg.inner.momentum, cfg.inner.weight_decay, cfg.inner.batch_size) \
        == ("sgd", 0.01, 0.9, 5e-4, 16)
    assert (cfg.steps, cfg.seed, cfg.eval_every, cfg.eval_batches, cfg.checkpoint_every, cfg.log_every) \
        == (20, 0, 10, 2, 10, 5)
    assert (cfg.device, cfg.tensorboard, cfg.output_dir) == ("cpu", False, "runs/tiny")


def test_dotted_overrides_reach_nested_keys_and_parse_as_yaml():
    cfg = load_config(TINY_YAML, ["algorithm.meta_lr=0.1", "inner.batch_size=8", "steps=7", "tensorboard=true",
                                  "tasks=[builtin:digits, 'builtin:greek?samples_per_class=5']",
                                  "algorithm.hard_reset=true", "output_dir=/tmp/somewhere"])
    assert cfg.algorithm == {"name": "cts", "meta_lr": 0.1, "aggregate_period": 1, "reset_period": 10,
                             "hard_reset": True}
    assert cfg.inner.batch_size == 8 and isinstance(cfg.inner.batch_size, int)
    assert cfg.inner.lr == 0.01  # untouched siblings keep the file's values
    assert cfg.steps == 7 and cfg.tensorboard is True and cfg.output_dir == "/tmp/somewhere"
    assert [(t.source, t.samples_per_class) for t in cfg.tasks] == [("builtin:digits", None), ("builtin:greek", 5)]


def test_exponent_floats_are_numbers_in_files_and_overrides(tmp_path):
    # PyYAML reads YAML 1.1, where 1e-3 (no dot) is a string; configs take YAML 1.2 floats.
    path = tmp_path / "c.yaml"
    path.write_text("tasks: [builtin:digits]\ninner:\n  lr: 1e-3\n  weight_decay: 5E-4\nalgorithm:\n  meta_lr: 2e-2\n")
    cfg = load_config(path, ["inner.momentum=9e-1"])
    assert (cfg.inner.lr, cfg.inner.weight_decay, cfg.inner.momentum) == (1e-3, 5e-4, 0.9)
    assert cfg.algorithm["meta_lr"] == 0.02
    assert load_config(path, ["output_dir=runs/1e5", "seed=3"]).output_dir == "runs/1e5"


def test_overrides_leave_the_callers_mapping_alone():
    values = {"algorithm": {"name": "cts", "meta_lr": 0.5}, "steps": 3}
    assert apply_overrides(values, ["algorithm.meta_lr=0.25", "steps=4", "inner.lr=0.1"]) == \
        {"algorithm": {"name": "cts", "meta_lr": 0.25}, "steps": 4, "inner": {"lr": 0.1}}
    assert values == {"algorithm": {"name": "cts", "meta_lr": 0.5}, "steps": 3}


def test_an_algorithm_name_override_switches_algorithm_and_takes_its_keys():
    # tiny.yaml is CTS with aggregate_period 1; a new name drops CTS's keys, later dotted keys extend it.
    cfg = load_config(TINY_YAML, ["algorithm=reptile", "algorithm.reset_period=3", "algorithm.meta_lr=0.5"])
    assert cfg.algorithm == {"name": "reptile", "reset_period": 3, "meta_lr": 0.5}


def test_overrides_without_a_file_and_on_plain_dicts():
    assert apply_overrides({"algorithm": {"name": "cts"}}, ["algorithm.meta_lr=0.1", "inner.lr=1e-3"]) == \
        {"algorithm": {"name": "cts", "meta_lr": 0.1}, "inner": {"lr": 1e-3}}
    cfg = load_config(None, ["tasks=[builtin:digits]", "algorithm.name=reptile", "algorithm.reset_period=5"])
    assert cfg.algorithm == {"name": "reptile", "reset_period": 5}
    assert cfg.inner.optimizer == "sgd" and cfg.steps == 200_000  # the seed's defaults
    assert MetaTrainConfig.from_dict({"tasks": ["builtin:digits"], "algorithm": "none"}).algorithm == {"name": "none"}


def test_config_round_trips_through_to_dict(tmp_path):
    cfg = MetaTrainConfig.from_dict(small_config(tmp_path))
    again = MetaTrainConfig.from_dict(cfg.to_dict())
    assert again == cfg


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["stepz=3"], ["'stepz'", "'steps'", "'output_dir'", "valid"]),
        (["inner.momentun=0.5"], ["'inner.momentun'", "'inner.momentum'", "valid"]),
        (["algorithm.beta=0.1"], ["'beta'", "'meta_lr'", "'reset_period'", "valid"]),
    ],
)
def test_unknown_keys_are_refused_naming_them_and_the_valid_ones(overrides, words):
    assert_load_config_refuses(overrides, words)


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["algorithm.aggregate_period=0"], ["algorithm.aggregate_period", "positive", "0"]),
        (["algorithm.aggregate_period=-2"], ["algorithm.aggregate_period", "-2"]),
        (["algorithm.reset_period=0"], ["algorithm.reset_period", "positive"]),
        (["algorithm.name=reptile", "algorithm.aggregate_period=null", "algorithm.reset_period=-1"],
         ["_period", "-1"]),
        (["algorithm.name=reptile", "algorithm.aggregate_period=0", "algorithm.reset_period=5"],
         ["aggregate_period", "0"]),
        (["algorithm.name=fomaml_shift", "algorithm.reset_period=0"], ["reset_period", "positive"]),
        (["algorithm.name=maml"], ["'maml'", "cts", "reptile", "multitask", "fomaml", "fomaml_shift", "none"]),
        (["inner.optimizer=lion"], ["'lion'", "sgd", "adam", "rmsprop"]),
        (["algorithm.name=reptile", "algorithm.aggregate_period=2"], ["aggregate_period", "reset_period"]),
        (["algorithm.name=multitask"], ["multitask", "reset_period", "must be 1"]),
        (["algorithm.meta_lr=0"], ["meta_lr", "positive"]),
        (["steps=0"], ["steps", "positive"]),
        (["steps=abc"], ["steps", "'abc'"]),
        (["tasks=[]"], ["task"]),
        (["inner=3"], ["'inner'", "mapping"]),
        (["steps"], ["'steps'", "key=value"]),
        (["steps=true"], ["steps", "True"]),
        (["seed=abc"], ["seed", "'abc'"]),
        (["eval_batches=0"], ["eval_batches", "0"]),
        (["input_size=big"], ["input_size", "'big'"]),
        (["tensorboard=maybe"], ["tensorboard", "'maybe'"]),
        (["inner.lr=fast"], ["inner.lr", "'fast'"]),
        (["inner.lr=-0.1"], ["inner.lr", "-0.1"]),
        (["inner.batch_size=2.5"], ["inner.batch_size", "2.5"]),
        (["inner.momentum=-1"], ["inner.momentum", "-1"]),
        (["inner.nesterov=3"], ["inner.nesterov", "3"]),
        (["algorithm.meta_lr=big"], ["algorithm.meta_lr", "'big'"]),
        (["algorithm.hard_reset=maybe"], ["algorithm.hard_reset", "'maybe'"]),
        (["algorithm=[cts]"], ["algorithm", "['cts']"]),
    ],
)
def test_bad_values_are_one_line_config_errors(overrides, words):
    assert_load_config_refuses(overrides, words)


def test_bad_values_in_a_mapping_are_config_errors_too(tmp_path):
    with pytest.raises(ConfigError, match="algorithm.meta_lr must be a positive number, got 'x'"):
        MetaTrainConfig.from_dict(small_config(tmp_path, algorithm={"name": "cts", "meta_lr": "x"}))


def test_more_ranks_than_tasks_is_a_one_line_error():
    with pytest.raises(ConfigError) as excinfo:
        DistContext(rank=0, world_size=5).my_tasks(4)
    message = one_line_error(excinfo)
    assert "5 processes" in message and "4 tasks" in message


def test_tasks_are_spread_round_robin_over_ranks():
    assert DistContext().my_tasks(3) == [0, 1, 2]
    assert [DistContext(rank=r, world_size=3).my_tasks(8) for r in range(3)] == [[0, 3, 6], [1, 4, 7], [2, 5]]
    assert [DistContext(rank=r, world_size=4).my_tasks(4) for r in range(4)] == [[0], [1], [2], [3]]


def test_missing_or_malformed_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


@pytest.mark.parametrize("config, overrides, message", [
    (TINY_YAML, "steps=3", r"overrides must be a list of key=value strings, e.g. \['steps=100'\], got 'steps=3'"),
    (TINY_YAML, [3], r"overrides must be a list of key=value strings, e.g. \['steps=100'\], got \[3\]"),
    (123, (), "config must be a MetaTrainConfig, a mapping or a YAML path, got int"),
])
def test_the_python_api_names_a_wrongly_typed_argument(config, overrides, message):
    with pytest.raises(ConfigError, match=message):
        lsml_hub.meta_train(config, overrides)


def test_cli_refuses_an_unknown_key_in_one_line_and_writes_nothing(capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["meta-train", str(TINY_YAML), f"output_dir={out}", "inner.batchsize=8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lsml-hub meta-train: error: ") and "\n" not in err
    assert "'inner.batchsize'" in err and "'inner.batch_size'" in err
    assert "Traceback" not in err
    assert not out.exists()


META_TRAIN_CONFIGS = sorted(p for p in TINY_YAML.parent.glob("*.yaml")
                            if "meta-train" in p.read_text() or "meta_train.py" in p.read_text())


@pytest.mark.parametrize("path", META_TRAIN_CONFIGS, ids=[p.stem for p in META_TRAIN_CONFIGS])
def test_every_meta_train_recipe_config_loads_and_opens_with_its_launch_command(path):
    lines = path.read_text().splitlines()
    header = lines[: next(i for i, line in enumerate(lines) if not line.startswith("#"))]
    assert header and any(f"configs/{path.name}" in line for line in header), header
    cfg = load_config(path)
    assert cfg.tasks and cfg.steps > 0
