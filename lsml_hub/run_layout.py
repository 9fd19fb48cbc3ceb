"""What a meta-training run folder holds, shared by the trainer (writer) and the hub (reader).

Kept free of torch and training imports so that the hub can read runs cheaply.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from lsml_hub._io import atomic_write_json
from lsml_hub.errors import ConfigError
from lsml_hub.output_folder import OutputFolder
from lsml_hub.version import __version__

logger = logging.getLogger(__name__)

RUN_MARKER = "run.json"  # written first: marks the folder as a run, records the config it was started with
RUN_CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
INIT_SUBDIR = "init"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_FILE = f"{CHECKPOINT_DIR}/last.pt"
TENSORBOARD_SUBDIR = "tensorboard"
PUBLISH_SUBDIR = "publish"  # `lsml-hub publish RUN` without an output folder

RUN_FOLDER = OutputFolder(
    "meta-train",
    (RUN_MARKER, RUN_CONFIG_FILE, METRICS_FILE, CHECKPOINT_DIR, INIT_SUBDIR, TENSORBOARD_SUBDIR, PUBLISH_SUBDIR),
    marker=RUN_MARKER,
    also_marked_by=(CHECKPOINT_FILE,),  # runs from before run.json; the checkpoint's identity is checked on load
)


def init_of_run_hint(folder: Path) -> str:
    """``"; ... its init is RUN/init"`` when ``folder`` is a meta-train run folder with an init, else ``""``.

    For errors about a folder given where an init was expected: a run folder is the likeliest mix-up.
    """
    folder = Path(folder)
    if (folder / RUN_MARKER).is_file() and (folder / INIT_SUBDIR).is_dir():
        return f"; {folder} is a meta-train run folder: its init is {folder / INIT_SUBDIR}"
    return ""


def write_run_marker(run_dir: Path, identity: dict[str, Any]) -> None:
    """Write ``run.json``: the folder is a meta-train run started with the config whose identity is given."""
    atomic_write_json(Path(run_dir) / RUN_MARKER, {"lsml_hub_version": __version__, "identity": identity})


def read_run_marker(run_dir: Path) -> dict[str, Any]:
    """The config identity a run's ``run.json`` records.

    Raises:
        ConfigError: The file cannot be read or is not a run marker.
    """
    path = Path(run_dir) / RUN_MARKER
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path} cannot be read ({err}); move the run folder away or choose another") from None
    if not isinstance(data, dict) or not isinstance(data.get("identity"), dict):
        raise ConfigError(f"{path} is not an lsml-hub run marker (no 'identity' object)")
    return data["identity"]


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a ``metrics.jsonl``; a torn last line (a killed run) is skipped with a warning.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: A line other than the last is not a JSON object (the message names file and line).
    """
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    records = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if lineno == len(lines):
                logger.warning("%s:%d is cut short; skipped", path, lineno)
                continue
            raise ValueError(f"{path}:{lineno} is not JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{lineno} is a {type(record).__name__}, not a JSON object")
        records.append(record)
    return records
