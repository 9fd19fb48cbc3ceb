"""What is listed as available (registered, Hugging Face cache, Hub), and hubconf.py's entry points."""

from __future__ import annotations

import importlib.util
import inspect
import logging
import shutil
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch
from _hub_fakes import FakeHub

import lsml_hub
from lsml_hub._hub_client import http_client_module
from lsml_hub.errors import ConfigError, InitError
from lsml_hub.hub import InitEntry, add_to_hub_cache, cached_inits, get_init, list_inits, parse_init, register_init
from lsml_hub.hub import registry as registry_module

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def empty_registry(monkeypatch):
    """A registry of this test's own: what a test registers does not outlive it."""
    monkeypatch.setattr(registry_module, "_REGISTRY", {})


def entry(name="resnet20_cifar.mine", hub_id="owner/name", revision=None, **kw) -> InitEntry:
    arch = name.partition(".")[0]
    return InitEntry(name, hub_id, revision, arch, kw.pop("algorithm", "cts"), ("latin_upper",), (3, 32, 32), **kw)


def assert_loads_weights_of(init: str, folder: Path) -> None:
    model = lsml_hub.create_model(init, num_classes=3)
    state = model.state_dict()
    for key, tensor in safetensors.torch.load_file(folder / "model.safetensors").items():
        assert torch.equal(state[key], tensor), (init, key)


# ---- the registry ----------------------------------------------------------------------------------


def test_nothing_is_registered_or_listed_on_a_fresh_machine(hub_offline_cache):
    assert list_inits() == [] and registry_module.registered_names() == []


def test_a_registered_name_resolves_to_its_hub_id_and_is_listed():
    registered = register_init(entry(revision="v1", description="mine"))
    assert get_init("resnet20_cifar.mine") is registered
    assert parse_init("resnet20_cifar.mine").location == "owner/name"
    assert str(parse_init("resnet20_cifar.mine")) == "hf-hub:owner/name@v1"
    [listed] = list_inits(hub=False)
    assert (listed.init, listed.origins, listed.hf_hub_id, listed.revision) == (
        "resnet20_cifar.mine", ("registered",), "owner/name", "v1")
    assert (listed.architecture, listed.algorithm, listed.input_size, listed.description) == (
        "resnet20_cifar", "cts", (3, 32, 32), "mine")


def test_register_init_refuses_a_taken_name_unless_asked():
    register_init(entry())
    other = entry(hub_id="me/other")
    with pytest.raises(ConfigError, match="already registered"):
        register_init(other)
    assert register_init(other, overwrite=True) is get_init("resnet20_cifar.mine")


def test_entry_name_must_match_its_architecture():
    with pytest.raises(ConfigError, match="must be 'resnet20_cifar.<tag>'"):
        InitEntry("resnet18.cts", "me/x", None, "resnet20_cifar", "cts", ("a",), (3, 32, 32))


def test_get_init_of_an_unknown_name_suggests_close_registered_names_on_one_line():
    register_init(entry("resnet20_cifar.reptile_paper8"))
    with pytest.raises(InitError, match=r"did you mean resnet20_cifar\.reptile_paper8\?$") as err:
        get_init("resnet20_cifar.reptle_paper8")
    assert "\n" not in str(err.value)
    with pytest.raises(InitError, match=r"\(registered: resnet20_cifar\.reptile_paper8\)$"):
        get_init("vit_huge.xyz")


# ---- the Hugging Face cache --------------------------------------------------------------------------


def test_cached_inits_are_listed_per_ref_as_loadable_hf_hub_strings(hub_make_init, hub_offline_cache):
    folder = hub_make_init("resnet20_cifar")
    add_to_hub_cache(folder, "owner/name")
    add_to_hub_cache(folder, "owner/name", revision="v1")
    listed = list_inits()
    assert [(e.init, e.origins) for e in listed] == [("hf-hub:owner/name", ("cache",)),
                                                     ("hf-hub:owner/name@v1", ("cache",))]
    assert listed[0].architecture == "resnet20_cifar" and listed[0].algorithm == "cts"
    assert listed[0].source_tasks == ("latin_upper", "cifar100") and listed[0].input_size == (3, 32, 32)
    for e in listed:
        assert_loads_weights_of(e.init, folder)


