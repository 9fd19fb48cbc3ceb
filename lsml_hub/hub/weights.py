"""Put an init's tensors into a model: strict key and shape checks, then a copy-free load."""

from __future__ import annotations

from pathlib import Path

import safetensors
import safetensors.torch
import torch
from torch import nn

from lsml_hub.errors import InitError, IntegrityError, first_line

# Loaders that only copy tensors by name (BatchNorm's adds a counter missing from old checkpoints,
# which an init always has), so handing the model the file's tensors directly is equivalent.
_PLAIN_LOADERS = (nn.Module._load_from_state_dict, nn.BatchNorm2d._load_from_state_dict)


def read_tensors(weights: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file, on the CPU; a broken file raises :class:`IntegrityError`."""
    try:
        return safetensors.torch.load_file(weights, device="cpu")
    except (safetensors.SafetensorError, OSError) as err:
        raise IntegrityError(f"{weights} is not a valid safetensors file: {first_line(err)}") from None


def load_backbone(model: nn.Module, weights: Path) -> None:
    """Load ``weights`` into ``model``'s backbone; every non-classifier tensor must come from the file.

    Unlike timm's loader, which turns non-strict as soon as the head size differs, a missing,
    unexpected or mis-shaped tensor is an error here.

    Raises:
        IntegrityError: The file is not valid safetensors.
        InitError: A backbone tensor is missing, the file has tensors the model lacks, or a shape differs.

    Example:
        >>> model = timm.create_model("test_resnet", num_classes=5)  # doctest: +SKIP
        >>> load_backbone(model, Path("runs/demo/inits/cts/model.safetensors"))  # doctest: +SKIP
    """
    tensors = read_tensors(weights)
    own = model.state_dict()
    check_fit(model, own, tensors, weights)
    on_meta = any(t.is_meta for t in own.values())
    if on_meta or not _swap_in(model, tensors):
        with torch.no_grad():
            # A model built on the meta device has no storage to copy into: the file's tensors become its own.
            model.load_state_dict(tensors, strict=False, assign=on_meta)


def check_fit(model: nn.Module, own: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor],
              weights: Path) -> None:
    """Raise :class:`InitError` naming missing, unexpected and mis-shaped tensors (a few of each)."""
    head = classifier_keys(model, own)
    missing = [k for k in own if k not in head and k not in tensors]
    unexpected = [k for k in tensors if k not in own or k in head]
    mismatched = [k for k in tensors if k in own and k not in head and tensors[k].shape != own[k].shape]
    problems = [f"{label} {_few(keys)}" for label, keys in (
        ("missing backbone tensors", missing), ("unexpected tensors", unexpected),
        ("shape mismatches", mismatched)) if keys]
    if problems:
        arch = getattr(model, "pretrained_cfg", {}).get("architecture", type(model).__name__)
        raise InitError(f"{weights} does not fit {arch}: {'; '.join(problems)}")


def classifier_keys(model: nn.Module, state: dict[str, torch.Tensor] | None = None) -> set[str]:
    """State-dict keys of ``model``'s classifier (empty when headless), found through timm's API."""
    state = model.state_dict() if state is None else state
    prefixes = set()
    cfg_classifier = getattr(model, "pretrained_cfg", {}).get("classifier")
    if cfg_classifier:
        prefixes.update([cfg_classifier] if isinstance(cfg_classifier, str) else cfg_classifier)
    get_classifier = getattr(model, "get_classifier", None)
    if get_classifier is not None:
        heads = get_classifier()
        ids = {id(h) for h in (heads if isinstance(heads, (tuple, list)) else (heads,))}
        prefixes.update(name for name, module in model.named_modules() if id(module) in ids and name)
    return {k for k in state if any(k.startswith(p + ".") for p in prefixes)}


def _swap_in(model: nn.Module, tensors: dict[str, torch.Tensor]) -> bool:
    # Give each parameter and buffer the file's tensor as its data: no second copy of the weights and
    # no per-module load_state_dict walk, which on small models costs more than building them.
    # Parameters stay the same objects (ties and requires_grad kept). Falls back (returns False)
    # whenever anything could customize loading or a dtype/device differs.
    if type(model).load_state_dict is not nn.Module.load_state_dict:
        return False
    targets: dict[str, torch.Tensor] = {}
    for prefix, module in model.named_modules(remove_duplicate=False):  # one walk: checks and tensors
        if (type(module)._load_from_state_dict not in _PLAIN_LOADERS
                or module._load_state_dict_pre_hooks or module._load_state_dict_post_hooks):
            return False
        dot = f"{prefix}." if prefix else ""
        targets.update((dot + name, t) for name, t in module._parameters.items() if t is not None)
        targets.update((dot + name, t) for name, t in module._buffers.items() if t is not None)
    if any(k not in targets or t.dtype != targets[k].dtype or t.device != targets[k].device
           for k, t in tensors.items()):
        return False
    for key, tensor in tensors.items():
        targets[key].data = tensor
    return True


def _few(keys: list[str], n: int = 3) -> str:
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return f"{', '.join(keys[:n])}{more}"
