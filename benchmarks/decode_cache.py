"""What the decoded-tensor disk cache saves at run start: a split read from the cache over decoding it, in one run.

Each method is what a run start pays for ``load_task(spec).tensors("train")`` in a fresh ``Task``:

(a) ``decode``: the cache switched off (``LSML_HUB_DECODED_CACHE=0``), every image decoded and resized
    through timm's eval transform (what every run and every rank paid before the cache).
(b) ``decode_and_write``: the entry deleted first, so the split is decoded and the entry written (a first run).
(c) ``cached``: the entry read back, memory-mapped; every page is touched so the read is not deferred.

Default task: ``builtin:fashion_mnist`` (60,000 train images, 28 px) when Debian's copy is under
/usr/share/datasets/fashion-mnist, else a generated ``save_to_disk`` dataset of 5,000 32 px PNGs.
Everything lives in a temporary ``$LSML_HUB_CACHE``. The entry was just written, so (c) reads from
the page cache, as the other ranks of a ``torchrun`` job and a rerun on the same machine do; a
cold disk read is not measured. Methods are rotated within each repeat and medians compared.

Run (from the repository root)::

    .venv/bin/python benchmarks/decode_cache.py [--spec auto|generated|SPEC] [--repeats 5]

The last line printed is the ratio (c)/(a); each run is appended to benchmarks/results/decode_cache.json.
Target: <= 0.1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Offline before huggingface_hub is imported: the benchmark must never reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import append_result, results_path, time_interleaved  # noqa: E402
from PIL import Image  # noqa: E402

from lsml_hub.data import decoded_splits, load_task  # noqa: E402
from lsml_hub.data.builtin import fashion_mnist  # noqa: E402

TARGET = 0.1
GENERATED_IMAGES, GENERATED_SIZE, GENERATED_CLASSES = 5000, 32, 10


def generated_dataset(root: Path) -> str:
    """A ``save_to_disk`` dataset of random RGB PNGs (train and test) under ``root``; returns its path."""
    rng = np.random.default_rng(0)

    def split(n: int) -> datasets.Dataset:
        pixels = rng.integers(0, 256, (n, GENERATED_SIZE, GENERATED_SIZE, 3), dtype=np.uint8)
        features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)})
        return datasets.Dataset.from_dict(
            {"image": [Image.fromarray(p) for p in pixels], "label": [i % GENERATED_CLASSES for i in range(n)]},
            features=features)

    path = root / "generated"
    datasets.DatasetDict(train=split(GENERATED_IMAGES), test=split(GENERATED_IMAGES // 10)).save_to_disk(str(path))
    return str(path)


def touch(images: torch.Tensor) -> int:
    """Read one byte of every 4 KiB page, so a memory-mapped tensor is really read."""
    return int(images.reshape(-1)[::4096].sum())


def methods(spec: str) -> dict[str, Callable[[], None]]:
    def run(cache: str, delete_entry: bool = False) -> Callable[[], None]:
        def method() -> None:
            os.environ[decoded_splits.ENV] = cache
            task = load_task(spec)
            if delete_entry:
                key = decoded_splits.cache_key(task.train, task.image_size)
                decoded_splits.entry_path(key).unlink(missing_ok=True)
            touch(task.tensors("train").images)

        return method

    return {"decode": run("0"), "decode_and_write": run("1", delete_entry=True), "cached": run("1")}


def record(spec: str, task_info: dict, times: dict[str, list[float]], repeats: int) -> dict[str, float]:
    med = {name: statistics.median(ts) for name, ts in times.items()}
    summary = {
        "decode_s": round(med["decode"], 4),
        "decode_and_write_s": round(med["decode_and_write"], 4),
        "cached_s": round(med["cached"], 4),
        "write_overhead_ratio": round(med["decode_and_write"] / med["decode"], 3),
        "ratio": round(med["cached"] / med["decode"], 4),
    }
    append_result("decode_cache", {
        "config": {"spec": spec, **task_info, "repeats": repeats, "decode_version": decoded_splits.DECODE_VERSION},
        "baseline": "load_task(spec).tensors('train') with LSML_HUB_DECODED_CACHE=0",
        "all_s": {name: [round(t, 4) for t in ts] for name, ts in times.items()},
        **summary,
        "target": TARGET,
        "meets_target": summary["ratio"] <= TARGET,
    })
    return summary


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default="auto", help="a task spec, 'generated', or 'auto': builtin:fashion_mnist "
                                                       "if installed locally, else generated (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LSML_HUB_CACHE"] = str(Path(tmp) / "lsml_hub")
        label = args.spec
        if label == "auto":
            label = "builtin:fashion_mnist" if fashion_mnist.local_dir() else "generated"
        spec = generated_dataset(Path(tmp)) if label == "generated" else label
        start = time.perf_counter()
        task = load_task(spec)
        print(f"task {task.name}: {len(task.train)} train images, {task.image_size} px; "
              f"loaded (materialized) in {time.perf_counter() - start:.1f} s")
        times = time_interleaved(methods(spec), args.repeats, verbose=True)
        entry = decoded_splits.entry_path(decoded_splits.cache_key(task.train, task.image_size))
        info = {"train_images": len(task.train), "image_size": task.image_size,
                "entry_mb": round(entry.stat().st_size / 1e6, 1)}
        summary = record(label, info, times, args.repeats)
    print(f"entry {info['entry_mb']} MB; decode {summary['decode_s']:.3f} s, decode and write "
          f"{summary['decode_and_write_s']:.3f} s ({summary['write_overhead_ratio']:.3f}x), "
          f"cached {summary['cached_s']:.3f} s (medians of {args.repeats})")
    print(f"results appended to {results_path('decode_cache')}")
    print(f"ratio cached/decode (c)/(a): {summary['ratio']:.4f} (target <= {TARGET}) "
          f"{'OK' if summary['ratio'] <= TARGET else 'ABOVE TARGET'}")
    return summary["ratio"]


if __name__ == "__main__":
    main(sys.argv[1:])
