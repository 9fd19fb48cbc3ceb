"""What the meta-update costs: CTS steps/s over ``none`` (same tasks and models, no meta-update).

    python benchmarks/meta_overhead.py [--tasks 4] [--steps 30] [--rounds 5] [--model test_resnet]

Both trainers are built in this process and measured in alternating rounds, so machine noise hits
both alike; the ratio of their median steps/s is printed on the last line (target ≥ 0.95) and
appended to benchmarks/results/meta_overhead.json. Run it on an otherwise idle machine: a
competing process makes rounds minutes apart incomparable.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from _common import append_result

from lsml_hub.distributed import DistContext
from lsml_hub.training import MetaTrainConfig, MetaTrainer

SOURCES = ["latin_upper", "greek", "cyrillic", "printed_digits", "latin_lower", "symbols"]


def build(algorithm: dict, args: argparse.Namespace, out: Path) -> MetaTrainer:
    cfg = MetaTrainConfig.from_dict({
        "model": args.model,
        "tasks": [f"builtin:{name}?samples_per_class=40" for name in SOURCES[: args.tasks]],
        "algorithm": algorithm,
        "inner": {"batch_size": args.batch_size},
        "steps": 10**9, "output_dir": str(out / algorithm["name"]), "device": "cpu", "tensorboard": False,
    })
    return MetaTrainer(cfg, DistContext())


def steps_per_second(trainer: MetaTrainer, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--model", default="test_resnet")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30, help="steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("LSML_HUB_CACHE", str(Path(tempfile.gettempdir()) / "lsml_hub_bench_cache"))
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {
            "cts": build({"name": "cts", "meta_lr": 0.05, "aggregate_period": 1, "reset_period": 200}, args, Path(tmp)),
            "none": build({"name": "none"}, args, Path(tmp)),
        }
        for trainer in trainers.values():  # warm-up: allocator, first-touch, kernels
            steps_per_second(trainer, 5)
        rates: dict[str, list[float]] = {name: [] for name in trainers}
        for _ in range(args.rounds):
            for name, trainer in trainers.items():
                rates[name].append(steps_per_second(trainer, args.steps))
    median = {name: statistics.median(r) for name, r in rates.items()}
    ratio = median["cts"] / median["none"]
    path = append_result("meta_overhead", {
        "config": vars(args), "steps_per_sec": rates, "median_steps_per_sec": median, "ratio_cts_over_none": ratio,
        "target": ">= 0.95",
    })
    print(f"cts {median['cts']:.2f} steps/s, none {median['none']:.2f} steps/s ({args.tasks} tasks, {args.model})")
    print(f"results appended to {path}")
    print(f"ratio cts/none = {ratio:.3f}")


if __name__ == "__main__":
    main()
