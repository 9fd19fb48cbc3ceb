"""push_to_hub with HfApi's network methods replaced by recording fakes; one real push when possible."""

from __future__ import annotations

import logging
import socket
import uuid
from pathlib import Path

import pytest
from huggingface_hub import CommitInfo, HfApi, RepoUrl, constants
from huggingface_hub import errors as hf_errors
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.hf_api import GitRefInfo, GitRefs
from huggingface_hub.utils import filter_repo_objects

import lsml_hub
from lsml_hub._hub_client import http_client_module
from lsml_hub.errors import InitError, IntegrityError
from lsml_hub.hub import PushError

TOKEN = "hf_fake_token_never_shown"
OID = "c" * 40


def http_error(status: int, message: str) -> HfHubHTTPError:
    # The error carries a response of huggingface_hub's own HTTP client (httpx or a fork of it).
    client = http_client_module()
    request = client.Request("POST", "https://huggingface.co/api/repos/create")
    return HfHubHTTPError(message, response=client.Response(status, request=request))


class RecordingHub:
    """Replaces HfApi's network methods; records what would have been sent."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.fail_on: str | None = None
        self.error: Exception | None = None  # raised by fail_on; default a 403 from the Hub
        self.tags: list[str] = []  # the repo's existing tags
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # online, to a Hub faked here
        for name in ("create_repo", "list_repo_refs", "create_branch", "upload_folder", "create_tag"):
            monkeypatch.setattr(HfApi, name, self._recorder(name))

    def _recorder(self, name: str):
        hub = self

        def method(api: HfApi, *args, **kwargs):
            if hub.fail_on == name:
                raise hub.error or http_error(403, "403 Forbidden: you cannot write to this repo\nmore details")
            kwargs.update(library_name=api.library_name, library_version=api.library_version, token=api.token)
            if args:
                kwargs["repo_id"] = args[0]
            if name == "upload_folder":
                folder = Path(kwargs["folder_path"])
                files = [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()]
                kwargs["files"] = sorted(filter_repo_objects(files, allow_patterns=kwargs["allow_patterns"]))
            hub.calls.append((name, kwargs))
            if name == "create_repo":
                return RepoUrl(f"https://huggingface.co/{kwargs['repo_id']}")
            if name == "list_repo_refs":
                return GitRefs(branches=[], converts=[], tags=[GitRefInfo(t, f"refs/tags/{t}", OID) for t in hub.tags])
            if name == "upload_folder":
                return CommitInfo(commit_url=f"https://huggingface.co/{kwargs['repo_id']}/commit/{OID}",
                                  commit_message=kwargs["commit_message"], commit_description="", oid=OID)
            return None

        return method

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def call(self, name: str) -> dict:
        return next(kwargs for n, kwargs in self.calls if n == name)


@pytest.fixture
def hub_fake(monkeypatch) -> RecordingHub:
    return RecordingHub(monkeypatch)


def test_push_sends_exactly_the_init_files_with_revision_and_tag(hub_make_init, hub_fake, caplog, capsys):
    folder = hub_make_init()
    (folder / "notes.txt").write_text("a stray file that must not be uploaded")
    caplog.set_level(logging.DEBUG)
    result = lsml_hub.push_to_hub(folder, "owner/name", private=True, revision="dev", tag="v1",
                                  commit_message="first init", token=TOKEN)

    assert hub_fake.names() == ["create_repo", "list_repo_refs", "create_branch", "upload_folder", "create_tag"]
    repo = hub_fake.call("create_repo")
    assert repo["repo_id"] == "owner/name" and repo["private"] is True and repo["exist_ok"] is True
    assert repo["library_name"] == "lsml-hub" and repo["library_version"] == lsml_hub.__version__
    assert repo["token"] == TOKEN
    assert hub_fake.call("create_branch")["branch"] == "dev"
    upload = hub_fake.call("upload_folder")
    assert upload["repo_id"] == "owner/name" and upload["revision"] == "dev"
    assert upload["files"] == ["README.md", "config.json", "model.safetensors"]
    assert upload["commit_message"] == "first init"
    tag = hub_fake.call("create_tag")
    assert tag["tag"] == "v1" and tag["revision"] == OID and tag["repo_id"] == "owner/name"
    assert result.init == f"hf-hub:owner/name@{OID}" and result.tag == "v1" and result.revision == "dev"
    assert TOKEN not in caplog.text and TOKEN not in "".join(capsys.readouterr())


def test_push_without_revision_or_tag_makes_no_branch_or_tag(hub_make_init, hub_fake):
    lsml_hub.push_to_hub(hub_make_init(), "owner/name", token=TOKEN)
    assert hub_fake.names() == ["create_repo", "upload_folder"]
    upload = hub_fake.call("upload_folder")
    assert upload["revision"] is None and upload["commit_message"].startswith("Upload resnet20_cifar init (cts)")


def test_push_takes_the_token_from_the_environment(hub_make_init, hub_fake, hub_no_token, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    lsml_hub.push_to_hub(hub_make_init(), "owner/name")
    assert hub_fake.call("create_repo")["token"] == TOKEN


def test_push_without_a_token_is_refused_before_any_request(hub_make_init, hub_fake, hub_no_token):
    with pytest.raises(PushError) as err:
        lsml_hub.push_to_hub(hub_make_init(), "owner/name")
    assert str(err.value) == "no Hugging Face token: set HF_TOKEN or run `hf auth login`, then retry"
    assert hub_fake.calls == []


def test_push_refuses_an_incomplete_folder_before_any_request(hub_make_init, hub_fake):
    folder = hub_make_init()
    (folder / "README.md").unlink()
    with pytest.raises(InitError, match="missing README.md"):
        lsml_hub.push_to_hub(folder, "owner/name", token=TOKEN)
    assert hub_fake.calls == []


def test_push_refuses_a_sha_mismatch_before_any_request(hub_make_init, hub_fake):
    folder = hub_make_init()
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(IntegrityError, match="model.safetensors: sha256"):
        lsml_hub.push_to_hub(folder, "owner/name", token=TOKEN)
    assert hub_fake.calls == []


def test_push_refuses_a_malformed_repo_id(hub_make_init, hub_fake):
    with pytest.raises(PushError, match="bad Hub id 'owner/na me'"):
        lsml_hub.push_to_hub(hub_make_init(), "owner/na me", token=TOKEN)
    assert hub_fake.calls == []


def test_a_refused_request_is_one_line(hub_make_init, hub_fake):
    hub_fake.fail_on = "upload_folder"
    with pytest.raises(PushError, match=r"push to 'owner/name' failed: 403 Forbidden") as err:
        lsml_hub.push_to_hub(hub_make_init(), "owner/name", token=TOKEN)
    assert "\n" not in str(err.value)


def connect_error() -> Exception:
    client = http_client_module()
    request = client.Request("POST", "https://huggingface.co/api/repos/create")
    return client.ConnectError("[Errno -3] Temporary failure in name resolution\nmore", request=request)


@pytest.mark.parametrize("method", ["create_repo", "upload_folder"])
def test_offline_mode_is_one_line_saying_to_unset_hf_hub_offline(hub_make_init, hub_fake, method):
    hub_fake.fail_on = method
    hub_fake.error = hf_errors.OfflineModeIsEnabled("Cannot reach https://huggingface.co/api/repos/create: "
                                                    "offline mode is enabled.\nTo disable it ...")
    with pytest.raises(PushError, match=r"cannot push to 'owner/name': .*offline mode .*unset HF_HUB_OFFLINE") as err:
        lsml_hub.push_to_hub(hub_make_init(), "owner/name", token=TOKEN)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("tag", ["", "bad tag", "v1/", "../x", ".v1"])
def test_a_bad_tag_is_refused_before_the_token_or_the_network(hub_make_init, hub_fake, hub_no_token, tag):
    with pytest.raises(PushError, match=f"bad tag {tag!r}: use letters, digits"):
        lsml_hub.push_to_hub(hub_make_init(), "owner/name", tag=tag)
    assert hub_fake.calls == []


def test_a_tag_the_repo_has_is_refused_before_anything_is_uploaded(hub_make_init, hub_fake):
    hub_fake.tags = ["v1"]
    with pytest.raises(PushError, match=r"owner/name already has a tag 'v1'; choose another tag \(nothing was "
                                        r"uploaded\)"):
        lsml_hub.push_to_hub(hub_make_init(), "owner/name", tag="v1", token=TOKEN)
    assert hub_fake.names() == ["create_repo", "list_repo_refs"]


def test_offline_mode_is_named_before_a_missing_token(hub_make_init, hub_offline_cache, hub_no_token):
    with pytest.raises(PushError, match=r"cannot push to 'owner/name': huggingface_hub is in offline mode"):
        lsml_hub.push_to_hub(hub_make_init(), "owner/name")


def test_real_offline_mode_is_refused_before_any_connection(hub_make_init, hub_offline_cache, monkeypatch):
    # No fake: huggingface_hub's own request hook refuses the first request (create_repo) offline.
    def no_connection(*args, **kwargs):
        raise AssertionError("a connection was attempted in offline mode")

    monkeypatch.setattr(socket, "create_connection", no_connection)
    with pytest.raises(PushError, match=r"cannot push to 'owner/name': .*unset HF_HUB_OFFLINE") as err:
        lsml_hub.push_to_hub(hub_make_init(), "owner/name", token=TOKEN)
    assert "\n" not in str(err.value) and TOKEN not in str(err.value)


@pytest.mark.parametrize(
    "error",
    [
        connect_error(),
        http_client_module().ConnectTimeout("timed out"),
        ConnectionError("[Errno 111] Connection refused"),
        OSError(101, "Network is unreachable"),
    ],
    ids=["connect-error", "timeout", "connection-error", "os-error"],
)
@pytest.mark.parametrize("method", ["create_repo", "list_repo_refs", "create_branch", "upload_folder", "create_tag"])
def test_an_unreachable_hub_is_one_line_saying_to_check_the_network(hub_make_init, hub_fake, method, error):
    hub_fake.fail_on = method
    hub_fake.error = error
    with pytest.raises(PushError, match=r"cannot push to 'owner/name': the Hugging Face Hub cannot be reached "
                                        r"\(.+\); check the network connection") as err:
        lsml_hub.push_to_hub(hub_make_init(), "owner/name", revision="dev", tag="v1", token=TOKEN)
    assert "\n" not in str(err.value) and TOKEN not in str(err.value)


def _hub_reachable() -> bool:
    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
        return True
    except OSError:
        return False


@pytest.mark.network
def test_real_push_round_trip(hub_make_init, tmp_path):
    from huggingface_hub import get_token

    if not get_token() or not _hub_reachable():
        pytest.skip("needs a Hugging Face token and network access")
    api = HfApi()
    repo_id = f"{api.whoami()['name']}/lsml-hub-push-test-{uuid.uuid4().hex[:8]}"
    folder = hub_make_init()
    try:
        result = lsml_hub.push_to_hub(folder, repo_id, private=True, tag="v1")
        model = lsml_hub.create_model(f"hf-hub:{repo_id}@v1", num_classes=3, cache_dir=tmp_path / "cache")
        assert model.num_classes == 3
        assert set(api.list_repo_files(repo_id, revision=result.commit_oid)) >= {
            "README.md", "config.json", "model.safetensors"}
    finally:
        api.delete_repo(repo_id, missing_ok=True)
