"""Which inits are available: registered at run time, in the local Hugging Face cache, or on the Hub.

Nothing is hard-coded: no init of this project is published yet, and an entry is listed only where
it was found (a registered Hub init may still need the network, or the cache, to load).
:func:`list_inits` gathers three sources, each entry naming its own (``lsml-hub list``, a fresh
process, sees the last two):

- ``registered``: named ``<arch>.<tag>`` (as timm names pretrained weights) by :func:`register_init`
  in this process, e.g. for private inits; the name resolves everywhere an init string is taken.
- ``cache``: lsml-hub inits in the Hugging Face cache (``HF_HUB_CACHE``), recognised by the
  ``"lsml"`` block of their ``config.json``; listed as ``hf-hub:owner/name[@revision]``, which
  loads them with ``HF_HUB_OFFLINE=1``. ``lsml-hub cache add FOLDER owner/name`` puts one there.
- ``hub``: models on the Hugging Face Hub tagged ``lsml-hub``, unless ``HF_HUB_OFFLINE`` is set;
  a Hub that cannot be reached is a logged warning, and the local entries are listed.
"""

from __future__ import annotations

import difflib
import fnmatch
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import timm
from huggingface_hub import HfApi, constants

from lsml_hub._hub_client import HUB_REQUEST_ERRORS, LIBRARY_NAME, hf_hub_init, repo_id_problem
from lsml_hub.errors import ConfigError, InitError, first_line
from lsml_hub.version import __version__

if TYPE_CHECKING:
    from huggingface_hub import ModelInfo

    from lsml_hub.hub.hf_cache import CachedInit

logger = logging.getLogger(__name__)

REGISTERED = "registered"
CACHE = "cache"
HUB = "hub"
#: Where a listed init comes from, in the order entries of one init string are merged.
ORIGINS = (REGISTERED, CACHE, HUB)
#: At most this many Hub models are listed (the most downloaded first).
HUB_LIST_LIMIT = 100


