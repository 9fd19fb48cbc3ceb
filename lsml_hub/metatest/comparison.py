"""Result types of :func:`lsml_hub.compare`: one row per init or baseline, one run per seed."""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass, field
from typing import Any

from lsml_hub.errors import ConfigError
from lsml_hub.metatest.model import InputConfig
from lsml_hub.metatest.result import EvalPoint, FinetuneResult, Metrics

# Row kinds: a user's init, and the two baselines.
INIT, SCRATCH, PRETRAINED = "init", "scratch", "pretrained"


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0.0 for a single value).

    Example:
        >>> [round(x, 6) for x in mean_std([0.5, 0.6, 0.7])]
        [0.6, 0.1]
    """
    if not values:
        raise ValueError("mean_std of no values")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


@dataclass(frozen=True)
class SeedRun:
    """One fine-tuning run of a row: its seed, final and best eval metrics, and learning curve."""

    seed: int
    final: Metrics
    best: Metrics
    history: list[EvalPoint]
    seconds: float

    @classmethod
    def of(cls, result: FinetuneResult) -> SeedRun:
        """Keep what a comparison needs of ``result`` (not the model, to free its memory)."""
        return cls(result.config.seed, result.final, result.best, list(result.history), result.seconds)


@dataclass(frozen=True)
class Curve:
    """Eval accuracy against step, averaged over seeds (``std`` is 0 with one seed)."""

    steps: list[int]
    mean: list[float]
    std: list[float]


@dataclass
class ComparisonRow:
    """An init or baseline fine-tuned with every seed.

    Attributes:
        name: Display name (unique within a comparison).
        kind: ``"init"``, ``"scratch"`` or ``"pretrained"``.
        source: What was loaded: the init string, ``"scratch:ARCH"``, or a timm ``arch.tag``.
        runs: One run per seed, in seed order.
        inputs: Image size and normalization the model was fed.
    """

    name: str
    kind: str
    source: str
    runs: list[SeedRun] = field(default_factory=list)
    inputs: InputConfig | None = None

    @property
    def final_accuracies(self) -> list[float]:
        return [run.final.accuracy for run in self.runs]

    @property
    def best_accuracies(self) -> list[float]:
        return [run.best.accuracy for run in self.runs]

    @property
    def final(self) -> tuple[float, float]:
        """Mean and std over seeds of the final eval accuracy."""
        return mean_std(self.final_accuracies)

    @property
    def best(self) -> tuple[float, float]:
        """Mean and std over seeds of the best eval accuracy."""
        return mean_std(self.best_accuracies)

    def curve(self) -> Curve:
        """Mean ± std over seeds of eval accuracy at each eval step (all seeds share the steps)."""
        steps = [point.step for point in self.runs[0].history]
        per_step = zip(*([point.eval_accuracy for point in run.history] for run in self.runs))
        stats = [mean_std(list(values)) for values in per_step]
        return Curve(steps, [m for m, _ in stats], [s for _, s in stats])

    def to_dict(self) -> dict[str, Any]:
        final, best = self.final, self.best
        return {
            "name": self.name,
            "kind": self.kind,
            "source": self.source,
            "inputs": dataclasses.asdict(self.inputs) if self.inputs else None,
            "final_accuracy": {"mean": final[0], "std": final[1], "per_seed": self.final_accuracies},
            "best_accuracy": {"mean": best[0], "std": best[1], "per_seed": self.best_accuracies},
            "runs": [dataclasses.asdict(run) for run in self.runs],
        }


@dataclass
class Comparison:
    """Inits and baselines fine-tuned on one target with the same seeds and settings.

    Attributes:
        target: Summary of the target task (name, source, sizes, ``train_samples`` used).
        seeds: Seeds every row ran with.
        config: Fine-tuning settings shared by all runs (``seed`` varies, so it is left out).
        rows: Inits first, in the order given, then baselines.
        skipped: Baselines that could not run, with the reason (e.g. weights not cached).
        files: Paths written by :func:`lsml_hub.metatest.report.write_report`, by kind.

    Example:
        ``cmp``, made by :func:`lsml_hub.compare`, holds a toy meta-trained init named ``cts`` and the
        scratch baseline, each fine-tuned with seeds 0 and 1:

        >>> cmp.seeds, [(row.name, row.kind, len(row.runs)) for row in cmp.rows]
        ([0, 1], [('cts', 'init', 2), ('scratch', 'scratch', 2)])
        >>> mean, std = cmp.delta("cts")  # final accuracy of cts minus scratch's, paired by seed
        >>> cmp.delta("scratch") is None, cmp.reference.name
        (True, 'scratch')
        >>> sorted(cmp.to_dict())
        ['config', 'package_version', 'rows', 'seeds', 'skipped', 'target']
    """

    target: dict[str, Any]
    seeds: list[int]
    config: dict[str, Any]
    rows: list[ComparisonRow]
    skipped: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    def row(self, name: str) -> ComparisonRow:
        """The row called ``name``."""
        for row in self.rows:
            if row.name == name:
                return row
        raise ConfigError(f"no row {name!r} in this comparison; rows: {', '.join(r.name for r in self.rows)}")

    @property
    def reference(self) -> ComparisonRow | None:
        """The scratch baseline, which Δ columns are measured against, if it ran."""
        return next((row for row in self.rows if row.kind == SCRATCH), None)

    def delta(self, name: str) -> tuple[float, float] | None:
        """Mean ± std over seeds of the paired difference in final accuracy, row ``name`` minus scratch.

        Pairing by seed (same head init, batches and subset) removes most of the run-to-run noise
        that two independent means would carry.
        """
        ref = self.reference
        if ref is None or ref.name == name:
            return None
        diffs = [a - b for a, b in zip(self.row(name).final_accuracies, ref.final_accuracies)]
        return mean_std(diffs)

    def table(self) -> str:
        """The comparison as an aligned plain-text table (accuracies in %); see :func:`format_table`."""
        return format_table(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``comparison.json``: settings, rows with per-seed runs and curves."""
        from lsml_hub.version import __version__

        rows = []
        for row in self.rows:
            delta = self.delta(row.name)
            rows.append({**row.to_dict(), "delta_vs_scratch": {"mean": delta[0], "std": delta[1]} if delta else None})
        return {
            "target": self.target,
            "seeds": self.seeds,
            "config": self.config,
            "rows": rows,
            "skipped": self.skipped,
            "package_version": __version__,
        }


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
        ``cmp``, made by :func:`lsml_hub.compare`, holds a toy init ``cts`` and the scratch baseline:

        >>> print(format_table(cmp))  # doctest: +ELLIPSIS, +NORMALIZE_WHITESPACE
        target digits (100 train / 359 eval samples), 10 steps, adam lr 0.001, step schedule, full ...; seeds 0, 1
        name     kind     final acc (%)  best acc (%)  Δ final vs scratch (pp)
        cts      init     ... ± ...      ... ± ...     ... ± ...
        scratch  scratch  ... ± ...      ... ± ...     -
        (skipped pretrained: ...)
    """
    header = ["name", "kind", "final acc (%)", "best acc (%)", "Δ final vs scratch (pp)"]
    body = [[row.name, row.kind, _pct(row.final), _pct(row.best), _delta_pp(comparison.delta(row.name))]
            for row in comparison.rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in [header, *body]]
    for name, reason in comparison.skipped.items():
        lines.append(f"(skipped {name}: {reason})")
    return "\n".join([describe_setting(comparison), *lines])
