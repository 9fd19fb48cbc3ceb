"""lsml_hub.finetune through the API: training, determinism, linear mode, limited data, schedules, bad input."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import numpy as np
import pytest
import safetensors.torch
import timm
import torch
from _isolation import finetune_isolation
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

import lsml_hub
from lsml_hub.data import load_task
from lsml_hub.errors import ConfigError, DataError
from lsml_hub.metatest import FinetuneConfig, Metrics, finetune
from lsml_hub.metatest.finetuning import build_optimizer, build_scheduler, step_milestones
from lsml_hub.metatest.model import InputConfig, adapt_to_rgb, set_trainable
from lsml_hub.metatest.target import Target

# A tiny run: 50 stratified samples of the digits, 20 steps of 16, two evaluations.
TINY = dict(steps=20, batch_size=16, max_train_samples=50, eval_every=10, progress=False)


@pytest.fixture(scope="module", autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory):
    """Builtin sources materialize in the shared temporary cache; torch uses one thread."""
    with finetune_isolation(tmp_path_factory):
        yield


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's digits (1,438 train / 359 eval, 10 classes, 32 px), decoded once for the module."""
    return load_task("builtin:digits")


def _backbone_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies of every tensor of the state dict (parameters and buffers) outside the classifier."""
    head = {id(t) for t in model.get_classifier().state_dict(keep_vars=True).values()}
    return {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items() if id(v) not in head}


def test_finetune_trains_a_timm_model_and_reports_its_curve(digits):
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=1000)
    bn_before = model.bn1.running_mean.clone()

    result = finetune(model, digits, image_size=32, lr=1e-2, schedule="cosine", **{**TINY, "eval_every": 5})

    assert result.model is model
    assert model.num_classes == 10 and model.get_classifier().out_features == 10
    assert [p.step for p in result.history] == [5, 10, 15, 20]
    losses = [p.train_loss for p in result.history]
    # Train loss averaged over 5 steps of 16 samples is noisy step to step; the curve falls overall.
    assert losses[0] > 2.0 and losses[-1] < 1.7 and all(later < losses[0] - 0.3 for later in losses[1:])
    assert result.final == Metrics.at(result.history[-1])
    assert result.best.accuracy == max(p.eval_accuracy for p in result.history) >= result.final.accuracy
    assert result.final.accuracy > 0.2  # chance is 0.1
    assert result.train_samples == 50 and result.target["train_samples"] == 50
    assert result.inputs.image_size == 32 and result.inputs.mean == (0.5, 0.5, 0.5)  # test_resnet's cfg
    assert not torch.equal(model.bn1.running_mean, bn_before)  # full mode trains BN statistics too
    assert result.to_dict()["final"]["accuracy"] == result.final.accuracy


def test_same_seed_gives_identical_runs_and_another_seed_does_not(digits):
    runs = [finetune("scratch:test_resnet", digits, seed=seed, **{**TINY, "steps": 6, "batch_size": 8, "eval_every": 3})
            for seed in (3, 3, 4)]
    assert runs[0].history == runs[1].history
    assert runs[0].history != runs[2].history
    assert all(torch.equal(a, b) for a, b in zip(runs[0].model.state_dict().values(),
                                                  runs[1].model.state_dict().values()))


def test_linear_mode_leaves_every_backbone_tensor_bit_identical(digits):
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=10)
    before = _backbone_state(model)
    head_before = model.get_classifier().weight.clone()

    finetune(model, digits, mode="linear", image_size=32, **TINY)

    after = _backbone_state(model)
    assert after.keys() == before.keys() and any("running_mean" in k for k in after)
    for key, tensor in before.items():
        assert torch.equal(after[key], tensor), key  # parameters and BatchNorm buffers alike
    assert not torch.equal(model.get_classifier().weight, head_before)


def test_limited_data_is_stratified_and_deterministic(digits):
    target = Target(digits)
    first = target.train_tensors(32, 50, seed=0)
    again = target.train_tensors(32, 50, seed=0)
    other = target.train_tensors(32, 50, seed=1)

    assert len(first) == 50
    assert np.bincount(first.labels.numpy()).tolist() == [5] * 10  # 10 balanced classes: 5 each
    assert torch.equal(first.labels, again.labels) and torch.equal(first.images, again.images)
    assert np.bincount(other.labels.numpy()).tolist() == [5] * 10
    assert not torch.equal(first.images, other.images)  # another seed draws other samples


def test_as_few_samples_as_classes_gives_one_per_class(digits):
    subset = Target(digits).train_tensors(32, 10, seed=0)
    assert np.bincount(subset.labels.numpy()).tolist() == [1] * 10


def test_out_dir_of_other_files_is_refused_before_any_work_and_left_untouched(monkeypatch, tmp_path):
    (tmp_path / "config.json").write_text('{"architecture": "test_resnet"}')
    (tmp_path / "model.safetensors").write_bytes(b"init weights")

    def no_work(*args, **kwargs):
        raise AssertionError("the target was loaded before the output folder was checked")

    monkeypatch.setattr("lsml_hub.metatest.finetuning.Target", no_work)
    folder, file = re.escape(str(tmp_path)), re.escape(str(tmp_path / "config.json"))
    with pytest.raises(ConfigError, match=rf"^output folder {folder} holds files that finetune does not write: "
                                          r"config\.json \(it writes only model\.safetensors, result\.json\); "
                                          r"choose a new or empty folder, or move those out$"):
        finetune("scratch:test_resnet", "builtin:digits", out_dir=tmp_path, **TINY)
    with pytest.raises(ConfigError, match=rf"^output folder {file} is a file; give a folder"):
        finetune("scratch:test_resnet", "builtin:digits", out_dir=tmp_path / "config.json", **TINY)
    assert (tmp_path / "config.json").read_text() == '{"architecture": "test_resnet"}'
    assert (tmp_path / "model.safetensors").read_bytes() == b"init weights"


def test_out_dir_gets_result_and_weights_and_save_refuses_other_folders(digits, tmp_path):
    out = tmp_path / "ft"
    out.mkdir()
    (out / "result.json").write_text("{}")  # an earlier run's output: replaced
    result = finetune("scratch:test_resnet", digits, out_dir=out, **{**TINY, "steps": 2, "eval_every": 2})

    assert json.loads((out / "result.json").read_text())["final"]["accuracy"] == result.final.accuracy
    weights = safetensors.torch.load_file(out / "model.safetensors")
    assert all(torch.equal(weights[k], v) for k, v in result.model.state_dict().items())

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"holds files that finetune does not write: notes\.txt"):
        result.save(other)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


def test_step_schedule_multiplies_lr_by_0_3_at_40_70_90_percent():
    model = torch.nn.Linear(2, 2)
    model.get_classifier = lambda: model  # timm's optimizer factory only needs parameters
    config = FinetuneConfig(steps=100)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config)
    used = []
    for _ in range(config.steps):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()

    assert step_milestones(100) == [40, 70, 90]
    expected = [1e-3] * 40 + [3e-4] * 30 + [9e-5] * 20 + [2.7e-5] * 10  # lr of steps 1..100
    assert used == pytest.approx(expected, rel=1e-9)
    assert type(optimizer).__name__ == "Adam"
    assert all(group["weight_decay"] == 5e-4 for group in optimizer.param_groups)  # biases too, as the seed


def test_cosine_schedule_falls_to_zero():
    model = torch.nn.Linear(2, 2)
    config = FinetuneConfig(steps=10, schedule="cosine", lr=0.1)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config)
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)


def test_config_defaults_follow_the_seed_and_match_the_function_signature():
    import inspect

    defaults = FinetuneConfig()
    assert (defaults.steps, defaults.batch_size, defaults.optimizer, defaults.lr, defaults.weight_decay,
            defaults.schedule, defaults.mode) == (1000, 128, "adam", 1e-3, 5e-4, "step", "full")
    assert defaults.eval_interval == 100
    params = inspect.signature(finetune).parameters
    for field in dataclasses.fields(FinetuneConfig):
        assert params[field.name].default == field.default, field.name


def test_lsml_hub_finetune_is_the_function_even_after_the_package_was_imported(digits):
    import lsml_hub.metatest as package

    result = lsml_hub.finetune("scratch:test_resnet", digits, **{**TINY, "steps": 2, "eval_every": 2})
    assert [p.step for p in result.history] == [2]
    assert package.finetune is finetune and lsml_hub.compare is package.compare


def test_input_config_comes_from_pretrained_cfg_else_the_target_size_and_imagenet_stats():
    model = timm.create_model("test_resnet", num_classes=10)
    assert InputConfig.of(model) == InputConfig(160, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert InputConfig.of(model, 32).image_size == 32
    model.pretrained_cfg = {}
    assert InputConfig.of(model, fallback_size=28) == InputConfig(28, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
    with pytest.raises(ConfigError, match="has no pretrained_cfg input_size; pass image_size"):
        InputConfig.of(model)


def test_full_mode_unfreezes_what_linear_mode_froze():
    model = timm.create_model("test_resnet", num_classes=10)
    set_trainable(model, "linear")
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}
    set_trainable(model, "full")
    assert all(p.requires_grad for p in model.parameters())


def test_grey_model_is_adapted_to_rgb_through_timm():
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=10, in_chans=1).eval()
    grey = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        expected = model(grey)
        adapt_to_rgb(model)
        got = model(grey.expand(-1, 3, -1, -1))
    assert model.conv1[0].weight.shape[1] == 3
    assert torch.allclose(got, expected, atol=1e-5)  # a grey image as RGB gives the same output


def test_grey_init_folder_fine_tunes_on_rgb_targets(digits, tmp_path):
    torch.manual_seed(0)
    grey = timm.create_model("test_resnet", in_chans=1)
    folder = lsml_hub.save_init(tmp_path / "grey_init", grey, lsml={"algorithm": {"name": "cts"}},
                                pretrained_cfg={"input_size": (1, 32, 32), "mean": (0.5,), "std": (0.25,)})

    result = finetune(folder, digits, **{**TINY, "steps": 4, "eval_every": 4})

    assert result.source == str(folder)
    assert result.inputs.image_size == 32 and result.inputs.std == (0.25, 0.25, 0.25)
    assert result.model.conv1[0].in_channels == 3
    assert result.model.pretrained_cfg["input_size"] == (3, 32, 32)


def test_input_layer_that_cannot_take_rgb_is_a_clear_error(digits):
    model = timm.create_model("test_resnet", num_classes=10, in_chans=2)
    model.conv1[0] = torch.nn.Conv2d(2, model.conv1[0].out_channels, 3, groups=2)
    with pytest.raises(ConfigError, match=r"conv1\.0 .* takes 2 input channels .* in_chans=3"):
        finetune(model, digits, **TINY)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"optimizer": "adamm"}, ConfigError, r"unknown optimizer 'adamm' \(did you mean adam.*valid.*sgd"),
        ({"schedule": "warmup"}, ConfigError, r"unknown schedule 'warmup'; valid: step, cosine, constant"),
        ({"mode": "frozen"}, ConfigError, r"unknown mode 'frozen'; valid: full, linear"),
        ({"steps": 0}, ConfigError, r"steps must be a positive integer, got 0"),
        ({"steps": -5}, ConfigError, r"steps must be a positive integer, got -5"),
        ({"lr": "fast"}, ConfigError, r"lr must be a number, got 'fast'"),
        ({"seed": -1}, ConfigError, r"seed must be a non-negative integer \(at most 2\*\*63 - 1\), got -1"),
        ({"seed": 2**64}, ConfigError, r"seed must be a non-negative integer .*, got 18446744073709551616"),
        ({"seed": True}, ConfigError, r"seed must be a non-negative integer .*, got True"),
        ({"device": "foo"}, ConfigError, r"unknown device 'foo'; valid: auto, cpu, cuda, cuda:N, mps"),
        ({"device": "cuda0"}, ConfigError, r"unknown device 'cuda0'; valid: "),
        ({"max_train_samples": 5000}, DataError,
         r"max_train_samples=5000 but target 'digits' has 1438 training samples \(valid: 10-1438"),
        ({"max_train_samples": 5}, DataError,
         r"max_train_samples=5 is fewer than the 10 classes of target 'digits', so some classes would get no "
         r"training sample \(valid: 10-1438, or None for all\)"),
    ],
)
def test_bad_options_are_one_line_errors(digits, options, error, message):
    with pytest.raises(error, match=message) as info:
        finetune("scratch:test_resnet", digits, **{**TINY, **options})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_on_a_machine_without_it_is_refused_before_any_work(monkeypatch, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def no_work(*args, **kwargs):
        raise AssertionError("the target was loaded before the device was checked")

    monkeypatch.setattr("lsml_hub.metatest.finetuning.Target", no_work)
    with pytest.raises(ConfigError, match=rf"device '{device}' requested but CUDA is not available; use cpu or "
                                          "auto") as info:
        finetune("scratch:test_resnet", "builtin:digits", **{**TINY, "device": device})
    assert "\n" not in str(info.value)


def test_a_cuda_index_beyond_the_machines_devices_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ConfigError, match=r"device 'cuda:2' requested but this machine has 2 CUDA device\(s\); "
                                          r"valid: cuda:0 to cuda:1, cpu or auto"):
        FinetuneConfig(device="cuda:2")
    assert FinetuneConfig(device="cuda:1").device == "cuda:1"


def test_valid_devices_are_kept_as_given():
    assert FinetuneConfig().device is None and FinetuneConfig(device="auto").device == "auto"
    assert FinetuneConfig(device="cpu").device == "cpu"
    assert FinetuneConfig(device=torch.device("cpu")).to_dict()["device"] == "cpu"  # JSON-ready


def test_empty_split_is_refused(digits):
    empty = dataclasses.replace(digits, train=digits.train.select([]), _tensors={})
    with pytest.raises(DataError, match=r"target 'digits' has an empty train split"):
        finetune("scratch:test_resnet", empty, **TINY)


def test_unknown_scratch_architecture_and_non_models_are_refused(digits):
    with pytest.raises(ConfigError, match=r"unknown model 'no_such_net'"):
        finetune("scratch:no_such_net", digits, **TINY)
    with pytest.raises(ConfigError, match=r"cannot fine-tune a int"):
        finetune(42, digits, **TINY)


def test_eval_points_are_finite(digits):
    result = finetune("scratch:test_resnet", digits, **{**TINY, "steps": 3, "eval_every": 2})
    assert [p.step for p in result.history] == [2, 3]  # always evaluated after the last step
    assert all(math.isfinite(v) for p in result.history for v in (p.train_loss, p.eval_loss, p.eval_accuracy))
