"""save_init writes the folder of docs/init-format.md: headless safetensors, timm config + lsml block, model card."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import timm
import torch
from huggingface_hub import ModelCard

import lsml_hub
from lsml_hub.errors import ConfigError, InitError, IntegrityError
from lsml_hub.hub import sha256_file, verify_init
from lsml_hub.hub.card import build_model_card
from lsml_hub.hub.config import InitConfig
from lsml_hub.version import __version__


def test_save_init_writes_exactly_the_three_files(hub_make_init):
    folder = hub_make_init()
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp folder left behind


def test_weights_are_the_headless_state_dict_with_bn_buffers(hub_make_init, hub_trained_model):
    folder = hub_make_init("resnet20_cifar")
    saved = safetensors.torch.load_file(folder / "model.safetensors")
    source = hub_trained_model("resnet20_cifar", 26).state_dict()
    headless_keys = set(timm.create_model("resnet20_cifar", num_classes=0).state_dict())
    assert set(saved) == headless_keys
    assert not any(k.startswith("head.fc") for k in saved)
    assert any(k.endswith("running_var") for k in saved)
    for key, tensor in saved.items():
        assert torch.equal(tensor, source[key]), key


def test_config_has_timm_keys_and_the_lsml_block(hub_make_init, hub_lsml):
    folder = hub_make_init("test_resnet", num_classes=7)
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "test_resnet"
    assert config["num_classes"] == 0
    assert config["num_features"] == timm.create_model("test_resnet").num_features
    cfg = config["pretrained_cfg"]
    assert cfg["num_classes"] == 0
    assert cfg["input_size"] == [3, 32, 32] and cfg["mean"] == [0.5] * 3 and cfg["std"] == [0.25] * 3
    assert cfg["license"] == "apache-2.0"
    # where timm's registry weights came from is not part of the init
    assert not {"hf_hub_id", "url", "file", "tag", "architecture"} & set(cfg)
    lsml = config["lsml"]
    assert lsml["sha256"] == sha256_file(folder / "model.safetensors")
    assert lsml["package_version"] == __version__
    assert lsml["algorithm"] == hub_lsml["algorithm"]
    assert lsml["source_tasks"] == hub_lsml["source_tasks"]
    assert lsml["future_key"] == {"kept": True}  # unknown keys pass through


def test_model_card_metadata_usage_and_citation(hub_make_init):
    card = ModelCard.load(hub_make_init() / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "timm"
    assert data["license"] == "apache-2.0"
    assert {"meta-learning", "lsml-hub", "image-classification", "cts"} <= set(data["tags"])
    assert data["datasets"] == ["uoft-cs/cifar100"]  # the Hub id; the builtin task is not a dataset id
    for snippet in ("timm.create_model(\"hf-hub:", "lsml_hub.create_model(", "torch.hub.load(", "meta_init"):
        assert snippet in card.text
    assert "@InProceedings{pmlr-v139-shin21a" in card.text
    assert "Continual Trajectory Shifting" in card.text


def _timm_snippet(card_text: str) -> str:
    timm_part = card_text[card_text.index("## Usage"):card_text.index("With lsml-hub")]
    start = timm_part.index("```python\n") + len("```python\n")
    return timm_part[start:timm_part.index("\n```", start)]


@pytest.mark.parametrize("arch", ["resnet20_cifar", "resnet56_cifar"])
def test_timm_snippet_imports_lsml_hub_first_for_the_architectures_it_registers(arch):
    card = build_model_card(InitConfig(arch, {}, {"algorithm": {"name": "cts"}}), repo_id="me/x")
    snippet = _timm_snippet(card.text)
    assert snippet.splitlines()[:2] == [f"import lsml_hub  # registers {arch} with timm", "import timm"]
    assert 'timm.create_model("hf-hub:me/x", pretrained=True' in snippet
    assert "With timm alone" not in card.text


@pytest.mark.parametrize("arch", ["test_resnet", "resnet18"])
def test_timm_snippet_stays_timm_only_for_timm_architectures(arch):
    card = build_model_card(InitConfig(arch, {}, {"algorithm": {"name": "cts"}}), repo_id="me/x")
    snippet = _timm_snippet(card.text)
    assert "With timm alone:" in card.text
    assert snippet.splitlines()[0] == "import timm" and "lsml_hub" not in snippet


def test_saving_again_replaces_the_init_whole(hub_make_init, hub_trained_model):
    first = hub_make_init()
    sha1 = json.loads((first / "config.json").read_text())["lsml"]["sha256"]
    model = hub_trained_model("resnet20_cifar", 26, seed=1)
    lsml_hub.save_init(first, model, lsml={"algorithm": {"name": "reptile"}})
    config = verify_init(first)
    assert config.sha256 != sha1 and config.algorithm_name == "reptile"


def test_verify_init_accepts_a_good_folder(hub_make_init):
    config = verify_init(hub_make_init())
    assert config.architecture == "resnet20_cifar"
    assert config.source_tasks[0]["name"] == "latin_upper"


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_verify_init_refuses_damaged_weights(hub_make_init, damage):
    weights = hub_make_init() / "model.safetensors"
    data = bytearray(weights.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"model\.safetensors: sha256 .* does not match") as err:
        verify_init(weights.parent)
    assert "\n" not in str(err.value)


def test_verify_init_names_a_missing_file(hub_make_init):
    folder = hub_make_init()
    (folder / "config.json").unlink()
    with pytest.raises(InitError, match="missing config.json"):
        verify_init(folder)


def test_save_init_refuses_unknown_pretrained_cfg_keys(tmp_path):
    model = timm.create_model("test_resnet", num_classes=3)
    with pytest.raises(ConfigError, match=r"unknown pretrained_cfg keys \['img_size'\]; valid keys"):
        lsml_hub.save_init(tmp_path / "init", model, lsml={}, pretrained_cfg={"img_size": 32})
    assert not (tmp_path / "init").exists()


def test_save_init_refuses_unserializable_lsml(tmp_path):
    model = timm.create_model("test_resnet", num_classes=3)
    with pytest.raises(ConfigError, match="lsml cannot be written"):
        lsml_hub.save_init(tmp_path / "init", model, lsml={"optimizer": object()})
    assert list(tmp_path.iterdir()) == []


def test_save_init_never_replaces_a_folder_that_is_not_an_init(tmp_path):
    precious = tmp_path / "results"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="holds files that save_init does not write: notes.txt"):
        lsml_hub.save_init(precious, timm.create_model("test_resnet"), lsml={})
    assert (precious / "notes.txt").read_text() == "keep me"


def test_save_init_refuses_a_model_without_timm_config(tmp_path):
    with pytest.raises(ConfigError, match="no timm pretrained_cfg"):
        lsml_hub.save_init(tmp_path / "init", torch.nn.Linear(2, 2), lsml={})


def test_save_init_keeps_model_args_needed_to_rebuild(tmp_path):
    model = timm.create_model("resnet20_cifar", num_classes=4, in_chans=1)
    folder = lsml_hub.save_init(tmp_path / "init", model, lsml={}, pretrained_cfg={"input_size": (1, 32, 32)})
    assert json.loads((folder / "config.json").read_text())["model_args"] == {"in_chans": 1}
    loaded = lsml_hub.create_model(folder, num_classes=2)
    assert loaded.stem[0].in_channels == 1
