"""Read a task's raw splits with ``datasets``: from the Hub, a local path, or a builtin source."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import datasets
from huggingface_hub import HfApi, constants

from lsml_hub._hub_client import COMMIT_PATTERN, HUB_REQUEST_ERRORS, LIBRARY_NAME
from lsml_hub.data.spec import TaskSpec, is_local_path
from lsml_hub.errors import DataError, first_line
from lsml_hub.version import __version__

logger = logging.getLogger(__name__)


@dataclass
class RawSource:
    """A task's source as read: its splits (columns untouched) and, for a Hub dataset, its revision.

    Attributes:
        splits: Every split of the source.
        revision: The Hub commit the data was read at when it could be resolved, else the requested
            revision (None for builtin and local sources).
    """

    splits: datasets.DatasetDict
    revision: str | None = None


def load_raw(spec: TaskSpec) -> RawSource:
    """All splits of ``spec``'s source, and for a Hub dataset the commit they come from."""
    if spec.is_builtin:
        return load_builtin_raw(spec)
    if spec.samples_per_class is not None:
        raise DataError(f"samples_per_class applies to generated builtin sources, not {spec.source!r}")
    path = Path(spec.source).expanduser()
    if path.exists():
        return RawSource(load_local(path))
    if is_local_path(spec.source):
        raise DataError(f"dataset path {spec.source!r} does not exist")
    # Resolved first and then read at that commit, so the recorded commit is the data's even if the
    # branch moves meanwhile.
    commit = hub_commit(spec.source, spec.revision)
    return RawSource(load_hub(spec.source, config=spec.config, revision=commit), commit)


def load_builtin_raw(spec: TaskSpec) -> RawSource:
    """A builtin source: materialized from local data, or read from the Hub where it has no local copy."""
    from lsml_hub.data.builtin import hub_fallback, load_builtin, no_local_copy_hint

    fallback = hub_fallback(spec.builtin_name)
    if fallback is None or spec.samples_per_class is not None:  # load_builtin refuses the latter
        return RawSource(load_builtin(spec.builtin_name, samples_per_class=spec.samples_per_class, seed=spec.seed))
    dataset_id, config = fallback
    try:
        return RawSource(load_hub(dataset_id, config=config, revision=None))
    except DataError as err:
        raise DataError(f"{no_local_copy_hint(spec.builtin_name)}, and {err}") from err


def hub_commit(dataset_id: str, revision: str | None) -> str | None:
    """The commit ``revision`` (None: the default branch) of a Hub dataset resolves to.

    Recorded with an init so its source tasks can be read again exactly. Offline (``HF_HUB_OFFLINE``
    or ``HF_DATASETS_OFFLINE``), or when the Hub does not answer, the requested revision is returned as
    it is (with a warning in the second case).

    Example:
        >>> hub_commit("uoft-cs/cifar10", "0b2714987fa478483af9968de7c934580d0bb9a2")
        '0b2714987fa478483af9968de7c934580d0bb9a2'
    """
    if revision is not None and COMMIT_PATTERN.fullmatch(revision):
        return revision
    if constants.is_offline_mode() or datasets.config.HF_HUB_OFFLINE:  # datasets also reads HF_DATASETS_OFFLINE
        return revision
    api = HfApi(library_name=LIBRARY_NAME, library_version=__version__)
    try:
        return api.dataset_info(dataset_id, revision=revision).sha or revision
    except HUB_REQUEST_ERRORS as err:
        logger.warning("cannot resolve dataset %s@%s to a commit (%s); using the revision as given",
                       dataset_id, revision or "main", first_line(err))
        return revision


def load_local(path: Path) -> datasets.DatasetDict:
    """Read ``save_to_disk`` output, a parquet file, or a folder ``datasets`` can infer (images, parquet)."""
    if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
        loaded = datasets.load_from_disk(str(path))
        return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict(train=loaded)
    if path.is_file():
        if path.suffix != ".parquet":
            raise DataError(f"cannot read {str(path)!r}: give a folder, a .parquet file, or save_to_disk output")
        what, load = "parquet file", lambda: datasets.load_dataset("parquet", data_files={"train": str(path)})
    else:
        what, load = "dataset folder", lambda: datasets.load_dataset(str(path))
    try:
        return load()
    except (ValueError, FileNotFoundError, datasets.exceptions.DatasetGenerationError) as err:
        # pyarrow's ArrowInvalid (a damaged or non-parquet file) is a ValueError
        raise DataError(f"cannot read {what} {str(path)!r}: {first_line(err)}") from err


def load_hub(dataset_id: str, *, config: str | None, revision: str | None) -> datasets.DatasetDict:
    """Load a Hub dataset; offline or unreachable gives a DataError saying how to use a local copy."""
    try:
        return datasets.load_dataset(dataset_id, config, revision=revision)
    except ConnectionError as err:
        raise DataError(
            f"cannot reach the Hugging Face Hub for dataset {dataset_id!r} and no cached copy exists "
            f"({type(err).__name__}); fetch it once with network access, or point the task at a "
            "local copy (an image folder, parquet files or save_to_disk output)"
        ) from err
    except datasets.exceptions.DatasetNotFoundError as err:
        raise DataError(f"dataset {dataset_id!r} not found on the Hub or is gated: {first_line(err)}") from err
    except ValueError as err:
        # datasets raises ValueError for a missing or ambiguous config name.
        raise DataError(f"cannot load dataset {dataset_id!r} (config {config!r}): {first_line(err)}") from err
