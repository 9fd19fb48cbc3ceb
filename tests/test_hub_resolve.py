"""The init grammar: every form parsed in one place and built by every entry point (create_model, torch.hub, CLI).

The forms: ``hf-hub:owner/name[@rev]``, ``local-dir:PATH``, a folder path, a registered name,
``scratch:ARCH`` and ``timm:ARCH[.TAG]`` (timm's pretrained weights, from the Hugging Face cache only).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
from _hub_fakes import cache_timm_weights
from huggingface_hub.errors import RepositoryNotFoundError

import lsml_hub
from lsml_hub._hub_client import http_client_module
from lsml_hub.cli import main
from lsml_hub.errors import ConfigError, InitError, IntegrityError
from lsml_hub.hub import InitEntry, InitRef, add_to_hub_cache, load_init_config, parse_init
from lsml_hub.hub import registry as registry_module
from lsml_hub.hub import resolve as resolve_module
from lsml_hub.hub.load import create_model_as
from lsml_hub.hub.resolve import VALID_FORMS
from lsml_hub.metatest.model import init_architecture

REPO_ROOT = Path(__file__).resolve().parents[1]


def assert_backbone_is(model: torch.nn.Module, tensors: dict[str, torch.Tensor], num_classes: int) -> None:
    state = model.state_dict()
    backbone = {k: v for k, v in tensors.items() if not k.startswith(("fc.", "head.fc."))}
    for key, tensor in backbone.items():
        assert torch.equal(state[key], tensor), key
    assert model.num_classes == num_classes


def no_download(*args, **kwargs):
    raise AssertionError("nothing may be downloaded")


# ---- parse_init --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("init", "ref"), [
    ("hf-hub:me/resnet20_cifar.cts", InitRef("hf-hub", "me/resnet20_cifar.cts")),
    ("hf-hub:me/x@v1", InitRef("hf-hub", "me/x", "v1")),
    ("HF-HUB:me/x@refs/pr/1", InitRef("hf-hub", "me/x", "refs/pr/1")),
    ("local-dir:runs/a b/init", InitRef("local-dir", "runs/a b/init")),
    ("runs/demo/inits/cts", InitRef("local-dir", "runs/demo/inits/cts")),
    ("./init", InitRef("local-dir", "./init")),
    ("~/inits/cts", InitRef("local-dir", "~/inits/cts")),
    (Path("runs/init"), InitRef("local-dir", "runs/init")),
    ("scratch:resnet20_cifar", InitRef("scratch", "resnet20_cifar")),
    ("scratch:resnet18.a1_in1k", InitRef("scratch", "resnet18.a1_in1k")),
    ("timm:resnet18", InitRef("timm", "resnet18.a1_in1k")),  # timm's default tag, made explicit
    ("timm:resnet18.tv_in1k", InitRef("timm", "resnet18.tv_in1k")),
])
def test_each_form_parses_to_its_ref(init, ref):
    assert parse_init(init) == ref
    assert parse_init(parse_init(init)) == ref


def test_a_registered_name_and_a_bare_existing_folder(tmp_path, monkeypatch):
    entry = InitEntry("resnet20_cifar.mine", "me/x", "v2", "resnet20_cifar", "cts", ("svhn",), (3, 32, 32))
    monkeypatch.setitem(registry_module._REGISTRY, entry.name, entry)
    assert parse_init("resnet20_cifar.mine") == InitRef("hf-hub", "me/x", "v2", name="resnet20_cifar.mine")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "myinit").mkdir()
    assert parse_init("myinit") == InitRef("local-dir", "myinit")


def test_architecture_of_each_form_without_building_it(hub_make_init):
    assert parse_init("scratch:resnet18.a1_in1k").architecture == "resnet18"
    assert parse_init("timm:resnet18").architecture == "resnet18"
    assert parse_init("hf-hub:me/x").architecture is None
    assert init_architecture("timm:test_resnet") == "test_resnet"
    assert init_architecture(str(hub_make_init("resnet20_cifar"))) == "resnet20_cifar"


@pytest.mark.parametrize(("init", "error", "match"), [
    ("s3:bucket/init", InitError, r"^unknown init source 's3' in 's3:bucket/init'; valid: "),
    ("resnet20_cifar.nothing", InitError, r"^unknown init 'resnet20_cifar\.nothing': not a registered name nor a "
                                          r"folder; for timm's resnet20_cifar use scratch:resnet20_cifar \(random "
                                          r"weights\); valid: "),
    ("resnet18", InitError, r"^unknown init 'resnet18': .*; for timm's resnet18 use timm:resnet18 \(pretrained "
                            r"weights\) or scratch:resnet18 \(random weights\); valid: "),
    ("nothing_at_all", InitError, r"^unknown init 'nothing_at_all': .*`lsml-hub list` shows the inits that load "
                                  r"here, as hf-hub: strings; valid: "),
    ("", InitError, r"^init must be a non-empty string or path, got ''; valid: "),
    ("hf-hub:", InitError, r"^init 'hf-hub:' has nothing after 'hf-hub:'; valid: "),
    ("timm:resnet18.", InitError, r"^'timm:resnet18.' has an empty tag after '.'; use timm:resnet18, or "
                                  r"timm:resnet18.TAG$"),
    ("scratch:test_resnet.", InitError, r"^'scratch:test_resnet.' has an empty tag"),
    ("hf-hub:a/b/c", InitError, r"^bad Hub id in 'hf-hub:a/b/c': Repo id must be in the form 'repo_name' or "
                                r"'namespace/repo_name': 'a/b/c'; use hf-hub:owner/name\[@revision\]$"),
    ("hf-hub:owner/na me", InitError, r"^bad Hub id in 'hf-hub:owner/na me': .*; use hf-hub:owner/name\[@revision\]$"),
    ("hf-hub:owner/name@", InitError, r"^bad revision in 'hf-hub:owner/name@'"),
    ("scratch:", InitError, r"nothing after 'scratch:'"),
    ("scratch:resnt18", ConfigError, r"^unknown model 'resnt18' in 'scratch:resnt18': not a timm architecture; "
                                     r"close names: resnet18"),
    ("scratch:resnet18@v1", InitError, r"^'scratch:resnet18@v1' takes no revision; use scratch:ARCH$"),
    ("timm:resnet18.nope", ConfigError, r"^unknown tag 'nope' of resnet18 in 'timm:resnet18\.nope'; known: "
                                        r"resnet18\.a1_in1k, "),
    ("timm:resnet20_cifar", InitError, r"^timm has no pretrained weights on the Hugging Face Hub for resnet20_cifar "
                                       r"\(in 'timm:resnet20_cifar'\); use scratch:resnet20_cifar for random weights"),
])
def test_a_bad_string_is_one_line_naming_it_and_the_valid_forms(init, error, match):
    with pytest.raises(error, match=match) as err:
        lsml_hub.create_model(init)
    assert "\n" not in str(err.value)
    if "valid: " in match:
        assert str(err.value).endswith(f"valid: {VALID_FORMS}")


def test_valid_forms_name_every_form():
    for form in ("hf-hub:owner/name[@revision]", "local-dir:PATH", "a folder path",
                 "a name registered in this Python process", "scratch:ARCH", "timm:ARCH[.TAG]"):
        assert form in VALID_FORMS


# ---- each form through create_model --------------------------------------------------------------------


@pytest.mark.parametrize("form", ["hf-hub", "hf-hub@rev", "registered", "local-dir", "path-str", "path"])
def test_each_init_form_loads_the_same_weights(form, hub_make_init, hub_offline_cache, monkeypatch):
    folder = hub_make_init("resnet20_cifar")
    snapshot = add_to_hub_cache(folder, "owner/name", revision="v1")
    entry = InitEntry("resnet20_cifar.cached", "owner/name", snapshot.name, "resnet20_cifar", "cts",
                      ("latin_upper",), (3, 32, 32))
    monkeypatch.setitem(registry_module._REGISTRY, entry.name, entry)
    add_to_hub_cache(folder, "owner/name")
    init = {"hf-hub": "hf-hub:owner/name", "hf-hub@rev": "hf-hub:owner/name@v1", "registered": entry.name,
            "local-dir": f"local-dir:{folder}", "path-str": str(folder), "path": folder}[form]
    model = lsml_hub.create_model(init, num_classes=4)
    assert_backbone_is(model, safetensors.torch.load_file(folder / "model.safetensors"), 4)


def test_scratch_builds_timms_random_init_and_fetches_nothing(monkeypatch):
    monkeypatch.setattr(resolve_module, "hf_hub_download", no_download)
    torch.manual_seed(0)
    model = lsml_hub.create_model("scratch:resnet20_cifar", num_classes=5)
    torch.manual_seed(0)
    twin = timm.create_model("resnet20_cifar", num_classes=5)
    assert model.num_classes == 5 and model.pretrained_cfg["architecture"] == "resnet20_cifar"
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), twin.state_dict().values()))
    assert lsml_hub.create_model("scratch:test_resnet", num_classes=0, drop_rate=0.5).drop_rate == 0.5


def test_timm_loads_pretrained_weights_from_the_hf_cache(hub_offline_cache, monkeypatch):
    tensors = cache_timm_weights(hub_offline_cache)
    monkeypatch.setattr(resolve_module, "hf_hub_download", no_download)
    for init in ("timm:test_resnet", "timm:test_resnet.r160_in1k"):
        model = lsml_hub.create_model(init, num_classes=7)
        assert_backbone_is(model, tensors, 7)
        assert model.pretrained_cfg["input_size"] == (3, 160, 160)  # timm's cfg of those weights
    random = lsml_hub.create_model("timm:test_resnet", num_classes=7, pretrained=False)
    assert not torch.equal(random.state_dict()["conv1.0.weight"], tensors["conv1.0.weight"])


def test_timm_weights_are_read_from_a_given_cache_dir(tmp_path, monkeypatch):
    tensors = cache_timm_weights(tmp_path / "elsewhere", symlink=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty"))
    model = lsml_hub.create_model("timm:test_resnet", num_classes=2, cache_dir=tmp_path / "elsewhere")
    assert_backbone_is(model, tensors, 2)


def test_timm_weights_not_cached_are_refused_with_the_command_to_fetch_them(hub_offline_cache, monkeypatch):
    monkeypatch.setattr(resolve_module, "hf_hub_download", no_download)
    with pytest.raises(InitError, match=r"^init 'timm:resnet18\.a1_in1k' needs timm's resnet18\.a1_in1k weights "
                                        r".*`hf download timm/resnet18\.a1_in1k model\.safetensors`") as err:
        lsml_hub.create_model("timm:resnet18", num_classes=2)
    assert "\n" not in str(err.value)
    assert list(hub_offline_cache.iterdir()) == []  # nothing downloaded, nothing written


def test_damaged_cached_timm_weights_are_refused(hub_offline_cache):
    cache_timm_weights(hub_offline_cache)
    blob = next((hub_offline_cache / "models--timm--test_resnet.r160_in1k" / "blobs").iterdir())
    blob.write_bytes(blob.read_bytes()[:-8])
    with pytest.raises(IntegrityError, match=r"does not match its cache blob name .*--force-download`$"):
        lsml_hub.create_model("timm:test_resnet")


def test_scratch_and_timm_have_no_config_to_read():
    with pytest.raises(InitError, match=r"^scratch:test_resnet is random weights of timm's test_resnet, not an "
                                        r"init: it has no config\.json"):
        load_init_config("scratch:test_resnet")


# ---- the other entry points: torch.hub, hubconf's architecture entries, the CLI ----------------------------


def test_torch_hub_load_takes_scratch_and_timm(hub_offline_cache, monkeypatch):
    tensors = cache_timm_weights(hub_offline_cache)
    monkeypatch.setattr(resolve_module, "hf_hub_download", no_download)
    model = torch.hub.load(str(REPO_ROOT), "meta_init", init="scratch:resnet20_cifar", num_classes=3, source="local")
    assert model.num_classes == 3 and model.pretrained_cfg["architecture"] == "resnet20_cifar"
    model = torch.hub.load(str(REPO_ROOT), "test_resnet", init="timm:test_resnet", num_classes=3, source="local")
    assert_backbone_is(model, tensors, 3)


def test_an_architecture_entry_refuses_scratch_or_timm_of_another_architecture():
    with pytest.raises(InitError, match=r"^init scratch:test_resnet is for 'test_resnet', not 'resnet20_cifar'"):
        create_model_as("resnet20_cifar", "scratch:test_resnet")
    assert create_model_as("test_resnet", "scratch:test_resnet", num_classes=2).num_classes == 2


def test_cli_info_of_scratch_summarizes_the_architecture(capsys):
    assert main(["info", "scratch:resnet20_cifar"]) == 0
    out = capsys.readouterr().out
    params = sum(p.numel() for p in timm.create_model("resnet20_cifar", num_classes=0).parameters())
    assert "scratch:resnet20_cifar" in out and "random (timm's initialisation" in out
    assert f"parameters    {params:,} (headless)" in out and "size (3, 32, 32)" in out


def test_cli_info_of_timm_says_whether_the_weights_are_cached(hub_offline_cache, capsys):
    assert main(["info", "timm:test_resnet"]) == 0
    out = capsys.readouterr().out
    assert "timm:test_resnet.r160_in1k" in out and "hf download timm/test_resnet.r160_in1k model.safetensors" in out
    cache_timm_weights(hub_offline_cache)
    assert main(["info", "timm:test_resnet"]) == 0
    out = capsys.readouterr().out
    assert f"cached        {hub_offline_cache}/models--timm--test_resnet.r160_in1k/snapshots/" in out


def test_online_a_cache_added_init_the_hub_does_not_have_points_to_offline_mode(hub_make_init, hub_offline_cache,
                                                                                 monkeypatch):
    add_to_hub_cache(hub_make_init(), "me/demo")
    client = http_client_module()
    response = client.Response(404, request=client.Request("GET", "https://huggingface.co/api/models/me/demo"))

    def hub_says_no_such_repo(repo_id, filename, **kwargs):
        raise RepositoryNotFoundError("404 Client Error: Repository Not Found", response=response)

    monkeypatch.setattr(resolve_module, "hf_hub_download", hub_says_no_such_repo)
    with pytest.raises(InitError, match=r"^hf-hub:me/demo: no Hub repo 'me/demo' .*; the Hugging Face cache holds "
                                        r"it \(as `lsml-hub cache add` leaves it\): set HF_HUB_OFFLINE=1 to load it$"):
        lsml_hub.create_model("hf-hub:me/demo")
    with pytest.raises(InitError, match=r"set HF_TOKEN\)$"):
        lsml_hub.create_model("hf-hub:me/other")
