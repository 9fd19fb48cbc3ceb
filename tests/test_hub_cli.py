"""``lsml-hub list | info | publish | push | cache add`` through the real CLI entry point, and the help texts."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch
import yaml
from _hub_fakes import FakeHub
from huggingface_hub import CommitInfo, HfApi, RepoUrl, constants
from huggingface_hub.hf_api import GitRefs

import lsml_hub
from lsml_hub._hub_client import http_client_module
from lsml_hub.cli import build_parser, main
from lsml_hub.errors import InitError
from lsml_hub.hub import InitEntry, add_to_hub_cache, verify_init
from lsml_hub.hub import registry as registry_module


@pytest.fixture
def hub_run_dir(hub_make_init, tmp_path) -> Path:
    hub_make_init(name="run/init")
    run = tmp_path / "run"
    evals = [{"step": s, "kind": "eval", "task": "latin_upper", "loss": 1.0, "accuracy": s / 1000} for s in (200, 400)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    (run / "config.yaml").write_text(yaml.safe_dump({"steps": 400, "algorithm": {"name": "cts"}}))
    return run


@pytest.fixture
def registry(monkeypatch) -> dict:
    """A registry of this test's own."""
    table = {}
    monkeypatch.setattr(registry_module, "_REGISTRY", table)
    return table


def registered(registry: dict, name: str = "resnet20_cifar.cts_paper8", hub_id: str = "lsml-hub/none",
               **kw) -> InitEntry:
    entry = InitEntry(name, hub_id, None, name.partition(".")[0], "cts", ("svhn", "cifar100"), (3, 32, 32), **kw)
    registry[name] = entry
    return entry


