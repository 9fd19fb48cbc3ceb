"""What lsml-hub keeps under its cache folder, and removing it.

Two kinds of entries live under ``cache_root()`` (``$LSML_HUB_CACHE``): ``builtin`` sources
materialized as datasets, and ``decoded`` splits (uint8 tensors). Both are rebuilt on demand, so
removing them only costs the next run the time to rebuild. Hub datasets and inits are kept by the
Hugging Face caches instead (``hf cache``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lsml_hub._io import moved_aside_of, temporary_of
from lsml_hub.data import decoded_cache
from lsml_hub.data.builtin import cache as builtin_cache
from lsml_hub.errors import DataError, first_line

#: Kind of entry -> its sub-folder of the cache root.
KINDS = {"builtin": builtin_cache.SUBDIR, "decoded": decoded_cache.SUBDIR}
# Anything in those folders not named the way lsml-hub names entries is not ours: neither listed nor removed.
_NAMES = {"builtin": builtin_cache.ENTRY_NAME, "decoded": decoded_cache.ENTRY_NAME}


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
    root = builtin_cache.cache_root() if root is None else root
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
    return bool(_NAMES[kind].fullmatch(target))


def _entry(kind: str, path: Path) -> CacheEntry | None:
    # None when the entry vanished while being read (another process renamed or removed it).
    try:
        files = [path] if not path.is_dir() else [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]
        return CacheEntry(kind, path, sum(p.stat().st_size for p in files), path.stat().st_mtime)
    except FileNotFoundError:
        return None
