"""``builtin:digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 real images, 10 classes)."""

from __future__ import annotations

import datasets
import numpy as np

from lsml_hub.data.builtin.arrays import arrays_to_dataset_dict, stratified_split


def build_digits(seed: int, eval_fraction: float = 0.2) -> datasets.DatasetDict:
    """Split the digits into train and test, stratified and deterministic in ``seed``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixel values run 0..16; stretch them to the full 8-bit range.
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = stratified_split(labels, eval_fraction, seed)
    names = [str(d) for d in range(10)]
    return arrays_to_dataset_dict(
        {"train": (images[train_idx], labels[train_idx]), "test": (images[test_idx], labels[test_idx])},
        names,
    )
