"""Run metrics: one JSON object per line in ``metrics.jsonl``, mirrored to TensorBoard when installed."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from lsml_hub._io import atomic_write
from lsml_hub.errors import TrainingError, first_line
from lsml_hub.run_layout import METRICS_FILE, TENSORBOARD_SUBDIR, read_metrics

logger = logging.getLogger(__name__)



class MetricsWriter:
    """Append-only metrics log of rank 0. Lines look like ``{"step": 200, "kind": "eval", ...}``."""

    def __init__(self, output_dir: Path, *, resume_step: int = 0, tensorboard: bool = True) -> None:
        self.path = output_dir / METRICS_FILE
        try:
            _truncate_after(self.path, resume_step)
        except (ValueError, OSError) as err:
            raise TrainingError(f"cannot resume the metrics log {self.path}: {first_line(err)}; move it away "
                                "(the run then starts a new log) or use another output_dir") from None
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self._tb = _tensorboard_writer(output_dir / TENSORBOARD_SUBDIR) if tensorboard else None

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            prefix = f"{record['kind']}/{record['task']}" if "task" in record else record["kind"]
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self._tb.add_scalar(f"{prefix}/{key}", value, record["step"])

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _truncate_after(path: Path, step: int) -> None:
    # A resumed run repeats the steps after its checkpoint; drop their old lines so none is doubled.
    if not path.exists():
        return
    kept = [r for r in read_metrics(path) if r.get("step", 0) <= step] if step else []
    with atomic_write(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in kept)


def _tensorboard_writer(log_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        logger.debug("tensorboard not installed; metrics go to %s only", METRICS_FILE)
        return None
    return SummaryWriter(log_dir=str(log_dir))
