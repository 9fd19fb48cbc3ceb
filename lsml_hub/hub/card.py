"""Model cards (``README.md``) for inits, built with huggingface_hub's ``ModelCard``/``ModelCardData``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import timm
import yaml
from huggingface_hub import ModelCard, ModelCardData

from lsml_hub.algorithms import find_algorithm
from lsml_hub.hub.config import WEIGHTS_FILE, InitConfig

# Stands in for the Hub id in usage snippets until the card is rebuilt with the real one.
REPO_PLACEHOLDER = "OWNER/NAME"

PAPER_URL = "http://proceedings.mlr.press/v139/shin21a.html"
CITATION = """@InProceedings{pmlr-v139-shin21a,
  title = {Large-Scale Meta-Learning with Continual Trajectory Shifting},
  author = {Shin, Jaewoong and Lee, Hae Beom and Gong, Boqing and Hwang, Sung Ju},
  booktitle = {Proceedings of the 38th International Conference on Machine Learning},
  pages = {9603--9613},
  year = {2021},
  editor = {Meila, Marina and Zhang, Tong},
  volume = {139},
  series = {Proceedings of Machine Learning Research},
  month = {18--24 Jul},
  publisher = {PMLR},
  pdf = {http://proceedings.mlr.press/v139/shin21a/shin21a.pdf},
  url = {http://proceedings.mlr.press/v139/shin21a.html}
}"""


BASE_TAGS = ("image-classification", "timm", "meta-learning", "lsml-hub")
# "owner/name" as the Hub spells dataset ids; builtin and local sources never match.
_HUB_DATASET_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


@dataclass
class TrainingReport:
    """What a run's ``metrics.jsonl`` and ``config.yaml`` add to a card.

    Args:
        curve: Rows ``(step, {task: accuracy})`` of the eval curve, already thinned for a table.
        final_metrics: The last eval metrics per task (``{"latin_upper": {"accuracy": 0.9, ...}}``).
        run_config: The resolved run configuration, shown as the hyper-parameters.
    """

    curve: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    final_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    run_config: dict[str, Any] = field(default_factory=dict)


def hub_dataset_ids(config: InitConfig) -> list[str]:
    """Hub dataset ids among the init's source tasks (builtin and local sources are left out).

    Example:
        >>> cfg = InitConfig("resnet20_cifar", {}, {"source_tasks": [
        ...     {"name": "c100", "source": "uoft-cs/cifar100"}, {"name": "l", "source": "builtin:latin_upper"}]})
        >>> hub_dataset_ids(cfg)
        ['uoft-cs/cifar100']
    """
    ids = []
    for task in config.source_tasks:
        source = str(task.get("source") or "")
        if _HUB_DATASET_ID.fullmatch(source) and source not in ids:
            ids.append(source)
    return ids


def build_model_card(config: InitConfig, *, repo_id: str | None = None,
                     report: TrainingReport | None = None) -> ModelCard:
    """The model card of an init: Hub metadata, details, usage for timm/lsml_hub/torch.hub, citation.

    Args:
        config: The init's config (with its ``sha256`` filled in).
        repo_id: Hub id the init is (or will be) pushed to; usage snippets name it.
        report: Training curves, final metrics and hyper-parameters of the run, if known.

    Example:
        >>> cfg = InitConfig("resnet20_cifar", {"license": "apache-2.0"}, {"algorithm": {"name": "cts"}})
        >>> card = build_model_card(cfg, repo_id="me/resnet20_cifar.cts")
        >>> card.data.library_name, "meta-learning" in card.data.tags
        ('timm', True)
    """
    algo = config.algorithm_name
    data = ModelCardData(
        library_name="timm",
        license=config.license,
        pipeline_tag="image-classification",
        tags=[*BASE_TAGS, algorithm_tag(algo)],
        datasets=hub_dataset_ids(config) or None,
        metrics=["accuracy"] if report and report.final_metrics else None,
    )
    sections = [
        _intro(config, repo_id),
        _details(config),
        _usage(config, repo_id or REPO_PLACEHOLDER),
        _training(report) if report else "",
        _citation(config),
    ]
    body = "\n\n".join(s for s in sections if s)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n")


def algorithm_credit(name: str, recorded: Any = None) -> str:
    """How a card names algorithm ``name``: its ``title`` and ``reference``, else the name.

    Args:
        name: The rule as the config spelled it.
        recorded: The init's ``lsml.credit`` (``{"title", "reference"}``), written at export; else the
            rule is looked up among those this process knows.

    Example:
        >>> algorithm_credit("reptile")
        'Reptile (Nichol et al., On First-Order Meta-Learning Algorithms, arXiv:1803.02999)'
        >>> algorithm_credit("my_rules:SignSGD", {"title": "sign SGD", "reference": ""})
        'sign SGD'
        >>> algorithm_credit("my_rule")  # neither recorded nor registered: no reference to give
        'my_rule'
    """
    if not isinstance(recorded, dict) or not recorded.get("title"):
        cls = find_algorithm(name)
        recorded = cls.credit() if cls is not None else {}
    title, reference = recorded.get("title") or name, recorded.get("reference")
    return f"{title} ({reference})" if reference else str(title)


def algorithm_tag(name: str) -> str:
    """``name`` as a Hub tag: a plug-in's ``module:Class`` becomes ``module-class``.

    Example:
        >>> algorithm_tag("cts"), algorithm_tag("my_rules:SignSGD")
        ('cts', 'my_rules-signsgd')
    """
    return re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-") or "custom"


def _intro(config: InitConfig, repo_id: str | None) -> str:
    name = repo_id.split("/")[-1] if repo_id else f"{config.architecture}.{algorithm_tag(config.algorithm_name)}"
    n = len(config.source_tasks)
    return (
        f"# Model card for {name}\n\n"
        f"A meta-learned initialization of the timm `{config.architecture}` backbone: "
        f"{algorithm_credit(config.algorithm_name, config.lsml.get('credit'))} over {n} source "
        f"task{'s' if n != 1 else ''}, "
        "made with lsml-hub. The init is headless: load it with a fresh classifier for your target "
        "task and fine-tune."
    )


def _details(config: InitConfig) -> str:
    lsml = config.lsml
    lines = [
        "## Model details",
        "",
        f"- **Architecture:** `{config.architecture}` (timm), headless, {config.num_features} features",
        f"- **Algorithm:** {_kv(config.algorithm)}",
    ]
    if isinstance(lsml.get("inner_optimizer"), dict):
        lines.append(f"- **Inner optimizer:** {_kv(lsml['inner_optimizer'])}")
    for key, label in (("steps", "Meta-training steps"), ("seed", "Seed")):
        if key in lsml:
            lines.append(f"- **{label}:** {lsml[key]}")
    lines.append(f"- **Started from:** {_start(lsml.get('start'))}")
    cfg = config.pretrained_cfg
    lines.append(f"- **Input:** size {cfg.get('input_size')}, mean {cfg.get('mean')}, std {cfg.get('std')}")
    lines.append(f"- **License:** {config.license}")
    lines.append(f"- **sha256 of {WEIGHTS_FILE}:** `{config.sha256}`")
    lines.append(f"- **lsml-hub version:** {config.package_version}")
    return "\n".join(lines) + "\n\n" + _tasks_table(config) + _metrics_block(lsml)


def _tasks_table(config: InitConfig) -> str:
    rows = ["### Source tasks", "", "| task | source | revision | classes | image size |", "|---|---|---|---|---|"]
    for t in config.source_tasks:
        rows.append(f"| {t.get('name')} | `{t.get('source')}` | {t.get('revision') or '-'} | "
                    f"{t.get('num_classes', '-')} | {t.get('image_size', '-')} |")
    return "\n".join(rows)


def _metrics_block(lsml: dict[str, Any]) -> str:
    parts = []
    for key, title in (("final_metrics", "Final meta-training metrics"), ("meta_test", "Meta-test results")):
        if lsml.get(key):
            dumped = yaml.safe_dump(lsml[key], sort_keys=False).strip()
            parts.append(f"\n\n### {title}\n\n```yaml\n{dumped}\n```")
    return "".join(parts)


def registered_by_lsml_hub(architecture: str) -> bool:
    """Whether ``architecture`` is one that lsml_hub registers with timm (timm alone does not know it).

    Example:
        >>> registered_by_lsml_hub("resnet20_cifar"), registered_by_lsml_hub("test_resnet")
        (True, False)
    """
    try:
        module = timm.models.model_entrypoint(architecture).__module__
    except RuntimeError:  # not a timm architecture at all: importing lsml_hub would not help either
        return False
    return module == "lsml_hub" or module.startswith("lsml_hub.")


def _usage(config: InitConfig, repo_id: str) -> str:
    note = (f"\nReplace `{REPO_PLACEHOLDER}` with the Hub id this folder was pushed to.\n"
            if repo_id == REPO_PLACEHOLDER else "")
    arch = config.architecture
    if registered_by_lsml_hub(arch):
        timm_title = f"With timm (`{arch}` is defined by lsml-hub: importing it registers the architecture)"
        timm_imports = f"import lsml_hub  # registers {arch} with timm\nimport timm"
    else:
        timm_title = "With timm alone"
        timm_imports = "import timm"
    return f"""## Usage
{note}
{timm_title}:

```python
{timm_imports}

model = timm.create_model("hf-hub:{repo_id}", pretrained=True, num_classes=10)
data_config = timm.data.resolve_data_config({{}}, model=model)  # input size, mean, std of the init
```

With lsml-hub (checks the sha256 and refuses missing or unexpected backbone tensors):

```python
import lsml_hub

model = lsml_hub.create_model("hf-hub:{repo_id}", num_classes=10)
```

With torch.hub, from a clone of the lsml-hub repository:

```python
import torch

model = torch.hub.load("path/to/lsml-hub", "meta_init", init="hf-hub:{repo_id}", num_classes=10,
                       source="local")
```"""


def _training(report: TrainingReport) -> str:
    parts = ["## Training"]
    if report.curve:
        tasks = sorted({t for _, accs in report.curve for t in accs})
        rows = ["### Eval accuracy during meta-training", "", "| step | " + " | ".join(tasks) + " |",
                "|---|" + "---|" * len(tasks)]
        for step, accs in report.curve:
            rows.append(f"| {step} | " + " | ".join(_fmt(accs.get(t)) for t in tasks) + " |")
        parts.append("\n".join(rows))
    if report.final_metrics:
        names = sorted({m for metrics in report.final_metrics.values() for m in metrics})
        rows = ["### Final per-task metrics", "", "| task | " + " | ".join(names) + " |",
                "|---|" + "---|" * len(names)]
        for task, metrics in sorted(report.final_metrics.items()):
            rows.append(f"| {task} | " + " | ".join(_fmt(metrics.get(m)) for m in names) + " |")
        parts.append("\n".join(rows))
    if report.run_config:
        dumped = yaml.safe_dump(report.run_config, sort_keys=False).strip()
        parts.append(f"### Hyper-parameters (resolved run config)\n\n```yaml\n{dumped}\n```")
    return "\n\n".join(parts)


def _citation(config: InitConfig) -> str:
    # lsml-hub implements the CTS paper's large-scale setting for every algorithm, so that paper is
    # always the one to cite for the method; the init's own algorithm is credited beside it.
    credit = algorithm_credit(config.algorithm_name, config.lsml.get("credit"))
    return ("## Citation\n\nlsml-hub implements large-scale meta-learning with continual trajectory shifting "
            f"([Shin, Lee, Gong, Hwang; ICML 2021]({PAPER_URL})); this init's algorithm is {credit}. "
            f"To cite lsml-hub's method:\n\n```bibtex\n{CITATION}\n```")


def _start(start: Any) -> str:
    if not isinstance(start, dict):
        return "random weights"
    if start.get("kind") == "pretrained":
        return f"timm's pretrained `{start.get('weights')}` weights (`{start.get('hf_hub_id')}`)"
    return f"the init `{start.get('init')}` ({start.get('algorithm')}, sha256 `{str(start.get('sha256'))[:12]}...`)"


def _kv(mapping: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in mapping.items())


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)
