"""Learning curves of a comparison as a PNG (matplotlib, imported only here).

The figure is drawn on a ``matplotlib.figure.Figure`` with the Agg canvas rather than through
``pyplot``, so plotting neither needs a display nor changes the backend of the caller's session.
"""

from __future__ import annotations

import os
from pathlib import Path

from lsml_hub._io import atomic_write
from lsml_hub.metatest.comparison import Comparison

FIGSIZE = (6.4, 4.0)
DPI = 100  # 640 x 400 pixels
BAND_ALPHA = 0.2


def plot_curves(comparison: Comparison, path: str | os.PathLike) -> Path:
    """Plot mean eval accuracy (%) against step for every row, with a shaded ± std band over seeds.

    Example:
        >>> plot_curves(cmp, "runs/compare_digits/curves.png")  # doctest: +SKIP
        PosixPath('runs/compare_digits/curves.png')
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
