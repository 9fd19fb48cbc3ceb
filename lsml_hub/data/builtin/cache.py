"""Where builtin sources are materialized, and how a folder is written there exactly once."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import datasets
import datasets.utils

from lsml_hub._io import atomic_dir, atomic_write
from lsml_hub.errors import ConfigError
from lsml_hub.output_folder import FolderNotWritableError, OutputFolder

logger = logging.getLogger(__name__)

CACHE_ENV = "LSML_HUB_CACHE"
SUBDIR = "builtin"
DECODED_SUBDIR = "decoded"  # lsml_hub.data.decoded_cache's entries
# The Cache Directory Tagging Specification's tag: it marks the folder as lsml-hub's cache, and backup
# tools skip what it tags.
TAG_FILE = "CACHEDIR.TAG"
_TAG = ("Signature: 8a477f597d28d172789f06886806bc55\n"
        "# This file is a cache directory tag created by lsml-hub (builtin datasets, decoded images).\n"
        "# For information about cache directory tags see https://bford.info/cachedir/\n")
# A cache written before the tag existed holds only builtin/ and decoded/; it is adopted and tagged.
CACHE_FOLDER = OutputFolder("lsml-hub's cache", (TAG_FILE, SUBDIR, DECODED_SUBDIR), marker=TAG_FILE,
                            also_marked_by=(SUBDIR, DECODED_SUBDIR))
_CHECKED: set[Path] = set()
#: The folder names cached_dataset gives: "<builtin name>-<12 hex digits of the parameters' hash>".
ENTRY_NAME = re.compile(r"[a-z0-9_]+-[0-9a-f]{12}")


def cache_root() -> Path:
    """``$LSML_HUB_CACHE``, else ``$XDG_CACHE_HOME/lsml_hub``, else ``~/.cache/lsml_hub``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "lsml_hub"


def writable_cache_root() -> Path:
    """:func:`cache_root`, checked once per process to be new, empty or tagged as lsml-hub's, then tagged.

    Raises:
        ConfigError: The folder holds files lsml-hub does not write there, or cannot be written.
    """
    root = cache_root()
    if root not in _CHECKED:
        try:
            CACHE_FOLDER.check(root, create=True)  # ranks of one run check it at once
        except FolderNotWritableError as err:
            raise FolderNotWritableError(f"{err} (the cache is ${CACHE_ENV}, else ~/.cache/lsml_hub)") from None
        except ConfigError as err:
            raise ConfigError(f"{err} (the cache is ${CACHE_ENV}, else ~/.cache/lsml_hub)") from None
        if not (root / TAG_FILE).exists():
            with atomic_write(root / TAG_FILE, "w") as f:
                f.write(_TAG)
        _CHECKED.add(root)
    return root


def cached_dataset(
    name: str, params: dict[str, Any], build: Callable[[], datasets.DatasetDict]
) -> datasets.DatasetDict:
    """Load ``name`` materialized with ``params`` from the cache, building it once if missing.

    The folder name holds a hash of the parameters, so a change of sample count or seed gets its
    own copy. The folder appears whole or not at all (``atomic_dir``).
    """
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_root() / SUBDIR / f"{name}-{key}"
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
        >>> with datasets_progress_bars_off():
        ...     hidden = datasets.utils.are_progress_bars_disabled()
        >>> hidden, datasets.utils.are_progress_bars_disabled()
        (True, False)
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