@dataclass(frozen=True)
class InitEntry:
    """A registered init: a short name for a Hub init, with what it is.

    Args:
        name: ``<architecture>.<tag>``, e.g. ``"resnet20_cifar.cts_mine"``.
        hf_hub_id: Hub repo holding the init (``"owner/name"``); the Hugging Face cache serves it offline.
        revision: Commit, tag or branch to pin; ``None`` means the repo's default branch.
        architecture: timm architecture name.
        algorithm: Meta-learning algorithm (``"cts"``, ``"reptile"``...).
        source_tasks: Names of the source tasks it was meta-trained on.
        input_size: ``(channels, height, width)`` it was trained at.
        metrics: Measured results (``{"digits100_accuracy": 0.97}``); empty until measured.
        license: License of the weights.
        description: One sentence for ``lsml-hub list``.

    Example:
        >>> InitEntry("resnet20_cifar.mine", "me/resnet20_cifar.mine", "v1", "resnet20_cifar", "cts",
        ...           ("svhn",), (3, 32, 32)).init
        'hf-hub:me/resnet20_cifar.mine@v1'
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
        problem = repo_id_problem(self.hf_hub_id) if isinstance(self.hf_hub_id, str) else "not a string"
        if problem:
            raise ConfigError(f"init {self.name!r}: hf_hub_id: {problem}")
        if self.revision is not None and (not isinstance(self.revision, str) or not self.revision.strip()):
            raise ConfigError(f"init {self.name!r}: revision must be a branch, tag or commit, or None; "
                              f"got {self.revision!r}")

    @property
    def tag(self) -> str:
        return self.name.partition(".")[2]

    @property
    def init(self) -> str:
        """The ``hf-hub:`` string that loads this entry, revision included when pinned."""
        return hf_hub_init(self.hf_hub_id, self.revision)


@dataclass(frozen=True)
class AvailableInit:
    """One line of :func:`list_inits`: an init string that loads here, and what is known about it.

    Args:
        init: What to pass to ``create_model``: a registered name or ``hf-hub:owner/name[@revision]``.
        origins: Where it was found: ``"registered"``, ``"cache"`` and/or ``"hub"``.
        hf_hub_id: Its Hub repo.
        revision: Its Hub revision, if not the default branch.
        architecture, algorithm, source_tasks, input_size: From its registry entry or ``config.json``;
            for an init seen only on the Hub, what its listing tells (the name's architecture, the
            card's algorithm and dataset tags), ``None`` (empty) for the rest.
        description: One sentence, for registered entries.

    Example:
        >>> _ = register_init(InitEntry("resnet20_cifar.mine", "me/resnet20_cifar.mine", None,
        ...                             "resnet20_cifar", "cts", ("svhn",), (3, 32, 32)))
        >>> [(e.init, e.origins, e.algorithm) for e in list_inits("resnet20_cifar.*", hub=False)]
        [('resnet20_cifar.mine', ('registered',), 'cts')]
    """

    init: str
    origins: tuple[str, ...]
    hf_hub_id: str | None = None
    revision: str | None = None
    architecture: str | None = None
    algorithm: str | None = None
    source_tasks: tuple[str, ...] = ()
    input_size: tuple[int, ...] | None = None
    description: str = ""

    def matches(self, pattern: str) -> bool:
        """Whether the shell-style ``pattern`` matches the init string or the Hub id."""
        return any(fnmatch.fnmatchcase(name, pattern) for name in (self.init, self.hf_hub_id or ""))


_REGISTRY: dict[str, InitEntry] = {}


def register_init(entry: InitEntry, *, overwrite: bool = False) -> InitEntry:
    """Add ``entry`` to this process's registry: its name then works wherever an init string is taken.

    The registry lives in the Python process (as timm's model registry does): a CLI command or torchrun
    worker knows a name only if code that registers it ran there first; ``hf-hub:`` strings work anywhere.

    Raises:
        ConfigError: The name is taken and ``overwrite`` is false.

    Example:
        >>> register_init(InitEntry("resnet20_cifar.mine", "me/resnet20_cifar.mine", None,
        ...                         "resnet20_cifar", "cts", ("svhn",), (3, 32, 32))).name
        'resnet20_cifar.mine'
        >>> get_init("resnet20_cifar.mine").init
        'hf-hub:me/resnet20_cifar.mine'
    """
    if entry.name in _REGISTRY and not overwrite:
        raise ConfigError(f"init {entry.name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[entry.name] = entry
    return entry


def get_init(name: str) -> InitEntry:
    """The registered entry called ``name``.

    Raises:
        InitError: No such registered name; the message suggests close names.

    Example:
        >>> get_init("resnet20_cifar.nothing")
        Traceback (most recent call last):
        ...
        lsml_hub.errors.InitError: no registered init 'resnet20_cifar.nothing' (none is registered)
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InitError(_unregistered_message(name)) from None


def is_registered(name: str) -> bool:
    """Whether ``name`` is a registered init name."""
    return name in _REGISTRY


def registered_names() -> list[str]:
    """The registered names, sorted."""
    return sorted(_REGISTRY)


def list_inits(pattern: str = "*", *, hub: bool | None = None) -> list[AvailableInit]:
    """The inits that can be loaded here, sorted by init string, filtered by the shell-style ``pattern``.

    Args:
        pattern: Matched against the init string and the Hub id (``"*cts*"``, ``"me/*"``).
        hub: Also list the Hub's lsml-hub inits; ``None`` (default) does unless ``HF_HUB_OFFLINE``
            is set. A Hub that cannot be reached is a logged warning; the local entries are listed.

    Example:
        >>> list_inits("*", hub=False)  # nothing registered, and an empty Hugging Face cache
        []
    """
    from lsml_hub.hub.hf_cache import cached_inits

    found = [*map(_from_entry, _REGISTRY.values()), *map(_from_cache, cached_inits())]
    if hub_searched(hub):
        found += hub_inits()
    return [e for e in _merge(found) if e.matches(pattern)]


def hub_searched(hub: bool | None = None) -> bool:
    """Whether :func:`list_inits` asks the Hub: ``hub``, or when ``None`` whether ``HF_HUB_OFFLINE`` is unset."""
    return (not constants.is_offline_mode()) if hub is None else hub


def hub_inits(limit: int = HUB_LIST_LIMIT) -> list[AvailableInit]:
    """Models on the Hub tagged ``lsml-hub`` (what ``lsml-hub push`` uploads); ``[]`` (logged) when unreachable.

    Example:
        >>> # needs the Hugging Face Hub (the examples run offline)
        >>> [e.init for e in hub_inits()]  # doctest: +SKIP
        ['hf-hub:me/resnet20_cifar.cts']
    """
    api = HfApi(library_name=LIBRARY_NAME, library_version=__version__)
    try:
        models = list(api.list_models(filter=LIBRARY_NAME, sort="downloads", limit=limit))
    except HUB_REQUEST_ERRORS as err:
        logger.warning("could not list lsml-hub inits on the Hugging Face Hub (%s); listing local inits only "
                       "(HF_HUB_OFFLINE=1 skips the Hub)", first_line(err))
        return []
    if len(models) >= limit:
        logger.info("listing the %d most downloaded lsml-hub inits of the Hub; "
                    "https://huggingface.co/models?other=%s has them all", limit, LIBRARY_NAME)
    return [_from_hub(model) for model in models]


def _from_entry(entry: InitEntry) -> AvailableInit:
    return AvailableInit(entry.name, (REGISTERED,), entry.hf_hub_id, entry.revision, entry.architecture,
                         entry.algorithm, tuple(entry.source_tasks), tuple(entry.input_size), entry.description)


def _from_cache(cached: CachedInit) -> AvailableInit:
    config = cached.config
    return AvailableInit(cached.init, (CACHE,), cached.repo_id, cached.revision, config.architecture,
                         config.algorithm_name, tuple(str(t.get("name")) for t in config.source_tasks),
                         config.input_size)


def _from_hub(model: ModelInfo) -> AvailableInit:
    # The Hub's listing holds the repo id and the card's tags, not config.json (of which it keeps a few
    # transformers keys only): the architecture comes from the <arch>.<tag> name the init format asks
    # for, the rule from the card's algorithm tag, the source datasets from the Hub's dataset: tags.
    from lsml_hub.algorithms import ALGORITHMS
    from lsml_hub.hub.card import algorithm_tag

    tags = list(model.tags or ())
    arch = model.id.split("/")[-1].partition(".")[0]
    rules = {algorithm_tag(name): name for name in ALGORITHMS}
    return AvailableInit(
        hf_hub_init(model.id), (HUB,), model.id,
        architecture=arch if timm.is_model(arch) else None,
        algorithm=next((rules[t] for t in tags if t in rules), None),
        source_tasks=tuple(t.removeprefix("dataset:") for t in tags if t.startswith("dataset:")),
    )


def _merge(found: Iterable[AvailableInit]) -> list[AvailableInit]:
    """One entry per init string: the first found keeps its details, and gains the others' origins."""
    merged: dict[str, AvailableInit] = {}
    for entry in found:
        first = merged.get(entry.init)
        if first is None:
            merged[entry.init] = entry
        elif not set(entry.origins) <= set(first.origins):
            origins = tuple(o for o in ORIGINS if o in first.origins or o in entry.origins)
            merged[entry.init] = replace(first, origins=origins)
    return [merged[init] for init in sorted(merged)]


def _unregistered_message(name: str) -> str:
    close = difflib.get_close_matches(name, registered_names(), n=3, cutoff=0.6)
    if close:
        return f"no registered init {name!r}; did you mean {', '.join(close)}?"
    known = ", ".join(registered_names())
    return f"no registered init {name!r} " + (f"(registered: {known})" if known else "(none is registered)")
