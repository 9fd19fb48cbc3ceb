"""Set-up for the docstring examples under ``lsml_hub/``, which pytest runs with ``--doctest-modules``.

It lives at the repository root, not in the package, so that the wheel ships no test code. Its fixtures
act on the examples only (items collected from ``lsml_hub/``); ``tests/`` has its own conftest.

Every example runs offline (``HF_HUB_OFFLINE``), in a fresh temporary working directory, with lsml-hub's
cache, the Hugging Face cache and the ``datasets`` cache under one temporary folder per session, and
``tempfile.mkdtemp()`` inside the example's own temporary folder: an example reads nothing from, and
writes nothing into, the repository or the user's caches.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Iterator
from pathlib import Path

import datasets
import huggingface_hub.constants
import pytest


@pytest.fixture(scope="session")
def _doctest_caches(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One per session: builtin:digits materializes once for all the examples that load it.
    return tmp_path_factory.mktemp("doctest_caches")


def _is_example(request: pytest.FixtureRequest) -> bool:
    return request.node.nodeid.startswith("lsml_hub/")


@pytest.fixture(autouse=True)
def _doctest_isolation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if not _is_example(request):
        return
    _doctest_caches = request.getfixturevalue("_doctest_caches")
    tmp_path = request.getfixturevalue("tmp_path")
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


# --- The init registry (lsml_hub.hub.registry) -----------------------------------------------------------
# register_init fills a process-wide registry: each example gets its own copy, so a name an example
# registers is gone after it and never shows up in another example's listing.


@pytest.fixture(autouse=True)
def _doctest_init_registry(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if not _is_example(request):
        return
    from lsml_hub.hub import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


@pytest.fixture(autouse=True)
def _doctest_algorithm_registry(request: pytest.FixtureRequest) -> Iterator[None]:
    # The same for meta-learning rules (register_algorithm); the dict is shared by name, so restored in place.
    if not _is_example(request):
        yield
        return
    from lsml_hub.algorithms import registry

    saved = dict(registry.ALGORITHMS), dict(registry._PLUGINS)
    yield
    for live, before in zip((registry.ALGORITHMS, registry._PLUGINS), saved):
        live.clear()
        live.update(before)


# Examples of what is done with a finished comparison (its table, report, plot) take one as ``cmp``
# rather than each running compare first: the docstrings say where it comes from.
USES_COMPARISON = {
    "lsml_hub.metatest.comparison.Comparison",
    "lsml_hub.metatest.comparison.format_table",
    "lsml_hub.metatest.report.plot_curves",
    "lsml_hub.metatest.report.write_report",
}


@pytest.fixture(scope="session")
def _doctest_comparison(_doctest_caches: Path):
    """A toy meta-trained init, ``cts``, against the scratch baseline with seeds 0 and 1 (seconds, once)."""
    import lsml_hub

    config = {"model": "test_resnet", "steps": 4, "inner": {"batch_size": 16},
              "output_dir": str(_doctest_caches / "meta_train"),
              "tasks": ["builtin:digits?classes=0-4", "builtin:digits?classes=5-9"]}
    init = lsml_hub.meta_train(config).init_dir
    return lsml_hub.compare({"cts": init}, "builtin:digits", seeds=(0, 1), steps=10, batch_size=16,
                            max_train_samples=100, eval_every=5, progress=False)


@pytest.fixture(autouse=True)
def _doctest_objects(_doctest_isolation: None, request: pytest.FixtureRequest,
                     doctest_namespace: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.name in USES_COMPARISON:
        # A copy: write_report records its files on the comparison. doctest_namespace lasts the session.
        monkeypatch.setitem(doctest_namespace, "cmp", copy.deepcopy(request.getfixturevalue("_doctest_comparison")))
