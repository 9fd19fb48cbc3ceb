"""lsml_hub.compare: rows and baselines, the table, CSV, JSON and PNG, recording into init folders, bad input."""

from __future__ import annotations

import csv
import json
import logging
import re
import statistics

import pytest
import safetensors.torch
import timm
import torch
from _isolation import finetune_isolation
from huggingface_hub import constants
from PIL import Image

import lsml_hub
from lsml_hub.cli import main
from lsml_hub.data import load_task
from lsml_hub.errors import ConfigError, DataError, InitError
from lsml_hub.hub import verify_init
from lsml_hub.metatest import compare
from lsml_hub.metatest.comparing import find_cached_pretrained, pretrained_baseline
from lsml_hub.metatest.record import CARD_BEGIN, record_meta_test

TARGET = "builtin:digits?classes=0-4"  # 5 classes: 721 train / 180 eval samples
TINY = dict(steps=6, batch_size=8, max_train_samples=30, eval_every=3, progress=False)
GREY_INPUTS = {"input_size": (3, 32, 32), "mean": (0.5,) * 3, "std": (0.25,) * 3}


@pytest.fixture(scope="module", autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory):
    """The shared builtin cache, an empty Hugging Face cache, and one torch thread on the 2 shared cores."""
    with finetune_isolation(tmp_path_factory, empty_hf_cache=True):
        yield


@pytest.fixture(scope="module")
def target():
    return load_task(TARGET)


@pytest.fixture(scope="module")
def init_dir(tmp_path_factory):
    torch.manual_seed(7)
    model = timm.create_model("test_resnet", num_classes=0)
    return lsml_hub.save_init(tmp_path_factory.mktemp("inits") / "meta", model,
                              lsml={"algorithm": {"name": "cts"}}, pretrained_cfg=GREY_INPUTS)


@pytest.fixture(scope="module")
def compared(tmp_path_factory, target, init_dir):
    """One comparison for the module: an init folder and an in-memory model, two seeds, both baselines."""
    torch.manual_seed(8)
    module = timm.create_model("test_resnet", num_classes=0, pretrained_cfg_overlay={"input_size": (3, 32, 32)})
    module_before = {k: v.clone() for k, v in module.state_dict().items()}
    sha_before = json.loads((init_dir / "config.json").read_text())["lsml"]["sha256"]
    out = tmp_path_factory.mktemp("compare")
    cmp = compare({"meta": str(init_dir), "module": module}, target, seeds=(0, 1), out_dir=out, record=True,
                  **TINY)
    return cmp, out, module, module_before, sha_before


def test_rows_cover_inits_and_scratch_with_every_seed(compared):
    cmp, _, module, module_before, _ = compared
    assert [(r.name, r.kind, r.source) for r in cmp.rows] == [
        ("meta", "init", cmp.rows[0].source), ("module", "init", "test_resnet"),
        ("scratch", "scratch", "scratch:test_resnet"),
    ]
    assert all([run.seed for run in row.runs] == [0, 1] for row in cmp.rows)
    assert "pretrained" in cmp.skipped and "Hugging Face cache" in cmp.skipped["pretrained"]
    # scratch is fed exactly the first init's inputs (size, mean, std from its pretrained_cfg)
    assert cmp.row("scratch").inputs == cmp.row("meta").inputs
    assert cmp.row("scratch").inputs.std == (0.25, 0.25, 0.25) and cmp.row("scratch").inputs.image_size == 32
    # an in-memory model is copied for each seed, never trained itself
    assert all(torch.equal(module.state_dict()[k], v) for k, v in module_before.items())
    assert cmp.target["train_samples"] == 30 and cmp.seeds == [0, 1] and "seed" not in cmp.config


def test_statistics_are_means_stds_and_paired_deltas(compared):
    cmp = compared[0]
    meta, scratch = cmp.row("meta"), cmp.row("scratch")
    assert meta.final == (statistics.fmean(meta.final_accuracies), statistics.stdev(meta.final_accuracies))
    diffs = [a - b for a, b in zip(meta.final_accuracies, scratch.final_accuracies)]
    assert cmp.delta("meta") == pytest.approx((statistics.fmean(diffs), statistics.stdev(diffs)))
    assert cmp.delta("scratch") is None
    curve = meta.curve()
    assert curve.steps == [3, 6]
    assert curve.mean[-1] == pytest.approx(meta.final[0]) and curve.std[-1] == pytest.approx(meta.final[1])


