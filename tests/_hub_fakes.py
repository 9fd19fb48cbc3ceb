"""Stand-ins for the Hugging Face Hub in the hub tests: a faked Hub listing and download, cached timm weights.

Imported by the hub test modules (not a conftest, so it adds no fixtures to other people's tests).
Nothing here reaches the network.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
from huggingface_hub import HfApi, ModelCard, ModelInfo

from lsml_hub.hub import resolve as resolve_module

COMMIT = "c" * 40


def listing_tags(folder: Path | None) -> list[str]:
    """The tags the Hub lists for an init pushed from ``folder``: its card's, plus those the Hub derives."""
    if folder is None:
        return ["timm", "lsml-hub"]
    data = ModelCard.load(folder / "README.md").data
    return [*data.tags, *(f"dataset:{d}" for d in data.datasets or ()), f"license:{data.license}", "region:us"]


class FakeHub:
    """The Hub as lsml-hub sees it: ``HfApi.list_models`` answers with ``repos``, and ``hf_hub_download``
    serves their files from the init folders; any other repo goes to the real function (the local cache).

    Args:
        monkeypatch: Where the fakes are installed.
        repos: Hub id -> init folder (``None``: listed only, no files).
        error: Raised while the listing is read, as a network failure would be.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, repos: dict[str, Path | None],
                 error: Exception | None = None) -> None:
        self.repos, self.error, self.list_calls, self.downloads = repos, error, [], []
        self._real_download = resolve_module.hf_hub_download
        monkeypatch.setattr(HfApi, "list_models", lambda api, **kwargs: self._listing(kwargs))
        monkeypatch.setattr(resolve_module, "hf_hub_download", self._download)

    def _listing(self, kwargs: dict):
        self.list_calls.append(kwargs)
        if self.error is not None:
            raise self.error
        for repo_id, folder in self.repos.items():
            yield ModelInfo(id=repo_id, tags=listing_tags(folder))

    def _download(self, repo_id: str, filename: str, **kwargs) -> str:
        folder = self.repos.get(repo_id)
        if folder is None:
            return self._real_download(repo_id, filename, **kwargs)
        self.downloads.append((repo_id, filename))
        return str(folder / filename)


def cache_timm_weights(cache: Path, name: str = "test_resnet.r160_in1k", *, symlink: bool = True,
                       seed: int = 0) -> dict[str, torch.Tensor]:
    """Put timm pretrained weights of ``name`` into the HF cache ``cache`` as a download would; returns them.

    With ``symlink`` the snapshot file links to ``blobs/<sha256>`` (a large file's layout), else it is a copy.
    """
    torch.manual_seed(seed)
    tensors = {k: v.contiguous() for k, v in timm.create_model(name.partition(".")[0]).state_dict().items()}
    storage = cache / f"models--timm--{name}"
    snapshot = storage / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(COMMIT)
    staged = storage / "staged.safetensors"
    safetensors.torch.save_file(tensors, staged)
    if symlink:
        blob = storage / "blobs" / hashlib.sha256(staged.read_bytes()).hexdigest()
        blob.parent.mkdir()
        shutil.move(staged, blob)
        (snapshot / "model.safetensors").symlink_to(os.path.relpath(blob, snapshot))
    else:
        shutil.move(staged, snapshot / "model.safetensors")
    return tensors