def test_a_snapshot_no_ref_names_is_listed_by_its_commit(hub_make_init, hub_offline_cache):
    folder = hub_make_init()
    snapshot = add_to_hub_cache(folder, "owner/name", revision="v1")
    (hub_offline_cache / "models--owner--name" / "refs" / "v1").unlink()
    [listed] = list_inits()
    assert listed.init == f"hf-hub:owner/name@{snapshot.name}"
    assert_loads_weights_of(listed.init, folder)


def test_cache_entries_that_are_not_loadable_inits_are_skipped(hub_make_init, hub_offline_cache):
    foreign = hub_make_init(name="foreign")
    (foreign / "config.json").write_text('{"architecture": "resnet18", "num_classes": 1000}')  # timm's own
    add_to_hub_cache(hub_make_init(name="ok"), "owner/ok")
    unknown_arch = add_to_hub_cache(hub_make_init(name="arch"), "owner/unknown-arch")
    no_weights = add_to_hub_cache(hub_make_init(name="weights"), "owner/no-weights")
    # damaged after being added: what a download from another tool, or a partial one, may leave
    config = (unknown_arch / "config.json").read_text().replace('"resnet20_cifar"', '"resnet99_nope"')
    (unknown_arch / "config.json").unlink()
    (unknown_arch / "config.json").write_text(config)
    (no_weights / "model.safetensors").unlink()
    config_folder = add_to_hub_cache(hub_make_init(name="dir"), "owner/config-is-a-folder")
    (config_folder / "config.json").unlink()
    (config_folder / "config.json").mkdir()
    for name, edit in {"bad-tasks": ('"source_tasks": [', '"source_tasks": 5, "x": ['),
                       "bad-size": ('"input_size": [', '"input_size": "abc", "x": [')}.items():
        snapshot = add_to_hub_cache(hub_make_init(name=name), f"owner/{name}")
        text = (snapshot / "config.json").read_text()
        assert edit[0] in text
        (snapshot / "config.json").unlink()
        (snapshot / "config.json").write_text(text.replace(edit[0], edit[1], 1))
    not_text = add_to_hub_cache(hub_make_init(name="bytes"), "owner/not-utf8")
    (not_text / "config.json").unlink()
    (not_text / "config.json").write_bytes(b'{"architecture": "\xff"}')
    shutil.copytree(foreign, hub_offline_cache / "models--owner--foreign" / "snapshots" / ("f" * 40))
    (hub_offline_cache / "datasets--owner--data" / "snapshots").mkdir(parents=True)
    (hub_offline_cache / "not-a-repo").mkdir()
    assert [e.init for e in list_inits()] == ["hf-hub:owner/ok"]


def test_the_cache_is_the_one_hf_hub_cache_names(hub_make_init, tmp_path, monkeypatch):
    from huggingface_hub import constants

    add_to_hub_cache(hub_make_init(), "owner/name", cache_dir=tmp_path / "elsewhere")
    assert cached_inits(tmp_path / "elsewhere")[0].init == "hf-hub:owner/name"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "none-yet"))
    assert cached_inits() == []
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert [e.init for e in list_inits(hub=False)] == ["hf-hub:owner/name"]


# ---- the Hub (faked: never the network) --------------------------------------------------------------


def test_the_hub_is_asked_for_models_tagged_lsml_hub_unless_offline(hub_offline_cache, monkeypatch):
    hub = FakeHub(monkeypatch, {"someone/resnet20_cifar.cts": None})
    assert list_inits() == [] and hub.list_calls == []  # HF_HUB_OFFLINE is set
    [listed] = list_inits(hub=True)
    assert (listed.init, listed.origins, listed.architecture) == ("hf-hub:someone/resnet20_cifar.cts", ("hub",),
                                                                 "resnet20_cifar")
    assert hub.list_calls[0]["filter"] == "lsml-hub" and hub.list_calls[0]["limit"] == registry_module.HUB_LIST_LIMIT
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    assert [e.init for e in list_inits()] == ["hf-hub:someone/resnet20_cifar.cts"]
    assert list_inits(hub=False) == []


@pytest.mark.parametrize("error", [http_client_module().ConnectError("[Errno -3] name resolution failed"),
                                   OSError("Network is unreachable"), TimeoutError("read timed out")])
