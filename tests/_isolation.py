"""Isolation shared by the test modules: offline caches under a folder, one torch thread, the fine-tuning cache.

Imported by the test modules (not a conftest, so it adds no fixtures to other people's tests).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import datasets
import huggingface_hub.constants
import pytest
import torch

# The builtin cache of every fine-tuning test module: builtin:digits materializes once per session.
SHARED_FINETUNE_CACHE = "finetune_tests_lsml_hub_cache"


@contextlib.contextmanager
def isolated_caches(root: Path) -> Iterator[Path]:
    """Point the builtin cache and the ``datasets`` cache under ``root``, and keep the Hub offline.

    ``datasets`` and ``huggingface_hub`` read their settings from the environment at import time,
    so the module attributes are patched as well as the variables.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LSML_HUB_CACHE", str(root / "lsml_hub"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(datasets.config, "HF_DATASETS_CACHE", str(root / "hf_datasets"))
        mp.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        yield root


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch single-threaded, restoring the thread count afterwards.

    The 2 CPU cores are shared: OpenMP workers spin-wait on a busy core and make small convolutions many
    times slower than on one thread (and results are bit-exact only for the same thread count).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def finetune_isolation(
    tmp_path_factory: pytest.TempPathFactory, *, empty_hf_cache: bool = False, omp_one_thread: bool = False,
) -> Iterator[None]:
    """The fine-tuning modules' shared builtin cache (``$LSML_HUB_CACHE``) and one torch thread.

    ``empty_hf_cache``: also point ``huggingface_hub``'s cache at a new empty folder.
    ``omp_one_thread``: also set ``OMP_NUM_THREADS=1``, for the subprocesses a module starts.
    """
    with one_thread(), pytest.MonkeyPatch.context() as mp:
        mp.setenv("LSML_HUB_CACHE", str(tmp_path_factory.getbasetemp() / SHARED_FINETUNE_CACHE))
        if omp_one_thread:
            mp.setenv("OMP_NUM_THREADS", "1")
        if empty_hf_cache:
            mp.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf_cache")))
        yield