def test_list_on_a_fresh_machine_says_nothing_is_available_and_how_to_add_one(registry, hub_offline_cache, capsys):
    assert main(["list"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith(f"no init available: none in the Hugging Face cache ({hub_offline_cache}), "
                           "none on the Hub (not searched: HF_HUB_OFFLINE or --no-hub); add one with "
                           "`lsml-hub cache add INIT_FOLDER OWNER/NAME`")
    assert "lsml-hub meta-train" in line


def test_list_shows_each_init_string_with_its_origin(registry, hub_make_init, hub_offline_cache, capsys):
    add_to_hub_cache(hub_make_init(), "owner/name")
    registered(registry)
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["INIT", "FROM", "ARCHITECTURE", "ALGORITHM", "INPUT", "SOURCE", "TASKS"]
    assert lines[1].split() == ["hf-hub:owner/name", "cache", "resnet20_cifar", "cts", "3x32x32", "2"]
    assert lines[2].split() == ["resnet20_cifar.cts_paper8", "registered", "resnet20_cifar", "cts", "3x32x32", "2"]
    assert lines[3].startswith("2 inits (the Hub was not searched); load one with lsml_hub.create_model(INIT")


def test_list_filters_and_says_when_nothing_matches(registry, hub_offline_cache, capsys):
    registered(registry, "resnet20_cifar.reptile_paper8")
    registered(registry, "resnet20_cifar.cts_paper8")
    assert main(["list", "*reptile*"]) == 0
    out = capsys.readouterr().out
    assert "resnet20_cifar.reptile_paper8" in out and "cts_paper8" not in out and "1 init " in out
    assert main(["list", "vit*"]) == 0
    assert capsys.readouterr().out == "no init matches 'vit*'; `lsml-hub list` shows all 2\n"


def test_list_asks_the_hub_when_online_and_not_with_no_hub(registry, hub_offline_cache, monkeypatch, capsys):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    hub = FakeHub(monkeypatch, {"someone/test_resnet.cts": None})
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["hf-hub:someone/test_resnet.cts", "hub", "test_resnet", "-", "-", "-"]
    assert lines[2].startswith("1 init; load one with")
    assert main(["list", "--no-hub"]) == 0
    assert capsys.readouterr().out.startswith("no init available: ")
    assert len(hub.list_calls) == 1


def test_list_with_the_hub_unreachable_warns_and_lists_the_local_inits(registry, hub_make_init, hub_offline_cache,
                                                                      monkeypatch, capsys, caplog):
    add_to_hub_cache(hub_make_init(), "owner/name")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    FakeHub(monkeypatch, {}, error=http_client_module().ConnectError("[Errno 101] Network is unreachable"))
    assert main(["list"]) == 0
    captured = capsys.readouterr()
    assert "hf-hub:owner/name" in captured.out and "Traceback" not in captured.err
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [(
        "WARNING", "could not list lsml-hub inits on the Hugging Face Hub ([Errno 101] Network is unreachable); "
                   "listing local inits only (HF_HUB_OFFLINE=1 skips the Hub)")]


def test_info_on_a_folder_verifies_and_summarizes(hub_make_init, capsys):
    folder = hub_make_init()
    assert main(["info", str(folder)]) == 0
    out = capsys.readouterr().out
    sha = verify_init(folder).sha256
    assert f"{sha} (verified: the weights match it and load strictly as" in out
    assert "resnet20_cifar" in out and "name=cts, meta_lr=0.05" in out and "latin_upper, cifar100" in out


def test_info_and_cache_add_expand_a_home_folder_as_loading_does(hub_make_init, hub_offline_cache, capsys,
                                                                 monkeypatch):
    folder = hub_make_init()
    monkeypatch.setenv("HOME", str(folder.parent))
    assert main(["info", f"local-dir:~/{folder.name}"]) == 0
    assert "(verified: the weights match it" in capsys.readouterr().out
    assert main(["cache", "add", f"~/{folder.name}", "owner/home"]) == 0
    cached, local = (lsml_hub.create_model(init).state_dict() for init in ("hf-hub:owner/home", folder))
    assert all(torch.equal(cached[k], local[k]) for k in local)


def test_info_on_a_cached_hub_init(hub_make_init, hub_offline_cache, capsys):
    add_to_hub_cache(hub_make_init(), "owner/name")
    assert main(["info", "hf-hub:owner/name"]) == 0
    out = capsys.readouterr().out
    assert "hf-hub:owner/name" in out and "(recorded)" in out


def test_info_on_a_registered_name_not_cached_still_shows_the_entry(registry, hub_offline_cache, capsys):
    registered(registry, hub_id="lsml-hub/resnet20_cifar.cts_paper8")
    assert main(["info", "resnet20_cifar.cts_paper8"]) == 0
    out = capsys.readouterr().out
    assert "hf-hub:lsml-hub/resnet20_cifar.cts_paper8" in out and "not measured yet" in out
    assert "config: not available here" in out and "HF_HUB_OFFLINE" in out


def test_info_on_an_unknown_name_is_a_one_line_error(registry, capsys):
    registered(registry)
    assert main(["info", "resnet20_cifar.cts_papr8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lsml-hub info: error: unknown init") and "did you mean" in err and "\n" not in err


def test_publish_then_push(hub_run_dir, monkeypatch, capsys, tmp_path):
    assert main(["publish", str(hub_run_dir), str(tmp_path / "out"), "--repo-id", "owner/name"]) == 0
    assert "lsml-hub push" in capsys.readouterr().out
    assert 'hf-hub:owner/name"' in (tmp_path / "out" / "README.md").read_text()

    sent = {}
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: RepoUrl(f"https://huggingface.co/{repo_id}"))
    monkeypatch.setattr(HfApi, "create_tag", lambda self, repo_id, **kw: sent.setdefault("tag", kw["tag"]))

    def upload_folder(self, **kw):
        sent.update(kw)
        return CommitInfo(commit_url="https://huggingface.co/owner/name/commit/abc", commit_message="m",
                          commit_description="", oid="a" * 40)

    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    monkeypatch.setattr(HfApi, "list_repo_refs", lambda self, repo_id, **kw: GitRefs([], [], []))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the Hub is faked above
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    assert main(["push", str(tmp_path / "out"), "owner/name", "--tag", "v1", "--commit-message", "hello"]) == 0
    assert sent["repo_id"] == "owner/name" and sent["commit_message"] == "hello" and sent["tag"] == "v1"
    out = capsys.readouterr().out
    assert "https://huggingface.co/owner/name/commit/abc" in out and "hf_fake" not in out


def test_publish_defaults_to_run_dir_publish(hub_run_dir):
    assert main(["publish", str(hub_run_dir)]) == 0
    assert verify_init(hub_run_dir / "publish").architecture == "resnet20_cifar"


@pytest.mark.parametrize(("case", "message"), [
    ("missing", "{run} does not exist; give a run folder (meta-train's output_dir, which holds config.yaml, "
                "metrics.jsonl and init/)"),
    ("not_a_run", "{run} is not a run folder (no config.yaml); give meta-train's output_dir, which holds "
                  "config.yaml, metrics.jsonl and init/"),
    ("unfinished", "run not finished: {run} has no init/ yet; rerun `lsml-hub meta-train {run}/config.yaml` "
                   "to resume it, then publish"),
    ("unfinished_with_checkpoint", "run not finished: {run} has no init/ yet; rerun `lsml-hub meta-train "
                                   "{run}/config.yaml` to resume it from its checkpoint, then publish"),
])
def test_publish_says_what_is_wrong_with_the_run_folder(tmp_path, capsys, case, message):
    run = tmp_path / "run"
    if case != "missing":
        run.mkdir()
        (run / "metrics.jsonl").write_text("")
    if case.startswith("unfinished"):
        (run / "config.yaml").write_text(yaml.safe_dump({"steps": 400, "output_dir": str(run)}))
    if case == "unfinished_with_checkpoint":
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "last.pt").write_bytes(b"")
    assert main(["publish", str(run)]) == 2
    assert capsys.readouterr().err == f"lsml-hub publish: error: {message.format(run=run)}\n"
    assert not (run / "publish").exists()


def test_push_without_token_is_a_one_line_error(hub_make_init, hub_no_token, capsys, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert main(["push", str(hub_make_init()), "owner/name"]) == 2
    err = capsys.readouterr().err.strip()
    # Only what works from the command line: there is no --token flag to pass.
    assert err == "lsml-hub push: error: no Hugging Face token: set HF_TOKEN or run `hf auth login`, then retry"


def test_push_has_no_token_flag_to_suggest(hub_make_init, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["push", str(hub_make_init()), "owner/name", "--token", "hf_x"])
    assert exit_.value.code == 2 and "unrecognized arguments: --token hf_x" in capsys.readouterr().err


@pytest.mark.slow  # each process imports torch and timm (several seconds on a small machine)
@pytest.mark.parametrize("case", ["damaged_init", "push_without_token"])
def test_user_errors_exit_2_without_traceback_in_a_real_process(hub_make_init, tmp_path, case):
    folder = hub_make_init()
    if case == "damaged_init":
        (folder / "model.safetensors").write_bytes(b"\0" * 64)
        args = ["info", str(folder)]
    else:
        args = ["push", str(folder), "owner/name"]
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(HF_HOME=str(tmp_path / "hf-home"), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "lsml_hub", *args], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"lsml-hub {args[0]}: error: ")


# ---- lsml-hub cache add ------------------------------------------------------------------------------


def test_cache_add_then_the_hub_string_loads_offline_and_is_listed(hub_make_init, hub_offline_cache, capsys):
    folder = hub_make_init("resnet20_cifar")
    assert main(["cache", "add", str(folder), "me/resnet20_cifar.cts"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"added {folder} to the Hugging Face cache ({hub_offline_cache}) as "
                             "hf-hub:me/resnet20_cifar.cts (")
    assert out[1].startswith("load it with HF_HUB_OFFLINE=1 (no Hub needed): "
                             "lsml_hub.create_model('hf-hub:me/resnet20_cifar.cts', num_classes=...)")
    model = lsml_hub.create_model("hf-hub:me/resnet20_cifar.cts", num_classes=4)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in safetensors.torch.load_file(folder / "model.safetensors").items())
    assert main(["list"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:2] == ["hf-hub:me/resnet20_cifar.cts", "cache"]


def test_cache_add_under_a_revision(hub_make_init, hub_offline_cache, capsys):
    folder = hub_make_init()
    assert main(["cache", "add", str(folder), "me/demo", "--revision", "v1"]) == 0
    assert "as hf-hub:me/demo@v1 (" in capsys.readouterr().out
    assert lsml_hub.load_init_config("hf-hub:me/demo@v1").sha256 == verify_init(folder).sha256
    with pytest.raises(InitError, match="not in the Hugging Face cache"):
        lsml_hub.load_init_config("hf-hub:me/demo")  # only v1 was added


def test_cache_add_twice_is_harmless_but_another_init_under_a_taken_revision_needs_force(
        hub_make_init, hub_offline_cache, capsys):
    first, second = hub_make_init(name="first"), hub_make_init(name="second", steps=1)
    assert main(["cache", "add", str(first), "me/demo"]) == 0
    assert main(["cache", "add", str(first), "me/demo"]) == 0
    capsys.readouterr()
    before = sorted(p.relative_to(hub_offline_cache) for p in hub_offline_cache.rglob("*"))
    assert main(["cache", "add", str(second), "me/demo"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lsml-hub cache: error: the Hugging Face cache already holds me/demo@main (commit ")
    assert err.endswith("another init; add this one under another revision, or replace it (`lsml-hub cache add "
                        "--revision R` or `--force`; in Python revision= or overwrite=True)\n")
    assert sorted(p.relative_to(hub_offline_cache) for p in hub_offline_cache.rglob("*")) == before
    assert main(["cache", "add", str(second), "me/demo", "--force"]) == 0
    assert lsml_hub.load_init_config("hf-hub:me/demo").sha256 == verify_init(second).sha256


@pytest.mark.parametrize(("case", "message"), [
    ("missing", "{folder} does not exist; an init folder holds config.json, model.safetensors, README.md"),
    ("user_files", "{folder} is not a complete init: missing config.json, model.safetensors, README.md"),
    ("tampered", "{folder}/model.safetensors: sha256 "),
    ("bad_repo_id", "bad Hub id 'demo': use OWNER/NAME, e.g. me/resnet20_cifar.cts"),
    ("bad_revision", "bad revision 'refs/pr/1': use a branch or tag name such as main or v1"),
])
def test_cache_add_refuses_bad_input_with_one_line_and_writes_nothing(hub_make_init, hub_offline_cache, capsys,
                                                                      tmp_path, case, message):
    folder = tmp_path / "folder" if case in ("missing", "user_files") else hub_make_init()
    args = ["cache", "add", str(folder), "demo" if case == "bad_repo_id" else "me/demo"]
    if case == "user_files":
        folder.mkdir()
        (folder / "notes.txt").write_text("mine")
    if case == "tampered":
        (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:-4])
    if case == "bad_revision":
        args += ["--revision", "refs/pr/1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lsml-hub cache: error: {message.format(folder=folder)}") and err.count("\n") == 1
    assert list(hub_offline_cache.iterdir()) == []


def test_cache_add_help_documents_every_argument(capsys):
    actions = next(a for a in _subparser("cache")._actions if isinstance(a, argparse._SubParsersAction))
    add = actions.choices["add"]
    assert add.description and [a.dest for a in add._actions if not a.help] == []
    with pytest.raises(SystemExit):
        main(["cache", "add", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "usage: lsml-hub cache add [-h] [--revision REVISION] [--force] INIT_DIR OWNER/NAME" in out
    assert "HF_HUB_OFFLINE=1 then loads it as hf-hub:OWNER/NAME" in out


@pytest.mark.slow  # each process imports torch and timm (several seconds on a small machine)
def test_cache_add_writes_where_hf_home_says_and_list_finds_it_in_a_real_process(hub_make_init, tmp_path):
    folder = hub_make_init()
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)

    def run(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "lsml_hub", *args], capture_output=True, text=True, env=env,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert "as hf-hub:me/demo (" in run("cache", "add", str(folder), "me/demo")
    assert (tmp_path / "hf-home" / "hub" / "models--me--demo" / "refs" / "main").is_file()
    assert run("list").splitlines()[1].split()[:2] == ["hf-hub:me/demo", "cache"]


def _subparser(name: str) -> argparse.ArgumentParser:
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices[name]


@pytest.mark.parametrize("command", ["list", "info", "publish", "push", "meta-train"])
def test_every_argument_and_command_has_help(command):
    parser = _subparser(command)
    assert parser.description
    undocumented = [a.dest for a in parser._actions if not a.help]
    assert undocumented == []


def test_publish_help_describes_its_positionals(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["publish", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines at the terminal width
    assert exit_.value.code == 0
    assert "RUN_DIR a finished run: meta-train's output_dir, holding config.yaml, metrics.jsonl and init/" in out
    assert "OUT_DIR where to write the init (default: RUN_DIR/publish)" in out


def test_meta_train_help_points_to_the_config_keys_and_shows_an_override(capsys):
    with pytest.raises(SystemExit):
        main(["meta-train", "--help"])
    out = capsys.readouterr().out
    assert "recipes/configs/tiny.yaml shows every key" in out
    assert "lsml-hub meta-train recipes/configs/tiny.yaml steps=100 output_dir=runs/tiny_reptile" in out


def test_meta_train_without_arguments_requires_only_the_config(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["meta-train"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert "usage: lsml-hub meta-train [-h] CONFIG [KEY=VALUE ...]" in err  # overrides shown as optional
    assert err.rstrip().endswith("error: the following arguments are required: CONFIG")
