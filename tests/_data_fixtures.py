"""Helpers shared by the data tests: small synthetic datasets written with ``datasets`` (caches: ``_isolation``).

Imported by the test modules (not a conftest, so it adds no fixtures to other people's tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
import torch
from PIL import Image

from lsml_hub.data import ImageTensors


def class_features(class_names: Sequence[str], image: str = "image", label: str = "label") -> datasets.Features:
    return datasets.Features({image: datasets.Image(), label: datasets.ClassLabel(names=list(class_names))})


def random_images(n: int, size: int | tuple[int, int], seed: int, mode: str = "RGB") -> list[Image.Image]:
    """``n`` PIL images of random pixels (``size`` is a side or (width, height))."""
    w, h = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    return [Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode) for _ in range(n)]


def labelled_dataset(
    n: int, num_classes: int, *, seed: int, size: int = 12, image: str = "image", label: str = "label",
    names: Sequence[str] | None = None,
) -> datasets.Dataset:
    """A Dataset with an Image and a ClassLabel column; sample ``i`` has label ``i % num_classes``."""
    names = list(names) if names is not None else [f"class_{c}" for c in range(num_classes)]
    return datasets.Dataset.from_dict(
        {image: random_images(n, size, seed), label: [i % num_classes for i in range(n)]},
        features=class_features(names, image, label),
    )


def write_image_folder(root: Path, splits: dict[str, int], class_names: Sequence[str], size: int, seed: int) -> None:
    """``root/SPLIT/CLASS/i.png`` grey PNGs; ``splits`` maps split names to samples per class."""
    rng = np.random.default_rng(seed)
    for split, per_class in splits.items():
        for name in class_names:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(folder / f"{i}.png")


def pil_to_uint8_chw(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1).contiguous()


def identifiable_tensors(n: int, size: int, num_classes: int, seed: int = 0) -> ImageTensors:
    """Random, asymmetric uint8 images in 1..255 (so zero padding is recognisable), labels ``i % num_classes``."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(1, 256, (n, 3, size, size), generator=gen, dtype=torch.uint8)
    labels = torch.arange(n, dtype=torch.int64) % num_classes
    return ImageTensors(images=images, labels=labels)
