"""Does the batch stream keep up with training? Batches/s of the stream over training steps/s, in one run.

(a) ``BatchStream`` over a 32 px builtin task (default ``builtin:latin_upper``, batch 64, training
    augmentation on: random crop after padding, no flips for glyphs), decoded once beforehand as the
    training loop does. Each batch is indexed, cropped and normalized.
(b) Training steps of timm's ``test_resnet`` (``num_classes`` = the task's classes, SGD with momentum,
    forward + cross-entropy + backward + step) on CPU batches of the same shape, default torch threads.

Both are warmed up, then timed alternately in each repeat (so drift on a noisy machine hits both
alike), and the medians are compared. Target: (a) / (b) >= 5.

Run (from the repository root)::

    .venv/bin/python benchmarks/data_throughput.py [--spec builtin:latin_upper] [--repeats 7]

The last line printed is the ratio; each run is appended to benchmarks/results/data_throughput.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

# Offline before huggingface_hub is imported: the benchmark must never reach the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import timm  # noqa: E402
import torch  # noqa: E402
from _common import append_result  # noqa: E402

from lsml_hub.data import Augment, BatchStream, load_task  # noqa: E402

TARGET = 5.0


def time_stream(stream: BatchStream, batches: int) -> float:
    """Batches per second over ``batches`` batches."""
    start = time.perf_counter()
    for _ in range(batches):
        next(stream)
    return batches / (time.perf_counter() - start)


def time_training(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: list, steps: int) -> float:
    """Training steps per second over ``steps`` steps, cycling through pre-made ``batches``."""
    loss_fn = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    for i in range(steps):
        batch = batches[i % len(batches)]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(batch.images), batch.labels)
        loss.backward()
        optimizer.step()
    return steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default="builtin:latin_upper", help="a 32 px builtin task (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--stream-batches", type=int, default=200, help="batches per timed stream repeat")
    parser.add_argument("--train-steps", type=int, default=20, help="steps per timed training repeat")
    parser.add_argument("--model", default="test_resnet")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    task = load_task(args.spec)
    data = task.tensors("train")
    prepare_s = time.perf_counter() - start
    augment = Augment.for_size(task.image_size, task.hflip)
    print(f"task {task.name}: {len(data)} train images, {task.num_classes} classes, {task.image_size} px, "
          f"augment {augment}; loaded and decoded in {prepare_s:.1f} s")

    stream = BatchStream(data, args.batch_size, seed=0, augment=augment)
    model = timm.create_model(args.model, num_classes=task.num_classes).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    # Real batches from the stream, so the step sees exactly the shape and dtype it would in training.
    train_batches = [next(stream) for _ in range(8)]
    print(f"batch: images {tuple(train_batches[0].images.shape)} {train_batches[0].images.dtype}; "
          f"model {args.model}, {sum(p.numel() for p in model.parameters()):,} parameters; "
          f"torch threads {torch.get_num_threads()}")

    time_stream(stream, max(20, args.stream_batches // 5))  # warm-up
    time_training(model, optimizer, train_batches, 5)
    stream_rates, step_rates = [], []
    for r in range(args.repeats):
        stream_rates.append(time_stream(stream, args.stream_batches))
        step_rates.append(time_training(model, optimizer, train_batches, args.train_steps))
        print(f"repeat {r + 1}/{args.repeats}: stream {stream_rates[-1]:8.1f} batches/s   "
              f"training {step_rates[-1]:6.2f} steps/s")
    stream_median, step_median = statistics.median(stream_rates), statistics.median(step_rates)
    ratio = stream_median / step_median

    record = {
        "config": {
            "spec": args.spec, "train_images": len(data), "num_classes": task.num_classes,
            "image_size": task.image_size, "batch_size": args.batch_size, "augment": vars(augment),
            "model": args.model, "optimizer": "SGD(lr=0.01, momentum=0.9, weight_decay=5e-4)",
            "repeats": args.repeats, "stream_batches_per_repeat": args.stream_batches,
            "train_steps_per_repeat": args.train_steps, "device": "cpu",
        },
        "prepare_s": round(prepare_s, 2),
        "stream_batches_per_s": round(stream_median, 2),
        "train_steps_per_s": round(step_median, 3),
        "stream_batches_per_s_all": [round(v, 2) for v in stream_rates],
        "train_steps_per_s_all": [round(v, 3) for v in step_rates],
        "ratio": round(ratio, 2),
        "ratio_per_repeat": [round(a / b, 2) for a, b in zip(stream_rates, step_rates)],
        "target": TARGET,
        "meets_target": ratio >= TARGET,
    }
    path = append_result("data_throughput", record)

    print(f"stream (a): {stream_median:.1f} batches/s (median of {args.repeats})")
    print(f"training (b): {step_median:.2f} steps/s of {args.model} (median of {args.repeats})")
    print(f"results appended to {path}")
    print(f"ratio stream/training (a)/(b): {ratio:.1f}x (target >= {TARGET:g}x) "
          f"{'OK' if ratio >= TARGET else 'BELOW TARGET'}")
    return ratio


if __name__ == "__main__":
    main(sys.argv[1:])
