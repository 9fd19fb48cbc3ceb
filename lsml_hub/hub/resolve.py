"""The init grammar: turn an init string into an :class:`InitRef`, and an init's files into files on this machine.

Every entry point (``create_model``, ``finetune``, ``compare``, ``lsml-hub info``, ``hubconf.py``)
takes the same strings, parsed here by :func:`parse_init`:

=============================== ==========================================================================
``hf-hub:owner/name[@revision]`` an init on the Hugging Face Hub, or in the local HF cache (``HF_HUB_OFFLINE=1``)
``local-dir:PATH``               an init folder
``PATH`` (with a ``/``)          an init folder too (a bare name that is an existing folder also counts)
``NAME``                         a registered init (:func:`~lsml_hub.hub.registry.register_init`)
``scratch:ARCH``                 random weights of timm architecture ``ARCH`` (nothing is fetched)
``timm:ARCH[.TAG]``              timm's pretrained weights (default tag if none), from the HF cache only
=============================== ==========================================================================

Hub files come through ``hf_hub_download``, so the Hugging Face cache, ``HF_HUB_OFFLINE`` and
``HF_HUB_CACHE`` behave as everywhere else. ``timm:`` weights are never downloaded: a run must not
reach for the network in its middle, so they are read from the cache or refused with the
``hf download`` command that fetches them.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import timm
from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
from huggingface_hub.errors import (
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id

from lsml_hub._hub_client import COMMIT_PATTERN, LIBRARY_NAME, validation_reason
from lsml_hub.errors import ConfigError, InitError, first_line
from lsml_hub.hub.config import CONFIG_FILE, WEIGHTS_FILE
from lsml_hub.hub.registry import get_init, is_registered, registered_names
from lsml_hub.run_layout import init_of_run_hint
from lsml_hub.version import __version__

HF_HUB = "hf-hub"
LOCAL_DIR = "local-dir"
SCRATCH = "scratch"
TIMM = "timm"
#: The kinds whose model is a timm architecture with its own weights, not an init folder.
ARCHITECTURE_KINDS = (SCRATCH, TIMM)

#: Every form an init string can take, for error messages.
VALID_FORMS = ("hf-hub:owner/name[@revision], local-dir:PATH, a folder path, a name registered in this Python "
               "process (lsml_hub.register_init), scratch:ARCH (random weights) or timm:ARCH[.TAG] "
               "(timm's pretrained weights)")

# Same rule as timm: a scheme has 2+ characters, so "C:\\..." stays a Windows path.
_SCHEME = re.compile(r"([a-zA-Z][a-zA-Z0-9+.\-_]+):(.*)", re.DOTALL)


@dataclass(frozen=True)
class InitRef:
    """Where an init lives.

    Args:
        kind: ``"hf-hub"``, ``"local-dir"``, ``"scratch"`` or ``"timm"``.
        location: Hub repo id, folder path, or (``scratch``/``timm``) timm model name; a ``timm``
            location always carries its pretrained tag (``"resnet18.a1_in1k"``).
        revision: Hub revision (branch, tag or commit); ``None`` is the default branch.
        name: Registered name it was resolved from, if any.

    Example:
        >>> str(parse_init("hf-hub:me/resnet20_cifar.cts@v1"))
        'hf-hub:me/resnet20_cifar.cts@v1'
        >>> parse_init("timm:resnet18").location, parse_init("scratch:resnet20_cifar").architecture
        ('resnet18.a1_in1k', 'resnet20_cifar')
    """

    kind: str
    location: str
    revision: str | None = None
    name: str | None = None

    def __str__(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        return f"{self.kind}:{self.location}{rev}"

    @property
    def architecture(self) -> str | None:
        """The timm architecture of a ``scratch:``/``timm:`` ref; ``None`` for inits (their config.json says)."""
        if self.kind not in ARCHITECTURE_KINDS:
            return None
        return self.location.partition(".")[0]

    def download_command(self) -> str:
        """The ``hf download`` command that fetches this Hub init (for messages)."""
        return f"hf download {self.location}" + (f" --revision {self.revision}" if self.revision else "")


@dataclass(frozen=True)
class InitFiles:
    """An init's files on this machine (a Hub snapshot folder or a local folder)."""

    ref: InitRef
    folder: Path
    weights: Path | None

    @property
    def config(self) -> Path:
        return self.folder / CONFIG_FILE


