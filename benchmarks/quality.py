"""Init quality at equal meta-training compute: CTS vs Reptile vs multi-task vs scratch.

    python benchmarks/quality.py [--steps 600] [--seeds 3] [--finetune-steps 300]

Every algorithm meta-trains on the same four builtin glyph alphabets (recipes/configs/cpu_demo.yaml)
for the same number of inner steps; each init and a random-init baseline are then fine-tuned on
held-out builtin targets with limited data, with the same seeds (paired: same head, batches, subset).
Results go to benchmarks/results/quality.json and a table in benchmarks/RESULTS.md; the last line
printed is CTS's paired gain over Reptile on the first target.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import lsml_hub
from lsml_hub.metatest.comparison import mean_std

ROOT = Path(__file__).resolve().parent
CONFIG = ROOT.parent / "recipes" / "configs" / "cpu_demo.yaml"
RESULTS = ROOT / "results" / "quality.json"
REPORT = ROOT / "RESULTS.md"
ALGORITHMS = {
    "cts": ["algorithm.name=cts", "algorithm.meta_lr=0.05", "algorithm.aggregate_period=1"],
    "reptile": ["algorithm.name=reptile", "algorithm.meta_lr=1.0", "algorithm.aggregate_period=null"],
    "multitask": ["algorithm.name=multitask", "algorithm.meta_lr=1.0", "algorithm.aggregate_period=1",
                  "algorithm.reset_period=1"],
}
TARGETS = {"builtin:digits": 100, "builtin:latin_lower": 130}  # target -> training samples


def paired_gain(cmp, a: str, b: str) -> tuple[float, float]:
    """Mean ± std over seeds of row ``a`` minus row ``b`` in final accuracy, in percentage points."""
    mean, std = mean_std([x - y for x, y in zip(cmp.row(a).final_accuracies, cmp.row(b).final_accuracies)])
    return 100 * mean, 100 * std


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="meta-training steps of every algorithm")
    parser.add_argument("--seeds", type=int, default=3, help="fine-tuning seeds per init and target")
    parser.add_argument("--finetune-steps", type=int, default=300)
    parser.add_argument("--work-dir", type=Path, default=None, help="keep runs here (default: a temp dir)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    os.environ.setdefault("LSML_HUB_CACHE", str(Path(tempfile.gettempdir()) / "lsml_hub_bench_cache"))
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="lsml-quality-"))
    started = time.time()
    inits = {}
    for name, overrides in ALGORITHMS.items():
        result = lsml_hub.meta_train(CONFIG, (*overrides, f"steps={args.steps}", f"output_dir={work / name}"))
        inits[name] = str(result.init_dir)
    rows, lines = {}, []
    for target, samples in TARGETS.items():
        cmp = lsml_hub.compare(inits, target, seeds=tuple(range(args.seeds)), baselines=("scratch",),
                               steps=args.finetune_steps, batch_size=32, eval_every=max(1, args.finetune_steps // 6),
                               max_train_samples=samples, progress=False)
        rows[target] = {"table": cmp.table(), "comparison": cmp.to_dict(),
                        "cts_minus_reptile_pp": paired_gain(cmp, "cts", "reptile")}
        lines.append(f"cts − reptile on {target}: {rows[target]['cts_minus_reptile_pp'][0]:+.2f} "
                     f"± {rows[target]['cts_minus_reptile_pp'][1]:.2f} pp")
        print(cmp.table(), end="\n\n")
    record = {"benchmark": "quality", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "args": {**vars(args),
              "work_dir": str(work)}, "minutes": (time.time() - started) / 60, "targets": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2, default=str) + "\n")
    write_report_section(record, args)
    print("\n".join(lines))


def write_report_section(record: dict, args: argparse.Namespace) -> None:
    """Replace the quality section of RESULTS.md (between its markers) with this run's tables."""
    begin, end = "<!-- quality:begin -->", "<!-- quality:end -->"
    command = (f"python benchmarks/quality.py --steps {args.steps} --seeds {args.seeds} "
               f"--finetune-steps {args.finetune_steps}")
    body = [begin, f"Run {record['date']} ({record['minutes']:.1f} min, {os.cpu_count()} CPUs): `{command}`", ""]
    for target, row in record["targets"].items():
        gain = row["cts_minus_reptile_pp"]
        body += ["```", row["table"], "```", f"CTS − Reptile (paired by seed) on {target}: "
                 f"{gain[0]:+.2f} ± {gain[1]:.2f} pp", ""]
    body.append(end)
    text = REPORT.read_text() if REPORT.exists() else "# Benchmark results\n\n" + begin + "\n" + end + "\n"
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    REPORT.write_text(head + "\n".join(body) + tail)


if __name__ == "__main__":
    main()
