"""`make demo`'s script in its test-size mode, through its real command."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_quick_meta_trains_publishes_finetunes_and_compares(tmp_path, tmp_path_factory):
    env = {**os.environ, "LSML_HUB_CACHE": str(tmp_path_factory.getbasetemp() / "lsml-cache"),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "recipes/demo.py", "--quick", "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]

    # The comparison table on stdout, one row per init and the scratch baseline.
    for name in ("cts", "reptile", "scratch"):
        assert any(line.startswith(name) for line in proc.stdout.splitlines()), proc.stdout
    with open(out / "compare" / "comparison.csv", newline="") as f:
        rows = {row["name"]: row for row in csv.DictReader(f)}
    assert set(rows) == {"cts", "reptile", "scratch"}
    assert all(0.0 <= float(row["final_acc_mean"]) <= 1.0 for row in rows.values())
    with Image.open(out / "compare" / "curves.png") as img:
        assert img.width > 100 and img.height > 100

    # Published inits carry their card, their sha256 and the recorded meta-test.
    for algo in ("cts", "reptile"):
        config = json.loads((out / "inits" / algo / "config.json").read_text())
        assert config["lsml"]["algorithm"]["name"] == algo
        assert len(config["lsml"]["sha256"]) == 64
        assert config["lsml"]["meta_test"], config["lsml"].keys()
        assert (out / "inits" / algo / "README.md").read_text().count("Continual Trajectory Shifting") >= 1
