"""Stratified, deterministic subsets: the limited-data regime of meta-testing."""

from __future__ import annotations

import numpy as np

from lsml_hub.errors import DataError


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of ``n`` samples whose class mix follows ``labels``, deterministic in ``seed``.

    Classes get ``n`` split in proportion to their size (largest remainders first, ties by class id),
    and every class gets at least one sample when ``n`` allows it.

    Example:
        >>> stratified_subset(np.array([0, 0, 0, 0, 1, 1, 1, 1]), 4, seed=0).size
        4
    """
    labels = np.asarray(labels)
    if n <= 0 or n > labels.size:
        raise DataError(f"asked for {n} training samples; the split has {labels.size} (valid: 1-{labels.size})")
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * n / labels.size
    take = np.floor(quota).astype(int)
    if n >= classes.size:
        take = np.maximum(take, 1)
    order = np.lexsort((classes, -(quota - np.floor(quota))))
    i = 0
    while take.sum() < n:
        cls = order[i % classes.size]
        if take[cls] < counts[cls]:
            take[cls] += 1
        i += 1
    while take.sum() > n:  # only when the at-least-one rule overshot
        take[np.argmax(take)] -= 1
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(chosen))
