"""``lsml-hub list | info | publish | push`` through the real CLI entry point, and the commands' help texts."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from huggingface_hub import CommitInfo, HfApi, RepoUrl

from lsml_hub.cli import build_parser, main
from lsml_hub.hub import add_to_hub_cache, verify_init


@pytest.fixture
def hub_run_dir(hub_make_init, tmp_path) -> Path:
    hub_make_init(name="run/init")
    run = tmp_path / "run"
    evals = [{"step": s, "kind": "eval", "task": "latin_upper", "loss": 1.0, "accuracy": s / 1000} for s in (200, 400)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    (run / "config.yaml").write_text(yaml.safe_dump({"steps": 400, "algorithm": {"name": "cts"}}))
    return run


def test_list_prints_the_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "resnet20_cifar.cts_paper8" in out and "lsml-hub/resnet20_cifar.cts_paper8" in out
    assert "none is on the Hub yet" in out


def test_list_filters(capsys):
    assert main(["list", "*reptile*"]) == 0
    out = capsys.readouterr().out
    assert "resnet20_cifar.reptile_paper8" in out and "cts_paper8" not in out


def test_info_on_a_folder_verifies_and_summarizes(hub_make_init, capsys):
    folder = hub_make_init()
    assert main(["info", str(folder)]) == 0
    out = capsys.readouterr().out
    sha = verify_init(folder).sha256
    assert f"{sha} (verified: the weights match it and load strictly as" in out
    assert "resnet20_cifar" in out and "name=cts, meta_lr=0.05" in out and "latin_upper, cifar100" in out


def test_info_on_a_cached_hub_init(hub_make_init, hub_offline_cache, capsys):
    add_to_hub_cache(hub_make_init(), "owner/name")
    assert main(["info", "hf-hub:owner/name"]) == 0
    out = capsys.readouterr().out
    assert "hf-hub:owner/name" in out and "(recorded)" in out


def test_info_on_a_registry_name_not_cached_still_shows_the_entry(hub_offline_cache, capsys):
    assert main(["info", "resnet20_cifar.cts_paper8"]) == 0
    out = capsys.readouterr().out
    assert "hf-hub:lsml-hub/resnet20_cifar.cts_paper8" in out and "not measured yet" in out
    assert "config: not available here" in out and "HF_HUB_OFFLINE" in out


def test_info_on_an_unknown_name_is_a_one_line_error(capsys):
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


def test_push_without_token_is_a_one_line_error(hub_make_init, hub_no_token, capsys):
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
