"""Init quality at equal inner-step compute: every meta-learner, a sweep of CTS's K, and scratch.

    python benchmarks/quality.py [--steps 600] [--seeds 3] [--finetune-steps 300] [--k-sweep 50,600]
                                 [--algorithms cts,reptile,...] [--pretrained]

Every algorithm meta-trains on the same four builtin glyph alphabets (recipes/configs/cpu_demo.yaml,
K = 200) for the same number of inner steps (FOMAML++, ANIL and iMAML also spend held-out passes;
Leap spends none); CTS also runs with the other reset periods of ``--k-sweep`` at the same steps, to
test the paper's claim that longer trajectories help. Each init and a random-init baseline are then
fine-tuned on two held-out builtin targets with limited data, with the same seeds (paired: same head,
batches, subset). ``--pretrained`` adds the paper's second question where timm's weights of the model
are in the Hugging Face cache: CTS started from them against plain fine-tuning of them. The
meta-learners' hyper-parameters are the seed's where it gives them, not tuned here.
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
    "cts": ["algorithm=cts", "algorithm.meta_lr=0.05", "algorithm.aggregate_period=1", "algorithm.reset_period=200"],
    "reptile": ["algorithm=reptile", "algorithm.meta_lr=1.0", "algorithm.reset_period=200"],
    "multitask": ["algorithm=multitask", "algorithm.meta_lr=1.0"],
    "fomaml_shift": ["algorithm=fomaml_shift", "algorithm.meta_lr=0.01", "algorithm.reset_period=200"],
    "leap": ["algorithm=leap", "algorithm.meta_lr=0.01", "algorithm.reset_period=200"],
    "imaml": ["algorithm=imaml", "algorithm.meta_lr=0.1", "algorithm.reset_period=200"],
    "anil": ["algorithm=anil", "algorithm.meta_lr=0.01", "algorithm.reset_period=200"],
}
TARGETS = {"builtin:digits": 100, "builtin:latin_lower": 130}  # target -> training samples


def runs(args: argparse.Namespace) -> dict[str, list[str]]:
    """Each meta-training run's config overrides, by row name."""
    chosen = {name: ALGORITHMS[name] for name in args.algorithms.split(",")}
    for k in (int(k) for k in args.k_sweep.split(",") if k):
        chosen[f"cts_k{k}"] = [*ALGORITHMS["cts"], f"algorithm.reset_period={k}"]
    if args.pretrained:
        chosen["cts_from_pretrained"] = [*ALGORITHMS["cts"], "start_from=pretrained"]
    return chosen


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
    parser.add_argument("--k-sweep", default="50,600", help="CTS reset periods besides 200 (comma-separated)")
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS), help="comma-separated subset")
    parser.add_argument("--pretrained", action="store_true", help="also CTS from timm's cached weights vs them")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    os.environ.setdefault("LSML_HUB_CACHE", str(Path(tempfile.gettempdir()) / "lsml_hub_bench_cache"))
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="lsml-quality-"))
    started = time.time()
    inits = {}
    for name, overrides in runs(args).items():
        result = lsml_hub.meta_train(CONFIG, (*overrides, f"steps={args.steps}", f"output_dir={work / name}"))
        inits[name] = str(result.init_dir)
        print(f"meta-trained {name} ({(time.time() - started) / 60:.1f} min)", flush=True)
    baselines = ("scratch", "pretrained") if args.pretrained else ("scratch",)
    rows, lines = {}, []
    for target, samples in TARGETS.items():
        cmp = lsml_hub.compare(inits, target, seeds=tuple(range(args.seeds)), baselines=baselines,
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
               f"--finetune-steps {args.finetune_steps} --k-sweep {args.k_sweep}"
               + (f" --algorithms {args.algorithms}" if args.algorithms != ",".join(ALGORITHMS) else "")
               + (" --pretrained" if args.pretrained else ""))
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
