"""The Hugging Face hub cache as a source of inits: seed it from an init folder, and find the inits it holds.

For machines without Hub access (air-gapped clusters, CI): copy an init folder over, add it once with
``lsml-hub cache add FOLDER owner/name`` (or :func:`add_to_hub_cache`), and ``hf-hub:owner/name``
loads it with ``HF_HUB_OFFLINE=1``. The layout is huggingface_hub's: ``models--owner--name/`` holding
``blobs/``, ``snapshots/<commit>/`` (links to the blobs) and ``refs/<branch>`` (the commit), so
``hf cache ls`` and ``hf cache rm`` see these entries like any download.

The cache is ``HF_HUB_CACHE`` (default ``$HF_HOME/hub``, ``~/.cache/huggingface/hub``), as for
``hf_hub_download``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import timm
from huggingface_hub import constants, scan_cache_dir
from huggingface_hub.errors import CacheNotFound

from lsml_hub._hub_client import COMMIT_PATTERN, hf_hub_init, repo_id_problem
from lsml_hub._io import atomic_write
from lsml_hub.errors import InitError, first_line
from lsml_hub.hub.config import INIT_FILES, WEIGHTS_FILE, InitConfig, read_config
from lsml_hub.hub.format import recorded_sha256, sha256_file, verify_init

logger = logging.getLogger(__name__)

DEFAULT_REVISION = "main"
# A branch or tag name written under refs/ (refs/pr/N and other nested refs come from the Hub only).
_REF_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class CachedInit:
    """An lsml-hub init found in the Hugging Face cache.

    Args:
        repo_id: The Hub id it is cached under (``"owner/name"``).
        revision: The ref that names it (``None`` for ``main``), or the commit of a snapshot no ref names.
        snapshot: Its snapshot folder.
        config: Its ``config.json``.

    Example:
        >>> import timm, tempfile, lsml_hub
        >>> folder = lsml_hub.save_init(tempfile.mkdtemp() + "/init", timm.create_model("test_resnet"),
        ...                             lsml={"algorithm": {"name": "cts"}})
        >>> cache = tempfile.mkdtemp()  # HF_HUB_CACHE when not given
        >>> _ = add_to_hub_cache(folder, "me/demo", cache_dir=cache)
        >>> _ = add_to_hub_cache(folder, "me/demo", revision="v1", cache_dir=cache)
        >>> [c.init for c in cached_inits(cache)]
        ['hf-hub:me/demo', 'hf-hub:me/demo@v1']
    """

    repo_id: str
    revision: str | None
    snapshot: Path
    config: InitConfig

    @property
    def init(self) -> str:
        """The init string that loads it, offline too: ``hf-hub:owner/name[@revision]``."""
        return hf_hub_init(self.repo_id, self.revision)


def hub_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else the Hugging Face hub cache that ``hf_hub_download`` uses (``HF_HUB_CACHE``)."""
    return Path(cache_dir or constants.HF_HUB_CACHE).expanduser()


