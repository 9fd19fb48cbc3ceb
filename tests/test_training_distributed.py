"""One process vs a real two-process ``torchrun``: the same φ, BatchNorm averages and metrics.

Three tasks on two ranks (rank 0 holds tasks 0 and 2, rank 1 holds task 1): the meta-update must average
over tasks, not ranks, or the two runs part ways at the first step.
"""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from _isolation import one_thread
from _training_helpers import (
    RECIPE,
    TINY_TASKS,
    assert_same_tensors,
    finish,
    init_tensors,
    small_config,
    start,
    subprocess_env,
    torchrun_two_processes,
    training_caches,
)

import lsml_hub
from lsml_hub.training.checkpoint import Checkpoint
from lsml_hub.training.metrics import read_metrics

TASKS = [TINY_TASKS["latin_upper"], TINY_TASKS["greek"], TINY_TASKS["printed_digits"]]
NAMES = ["latin_upper", "greek", "printed_digits"]


@pytest.fixture(scope="module", autouse=True)
def _caches(tmp_path_factory):
    with training_caches(tmp_path_factory) as root, one_thread():
        yield root


@pytest.mark.slow
@pytest.mark.multiprocess
def test_one_process_and_torchrun_two_processes_agree(tmp_path, tmp_path_factory):
    def config(out):
        return small_config(out, tasks=TASKS, steps=8, eval_every=4, checkpoint_every=4, log_every=2,
                            algorithm={"name": "cts", "meta_lr": 0.5, "aggregate_period": 1, "reset_period": 3})

    single = lsml_hub.meta_train(config(tmp_path / "one"))  # also renders the tasks for the workers

    out = tmp_path / "two"
    cfg = tmp_path / "two.yaml"
    cfg.write_text(yaml.safe_dump(config(out)))
    log = tmp_path / "torchrun.log"
    proc = start([*torchrun_two_processes(), str(RECIPE), str(cfg)],
                 subprocess_env(tmp_path_factory), log)
    finish(proc, log)

    # φ and the exported init (φ plus BatchNorm statistics averaged over the three tasks): bit for bit, as
    # both sides run one thread per process (float64 sums over tasks do not depend on the rank order).
    assert_same_tensors(init_tensors(out / "init"), init_tensors(single.init_dir))
    one, two = Checkpoint.load(single.output_dir / "checkpoints" / "last.pt"), Checkpoint.load(
        out / "checkpoints" / "last.pt")
    assert one.step == two.step == 8 and sorted(two.tasks) == [0, 1, 2]  # rank 0 gathered every task
    assert torch.equal(two.phi, one.phi)
    for i in range(3):
        assert_same_tensors(two.tasks[i]["model"], one.tasks[i]["model"])
        assert two.tasks[i]["stream"] == one.tasks[i]["stream"]

    # One metrics file, written by rank 0 alone, with every task in it.
    records = read_metrics(out / "metrics.jsonl")
    reference = read_metrics(single.output_dir / "metrics.jsonl")
    assert [(r["step"], r["kind"], r.get("task")) for r in records] == \
        [(r["step"], r["kind"], r.get("task")) for r in reference]
    assert [r["task"] for r in records if r["kind"] == "eval" and r["step"] == 8] == NAMES
    for r, ref in zip(records, reference):
        if r["kind"] == "train":
            assert list(r["task_loss"]) == NAMES  # task order, not rank order
            assert r["loss"] == pytest.approx(ref["loss"], abs=1e-4)
            assert r["meta_update_norm"] == pytest.approx(ref["meta_update_norm"], rel=1e-4)
        else:
            assert r["accuracy"] == pytest.approx(ref["accuracy"], abs=1 / 16 + 1e-9)

    lsml = json.loads((out / "init" / "config.json").read_text())["lsml"]
    assert lsml["world_size"] == 2 and [t["name"] for t in lsml["source_tasks"]] == NAMES
    assert list(lsml["final_metrics"]) == NAMES
    assert lsml["steps"] == 8


RAISE_TOGETHER_SCRIPT = """
import json, os, sys
from lsml_hub import distributed
from lsml_hub.errors import ConfigError

ctx = distributed.setup("cpu")
error = ConfigError("only rank 1 sees this") if ctx.rank == 1 else None
try:
    distributed.raise_together(ctx, error)
    outcome = "returned"
except Exception as err:
    outcome = f"{type(err).__name__}: {err}"
distributed.barrier(ctx)  # every rank got here: nobody was left waiting
with open(os.path.join(sys.argv[1], f"rank{ctx.rank}.txt"), "w") as f:
    f.write(outcome)
distributed.teardown(ctx)
"""


@pytest.mark.slow
@pytest.mark.multiprocess
def test_an_error_on_one_rank_stops_every_rank_at_the_same_point(tmp_path, tmp_path_factory):
    script = tmp_path / "raise_together.py"
    script.write_text(RAISE_TOGETHER_SCRIPT)
    log = tmp_path / "torchrun.log"
    finish(start([*torchrun_two_processes(), str(script), str(tmp_path)], subprocess_env(tmp_path_factory), log), log)
    assert (tmp_path / "rank1.txt").read_text() == "ConfigError: only rank 1 sees this"
    assert (tmp_path / "rank0.txt").read_text() == (
        "TrainingError: rank 1 failed (ConfigError: only rank 1 sees this); its log says more")


@pytest.mark.slow
@pytest.mark.multiprocess
def test_a_bad_task_on_one_rank_stops_both_ranks_with_one_line_each(tmp_path, tmp_path_factory):
    # Task 1 (rank 1's) does not exist: rank 1 reports it, rank 0 stops at the same point and says why,
    # instead of dying at its next collective with a lost connection.
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(small_config(tmp_path / "run", tasks=[TASKS[0], str(tmp_path / "no_such_dir")])))
    log, rank_logs = tmp_path / "torchrun.log", tmp_path / "ranks"
    # Each rank's stderr in its own file (--redirects 2): in one shared log the two lines can interleave.
    proc = start([*torchrun_two_processes(), "--log-dir", str(rank_logs), "--redirects", "2",
                  "-m", "lsml_hub", "meta-train", str(cfg)], subprocess_env(tmp_path_factory), log)
    assert proc.wait(timeout=300) != 0
    stderr = {rank: next(rank_logs.rglob(f"{rank}/stderr.log")).read_text(errors="replace") for rank in (0, 1)}
    errors = {rank: [line for line in text.splitlines() if line.startswith("lsml-hub meta-train: error:")]
              for rank, text in stderr.items()}
    missing = f"dataset path {str(tmp_path / 'no_such_dir')!r} does not exist"
    assert errors == {0: [f"lsml-hub meta-train: error: rank 1 failed (DataError: {missing}); its log says more"],
                      1: [f"lsml-hub meta-train: error: {missing}"]}, stderr
    assert not any("Connection closed" in text or "Traceback" in text for text in stderr.values())
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
