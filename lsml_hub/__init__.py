"""lsml-hub: meta-learned initializations for timm backbones.

Loading an init needs only torch, timm, safetensors and huggingface_hub; data, training and
fine-tuning code is imported on first use.

Example:
    Meta-train a toy init on two tasks (seconds on a CPU), load it with a new 10-class head, and
    fine-tune it on a target task:

    >>> import lsml_hub
    >>> config = {"model": "test_resnet", "steps": 4, "inner": {"batch_size": 16}, "output_dir": "runs/demo",
    ...           "tasks": ["builtin:digits?classes=0-4", "builtin:digits?classes=5-9"]}
    >>> run = lsml_hub.meta_train(config)
    >>> model = lsml_hub.create_model(f"local-dir:{run.init_dir}", num_classes=10)
    >>> model.num_classes, model.pretrained_cfg["input_size"]
    (10, (3, 32, 32))
    >>> result = lsml_hub.finetune(model, "builtin:digits", steps=10, batch_size=32, max_train_samples=100,
    ...                            eval_every=10, progress=False)
    >>> result.final.step, result.train_samples
    (10, 100)
"""

from __future__ import annotations

from lsml_hub import models as _models  # noqa: F401  (registers the CIFAR ResNets with timm)
from lsml_hub._lazy import lazy_exports
from lsml_hub.version import __version__

# public name -> module that defines it; resolved lazily by __getattr__.
_LAZY = {
    "TaskSpec": "lsml_hub.data",
    "Task": "lsml_hub.data",
    "load_task": "lsml_hub.data",
    "create_model": "lsml_hub.hub",
    "save_init": "lsml_hub.hub",
    "load_init_config": "lsml_hub.hub",
    "list_inits": "lsml_hub.hub",
    "get_init": "lsml_hub.hub",
    "register_init": "lsml_hub.hub",
    "InitEntry": "lsml_hub.hub",
    "parse_init": "lsml_hub.hub",
    "InitRef": "lsml_hub.hub",
    "push_to_hub": "lsml_hub.hub",
    "meta_train": "lsml_hub.training",
    "finetune": "lsml_hub.metatest",
    "compare": "lsml_hub.metatest",
}

__all__ = ["__version__", *_LAZY]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(), ("__version__",))
