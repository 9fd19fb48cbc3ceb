"""``lsml-hub meta-train CONFIG.yaml [key=value ...]``: the same code as ``recipes/meta_train.py``."""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "meta-train",
        help="meta-train an init from a YAML config (also under torchrun)",
        description=(
            "Meta-train an init. Running again on an output_dir that holds a checkpoint resumes it. "
            "Under torchrun every rank runs this command: "
            "torchrun --nproc-per-node=2 -m lsml_hub meta-train CONFIG.yaml"
        ),
    )
    parser.add_argument("config", help="YAML config, e.g. recipes/configs/cpu_demo.yaml")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides with dotted keys: steps=100 algorithm.meta_lr=0.1")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lsml_hub.training import meta_train

    result = meta_train(args.config, tuple(args.overrides))
    accuracies = [r.accuracy for r in result.final_eval.values()]
    logger.info("init written to %s (mean source-task eval accuracy %.4f after %d steps)",
                result.init_dir, sum(accuracies) / max(1, len(accuracies)), result.steps)
    return 0
