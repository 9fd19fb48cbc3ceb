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
        "list", help="list the inits that load here (in the Hugging Face cache, on the Hub)",
        description="List the inits that can be loaded here, each with the init string that loads it and where "
                    "it comes from: the Hugging Face cache (HF_HUB_CACHE; `lsml-hub cache add` puts one there) "
                    "or the Hub, tagged lsml-hub (skipped with HF_HUB_OFFLINE=1 or --no-hub). In Python, "
                    "lsml_hub.list_inits() also lists inits registered in the process with lsml_hub.register_init.",
    )
    p.add_argument("pattern", nargs="?", default="*",
                   help="shell-style filter on init strings and Hub ids, e.g. '*cts*' (default: all)")
    p.add_argument("--no-hub", action="store_true", help="list local inits only: do not ask the Hub")
    p.set_defaults(func=run_list)

    p = subparsers.add_parser(
        "info", help="summarize an init (any init string: hf-hub:, local-dir:, folder, name, scratch:, timm:)",
        description="Summarize an init: its registry entry, if any, and its config.json; a local folder is "
                    "checked as loading checks it (sha256 of the weights, every tensor's name and shape). "
                    "scratch:ARCH and timm:ARCH[.TAG] show the timm architecture and where its weights are.",
    )
    p.add_argument("init", metavar="INIT",
                   help="hf-hub:owner/name[@rev] (as `lsml-hub list` shows them), local-dir:PATH, a folder, "
                        "scratch:ARCH or timm:ARCH[.TAG]")
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
    from lsml_hub.hub.registry import hub_searched, list_inits

    hub = False if args.no_hub else None
    available = list_inits(hub=hub)
    entries = [e for e in available if e.matches(args.pattern)]
    if not entries:
        print(_nothing_listed(args.pattern, len(available), hub_searched(hub)))
        return 0
    rows = [("INIT", "FROM", "ARCHITECTURE", "ALGORITHM", "INPUT", "SOURCE TASKS")]
    rows += [(e.init, ",".join(e.origins), e.architecture or "-", e.algorithm or "-",
              "x".join(map(str, e.input_size)) if e.input_size else "-", str(len(e.source_tasks) or "-"))
             for e in entries]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    searched = "" if hub_searched(hub) else " (the Hub was not searched)"
    print(f"{len(entries)} init{'s' if len(entries) != 1 else ''}{searched}; load one with "
          "lsml_hub.create_model(INIT, num_classes=...), or see it with `lsml-hub info INIT`")
    return 0


def _nothing_listed(pattern: str, available: int, hub: bool) -> str:
    from lsml_hub.hub.hf_cache import hub_cache_dir

    if available:
        return f"no init matches {pattern!r}; `lsml-hub list` shows all {available}"
    where = "on the Hub" if hub else "on the Hub (not searched: HF_HUB_OFFLINE or --no-hub)"
    return (f"no init available: none in the Hugging Face cache ({hub_cache_dir()}), none {where}; "
            "add one with `lsml-hub cache add INIT_FOLDER OWNER/NAME` (an init folder, such as the init/ "
            "that `lsml-hub meta-train` writes)")


def run_info(args: argparse.Namespace) -> int:
    from lsml_hub.hub import create_model, load_init_config, verify_init
    from lsml_hub.hub.registry import get_init
    from lsml_hub.hub.resolve import LOCAL_DIR, SCRATCH, TIMM, parse_init

    ref = parse_init(args.init)
    if ref.kind == SCRATCH:
        _print_scratch(ref)
        return 0
    if ref.kind == TIMM:
        _print_timm(ref)
        return 0
    if ref.name:
        _print_entry(get_init(ref.name))
    try:
        if ref.kind == LOCAL_DIR:
            config = verify_init(ref.location)
            create_model(ref)  # the strict key and shape check loading does
            checked = f"verified: the weights match it and load strictly as {config.architecture}"
        else:
            config, checked = load_init_config(ref), "recorded"
    except InitError as err:
        if not ref.name:
            raise
        print(f"config: not available here ({err})")
        return 0
    config.source = config.source or str(ref)
    _print_config(config, checked)
    return 0


def run_publish(args: argparse.Namespace) -> int:
    from lsml_hub.hub import publish_run

    out = publish_run(args.run_dir, args.out_dir, repo_id=args.repo_id)  # logs what it published, and where
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


def _print_scratch(ref: Any) -> None:
    cfg, params = _timm_model_facts(ref.location)
    _print_fields({
        "init": str(ref),
        "weights": "random (timm's initialisation, drawn when the model is built): nothing to fetch or verify",
        "architecture": ref.architecture,
        "parameters": f"{params:,} (headless)",
        "input": f"size {cfg.get('input_size')}, mean {cfg.get('mean')}, std {cfg.get('std')} (timm's default; "
                 "finetune and compare feed the target's size)",
    })


def _print_timm(ref: Any) -> None:
    from lsml_hub.hub.pretrained import PRETRAINED_FILE, find_cached_pretrained, pretrained_source

    source = pretrained_source(ref.location)
    cached = find_cached_pretrained(ref.location)
    fetch = f"`hf download {source.hf_hub_id} {PRETRAINED_FILE}`"
    cfg, params = _timm_model_facts(ref.location)
    _print_fields({
        "init": str(ref),
        "weights": f"timm's pretrained {ref.location} ({PRETRAINED_FILE} of {source.hf_hub_id})",
        "cached": str(cached.path) if cached else f"no: not in the Hugging Face cache, and never downloaded "
                                                  f"here; pre-fetch with {fetch}",
        "architecture": ref.architecture,
        "parameters": f"{params:,} (headless)",
        "input": f"size {cfg.get('input_size')}, mean {cfg.get('mean')}, std {cfg.get('std')}",
        "license": cfg.get("license") or "-",
    })


def _timm_model_facts(name: str) -> tuple[dict[str, Any], int]:
    """The ``pretrained_cfg`` and parameter count of timm's headless ``name``, built without memory (meta)."""
    import timm
    import torch

    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, num_classes=0)
    return model.pretrained_cfg, sum(p.numel() for p in model.parameters())


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
        "meta-test": _meta_test_line(config.lsml.get("meta_test")),
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


def _meta_test_line(meta_test: Any) -> str:
    """What `compare --record` wrote: per target and size, the final accuracy and scratch's."""
    if not isinstance(meta_test, dict) or not meta_test:
        return "-"
    from lsml_hub.metatest.record import meta_test_summary

    return "; ".join(meta_test_summary(key, entry) or f"{key} (recorded by another tool; see config.json)"
                     for key, entry in meta_test.items())


def _print_fields(fields: dict[str, Any]) -> None:
    width = max(len(k) for k in fields)
    for key, value in fields.items():
        if isinstance(value, (tuple, list)):
            value = ", ".join(map(str, value)) or "-"
        print(f"{key.replace('_', ' ').ljust(width)}  {value}")
