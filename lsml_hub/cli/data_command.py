"""``lsml-hub data``: list the builtin sources, or load task specs and show what they hold."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="list builtin sources or inspect task specs",
        description="Load each task spec and print its summary as JSON lines; with no spec, list builtins.",
    )
    parser.add_argument(
        "specs", nargs="*", metavar="SPEC",
        help="task spec: builtin:NAME, a Hub dataset id, or a local path, with optional ?key=value&...",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lsml_hub.data import BUILTINS, load_task

    if not args.specs:
        for source in BUILTINS.values():
            print(f"builtin:{source.name:<16} {source.image_size:>3}px  {source.description}")
        return 0
    for spec in args.specs:
        print(json.dumps(load_task(spec).summary()))
    return 0
