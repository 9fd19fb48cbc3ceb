"""What every benchmark shares: interleaved timing, a machine description, appending results.

Not a benchmark itself (``make bench`` skips files starting with ``_``). Scripts run as
``python benchmarks/NAME.py``, so this module is importable as ``_common``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import timm
import torch

import lsml_hub
from lsml_hub._io import atomic_write_json

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def results_path(name: str) -> Path:
    """``benchmarks/results/<name>.json``."""
    return RESULTS_DIR / f"{name}.json"


def machine_info() -> dict[str, Any]:
    """Platform, CPUs, load and library versions: what a reader needs to compare two runs."""
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg_1min": round(os.getloadavg()[0], 2),  # other jobs on the machine skew ratios
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "timm": timm.__version__,
        "lsml_hub": lsml_hub.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def append_result(name: str, record: dict[str, Any]) -> Path:
    """Append ``record`` (with the date and machine added first) to ``results/<name>.json``; newest last."""
    path = results_path(name)
    history = json.loads(path.read_text()) if path.exists() else []
    history = history if isinstance(history, list) else [history]
    entry = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine_info(), **record}
    atomic_write_json(path, [*history, entry])
    return path


def time_interleaved(fns: dict[str, Callable[[], Any]], repeats: int, *,
                     verbose: bool = False) -> dict[str, list[float]]:
    """Seconds per call of each function, ``repeats`` times, after one warm-up call each.

    The order rotates every repeat so that drift on a noisy machine hits every method alike; compare
    medians.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():  # warm-up: imports, allocator, page cache
        fn()
    names = list(fns)
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
            if verbose:
                print(f"repeat {r + 1}/{repeats}: {name:16s} {times[name][-1]:8.3f} s")
    return times
