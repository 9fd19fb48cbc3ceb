"""The init hub: save, fetch, verify, list, register, publish and push meta-learned initializations.

An init is a folder (and a Hub repo) in timm's layout: ``model.safetensors`` (headless backbone),
``config.json`` (timm keys plus an ``"lsml"`` block with the weights' sha256) and ``README.md``.
Init strings (:func:`parse_init`): ``hf-hub:owner/name[@rev]``, ``local-dir:PATH``, a folder, a
registered name, ``scratch:ARCH`` and ``timm:ARCH[.TAG]``.

Example:
    >>> import timm, tempfile, lsml_hub
    >>> folder = lsml_hub.save_init(tempfile.mkdtemp() + "/init", timm.create_model("resnet20_cifar"),
    ...                             lsml={"algorithm": {"name": "cts"}})
    >>> lsml_hub.create_model(f"local-dir:{folder}", num_classes=5).num_classes
    5
"""

from lsml_hub.hub.card import TrainingReport, build_model_card
from lsml_hub.hub.config import InitConfig
from lsml_hub.hub.format import save_init, sha256_file, verify_init
from lsml_hub.hub.hf_cache import add_to_hub_cache, cached_inits
from lsml_hub.hub.load import create_model, create_model_as, load_init_config
from lsml_hub.hub.publish import PublishError, publish_run
from lsml_hub.hub.push import PushError, PushResult, push_to_hub
from lsml_hub.hub.registry import AvailableInit, InitEntry, get_init, list_inits, register_init
from lsml_hub.hub.resolve import InitRef, parse_init

__all__ = [
    "AvailableInit", "InitConfig", "InitEntry", "InitRef", "PublishError", "PushError", "PushResult",
    "TrainingReport", "add_to_hub_cache", "build_model_card", "cached_inits", "create_model", "create_model_as",
    "get_init", "list_inits", "load_init_config", "parse_init", "publish_run", "push_to_hub", "register_init",
    "save_init", "sha256_file", "verify_init",
]