def add_to_hub_cache(
    init_dir: str | os.PathLike,
    repo_id: str,
    *,
    revision: str = DEFAULT_REVISION,
    cache_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Path:
    """Copy a verified init folder into the Hugging Face cache under ``repo_id``; returns its snapshot folder.

    Nothing is written unless the folder verifies (all three files, sha256 of the weights). The commit
    id is a stand-in derived from the files' sha256 (the real Hub commit is unknown offline), so adding
    the same folder twice changes nothing; ``revision`` (a branch or tag name) is pointed at it.

    Args:
        init_dir: An init folder (checked with :func:`~lsml_hub.hub.format.verify_init` first).
        repo_id: ``owner/name`` it should load as (``hf-hub:owner/name``).
        revision: Branch or tag to point at it (``hf-hub:owner/name@revision``).
        cache_dir: Cache root; defaults to ``HF_HUB_CACHE``.
        overwrite: Point ``revision`` at this init even if it names another snapshot already.

    Raises:
        InitError: ``repo_id`` or ``revision`` is malformed, the folder is not an init, ``revision``
            already names another snapshot (and not ``overwrite``), or the cache cannot be written.
        IntegrityError: The weights do not match their recorded sha256.

    Example:
        >>> import timm, tempfile, lsml_hub
        >>> folder = lsml_hub.save_init(tempfile.mkdtemp() + "/init", timm.create_model("test_resnet"),
        ...                             lsml={"algorithm": {"name": "cts"}})
        >>> cache = tempfile.mkdtemp()  # HF_HUB_CACHE when not given
        >>> snapshot = add_to_hub_cache(folder, "me/demo", cache_dir=cache)
        >>> snapshot.relative_to(cache).parts[:2], sorted(p.name for p in snapshot.iterdir())
        (('models--me--demo', 'snapshots'), ['README.md', 'config.json', 'model.safetensors'])
        >>> lsml_hub.create_model("hf-hub:me/demo", num_classes=10, cache_dir=cache).num_classes  # offline
        10
    """
    problem = repo_id_problem(repo_id)
    if problem:
        raise InitError(problem)
    _check_revision(revision)
    weights_sha = verify_init(init_dir).sha256  # just hashed and checked: no need to hash the weights again
    init_dir = Path(init_dir).expanduser()
    storage = hub_cache_dir(cache_dir) / f"models--{repo_id.replace('/', '--')}"
    shas = {name: weights_sha if name == WEIGHTS_FILE else sha256_file(init_dir / name) for name in INIT_FILES}
    commit = _stand_in_commit(shas)
    if not overwrite:
        _check_ref_free(storage, repo_id, revision, commit)
    try:
        return _write_snapshot(init_dir, storage, shas, commit, revision)
    except OSError as err:
        raise InitError(f"cannot write {repo_id} into the Hugging Face cache {storage.parent}: "
                        f"{err.strerror or first_line(err)}; set HF_HUB_CACHE to a writable folder") from None


def cached_inits(cache_dir: str | os.PathLike | None = None) -> list[CachedInit]:
    """The lsml-hub inits in the Hugging Face cache that load offline, one per ref (or per unnamed snapshot).

    A snapshot counts when its ``config.json`` has an ``"lsml"`` block with the weights' sha256, its
    architecture is known to timm, and ``model.safetensors`` is there. Other repos (timm's own
    weights, datasets, language models) are skipped. Nothing is hashed: loading checks the sha256.

    Example:
        >>> cached_inits("/nonexistent")
        []
    """
    root = hub_cache_dir(cache_dir)
    try:
        info = scan_cache_dir(root)
    except (CacheNotFound, ValueError):  # no cache yet, or a file where it should be
        return []
    for warning in info.warnings:
        logger.debug("skipping a damaged Hugging Face cache entry: %s", first_line(warning))
    found = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        for rev in sorted(repo.revisions, key=lambda r: r.commit_hash):
            config = _init_config(rev.snapshot_path)
            if config is None:
                continue
            names = sorted(rev.refs) or [rev.commit_hash]
            found += [CachedInit(repo.repo_id, None if name == DEFAULT_REVISION else name, rev.snapshot_path, config)
                      for name in names]
    return found


def _init_config(snapshot: Path) -> InitConfig | None:
    """The snapshot's config if it is a loadable lsml-hub init, else None (logged at debug)."""
    if not (snapshot / WEIGHTS_FILE).is_file():
        return None
    try:
        config = read_config(snapshot)
        recorded_sha256(config)
    except (InitError, OSError) as err:  # no, a foreign or an unreadable config.json: not an init to list
        logger.debug("not an lsml-hub init: %s", first_line(err))
        return None
    problem = _listing_problem(config)
    if problem:
        logger.debug("skipping %s: %s", snapshot, problem)
        return None
    if not timm.is_model(config.architecture):
        logger.debug("skipping %s: timm does not know architecture %r", snapshot, config.architecture)
        return None
    return config


def _listing_problem(config: InitConfig) -> str | None:
    """What in ``config``'s lsml block a listing cannot show, or None (hand-edited files are not trusted)."""
    lsml = config.lsml
    if not isinstance(lsml.get("source_tasks", []), list):
        return f"lsml.source_tasks is {type(lsml['source_tasks']).__name__}, not a list"
    if not isinstance(lsml.get("algorithm", {}), (dict, str)):
        return f"lsml.algorithm is {type(lsml['algorithm']).__name__}, not a mapping"
    size = config.pretrained_cfg.get("input_size")
    if size is not None and not (isinstance(size, list) and all(isinstance(n, int) for n in size)):
        return f"pretrained_cfg.input_size is {size!r}, not a list of integers"
    return None


def _check_revision(revision: str) -> None:
    if not isinstance(revision, str) or not _REF_NAME.fullmatch(revision) or COMMIT_PATTERN.fullmatch(revision):
        raise InitError(f"bad revision {revision!r}: use a branch or tag name such as main or v1 "
                        "(letters, digits, '.', '_', '-'; not a 40-digit commit id, which the cache assigns)")


def _check_ref_free(storage: Path, repo_id: str, revision: str, commit: str) -> None:
    ref = storage / "refs" / revision
    try:
        current = ref.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return
    if current != commit:
        raise InitError(f"the Hugging Face cache already holds {repo_id}@{revision} (commit {current[:12]}), "
                        f"another init; add this one under another revision, or replace it "
                        f"(`lsml-hub cache add --revision R` or `--force`; in Python revision= or overwrite=True)")


def _write_snapshot(init_dir: Path, storage: Path, shas: dict[str, str], commit: str, revision: str) -> Path:
    snapshot = storage / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, sha in shas.items():
        blob = storage / "blobs" / sha
        if not blob.exists():
            with open(init_dir / name, "rb") as src, atomic_write(blob, "wb") as dst:
                shutil.copyfileobj(src, dst)
        _link(snapshot / name, blob)
    with atomic_write(storage / "refs" / revision, "w") as f:  # a branch or tag: commit ids are refused
        f.write(commit)  # no newline: huggingface_hub reads the file verbatim
    return snapshot


def _stand_in_commit(shas: dict[str, str]) -> str:
    text = "".join(f"{name}:{sha}\n" for name, sha in sorted(shas.items()))
    return hashlib.sha1(text.encode()).hexdigest()


def _link(pointer: Path, blob: Path) -> None:
    if pointer.is_symlink() or pointer.exists():
        pointer.unlink()
    try:
        pointer.symlink_to(os.path.relpath(blob, pointer.parent))
    except OSError:  # no symlinks (some Windows setups): huggingface_hub copies too
        shutil.copyfile(blob, pointer)
