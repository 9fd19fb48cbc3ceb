"""The registry: a typed table of known inits, named ``<arch>.<tag>`` as timm names pretrained weights.

No init has been published to the Hugging Face Hub yet. The entries below name the Hub ids and
source tasks the project intends to publish under (``revision`` stays ``None`` until a commit is
pinned, ``metrics`` stay empty until measured); loading one today fails with a clear "not on the
Hub / not cached" error. :func:`register_init` adds entries at run time, e.g. for private inits.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field

from lsml_hub.errors import ConfigError, InitError

# Held-out target tasks are not listed: an init's source tasks are what it was meta-trained on.
# The names are the task names of the recipes that make the inits (tests/test_hub_registry.py checks):
# recipes/configs/paper_{cts,reptile}.yaml and recipes/configs/cpu_demo.yaml.
_PAPER8 = (
    "tiny_imagenet_0-99", "tiny_imagenet_100-199", "cifar100", "stanford_dogs",
    "fgvc_aircraft", "cub200", "fashion_mnist", "svhn",
)
_GLYPHS4 = ("latin_upper", "greek", "cyrillic", "printed_digits")


@dataclass(frozen=True)
class InitEntry:
    """One known init.

    Args:
        name: ``<architecture>.<tag>``, e.g. ``"resnet20_cifar.cts_paper8"``.
        hf_hub_id: Hub repo holding the init (``"owner/name"``).
        revision: Commit, tag or branch to pin; ``None`` means the repo's default branch.
        architecture: timm architecture name.
        algorithm: Meta-learning algorithm (``"cts"``, ``"reptile"``...).
        source_tasks: Names of the source tasks it was meta-trained on.
        input_size: ``(channels, height, width)`` it was trained at.
        metrics: Measured results (``{"digits100_accuracy": 0.97}``); empty until measured.
        license: License of the weights.
        description: One sentence for ``lsml-hub list``.

    Example:
        >>> get_init("resnet20_cifar.cts_paper8").init
        'hf-hub:lsml-hub/resnet20_cifar.cts_paper8'
    """

    name: str
    hf_hub_id: str
    revision: str | None
    architecture: str
    algorithm: str
    source_tasks: tuple[str, ...]
    input_size: tuple[int, int, int]
    metrics: Mapping[str, float] = field(default_factory=dict)
    license: str = "apache-2.0"
    description: str = ""

    def __post_init__(self) -> None:
        arch, dot, tag = self.name.partition(".")
        if arch != self.architecture or not dot or not tag:
            raise ConfigError(f"init name {self.name!r} must be '{self.architecture}.<tag>'")

    @property
    def tag(self) -> str:
        return self.name.partition(".")[2]

    @property
    def init(self) -> str:
        """The ``hf-hub:`` string that loads this entry, revision included when pinned."""
        rev = f"@{self.revision}" if self.revision else ""
        return f"hf-hub:{self.hf_hub_id}{rev}"


_REGISTRY: dict[str, InitEntry] = {}


def register_init(entry: InitEntry, *, overwrite: bool = False) -> InitEntry:
    """Add ``entry`` to the registry so its name resolves everywhere (create_model, hubconf, CLI).

    Raises:
        ConfigError: The name is taken and ``overwrite`` is false.

    Example:
        >>> register_init(InitEntry("resnet20_cifar.mine", "me/resnet20_cifar.mine", None,
        ...                         "resnet20_cifar", "cts", ("svhn",), (3, 32, 32))).name  # doctest: +SKIP
        'resnet20_cifar.mine'
    """
    if entry.name in _REGISTRY and not overwrite:
        raise ConfigError(f"init {entry.name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[entry.name] = entry
    return entry


def list_inits(pattern: str = "*") -> list[InitEntry]:
    """Registered inits whose name matches the shell-style ``pattern``, sorted by name.

    Example:
        >>> [e.name for e in list_inits("resnet20_cifar.*")][:1]
        ['resnet20_cifar.cts_paper8']
    """
    return [_REGISTRY[name] for name in sorted(_REGISTRY) if fnmatch.fnmatchcase(name, pattern)]


def get_init(name: str) -> InitEntry:
    """The entry called ``name``.

    Raises:
        InitError: Unknown name; the message suggests close names.

    Example:
        >>> get_init("resnet20_cifar.cts_paper8").algorithm
        'cts'
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InitError(_unknown_name_message(name)) from None


def is_registered(name: str) -> bool:
    """Whether ``name`` is a registry name."""
    return name in _REGISTRY


def _unknown_name_message(name: str) -> str:
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else f"known inits: {', '.join(sorted(_REGISTRY))}"
    return (f"unknown init {name!r}: not in the registry ({hint}); "
            "a folder needs a '/' or the local-dir: prefix, a Hub repo the hf-hub: prefix")


for _entry in (
    InitEntry(
        "resnet20_cifar.cts_paper8", "lsml-hub/resnet20_cifar.cts_paper8", None, "resnet20_cifar", "cts",
        _PAPER8, (3, 32, 32),
        description="CTS over the paper's 8 heterogeneous source tasks (planned, not yet on the Hub)",
    ),
    InitEntry(
        "resnet20_cifar.reptile_paper8", "lsml-hub/resnet20_cifar.reptile_paper8", None, "resnet20_cifar",
        "reptile", _PAPER8, (3, 32, 32),
        description="Reptile baseline over the same 8 source tasks (planned, not yet on the Hub)",
    ),
    InitEntry(
        "test_resnet.cts_glyphs4", "lsml-hub/test_resnet.cts_glyphs4", None, "test_resnet", "cts",
        _GLYPHS4, (3, 32, 32),
        description="CPU-scale CTS over cpu_demo.yaml's 4 builtin glyph tasks, for demos (planned, not yet on the Hub)",
    ),
):
    register_init(_entry)
