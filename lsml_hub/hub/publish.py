"""Turn a run folder into a ready-to-push init folder with a full model card.

A run folder holds ``init/`` (written by :func:`save_init`), ``metrics.jsonl`` (one JSON object per
line; eval lines look like ``{"step": 200, "kind": "eval", "task": "latin_upper", "accuracy": 0.61}``)
and ``config.yaml`` (the resolved run config).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from lsml_hub import run_layout
from lsml_hub._checks import is_int, is_number
from lsml_hub._io import atomic_dir, atomic_write_json
from lsml_hub.errors import LsmlHubError
from lsml_hub.hub.card import TrainingReport, build_model_card
from lsml_hub.hub.config import CARD_FILE, CONFIG_FILE, INIT_FILES, WEIGHTS_FILE, read_config
from lsml_hub.hub.format import foreign_init, verify_init
from lsml_hub.output_folder import OutputFolder
from lsml_hub.run_layout import CHECKPOINT_FILE, INIT_SUBDIR, METRICS_FILE, PUBLISH_SUBDIR, RUN_CONFIG_FILE

logger = logging.getLogger(__name__)

#: The folder publish writes: new, empty, or an earlier publish of the same init (same weights' sha256).
PUBLISH_FOLDER = OutputFolder("publish", INIT_FILES, marker=CONFIG_FILE)

CURVE_ROWS = 11  # eval steps shown in the card's curve table (first and last always included)


class PublishError(LsmlHubError, ValueError):
    """A run folder cannot be published: not a run folder, not finished, or a malformed file in it."""


def publish_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, *,
                repo_id: str | None = None) -> Path:
    """Write ``run_dir``'s init with a full model card to ``out_dir`` (default ``run_dir/publish``).

    The card adds the eval curve, final per-task metrics and the run's hyper-parameters. The
    copied weights are verified against their sha256 before the folder replaces anything.

    Args:
        run_dir: A run folder (``init/``, ``metrics.jsonl``, ``config.yaml``).
        out_dir: Where to write: a new or empty folder, or an earlier publish of the same init (its card
            is refreshed); never the run folder, its ``init/``, another init or a folder of other files.
            The default ``run_dir/publish`` is the run's own: a publish from before the run was continued
            is replaced.
        repo_id: Hub id the init will be pushed to, named in the card's usage snippets.

    Returns:
        The published folder.

    Raises:
        PublishError: ``run_dir`` is not a run folder (no ``config.yaml``), the run has not finished (no
            ``init/`` yet), ``metrics.jsonl`` or ``config.yaml`` is missing or malformed, or ``out_dir`` is unsafe.
        InitError: ``run_dir/init`` is incomplete or fails its sha256 check.

    Example:
        >>> import json, timm, yaml, lsml_hub
        >>> run = Path("runs/demo")  # what `lsml-hub meta-train` writes, made by hand here
        >>> _ = lsml_hub.save_init(run / "init", timm.create_model("test_resnet"), lsml={"algorithm": {"name": "cts"}})
        >>> _ = (run / "config.yaml").write_text(yaml.safe_dump({"algorithm": "cts", "steps": 200}))
        >>> _ = (run / "metrics.jsonl").write_text(json.dumps({"step": 200, "kind": "eval", "task": "digits",
        ...                                                    "accuracy": 0.9}))
        >>> folder = publish_run(run, repo_id="me/test_resnet.cts_demo")
        >>> folder, sorted(p.name for p in folder.iterdir())
        (PosixPath('runs/demo/publish'), ['README.md', 'config.json', 'model.safetensors'])
    """
    run_dir = Path(run_dir)
    init_dir = run_dir / INIT_SUBDIR
    out = Path(out_dir) if out_dir is not None else run_dir / PUBLISH_SUBDIR
    check_run_dir(run_dir)
    config = verify_init(init_dir)
    _check_out_dir(out, run_dir, init_dir, config.sha256)
    report = read_training_report(run_dir)
    with atomic_dir(out) as tmp:
        shutil.copyfile(init_dir / WEIGHTS_FILE, tmp / WEIGHTS_FILE)
        atomic_write_json(tmp / CONFIG_FILE, config.to_dict())
        build_model_card(config, repo_id=repo_id, report=report).save(tmp / CARD_FILE)
        verify_init(tmp)  # what gets pushed is the copy: check it before it replaces anything
    logger.info("published %s's %s init (%s) to %s", run_dir, config.architecture, config.algorithm_name, out)
    return out


def check_run_dir(run_dir: Path) -> None:
    """Refuse a folder that is not a meta-training run, or a run that has not written its init yet.

    Example:
        >>> try:
        ...     check_run_dir(Path("no/such/run"))
        ... except PublishError as err:
        ...     print(str(err).split(";")[0])
        no/such/run does not exist
    """
    layout = f"meta-train's output_dir, which holds {RUN_CONFIG_FILE}, {METRICS_FILE} and {INIT_SUBDIR}/"
    if not run_dir.is_dir():
        raise PublishError(f"{run_dir} does not exist; give a run folder ({layout})")
    if not (run_dir / RUN_CONFIG_FILE).is_file():
        raise PublishError(f"{run_dir} is not a run folder (no {RUN_CONFIG_FILE}); give {layout}")
    if not (run_dir / INIT_SUBDIR).exists():
        # meta-train writes init/ only after its last step; the run's own config.yaml resumes it.
        resume = " from its checkpoint" if (run_dir / CHECKPOINT_FILE).is_file() else ""
        raise PublishError(f"run not finished: {run_dir} has no {INIT_SUBDIR}/ yet; rerun "
                           f"`lsml-hub meta-train {run_dir / RUN_CONFIG_FILE}` to resume it{resume}, then publish")


def read_training_report(run_dir: Path) -> TrainingReport:
    """Summarize ``metrics.jsonl`` and ``config.yaml`` of a run for its model card."""
    evals = [r for r in read_metrics(run_dir / METRICS_FILE) if _is_eval(r)]
    return TrainingReport(
        curve=_thin(_curve(evals), CURVE_ROWS),
        final_metrics=_final_metrics(evals),
        run_config=_read_run_config(run_dir / RUN_CONFIG_FILE),
    )


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a run's ``metrics.jsonl`` (a torn last line is skipped), or a PublishError."""
    try:
        return run_layout.read_metrics(path)
    except FileNotFoundError:
        raise PublishError(f"{path} is missing: a run folder holds {INIT_SUBDIR}/, {METRICS_FILE} "
                           f"and {RUN_CONFIG_FILE}") from None
    except ValueError as err:
        raise PublishError(str(err)) from None


