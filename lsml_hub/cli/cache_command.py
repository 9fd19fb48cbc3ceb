"""``lsml-hub cache``: list or remove what lsml-hub keeps in its cache folder; add an init to the Hugging Face cache."""

from __future__ import annotations

import argparse
import time

KIND_CHOICES = ("builtin", "decoded", "all")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cache",
        help="list or remove materialized builtins and decoded splits; add an init to the Hugging Face cache",
        description="List the entries of lsml-hub's cache folder ($LSML_HUB_CACHE): builtin sources "
                    "materialized as datasets and decoded splits. Both are rebuilt when needed, so removing "
                    "them costs only the time to rebuild (but not while a run is writing them). Files lsml-hub "
                    "did not write are left alone. Hub datasets and inits are in the Hugging Face caches "
                    "(`hf cache`); `lsml-hub cache add` puts an init folder there, for machines without Hub access.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("ls", help="list entries with their size (the default)", description="List the entries.")
    rm = actions.add_parser("rm", help="remove entries of one kind, or all",
                            description="Remove cache entries; the next run that needs them rebuilds them.")
    rm.add_argument("kind", choices=KIND_CHOICES, help="which entries to remove")
    add = actions.add_parser(
        "add", help="add an init folder to the Hugging Face cache, to load as hf-hub:OWNER/NAME offline",
        description="Verify an init folder (its three files and the sha256 of its weights), then copy it into the "
                    "Hugging Face hub cache (HF_HUB_CACHE, default ~/.cache/huggingface/hub) as if downloaded "
                    "from OWNER/NAME. On a machine without Hub access, HF_HUB_OFFLINE=1 then loads it as "
                    "hf-hub:OWNER/NAME, and `lsml-hub list` shows it. Nothing is written if the folder does "
                    "not verify.",
    )
    add.add_argument("init_dir", metavar="INIT_DIR", help="an init folder (config.json, model.safetensors, README.md)")
    add.add_argument("repo_id", metavar="OWNER/NAME", help="the Hub id to load it as, e.g. me/resnet20_cifar.cts")
    add.add_argument("--revision", default=None,
                     help="branch or tag to file it under, loaded as hf-hub:OWNER/NAME@REVISION "
                          "(default: the default branch, main)")
    add.add_argument("--force", action="store_true",
                     help="point the revision at this init even if it names another one in the cache")
    parser.set_defaults(func=run, action="ls")


def run(args: argparse.Namespace) -> int:
    if args.action == "add":  # before the data imports below: adding an init needs no `datasets`
        return run_add(args)
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


def run_add(args: argparse.Namespace) -> int:
    from lsml_hub._hub_client import hf_hub_init
    from lsml_hub.hub.hf_cache import DEFAULT_REVISION, add_to_hub_cache, hub_cache_dir

    revision = args.revision or DEFAULT_REVISION
    snapshot = add_to_hub_cache(args.init_dir, args.repo_id, revision=revision, overwrite=args.force)
    init = hf_hub_init(args.repo_id, None if revision == DEFAULT_REVISION else revision)
    print(f"added {args.init_dir} to the Hugging Face cache ({hub_cache_dir()}) as {init} ({snapshot})")
    print(f"load it with HF_HUB_OFFLINE=1 (no Hub needed): lsml_hub.create_model({init!r}, num_classes=...), "
          f"`lsml-hub finetune --init {init} ...`")
    return 0


def _count(entries: list) -> str:
    return f"{len(entries)} {'entry' if len(entries) == 1 else 'entries'}"


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")
