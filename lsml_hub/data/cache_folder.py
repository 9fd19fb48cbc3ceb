"""lsml-hub's cache folder: where it is, how it is claimed, what it holds, and removing it.

Two kinds of entries live under :func:`cache_root` (``$LSML_HUB_CACHE``): ``builtin`` sources
materialized as datasets (:mod:`lsml_hub.data.builtin.materialize`) and ``decoded`` splits, uint8
tensors (:mod:`lsml_hub.data.decoded_splits`). Both are rebuilt on demand, so removing them only costs
the next run the time to rebuild. Hub datasets and inits are kept by the Hugging Face caches instead
(``hf cache``; ``lsml-hub cache add`` seeds one with an init).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lsml_hub._io import atomic_write, moved_aside_of, temporary_of
from lsml_hub.errors import ConfigError, DataError, first_line
from lsml_hub.output_folder import FolderNotWritableError, OutputFolder

CACHE_ENV = "LSML_HUB_CACHE"
#: Kind of entry -> its sub-folder: builtin sources materialized as datasets, decoded splits (uint8 tensors).
KINDS = {"builtin": "builtin", "decoded": "decoded"}
BUILTIN_SUBDIR, DECODED_SUBDIR = KINDS["builtin"], KINDS["decoded"]
# The names entries are given (anything else in those folders is not ours: neither listed nor removed):
# "<builtin name>-<12 hex digits of the parameters' hash>" folders, "<size>px-<24 hex digits>.safetensors" files.
ENTRY_NAMES = {"builtin": re.compile(r"[a-z0-9_]+-[0-9a-f]{12}"),
               "decoded": re.compile(r"[0-9]+px-[0-9a-f]{24}\.safetensors")}
# The Cache Directory Tagging Specification's tag: it marks the folder as lsml-hub's cache, and backup
# tools skip what it tags.
TAG_FILE = "CACHEDIR.TAG"
_TAG = ("Signature: 8a477f597d28d172789f06886806bc55\n"
        "# This file is a cache directory tag created by lsml-hub (builtin datasets, decoded images).\n"
        "# For information about cache directory tags see https://bford.info/cachedir/\n")
# A cache written before the tag existed holds only builtin/ and decoded/; it is adopted and tagged.
CACHE_FOLDER = OutputFolder("lsml-hub's cache", (TAG_FILE, *KINDS.values()), marker=TAG_FILE,
                            also_marked_by=tuple(KINDS.values()))
_CHECKED: set[Path] = set()


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


@dataclass(frozen=True)
class CacheEntry:
    """One cached item: a materialized builtin (a folder) or a decoded split (a file).

    Attributes:
        kind: ``"builtin"`` or ``"decoded"``.
        path: The folder or file.
        size: Bytes on disk, everything below ``path`` included.
        modified: Last modification time (seconds since the epoch).
    """

    kind: str
    path: Path
    size: int
    modified: float

    @property
    def name(self) -> str:
        return self.path.name


def scan_cache(root: Path | None = None) -> list[CacheEntry]:
    """Every entry under ``root`` (default: ``cache_root()``), by kind then name.

    Only names lsml-hub gives its entries count; leftovers of writes that were killed half-way
    (hidden ``.NAME.*.tmp``) are entries too, so that clearing removes them.

    Example:
        >>> [e.kind for e in scan_cache(Path("/nonexistent"))]
        []
    """
    root = cache_root() if root is None else root
    entries = []
    for kind, subdir in KINDS.items():
        folder = root / subdir
        if folder.is_dir():
            found = (_entry(kind, path) for path in sorted(folder.iterdir()) if _is_ours(kind, path.name))
            entries += [entry for entry in found if entry is not None]
    return entries


def clear_cache(kinds: Iterable[str], root: Path | None = None) -> list[CacheEntry]:
    """Remove every entry of ``kinds`` (``"builtin"``, ``"decoded"``); return what was removed.

    Raises:
        DataError: A kind is unknown (the message lists the valid ones).

    Example:
        >>> clear_cache(["decoded"], Path("/nonexistent"))
        []
    """
    kinds = list(kinds)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise DataError(f"unknown cache kind(s) {', '.join(map(repr, unknown))}; valid: {', '.join(KINDS)}")
    removed = [e for e in scan_cache(root) if e.kind in kinds]
    for entry in removed:
        try:
            if entry.path.is_dir() and not entry.path.is_symlink():
                shutil.rmtree(entry.path)
            else:
                entry.path.unlink(missing_ok=True)
        except OSError as err:
            raise DataError(f"cannot remove {entry.path}: {first_line(err)}") from None
    return removed


def _is_ours(kind: str, name: str) -> bool:
    # An entry, or what a killed write of one left (its temporary, or an old folder moved aside).
    target = temporary_of(name) or moved_aside_of(name) or name
    return bool(ENTRY_NAMES[kind].fullmatch(target))


def _entry(kind: str, path: Path) -> CacheEntry | None:
    # None when the entry vanished while being read (another process renamed or removed it).
    try:
        files = [path] if not path.is_dir() else [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]
        return CacheEntry(kind, path, sum(p.stat().st_size for p in files), path.stat().st_mtime)
    except FileNotFoundError:
        return None