def _read_run_config(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PublishError(f"{path} is missing: a run folder holds {INIT_SUBDIR}/, {METRICS_FILE} "
                           f"and {RUN_CONFIG_FILE}") from None
    except yaml.YAMLError as err:
        raise PublishError(f"{path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise PublishError(f"{path} holds a {type(data).__name__}, not a mapping of run settings")
    return data


def _is_eval(record: dict[str, Any]) -> bool:
    step = record.get("step")
    return (record.get("kind") == "eval" and isinstance(record.get("task"), str)
            and is_int(step))


def _numbers(record: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in record.items()
            if k != "step" and is_number(v)}


def _curve(evals: list[dict[str, Any]]) -> list[tuple[int, dict[str, float]]]:
    by_step: dict[int, dict[str, float]] = {}
    for r in evals:
        if isinstance(r.get("accuracy"), (int, float)):
            by_step.setdefault(r["step"], {})[r["task"]] = r["accuracy"]
    return sorted(by_step.items())


def _thin(rows: list[Any], n: int) -> list[Any]:
    if len(rows) <= n:
        return rows
    picks = sorted({round(i * (len(rows) - 1) / (n - 1)) for i in range(n)})
    return [rows[i] for i in picks]


def _final_metrics(evals: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    final: dict[str, tuple[int, dict[str, float]]] = {}
    for r in evals:
        task, step = r["task"], r["step"]
        if task not in final or step >= final[task][0]:
            final[task] = (step, _numbers(r))
    return {task: metrics for task, (_, metrics) in final.items()}


def _check_out_dir(out: Path, run_dir: Path, init_dir: Path, sha256: str) -> None:
    resolved = out.resolve()
    if resolved in (run_dir.resolve(), init_dir.resolve()) or init_dir.resolve() in resolved.parents:
        raise PublishError(f"output folder {out} would replace the run or its init; "
                           f"use {run_dir / PUBLISH_SUBDIR} or another folder")

    def same_init(folder: Path) -> str | None:
        # Publishing the same init again refreshes its card; another init's folder is never replaced.
        problem = foreign_init(folder)
        if problem is not None:
            return problem
        other = read_config(folder).sha256
        if other == sha256:
            return None
        if resolved == (run_dir / PUBLISH_SUBDIR).resolve():
            # The run's own publish folder, from before the run was continued to more steps: it is stale.
            logger.info("replacing %s, published from this run before it was continued (sha256 %s...)",
                        folder, other[:12])
            return None
        return (f"holds another init (sha256 {other[:12]}..., this run's is {sha256[:12]}...); "
                "choose a new or empty folder")

    PUBLISH_FOLDER.check(out, belongs=same_init)
