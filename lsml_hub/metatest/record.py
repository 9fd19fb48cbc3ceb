"""Record a comparison's results in the local init folders it compared (``config.json`` and model card).

The results go under ``"lsml"`` -> ``"meta_test"`` -> ``"<target>_n<train samples>"``, so runs on other
targets or data sizes add entries instead of replacing them. Only ``config.json`` and ``README.md``
change: ``model.safetensors`` and the sha256 recorded for it stay as they are, so the folder still
verifies. Both files are rewritten atomically.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from lsml_hub._io import atomic_write, atomic_write_json
from lsml_hub.errors import InitError, LsmlHubError
from lsml_hub.hub.config import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE
from lsml_hub.hub.resolve import LOCAL_DIR, parse_init
from lsml_hub.metatest.comparison import INIT, Comparison, ComparisonRow
from lsml_hub.version import __version__

logger = logging.getLogger(__name__)

META_TEST = "meta_test"
# The card section is fenced by these markers so that a later record replaces it in place.
CARD_BEGIN = "<!-- lsml-hub:meta-test:begin -->"
CARD_END = "<!-- lsml-hub:meta-test:end -->"
_CARD_SECTION = re.compile(re.escape(CARD_BEGIN) + r".*?" + re.escape(CARD_END) + r"\n?", re.DOTALL)


def local_init_folder(source: str) -> Path | None:
    """The folder of a local init (``local-dir:PATH`` or a folder path), else None.

    Hub, registered, ``scratch:`` and ``timm:`` inits give None, and so does a model passed in memory
    (its source is an architecture name).

    Example:
        >>> local_init_folder("scratch:resnet20_cifar") is None
        True
    """
    try:
        ref = parse_init(source)
    except LsmlHubError:  # a model passed in memory: its source is an architecture name, not an init
        return None
    if ref.kind != LOCAL_DIR:
        return None
    path = Path(ref.location).expanduser()
    return path if (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file() else None


def check_recordable(sources: list[str]) -> None:
    """Before any run: raise :class:`ConfigError` unless every local init among ``sources`` can be recorded in.

    The folders must be lsml-hub inits (the folder rule's marker) and writable.
    """
    from lsml_hub.hub.format import INIT_FOLDER, foreign_init
    from lsml_hub.output_folder import FolderNotWritableError

    for source in sources:
        folder = local_init_folder(source)
        if folder is not None:
            try:
                INIT_FOLDER.check(folder, belongs=foreign_init)
            except FolderNotWritableError as err:
                raise FolderNotWritableError(f"cannot record the results into init {folder}: {err}; compare "
                                             "without record (--record), or copy the init somewhere writable") from None


def record_meta_test(comparison: Comparison) -> list[Path]:
    """Write each local init row's results into its folder; other rows are skipped with an info log.

    Returns:
        The init folders written.

    Example:
        >>> import timm, lsml_hub
        >>> folder = lsml_hub.save_init("runs/demo/init", timm.create_model("test_resnet"),
        ...                             lsml={"algorithm": {"name": "cts"}}, pretrained_cfg={"input_size": (3, 32, 32)})
        >>> comparison = lsml_hub.compare([folder], "builtin:digits?classes=0-1", baselines=(), steps=1,
        ...                               max_train_samples=4, progress=False)  # a tiny fine-tuning run
        >>> record_meta_test(comparison)
        [PosixPath('runs/demo/init')]
        >>> list(lsml_hub.load_init_config(folder).lsml["meta_test"])
        ['digits_0-1_n4']
    """
    written = []
    for row in comparison.rows:
        if row.kind != INIT:
            continue
        folder = local_init_folder(row.source)
        if folder is None:
            logger.info("not recording %s: only local init folders are written to", row.source)
            continue
        key = meta_test_key(comparison)
        entry = meta_test_entry(comparison, row)
        lsml = _update_config(folder, key, entry)
        _update_card(folder, lsml.get(META_TEST, {}))
        logger.info("recorded meta-test %s of %s in %s", key, row.name, folder / CONFIG_FILE)
        written.append(folder)
    return written


def meta_test_key(comparison: Comparison) -> str:
    """``"<target>_n<train samples>"``, e.g. ``"digits_n100"``."""
    return f"{comparison.target['name']}_n{comparison.target['train_samples']}"


def meta_test_entry(comparison: Comparison, row: ComparisonRow) -> dict[str, Any]:
    """The results of ``row`` with the setting they were measured in and the baselines beside it."""
    final, best = row.final, row.best
    delta = comparison.delta(row.name)
    target = comparison.target
    return {
        "target": {k: target.get(k) for k in ("name", "source", "revision", "classes", "num_classes")},
        "train_samples": target["train_samples"],
        "image_size": row.inputs.image_size if row.inputs else None,
        "finetune": {k: v for k, v in comparison.config.items() if k != "device"},
        "seeds": comparison.seeds,
        "final_accuracy": {"mean": final[0], "std": final[1], "per_seed": row.final_accuracies},
        "best_accuracy": {"mean": best[0], "std": best[1], "per_seed": row.best_accuracies},
        "baselines": {
            other.name: {"final_accuracy_mean": other.final[0], "final_accuracy_std": other.final[1]}
            for other in comparison.rows if other.kind != INIT
        },
        "delta_vs_scratch": {"mean": delta[0], "std": delta[1]} if delta else None,
        "package_version": __version__,
    }


def _update_config(folder: Path, key: str, entry: dict[str, Any]) -> dict[str, Any]:
    # Edited as raw JSON so every other key, known or not, is written back exactly as read.
    path = folder / CONFIG_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InitError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}); nothing recorded") from None
    lsml = data.get("lsml") if isinstance(data, dict) else None
    if not isinstance(lsml, dict):
        raise InitError(f"{path} has no 'lsml' object; is {folder} an lsml-hub init?")
    meta_test = lsml.get(META_TEST)
    lsml[META_TEST] = {**(meta_test if isinstance(meta_test, dict) else {}), key: entry}
    atomic_write_json(path, data)
    return lsml


def card_section(meta_test: dict[str, Any]) -> str:
    """The card's "Meta-test results" section: one table row per recorded target and data size."""
    lines = [
        CARD_BEGIN,
        "## Meta-test results",
        "",
        "Fine-tuned with `lsml-hub compare`; accuracy on the target's eval split, mean ± std over seeds.",
        "",
        "| target | train samples | steps | seeds | final accuracy (%) | best accuracy (%) | scratch final (%) |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [row for row in map(_card_row, meta_test.values()) if row]
    return "\n".join([*lines, CARD_END]) + "\n"


def _card_row(entry: Any) -> str | None:
    # Entries written by other tools may have another shape; they stay in config.json, off the table.
    try:
        scratch = entry.get("baselines", {}).get("scratch")
        scratch_text = _pct(scratch["final_accuracy_mean"], scratch["final_accuracy_std"]) if scratch else "-"
        return (f"| {entry['target']['name']} | {entry['train_samples']} | {entry['finetune']['steps']} | "
                f"{len(entry['seeds'])} | {_stat(entry['final_accuracy'])} | {_stat(entry['best_accuracy'])} | "
                f"{scratch_text} |")
    except (AttributeError, KeyError, TypeError):
        return None


def meta_test_summary(key: str, entry: Any) -> str | None:
    """One recorded entry in a line, as ``lsml-hub info`` shows it; None for an entry of another shape.

    Example:
        >>> meta_test_summary("digits_n100", {"final_accuracy": {"mean": 0.97, "std": 0.01},
        ...                                   "baselines": {"scratch": {"final_accuracy_mean": 0.92}}})
        'digits_n100 final 97.00 ± 1.00%, scratch 92.00%'
    """
    try:
        final = _stat(entry["final_accuracy"])
        scratch = (entry.get("baselines") or {}).get("scratch") or {}
    except (AttributeError, KeyError, TypeError):  # written by another tool: shown as such, never guessed
        return None
    known = isinstance(scratch, dict) and isinstance(scratch.get("final_accuracy_mean"), (int, float))
    versus = f", scratch {100 * scratch['final_accuracy_mean']:.2f}%" if known else ""
    return f"{key} final {final}%{versus}"


def _stat(stat: dict[str, Any]) -> str:
    return _pct(stat["mean"], stat["std"])


def _pct(mean: float, std: float) -> str:
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def _update_card(folder: Path, meta_test: dict[str, Any]) -> None:
    path = folder / CARD_FILE
    if not path.is_file():
        logger.warning("%s has no %s; meta-test results recorded in %s only", folder, CARD_FILE, CONFIG_FILE)
        return
    text = path.read_text(encoding="utf-8")
    section = card_section(meta_test)
    if _CARD_SECTION.search(text):
        text = _CARD_SECTION.sub(lambda _: section, text, count=1)
    elif "\n## Citation" in text:
        head, _, tail = text.partition("\n## Citation")
        text = f"{head}\n{section}\n## Citation{tail}"
    else:
        text = f"{text.rstrip()}\n\n{section}"
    with atomic_write(path, "w") as f:
        f.write(text)

