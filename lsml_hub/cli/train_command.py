"""``lsml-hub meta-train CONFIG.yaml [key=value ...]``: the same code as ``recipes/meta_train.py``."""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)

_EPILOG = """\
config keys: recipes/configs/tiny.yaml shows every key (model, model_kwargs, tasks, algorithm, inner,
steps, output_dir, ...) in a run of seconds; recipes/configs/paper_*.yaml hold the paper's settings.

output_dir must be new, empty, or a run of the same config (it is resumed); anything else is refused
before any data is loaded.

examples:
  lsml-hub meta-train recipes/configs/tiny.yaml
  lsml-hub meta-train recipes/configs/tiny.yaml steps=100 output_dir=runs/tiny_reptile \\
      algorithm=reptile algorithm.reset_period=5
  lsml-hub meta-train recipes/configs/tiny.yaml model=vit_tiny_patch16_224 'model_kwargs={img_size: 32}'
  torchrun --nproc-per-node=2 -m lsml_hub meta-train recipes/configs/tiny.yaml
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``meta-train`` to the ``lsml-hub`` parser."""
    parser = subparsers.add_parser(
        "meta-train",
        help="meta-train an init from a YAML config (also under torchrun)",
        description=(
            "Meta-train an init from a YAML config; the init is written to the config's output_dir/init.\n"
            "Running again on an output_dir that holds a checkpoint resumes it.\n"
            "Under torchrun every rank runs this command."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keep the epilog's examples on their lines
    )
    parser.add_argument("config", metavar="CONFIG", help="YAML config, e.g. recipes/configs/tiny.yaml")
    # default=[]: argparse counts a "*" positional without a default as required and names it in
    # "the following arguments are required", although zero overrides are fine.
    parser.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help="optional config overrides with dotted keys, e.g. steps=100 algorithm.meta_lr=0.1")
    parser.set_defaults(func=run, interrupt_hint="run the same command again to resume from the last checkpoint "
                        "(checkpoint_every steps apart; RUN/config.yaml holds the config)")


def run(args: argparse.Namespace) -> int:
    from lsml_hub.training import meta_train

    result = meta_train(args.config, tuple(args.overrides))
    accuracies = [r.accuracy for r in result.final_eval.values()]
    logger.info("init written to %s (mean source-task eval accuracy %.4f after %d steps)",
                result.init_dir, sum(accuracies) / max(1, len(accuracies)), result.steps)
    return 0
