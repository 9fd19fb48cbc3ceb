"""What meta-learning costs: every algorithm's steps/s over ``none`` (same tasks and models, no meta-update).

    python benchmarks/meta_overhead.py [--tasks 4] [--steps 30] [--rounds 5] [--model test_resnet]
                                       [--algorithms cts,reptile,...] [--reset-period 10]

All trainers are built in this process and measured in rotating rounds, so machine noise hits them
alike; the ratios of their median steps/s to ``none``'s are printed, and the cost of one iMAML
meta-update is timed on its own (in ``none`` steps). Rules that meta-update only at the reset
(Reptile, FOMAML, Leap, iMAML) use ``--reset-period`` so that every round holds several of their
meta-updates. Results are appended to benchmarks/results/meta_overhead.json; the last line is CTS's
ratio (target ≥ 0.95). Run it on an otherwise idle machine.
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


def algorithms(reset_period: int) -> dict[str, dict]:
    """Each rule with the settings it is measured at."""
    k = {"reset_period": reset_period}
    return {
        "none": {"name": "none"},
        "cts": {"name": "cts", "meta_lr": 0.05, "aggregate_period": 1, "reset_period": 200},
        "reptile": {"name": "reptile", "meta_lr": 1.0, **k},
        "multitask": {"name": "multitask"},
        "fomaml": {"name": "fomaml", **k},
        "fomaml_shift": {"name": "fomaml_shift", "aggregate_period": 1, "reset_period": 200},
        "leap": {"name": "leap", **k},
        "imaml": {"name": "imaml", **k},  # the seed's 10 CG steps and 10 held-out batches
        "imaml_proximal": {"name": "imaml", "proximal": True, **k},  # + λ(θ − φ) in every inner step
        "anil": {"name": "anil", "aggregate_period": 1, "reset_period": 200},
    }


def build(name: str, algorithm: dict, args: argparse.Namespace, out: Path) -> MetaTrainer:
    cfg = MetaTrainConfig.from_dict({
        "model": args.model,
        "tasks": [f"builtin:{name}?samples_per_class=40" for name in SOURCES[: args.tasks]],
        "algorithm": algorithm,
        "inner": {"batch_size": args.batch_size},
        "steps": 10**9, "output_dir": str(out / name), "device": "cpu", "tensorboard": False,
        "log_every": 10**9, "eval_every": 10**9, "checkpoint_every": 10**9,
    })
    return MetaTrainer(cfg, DistContext())


def steps_per_second(trainer: MetaTrainer, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    return steps / (time.perf_counter() - start)


def seconds_per_call(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--model", default="test_resnet")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30, help="steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reset-period", type=int, default=10, help="K of the rules that meta-update at the reset")
    parser.add_argument("--algorithms", default=None, help="comma-separated subset (default: all; none is always in)")
    args = parser.parse_args()
    os.environ.setdefault("LSML_HUB_CACHE", str(Path(tempfile.gettempdir()) / "lsml_hub_bench_cache"))
    chosen = algorithms(args.reset_period)
    if args.algorithms:
        names = {"none", *args.algorithms.split(",")}
        chosen = {name: algo for name, algo in chosen.items() if name in names}
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {name: build(name, algo, args, Path(tmp)) for name, algo in chosen.items()}
        for trainer in trainers.values():  # warm-up: allocator, first-touch, kernels
            steps_per_second(trainer, 5)
        rates: dict[str, list[float]] = {name: [] for name in trainers}
        names = list(trainers)
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                rates[name].append(steps_per_second(trainers[name], args.steps))
        imaml_update = seconds_per_call(trainers["imaml"].meta_update) if "imaml" in trainers else None
        none_step = 1 / statistics.median(rates["none"])
    median = {name: statistics.median(r) for name, r in rates.items()}
    ratios = {name: median[name] / median["none"] for name in median if name != "none"}
    record = {"config": vars(args), "algorithms": chosen, "steps_per_sec": rates, "median_steps_per_sec": median,
              "ratio_over_none": ratios, "target_cts": ">= 0.95"}
    if imaml_update is not None:
        record["imaml_meta_update_seconds"] = imaml_update
        record["imaml_meta_update_in_none_steps"] = imaml_update / none_step
    path = append_result("meta_overhead", record)
    print(f"{args.tasks} tasks, {args.model}, batch {args.batch_size}; none {median['none']:.2f} steps/s")
    width = max(map(len, ratios))
    for name, ratio in ratios.items():
        print(f"  {name:{width}s} {median[name]:6.2f} steps/s  ratio {ratio:.3f}")
    if imaml_update is not None:
        print(f"one iMAML meta-update: {imaml_update:.2f} s = {imaml_update / none_step:.1f} steps of none "
              f"({args.tasks} tasks x (10 held-out batches + 10 Hessian-vector products))")
    print(f"results appended to {path}")
    if "cts" in ratios:
        print(f"ratio cts/none = {ratios['cts']:.3f}")


if __name__ == "__main__":
    main()