def parse_init(init: str | os.PathLike | InitRef) -> InitRef:
    """Parse an init string (see the module docstring) without touching the network.

    Only a bare name is looked up: in the registry, else as an existing folder. An :class:`InitRef`
    is returned as it is.

    Raises:
        InitError: Unknown source prefix, malformed Hub id or revision, an unknown bare name (with
            close registered names), or ``timm:`` of an architecture timm has no pretrained weights for.
        ConfigError: ``scratch:``/``timm:`` names a model or pretrained tag timm does not know.

    Example:
        >>> parse_init("local-dir:runs/demo/inits/cts")
        InitRef(kind='local-dir', location='runs/demo/inits/cts', revision=None, name=None)
        >>> parse_init("scratch:resnet20_cifar")
        InitRef(kind='scratch', location='resnet20_cifar', revision=None, name=None)
    """
    if isinstance(init, InitRef):
        return init
    if isinstance(init, os.PathLike):
        return InitRef(LOCAL_DIR, os.fspath(init))
    if not isinstance(init, str) or not init:
        raise InitError(f"init must be a non-empty string or path, got {init!r}; valid: {VALID_FORMS}")
    match = _SCHEME.fullmatch(init)
    if match:
        return _parse_prefixed(init, match.group(1).lower(), match.group(2))
    if is_registered(init):
        entry = get_init(init)
        return InitRef(HF_HUB, entry.hf_hub_id, entry.revision, name=entry.name)
    if _looks_like_path(init):
        return InitRef(LOCAL_DIR, init)
    raise InitError(_unknown_name_message(init))


def _parse_prefixed(init: str, scheme: str, rest: str) -> InitRef:
    if not rest:
        raise InitError(f"init {init!r} has nothing after '{scheme}:'; valid: {VALID_FORMS}")
    if scheme == LOCAL_DIR:
        return InitRef(LOCAL_DIR, rest)
    if scheme == HF_HUB:
        return _parse_hub(init, rest)
    if scheme in ARCHITECTURE_KINDS:
        return _parse_architecture(init, scheme, rest)
    raise InitError(f"unknown init source {scheme!r} in {init!r}; valid: {VALID_FORMS}")


def _parse_hub(init: str, rest: str) -> InitRef:
    repo_id, at, revision = rest.partition("@")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise InitError(f"bad Hub id in {init!r}: {validation_reason(err)}; use hf-hub:owner/name[@revision]") from None
    if at and (not revision or "@" in revision):
        raise InitError(f"bad revision in {init!r}: use hf-hub:owner/name@revision with one '@'")
    return InitRef(HF_HUB, repo_id, revision or None)


def _parse_architecture(init: str, kind: str, name: str) -> InitRef:
    """``scratch:ARCH`` or ``timm:ARCH[.TAG]``: the model must be timm's, a ``timm`` one with Hub weights."""
    if "@" in name:
        raise InitError(f"{init!r} takes no revision; use {kind}:ARCH" + ("[.TAG]" if kind == TIMM else ""))
    arch, dot, tag = name.partition(".")
    if dot and not tag:
        raise InitError(f"{init!r} has an empty tag after '.'; use {kind}:{arch}, or {kind}:{arch}.TAG")
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; close names: {', '.join(close)}" if close else "; timm.list_models() lists them"
        raise ConfigError(f"unknown model {arch!r} in {init!r}: not a timm architecture{hint}")
    known_tags = timm.list_pretrained(f"{arch}.*")
    if tag and name not in known_tags:
        raise ConfigError(f"unknown tag {tag!r} of {arch} in {init!r}; known: {', '.join(known_tags) or 'none'}")
    if kind == SCRATCH:
        return InitRef(SCRATCH, name)
    tag = _hub_weights_tag(name)
    if tag is None:
        raise InitError(f"timm has no pretrained weights on the Hugging Face Hub for {arch} (in {init!r}); "
                        f"use scratch:{arch} for random weights, or an init of {arch}")
    return InitRef(TIMM, f"{arch}.{tag}")


def _hub_weights_tag(name: str) -> str | None:
    """The pretrained tag of timm's ``name`` (``arch`` or a known ``arch.tag``) if its weights are on the Hub."""
    cfg = timm.models.get_pretrained_cfg(name)
    return cfg.tag if cfg is not None and cfg.hf_hub_id and cfg.tag else None


def _looks_like_path(init: str) -> bool:
    return any(sep in init for sep in ("/", "\\")) or init.startswith((".", "~")) or Path(init).is_dir()


def _unknown_name_message(name: str) -> str:
    close = difflib.get_close_matches(name, registered_names(), n=3, cutoff=0.6)
    arch, _, tag = name.partition(".")
    if close:
        hint = f"did you mean {', '.join(close)}?"
    elif timm.is_model(arch) and (name in timm.list_pretrained(name) if tag else _hub_weights_tag(arch)):
        hint = f"for timm's {name} use timm:{name} (pretrained weights) or scratch:{name} (random weights)"
    elif timm.is_model(arch):
        hint = f"for timm's {arch} use scratch:{arch} (random weights)"
    else:
        hint = "`lsml-hub list` shows the inits that load here, as hf-hub: strings"
    return f"unknown init {name!r}: not a registered name nor a folder; {hint}; valid: {VALID_FORMS}"


