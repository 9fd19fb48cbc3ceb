"""Meta-training that starts from timm's pretrained weights (a prepared Hugging Face cache) or from an init."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import timm
import torch
from _isolation import one_thread
from _training_helpers import init_tensors, small_config, training_caches
from huggingface_hub import constants

import lsml_hub
from lsml_hub.errors import ConfigError, InitError
from lsml_hub.models import split_backbone_head

REPO = "models--timm--test_resnet.r160_in1k"


@pytest.fixture(scope="module", autouse=True)
def _caches(tmp_path_factory):
    with training_caches(tmp_path_factory) as root, one_thread():
        yield root


@pytest.fixture
def cached_imagenet_weights(tmp_path, monkeypatch) -> dict[str, torch.Tensor]:
    """timm's test_resnet 'ImageNet' weights (random stand-ins) in a Hugging Face cache, offline."""
    torch.manual_seed(7)
    weights = timm.create_model("test_resnet").state_dict()
    snapshot = tmp_path / "hf" / REPO / "snapshots" / ("b" * 40)
    snapshot.mkdir(parents=True)
    safetensors.torch.save_file(weights, snapshot / "model.safetensors")
    (tmp_path / "hf" / REPO / "refs").mkdir()
    (tmp_path / "hf" / REPO / "refs" / "main").write_text("b" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    return weights


def body_of(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    names = split_backbone_head(timm.create_model("test_resnet", num_classes=1)).body
    return {k: tensors[k] for k in names}


def test_a_pretrained_start_begins_at_timms_weights_and_says_so(tmp_path, cached_imagenet_weights):
    # 'none' never moves φ, so the exported backbone parameters are exactly the start.
    result = lsml_hub.meta_train(small_config(tmp_path / "run", start_from="pretrained", steps=1,
                                              algorithm={"name": "none"}))
    exported = init_tensors(result.init_dir)
    for name, value in body_of(cached_imagenet_weights).items():
        assert torch.equal(exported[name], value), name
    config = json.loads((result.init_dir / "config.json").read_text())
    assert config["lsml"]["start"] == {"kind": "pretrained", "weights": "test_resnet.r160_in1k",
                                       "hf_hub_id": "timm/test_resnet.r160_in1k"}
    assert "timm's pretrained `test_resnet.r160_in1k` weights" in (result.init_dir / "README.md").read_text()


def test_every_task_starts_from_the_pretrained_batchnorm_statistics(tmp_path, cached_imagenet_weights):
    from lsml_hub.distributed import DistContext
    from lsml_hub.training import MetaTrainConfig, MetaTrainer

    trainer = MetaTrainer(MetaTrainConfig.from_dict(small_config(tmp_path / "run", start_from="pretrained")),
                          DistContext())
    for learner in trainer.learners:
        assert torch.equal(learner.model.bn1.running_var, cached_imagenet_weights["bn1.running_var"])


def test_missing_pretrained_weights_name_the_download_before_any_data(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr("lsml_hub.training.loop.load_task", lambda spec: pytest.fail("loaded a dataset"))
    with pytest.raises(InitError, match=r"start_from: pretrained needs timm's test_resnet.r160_in1k weights .*"
                                        r"`hf download timm/test_resnet.r160_in1k model.safetensors`"):
        lsml_hub.meta_train(small_config(tmp_path / "run", start_from="pretrained"))
    with pytest.raises(InitError, match="timm has none for resnet20_cifar"):
        lsml_hub.meta_train(small_config(tmp_path / "run", model="resnet20_cifar", start_from="pretrained"))


def test_meta_training_continues_from_an_init_of_the_same_architecture(tmp_path):
    first = lsml_hub.meta_train(small_config(tmp_path / "first", steps=2))
    second = lsml_hub.meta_train(small_config(tmp_path / "second", start_from=str(first.init_dir), steps=1,
                                              algorithm={"name": "none"}))
    before, after = init_tensors(first.init_dir), init_tensors(second.init_dir)
    for name in body_of(before):
        assert torch.equal(after[name], before[name]), name
    start = json.loads((second.init_dir / "config.json").read_text())["lsml"]["start"]
    assert start["kind"] == "init" and start["init"] == str(first.init_dir) and start["algorithm"] == "cts"


def test_an_init_of_another_architecture_is_refused_before_any_data(tmp_path, monkeypatch):
    init = lsml_hub.save_init(tmp_path / "init", timm.create_model("resnet20_cifar"), lsml={"algorithm": {}},
                              pretrained_cfg={"input_size": (3, 32, 32)})
    monkeypatch.setattr("lsml_hub.training.loop.load_task", lambda spec: pytest.fail("loaded a dataset"))
    with pytest.raises(ConfigError, match=r"is an init of 'resnet20_cifar', but model is 'test_resnet'"):
        lsml_hub.meta_train(small_config(tmp_path / "run", start_from=str(init)))


def test_start_from_is_part_of_a_runs_identity(tmp_path):
    first = lsml_hub.meta_train(small_config(tmp_path / "first", steps=1))
    with pytest.raises(ConfigError, match="start_from: checkpoint None vs config"):
        lsml_hub.meta_train(small_config(tmp_path / "first", steps=2, start_from=str(first.init_dir)))


@pytest.mark.parametrize("first, then", [(None, "scratch:test_resnet"), ("pretrained", "timm:test_resnet"),
                                         ("timm:test_resnet.r160_in1k", "pretrained")])
def test_a_run_resumes_under_another_spelling_of_its_start(tmp_path, cached_imagenet_weights, first, then):
    whole = lsml_hub.meta_train(small_config(tmp_path / "whole", steps=2, start_from=first))
    lsml_hub.meta_train(small_config(tmp_path / "split", steps=1, checkpoint_every=1, start_from=first))
    resumed = lsml_hub.meta_train(small_config(tmp_path / "split", steps=2, checkpoint_every=1, start_from=then))
    assert resumed.steps == 2
    assert all(torch.equal(a, b) for a, b in zip(init_tensors(resumed.init_dir).values(),
                                                 init_tensors(whole.init_dir).values()))


def test_timm_and_scratch_init_strings_start_as_pretrained_and_null_do(tmp_path, cached_imagenet_weights):
    from lsml_hub.training.start import start_model

    by_tag = start_model("test_resnet", {}, "timm:test_resnet.r160_in1k")
    default = start_model("test_resnet", {}, "pretrained")
    assert by_tag.record == default.record == {"kind": "pretrained", "weights": "test_resnet.r160_in1k",
                                               "hf_hub_id": "timm/test_resnet.r160_in1k"}
    tagged, default_body = body_of(by_tag.model.state_dict()), body_of(default.model.state_dict())
    assert all(torch.equal(tagged[k], default_body[k]) for k in tagged)  # the heads are fresh draws
    torch.manual_seed(0)
    scratch = start_model("test_resnet", {}, "scratch:test_resnet")
    torch.manual_seed(0)
    null = start_model("test_resnet", {}, None)
    assert scratch.record is None
    assert all(torch.equal(a, b) for a, b in zip(scratch.model.state_dict().values(), null.model.state_dict().values()))


@pytest.mark.parametrize("start", ["scratch:resnet20_cifar", "timm:resnet18"])
def test_a_start_of_another_architecture_is_refused_before_any_data(tmp_path, monkeypatch, start):
    monkeypatch.setattr("lsml_hub.training.loop.load_task", lambda spec: pytest.fail("loaded a dataset"))
    with pytest.raises(ConfigError, match=rf"start_from '{start}' is a '\w+', but model is 'test_resnet'; "
                                          r"set model: \w+, or start_from: \w+:test_resnet"):
        lsml_hub.meta_train(small_config(tmp_path / "run", start_from=start))
