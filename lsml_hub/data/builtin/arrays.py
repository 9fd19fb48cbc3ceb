"""Turn numpy image arrays into ``datasets`` splits with an ``Image`` and a ``ClassLabel`` column."""

from __future__ import annotations

import datasets
import numpy as np
from PIL import Image


def arrays_to_dataset_dict(
    splits: dict[str, tuple[np.ndarray, np.ndarray]], class_names: list[str]
) -> datasets.DatasetDict:
    """Build a DatasetDict from ``{split: (uint8 images [N,H,W] or [N,H,W,3], int labels [N])}``."""
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=class_names)}
    )
    return datasets.DatasetDict(
        {
            split: datasets.Dataset.from_dict(
                {"image": [Image.fromarray(img) for img in images], "label": labels.tolist()},
                features=features,
            )
            for split, (images, labels) in splits.items()
        }
    )


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out) with ``fraction`` of every class held out, deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_held = max(1, int(round(fraction * len(idx)))) if len(idx) > 1 else 0
        held.append(idx[:n_held])
        kept.append(idx[n_held:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))
