"""Meta-train an init with continual trajectory shifting (or a baseline), top to bottom.

    python recipes/meta_train.py recipes/configs/cpu_demo.yaml [key=value ...]
    torchrun --nproc-per-node=4 recipes/meta_train.py recipes/configs/paper_cts.yaml
    torchrun --nnodes=2 --nproc-per-node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 \
        recipes/meta_train.py recipes/configs/paper_cts.yaml

This is the same code as ``lsml-hub meta-train``: read the config, join the process group if
torchrun started us, build one learner per local task, run the loop, export the init. Copy it and
change what you need; the library never imports recipes.
"""

from __future__ import annotations

import logging
import os
import sys

from lsml_hub import distributed
from lsml_hub.errors import LsmlHubError
from lsml_hub.training import MetaTrainer, load_config


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO if os.environ.get("RANK", "0") == "0" else logging.WARNING,
                        format="%(message)s")
    # 1. config: the YAML plus key=value overrides
    config = load_config(argv[0], argv[1:])
    # 2. process group (torchrun) or a single process
    ctx = distributed.setup(config.device)
    try:
        # 3. data, models, inner optimizers for this rank's tasks; 4. the loop; 5. the init
        result = MetaTrainer(config, ctx).run()
    finally:
        distributed.teardown(ctx)
    logging.getLogger(__name__).info("init written to %s", result.init_dir)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except LsmlHubError as err:
        print(f"meta_train.py: error: {err}", file=sys.stderr)
        sys.exit(2)
