"""How much loading an init costs over the bare minimum, measured as ratios in one run.

Baseline: ``timm.create_model(arch, pretrained=False)`` + ``safetensors.torch.load_file``, i.e.
building the bare model and reading the weights file (not even copying them into the model).
Measured: ``lsml_hub.create_model`` from a local folder and from a prepared Hugging Face cache
(offline), which also parse the config, check the sha256, check the keys strictly and load the
weights into the model. Methods are interleaved within each repeat so that drift on a noisy
machine hits all of them alike; medians are compared.

Run (from the repository root)::

    .venv/bin/python benchmarks/load_speed.py [--repeats 21] [--archs resnet20_cifar,resnet18]

The last line printed is the worst ratio; results are appended to benchmarks/results/load_speed.json.
Target: <= 1.2.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

# Offline before huggingface_hub is imported: the benchmark must never reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"

import safetensors.torch  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
from _common import append_result, time_interleaved  # noqa: E402

import lsml_hub  # noqa: E402
from lsml_hub.hub import add_to_hub_cache  # noqa: E402

NUM_CLASSES = 10
TARGET = 1.2


def prepare(arch: str, root: Path) -> tuple[Path, str, Path]:
    """Save a random ``arch`` as an init, add it to a private Hub cache; return (folder, hub id, cache)."""
    model = timm.create_model(arch, num_classes=NUM_CLASSES)
    folder = lsml_hub.save_init(root / arch, model, lsml={"algorithm": {"name": "benchmark"}})
    cache = root / "hf-cache"
    add_to_hub_cache(folder, f"bench/{arch}", cache_dir=cache)
    return folder, f"hf-hub:bench/{arch}", cache


def methods(arch: str, folder: Path, hub_id: str, cache: Path) -> dict[str, Callable[[], torch.nn.Module]]:
    def baseline() -> torch.nn.Module:
        model = timm.create_model(arch, pretrained=False, num_classes=NUM_CLASSES)
        safetensors.torch.load_file(folder / "model.safetensors")
        return model

    return {
        "baseline": baseline,
        "local": lambda: lsml_hub.create_model(f"local-dir:{folder}", num_classes=NUM_CLASSES),
        "hub_cache": lambda: lsml_hub.create_model(hub_id, num_classes=NUM_CLASSES, cache_dir=cache),
    }


def summarize(arch: str, times: dict[str, list[float]], weights: Path) -> dict[str, float]:
    med = {name: statistics.median(ts) for name, ts in times.items()}
    return {
        "weights_mb": round(weights.stat().st_size / 1e6, 2),
        "baseline_s": round(med["baseline"], 5),
        "local_s": round(med["local"], 5),
        "hub_cache_s": round(med["hub_cache"], 5),
        "local_ratio": round(med["local"] / med["baseline"], 3),
        "hub_cache_ratio": round(med["hub_cache"] / med["baseline"], 3),
    }


def record(results: dict[str, dict[str, float]], repeats: int, worst: float) -> Path:
    return append_result("load_speed", {
        "repeats": repeats,
        "baseline": "timm.create_model(pretrained=False) + safetensors.torch.load_file",
        "results": results,
        "worst_ratio": worst,
        "target": TARGET,
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--archs", default="resnet20_cifar,resnet18")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            folder, hub_id, cache = prepare(arch, Path(tmp))
            times = time_interleaved(methods(arch, folder, hub_id, cache), args.repeats)
            results[arch] = summarize(arch, times, folder / "model.safetensors")
            r = results[arch]
            print(f"{arch:16s} {r['weights_mb']:7.2f} MB  baseline {r['baseline_s'] * 1e3:8.1f} ms  "
                  f"local {r['local_s'] * 1e3:8.1f} ms ({r['local_ratio']:.3f}x)  "
                  f"hub cache {r['hub_cache_s'] * 1e3:8.1f} ms ({r['hub_cache_ratio']:.3f}x)")
    worst = max(max(r["local_ratio"], r["hub_cache_ratio"]) for r in results.values())
    path = record(results, args.repeats, worst)
    print(f"results appended to {path}")
    print(f"load ratio (worst of local/hub cache vs baseline, median of {args.repeats}): {worst:.3f} "
          f"(target <= {TARGET})")


if __name__ == "__main__":
    main()
