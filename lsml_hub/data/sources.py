"""Read a task's raw splits with ``datasets``: from the Hub, a local path, or a builtin source."""

from __future__ import annotations

import logging
from pathlib import Path

import datasets

from lsml_hub.data.spec import TaskSpec, is_local_path
from lsml_hub.errors import DataError, first_line

logger = logging.getLogger(__name__)


def load_raw(spec: TaskSpec) -> datasets.DatasetDict:
    """All splits of ``spec``'s source as a DatasetDict (columns untouched)."""
    if spec.is_builtin:
        from lsml_hub.data.builtin import load_builtin

        return load_builtin(spec.builtin_name, samples_per_class=spec.samples_per_class, seed=spec.seed)
    if spec.samples_per_class is not None:
        raise DataError(f"samples_per_class applies to generated builtin sources, not {spec.source!r}")
    path = Path(spec.source).expanduser()
    if path.exists():
        return load_local(path)
    if is_local_path(spec.source):
        raise DataError(f"dataset path {spec.source!r} does not exist")
    return load_hub(spec.source, config=spec.config, revision=spec.revision)


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
