"""``lsml-hub finetune`` through ``lsml_hub.cli.main`` and as a real ``python -m lsml_hub`` process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
from _isolation import finetune_isolation

import lsml_hub
from lsml_hub.cli import main

TARGET = "builtin:digits?classes=0-4"  # 5 classes: 721 train / 180 eval samples
TINY = ["--steps", "6", "--batch-size", "8", "--max-train-samples", "30", "--eval-every", "3", "--no-progress"]


@pytest.fixture(scope="module", autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory):
    """The shared builtin cache (inherited by subprocesses, with OMP_NUM_THREADS=1); one torch thread."""
    with finetune_isolation(tmp_path_factory, omp_one_thread=True):
        yield


def test_cli_finetune_prints_results_and_writes_result_and_weights(tmp_path, capsys):
    out = tmp_path / "ft"
    rc = main(["finetune", "--init", "scratch:test_resnet", "--data", TARGET, *TINY, "--lr", "0.01",
               "--schedule", "cosine", "--out", str(out)])

    assert rc == 0
    stdout = capsys.readouterr().out
    assert "digits_0-4: 30 train samples, 6 steps, 32 px" in stdout
    result = json.loads((out / "result.json").read_text())
    assert result["source"] == "scratch:test_resnet"
    assert [p["step"] for p in result["history"]] == [3, 6]
    assert result["config"]["schedule"] == "cosine" and result["config"]["lr"] == 0.01
    assert f"final accuracy {100 * result['final']['accuracy']:.2f}%" in stdout
    model = timm.create_model("test_resnet", num_classes=5)
    model.load_state_dict(safetensors.torch.load_file(out / "model.safetensors"), strict=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--schedule", "warmup"], "unknown schedule 'warmup'; valid: step, cosine, constant"),
        (["--optimizer", "sgdd"], "unknown optimizer 'sgdd' (did you mean sgd"),
        (["--steps", "0"], "steps must be a positive integer, got 0"),
        (["--seed", "-1"], "seed must be a non-negative integer (at most 2**63 - 1), got -1"),
        (["--device", "foo"], "unknown device 'foo'; valid: auto, cpu, cuda, cuda:N, mps"),
        (["--max-train-samples", "9999"], "max_train_samples=9999 but target 'digits_0-4' has 721 training"),
        (["--max-train-samples", "4"], "max_train_samples=4 is fewer than the 5 classes of target 'digits_0-4', "
                                       "so some classes would get no training sample (valid: 5-721, or None for all)"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args, message, capsys):
    rc = main(["finetune", "--init", "scratch:test_resnet", "--data", TARGET, *TINY, *args])

    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("lsml-hub finetune: error: ") and message in err[-1]
    assert not any("Traceback" in line for line in err)


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "mps"])
def test_cli_unavailable_device_is_one_line_exit_2_before_any_work(device, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    # an unknown target: had any work started, the error would be about the data
    rc = main(["finetune", "--init", "scratch:test_resnet", "--data", "builtin:no_such_source", *TINY,
               "--device", device])

    assert rc == 2
    err = capsys.readouterr().err.strip()
    kind = "MPS" if device == "mps" else "CUDA"
    assert err == f"lsml-hub finetune: error: device {device!r} requested but {kind} is not available; use cpu or auto"


def test_cli_unknown_init_is_one_line_and_exit_2(tmp_path, capsys):
    rc = main(["finetune", "--init", str(tmp_path / "missing"), "--data", TARGET, *TINY])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lsml-hub finetune: error: init folder") and "does not exist" in err


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_cli_out_into_an_init_folder_is_refused_before_any_work_and_leaves_it_untouched(tmp_path, capsys):
    torch.manual_seed(0)
    init = lsml_hub.save_init(tmp_path / "inits" / "cts", timm.create_model("test_resnet", num_classes=0),
                              lsml={"algorithm": {"name": "cts"}})
    before = _contents(init)
    # an unknown target: had any work started, the error would be about the data
    rc = main(["finetune", "--init", "scratch:test_resnet", "--data", "builtin:no_such_source", *TINY,
               "--out", str(init)])

    assert rc == 2
    assert capsys.readouterr().err.strip() == (
        f"lsml-hub finetune: error: output folder {init} holds files that finetune does not write: README.md, "
        "config.json (it writes only model.safetensors, result.json); choose a new or empty folder, or move those out")
    assert _contents(init) == before


def test_cli_out_names_a_few_foreign_files_and_counts_the_rest(tmp_path, capsys):
    for name in ("a.txt", "b.txt", "c.txt", "d.txt", "e.txt", "result.json"):
        (tmp_path / name).write_text(name)
    rc = main(["finetune", "--init", "scratch:test_resnet", "--data", "builtin:no_such_source", *TINY,
               "--out", str(tmp_path)])

    assert rc == 2
    assert "not write: a.txt, b.txt, c.txt and 2 more (it writes only" in capsys.readouterr().err
    assert (tmp_path / "result.json").read_text() == "result.json"


def test_cli_out_holding_a_users_own_model_file_but_no_result_is_refused(tmp_path, capsys):
    (tmp_path / "model.safetensors").write_bytes(b"someone's weights")
    rc = main(["finetune", "--init", "scratch:test_resnet", "--data", "builtin:no_such_source", *TINY,
               "--out", str(tmp_path)])

    assert rc == 2
    assert capsys.readouterr().err.strip() == (
        f"lsml-hub finetune: error: output folder {tmp_path} holds model.safetensors but no result.json, so it is "
        "not an earlier finetune output and would be overwritten; choose a new or empty folder")
    assert (tmp_path / "model.safetensors").read_bytes() == b"someone's weights"


@pytest.mark.parametrize("inside", [False, True])
def test_cli_out_that_is_a_file_is_refused_before_any_work(tmp_path, capsys, inside):
    file = tmp_path / "notes.txt"
    file.write_text("keep me")
    out = file / "ft" if inside else file
    rc = main(["finetune", "--init", "scratch:test_resnet", "--data", "builtin:no_such_source", *TINY,
               "--out", str(out)])

    assert rc == 2
    where = f"is inside {file}, which is a file" if inside else "is a file"
    assert capsys.readouterr().err.strip() == (
        f"lsml-hub finetune: error: output folder {out} {where}; give a folder (new or empty) for "
        "model.safetensors, result.json")
    assert file.read_text() == "keep me"


def test_cli_rerun_into_its_own_output_folder_replaces_its_files(tmp_path, capsys):
    out = tmp_path / "ft"
    args = ["finetune", "--init", "scratch:test_resnet", "--data", TARGET, *TINY, "--steps", "2",
            "--eval-every", "2", "--out", str(out)]
    assert main([*args, "--seed", "1"]) == 0
    (out / ".result.json.x1y2.tmp").write_text("{")  # what a killed write leaves behind

    assert main([*args, "--seed", "2"]) == 0

    assert "wrote" not in capsys.readouterr().out  # the library logs it; stdout holds the result
    assert json.loads((out / "result.json").read_text())["config"]["seed"] == 2
    assert {p.name for p in out.iterdir()} == {"result.json", "model.safetensors", ".result.json.x1y2.tmp"}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lsml_hub", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


@pytest.mark.slow
def test_python_m_lsml_hub_finetune_runs_end_to_end(tmp_path):
    proc = _run("finetune", "--init", "scratch:test_resnet", "--data", TARGET, *TINY, "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "final accuracy" in proc.stdout
    assert json.loads((tmp_path / "result.json").read_text())["train_samples"] == 30


@pytest.mark.slow
def test_python_m_lsml_hub_finetune_bad_input_exits_2_without_traceback():
    proc = _run("finetune", "--init", "scratch:test_resnet", "--data", TARGET, "--steps", "-1")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "lsml-hub finetune: error: steps must be a positive integer, got -1"
