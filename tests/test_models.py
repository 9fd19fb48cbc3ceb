"""Backbones: the CIFAR ResNets as timm models, the classifier API, the backbone/head split."""

from __future__ import annotations

import pytest
import timm
import torch

import lsml_hub  # noqa: F401  (registers resnet{20,32,44,56}_cifar with timm)
from lsml_hub.errors import ConfigError
from lsml_hub.models import create_backbone, split_backbone_head
from lsml_hub.models.resnet_cifar import CifarResNet


def _expected_params(blocks: int, num_classes: int, widths=(16, 32, 64)) -> int:
    """Parameter count of a CIFAR ResNet with 1x1-conv+BN shortcuts where the shape changes (option B)."""
    total = 3 * widths[0] * 9 + 2 * widths[0]  # stem conv + BN
    in_chs = widths[0]
    for out in widths:
        for j in range(blocks):
            cin = in_chs if j == 0 else out
            total += 9 * cin * out + 9 * out * out + 4 * out  # two 3x3 convs + two BNs
            if cin != out:
                total += cin * out + 2 * out  # 1x1 shortcut + BN
        in_chs = out
    return total + widths[-1] * num_classes + num_classes


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("depth", "blocks"), [(20, 3), (32, 5), (44, 7), (56, 9)])
def test_cifar_resnets_are_timm_models(depth, blocks):
    name = f"resnet{depth}_cifar"
    assert timm.is_model(name) and name in timm.list_models("resnet*_cifar")
    model = timm.create_model(name, num_classes=10)
    assert isinstance(model, CifarResNet)
    assert _count(model) == _expected_params(blocks, 10)
    assert sum(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3) for m in model.modules()) == depth - 1
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert model.pretrained_cfg["input_size"] == (3, 32, 32)
    assert model.pretrained_cfg["classifier"] == "head.fc"


def test_resnet20_has_about_027_million_parameters():
    n = _count(timm.create_model("resnet20_cifar", num_classes=10))
    assert n == 272_474
    assert 0.26e6 < n < 0.28e6


def test_headless_model_gives_64_features():
    model = timm.create_model("resnet20_cifar", num_classes=0).eval()
    assert model.num_features == 64
    assert isinstance(model.get_classifier(), torch.nn.Identity)
    x = torch.randn(3, 3, 32, 32)
    assert model(x).shape == (3, 64)
    assert model.forward_features(x).shape == (3, 64, 8, 8)
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (3, 64)


def test_other_image_sizes_work():
    model = timm.create_model("resnet20_cifar", num_classes=4).eval()
    assert model(torch.randn(1, 3, 28, 28)).shape == (1, 4)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 4)
    assert timm.create_model("resnet20_cifar", num_classes=4, in_chans=1)(torch.randn(1, 1, 32, 32)).shape == (1, 4)


def test_reset_classifier_keeps_the_backbone():
    model = timm.create_model("resnet20_cifar", num_classes=10).eval()
    body_before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("head.")}
    x = torch.randn(2, 3, 32, 32)
    features = model.forward_head(model.forward_features(x), pre_logits=True)
    model.reset_classifier(7)
    assert model.num_classes == 7
    assert model.get_classifier().out_features == 7 and model.get_classifier().in_features == 64
    assert model(x).shape == (2, 7)
    for k, v in model.state_dict().items():
        if not k.startswith("head."):
            assert torch.equal(v, body_before[k])
    torch.testing.assert_close(model.forward_head(model.forward_features(x), pre_logits=True), features)
    model.reset_classifier(0)
    assert model(x).shape == (2, 64)


def test_features_only():
    model = timm.create_model("resnet20_cifar", features_only=True)
    shapes = [f.shape for f in model(torch.randn(1, 3, 32, 32))]
    assert shapes == [(1, 16, 32, 32), (1, 32, 16, 16), (1, 64, 8, 8)]


def test_split_resnet20_cifar():
    model = timm.create_model("resnet20_cifar", num_classes=5)
    split = split_backbone_head(model)
    assert sorted(split.head) == ["head.fc.bias", "head.fc.weight"]
    assert split.head["head.fc.weight"].shape == (5, 64)
    assert split.body_names == [n for n, _ in model.named_parameters() if not n.startswith("head.")]
    assert "stem.0.weight" in split.body and len(split.body) + len(split.head) == len(list(model.parameters()))
    assert sum(p.numel() for p in split.body.values()) == _expected_params(3, 0)
    # The split holds the model's own parameters, not copies.
    assert split.head["head.fc.weight"] is model.get_classifier().weight


def test_split_timm_test_resnet():
    model = timm.create_model("test_resnet", num_classes=3)
    split = split_backbone_head(model)
    classifier = model.get_classifier()
    assert sorted(split.head) == ["fc.bias", "fc.weight"]
    assert {id(p) for p in split.head.values()} == {id(p) for p in classifier.parameters()}
    assert set(split.body) == {n for n, _ in model.named_parameters()} - set(split.head)


def test_split_skips_frozen_and_headless():
    model = timm.create_model("resnet20_cifar", num_classes=0)
    split = split_backbone_head(model)
    assert split.head == {} and len(split.body) == len(list(model.parameters()))
    model = timm.create_model("resnet20_cifar", num_classes=4)
    model.stem[0].weight.requires_grad_(False)
    assert "stem.0.weight" not in split_backbone_head(model).body


def test_split_of_a_classifier_not_named_fc():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.features = torch.nn.Linear(4, 8)
            self.fc = torch.nn.Linear(8, 8)  # part of the body despite its name
            self.last = torch.nn.Linear(8, 2)

        def get_classifier(self):
            return self.last

    split = split_backbone_head(Net())
    assert sorted(split.head) == ["last.bias", "last.weight"]
    assert sorted(split.body) == ["fc.bias", "fc.weight", "features.bias", "features.weight"]


def test_split_needs_the_classifier_api():
    with pytest.raises(ConfigError, match="Sequential has no get_classifier"):
        split_backbone_head(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_create_backbone():
    model = create_backbone("resnet20_cifar", num_classes=6)
    assert isinstance(model, CifarResNet) and model.num_classes == 6
    assert create_backbone("test_resnet", num_classes=2, in_chans=1)(torch.randn(2, 1, 32, 32)).shape == (2, 2)


def test_create_backbone_unknown_name():
    with pytest.raises(ConfigError) as err:
        create_backbone("resnet20_cifaar", num_classes=3)
    msg = str(err.value)
    assert "'resnet20_cifaar'" in msg and "timm" in msg
    assert "resnet20_cifar" in msg.split("close names:")[1]
