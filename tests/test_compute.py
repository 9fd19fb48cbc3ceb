"""Precision, memory layout and compilation on the CPU: bf16 end to end, channels_last ≡ contiguous, refusals.

fp16 and data held on a GPU are tested in ``test_gpu.py`` (``gpu`` marker).
"""

from __future__ import annotations

import pytest
import timm
import torch
from _isolation import one_thread
from _training_helpers import assert_same_tensors, init_tensors, small_config, training_caches
from safetensors import safe_open

import lsml_hub
from lsml_hub.cli import main
from lsml_hub.compute import ComputeConfig
from lsml_hub.data import Augment, BatchStream, ImageTensors
from lsml_hub.errors import ConfigError
from lsml_hub.training.flat import flat_values, flatten_params_

# channels_last runs other CPU kernels (oneDNN's NHWC convolutions) whose float32 sums are ordered
# differently, and training amplifies the difference: on these glyph tasks even a plain timm loop
# (model.to(memory_format=torch.channels_last)) drifts from the contiguous one by ~1e-4 after one step
# and ~1e-3 after three. After two steps of meta-training the inits differ by ~1e-5 (running variances)
# and ~3e-6 (weights); the bound leaves a margin above that.
CHANNELS_LAST_ATOL = 1e-4


@pytest.fixture(scope="module", autouse=True)
def _caches(tmp_path_factory):
    with training_caches(tmp_path_factory) as root, one_thread():
        yield root


def test_a_channels_last_flat_buffer_holds_nhwc_views_that_train_in_place():
    conv = torch.nn.Conv2d(2, 3, 3)
    weight = conv.weight.detach().clone()
    flat = flatten_params_(list(conv.parameters()), channels_last=True)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(conv.weight, weight)  # same numbers, another layout
    flat.add_(1.0)
    assert torch.equal(conv.weight, weight + 1)  # still a view of the buffer
    grad = torch.randn_like(weight)
    # A gradient flattened the same way lines up with the parameter it belongs to.
    assert torch.equal(flat_values([grad, torch.zeros(3)], channels_last=True)[:grad.numel()],
                       grad.permute(0, 2, 3, 1).reshape(-1))


def test_channels_last_batches_hold_the_same_pixels():
    data = ImageTensors(torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8), torch.arange(10))
    plain, nhwc = (BatchStream(data, 4, seed=3, augment=Augment(2, True), channels_last=cl) for cl in (False, True))
    for _ in range(3):
        a, b = next(plain), next(nhwc)
        assert b.images.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


@pytest.mark.parametrize("algorithm", ["cts", "fomaml"])
def test_channels_last_meta_trains_the_same_init_as_contiguous(tmp_path, algorithm):
    algo = {"name": algorithm, "meta_lr": 0.5, **({"reset_period": 4} if algorithm == "cts" else {})}
    plain = lsml_hub.meta_train(small_config(tmp_path / "plain", algorithm=algo, steps=2))
    nhwc = lsml_hub.meta_train(small_config(tmp_path / "nhwc", algorithm=algo, steps=2, channels_last=True))
    assert_same_tensors(init_tensors(nhwc.init_dir), init_tensors(plain.init_dir), atol=CHANNELS_LAST_ATOL)


