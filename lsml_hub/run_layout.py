"""What a meta-training run folder holds, shared by the trainer (writer) and the hub (reader).

Kept free of torch and training imports so that the hub can read runs cheaply.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

RUN_CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
INIT_SUBDIR = "init"
CHECKPOINT_FILE = "checkpoints/last.pt"


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
