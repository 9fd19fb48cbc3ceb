"""Put an init's tensors into a model: strict key and shape checks, then a copy-free load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from torch import nn

from lsml_hub.errors import InitError, IntegrityError, first_line

# Loaders that only copy tensors by name (BatchNorm's adds a counter missing from old checkpoints,
# which an init always has), so handing the model the file's tensors directly is equivalent.
_PLAIN_LOADERS = (nn.Module._load_from_state_dict, nn.BatchNorm2d._load_from_state_dict)


@dataclass
class ModelState:
    """A model's state-dict tensors and module names, found in one walk of its module tree.

    Attributes:
        tensors: State-dict key -> the model's own parameter or persistent buffer (live, not detached,
            when ``plain``; otherwise what ``model.state_dict()`` returns).
        module_names: ``id(module)`` -> the module's qualified name ("" for the root).
        plain: Every module saves and loads its tensors by name only (no hooks, no custom
            ``_save_to_state_dict``/``_load_from_state_dict``, no extra state), so the state-dict keys
            are exactly ``tensors``' and handing a module the file's tensors equals ``load_state_dict``.
    """

    tensors: dict[str, torch.Tensor]
    module_names: dict[int, str]
    plain: bool


def read_tensors(weights: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file, on the CPU; a broken file raises :class:`IntegrityError`."""
    try:
        return safetensors.torch.load_file(weights, device="cpu")
    except (safetensors.SafetensorError, OSError) as err:
        raise IntegrityError(f"{weights} is not a valid safetensors file: {first_line(err)}") from None


def read_weights(weights: Path) -> bytes:
    """The whole weights file; an unreadable one raises :class:`InitError` naming it."""
    try:
        return weights.read_bytes()
    except OSError as err:
        raise InitError(f"cannot read {weights}: {first_line(err)}") from None


