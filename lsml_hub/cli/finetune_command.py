"""``lsml-hub finetune`` and ``lsml-hub compare``: meta-testing from the command line."""

from __future__ import annotations

import argparse
import re
from typing import Any

# Defaults and choices are read from FinetuneConfig at parse time, so they are defined once.
_INIT_HELP = ("an init: a folder, local-dir:PATH, hf-hub:owner/name[@rev] (as `lsml-hub list` shows them), "
              "scratch:ARCH (random weights) or timm:ARCH[.TAG] (timm's pretrained weights, from the HF cache)")
# "name=init" names an init in compare; a left side with '/' or ':' is part of a path, not a name.
_NAMED_INIT = re.compile(r"([\w.\-]+)=(.+)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``finetune`` and ``compare`` to the ``lsml-hub`` parser."""
    p = subparsers.add_parser(
        "finetune", help="fine-tune an init on a target task",
        description="Fine-tune an init (or scratch:ARCH) on a target task; defaults follow the seed paper.",
    )
    p.add_argument("--init", required=True, metavar="INIT", help=_INIT_HELP)
    p.add_argument("--data", required=True, metavar="SPEC", help="target task spec, e.g. builtin:digits")
    _add_finetune_options(p, seed=True)
    p.add_argument("--out", metavar="DIR",
                   help="write result.json and the fine-tuned model.safetensors here (a new or empty folder, "
                        "or an earlier finetune output: only those two files, result.json among them, replaced)")
    p.set_defaults(func=run_finetune)

    p = subparsers.add_parser(
        "compare", help="fine-tune several inits and baselines on one target and compare them",
        description="Fine-tune each init and the baselines with the same seeds; print a table and "
                    "optionally write comparison.csv, comparison.json and curves.png.",
    )
    p.add_argument("--init", required=True, action="append", metavar="[NAME=]INIT", dest="inits",
                   help=f"{_INIT_HELP}; repeat for each init")
    p.add_argument("--data", required=True, metavar="SPEC", help="target task spec, e.g. builtin:digits")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="SEED", help="seeds (default: 0)")
    # None (flag not given) lets compare() skip uncached pretrained weights; named, they are required.
    p.add_argument("--baselines", nargs="*", default=None, metavar="NAME",
                   help="scratch and/or pretrained (timm's weights, read from the Hugging Face cache, never "
                        "downloaded: an error when named and not cached); default: scratch, and pretrained when "
                        "cached; the flag alone: none")
    _add_finetune_options(p, seed=False)
    p.add_argument("--out", metavar="DIR",
                   help="write comparison.csv, comparison.json and curves.png here (a new or empty folder, or one "
                        "holding only those files with comparison.json among them, which are replaced)")
    p.add_argument("--record", action="store_true",
                   help="write the results into each local init folder's config.json and model card")
    p.set_defaults(func=run_compare)


def _add_finetune_options(p: argparse.ArgumentParser, *, seed: bool) -> None:
    from lsml_hub.compute import COMPILE_MODES, PRECISIONS
    from lsml_hub.metatest.config import MODES, SCHEDULES, FinetuneConfig

    d = FinetuneConfig()
    g = p.add_argument_group("fine-tuning")
    g.add_argument("--steps", type=int, default=d.steps, help=f"optimizer steps (default: {d.steps})")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default: {d.batch_size}")
    g.add_argument("--optimizer", default=d.optimizer, help=f"any timm optimizer name (default: {d.optimizer})")
    g.add_argument("--lr", type=float, default=d.lr, help=f"default: {d.lr:g}")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"default: {d.weight_decay:g}")
    g.add_argument("--schedule", default=d.schedule,
                   help=f"{' | '.join(SCHEDULES)} (default: {d.schedule}: lr x0.3 at 40/70/90%% of the steps)")
    g.add_argument("--max-train-samples", type=int, metavar="N",
                   help="train on a stratified subset of N samples, at least one per class, so N must be at least "
                        "the number of classes (default: all)")
    g.add_argument("--mode", default=d.mode, help=f"{' | '.join(MODES)}: linear freezes the backbone")
    g.add_argument("--eval-every", type=int, metavar="STEPS", help="default: steps // 10")
    g.add_argument("--image-size", type=int, metavar="PX", help="resize the target to PX (default: the init's)")
    g.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: auto: cuda when available)")
    g.add_argument("--precision", default=d.precision, choices=PRECISIONS,
                   help=f"autocast precision of the forward; fp16 needs CUDA (default: {d.precision})")
    g.add_argument("--channels-last", action="store_true", help="NHWC weights and batches (faster convs on GPUs)")
    g.add_argument("--compile", nargs="?", const=True, default=False, metavar="MODE",
                   help=f"torch.compile the training forward; MODE: {', '.join(COMPILE_MODES)} (default: off)")
    if seed:
        g.add_argument("--seed", type=int, default=d.seed, help=f"default: {d.seed}")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")


def _finetune_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("steps", "batch_size", "optimizer", "lr", "weight_decay", "schedule", "max_train_samples", "mode",
            "eval_every", "image_size", "device", "seed", "precision", "channels_last", "compile")
    return {k: getattr(args, k) for k in keys if hasattr(args, k)}


def run_finetune(args: argparse.Namespace) -> int:
    from lsml_hub.metatest import finetune

    result = finetune(args.init, args.data, out_dir=args.out, progress=args.progress, **_finetune_kwargs(args))
    final, best = result.final, result.best
    print(f"{result.target['name']}: {result.train_samples} train samples, {result.config.steps} steps, "
          f"{result.inputs.image_size} px")
    print(f"final accuracy {100 * final.accuracy:.2f}% (eval loss {final.loss:.4f}) at step {final.step}")
    print(f"best accuracy  {100 * best.accuracy:.2f}% (eval loss {best.loss:.4f}) at step {best.step}")
    return 0  # finetune() logged what it wrote to --out


def parse_named_inits(values: list[str]) -> list[str] | dict[str, str]:
    """``["cts=runs/demo/inits/cts", "runs/demo/inits/reptile"]`` -> name -> init when any is named, else the list.

    Example:
        >>> parse_named_inits(["cts=runs/demo/inits/cts", "scratch:test_resnet"])
        {'cts': 'runs/demo/inits/cts', 'scratch:test_resnet': 'scratch:test_resnet'}
    """
    from lsml_hub.errors import ConfigError

    matches = [_NAMED_INIT.fullmatch(v) for v in values]
    if not any(matches):
        return list(values)
    pairs = [(m.group(1), m.group(2)) if m else (v, v) for m, v in zip(matches, values)]
    names = [name for name, _ in pairs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"--init names {duplicates} more than once; give each init its own NAME=")
    return dict(pairs)


def run_compare(args: argparse.Namespace) -> int:
    from lsml_hub.metatest import compare

    comparison = compare(
        parse_named_inits(args.inits), args.data, seeds=args.seeds, baselines=args.baselines, out_dir=args.out,
        record=args.record, progress=args.progress, **_finetune_kwargs(args),
    )
    print(comparison.table())  # compare() logged what it wrote to --out
    return 0
