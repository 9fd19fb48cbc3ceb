"""publish_run: a hand-built run folder becomes an init folder with the full model card."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from huggingface_hub import ModelCard

import lsml_hub
from lsml_hub import algorithms
from lsml_hub.algorithms import ALGORITHMS
from lsml_hub.errors import ConfigError, InitError, IntegrityError
from lsml_hub.hub import PublishError, publish_run, verify_init
from lsml_hub.hub.config import read_config

RUN_CONFIG = {
    "model": {"name": "resnet20_cifar"},
    "algorithm": {"name": "cts", "meta_lr": 0.05, "reset_period": 200},
    "steps": 2000,
    "tasks": ["builtin:latin_upper", "uoft-cs/cifar100"],
}


def metric_lines() -> list[dict]:
    lines = []
    for step in range(200, 2200, 200):
        lines.append({"step": step, "kind": "train", "task": "latin_upper", "loss": 3.0 - step / 1000})
        for i, task in enumerate(("latin_upper", "cifar100")):
            lines.append({"step": step, "kind": "eval", "task": task, "loss": 2.0 - step / 2000,
                          "accuracy": round(0.1 * i + step / 4000, 4)})
    return lines


def make_run(hub_make_init, tmp_path, algorithm: str = "cts"):
    hub_make_init(name="run/init", algorithm={"name": algorithm})
    run = tmp_path / "run"
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in metric_lines()))
    run_config = RUN_CONFIG | {"algorithm": {**RUN_CONFIG["algorithm"], "name": algorithm}}
    (run / "config.yaml").write_text(yaml.safe_dump(run_config))
    return run


@pytest.fixture
def hub_run_dir(hub_make_init, tmp_path):
    return make_run(hub_make_init, tmp_path)


def test_publish_writes_a_verified_init_with_the_full_card(hub_run_dir):
    out = publish_run(hub_run_dir, repo_id="me/resnet20_cifar.cts_demo")
    assert out == hub_run_dir / "publish"
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = verify_init(out)
    assert config.sha256 == verify_init(hub_run_dir / "init").sha256
    assert (out / "config.json").read_text() == (hub_run_dir / "init" / "config.json").read_text()

    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "timm" and card.data.metrics == ["accuracy"]
    assert "meta-learning" in card.data.tags and card.data.datasets == ["uoft-cs/cifar100"]
    text = card.text
    assert 'lsml_hub.create_model("hf-hub:me/resnet20_cifar.cts_demo"' in text
    assert "### Eval accuracy during meta-training" in text
    assert "| 2000 | 0.6000 | 0.5000 |" in text  # final row: cifar100, latin_upper columns
    assert "### Final per-task metrics" in text
    assert "| latin_upper | 0.5000 | 1.0000 |" in text  # accuracy, loss of the last eval
    assert "### Hyper-parameters (resolved run config)" in text and "reset_period: 200" in text
    assert "@InProceedings{pmlr-v139-shin21a" in text


# The paper each algorithm comes from; lsml-hub's method paper (CTS) is cited on every card.
CTS_PAPER = "Shin et al., Large-Scale Meta-Learning with Continual Trajectory Shifting, ICML 2021"
CREDITS = {
    "cts": CTS_PAPER,
    "fomaml_shift": CTS_PAPER,
    "reptile": "Nichol et al., On First-Order Meta-Learning Algorithms, arXiv:1803.02999",
    "fomaml": "Finn et al., Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks, ICML 2017",
    "multitask": "Caruana, Multitask Learning, Machine Learning 28, 1997",
    "leap": "Flennerhag et al., Transferring Knowledge across Learning Processes, ICLR 2019",
    "imaml": "Rajeswaran et al., Meta-Learning with Implicit Gradients, NeurIPS 2019",
    "anil": "Raghu et al., Rapid Learning or Feature Reuse? Towards Understanding the Effectiveness of MAML, "
            "ICLR 2020",
    "none": "baseline: no meta-update",
}


def test_every_registered_algorithm_has_a_title_and_its_credit_checked():
    exported = (getattr(algorithms, name) for name in algorithms.__all__)  # plug-ins registered by other tests aside
    builtin = {cls.name: cls for cls in exported
               if isinstance(cls, type) and issubclass(cls, algorithms.MetaAlgorithm) and cls.name}
    assert set(CREDITS) == set(builtin)
    assert all(cls.title for cls in builtin.values())


@pytest.mark.parametrize("algorithm", sorted(CREDITS))
def test_the_card_credits_the_algorithms_own_paper_and_cites_the_method(hub_make_init, tmp_path, algorithm):
    text = ModelCard.load(publish_run(make_run(hub_make_init, tmp_path, algorithm)) / "README.md").text
    intro = text[:text.index("## Model details")]
    assert f"backbone: {ALGORITHMS[algorithm].title} ({CREDITS[algorithm]}) over 2 source tasks" in intro
    other_papers = {credit for name, credit in CREDITS.items() if credit != CREDITS[algorithm]}
    assert not any(paper in intro for paper in other_papers)
    citation = text[text.index("## Citation"):]
    assert f"this init's algorithm is {ALGORITHMS[algorithm].title} ({CREDITS[algorithm]})" in citation
    assert "@InProceedings{pmlr-v139-shin21a" in citation


def test_publish_to_a_chosen_folder_loads_like_any_init(hub_run_dir, tmp_path):
    out = publish_run(hub_run_dir, tmp_path / "ready")
    model = lsml_hub.create_model(out, num_classes=4)
    assert model.num_classes == 4


def test_publish_thins_a_long_curve(hub_run_dir):
    lines = [{"step": s, "kind": "eval", "task": "t", "accuracy": s / 10000} for s in range(0, 5000, 10)]
    (hub_run_dir / "metrics.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    text = (publish_run(hub_run_dir) / "README.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and line.endswith(" |")
            and line.split("|")[1].strip().isdigit()]
    assert len(rows) == 11 and rows[0].startswith("| 0 |") and rows[-1].startswith("| 4990 |")


def test_a_torn_last_metrics_line_is_skipped(hub_run_dir):
    with open(hub_run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 2200, "kind": "ev')
    assert (publish_run(hub_run_dir) / "README.md").is_file()


@pytest.mark.parametrize("breakage, error, match", [
    ("no_metrics", PublishError, r"metrics\.jsonl is missing"),
    ("bad_metrics", PublishError, r"metrics\.jsonl:1 is not JSON"),
    ("no_config", PublishError, r"is not a run folder \(no config\.yaml\)"),
    ("bad_config", PublishError, r"config\.yaml is not valid YAML"),
    ("list_config", PublishError, r"config\.yaml holds a list"),
    ("no_init", PublishError, r"run not finished: .* has no init/ yet; rerun `lsml-hub meta-train "),
    ("incomplete_init", InitError, r"config\.json"),
    ("altered_weights", IntegrityError, r"model\.safetensors: sha256"),
])
def test_a_broken_run_folder_is_refused_and_nothing_written(hub_run_dir, breakage, error, match):
    run = hub_run_dir
    if breakage == "no_metrics":
        (run / "metrics.jsonl").unlink()
    elif breakage == "bad_metrics":
        (run / "metrics.jsonl").write_text("not json\n{}\n")
    elif breakage == "no_config":
        (run / "config.yaml").unlink()
    elif breakage == "bad_config":
        (run / "config.yaml").write_text("a: [1, 2\n")
    elif breakage == "list_config":
        (run / "config.yaml").write_text("- 1\n- 2\n")
    elif breakage == "no_init":
        (run / "init").rename(run / "elsewhere")
    elif breakage == "incomplete_init":
        (run / "init" / "config.json").unlink()
    else:
        weights = run / "init" / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:-4])
    with pytest.raises(error, match=match) as err:
        publish_run(run)
    assert "\n" not in str(err.value)
    assert not (run / "publish").exists()
    assert not [p for p in run.iterdir() if p.name.startswith(".")]


def test_publish_keeps_a_previous_good_output_when_it_fails(hub_run_dir):
    first = publish_run(hub_run_dir)
    before = (first / "README.md").read_text()
    (hub_run_dir / "config.yaml").write_text("a: [")
    with pytest.raises(PublishError):
        publish_run(hub_run_dir)
    assert (first / "README.md").read_text() == before


def test_a_run_continued_after_publishing_publishes_again_to_its_own_folder(hub_run_dir, tmp_path):
    first = publish_run(hub_run_dir)
    elsewhere = publish_run(hub_run_dir, tmp_path / "elsewhere")
    # `meta-train RUN/config.yaml steps=...` continued the run: its init is another one now.
    model = lsml_hub.create_model(hub_run_dir / "init")
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    lsml_hub.save_init(hub_run_dir / "init", model, lsml=read_config(hub_run_dir / "init").lsml)
    new_sha = verify_init(hub_run_dir / "init").sha256
    assert publish_run(hub_run_dir) == first and verify_init(first).sha256 == new_sha
    with pytest.raises(ConfigError, match="holds another init"):  # a folder of the user's choosing is not replaced
        publish_run(hub_run_dir, elsewhere)


@pytest.mark.parametrize("target", ["run", "init"])
def test_publish_refuses_to_write_over_the_run_or_its_init(hub_run_dir, target):
    out = hub_run_dir if target == "run" else hub_run_dir / "init"
    with pytest.raises(PublishError, match="would replace the run or its init"):
        publish_run(hub_run_dir, out)
    assert verify_init(hub_run_dir / "init")
