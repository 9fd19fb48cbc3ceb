"""Bad input through the real CLI (``lsml_hub.cli.main``): one line naming the problem, exit 2, nothing written.

Every case runs in a workspace folder that may hold a config, a finished run, an init or a user's own
files. The whole folder is hashed before and after: a refused command must leave every file (and the
set of files and folders) exactly as it was. Argument errors that argparse itself reports (an unknown
choice) print its usage line first; every other mistake is exactly one line.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import timm
import yaml
from _isolation import one_thread
from _training_helpers import TWO_TASKS, small_config, training_caches
from huggingface_hub import constants

import lsml_hub
from lsml_hub.cli import main
from lsml_hub.hub import add_to_hub_cache

# A folder no process can create, not even root's: /proc holds only what the kernel puts there.
UNCREATABLE = "/proc/lsml-hub-no-such-folder/out"
TASK = TWO_TASKS[0]  # builtin:printed_digits?samples_per_class=20: 10 classes, 200 training images


@dataclass(frozen=True)
class Case:
    """One bad command line.

    Attributes:
        argv: The arguments; ``{ws}`` stands for the workspace folder.
        expect: Text the one error line must contain.
        setup: Prepares the workspace (a config, a run, user files) before the snapshot.
        env: Environment variables for the call; ``{ws}`` is substituted too.
        argparse: argparse reports it (usage line, then the error).
    """

    argv: tuple[str, ...]
    expect: str
    setup: Callable[[Path], None] | None = None
    env: dict[str, str] = field(default_factory=dict)
    argparse: bool = False


# -- workspace builders --------------------------------------------------------------------------------
def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def config(**overrides) -> Callable[[Path], None]:
    """Setup: ``{ws}/c.yaml``, a seconds-long config writing to ``{ws}/run``, with ``overrides`` applied."""
    def setup(ws: Path) -> None:
        values = small_config(ws / "run", steps=2, **overrides)
        _write(ws / "c.yaml", yaml.safe_dump(values, sort_keys=False))
    return setup


def both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        for step in setups:
            step(ws)
    return setup


def files(**contents: str) -> Callable[[Path], None]:
    """Setup: files under the workspace (``a__b`` is ``a/b``)."""
    def setup(ws: Path) -> None:
        for name, text in contents.items():
            _write(ws / name.replace("__", "/"), text)
    return setup


def finished_run(name: str = "run", without: tuple[str, ...] = ()) -> Callable[[Path], None]:
    """Setup: a copy of a finished 2-step run at ``{ws}/NAME``, minus the paths in ``without``."""
    def setup(ws: Path) -> None:
        shutil.copytree(FINISHED_RUN, ws / name)
        for part in without:
            target = ws / name / part
            shutil.rmtree(target) if target.is_dir() else target.unlink()
    return setup


def an_init(name: str = "init", edit: Callable[[Path], None] | None = None) -> Callable[[Path], None]:
    """Setup: an lsml-hub init of test_resnet at ``{ws}/NAME``, then ``edit`` applied to the folder."""
    def setup(ws: Path) -> None:
        folder = lsml_hub.save_init(ws / name, timm.create_model("test_resnet", num_classes=3),
                                    lsml={"algorithm": {"name": "cts"}}, pretrained_cfg={"input_size": (3, 32, 32)})
        if edit is not None:
            edit(folder)
    return setup


def _edit_json(key: str, value) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        data = json.loads((folder / "config.json").read_text())
        data[key] = value
        (folder / "config.json").write_text(json.dumps(data))
    return edit


def _flip_a_byte(folder: Path) -> None:
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))


def _another_init_cached(ws: Path) -> None:
    an_init("init")(ws)
    an_init("other")(ws)  # other random weights
    add_to_hub_cache(ws / "other", "me/demo", cache_dir=ws / "hf")


# The Hugging Face cache of a case, inside the workspace: whatever a refused command wrote there would show.
HF_CACHE_IN_WS = {"HF_HUB_CACHE": "{ws}/hf"}


def _run_marker_of_another_config(ws: Path) -> None:
    config()(ws)
    _write(ws / "run" / "run.json", json.dumps({"identity": {"seed": 99}}))
    _write(ws / "run" / "config.yaml", "seed: 99\n")


MT = ("meta-train", "{ws}/c.yaml")
FT = ("finetune", "--init", "{ws}/init", "--data", "builtin:digits", "--steps", "1", "--max-train-samples", "20",
      "--batch-size", "8", "--no-progress")
CMP = ("compare", "--init", "{ws}/init", "--data", "builtin:digits", "--steps", "1", "--max-train-samples", "20",
       "--batch-size", "8", "--no-progress")

CASES: dict[str, Case] = {
    # -- meta-train configs ------------------------------------------------------------------------
    "config_missing": Case(MT, "does not exist"),
    "config_not_yaml": Case(MT, "not valid YAML", files(**{"c.yaml": "tasks: [a, b\n"})),
    "config_a_list": Case(MT, "the top level must be a mapping", files(**{"c.yaml": "- steps\n"})),
    "unknown_key": Case((*MT, "stepz=3"), "unknown config key(s) ['stepz']", config()),
    "steps_zero": Case((*MT, "steps=0"), "steps must be a positive integer, got 0", config()),
    "steps_text": Case((*MT, "steps=many"), "steps must be a positive integer, got 'many'", config()),
    "steps_bool": Case((*MT, "steps=true"), "steps must be a positive integer, got True", config()),
    "seed_negative": Case((*MT, "seed=-1"), "seed must be a non-negative integer, got -1", config()),
    "inner_lr_zero": Case((*MT, "inner.lr=0"), "inner.lr must be a positive number, got 0", config()),
    "inner_optimizer": Case((*MT, "inner.optimizer=lamb"), "unknown inner.optimizer 'lamb'", config()),
    "batch_size_float": Case((*MT, "inner.batch_size=2.5"), "inner.batch_size must be a positive integer", config()),
    "batch_size_over_data": Case((*MT, "inner.batch_size=5000"),
                                 "has 200 training images, fewer than inner.batch_size=5000", config()),
    "algorithm_unknown": Case((*MT, "algorithm=maml3"), "maml3", config()),
    "meta_lr_negative": Case((*MT, "algorithm.meta_lr=-1"), "meta_lr", config()),
    "imaml_lambda_zero": Case((*MT, "algorithm=imaml", "algorithm.reg_lambda=0"),
                              "algorithm.reg_lambda must be a positive number, got 0", config()),
    "imaml_cg_steps_zero": Case((*MT, "algorithm=imaml", "algorithm.cg_steps=0"),
                                "algorithm.cg_steps must be a positive integer, got 0", config()),
    "imaml_held_out_batches_negative": Case((*MT, "algorithm=imaml", "algorithm.held_out_batches=-1"),
                                            "algorithm.held_out_batches must be a positive integer", config()),
    "reptile_reset_period_zero": Case((*MT, "algorithm=reptile", "algorithm.reset_period=0"),
                                      "algorithm.reset_period must be a positive integer, got 0", config()),
    "imaml_proximal_not_bool": Case((*MT, "algorithm=imaml", "algorithm.proximal=maybe"),
                                    "algorithm.proximal must be true or false, got 'maybe'", config()),
    "leap_meta_step_between_resets": Case((*MT, "algorithm=leap", "algorithm.reset_period=4",
                                           "algorithm.aggregate_period=2"), "leap meta-updates at every reset",
                                          config()),
    "start_from_pretrained_without_weights": Case((*MT, "model=resnet20_cifar", "start_from=pretrained"),
                                                  "start_from: pretrained needs timm pretrained weights, but timm "
                                                  "has none for resnet20_cifar", config()),
    "start_from_missing_init": Case((*MT, "start_from={ws}/no_init"), "no_init", config()),
    "start_from_init_of_another_model": Case((*MT, "start_from={ws}/init", "model=resnet20_cifar"),
                                             "is an init of 'test_resnet', but model is 'resnet20_cifar'",
                                             both(config(), an_init())),
    "model_unknown": Case((*MT, "model=resnet_nope"), "unknown model 'resnet_nope'", config()),
    "model_kwargs_not_mapping": Case((*MT, "model_kwargs=5"), "model_kwargs must be a mapping", config()),
    "model_kwargs_reserved": Case((*MT, "model_kwargs={num_classes: 3}"), "model_kwargs may not set num_classes",
                                  config()),
    "model_kwargs_number_key": Case((*MT, "model_kwargs={1: 2}"), "model_kwargs keys must be argument names",
                                    config()),
    "model_kwargs_in_chans": Case((*MT, "model_kwargs={in_chans: 1}"), "model_kwargs may not set in_chans", config()),
    "device_data_gb_infinite": Case((*MT, "device_data_gb=.inf"), "device_data_gb must be a finite number", config()),
    "model_kwargs_unknown_arg": Case((*MT, "model_kwargs={no_such_arg: 1}"),
                                     "cannot be built with model_kwargs {'no_such_arg': 1}", config()),
    "vit_at_the_wrong_size": Case((*MT, "model=vit_tiny_patch16_224"),
                                  "fails a forward pass on the 32x32 images of task 'printed_digits'", config()),
    "override_without_equals": Case((*MT, "steps"), "bad override 'steps'", config()),
    "override_bad_yaml": Case((*MT, "tasks=[a, b"), "the value is not valid YAML", config()),
    "no_tasks": Case((*MT, "tasks=[]"), "needs at least one task", config()),
    "duplicate_task_names": Case(MT, "two tasks are both named 'printed_digits'", config(tasks=[TASK, TASK])),
    "input_size_not_trained": Case((*MT, "input_size=48"), "input_size=48 is a size no task is trained at",
                                   config()),
    "eval_every_zero": Case((*MT, "eval_every=0"), "eval_every must be a positive integer", config()),
    "tensorboard_word": Case((*MT, "tensorboard=maybe"), "tensorboard must be true or false", config()),
    "device_unknown": Case((*MT, "device=tpu"), "device 'tpu'", config()),
    # -- task specs ----------------------------------------------------------------------------------
    "builtin_unknown": Case(MT, "unknown builtin source 'latin_uper'",
                            config(tasks=["builtin:latin_uper", TASK])),
    "samples_per_class_zero": Case(MT, "'samples_per_class' must be a positive integer, got 0",
                                   config(tasks=["builtin:greek?samples_per_class=0", TASK])),
    "samples_per_class_negative": Case(MT, "'samples_per_class' must be a positive integer, got -5",
                                       config(tasks=["builtin:greek?samples_per_class=-5", TASK])),
    "samples_per_class_text": Case(MT, "'samples_per_class' needs an integer, got 'many'",
                                   config(tasks=["builtin:greek?samples_per_class=many", TASK])),
    "samples_per_class_yaml_float": Case(MT, "'samples_per_class' must be a positive integer, got 2.5",
                                         config(tasks=[{"source": "builtin:greek", "samples_per_class": 2.5}, TASK])),
    "spec_unknown_key": Case(MT, "unknown task spec key(s) ['colour']",
                             config(tasks=["builtin:greek?colour=red", TASK])),
    "spec_image_size_zero": Case(MT, "'image_size' must be a positive integer, got 0",
                                 config(tasks=["builtin:greek?image_size=0", TASK])),
    "spec_hflip_word": Case(MT, "'hflip' needs true or false", config(tasks=["builtin:greek?hflip=perhaps", TASK])),
    "spec_classes_reversed": Case(MT, "bad class subset '5-1': the range '5-1' runs backwards; write 1-5",
                                  config(tasks=["builtin:greek?classes=5-1", TASK])),
    "samples_per_class_on_digits": Case(MT, "samples_per_class applies to generated glyph sources",
                                        config(tasks=["builtin:digits?samples_per_class=5", TASK])),
    "local_path_missing": Case(MT, "no/such/images", config(tasks=["./no/such/images", TASK])),
    "data_command_unknown_builtin": Case(("data", "builtin:nosuch"), "unknown builtin source 'nosuch'"),
    # -- meta-train output folders -------------------------------------------------------------------
    "output_dir_is_a_file": Case(MT, "run is a file", both(config(), files(run="my notes"))),
    "output_dir_inside_a_file": Case((*MT, "output_dir={ws}/notes/run"), "is inside",
                                     both(config(), files(notes="my notes"))),
    "output_dir_holds_a_users_config": Case(
        MT, "holds config.yaml, metrics.jsonl but no run.json",
        both(config(), files(**{"run__config.yaml": "mine: 1\n", "run__metrics.jsonl": '{"mine": 1}\n'}))),
    "output_dir_holds_other_files": Case(MT, "holds files that meta-train does not write: thesis.tex",
                                         both(config(), files(**{"run__thesis.tex": "chapter 1"}))),
    "output_dir_finished_without_checkpoint": Case(MT, "holds a finished run (init/ is written) without",
                                                   both(config(), finished_run(without=("checkpoints",)))),
    "output_dir_run_of_another_config": Case(MT, "holds a run started with a different config",
                                             _run_marker_of_another_config),
    "checkpoint_of_another_config": Case((*MT, "seed=7"), "was made with a different config",
                                         both(config(), finished_run())),
    "output_dir_uncreatable": Case((*MT, f"output_dir={UNCREATABLE}"), "cannot be created", config()),
    "cache_is_a_users_folder": Case(MT, "holds files that lsml-hub's cache does not write: photos",
                                    both(config(), files(**{"home__photos": "x"})),
                                    env={"LSML_HUB_CACHE": "{ws}/home"}),
    # -- publish ----------------------------------------------------------------------------------------
    "publish_over_another_init": Case(("publish", "{ws}/run", "{ws}/init"), "holds another init",
                                      both(finished_run(), an_init())),
    "publish_into_users_folder": Case(("publish", "{ws}/run", "{ws}/mine"), "holds files that publish does not write",
                                      both(finished_run(), files(**{"mine__paper.pdf": "x"}))),
    "publish_not_a_run": Case(("publish", "{ws}/mine"), "is not a run folder", files(**{"mine__a.txt": "x"})),
    "publish_unfinished_run": Case(("publish", "{ws}/run"), "run not finished", finished_run(without=("init",))),
    "publish_into_its_own_init": Case(("publish", "{ws}/run", "{ws}/run/init"), "would replace the run or its init",
                                      finished_run()),
    "publish_uncreatable": Case(("publish", "{ws}/run", UNCREATABLE), "cannot be created", finished_run()),
    # -- inits ------------------------------------------------------------------------------------------
    "info_missing_folder": Case(("info", "{ws}/nothing"), "nothing"),
    "info_tampered_weights": Case(("info", "{ws}/init"), "does not match", an_init(edit=_flip_a_byte)),
    "info_weights_of_another_architecture": Case(("info", "{ws}/init"), "resnet20_cifar",
                                                 an_init(edit=_edit_json("architecture", "resnet20_cifar"))),
    "info_config_not_json": Case(("info", "{ws}/init"), "is not valid JSON",
                                 an_init(edit=lambda f: (f / "config.json").write_text("{oops"))),
    "info_init_with_a_head": Case(("info", "{ws}/init"), "an init is headless",
                                  an_init(edit=_edit_json("num_classes", 10))),
    "finetune_init_missing_weights": Case(FT, "has no model.safetensors",
                                          an_init(edit=lambda f: (f / "model.safetensors").unlink())),
    "finetune_init_is_a_run_folder": Case(("finetune", "--init", "{ws}/run", "--data", "builtin:digits"),
                                          "is a meta-train run folder: its init is", finished_run()),
    "info_on_a_run_folder": Case(("info", "{ws}/run"), "is a meta-train run folder: its init is", finished_run()),
    "finetune_hub_init_offline": Case(("finetune", "--init", "hf-hub:nobody/nothing", "--data", "builtin:digits"),
                                      "nobody/nothing"),
    # -- fine-tuning and compare --------------------------------------------------------------------------
    "finetune_steps_zero": Case((*FT, "--steps", "0"), "steps must be", an_init()),
    "finetune_too_few_samples": Case((*FT, "--max-train-samples", "5"), "max_train_samples", an_init()),
    "finetune_lr_negative": Case((*FT, "--lr", "-1"), "lr", an_init()),
    "finetune_mode_unknown": Case((*FT, "--mode", "partial"), "partial", an_init()),
    "finetune_unknown_target": Case(("finetune", "--init", "{ws}/init", "--data", "builtin:digitz"),
                                    "unknown builtin source 'digitz'", an_init()),
    "finetune_out_is_a_file": Case((*FT, "--out", "{ws}/notes"), "notes is a file",
                                   both(an_init(), files(notes="x"))),
    "finetune_out_into_an_init": Case((*FT, "--out", "{ws}/init"), "holds files that finetune does not write",
                                      an_init()),
    "finetune_out_uncreatable": Case((*FT, "--out", UNCREATABLE), "cannot be created", an_init()),
    "compare_out_holds_user_files": Case((*CMP, "--out", "{ws}/mine"), "holds files that compare does not write",
                                         both(an_init(), files(**{"mine__plot.png": "x"}))),
    "compare_out_uncreatable": Case((*CMP, "--out", UNCREATABLE), "cannot be created", an_init()),
    "compare_missing_init": Case(("compare", "--init", "{ws}/gone", "--data", "builtin:digits"), "gone"),
    "create_num_classes_text": Case(("finetune", "--init", "{ws}/init", "--data", "builtin:digits", "--steps", "x"),
                                    "invalid int value: 'x'", an_init(), argparse=True),
    "cache_rm_unknown_kind": Case(("cache", "rm", "everything"), "invalid choice: 'everything'", argparse=True),
    # -- init strings and the Hugging Face cache ----------------------------------------------------------
    "info_unknown_init_source": Case(("info", "s3:bucket/init"), "unknown init source 's3' in 's3:bucket/init'; "
                                                                 "valid: hf-hub:owner/name[@revision], local-dir:PATH"),
    "info_bare_timm_name": Case(("info", "resnet18"), "use timm:resnet18 (pretrained weights) or scratch:resnet18"),
    "info_scratch_unknown_model": Case(("info", "scratch:resnt18"), "unknown model 'resnt18' in 'scratch:resnt18'"),
    "info_timm_without_hub_weights": Case(("info", "timm:resnet20_cifar"),
                                          "timm has no pretrained weights on the Hugging Face Hub for resnet20_cifar"),
    "finetune_timm_not_cached": Case(("finetune", "--init", "timm:test_resnet", "--data", "builtin:digits"),
                                     "not in the Hugging Face cache", env=HF_CACHE_IN_WS),
    "cache_add_not_an_init": Case(("cache", "add", "{ws}/mine", "me/demo"), "is not a complete init: missing",
                                  files(**{"mine__notes.txt": "x"}), env=HF_CACHE_IN_WS),
    "cache_add_missing_folder": Case(("cache", "add", "{ws}/gone", "me/demo"), "gone does not exist",
                                     env=HF_CACHE_IN_WS),
    "cache_add_tampered_init": Case(("cache", "add", "{ws}/init", "me/demo"), "does not match",
                                    an_init(edit=_flip_a_byte), env=HF_CACHE_IN_WS),
    "cache_add_bad_repo_id": Case(("cache", "add", "{ws}/init", "demo"), "bad Hub id 'demo': use OWNER/NAME",
                                  an_init(), env=HF_CACHE_IN_WS),
    "cache_add_bad_revision": Case(("cache", "add", "{ws}/init", "me/demo", "--revision", "a/b"),
                                   "bad revision 'a/b'", an_init(), env=HF_CACHE_IN_WS),
    "cache_add_commit_revision": Case(("cache", "add", "{ws}/init", "me/demo", "--revision", "0123456789" * 4),
                                      "not a 40-digit commit id", an_init(), env=HF_CACHE_IN_WS),
    "cache_add_over_another_init": Case(("cache", "add", "{ws}/init", "me/demo"),
                                        "the Hugging Face cache already holds me/demo@main", _another_init_cached,
                                        env=HF_CACHE_IN_WS),
}


# -- the finished run the publish and output-folder cases copy ----------------------------------------
FINISHED_RUN: Path


@pytest.fixture(scope="module", autouse=True)
def _caches_and_a_finished_run(tmp_path_factory):
    global FINISHED_RUN
    with training_caches(tmp_path_factory) as root:
        FINISHED_RUN = tmp_path_factory.mktemp("finished") / "run"
        with one_thread():
            lsml_hub.meta_train(small_config(FINISHED_RUN, steps=2))
        yield root


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root``: a folder marker or the sha256 of the file's bytes."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_the_suite_has_at_least_40_distinct_cases():
    assert len(CASES) >= 40
    assert len({case.argv + (case.expect,) for case in CASES.values()}) == len(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(name, tmp_path, capsys, monkeypatch):
    case = CASES[name]
    ws = tmp_path / "ws"
    ws.mkdir()
    if case.setup is not None:
        case.setup(ws)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value.replace("{ws}", str(ws)))
        if key == "HF_HUB_CACHE":  # huggingface_hub read the environment at import
            monkeypatch.setattr(constants, "HF_HUB_CACHE", value.replace("{ws}", str(ws)))
    before = snapshot(ws)
    capsys.readouterr()
    argv = [arg.replace("{ws}", str(ws)) for arg in case.argv]
    with one_thread():
        try:
            rc = main(argv)
        except SystemExit as exit_:  # argparse
            rc = exit_.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert "Traceback" not in err
    if case.argparse:
        assert lines[0].startswith("usage: lsml-hub"), err  # argparse's usage, then its one error line
    else:
        assert len(lines) == 1, err
    assert lines[-1].startswith(f"lsml-hub {argv[0]}") and ": error: " in lines[-1], err
    assert case.expect in lines[-1], err
    assert snapshot(ws) == before, f"{name} changed the workspace"
