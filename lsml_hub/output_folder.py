"""The one rule for every folder lsml-hub writes: new, empty, or already the command's own.

A command may write into a folder that does not exist yet, an empty one, or one that holds only the
names the command writes itself, its marker among them. The marker is the first thing the command
writes, so its presence proves the folder was made by that command (a user's own ``config.yaml`` or
``model.safetensors`` alone is not mistaken for one). Where the marker alone is not proof enough (an
init folder is the same three files whichever run made it), the command also asks whether the folder
is the same piece of work (``belongs``).

The rule is checked before any work starts, together with the fact that the folder can be created
and written: a run that could only fail at its last write fails in its first second instead.

Who uses it (each rule is defined next to the code that writes the folder):

======================  ==================================  ===========================
folder                  names it may hold                   marker
======================  ==================================  ===========================
meta-train run          run.json, config.yaml, metrics...   ``run.json``
init (export, publish)  config.json, model.safetensors,     ``config.json`` of an
                        README.md                           lsml-hub init
finetune ``--out``      result.json, model.safetensors      ``result.json``
compare ``--out``       comparison.json/.csv, curves.png    ``comparison.json``
the cache               CACHEDIR.TAG, builtin/, decoded/    ``CACHEDIR.TAG``
======================  ==================================  ===========================
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lsml_hub._io import file_in_the_way, moved_aside_of, temporary_of
from lsml_hub.errors import ConfigError

# Foreign names shown in an error; the rest are counted.
_NAMED = 3
# check_writable's probe file; another process checking the same folder at the same time may see it.
_PROBE_PREFIX = ".lsml-hub-write-check."

class FolderNotWritableError(ConfigError):
    """A folder cannot be created or written (permissions, a read-only file system, a missing mount)."""


#: ``belongs(folder)``: why a folder that holds the marker is still not this command's, or None.
Belongs = Callable[[Path], "str | None"]


@dataclass(frozen=True)
class OutputFolder:
    """What one command writes into its output folder, and the check that it may.

    Args:
        command: What writes the folder, as users call it (``"finetune"``).
        files: Names (files or sub-folders) it writes at the top of the folder.
        marker: The one of ``files`` written first. A folder holding some of ``files`` but not the
            marker was not made by the command and is refused.
        also_marked_by: Paths inside the folder that prove ownership as well as the marker does (what
            an earlier version of the command wrote before it had a marker, such as a checkpoint).

    Example:
        >>> import tempfile
        >>> rule = OutputFolder("finetune", ("result.json", "model.safetensors"), "result.json")
        >>> rule.check(tempfile.mkdtemp() + "/new").name
        'new'
    """

    command: str
    files: tuple[str, ...]
    marker: str
    also_marked_by: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.marker not in self.files:
            raise ValueError(f"marker {self.marker!r} must be one of files {self.files}")

    def check(self, out_dir: str | os.PathLike, *, belongs: Belongs | None = None, create: bool = False) -> Path:
        """``out_dir`` as a path, after checking that the command may write there.

        Args:
            out_dir: The folder the command is about to write.
            belongs: Asked only when the folder holds the marker: why it is nevertheless not this
                command's folder (another init, a run with another config), or None when it is.
            create: Leave the folder created. For a folder that several processes check at once (the
                cache), where one removing what it created could fail another's check.

        Raises:
            ConfigError: ``out_dir`` (or a folder above it) is a file, it holds names the command does
                not write, it holds some of them without the marker, ``belongs`` objects, or it cannot
                be created or written; the message names the folder and what to do.
        """
        path = Path(out_dir)
        try:
            where = file_in_the_way(path)
            if where is not None:
                raise ConfigError(f"output folder {path} {where}; give a folder (new or empty) for "
                                  f"{', '.join(self.files)}")
            if path.is_dir():
                self._check_contents(path, belongs)
        except OSError as err:  # a folder above it that cannot be entered or read
            raise ConfigError(f"output folder {path} cannot be read: {err.strerror or err} "
                              f"({err.filename or path}); choose a folder you can read and write") from None
        check_writable(path, keep=create)
        return path

    def owns(self, name: str) -> bool:
        """Whether ``name`` is one of the command's, or a temporary that an interrupted write of one left."""
        return (name.startswith(_PROBE_PREFIX)
                or any(n in self.files for n in (name, temporary_of(name), moved_aside_of(name))))

    def is_own(self, path: str | os.PathLike) -> bool:
        """Whether ``path`` is a folder holding the command's marker (or what also proves it)."""
        return any((Path(path) / name).exists() for name in (self.marker, *self.also_marked_by))

    def _check_contents(self, path: Path, belongs: Belongs | None) -> None:
        names = sorted(p.name for p in path.iterdir())
        foreign = [n for n in names if not self.owns(n)]
        if foreign:
            raise ConfigError(
                f"output folder {path} holds files that {self.command} does not write: {_some(foreign)} "
                f"(it writes only {', '.join(self.files)}); choose a new or empty folder, or move those out"
            )
        same_names = [n for n in names if n in self.files]
        own = self.is_own(path)
        if same_names and not own:
            raise ConfigError(
                f"output folder {path} holds {_some(same_names)} but no {self.marker}, so it is not an earlier "
                f"{self.command} output and would be overwritten; choose a new or empty folder"
            )
        if own and belongs is not None:
            problem = belongs(path)
            if problem:
                raise ConfigError(f"output folder {path} {problem}")


def check_writable(path: Path, *, keep: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``path`` can be created (with its parents) and written.

    Proved by doing it: the missing folders are made and a file is written in ``path``, then both
    are removed again (the folders only unless ``keep``), so a check that passes leaves nothing behind.
    """
    created = [p for p in (path, *path.parents) if not p.exists()]  # deepest first
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(prefix=_PROBE_PREFIX, dir=path):
            pass
    except OSError as err:
        verb = "created" if created else "written"
        raise FolderNotWritableError(f"output folder {path} cannot be {verb}: {err.strerror or err} "
                                     f"({err.filename or path}); choose a folder you can write") from None
    finally:
        for folder in [] if keep else created:
            # Only folders this check made; one that another process has written into meanwhile stays.
            with contextlib.suppress(OSError):
                folder.rmdir()


def _some(names: list[str]) -> str:
    shown = ", ".join(names[:_NAMED])
    return shown if len(names) <= _NAMED else f"{shown} and {len(names) - _NAMED} more"
