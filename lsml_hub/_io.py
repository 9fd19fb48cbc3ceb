"""Atomic file and folder writes: a crash never leaves a half-written file under its final name."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

# What atomic_write/atomic_dir leave when killed: their temporary ".<name>.<random>.tmp" (mkstemp and
# mkdtemp draw the random part from [a-z0-9_]), and atomic_dir's ".<name>.old-<pid>" when it stops between
# moving the old folder aside and removing it.
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]+\.tmp")
_MOVED_ASIDE = re.compile(r"\.(?P<name>.+)\.old-[0-9]+")


def temporary_of(name: str) -> str | None:
    """The final name an interrupted atomic write of ``name``'s temporary file was for, else None.

    Example:
        >>> temporary_of(".result.json.k3x_9q2a.tmp"), temporary_of("result.json")
        ('result.json', None)
    """
    match = _TEMPORARY.fullmatch(name)
    return match["name"] if match else None


def moved_aside_of(name: str) -> str | None:
    """The folder name an interrupted :func:`atomic_dir` had moved aside as ``name``, else None."""
    match = _MOVED_ASIDE.fullmatch(name)
    return match["name"] if match else None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    # The rename itself lives in the directory entry; without this it may not survive a power cut.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on success fsync it and rename it over ``path``.

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.json"
        >>> with atomic_write(path, "w") as f:
        ...     _ = f.write("{}")
        >>> path.read_text()
        '{}'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; give them the usual mode
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder that replaces ``path`` as a whole once the block succeeds.

    An existing folder at ``path`` is kept untouched until the new one is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        mask = _umask()
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes folders private; give them the usual mode
        for child in tmp.rglob("*"):
            if child.is_file():
                os.chmod(child, 0o666 & ~mask)
                with open(child, "rb") as f:
                    os.fsync(f.fileno())
        old = None
        if path.exists():
            old = path.parent / f".{path.name}.old-{os.getpid()}"  # see moved_aside_of
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def file_in_the_way(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot become a folder because of a file, or None when it can.

    The nearest existing path decides: ``path`` itself being a file, or a file above it, would make
    creating the folder fail (after the work that was to be written there).

    Example:
        >>> import pathlib, tempfile
        >>> file = pathlib.Path(tempfile.mkdtemp()) / "notes.txt"
        >>> _ = file.write_text("")
        >>> file_in_the_way(file / "sub").replace(str(file), "notes.txt")
        'is inside notes.txt, which is a file'
        >>> file_in_the_way(file.parent / "new") is None
        True
    """
    path = Path(path)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None or existing.is_dir():
        return None
    return "is a file" if existing == path else f"is inside {existing}, which is a file"
