"""Place a local init into a Hugging Face cache, as if ``hf_hub_download`` had fetched it.

For machines without Hub access (air-gapped clusters, CI, the tests and benchmark here): copy an
init folder over, add it to the cache once, and ``hf-hub:owner/name`` loads it with
``HF_HUB_OFFLINE=1``. The layout is huggingface_hub's: ``models--owner--name/`` holding ``blobs/``,
``snapshots/<commit>/`` (links to the blobs) and ``refs/<branch>`` (the commit).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from huggingface_hub import constants

from lsml_hub._hub_client import COMMIT_PATTERN
from lsml_hub._io import atomic_write
from lsml_hub.hub.config import INIT_FILES, WEIGHTS_FILE
from lsml_hub.hub.format import sha256_file, verify_init


def add_to_hub_cache(
    init_dir: str | os.PathLike,
    repo_id: str,
    *,
    revision: str = "main",
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Copy a verified init folder into the cache under ``repo_id``; returns its snapshot folder.

    The commit id is a stand-in derived from the files' sha256 (the real Hub commit is unknown
    offline); ``revision`` (a branch or tag name) is pointed at it.

    Args:
        init_dir: An init folder (checked with :func:`verify_init` first).
        repo_id: ``owner/name`` it should load as.
        revision: Ref name to write under ``refs/``.
        cache_dir: Cache root; defaults to ``HF_HUB_CACHE``.

    Example:
        >>> add_to_hub_cache("runs/demo/inits/cts", "me/demo", cache_dir="/tmp/hf")  # doctest: +SKIP
        PosixPath('/tmp/hf/models--me--demo/snapshots/...')
    """
    weights_sha = verify_init(init_dir).sha256  # just hashed and checked: no need to hash the weights again
    init_dir = Path(init_dir)
    storage = Path(cache_dir or constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
    shas = {name: weights_sha if name == WEIGHTS_FILE else sha256_file(init_dir / name) for name in INIT_FILES}
    commit = revision if COMMIT_PATTERN.fullmatch(revision) else _stand_in_commit(shas)
    snapshot = storage / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, sha in shas.items():
        blob = storage / "blobs" / sha
        if not blob.exists():
            with open(init_dir / name, "rb") as src, atomic_write(blob, "wb") as dst:
                shutil.copyfileobj(src, dst)
        _link(snapshot / name, blob)
    if commit != revision:
        with atomic_write(storage / "refs" / revision, "w") as f:
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