def test_table_shows_every_row_with_mean_and_std(compared):
    cmp = compared[0]
    lines = cmp.table().splitlines()
    assert lines[0].startswith("target digits_0-4 (30 train / 180 eval samples), 6 steps, adam lr 0.001")
    assert lines[1].split()[:2] == ["name", "kind"] and "Δ final vs scratch (pp)" in lines[1]
    meta = cmp.row("meta")
    assert lines[2].startswith("meta ") and f"{100 * meta.final[0]:.2f} ± {100 * meta.final[1]:.2f}" in lines[2]
    assert lines[4].startswith("scratch ") and lines[4].endswith("-")
    assert lines[5].startswith("(skipped pretrained: ")


def test_csv_parses_with_means_and_per_seed_values(compared):
    cmp, out = compared[:2]
    with open(out / "comparison.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == ["meta", "module", "scratch"]
    for row, expected in zip(rows, cmp.rows):
        per_seed = [float(row["final_acc_seed0"]), float(row["final_acc_seed1"])]
        assert per_seed == expected.final_accuracies
        assert float(row["final_acc_mean"]) == pytest.approx(statistics.fmean(per_seed))
        assert float(row["best_acc_mean"]) >= float(row["final_acc_mean"]) - 1e-12
        assert row["seeds"] == "2"
    assert float(rows[0]["delta_vs_scratch_mean"]) == pytest.approx(cmp.delta("meta")[0])
    assert rows[2]["delta_vs_scratch_mean"] == ""


def test_json_holds_settings_rows_and_curves(compared):
    cmp, out = compared[:2]
    data = json.loads((out / "comparison.json").read_text())
    assert data["seeds"] == [0, 1] and data["config"]["steps"] == 6
    assert [r["name"] for r in data["rows"]] == ["meta", "module", "scratch"]
    run = data["rows"][0]["runs"][1]
    assert run["seed"] == 1 and [p["step"] for p in run["history"]] == [3, 6]
    assert data["rows"][0]["final_accuracy"]["per_seed"] == cmp.row("meta").final_accuracies
    assert set(data["files"]) == {"csv", "json", "plot"} and "pretrained" in data["skipped"]


def test_curves_png_opens(compared):
    out = compared[1]
    with Image.open(out / "curves.png") as image:
        assert image.format == "PNG" and image.size == (640, 400)
        image.verify()


def test_record_writes_meta_test_into_the_local_init_and_keeps_its_sha(compared, init_dir):
    cmp, _, _, _, sha_before = compared
    config = json.loads((init_dir / "config.json").read_text())
    entry = config["lsml"]["meta_test"]["digits_0-4_n30"]
    assert entry["final_accuracy"]["per_seed"] == cmp.row("meta").final_accuracies
    assert entry["seeds"] == [0, 1] and entry["finetune"]["steps"] == 6 and entry["train_samples"] == 30
    assert entry["baselines"]["scratch"]["final_accuracy_mean"] == cmp.row("scratch").final[0]
    assert config["lsml"]["sha256"] == sha_before and config["lsml"]["algorithm"] == {"name": "cts"}
    verify_init(init_dir)  # weights untouched: still verifies
    card = (init_dir / "README.md").read_text()
    meta = cmp.row("meta")
    assert "## Meta-test results" in card and f"| digits_0-4 | 30 | 6 | 2 | {100 * meta.final[0]:.2f} ±" in card
    assert card.index("## Meta-test results") < card.index("## Citation")

    record_meta_test(cmp)  # recording again replaces the section instead of adding one
    assert (init_dir / "README.md").read_text().count(CARD_BEGIN) == 1


def test_record_into_a_read_only_init_says_it_is_the_record(init_dir, target, monkeypatch):
    import tempfile

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(init_dir))

    # The folder check proves writability with a probe file; as root (CI) file modes would not stop it.
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", read_only)
    with pytest.raises(ConfigError, match=rf"^cannot record the results into init {init_dir}: output folder .* cannot "
                                          r"be written: Permission denied .*; compare without record \(--record\)"):
        compare({"meta": str(init_dir)}, target, seeds=(0,), record=True, **TINY)


