"""One timm model of each family through the whole story: meta-train, export, plain-timm reload, compare.

The families: a BatchNorm CNN, a CNN without BatchNorm (ConvNeXt: LayerNorm, no running statistics), a
vision transformer and a Swin-style windowed transformer (both at 32 px through ``model_kwargs``, which
the init must record so that plain timm rebuilds the same model), and a mobile net (EfficientNet blocks).
"""

from __future__ import annotations

import json

import pytest
import timm
import torch
from _isolation import one_thread
from _training_helpers import TWO_TASKS, init_tensors, small_config, training_caches

import lsml_hub

pytestmark = pytest.mark.slow  # five models x (meta-training + a two-run comparison)

# A Swin made small through its own arguments: the same class as swin_tiny, 20 k parameters.
SWIN_32PX = {"img_size": 32, "embed_dim": 16, "depths": [1, 1], "num_heads": [1, 2], "window_size": 4}

FAMILIES = {
    "batchnorm_cnn": ("test_resnet", {}),
    "bn_free_cnn": ("test_convnext", {}),
    "vit": ("test_vit", {"img_size": 32}),
    "swin": ("swin_tiny_patch4_window7_224", SWIN_32PX),
    "mobile": ("test_efficientnet", {}),
}


@pytest.fixture(scope="module", autouse=True)
def _caches(tmp_path_factory):
    with training_caches(tmp_path_factory) as root:
        yield root


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def run(request, tmp_path_factory):
    """A finished 3-step CTS run of the family's model on two glyph tasks."""
    arch, kwargs = FAMILIES[request.param]
    out = tmp_path_factory.mktemp(request.param) / "run"
    config = small_config(out, model=arch, model_kwargs=kwargs, steps=3, tasks=list(TWO_TASKS))
    with one_thread():
        result = lsml_hub.meta_train(config)
    return arch, kwargs, result


def test_the_init_records_timms_model_args_and_the_size_it_was_trained_at(run):
    arch, kwargs, result = run
    config = json.loads((result.init_dir / "config.json").read_text())
    assert config["architecture"] == arch
    assert config.get("model_args", {}) == kwargs
    assert config["pretrained_cfg"]["input_size"] == [3, 32, 32]


def test_plain_timm_rebuilds_the_model_and_loads_every_init_tensor(run):
    arch, kwargs, result = run
    model = timm.create_model(f"local-dir:{result.init_dir}", pretrained=True, num_classes=7)
    saved = init_tensors(result.init_dir)
    state = model.state_dict()
    for key, tensor in saved.items():
        assert torch.equal(state[key], tensor), key
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


def test_lsml_hub_loads_it_strictly_as_the_same_tensors(run):
    _, _, result = run
    model = lsml_hub.create_model(f"local-dir:{result.init_dir}", num_classes=0)
    saved, state = init_tensors(result.init_dir), model.state_dict()
    assert sorted(saved) == sorted(state)  # headless: the file is the whole model
    for key, tensor in saved.items():
        assert torch.equal(state[key], tensor), key


def test_compare_fine_tunes_the_init_and_its_scratch_twin(run, tmp_path):
    _, _, result = run
    with one_thread():
        cmp = lsml_hub.compare({"init": str(result.init_dir)}, "builtin:digits?classes=0-4", seeds=(0,),
                               baselines=("scratch",), steps=1, batch_size=8, eval_every=1,
                               max_train_samples=20, out_dir=tmp_path / "compare", progress=False)
    names = [row.name for row in cmp.rows]
    assert names == ["init", "scratch"]
    for row in cmp.rows:
        assert [run.seed for run in row.runs] == [0]
        assert 0.0 <= row.runs[0].final.accuracy <= 1.0
    assert (tmp_path / "compare" / "comparison.json").is_file()


def test_a_model_without_batchnorm_exports_no_running_statistics(tmp_path):
    result = lsml_hub.meta_train(small_config(tmp_path / "run", model="test_convnext", steps=1))
    assert not [k for k in init_tensors(result.init_dir) if "running_" in k]