def test_an_unreachable_hub_is_a_warning_and_the_local_inits_are_still_listed(hub_make_init, hub_offline_cache,
                                                                              monkeypatch, caplog, error):
    add_to_hub_cache(hub_make_init(), "owner/name")
    FakeHub(monkeypatch, {}, error=error)
    with caplog.at_level(logging.WARNING, logger="lsml_hub"):
        assert [e.init for e in list_inits(hub=True)] == ["hf-hub:owner/name"]
    [record] = caplog.records
    assert record.levelno == logging.WARNING and "could not list lsml-hub inits on the Hugging Face Hub" in (
        record.getMessage()) and str(error).splitlines()[0] in record.getMessage()


def test_every_listed_init_loads_and_one_init_from_several_sources_is_listed_once(hub_make_init, hub_offline_cache,
                                                                                  monkeypatch):
    cached, on_hub, both = (hub_make_init("resnet20_cifar", name=n) for n in ("cached", "hub", "both"))
    add_to_hub_cache(cached, "owner/cached")
    add_to_hub_cache(both, "owner/both")
    register_init(entry("resnet20_cifar.mine", "owner/cached"))
    hub = FakeHub(monkeypatch, {"owner/hub": on_hub, "owner/both": None})
    listed = list_inits(hub=True)
    assert [(e.init, e.origins) for e in listed] == [
        ("hf-hub:owner/both", ("cache", "hub")), ("hf-hub:owner/cached", ("cache",)),
        ("hf-hub:owner/hub", ("hub",)), ("resnet20_cifar.mine", ("registered",))]
    source = {"hf-hub:owner/both": both, "hf-hub:owner/cached": cached, "hf-hub:owner/hub": on_hub,
              "resnet20_cifar.mine": cached}
    for e in listed:
        assert_loads_weights_of(e.init, source[e.init])
    assert hub.downloads == [("owner/hub", "config.json"), ("owner/hub", "model.safetensors")]


def test_a_hub_init_is_described_by_its_name_and_its_cards_tags(hub_make_init, hub_offline_cache, monkeypatch):
    # The Hub lists ids and tags, not config.json: the <arch>.<tag> name, the algorithm tag, dataset: tags.
    pushed = hub_make_init(algorithm={"name": "reptile", "meta_lr": 1.0, "reset_period": 10})
    FakeHub(monkeypatch, {"me/resnet20_cifar.mine": pushed, "me/not-an-arch": pushed})
    listed = {e.init: e for e in list_inits(hub=True)}
    mine, other = listed["hf-hub:me/resnet20_cifar.mine"], listed["hf-hub:me/not-an-arch"]
    assert (mine.architecture, mine.algorithm) == ("resnet20_cifar", "reptile")
    assert mine.source_tasks == ("uoft-cs/cifar100",)
    assert (other.architecture, other.algorithm) == (None, "reptile")


def test_the_pattern_filters_init_strings_and_hub_ids(hub_make_init, hub_offline_cache):
    add_to_hub_cache(hub_make_init(), "me/resnet20_cifar.cts")
    add_to_hub_cache(hub_make_init(name="other"), "you/resnet20_cifar.reptile")
    register_init(entry("resnet20_cifar.reptile_mine", "them/x"))
    assert [e.init for e in list_inits("*reptile*")] == ["hf-hub:you/resnet20_cifar.reptile",
                                                        "resnet20_cifar.reptile_mine"]
    assert [e.init for e in list_inits("me/*")] == ["hf-hub:me/resnet20_cifar.cts"]
    assert list_inits("nothing*") == []


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


def test_hubconf_lists_dependencies_and_its_entry_points(hubconf):
    assert hubconf.dependencies == ["torch", "timm", "safetensors", "huggingface_hub"]
    assert set(entry_points(hubconf)) == {"meta_init", "resnet20_cifar", "test_resnet"}


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


def test_architecture_entry_needs_an_init_since_none_is_published(hubconf):
    with pytest.raises(InitError, match=r"^the resnet20_cifar entry point needs init=\.\.\.: an init of "
                                        r"resnet20_cifar \(hf-hub:owner/name\[@revision\], .*scratch:ARCH") as err:
        hubconf.resnet20_cifar(num_classes=3)
    assert "\n" not in str(err.value)
