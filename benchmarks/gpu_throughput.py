"""Images/s of meta-training against a plain timm training loop of the same work, on one GPU.

    python benchmarks/gpu_throughput.py [--steps 100] [--rounds 3] [--compile]

On CUDA it measures, in alternating rounds so that drift hits all alike:
  1. ResNet-20 (``resnet20_cifar``) on the paper's 8 source tasks at their image sizes and classes
     (synthetic images: speed does not depend on the pixels), batch 128 per task, bf16 autocast,
     channels_last, every split held on the GPU as uint8:
       plain  a hand-written timm training loop over the same 8 models: the same model, batch,
              precision, layout and data placement, SGD 0.01/0.9/5e-4, random crop and flip on the
              GPU; no meta-learning, no bookkeeping;
       none   lsml-hub's meta-training loop without meta-updates (``algorithm: none``);
       cts    lsml-hub's meta-training loop with CTS (meta-update every step);
     and prints cts ÷ plain and the hours the paper's 200,000-step run would take at cts's speed.
  2. ResNet-18 at 224 px (one model, batch 128): the plain loop in fp32 vs bf16 (both channels_last).

Without CUDA it runs a small CPU version of part 1 (2 tasks at 32 px, test_resnet, batch 32, fp32)
and says so. Results are appended to benchmarks/results/gpu_throughput.json; the ratio cts ÷ plain
is the last line.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import datasets
import timm
import torch
import torch.nn.functional as F
from _common import append_result

import lsml_hub.training.loop as training_loop
from lsml_hub.compute import ComputeConfig
from lsml_hub.data import ImageTensors, Task, TaskSpec
from lsml_hub.distributed import DistContext
from lsml_hub.training import MetaTrainConfig, MetaTrainer

# The paper's source tasks (name, image size, classes); train sizes are capped for memory.
PAPER_TASKS = [("tiny_imagenet_0_99", 64, 100), ("tiny_imagenet_100_199", 64, 100), ("cifar100", 32, 100),
               ("stanford_dogs", 84, 120), ("fgvc_aircraft", 84, 100), ("cub200", 84, 200),
               ("fashion_mnist", 28, 10), ("svhn", 32, 10)]
PAPER_STEPS = 200_000


@dataclass(frozen=True)
class Setting:
    """One benchmark setting: the model, the tasks, the batch and how each step computes."""

    model: str
    tasks: list[tuple[str, int, int]]
    batch_size: int
    train_size: int
    compute: ComputeConfig
    device: torch.device

    @property
    def images_per_step(self) -> int:
        return self.batch_size * len(self.tasks)


def synthetic_task(name: str, size: int, classes: int, n: int) -> Task:
    """A task whose decoded splits are random uint8 images (host memory), ready for the trainer."""
    gen = torch.Generator().manual_seed(size * 1000 + classes)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, classes, (n,), generator=gen)
    data = ImageTensors(images, labels)
    table = datasets.Dataset.from_dict({"label": labels.tolist()})
    return Task(name=name, spec=TaskSpec(f"synthetic:{name}"), train=table, eval=table.select(range(256)),
                class_names=[str(c) for c in range(classes)], image_size=size, hflip=True,
                _tensors={"train": data, "eval": ImageTensors(images[:256], labels[:256])})


def build_trainer(setting: Setting, algorithm: dict, out: Path, compile_: bool) -> MetaTrainer:
    tasks = {name: synthetic_task(name, size, classes, setting.train_size) for name, size, classes in setting.tasks}
    # The trainer loads tasks by spec; the synthetic ones are handed over by name.
    training_loop.load_task = lambda spec: tasks[spec.source.removeprefix("synthetic:")]
    cfg = MetaTrainConfig.from_dict({
        "model": setting.model, "tasks": [f"synthetic:{name}" for name in tasks], "algorithm": algorithm,
        "inner": {"batch_size": setting.batch_size}, "steps": 10**9, "output_dir": str(out / algorithm["name"]),
        "device": str(setting.device), "tensorboard": False, "log_every": 10**9, "eval_every": 10**9,
        "checkpoint_every": 10**9, "precision": setting.compute.precision,
        "channels_last": setting.compute.channels_last, "compile": compile_,
    })
    return MetaTrainer(cfg, DistContext(device=setting.device))


class PlainLoop:
    """A plain timm training loop over the setting's models: the baseline meta-training is held to."""

    def __init__(self, setting: Setting, compile_: bool) -> None:
        self.setting, self.device = setting, setting.device
        compute = ComputeConfig(setting.compute.precision, setting.compute.channels_last, compile_)
        self.compute = compute.check_device(self.device)
        self.runs = []
        for name, size, classes in setting.tasks:
            model = timm.create_model(setting.model, num_classes=classes).to(self.device)
            forward = self.compute.prepare(model)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
            data = synthetic_task(name, size, classes, setting.train_size).tensors("train")
            self.runs.append((forward, optimizer, data.to(self.device), max(1, size // 8)))
        self.mean = torch.tensor([0.5, 0.5, 0.5], device=self.device).view(1, 3, 1, 1)

    def step(self) -> None:
        for forward, optimizer, data, pad in self.runs:
            idx = torch.randint(0, len(data), (self.setting.batch_size,), device=self.device)
            images = self._augment(data.images[idx], pad)
            with self.compute.autocast(self.device):
                logits = forward(images)
            loss = F.cross_entropy(logits.float(), data.labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    def _augment(self, images: torch.Tensor, pad: int) -> torch.Tensor:
        # One random crop offset per batch and a flip per image, on the GPU, then normalization.
        size = images.shape[-1]
        dy, dx = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,)))  # host RNG: no device sync
        images = F.pad(images, (pad,) * 4)[..., dy:dy + size, dx:dx + size]
        flip = torch.rand(len(images), device=self.device) < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        images = images.contiguous(memory_format=self.compute.memory_format())
        return (images.float() / 255 - self.mean) / 0.5


def images_per_second(step: Callable[[], None], steps: int, images_per_step: int, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * images_per_step / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fns: dict[str, Callable[[], None]], setting: Setting, steps: int, rounds: int) -> dict[str, list[float]]:
    for fn in fns.values():  # warm-up: cuDNN autotuning, allocator, compilation
        for _ in range(max(3, steps // 10)):
            fn()
    rates: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotated: drift hits every loop alike
            rates[name].append(images_per_second(fns[name], steps, setting.images_per_step, setting.device))
            print(f"  round {r + 1}: {name:6s} {rates[name][-1]:10.0f} images/s")
    return rates


def meta_training_vs_plain(setting: Setting, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cts = build_trainer(setting, {"name": "cts", "meta_lr": 0.01, "aggregate_period": 1, "reset_period": 1000},
                            Path(tmp), args.compile)
        none = build_trainer(setting, {"name": "none"}, Path(tmp), args.compile)
        plain = PlainLoop(setting, args.compile)
        rates = measure({"plain": plain.step, "none": none.train_step, "cts": cts.train_step},
                        setting, args.steps, args.rounds)
    median = {name: statistics.median(r) for name, r in rates.items()}
    hours = PAPER_STEPS * len(PAPER_TASKS) * 128 / median["cts"] / 3600 if setting.device.type == "cuda" else None
    return {"images_per_sec": rates, "median_images_per_sec": median,
            "ratio_cts_over_plain": median["cts"] / median["plain"],
            "ratio_none_over_plain": median["none"] / median["plain"],
            "projected_hours_paper_run": hours}


def resnet18_bf16_vs_fp32(device: torch.device, args: argparse.Namespace) -> dict:
    medians = {}
    for precision in ("fp32", "bf16"):
        setting = Setting("resnet18", [("imagenet_like", 224, 1000)], 128, 2048,
                          ComputeConfig(precision, channels_last=True), device)
        loop = PlainLoop(setting, args.compile)
        medians[precision] = statistics.median(measure({precision: loop.step}, setting, 30, args.rounds)[precision])
        del loop
        torch.cuda.empty_cache()
    return {"median_images_per_sec": medians, "ratio_bf16_over_fp32": medians["bf16"] / medians["fp32"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="steps per round (default: 100 on CUDA, 10 on CPU)")
    parser.add_argument("--rounds", type=int, default=None, help="default: 3 on CUDA, 6 on CPU")
    parser.add_argument("--compile", action="store_true", help="torch.compile every model (plain loop too)")
    args = parser.parse_args()
    os.environ.setdefault("LSML_HUB_CACHE", str(Path(tempfile.gettempdir()) / "lsml_hub_bench_cache"))
    cuda = torch.cuda.is_available()
    if cuda:
        device = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
        setting = Setting("resnet20_cifar", PAPER_TASKS, 128, 5000, ComputeConfig("bf16", channels_last=True), device)
        print(f"GPU: {torch.cuda.get_device_name(device)}")
    else:
        device = torch.device("cpu")
        setting = Setting("test_resnet", PAPER_TASKS[2:3] + PAPER_TASKS[7:8], 32, 512, ComputeConfig(), device)
        print("no CUDA here: a small CPU version (2 tasks at 32 px, test_resnet, batch 32, fp32); "
              "the GPU targets need a GPU")
    args.steps = args.steps or (100 if cuda else 10)
    args.rounds = args.rounds or (3 if cuda else 6)
    print(f"{setting.model}: {len(setting.tasks)} tasks, batch {setting.batch_size}, {setting.compute}")
    part1 = meta_training_vs_plain(setting, args)
    record = {"config": {**vars(args), "model": setting.model, "tasks": setting.tasks, "batch_size": setting.batch_size,
                         "precision": setting.compute.precision, "channels_last": setting.compute.channels_last},
              "device": torch.cuda.get_device_name(device) if cuda else "cpu", "meta_training": part1,
              "targets": {"cts_over_plain": ">= 0.95", "bf16_over_fp32_resnet18_224": ">= 1.5",
                          "projected_hours": "<= 2"}}
    if cuda:
        record["resnet18_224"] = resnet18_bf16_vs_fp32(device, args)
        print(f"ResNet-18 224 px: bf16 / fp32 = {record['resnet18_224']['ratio_bf16_over_fp32']:.2f}")
        print(f"projected paper run (200,000 steps x 8 tasks x 128): {part1['projected_hours_paper_run']:.2f} h")
    path = append_result("gpu_throughput", record)
    print(f"none / plain = {part1['ratio_none_over_plain']:.3f}")
    print(f"results appended to {path}")
    print(f"ratio cts/plain = {part1['ratio_cts_over_plain']:.3f}")


if __name__ == "__main__":
    main()
