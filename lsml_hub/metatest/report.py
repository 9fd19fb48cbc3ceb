"""A comparison as a text table, ``comparison.csv``, ``comparison.json`` and ``curves.png``."""

from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path

from lsml_hub._io import atomic_write, atomic_write_json
from lsml_hub.metatest.comparison import Comparison, ComparisonRow
from lsml_hub.output_folder import OutputFolder

logger = logging.getLogger(__name__)

CSV_FILE = "comparison.csv"
JSON_FILE = "comparison.json"
PLOT_FILE = "curves.png"
# What compare writes into its output folder; any other file there makes it refuse the folder.
COMPARE_OUTPUT = OutputFolder("compare", (CSV_FILE, JSON_FILE, PLOT_FILE), marker=JSON_FILE)


def _pct(mean_std: tuple[float, float]) -> str:
    return f"{100 * mean_std[0]:.2f} ± {100 * mean_std[1]:.2f}"


def _delta_pp(delta: tuple[float, float] | None) -> str:
    return "-" if delta is None else f"{100 * delta[0]:+.2f} ± {100 * delta[1]:.2f}"


def describe_setting(comparison: Comparison) -> str:
    """One line naming the target and the shared fine-tuning settings."""
    cfg, target = comparison.config, comparison.target
    seeds = ", ".join(str(s) for s in comparison.seeds)
    return (f"target {target['name']} ({target['train_samples']} train / {target['eval_size']} eval samples), "
            f"{cfg['steps']} steps, {cfg['optimizer']} lr {cfg['lr']:g}, {cfg['schedule']} schedule, "
            f"{cfg['mode']} fine-tuning; seeds {seeds}")


def format_table(comparison: Comparison) -> str:
    """An aligned plain-text table: final and best eval accuracy (%, mean ± std over seeds) and the
    paired difference in final accuracy to scratch (percentage points).

    Example:
        >>> print(format_table(cmp))  # doctest: +SKIP
        target digits (50 train / 359 eval samples), 300 steps, adam lr 0.001, step schedule, full ...
        name     kind     final acc (%)   best acc (%)    Δ final vs scratch (pp)
        cts      init     95.32 ± 0.41    96.10 ± 0.20    +3.12 ± 0.50
        scratch  scratch  92.20 ± 0.60    93.00 ± 0.40    -
    """
    header = ["name", "kind", "final acc (%)", "best acc (%)", "Δ final vs scratch (pp)"]
    body = [[row.name, row.kind, _pct(row.final), _pct(row.best), _delta_pp(comparison.delta(row.name))]
            for row in comparison.rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in [header, *body]]
    for name, reason in comparison.skipped.items():
        lines.append(f"(skipped {name}: {reason})")
    return "\n".join([describe_setting(comparison), *lines])


def csv_rows(comparison: Comparison) -> list[dict[str, object]]:
    """One dict per row: means and stds, the paired Δ to scratch, and per-seed accuracies (fractions in [0, 1])."""
    return [_csv_row(comparison, row) for row in comparison.rows]


def _csv_row(comparison: Comparison, row: ComparisonRow) -> dict[str, object]:
    delta = comparison.delta(row.name)
    out: dict[str, object] = {
        "name": row.name, "kind": row.kind, "source": row.source, "seeds": len(row.runs),
        "final_acc_mean": row.final[0], "final_acc_std": row.final[1],
        "best_acc_mean": row.best[0], "best_acc_std": row.best[1],
        "delta_vs_scratch_mean": "" if delta is None else delta[0],
        "delta_vs_scratch_std": "" if delta is None else delta[1],
    }
    for run in row.runs:
        out[f"final_acc_seed{run.seed}"] = run.final.accuracy
    for run in row.runs:
        out[f"best_acc_seed{run.seed}"] = run.best.accuracy
    return out


def write_csv(comparison: Comparison, path: str | os.PathLike) -> Path:
    """Write :func:`csv_rows` to ``path`` atomically."""
    rows = csv_rows(comparison)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(path, "w") as f:
        f.write(buffer.getvalue())
    return Path(path)


def write_report(comparison: Comparison, out_dir: str | os.PathLike) -> dict[str, str]:
    """Write ``comparison.csv``, ``comparison.json`` and ``curves.png`` into ``out_dir``.

    ``out_dir`` may be new, empty, or hold only these three files with ``comparison.json`` among them
    (an earlier run's, replaced).

    Returns:
        The paths written, by kind (``"csv"``, ``"json"``, ``"plot"``); also stored in ``comparison.files``.

    Raises:
        ConfigError: ``out_dir`` is a file or holds other files (nothing is written).

    Example:
        >>> write_report(cmp, "runs/compare_digits")["csv"]  # doctest: +SKIP
        'runs/compare_digits/comparison.csv'
    """
    from lsml_hub.metatest.plot import plot_curves

    out_dir = COMPARE_OUTPUT.check(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"csv": str(out_dir / CSV_FILE), "plot": str(out_dir / PLOT_FILE), "json": str(out_dir / JSON_FILE)}
    comparison.files.update(files)
    # The JSON first: it marks the folder as compare's, so a run killed half-way can be rerun into it.
    atomic_write_json(out_dir / JSON_FILE, {**comparison.to_dict(), "files": comparison.files})
    write_csv(comparison, out_dir / CSV_FILE)
    plot_curves(comparison, out_dir / PLOT_FILE)
    logger.info("wrote %s, %s and %s to %s", CSV_FILE, JSON_FILE, PLOT_FILE, out_dir)
    return files
