"""torch.hub entry points: meta-learned initializations for timm backbones.

Importing this file does no I/O; weights are fetched (through the Hugging Face cache) and their
sha256 checked when an entry point is called. ``init`` takes every init string of
``lsml_hub.create_model``: ``hf-hub:owner/name[@revision]``, ``local-dir:PATH``, a folder path, a
registered name, ``scratch:ARCH`` (random weights) or ``timm:ARCH[.TAG]`` (timm's pretrained weights,
from the Hugging Face cache only).

Example:
    >>> import torch
    >>> # needs a clone of lsml-hub at path/to/lsml-hub and an init folder (`lsml-hub meta-train`)
    >>> model = torch.hub.load("path/to/lsml-hub", "meta_init", init="local-dir:runs/demo/inits/cts",
    ...                        num_classes=10, source="local")  # doctest: +SKIP
"""

from lsml_hub.hub.load import create_model as _create_model
from lsml_hub.hub.load import create_model_as as _create_model_as

dependencies = ["torch", "timm", "safetensors", "huggingface_hub"]


def meta_init(init, *, num_classes=0, pretrained=True, **kwargs):
    """Any init: a timm model with the init's backbone and a fresh head of ``num_classes`` (0: headless).

    Args:
        init: ``hf-hub:owner/name[@revision]``, ``local-dir:PATH``, a folder path, a registered name,
            ``scratch:ARCH`` or ``timm:ARCH[.TAG]``.
        num_classes: Classes of the new head.
        pretrained: False gives the init's architecture with random weights.
        **kwargs: Passed to ``timm.create_model``.

    Example:
        >>> # needs a clone of lsml-hub at path/to/lsml-hub, and the Hugging Face Hub for hf-hub:
        >>> model = torch.hub.load("path/to/lsml-hub", "meta_init", init="hf-hub:owner/name",
        ...                        num_classes=10, source="local")  # doctest: +SKIP
        >>> model = torch.hub.load("path/to/lsml-hub", "meta_init", init="scratch:resnet20_cifar",
        ...                        num_classes=10, source="local")  # doctest: +SKIP
    """
    return _create_model(init, num_classes=num_classes, pretrained=pretrained, **kwargs)


def resnet20_cifar(*, init=None, num_classes=0, pretrained=True, **kwargs):
    """CIFAR-style ResNet-20 (the paper's backbone) with a meta-learned init.

    Args:
        init: A ``resnet20_cifar`` init (required with ``pretrained=True``: none is published yet;
            ``lsml-hub list`` shows those available here).
        num_classes: Classes of the new head (0: headless).
        pretrained: False gives random weights without fetching anything.
        **kwargs: Passed to ``timm.create_model``.

    Example:
        >>> # needs a clone of lsml-hub at path/to/lsml-hub and the init of
        >>> # `lsml-hub meta-train recipes/configs/paper_cts.yaml` (the demo trains test_resnet inits)
        >>> model = torch.hub.load("path/to/lsml-hub", "resnet20_cifar", init="local-dir:runs/paper_cts/init",
        ...                        num_classes=10, source="local")  # doctest: +SKIP
    """
    return _create_model_as("resnet20_cifar", init, num_classes=num_classes, pretrained=pretrained, **kwargs)


def test_resnet(*, init=None, num_classes=0, pretrained=True, **kwargs):
    """timm's tiny ``test_resnet`` with a meta-learned init (CPU-scale demos).

    Args:
        init: A ``test_resnet`` init (required with ``pretrained=True``: none is published yet;
            ``lsml-hub list`` shows those available here).
        num_classes: Classes of the new head (0: headless).
        pretrained: False gives random weights without fetching anything.
        **kwargs: Passed to ``timm.create_model``.

    Example:
        >>> # needs a clone of lsml-hub at path/to/lsml-hub and an init folder (`lsml-hub meta-train`)
        >>> model = torch.hub.load("path/to/lsml-hub", "test_resnet", init="local-dir:runs/demo/inits/cts",
        ...                        num_classes=10, source="local")  # doctest: +SKIP
    """
    return _create_model_as("test_resnet", init, num_classes=num_classes, pretrained=pretrained, **kwargs)


test_resnet.__test__ = False  # an entry point named like a test: pytest must not collect it when given this file
