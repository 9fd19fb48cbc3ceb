"""Output folders of ``finetune`` and ``compare``: checked before any training, never written over others' files.

A command may write into a new folder, an empty one, or one that holds only the files it writes
itself (so running the same command again refreshes its own outputs). Anything else, such as an
init folder or another run's results, is refused before the first step: the writes that come after
training would otherwise replace files that belong to someone else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lsml_hub.errors import ConfigError

# Foreign files named in an error; the rest are counted.
_NAMED = 3


@dataclass(frozen=True)
class OutputFolder:
    """The files one command writes into its output folder.

    Args:
        command: What writes them, as users call it (``"finetune"``).
        files: Names of the files it writes.

    Example:
        >>> import tempfile
        >>> OutputFolder("finetune", ("result.json",)).check(tempfile.mkdtemp() + "/new").name
        'new'
    """

    command: str
    files: tuple[str, ...]

    def check(self, out_dir: str | os.PathLike) -> Path:
        """``out_dir`` as a path, after checking that the command may write there.

        Raises:
            ConfigError: ``out_dir`` (or a folder above it) is a file, or ``out_dir`` holds files
                the command does not write; the message names them and what to do.
        """
        path = Path(out_dir)
        _refuse_file_in_the_way(path, self)
        if path.is_dir():
            foreign = sorted(p.name for p in path.iterdir() if not self.owns(p.name))
            if foreign:
                raise ConfigError(
                    f"output folder {path} holds files that {self.command} does not write: {_some(foreign)} "
                    f"(it writes only {', '.join(self.files)}); choose a new or empty folder, or move those out"
                )
        return path

    def owns(self, name: str) -> bool:
        """Whether ``name`` is one of the command's files, or a temporary one that an interrupted write left."""
        # _io.atomic_write writes ".<name>.<random>.tmp" next to <name>; a killed run can leave one.
        return name in self.files or any(name.startswith(f".{f}.") and name.endswith(".tmp") for f in self.files)


def _refuse_file_in_the_way(path: Path, folder: OutputFolder) -> None:
    # The nearest existing path decides: a file there (or above) would make the final write fail after training.
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None or existing.is_dir():
        return
    where = "is a file" if existing == path else f"is inside {existing}, which is a file"
    raise ConfigError(f"output folder {path} {where}; give a folder (new or empty) for "
                      f"{', '.join(folder.files)}")


def _some(names: list[str]) -> str:
    shown = ", ".join(names[:_NAMED])
    return shown if len(names) <= _NAMED else f"{shown} and {len(names) - _NAMED} more"
