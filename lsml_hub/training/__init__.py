"""Meta-training: CTS and its baselines over many source tasks, on one process or many (torchrun)."""

from lsml_hub.training.config import InnerConfig, MetaTrainConfig, apply_overrides, load_config
from lsml_hub.training.loop import MetaTrainer, MetaTrainResult, meta_train

__all__ = ["InnerConfig", "MetaTrainConfig", "MetaTrainResult", "MetaTrainer", "apply_overrides", "load_config",
           "meta_train"]
