"""A meta-learning rule defined here, outside the package, through every entry point.

``SignReptile`` moves φ by β·sign(θ̄ − φ) at every reset. It reaches the loop three ways: registered with
the decorator (the Python API), named ``test_plugin_rule:SignReptile`` in the config of the real CLI run
from this folder (found in the current directory), and named so for a two-process ``torchrun`` of the
recipe (found on ``PYTHONPATH``). One reset in the run makes the expected init exact: φ0 ± β everywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from _isolation import one_thread
from _training_helpers import (
    RECIPE,
    SUBPROCESS_TIMEOUT,
    assert_same_tensors,
    body_vector,
    finish,
    init_tensors,
    small_config,
    start,
    subprocess_env,
    torchrun_two_processes,
    training_caches,
)

import lsml_hub
from lsml_hub.algorithms import ALGORITHMS, MetaAlgorithm, TaskSignals, build_algorithm, register_algorithm
from lsml_hub.distributed import DistContext
from lsml_hub.errors import ConfigError
from lsml_hub.hub import load_init_config, publish_run
from lsml_hub.training import MetaTrainConfig, MetaTrainer

TESTS = Path(__file__).resolve().parent
CLI = Path(sys.executable).with_name("lsml-hub")  # the console script: the current directory is not on sys.path
PLUGIN = "test_plugin_rule:SignReptile"
META_LR = 0.125
STEPS = 4


@register_algorithm
@dataclass
class SignReptile(MetaAlgorithm):
    """Reptile's direction, a fixed step: φ ← φ + β·sign(θ̄ − φ), once per reset."""

    name = "test_sign_reptile"
    title = "sign Reptile (a test plug-in)"
    reference = "tests/test_plugin_rule.py"
    updates_at_reset = True
    shifts = False

    aggregate_period: int | None = None

    def accumulate_(self, total: torch.Tensor, task: TaskSignals) -> None:
        total.add_(task.theta)

    def delta_(self, mean: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        return mean.sub_(phi).sign_().mul_(self.meta_lr)


def config(out: Path, name: str) -> dict:
    return small_config(out, steps=STEPS, algorithm={"name": name, "meta_lr": META_LR, "reset_period": STEPS})


@pytest.fixture(scope="module", autouse=True)
def _caches(tmp_path_factory):
    with training_caches(tmp_path_factory) as root, one_thread():
        yield root


@pytest.fixture(scope="module")
def start_phi(tmp_path_factory) -> torch.Tensor:
    """φ0: what every run here starts from (same model, same seed)."""
    trainer = MetaTrainer(MetaTrainConfig.from_dict(config(tmp_path_factory.mktemp("phi0") / "run",
                                                           "test_sign_reptile")), DistContext())
    return trainer.phi.detach().clone()


def assert_one_sign_step(init_dir: Path, phi0: torch.Tensor) -> None:
    phi = body_vector(init_tensors(init_dir))
    sign = torch.round((phi - phi0) / META_LR)
    assert set(sign.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert torch.equal(phi, phi0 + sign * META_LR)  # φ0 ± β to the last bit
    assert (sign != 0).float().mean() > 0.9  # nearly every weight moved


def test_the_decorator_registers_the_rule_by_name():
    assert ALGORITHMS["test_sign_reptile"] is SignReptile
    algo = build_algorithm({"name": "test_sign_reptile", "meta_lr": 0.5, "reset_period": 10})
    assert (algo.aggregate_period, algo.name) == (10, "test_sign_reptile")


def test_a_second_rule_under_a_taken_name_is_refused():
    with pytest.raises(ConfigError, match="'cts' is registered already"):
        register_algorithm(name="cts")(SignReptile)
    assert ALGORITHMS["cts"].__name__ == "ContinualTrajectoryShifting"


def test_a_rule_defined_again_replaces_itself_as_a_rerun_notebook_cell_does(monkeypatch):
    monkeypatch.setitem(ALGORITHMS, "test_sign_reptile", SignReptile)  # restored after the test
    source = "@register_algorithm\n@dataclass\nclass SignReptile(Base):\n    name = 'test_sign_reptile'\n"
    cell = compile(source, "<notebook cell>", "exec")
    classes = []
    for _ in range(2):
        scope = {"register_algorithm": register_algorithm, "dataclass": dataclass, "Base": SignReptile,
                 "__name__": SignReptile.__module__}
        exec(cell, scope)
        classes.append(scope["SignReptile"])
    assert classes[0] is not classes[1] and ALGORITHMS["test_sign_reptile"] is classes[1]


@pytest.mark.parametrize(("name", "message"), [
    ("test_plugin_rule:Nope", "module 'test_plugin_rule' has no 'Nope'"),
    ("test_plugin_rule:config", "is not a subclass of lsml_hub.algorithms.MetaAlgorithm"),
    ("no_such_module_xyz:Rule", "no module named 'no_such_module_xyz' on sys.path or in"),
    ("lsml_hub.algorithms.base:MetaAlgorithm", "does not define accumulate_, delta_"),
    ("cts!", "unknown algorithm 'cts!'"),
])
def test_bad_plugin_names_are_one_clear_error(name, message):
    with pytest.raises(ConfigError, match=message):
        build_algorithm({"name": name})


@pytest.mark.slow
def test_the_python_api_runs_a_registered_rule(tmp_path, start_phi):
    result = lsml_hub.meta_train(config(tmp_path / "run", "test_sign_reptile"))
    assert_one_sign_step(result.init_dir, start_phi)
    algorithm = load_init_config(f"local-dir:{result.init_dir}").algorithm
    assert algorithm["name"] == "test_sign_reptile"
    card = (result.init_dir / "README.md").read_text()
    assert "sign Reptile (a test plug-in) (tests/test_plugin_rule.py)" in card


@pytest.mark.slow
@pytest.mark.multiprocess
def test_the_cli_and_torchrun_run_a_module_class_rule(tmp_path, tmp_path_factory, start_phi):
    env = subprocess_env(tmp_path_factory)
    cli_out, torchrun_out = tmp_path / "cli", tmp_path / "torchrun"
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config(torchrun_out, PLUGIN)))
    # The CLI from this folder: the rule's module is found in the current directory.
    cli_log = tmp_path / "cli.log"
    cli = subprocess.Popen([str(CLI), "meta-train", str(tmp_path / "run.yaml"), f"output_dir={cli_out}"],
                           cwd=TESTS, env=env,
                           stdout=cli_log.open("wb"), stderr=subprocess.STDOUT)
    # torchrun of the recipe from the repository root: found on PYTHONPATH, by every worker.
    torchrun_log = tmp_path / "torchrun.log"
    torchrun = start([*torchrun_two_processes(), str(RECIPE), str(tmp_path / "run.yaml")],
                     {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))},
                     torchrun_log)
    finish(cli, cli_log, SUBPROCESS_TIMEOUT)
    finish(torchrun, torchrun_log, SUBPROCESS_TIMEOUT)

    assert_one_sign_step(cli_out / "init", start_phi)
    # One process and two agree bit for bit (one thread per process in both).
    assert_same_tensors(init_tensors(torchrun_out / "init"), init_tensors(cli_out / "init"))
    for out in (cli_out, torchrun_out):
        recorded = load_init_config(f"local-dir:{out / 'init'}").algorithm
        assert recorded["name"] == PLUGIN  # as the config spelled it, so the run's config.yaml rebuilds it
        assert yaml.safe_load((out / "config.yaml").read_text())["algorithm"]["name"] == PLUGIN
        assert "sign Reptile (a test plug-in)" in (out / "init" / "README.md").read_text()

    # Published later by a process that cannot import the rule (run from elsewhere): the card still credits it.
    publish_log = tmp_path / "publish.log"
    finish(subprocess.Popen([str(CLI), "publish", str(cli_out)], cwd=tmp_path, env=env,
                            stdout=publish_log.open("wb"), stderr=subprocess.STDOUT), publish_log)
    card = (cli_out / "publish" / "README.md").read_text()
    assert "sign Reptile (a test plug-in) (tests/test_plugin_rule.py)" in card
    assert "- test_plugin_rule-signreptile" in card and "test_resnet.test_plugin_rule:" not in card


