"""The ``lsml-hub`` command line.

Each sub-command lives in its own module of this package and exposes ``register(subparsers)``,
which adds its parser and sets ``func(args) -> int | None`` as the parser default.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from lsml_hub.errors import LsmlHubError

# Each command module imports its heavy code (training, fine-tuning, data) inside its run function,
# so building the parser costs little beyond `import lsml_hub` itself. That import is not avoidable
# here: this package lives inside lsml_hub, whose __init__ registers the CIFAR ResNets with timm and so
# imports torch and timm (about 6-7 s of a 6-7 s `lsml-hub --help` on a 2-core CPU).
COMMAND_MODULES = (
    "lsml_hub.cli.data_command",
    "lsml_hub.cli.train_command",
    "lsml_hub.cli.hub_command",
    "lsml_hub.cli.finetune_command",
    "lsml_hub.cli.cache_command",
)

logger = logging.getLogger("lsml_hub")


def build_parser() -> argparse.ArgumentParser:
    from lsml_hub import __version__

    parser = argparse.ArgumentParser(
        prog="lsml-hub",
        description="Meta-learned initializations for timm backbones: train, share, fine-tune.",
    )
    parser.add_argument("--version", action="version", version=f"lsml-hub {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; user errors print one line to stderr and return 2 (no traceback)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Under torchrun only rank 0 speaks; the others report warnings and errors.
    quiet = os.environ.get("RANK", "0") != "0"
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if quiet else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except LsmlHubError as err:
        print(f"lsml-hub {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = getattr(args, "interrupt_hint", "")
        print(f"lsml-hub {args.command}: interrupted{'; ' + hint if hint else ''}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