def test_info_shows_the_recorded_meta_test(compared, init_dir, capsys):
    cmp = compared[0]
    capsys.readouterr()
    assert main(["info", str(init_dir)]) == 0
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("meta-test")]
    meta, scratch = cmp.row("meta").final, cmp.row("scratch").final
    assert line.split(None, 1)[1] == (f"digits_0-4_n30 final {100 * meta[0]:.2f} ± {100 * meta[1]:.2f}%, "
                                      f"scratch {100 * scratch[0]:.2f}%")


def test_pretrained_baseline_is_skipped_with_an_info_log_when_not_cached(caplog):
    with caplog.at_level(logging.INFO, logger="lsml_hub.metatest.comparing"):
        assert pretrained_baseline("test_resnet") is None
    assert "skipping the pretrained baseline" in caplog.text and "test_resnet" in caplog.text


def test_pretrained_baseline_loads_cached_timm_weights_without_network(tmp_path, monkeypatch, target, init_dir):
    torch.manual_seed(3)
    weights = timm.create_model("test_resnet").state_dict()
    snapshot = tmp_path / "models--timm--test_resnet.r160_in1k" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    safetensors.torch.save_file(weights, snapshot / "model.safetensors")
    (tmp_path / "models--timm--test_resnet.r160_in1k" / "refs").mkdir()
    (tmp_path / "models--timm--test_resnet.r160_in1k" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))

    found = find_cached_pretrained("test_resnet")
    assert found.model_name == "test_resnet.r160_in1k" and found.path.name == "model.safetensors"
    model = pretrained_baseline("test_resnet").make(5)
    assert torch.equal(model.conv1[0].weight, weights["conv1.0.weight"]) and model.num_classes == 5

    cmp = compare([str(init_dir)], target, baselines=("pretrained",), image_size=32,
                  **{**TINY, "steps": 2, "eval_every": 2})
    assert [(r.kind, r.source) for r in cmp.rows][1] == ("pretrained", "timm:test_resnet.r160_in1k")
    assert cmp.row("pretrained").inputs.mean == (0.5, 0.5, 0.5)  # its own pretrained_cfg, not the init's


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"seed": 1}, ConfigError, r"compare\(\) takes seeds=\(\.\.\.\), not seed="),
        ({"seeds": ()}, ConfigError, r"seeds must be distinct non-negative integers .*, at least one; got \[\]"),
        ({"seeds": (0, -1)}, ConfigError, r"seeds must be distinct non-negative integers \(at most 2\*\*63 - 1\), "
                                          r"at least one; got \[0, -1\]"),
        ({"seeds": (1, 1)}, ConfigError, r"seeds must be distinct non-negative integers .*; got \[1, 1\]"),
        ({"seeds": ([0],)}, ConfigError, r"seeds must be distinct non-negative integers .*; got \[\[0\]\]"),
        ({"seeds": 3}, ConfigError, r"seeds must be a sequence of integers such as \(0, 1, 2\), got 3"),
        ({"device": "gpu"}, ConfigError, r"unknown device 'gpu'; valid: auto, cpu, cuda, cuda:N, mps"),
        ({"baselines": ("imagenet",)}, ConfigError, r"bad baselines \['imagenet'\]; valid: scratch, pretrained"),
        ({"stepz": 3}, ConfigError, r"unknown fine-tuning option\(s\) \['stepz'\]; valid: steps, "),
        ({"schedule": "linear"}, ConfigError, r"unknown schedule 'linear'; valid: step, cosine, constant"),
        ({"max_train_samples": 10_000}, DataError, r"max_train_samples=10000 but target 'digits_0-4' has 721"),
        ({"max_train_samples": 3}, DataError, r"max_train_samples=3 is fewer than the 5 classes of target "
                                              r"'digits_0-4', so some classes would get no training sample"),
    ],
)
def test_bad_arguments_fail_before_any_run(target, kwargs, error, message):
    with pytest.raises(error, match=message):
        compare(["scratch:test_resnet"], target, **{**TINY, **kwargs})


