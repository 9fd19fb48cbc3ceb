"""Materialize a builtin source into the cache folder once, and read it back with ``datasets``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import datasets
import datasets.utils

from lsml_hub._io import atomic_dir
from lsml_hub.data.cache_folder import BUILTIN_SUBDIR, cache_root, writable_cache_root

logger = logging.getLogger(__name__)


def cached_dataset(
    name: str, params: dict[str, Any], build: Callable[[], datasets.DatasetDict]
) -> datasets.DatasetDict:
    """Load ``name`` materialized with ``params`` from the cache, building it once if missing.

    The folder name holds a hash of the parameters, so a change of sample count or seed gets its
    own copy. The folder appears whole or not at all (``atomic_dir``).
    """
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_root() / BUILTIN_SUBDIR / f"{name}-{key}"
    if not (path / "dataset_dict.json").exists():
        writable_cache_root()  # before building: a cache that is someone else's folder, or read-only, fails now
        # The one line a first use prints: save_to_disk's own bars would add one per split.
        logger.info("materializing builtin:%s into %s (once; later uses read it from there)", name, path)
        dataset = build()
        with atomic_dir(path) as tmp, datasets_progress_bars_off():
            dataset.save_to_disk(str(tmp))
    return datasets.load_from_disk(str(path))


@contextlib.contextmanager
def datasets_progress_bars_off() -> Iterator[None]:
    """Hide ``datasets``' progress bars inside the block, then restore the previous setting.

    ``HF_DATASETS_DISABLE_PROGRESS_BARS=0`` (bars forced on) is respected: nothing is hidden then.

    Example:
        >>> before = datasets.utils.are_progress_bars_disabled()
        >>> with datasets_progress_bars_off():
        ...     hidden = datasets.utils.are_progress_bars_disabled()
        >>> hidden, datasets.utils.are_progress_bars_disabled() == before  # hidden, then as before
        (True, True)
    """
    # The switch is global to the process: only a switch this block turned off is turned back on.
    forced_on = datasets.config.HF_DATASETS_DISABLE_PROGRESS_BARS is False  # disabling would only warn
    switched = not forced_on and not datasets.utils.are_progress_bars_disabled()
    if switched:
        datasets.utils.disable_progress_bars()
    try:
        yield
    finally:
        if switched:
            datasets.utils.enable_progress_bars()
