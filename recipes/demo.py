"""The whole story on builtin offline data: meta-train, publish, fine-tune on a held-out target, compare.

    python recipes/demo.py                 # `make demo`: a few minutes on 2 CPU cores
    python recipes/demo.py --quick         # seconds: a test-size run of the same steps

1. meta-train CTS and Reptile on four glyph alphabets (recipes/configs/cpu_demo.yaml);
2. publish each run's init with its full model card;
3. fine-tune both inits and a random-init "scratch" baseline on scikit-learn's handwritten digits
   (a target never seen in meta-training) with 100 training images, over three seeds;
4. print the comparison and write comparison.csv/.json and curves.png.

Runs resume: a second call reuses finished meta-training runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import lsml_hub
from lsml_hub.errors import LsmlHubError
from lsml_hub.hub import publish_run

CONFIG = Path(__file__).parent / "configs" / "cpu_demo.yaml"
ALGORITHMS = {
    "cts": ["algorithm.name=cts", "algorithm.meta_lr=0.05", "algorithm.aggregate_period=1"],
    "reptile": ["algorithm.name=reptile", "algorithm.meta_lr=1.0", "algorithm.aggregate_period=null"],
}
TARGET = "builtin:digits"
QUICK = ["steps=6", "eval_every=3", "checkpoint_every=3", "log_every=3", "eval_batches=1", "inner.batch_size=16",
         "algorithm.reset_period=3",
         'tasks=["builtin:latin_upper?samples_per_class=20", "builtin:greek?samples_per_class=20"]']


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="folder for runs, inits and report")
    parser.add_argument("--quick", action="store_true", help="test-size run (seconds)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log = logging.getLogger("demo")

    # 1-2. meta-train each algorithm, then publish its init with the full model card
    inits = {}
    for name, overrides in ALGORITHMS.items():
        run_dir = args.out / name
        quick = QUICK if args.quick else []
        lsml_hub.meta_train(CONFIG, (*overrides, f"output_dir={run_dir}", *quick))
        inits[name] = publish_run(run_dir, args.out / "inits" / name)
        log.info("published %s init to %s", name, inits[name])

    # 3-4. fine-tune every init and scratch on the held-out target, with limited data, several seeds
    comparison = lsml_hub.compare(
        {name: str(path) for name, path in inits.items()}, TARGET,
        seeds=(0,) if args.quick else (0, 1, 2), baselines=("scratch",),
        steps=4 if args.quick else 300, batch_size=16 if args.quick else 32, eval_every=2 if args.quick else 50,
        max_train_samples=100, out_dir=args.out / "compare", record=True,
    )
    print(comparison.table())
    log.info("report: %s", ", ".join(str(p) for p in comparison.files.values()))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except LsmlHubError as err:
        print(f"demo.py: error: {err}", file=sys.stderr)
        sys.exit(2)