def tensors_from_bytes(data: bytes, weights: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file already read into ``data`` (each in its own writable memory).

    Loading the very bytes that were hashed leaves no window for the file to change in between, and
    for small files it is 3x faster than ``load_file``'s per-tensor reads.

    Raises:
        IntegrityError: ``data`` is not valid safetensors (``weights`` names it in the message).
    """
    try:
        return safetensors.torch.load(data)
    except safetensors.SafetensorError as err:
        raise IntegrityError(f"{weights} is not a valid safetensors file: {first_line(err)}") from None


def model_state(model: nn.Module) -> ModelState:
    """Walk ``model`` once for its state-dict tensors and module names.

    On a small model each walk of the module tree (``state_dict()``, ``named_modules()``...) costs
    about as much as hashing its weights, so loading walks it once.

    Example:
        >>> import timm
        >>> model = timm.create_model("test_resnet", num_classes=5)
        >>> state = model_state(model)
        >>> sorted(state.tensors) == sorted(model.state_dict()), state.plain
        (True, True)
    """
    plain = type(model).load_state_dict is nn.Module.load_state_dict  # the rest is checked per module, root too
    tensors: dict[str, torch.Tensor] = {}
    module_names: dict[int, str] = {}
    for prefix, module in model.named_modules(remove_duplicate=False):  # state_dict's order and sharing
        module_names.setdefault(id(module), prefix)
        plain = plain and _is_plain(module)
        dot = f"{prefix}." if prefix else ""
        tensors.update((dot + name, t) for name, t in module._parameters.items() if t is not None)
        tensors.update((dot + name, t) for name, t in module._buffers.items()
                       if t is not None and name not in module._non_persistent_buffers_set)
    if not plain:
        tensors = model.state_dict()  # a module customizes its state dict: only its keys are the truth
    return ModelState(tensors, module_names, plain)


def load_backbone(model: nn.Module, tensors: dict[str, torch.Tensor], weights: Path) -> None:
    """Load an init's ``tensors`` (read from ``weights``) into ``model``'s backbone, strictly.

    Every non-classifier tensor of the model must come from the file. Unlike timm's loader, which
    turns non-strict as soon as the head size differs, a missing, unexpected or mis-shaped tensor is
    an error here. A model built on the meta device is given the file's tensors as its own; otherwise
    the model's parameters are kept as objects and take the file's tensors as their data.

    Raises:
        InitError: A backbone tensor is missing, the file has tensors the model lacks, or a shape differs.

    Example:
        >>> import timm, tempfile, lsml_hub
        >>> folder = lsml_hub.save_init(tempfile.mkdtemp() + "/init", timm.create_model("test_resnet"),
        ...                             lsml={"algorithm": {"name": "cts"}})
        >>> weights = folder / "model.safetensors"
        >>> model = timm.create_model("test_resnet", num_classes=5)
        >>> load_backbone(model, read_tensors(weights), weights)  # the 5-class head keeps its fresh weights
        >>> load_backbone(timm.create_model("resnet20_cifar"), read_tensors(weights), weights)
        Traceback (most recent call last):
        ...
        lsml_hub.errors.InitError: ...model.safetensors does not fit resnet20_cifar: missing backbone tensors ...
    """
    state = model_state(model)
    check_fit(model, state, tensors, weights)
    on_meta = any(t.is_meta for t in state.tensors.values())
    if on_meta or not (state.plain and _swap_in(state, tensors)):
        with torch.no_grad():
            model.load_state_dict(tensors, strict=False, assign=on_meta)


def check_fit(model: nn.Module, state: ModelState, tensors: dict[str, torch.Tensor], weights: Path) -> None:
    """Raise :class:`InitError` naming missing, unexpected and mis-shaped tensors (a few of each)."""
    own = state.tensors
    head = classifier_keys(model, state)
    missing = [k for k in own if k not in head and k not in tensors]
    unexpected = [k for k in tensors if k not in own or k in head]
    mismatched = [k for k in tensors if k in own and k not in head and tensors[k].shape != own[k].shape]
    problems = [f"{label} {_few(keys)}" for label, keys in (
        ("missing backbone tensors", missing), ("unexpected tensors", unexpected),
        ("shape mismatches", mismatched)) if keys]
    if problems:
        arch = getattr(model, "pretrained_cfg", {}).get("architecture", type(model).__name__)
        raise InitError(f"{weights} does not fit {arch}: {'; '.join(problems)}")


def classifier_keys(model: nn.Module, state: ModelState | None = None) -> set[str]:
    """State-dict keys of ``model``'s classifier (empty when headless), found through timm's API."""
    state = model_state(model) if state is None else state
    prefixes = set()
    cfg_classifier = getattr(model, "pretrained_cfg", {}).get("classifier")
    if cfg_classifier:
        prefixes.update([cfg_classifier] if isinstance(cfg_classifier, str) else cfg_classifier)
    get_classifier = getattr(model, "get_classifier", None)
    if get_classifier is not None:
        heads = get_classifier()
        for head in heads if isinstance(heads, (tuple, list)) else (heads,):
            name = state.module_names.get(id(head))
            if name:  # a headless timm model returns a fresh nn.Identity, which is in no module tree
                prefixes.add(name)
    return {k for k in state.tensors if any(k.startswith(p + ".") for p in prefixes)}


def _is_plain(module: nn.Module) -> bool:
    cls = type(module)
    return (cls._load_from_state_dict in _PLAIN_LOADERS
            and cls.state_dict is nn.Module.state_dict  # a child's own state_dict() changes the keys too
            and cls._save_to_state_dict is nn.Module._save_to_state_dict
            and cls.get_extra_state is nn.Module.get_extra_state
            and not (module._load_state_dict_pre_hooks or module._load_state_dict_post_hooks
                     or module._state_dict_hooks or module._state_dict_pre_hooks))


def _swap_in(state: ModelState, tensors: dict[str, torch.Tensor]) -> bool:
    # Give each parameter and buffer the file's tensor as its data: no second copy of the weights and
    # no per-module load_state_dict walk, which on small models costs more than building them.
    # Parameters stay the same objects (ties and requires_grad kept). Returns False, having changed
    # nothing, when a dtype or device differs: load_state_dict then copies and casts.
    own = state.tensors
    if any(t.dtype != own[k].dtype or t.device != own[k].device for k, t in tensors.items()):
        return False
    for key, tensor in tensors.items():
        own[key].data = tensor
    return True


def _few(keys: list[str], n: int = 3) -> str:
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return f"{', '.join(keys[:n])}{more}"