def fetch_init(ref: InitRef, *, cache_dir: str | os.PathLike | None = None, weights: bool = True) -> InitFiles:
    """Locate (and for the Hub, download or find in the cache) ``config.json`` and, if asked, the weights.

    Both Hub files come from the same commit: the weights are fetched at the commit the config
    resolved to, so a branch moving in between cannot mix two inits.

    Raises:
        InitError: Folder or file missing, Hub repo/revision/file not found, offline and not cached, or
            ``ref`` is a ``scratch:``/``timm:`` model (no init files).
    """
    if ref.kind in ARCHITECTURE_KINDS:
        raise InitError(f"{ref} is {_describe(ref)}, not an init: it has no {CONFIG_FILE} to read; "
                        f"build it with lsml_hub.create_model({str(ref)!r})")
    if ref.kind == LOCAL_DIR:
        return _local_files(ref, weights)
    config = _download(ref, CONFIG_FILE, ref.revision, cache_dir)
    files = InitFiles(ref, config.parent, None)
    return fetch_weights(files, cache_dir=cache_dir) if weights else files


def fetch_weights(files: InitFiles, *, cache_dir: str | os.PathLike | None = None) -> InitFiles:
    """``files`` with the weights added, for a config fetched with ``fetch_init(..., weights=False)``.

    Hub weights come from the commit the config resolved to; ``config.json`` is not fetched again.

    Raises:
        InitError: As :func:`fetch_init`.
    """
    if files.weights is not None:
        return files
    if files.ref.kind == LOCAL_DIR:
        return _local_files(files.ref, weights=True)
    folder = files.folder.name
    commit = folder if COMMIT_PATTERN.fullmatch(folder) else files.ref.revision
    return InitFiles(files.ref, files.folder, _download(files.ref, WEIGHTS_FILE, commit, cache_dir))


def _describe(ref: InitRef) -> str:
    if ref.kind == SCRATCH:
        return f"random weights of timm's {ref.location}"
    return f"timm's pretrained {ref.location} weights"


def _local_files(ref: InitRef, weights: bool) -> InitFiles:
    folder = Path(ref.location).expanduser()
    if not folder.is_dir():
        raise InitError(f"init folder {folder} does not exist (from {str(ref)!r})")
    required = [CONFIG_FILE, WEIGHTS_FILE] if weights else [CONFIG_FILE]
    missing = [name for name in required if not (folder / name).is_file()]
    if missing:
        raise InitError(f"init folder {folder} has no {' or '.join(missing)}; an init holds "
                        f"{CONFIG_FILE}, {WEIGHTS_FILE} and README.md{init_of_run_hint(folder)}")
    return InitFiles(ref, folder, folder / WEIGHTS_FILE if weights else None)


def _download(ref: InitRef, filename: str, revision: str | None, cache_dir: str | os.PathLike | None) -> Path:
    try:
        path = hf_hub_download(
            ref.location, filename, revision=revision, cache_dir=cache_dir,
            library_name=LIBRARY_NAME, library_version=__version__,
        )
    except LocalEntryNotFoundError:
        raise InitError(_not_cached_message(ref, filename, cache_dir)) from None
    except RepositoryNotFoundError:
        raise InitError(f"{ref}: no Hub repo {ref.location!r} (or it is private or gated: log in with "
                        f"`hf auth login` or set HF_TOKEN){_cached_copy_hint(ref, revision, cache_dir)}") from None
    except RevisionNotFoundError:
        raise InitError(f"{ref}: repo {ref.location!r} has no revision {revision!r}"
                        f"{_cached_copy_hint(ref, revision, cache_dir)}") from None
    except RemoteEntryNotFoundError:
        raise InitError(f"{ref}: repo has no {filename}; an lsml-hub init holds "
                        f"{CONFIG_FILE} and {WEIGHTS_FILE}") from None
    except HfHubHTTPError as err:
        raise InitError(f"{ref}: fetching {filename} failed: {first_line(err)}") from None
    return Path(path)


def _cached_copy_hint(ref: InitRef, revision: str | None, cache_dir: str | os.PathLike | None) -> str:
    """For a repo the Hub does not have: the cache may hold it (``lsml-hub cache add``), loadable offline."""
    cached = try_to_load_from_cache(ref.location, CONFIG_FILE, cache_dir=cache_dir, revision=revision)
    if not isinstance(cached, str):
        return ""
    return "; the Hugging Face cache holds it (as `lsml-hub cache add` leaves it): set HF_HUB_OFFLINE=1 to load it"


def _not_cached_message(ref: InitRef, filename: str, cache_dir: str | os.PathLike | None) -> str:
    cache = cache_dir or constants.HF_HUB_CACHE
    fetch = ref.download_command()
    if cache_dir:
        fetch += f" --cache-dir {cache_dir}"
    if constants.is_offline_mode():
        why = "HF_HUB_OFFLINE is set"
    else:
        why = "the Hub cannot be reached"
    return (f"{ref}: {filename} is not in the Hugging Face cache ({cache}) and {why}; "
            f"pre-fetch it on a connected machine with `{fetch}` (same HF_HUB_CACHE) and retry")