def test_bf16_meta_training_exports_an_fp32_init_that_timm_loads(tmp_path):
    result = lsml_hub.meta_train(small_config(tmp_path / "run", precision="bf16", eval_every=3))
    assert all(0 <= r.accuracy <= 1 and torch.isfinite(torch.tensor(r.loss)) for r in result.final_eval.values())
    with safe_open(result.init_dir / "model.safetensors", "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert dtypes <= {"F32", "I64"}  # num_batches_tracked is int64
    model = timm.create_model(f"local-dir:{result.init_dir}", pretrained=True, num_classes=4).eval()
    assert model(torch.zeros(1, 3, 32, 32)).dtype == torch.float32


def test_bf16_fine_tuning_runs_end_to_end_and_keeps_fp32_weights(tmp_path):
    result = lsml_hub.finetune("scratch:test_resnet", "builtin:digits?classes=0-4", steps=4, batch_size=8,
                               max_train_samples=20, eval_every=2, precision="bf16", channels_last=True,
                               progress=False, out_dir=tmp_path / "ft")
    assert all(torch.isfinite(torch.tensor(p.train_loss)) for p in result.history)
    assert {p.dtype for p in result.model.parameters()} == {torch.float32}
    assert result.config.precision == "bf16"
    with safe_open(tmp_path / "ft" / "model.safetensors", "pt") as f:
        assert f.keys()  # channels-last weights are saved contiguous


def test_a_checkpoint_refuses_to_resume_with_another_precision_naming_both(tmp_path):
    out = tmp_path / "run"
    lsml_hub.meta_train(small_config(out, steps=2, checkpoint_every=1))
    with pytest.raises(ConfigError, match=r"precision: checkpoint 'fp32' vs config 'bf16'"):
        lsml_hub.meta_train(small_config(out, steps=4, precision="bf16"))


def test_the_step_hook_sees_unscaled_gradients_under_a_gradient_scaler():
    # fp16's scaler multiplies the loss; a term added in the hook (the proximal pull) must meet true gradients.
    from torch import nn

    from lsml_hub.data import Batch
    from lsml_hub.evaluation import train_step

    batch = Batch(torch.randn(8, 3, 4, 4, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1] * 4))
    seen, weights = [], []
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=1024.0)):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(48, 2))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        layer = model[1]
        before = layer.weight.detach().clone()
        train_step(model, batch, optimizer, scaler=scaler,
                   before_step=lambda layer=layer: (seen.append(layer.weight.grad.clone()), layer.weight.grad.zero_()))
        weights.append(torch.equal(layer.weight, before))
    torch.testing.assert_close(seen[1], seen[0])
    assert seen[0].abs().sum() > 0
    assert weights == [True, True]  # what the hook did to the gradients is what the optimizer stepped with


def test_compile_and_device_data_budget_may_change_on_resume(tmp_path):
    out = tmp_path / "run"
    lsml_hub.meta_train(small_config(out, steps=2, checkpoint_every=1))
    result = lsml_hub.meta_train(small_config(out, steps=3, device_data_gb=0.5))
    assert result.steps == 3


def test_fp16_on_the_cpu_is_one_line_before_any_data_is_loaded(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("lsml_hub.training.loop.load_task", lambda spec: pytest.fail("loaded a dataset"))
    assert main(["meta-train", "recipes/configs/tiny.yaml", "precision=fp16", f"output_dir={tmp_path}/run",
                 "device=cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["lsml-hub meta-train: error: precision fp16 needs a CUDA device (its gradient scaler), "
                   "not cpu; use bf16 or fp32"]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("values, message", [
    ({"precision": "fp64"}, "unknown precision 'fp64'; valid: fp32, bf16, fp16"),
    ({"channels_last": "yes"}, "channels_last must be true or false"),
    ({"compile": "fast"}, "compile must be true, false or one of default, reduce-overhead"),
])
def test_bad_compute_settings_are_refused_where_they_enter(values, message):
    with pytest.raises(ConfigError, match=message):
        ComputeConfig(**values)


@pytest.mark.slow  # inductor compiles the model on the CPU: about 40 s on 2 cores
def test_compiled_meta_training_matches_eager_closely(tmp_path):
    config = {"tasks": ["builtin:printed_digits?samples_per_class=20"], "steps": 2}
    eager = lsml_hub.meta_train(small_config(tmp_path / "eager", **config))
    compiled = lsml_hub.meta_train(small_config(tmp_path / "compiled", compile=True, **config))
    assert_same_tensors(init_tensors(compiled.init_dir), init_tensors(eager.init_dir), atol=1e-4)
