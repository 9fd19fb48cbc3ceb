"""``lsml-hub list | info | publish | push``: the init hub from the command line."""

from __future__ import annotations

import argparse
from typing import Any

from lsml_hub.errors import InitError

_PUSH_EPILOG = ("The token comes from HF_TOKEN or `hf auth login`; there is deliberately no --token flag, "
                "so it never lands in shell history.")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the hub sub-commands to the ``lsml-hub`` parser."""
    p = subparsers.add_parser(
        "list", help="list the registry of known inits",
        description="List the registry of known inits: name, algorithm, input size, source tasks and Hub id.",
    )
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter on names (default: all)")
    p.set_defaults(func=run_list)

    p = subparsers.add_parser(
        "info", help="summarize an init (registry name, hf-hub:, local-dir: or folder)",
        description="Summarize an init: its registry entry, if any, and its config.json; a local folder is "
                    "checked as loading checks it (sha256 of the weights, every tensor's name and shape).",
    )
    p.add_argument("init", metavar="NAME|PATH",
                   help="a registry name (see `lsml-hub list`), hf-hub:owner/name[@rev], local-dir:PATH or a folder")
    p.set_defaults(func=run_info)

    p = subparsers.add_parser(
        "publish", help="turn a run folder into an init folder with a full model card",
        description="Copy a finished meta-training run's init, verified, to a folder ready to push, with a model "
                    "card that adds the run's eval curve, final per-task metrics and hyper-parameters.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR",
                   help="a finished run: meta-train's output_dir, holding config.yaml, metrics.jsonl and init/")
    p.add_argument("out_dir", metavar="OUT_DIR", nargs="?", help="where to write the init (default: RUN_DIR/publish)")
    p.add_argument("--repo-id", help="Hub id the init will be pushed to, named in the card's usage")
    p.set_defaults(func=run_publish)

    p = subparsers.add_parser("push", help="upload an init folder to the Hugging Face Hub", epilog=_PUSH_EPILOG,
                              description="Verify an init folder, then upload its three files to a Hub repo "
                                          "(created if missing).")
    p.add_argument("init_dir", metavar="INIT_DIR", help="an init folder, e.g. the output of `lsml-hub publish`")
    p.add_argument("repo_id", metavar="REPO_ID", help="the Hub repo to push to, as owner/name")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.add_argument("--revision", help="branch to commit to (created if missing)")
    p.add_argument("--tag", help="tag to create on the new commit, e.g. v1")
    p.add_argument("--commit-message", metavar="TEXT",
                   help="default: 'Upload ARCH init (ALGORITHM) with lsml-hub VERSION'")
    p.set_defaults(func=run_push)


def run_list(args: argparse.Namespace) -> int:
    from lsml_hub.hub import list_inits

    entries = list_inits(args.pattern)
    rows = [("NAME", "ALGORITHM", "INPUT", "SOURCE TASKS", "HUB ID")]
    for e in entries:
        rev = f"@{e.revision}" if e.revision else ""
        rows.append((e.name, e.algorithm, "x".join(map(str, e.input_size)), str(len(e.source_tasks)),
                     f"{e.hf_hub_id}{rev}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    print(f"{len(entries)} inits; none is on the Hub yet (they name the intended Hub ids)")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from lsml_hub.hub import create_model, load_init_config, verify_init
    from lsml_hub.hub.registry import get_init, is_registered
    from lsml_hub.hub.resolve import LOCAL_DIR, parse_init

    if is_registered(args.init):
        _print_entry(get_init(args.init))
    ref = parse_init(args.init)
    try:
        if ref.kind == LOCAL_DIR:
            config = verify_init(ref.location)
            create_model(f"local-dir:{ref.location}")  # the strict key and shape check loading does
            checked = f"verified: the weights match it and load strictly as {config.architecture}"
        else:
            config, checked = load_init_config(args.init), "recorded"
    except InitError as err:
        if not is_registered(args.init):
            raise
        print(f"config: not available here ({err})")
        return 0
    config.source = config.source or str(ref)
    _print_config(config, checked)
    return 0


def run_publish(args: argparse.Namespace) -> int:
    from lsml_hub.hub import publish_run
    from lsml_hub.hub.config import read_config

    out = publish_run(args.run_dir, args.out_dir, repo_id=args.repo_id)
    config = read_config(out)  # publish_run verified the files before they replaced anything
    print(f"published {config.architecture} init ({config.algorithm_name}) to {out}")
    print(f"next: lsml-hub push {out} {args.repo_id or 'OWNER/NAME'}")
    return 0


def run_push(args: argparse.Namespace) -> int:
    from lsml_hub.hub import push_to_hub

    result = push_to_hub(args.init_dir, args.repo_id, private=args.private, revision=args.revision,
                         tag=args.tag, commit_message=args.commit_message)
    print(f"pushed to {result.commit_url}")
    print(f"load it with: lsml_hub.create_model({result.init!r}, num_classes=...)")
    return 0


def _print_entry(entry: Any) -> None:
    _print_fields({
        "name": entry.name,
        "init": entry.init,
        "revision": entry.revision or "(default branch; not pinned yet)",
        "architecture": entry.architecture,
        "algorithm": entry.algorithm,
        "source tasks": entry.source_tasks,
        "input size": "x".join(map(str, entry.input_size)),
        "metrics": ", ".join(f"{k}={v}" for k, v in entry.metrics.items()) or "not measured yet",
        "license": entry.license,
        "description": entry.description,
    })


def _print_config(config: Any, checked: str) -> None:
    cfg = config.pretrained_cfg
    tasks = ", ".join(str(t.get("name")) for t in config.source_tasks) or "-"
    _print_fields({
        "source": config.source,
        "path": config.path,
        "architecture": config.architecture,
        "algorithm": ", ".join(f"{k}={v}" for k, v in config.algorithm.items()) or "-",
        "source tasks": tasks,
        "steps": config.lsml.get("steps", "-"),
        "seed": config.lsml.get("seed", "-"),
        "input": f"size {cfg.get('input_size')}, mean {cfg.get('mean')}, std {cfg.get('std')}",
        "license": config.license,
        "final metrics": _metrics_line(config.lsml.get("final_metrics")),
        "sha256": f"{config.sha256} ({checked})",
        "lsml-hub version": config.package_version,
    })


def _metrics_line(final: Any) -> str:
    if not isinstance(final, dict) or not final:
        return "-"
    parts = []
    for task, metrics in final.items():
        values = metrics.items() if isinstance(metrics, dict) else [("value", metrics)]
        parts.append(f"{task} " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values))
    return "; ".join(parts)


def _print_fields(fields: dict[str, Any]) -> None:
    width = max(len(k) for k in fields)
    for key, value in fields.items():
        if isinstance(value, (tuple, list)):
            value = ", ".join(map(str, value)) or "-"
        print(f"{key.replace('_', ' ').ljust(width)}  {value}")