def test_a_plugin_whose_own_import_fails_shows_that_error(tmp_path, monkeypatch):
    (tmp_path / "rules_needing_foo.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz"):
        build_algorithm({"name": "rules_needing_foo:Rule"})


def test_a_subclass_rule_names_itself_on_cards_not_its_parent():
    from lsml_hub.algorithms import ContinualTrajectoryShifting
    from lsml_hub.hub.card import algorithm_credit

    @dataclass
    class TunedCTS(ContinualTrajectoryShifting):
        pass

    try:
        register_algorithm(name="test_tuned_cts")(TunedCTS)
        assert algorithm_credit("test_tuned_cts") == "test_tuned_cts"  # not CTS's title and paper
    finally:
        ALGORITHMS.pop("test_tuned_cts", None)


def test_a_copied_loop_may_drop_the_progress_bar_and_still_leaves_a_run_to_publish(tmp_path, capsys):
    trainer = MetaTrainer(MetaTrainConfig.from_dict(config(tmp_path / "run", "test_sign_reptile")), DistContext())
    with trainer.open_run(progress_bar=False):
        while trainer.step < STEPS:
            trainer.train_step()
            trainer.report()
    trainer.export()
    assert "meta-train" not in capsys.readouterr().err  # no bar
    run = tmp_path / "run"
    assert {"run.json", "config.yaml", "metrics.jsonl"} <= {p.name for p in run.iterdir()}
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()][-1] == STEPS
    published = publish_run(run)
    assert load_init_config(f"local-dir:{published}").algorithm["name"] == "test_sign_reptile"
