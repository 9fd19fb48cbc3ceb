"""Set-up for the docstring examples, which pytest runs with ``--doctest-modules`` (see pyproject.toml).

Every example runs offline (``HF_HUB_OFFLINE``), in a fresh temporary working directory, with lsml-hub's
cache, the Hugging Face cache and the ``datasets`` cache under one temporary folder per session, and
``tempfile.mkdtemp()`` inside the example's own temporary folder: an example reads nothing from, and
writes nothing into, the repository or the user's caches. The fixture is autouse here, so it applies
to the examples under ``lsml_hub/`` only, not to ``tests/``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import datasets
import huggingface_hub.constants
import pytest


@pytest.fixture(scope="session")
def _doctest_caches(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One per session: builtin:digits materializes once for all the examples that load it.
    return tmp_path_factory.mktemp("doctest_caches")


@pytest.fixture(autouse=True)
def _doctest_isolation(_doctest_caches: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hf_cache = _doctest_caches / "hf_hub"
    hf_cache.mkdir(exist_ok=True)
    monkeypatch.setenv("LSML_HUB_CACHE", str(_doctest_caches / "lsml_hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_cache))
    # huggingface_hub and datasets read their settings at import time: patch the module attributes too.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hf_cache))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(_doctest_caches / "hf_datasets"))
    monkeypatch.chdir(tmp_path)  # a relative path in an example lands in a temporary folder
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # so does tempfile.mkdtemp(): pytest cleans it up
