"""What ``compare`` writes: ``comparison.csv``, ``comparison.json`` and ``curves.png`` (learning curves).

The figure is drawn on a ``matplotlib.figure.Figure`` with the Agg canvas rather than through
``pyplot``, so plotting neither needs a display nor changes the backend of the caller's session;
matplotlib is imported only when a plot is drawn.
"""

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


FIGSIZE = (6.4, 4.0)
DPI = 100  # 640 x 400 pixels
BAND_ALPHA = 0.2


def plot_curves(comparison: Comparison, path: str | os.PathLike) -> Path:
    """Plot mean eval accuracy (%) against step for every row, with a shaded ± std band over seeds.

    Example:
        ``cmp``, made by :func:`lsml_hub.compare`, holds a toy init and the scratch baseline:

        >>> plot_curves(cmp, "runs/compare_digits/curves.png")
        PosixPath('runs/compare_digits/curves.png')
        >>> from PIL import Image
        >>> Image.open("runs/compare_digits/curves.png").size  # FIGSIZE at DPI
        (640, 400)
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for row in comparison.rows:
        curve = row.curve()
        mean = [100 * m for m in curve.mean]
        lo = [100 * (m - s) for m, s in zip(curve.mean, curve.std)]
        hi = [100 * (m + s) for m, s in zip(curve.mean, curve.std)]
        (line,) = ax.plot(curve.steps, mean, marker="o", markersize=3, label=row.name)
        ax.fill_between(curve.steps, lo, hi, color=line.get_color(), alpha=BAND_ALPHA, linewidth=0)
    target = comparison.target
    ax.set_title(f"{target['name']}: {target['train_samples']} train samples, {len(comparison.seeds)} seed(s)")
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel("eval accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")
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
        ``cmp``, made by :func:`lsml_hub.compare`, holds a toy init and the scratch baseline:

        >>> write_report(cmp, "runs/compare_digits")["csv"]
        'runs/compare_digits/comparison.csv'
        >>> sorted(os.listdir("runs/compare_digits"))
        ['comparison.csv', 'comparison.json', 'curves.png']
    """
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
