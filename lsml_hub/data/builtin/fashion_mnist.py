"""``builtin:fashion_mnist`` from a local copy of the idx files (Debian's ``dataset-fashion-mnist``)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import datasets
import numpy as np

from lsml_hub.data.builtin.arrays import arrays_to_dataset_dict

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DIR_ENV = "LSML_HUB_FASHION_MNIST_DIR"
HUB_ID = "zalando-datasets/fashion_mnist"
CLASS_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def local_dir() -> Path | None:
    """The folder holding the four idx files (``$LSML_HUB_FASHION_MNIST_DIR`` first), or None."""
    for candidate in (os.environ.get(DIR_ENV), DEBIAN_DIR):
        if candidate and all((Path(candidate) / f).exists() for pair in _FILES.values() for f in pair):
            return Path(candidate)
    return None


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped idx file (the MNIST format: magic, dims as big-endian int32, then uint8 data)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(tuple(int(d) for d in dims))


def build_fashion_mnist(folder: Path) -> datasets.DatasetDict:
    """The official 60,000 / 10,000 split with the dataset's class names."""
    splits = {
        split: (read_idx(folder / images), read_idx(folder / labels).astype(np.int64))
        for split, (images, labels) in _FILES.items()
    }
    return arrays_to_dataset_dict(splits, CLASS_NAMES)