def test_cli_compare_negative_seed_is_one_line_and_exit_2(init_dir, capsys):
    rc = main(["compare", "--init", str(init_dir), "--data", TARGET, "--seeds", "0", "-1", "--no-progress"])
    assert rc == 2
    assert capsys.readouterr().err.strip() == (
        "lsml-hub compare: error: seeds must be distinct non-negative integers (at most 2**63 - 1), at least one; "
        "got [0, -1]")


def test_init_names_must_be_unique_and_present(target):
    with pytest.raises(ConfigError, match=r"init name 'scratch:test_resnet' appears twice"):
        compare(["scratch:test_resnet", "scratch:test_resnet"], target, **TINY)
    with pytest.raises(ConfigError, match=r"needs at least one init"):
        compare([], target, **TINY)
    with pytest.raises(ConfigError, match=r"init name 'scratch' is the scratch baseline's row; name the init "
                                          r"otherwise, e.g. scratch_init"):
        compare({"scratch": "scratch:test_resnet"}, target, **TINY)
    with pytest.raises(ConfigError, match=r"an init name is empty \(for 'scratch:test_resnet'\)"):
        compare({" ": "scratch:test_resnet"}, target, **TINY)


def test_cli_compare_refuses_a_baselines_name_for_an_init(init_dir, capsys):
    assert main(["compare", "--init", f"pretrained={init_dir}", "--data", TARGET, "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == ("lsml-hub compare: error: init name 'pretrained' is the pretrained "
                                               "baseline's row; name the init otherwise, e.g. pretrained_init")


def test_cli_compare_prints_the_table_and_writes_files(tmp_path, init_dir, capsys):
    rc = main(["compare", "--init", f"meta={init_dir}", "--init", "scratch:test_resnet", "--data", TARGET,
               "--seeds", "0", "--baselines", "--steps", "2", "--batch-size", "8", "--max-train-samples", "20",
               "--eval-every", "2", "--no-progress", "--out", str(tmp_path)])

    assert rc == 0
    captured = capsys.readouterr()
    stdout = captured.out
    assert stdout.splitlines()[1].split()[:3] == ["name", "kind", "final"]  # the table, and only the table
    assert "\nmeta " in stdout and "\nscratch:test_resnet " in stdout and "wrote" not in stdout

    assert {p.name for p in tmp_path.iterdir()} == {"comparison.csv", "comparison.json", "curves.png"}


def test_an_init_compared_over_several_seeds_is_logged_as_loaded_once(init_dir, target, caplog):
    with caplog.at_level(logging.INFO, logger="lsml_hub"):
        compare({"meta": str(init_dir)}, target, seeds=(0, 1, 2), baselines=(), **TINY)
    assert sum(m.startswith("loaded init") for m in caplog.messages) == 1
    assert logging.getLogger("lsml_hub.hub.load").level == logging.NOTSET  # the quiet seeds left it as it was


def test_cli_compare_bad_baseline_is_one_line_and_exit_2(init_dir, capsys):
    rc = main(["compare", "--init", str(init_dir), "--data", TARGET, "--baselines", "imagenet", "--no-progress"])
    assert rc == 2
    assert capsys.readouterr().err.strip() == (
        "lsml-hub compare: error: bad baselines ['imagenet']; valid: scratch, pretrained (each at most once)")


def _no_run(*args, **kwargs):
    raise AssertionError("a fine-tuning run started before the bad argument was refused")


def _contents(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_out_dir_holding_other_files_is_refused_before_any_run(monkeypatch, target, init_dir):
    monkeypatch.setattr("lsml_hub.metatest.comparing.run_finetune", _no_run)
    before = _contents(init_dir)
    with pytest.raises(ConfigError, match=rf"^output folder {re.escape(str(init_dir))} holds files that compare does "
                                          r"not write: README\.md, config\.json, model\.safetensors \(it writes only "
                                          r"comparison\.csv, comparison\.json, curves\.png\); choose a new or empty "
                                          r"folder, or move those out$"):
        compare([str(init_dir)], target, out_dir=init_dir, **TINY)
    assert _contents(init_dir) == before


def test_out_dir_holding_a_users_own_plot_but_no_comparison_json_is_refused(monkeypatch, target, tmp_path):
    monkeypatch.setattr("lsml_hub.metatest.comparing.run_finetune", _no_run)
    (tmp_path / "curves.png").write_bytes(b"my plot")
    with pytest.raises(ConfigError, match=r"holds curves\.png but no comparison\.json, so it is not an earlier"):
        compare(["scratch:test_resnet"], target, out_dir=tmp_path, **TINY)
    assert (tmp_path / "curves.png").read_bytes() == b"my plot"


@pytest.mark.parametrize("inside", [False, True])
def test_cli_compare_out_that_is_a_file_is_one_line_before_any_run(tmp_path, init_dir, capsys, inside):
    file = tmp_path / "comparison.csv"
    file.write_text("name,kind\n")
    out = file / "sub" if inside else file
    # an unknown target: had any work started, the error would be about the data
    rc = main(["compare", "--init", str(init_dir), "--data", "builtin:no_such_source", "--no-progress",
               "--out", str(out)])

    assert rc == 2
    where = f"is inside {file}, which is a file" if inside else "is a file"
    assert capsys.readouterr().err.strip() == (
        f"lsml-hub compare: error: output folder {out} {where}; give a folder (new or empty) for comparison.csv, "
        "comparison.json, curves.png")
    assert file.read_text() == "name,kind\n"


def test_cli_compare_rerun_into_its_own_output_folder_replaces_its_files(tmp_path, init_dir, capsys):
    args = ["compare", "--init", str(init_dir), "--data", TARGET, "--steps", "2", "--batch-size", "8",
            "--max-train-samples", "10", "--eval-every", "2", "--no-progress", "--out", str(tmp_path)]
    assert main([*args, "--seeds", "0"]) == 0  # default baselines: pretrained is not cached, so it is skipped
    assert "(skipped pretrained: no timm pretrained weights of test_resnet in the Hugging Face cache)" in (
        capsys.readouterr().out)
    assert main([*args, "--seeds", "5", "--baselines"]) == 0

    assert json.loads((tmp_path / "comparison.json").read_text())["seeds"] == [5]
    assert {p.name for p in tmp_path.iterdir()} == {"comparison.csv", "comparison.json", "curves.png"}


@pytest.mark.parametrize("offline", [True, False])
def test_cli_named_pretrained_baseline_not_cached_is_one_line_before_any_run(monkeypatch, init_dir, capsys,
                                                                              offline):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    rc = main(["compare", "--init", str(init_dir), "--data", "builtin:no_such_source", "--baselines", "scratch",
               "pretrained", "--no-progress"])

    assert rc == 2
    why = "HF_HUB_OFFLINE is set" if offline else "runs never download in their middle"
    assert capsys.readouterr().err.strip() == (
        "lsml-hub compare: error: the pretrained baseline needs timm's test_resnet.r160_in1k weights "
        "(model.safetensors of timm/test_resnet.r160_in1k), which are not in the Hugging Face cache "
        f"({constants.HF_HUB_CACHE}) and are not fetched here ({why}); pre-fetch them on a connected machine with "
        "`hf download timm/test_resnet.r160_in1k model.safetensors` (same HF_HUB_CACHE) and retry, or leave "
        "pretrained out of the baselines")


def test_named_pretrained_baseline_must_be_cached_or_exist_before_any_run(monkeypatch, target):
    monkeypatch.setattr("lsml_hub.metatest.comparing.run_finetune", _no_run)
    module = timm.create_model("test_resnet", num_classes=0)
    with pytest.raises(InitError, match=r"needs timm's test_resnet\.r160_in1k weights .* not in the Hugging Face"):
        compare({"module": module}, target, baselines=["pretrained"], **TINY)
    with pytest.raises(InitError, match=r"^the pretrained baseline needs timm pretrained weights, but timm has none "
                                        r"for resnet20_cifar; compare with the scratch baseline only"):
        compare(["scratch:resnet20_cifar"], target, baselines=("scratch", "pretrained"), **TINY)
    with pytest.raises(ConfigError, match=r"baselines must be a sequence of names such as \('scratch',\), got "
                                          r"'pretrained'"):
        compare(["scratch:test_resnet"], target, baselines="pretrained", **TINY)
