"""Fine-tune an init on a target task, top to bottom: the seed's ``train_tgt.py`` as a recipe.

    python recipes/finetune.py recipes/configs/finetune_digits.yaml [key=value ...]
    python recipes/finetune.py recipes/configs/finetune_digits.yaml init=runs/demo/inits/cts finetune.steps=300

Overrides use dotted keys (``finetune.lr=3e-4``) and YAML values. This is the same code as
``lsml-hub finetune``: read the config, load the target, build the model from the init, run the
loop, write ``result.json`` and the fine-tuned ``model.safetensors``. ``output_dir`` must be new,
empty, or an earlier output of this recipe: those two files, result.json among them (checked before
training). Copy it and change what you need;
the library never imports recipes.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import yaml

from lsml_hub.errors import ConfigError, LsmlHubError
from lsml_hub.metatest import FinetuneConfig
from lsml_hub.metatest.finetuning import run_finetune
from lsml_hub.metatest.result import FINETUNE_OUTPUT
from lsml_hub.metatest.target import Target
from lsml_hub.training.config import apply_overrides

KEYS = ("init", "target", "output_dir", "finetune")
log = logging.getLogger("finetune")


def read_config(path: str, overrides: list[str]) -> dict[str, Any]:
    """The YAML at ``path`` with ``key=value`` overrides applied; unknown or missing keys are errors.

    Numbers such as ``lr: 1e-3`` (which YAML 1.1 reads as a string) become floats in ``FinetuneConfig``.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {path!r} does not exist")
    try:
        loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(err)}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a UTF-8 text file ({err.reason} at byte {err.start})") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping with keys {', '.join(KEYS)}, "
                          f"got {type(loaded).__name__} {loaded!r}")
    values = apply_overrides(loaded or {}, overrides)
    unknown = sorted(set(values) - set(KEYS))
    missing = [key for key in ("init", "target") if not values.get(key)]
    problems = [f"unknown keys {unknown}" if unknown else "", f"missing keys {missing}" if missing else ""]
    if unknown or missing:
        raise ConfigError(f"{path}: {', '.join(p for p in problems if p)}; valid keys: {', '.join(KEYS)}")
    return values


def _yaml_problem(err: yaml.YAMLError) -> str:
    # One line: PyYAML's message spreads the problem and its position over several lines.
    problem = getattr(err, "problem", None) or str(err).strip().splitlines()[0]
    mark = getattr(err, "problem_mark", None)
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark else problem


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    # 1. config: the YAML plus overrides; FinetuneConfig checks every fine-tuning option
    values = read_config(argv[0], argv[1:])
    config = FinetuneConfig.from_dict(values.get("finetune") or {})
    if values.get("output_dir"):
        FINETUNE_OUTPUT.check(values["output_dir"])  # a file or someone else's folder is refused now, not at the end
    log.info("fine-tuning %s on %s: %s", values["init"], values["target"], config.to_dict())

    # 2. data: the target task (resized to the init's input size once the model is known)
    target = Target(values["target"])
    log.info("target: %s", target.task.summary())

    # 3. model + 4. loop: a fresh head for the target's classes, then steps with evals along the way
    result = run_finetune(values["init"], target, config)
    for point in result.history:
        log.info("step %5d  train loss %.4f  eval loss %.4f  eval accuracy %.4f", point.step, point.train_loss,
                 point.eval_loss, point.eval_accuracy)

    # 5. outputs: result.json (settings, curve, final and best) and the fine-tuned weights
    log.info("final accuracy %.4f, best %.4f at step %d", result.final.accuracy, result.best.accuracy,
             result.best.step)
    if values.get("output_dir"):
        log.info("wrote %s", result.save(values["output_dir"]))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except LsmlHubError as err:
        print(f"finetune.py: error: {err}", file=sys.stderr)
        sys.exit(2)
