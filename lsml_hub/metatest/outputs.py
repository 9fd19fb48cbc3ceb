"""Output folders of ``finetune`` and ``compare``: checked before any training, never written over others' files.

A command may write into a new folder, an empty one, or one that holds only the files it writes
itself, its marker file among them (so running the same command again refreshes its own outputs,
while a user's own ``model.safetensors`` alone is not mistaken for one). Anything else, such as an
init folder or another run's results, is refused before the first step: the writes that come after
training would otherwise replace files that belong to someone else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lsml_hub._io import file_in_the_way, temporary_of
from lsml_hub.errors import ConfigError

# Foreign files named in an error; the rest are counted.
_NAMED = 3


@dataclass(frozen=True)
class OutputFolder:
    """The files one command writes into its output folder.

    Args:
        command: What writes them, as users call it (``"finetune"``).
        files: Names of the files it writes.
        marker: The one of ``files`` written first. A folder holding some of ``files`` but not the
            marker was not made by the command (a user's own ``model.safetensors``, say) and is refused.

    Example:
        >>> import tempfile
        >>> OutputFolder("finetune", ("result.json",), "result.json").check(tempfile.mkdtemp() + "/new").name
        'new'
    """

    command: str
    files: tuple[str, ...]
    marker: str

    def check(self, out_dir: str | os.PathLike) -> Path:
        """``out_dir`` as a path, after checking that the command may write there.

        Raises:
            ConfigError: ``out_dir`` (or a folder above it) is a file, or ``out_dir`` holds files
                the command does not write; the message names them and what to do.
        """
        path = Path(out_dir)
        _refuse_file_in_the_way(path, self)
        if path.is_dir():
            names = sorted(p.name for p in path.iterdir())
            foreign = [n for n in names if not self.owns(n)]
            if foreign:
                raise ConfigError(
                    f"output folder {path} holds files that {self.command} does not write: {_some(foreign)} "
                    f"(it writes only {', '.join(self.files)}); choose a new or empty folder, or move those out"
                )
            same_names = [n for n in names if n in self.files]
            if same_names and self.marker not in names:
                raise ConfigError(
                    f"output folder {path} holds {_some(same_names)} but no {self.marker}, so it is not an earlier "
                    f"{self.command} output and would be overwritten; choose a new or empty folder"
                )
        return path

    def owns(self, name: str) -> bool:
        """Whether ``name`` is one of the command's files, or a temporary one that an interrupted write left."""
        return name in self.files or temporary_of(name) in self.files


def _refuse_file_in_the_way(path: Path, folder: OutputFolder) -> None:
    # A file there (or above) would make the final write fail after training.
    where = file_in_the_way(path)
    if where is not None:
        raise ConfigError(f"output folder {path} {where}; give a folder (new or empty) for "
                          f"{', '.join(folder.files)}")


def _some(names: list[str]) -> str:
    shown = ", ".join(names[:_NAMED])
    return shown if len(names) <= _NAMED else f"{shown} and {len(names) - _NAMED} more"
