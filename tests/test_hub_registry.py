"""The registry table and hubconf.py's entry points."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path

import pytest
import timm
import yaml

from lsml_hub.data import TaskSpec
from lsml_hub.errors import ConfigError, InitError
from lsml_hub.hub import InitEntry, get_init, list_inits, parse_init, register_init
from lsml_hub.hub import registry as registry_module

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_entries_are_typed_and_named_arch_dot_tag():
    entries = list_inits()
    assert [e.name for e in entries] == sorted(e.name for e in entries)
    assert {e.name for e in entries} >= {"resnet20_cifar.cts_paper8", "resnet20_cifar.reptile_paper8"}
    for e in entries:
        assert e.name == f"{e.architecture}.{e.tag}"
        assert timm.is_model(e.architecture)
        assert e.hf_hub_id.count("/") == 1 and len(e.input_size) == 3 and e.source_tasks


# The recipe that makes each planned init; its tasks are the entry's source tasks.
RECIPE_OF = {
    "resnet20_cifar.cts_paper8": "paper_cts.yaml",
    "resnet20_cifar.reptile_paper8": "paper_reptile.yaml",
    "test_resnet.cts_glyphs4": "cpu_demo.yaml",
}


@pytest.mark.parametrize(("name", "recipe"), sorted(RECIPE_OF.items()))
def test_planned_entries_agree_with_their_recipes(name, recipe):
    config = yaml.safe_load((REPO_ROOT / "recipes" / "configs" / recipe).read_text())
    entry = get_init(name)
    task_names = tuple(TaskSpec.parse(task).display_name for task in config["tasks"])
    assert entry.source_tasks == task_names
    assert entry.architecture == config["model"]
    assert entry.algorithm == config["algorithm"]["name"]
    assert entry.input_size == (3, config["input_size"], config["input_size"])


def test_every_builtin_entry_has_a_recipe():
    assert {e.name for e in list_inits() if e.hf_hub_id.startswith("lsml-hub/")} == set(RECIPE_OF)


def test_get_init_returns_the_entry():
    entry = get_init("resnet20_cifar.cts_paper8")
    assert entry.algorithm == "cts" and entry.input_size == (3, 32, 32) and len(entry.source_tasks) == 8
    assert entry.init == "hf-hub:lsml-hub/resnet20_cifar.cts_paper8"
    assert parse_init(entry.name).location == entry.hf_hub_id


def test_list_inits_filters_by_pattern():
    assert [e.name for e in list_inits("*reptile*")] == ["resnet20_cifar.reptile_paper8"]
    assert list_inits("nothing*") == []


def test_unknown_name_suggests_close_names_on_one_line():
    with pytest.raises(InitError, match=r"did you mean resnet20_cifar\.reptile_paper8") as err:
        get_init("resnet20_cifar.reptle_paper8")
    assert "\n" not in str(err.value)


def test_unknown_name_without_close_names_lists_the_known_ones():
    with pytest.raises(InitError, match=r"known inits: .*resnet20_cifar\.cts_paper8"):
        get_init("vit_huge.xyz")


def test_register_init_refuses_a_taken_name_unless_asked(monkeypatch):
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))
    entry = InitEntry("resnet20_cifar.cts_paper8", "me/x", None, "resnet20_cifar", "cts", ("a",), (3, 32, 32))
    with pytest.raises(ConfigError, match="already registered"):
        register_init(entry)
    assert register_init(entry, overwrite=True) is get_init("resnet20_cifar.cts_paper8")


def test_entry_name_must_match_its_architecture():
    with pytest.raises(ConfigError, match="must be 'resnet20_cifar.<tag>'"):
        InitEntry("resnet18.cts", "me/x", None, "resnet20_cifar", "cts", ("a",), (3, 32, 32))


# ---- hubconf.py ------------------------------------------------------------------------------------


@pytest.fixture
def hubconf(monkeypatch):
    spec = importlib.util.spec_from_file_location("hubconf_under_test", REPO_ROOT / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def entry_points(module) -> list[str]:
    # torch.hub.list only reads GitHub repos; this is its rule for what counts as an entry point
    return [n for n in dir(module) if callable(getattr(module, n)) and not n.startswith("_")]


def test_hubconf_lists_dependencies_and_one_entry_per_registry_architecture(hubconf):
    assert hubconf.dependencies == ["torch", "timm", "safetensors", "huggingface_hub"]
    assert set(entry_points(hubconf)) == {"meta_init"} | {e.architecture for e in list_inits()}


def test_hubconf_entries_are_keyword_only_and_documented(hubconf):
    for name in entry_points(hubconf):
        fn = getattr(hubconf, name)
        params = inspect.signature(fn).parameters
        assert params["num_classes"].kind is inspect.Parameter.KEYWORD_ONLY
        assert params["pretrained"].default is True and params["num_classes"].default == 0
        assert "Example:" in fn.__doc__ and "torch.hub.load" in fn.__doc__


def test_hubconf_import_does_no_io(monkeypatch):
    def no_io(*args, **kwargs):
        raise AssertionError("hubconf did I/O at import")

    monkeypatch.setattr("lsml_hub.hub.resolve.hf_hub_download", no_io)
    monkeypatch.setattr("builtins.open", no_io)
    spec = importlib.util.spec_from_file_location("hubconf_io_check", REPO_ROOT / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # source is read by the loader before open() is patched out
    assert callable(module.meta_init)
    sys.modules.pop("hubconf_io_check", None)


def test_architecture_entry_without_pretrained_fetches_nothing(hubconf, monkeypatch):
    monkeypatch.setattr("lsml_hub.hub.resolve.hf_hub_download", pytest.fail)
    model = hubconf.resnet20_cifar(num_classes=3, pretrained=False)
    assert model.num_classes == 3 and model.pretrained_cfg["architecture"] == "resnet20_cifar"
