"""``lsml-hub cache``: list what lsml-hub keeps in its cache folder, or remove it."""

from __future__ import annotations

import argparse
import time

KIND_CHOICES = ("builtin", "decoded", "all")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cache",
        help="list or remove materialized builtins and decoded splits",
        description="List the entries of lsml-hub's cache folder ($LSML_HUB_CACHE): builtin sources "
                    "materialized as datasets and decoded splits. Both are rebuilt when needed, so removing "
                    "them costs only the time to rebuild (but not while a run is writing them). Files lsml-hub "
                    "did not write are left alone. Hub datasets and inits are in the Hugging Face caches "
                    "(`hf cache`).",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("ls", help="list entries with their size (the default)", description="List the entries.")
    rm = actions.add_parser("rm", help="remove entries of one kind, or all",
                            description="Remove cache entries; the next run that needs them rebuilds them.")
    rm.add_argument("kind", choices=KIND_CHOICES, help="which entries to remove")
    parser.set_defaults(func=run, action="ls")


def run(args: argparse.Namespace) -> int:
    from lsml_hub.data.cache_folder import KINDS, cache_root, clear_cache, scan_cache

    root = cache_root()
    if args.action == "rm":
        removed = clear_cache(KINDS if args.kind == "all" else [args.kind])
        print(f"removed {_count(removed)}, {_size(sum(e.size for e in removed))}, from {root}")
        return 0
    entries = scan_cache()
    if entries:
        print(f"{'KIND':8} {'SIZE':>9}  {'MODIFIED':16}  NAME")
    for e in entries:
        modified = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.modified))
        print(f"{e.kind:8} {_size(e.size):>9}  {modified:16}  {e.name}")
    print(f"{_count(entries)}, {_size(sum(e.size for e in entries))}, in {root}")
    return 0


def _count(entries: list) -> str:
    return f"{len(entries)} {'entry' if len(entries) == 1 else 'entries'}"


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")
