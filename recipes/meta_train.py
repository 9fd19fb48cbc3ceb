"""Meta-train an init (CTS, a baseline, or your own rule): one run, top to bottom.

    python recipes/meta_train.py recipes/configs/cpu_demo.yaml [key=value ...]
    torchrun --nproc-per-node=4 recipes/meta_train.py recipes/configs/paper_cts.yaml
    torchrun --nnodes=2 --nproc-per-node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 \\
        recipes/meta_train.py recipes/configs/paper_cts.yaml

The story of a run: read the config, join the process group if torchrun started us, build φ and one
learner per task of this process, run the loop, export the init. The loop below is the one
``lsml_hub.meta_train`` and ``lsml-hub meta-train`` run (a test keeps their inits bit-identical);
copy this file and change what you need: the order of steps, when to update, what to log. A new
meta-update rule needs no copy: name it in the config (``algorithm.name=my_rules:MyRule``, see
docs/extending.md). The library never imports recipes.
"""

from __future__ import annotations

import logging
import os
import sys

from lsml_hub import distributed
from lsml_hub.errors import LsmlHubError
from lsml_hub.training import MetaTrainer, MetaTrainResult, load_config


def meta_train(argv: list[str]) -> MetaTrainResult:
    # 1. The config: the YAML plus key=value overrides, checked whole before anything runs.
    config = load_config(argv[0], argv[1:])
    # 2. The processes: torchrun's process group (its rank holds every world_size-th task), or just this one.
    ctx = distributed.setup(config.device)
    try:
        # 3. The tasks: the run folder is checked (or its checkpoint loaded), then φ and, for each task of
        #    this rank, its data, model, head and inner optimizer.
        run = MetaTrainer(config, ctx)
        algo, learners = run.algo, run.learners
        # 4. The loop.
        with run.open_run():  # run.json, config.yaml and metrics.jsonl (rank 0), and the progress bar
            while run.step < config.steps:
                run.step += 1
                for learner in learners:  # one inner step of every task
                    run.track_loss(learner, learner.inner_step())
                if algo.is_meta_step(run.step):  # φ ← φ + Δ from the mean over all tasks of every rank
                    total = run.new_sum()
                    for learner in learners:
                        algo.accumulate_(total, learner.signals())
                    distributed.all_reduce_sum_(ctx, total).div_(run.num_tasks)
                    delta = algo.delta_(total, run.phi)
                    algo.apply_(run.phi, [learner.body for learner in learners], delta)  # shifts θ_t too (CTS)
                    run.track_meta_update(delta)
                if algo.is_reset_step(run.step):  # every K steps, trajectories restart from φ
                    for learner in learners:
                        learner.reset_(run.phi, algo.hard_reset)
                run.report()  # check losses; log, evaluate and checkpoint when due
        # 5. The init: φ plus averaged BatchNorm statistics, written by rank 0 as safetensors + config + card.
        return run.export()
    finally:
        distributed.teardown(ctx)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO if os.environ.get("RANK", "0") == "0" else logging.WARNING,
                        format="%(message)s")
    result = meta_train(argv)
    logging.getLogger(__name__).info("init written to %s", result.init_dir)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except LsmlHubError as err:
        print(f"meta_train.py: error: {err}", file=sys.stderr)
        sys.exit(2)
