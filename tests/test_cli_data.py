"""``lsml-hub data``: list builtins, summarize specs, and one-line errors without a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from _isolation import isolated_caches

from lsml_hub.cli import main
from lsml_hub.data import BUILTINS


@pytest.fixture(scope="module", autouse=True)
def _caches(tmp_path_factory):
    with isolated_caches(tmp_path_factory.mktemp("caches")) as root:
        yield root


def test_data_lists_builtins(capsys):
    assert main(["data"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(BUILTINS)
    assert [line.split()[0] for line in out] == [f"builtin:{name}" for name in BUILTINS]
    digits = next(line for line in out if line.startswith("builtin:digits "))
    assert "32px" in digits and "scikit-learn" in digits


def test_data_summarizes_specs(capsys):
    assert main(["data", "builtin:digits?classes=3,1", "builtin:printed_digits?samples_per_class=2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["source"] == "builtin:digits" and first["classes"] == [3, 1] and first["num_classes"] == 2
    assert first["image_size"] == 32 and first["train_size"] + first["eval_size"] == 183 + 182
    assert (second["num_classes"], second["train_size"], second["eval_size"]) == (10, 20, 100)


def test_first_use_of_a_builtin_logs_one_line_and_no_progress_bars(monkeypatch, tmp_path, caplog, capsys):
    monkeypatch.setenv("LSML_HUB_CACHE", str(tmp_path / "fresh"))
    with caplog.at_level("INFO", logger="lsml_hub"):
        assert main(["data", "builtin:symbols?samples_per_class=2"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["train_size"] == 2 * json.loads(captured.out)["num_classes"]
    assert "Saving the dataset" not in captured.err
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("lsml_hub")]
    assert len(lines) == 1 and lines[0].startswith("materializing builtin:symbols into ")


@pytest.mark.slow  # a fresh interpreter imports torch, timm and datasets: several seconds
def test_first_use_of_a_builtin_in_a_real_process_prints_one_line_to_stderr(tmp_path):
    env = {**os.environ, "LSML_HUB_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_DATASETS_DISABLE_PROGRESS_BARS", None)
    proc = subprocess.run([sys.executable, "-m", "lsml_hub", "data", "builtin:symbols?samples_per_class=2"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"materializing builtin:symbols into {tmp_path / 'cache'}")


@pytest.mark.parametrize(
    ("spec", "words"),
    [("builtin:latin_uper", ["'latin_uper'", "did you mean latin_upper"]),
     ("builtin:digits?colour=red", ["'colour'", "valid keys"]),
     ("./no/such/dir", ["'./no/such/dir'", "does not exist"])],
)
def test_bad_spec_is_one_line_exit_2(capsys, spec, words):
    assert main(["data", spec]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("lsml-hub data: error: ") and "\n" not in err
    for word in words:
        assert word in err
    assert captured.out == ""


@pytest.mark.slow  # a fresh interpreter imports torch, timm and datasets: several seconds
def test_bad_spec_in_a_real_process_has_no_traceback(tmp_path):
    env = {**os.environ, "LSML_HUB_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "lsml_hub", "data", "builtin:nope"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("lsml-hub data: error: unknown builtin source 'nope'")
