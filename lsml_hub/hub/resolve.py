"""Turn an init string into files on this machine.

An init is named by ``hf-hub:owner/name[@revision]``, ``local-dir:PATH``, a plain folder path, or a
registry name (``resnet20_cifar.cts_paper8``). Hub files come through ``hf_hub_download``, so the
Hugging Face cache, ``HF_HUB_OFFLINE`` and ``HF_HUB_CACHE`` behave as everywhere else.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants, hf_hub_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id

from lsml_hub._hub_client import COMMIT_PATTERN, LIBRARY_NAME
from lsml_hub.errors import InitError, first_line
from lsml_hub.hub.config import CONFIG_FILE, WEIGHTS_FILE
from lsml_hub.hub.registry import get_init, is_registered
from lsml_hub.run_layout import init_of_run_hint
from lsml_hub.version import __version__

HF_HUB = "hf-hub"
LOCAL_DIR = "local-dir"

# Same rule as timm: a scheme has 2+ characters, so "C:\\..." stays a Windows path.
_SCHEME = re.compile(r"([a-zA-Z][a-zA-Z0-9+.\-_]+):(.*)", re.DOTALL)


@dataclass(frozen=True)
class InitRef:
    """Where an init lives.

    Args:
        kind: ``"hf-hub"`` or ``"local-dir"``.
        location: Hub repo id or folder path.
        revision: Hub revision (branch, tag or commit); ``None`` is the default branch.
        name: Registry name it was resolved from, if any.

    Example:
        >>> str(parse_init("hf-hub:me/resnet20_cifar.cts@v1"))
        'hf-hub:me/resnet20_cifar.cts@v1'
    """

    kind: str
    location: str
    revision: str | None = None
    name: str | None = None

    def __str__(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        return f"{self.kind}:{self.location}{rev}"

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


def parse_init(init: str | os.PathLike) -> InitRef:
    """Parse an init string (see the module docstring) without touching disk or network.

    Raises:
        InitError: Unknown source prefix, malformed Hub id, or unknown registry name (with suggestions).

    Example:
        >>> parse_init("local-dir:runs/demo/inits/cts")
        InitRef(kind='local-dir', location='runs/demo/inits/cts', revision=None, name=None)
    """
    if isinstance(init, os.PathLike):
        return InitRef(LOCAL_DIR, os.fspath(init))
    if not isinstance(init, str) or not init:
        raise InitError(f"init must be a non-empty string or path, got {init!r}")
    match = _SCHEME.fullmatch(init)
    if match:
        return _parse_prefixed(init, match.group(1).lower(), match.group(2))
    if _looks_like_path(init) and not is_registered(init):
        return InitRef(LOCAL_DIR, init)
    entry = get_init(init)  # an unknown name raises here, suggesting close names
    return InitRef(HF_HUB, entry.hf_hub_id, entry.revision, name=entry.name)


def _parse_prefixed(init: str, scheme: str, rest: str) -> InitRef:
    if not rest:
        raise InitError(f"init {init!r} has nothing after '{scheme}:'")
    if scheme == LOCAL_DIR:
        return InitRef(LOCAL_DIR, rest)
    if scheme != HF_HUB:
        raise InitError(f"unknown init source {scheme!r} in {init!r}; valid: hf-hub:owner/name[@revision], "
                        "local-dir:PATH, a folder path, or a registry name")
    repo_id, at, revision = rest.partition("@")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise InitError(f"bad Hub id in {init!r}: {first_line(err)}") from None
    if at and (not revision or "@" in revision):
        raise InitError(f"bad revision in {init!r}: use hf-hub:owner/name@revision with one '@'")
    return InitRef(HF_HUB, repo_id, revision or None)


def _looks_like_path(init: str) -> bool:
    return any(sep in init for sep in ("/", "\\")) or init.startswith((".", "~")) or Path(init).is_dir()


def fetch_init(ref: InitRef, *, cache_dir: str | os.PathLike | None = None, weights: bool = True) -> InitFiles:
    """Locate (and for the Hub, download or find in the cache) ``config.json`` and, if asked, the weights.

    Both Hub files come from the same commit: the weights are fetched at the commit the config
    resolved to, so a branch moving in between cannot mix two inits.

    Raises:
        InitError: Folder or file missing, Hub repo/revision/file not found, or offline and not cached.
    """
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
        raise InitError(f"{ref}: no Hub repo {ref.location!r} (or it is private or gated: "
                        "log in with `hf auth login` or set HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise InitError(f"{ref}: repo {ref.location!r} has no revision {revision!r}") from None
    except RemoteEntryNotFoundError:
        raise InitError(f"{ref}: repo has no {filename}; an lsml-hub init holds "
                        f"{CONFIG_FILE} and {WEIGHTS_FILE}") from None
    except HfHubHTTPError as err:
        raise InitError(f"{ref}: fetching {filename} failed: {first_line(err)}") from None
    return Path(path)


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
