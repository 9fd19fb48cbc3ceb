"""Decode a split once into uint8 tensors at the task's image size.

Decoding and resizing go through timm's eval transform in prefetcher mode (uint8 CHW out, the
same path timm's own loaders use before normalizing on the device). Doing it once per split, not
once per sample per epoch, keeps the batch stream far faster than a training step.
"""

from __future__ import annotations

from dataclasses import dataclass

import datasets
import torch
from timm.data import create_transform
from tqdm.auto import tqdm

from lsml_hub.data.columns import IMAGE, label_array

_DECODE_BATCH = 512


@dataclass
class ImageTensors:
    """Images as uint8 ``[N, 3, S, S]`` and labels as int64 ``[N]``."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]

    @property
    def nbytes(self) -> int:
        """Bytes the images and labels take (what moving the split to a device costs)."""
        return self.images.nbytes + self.labels.nbytes

    def to(self, device: torch.device | str) -> ImageTensors:
        """The split on ``device`` (itself when already there).

        Example:
            >>> data = ImageTensors(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.tensor([0, 1]))
            >>> data.to("cpu") is data
            True
        """
        device = torch.device(device)
        if self.images.device == device:
            return self
        return ImageTensors(images=self.images.to(device), labels=self.labels.to(device))


def to_tensors(ds: datasets.Dataset, image_size: int, desc: str = "decoding",
               out: torch.Tensor | None = None) -> ImageTensors:
    """Decode every image of ``ds`` (converted to RGB, so grey becomes 3 channels) and resize it.

    ``out`` (uint8 ``[len(ds), 3, S, S]``, e.g. a memory-mapped file) receives the images instead of a
    new tensor in memory.

    Example:
        >>> from lsml_hub.data import load_task
        >>> to_tensors(load_task("builtin:digits").eval, 32).images.shape[1:]
        torch.Size([3, 32, 32])
    """
    preprocess = create_transform(
        input_size=(3, image_size, image_size), is_training=False, crop_pct=1.0,
        interpolation="bilinear", use_prefetcher=True,
    )
    shape = (len(ds), 3, image_size, image_size)
    images = torch.empty(shape, dtype=torch.uint8) if out is None else out
    if tuple(images.shape) != shape or images.dtype != torch.uint8:
        raise ValueError(f"out must be uint8 {shape}, got {images.dtype} {tuple(images.shape)}")
    done = 0
    with tqdm(total=len(ds), desc=desc, unit="img", leave=False, disable=len(ds) < 20_000) as bar:
        for batch in ds.iter(batch_size=_DECODE_BATCH):
            for img in batch[IMAGE]:
                images[done] = preprocess(img.convert("RGB"))
                done += 1
            bar.update(len(batch[IMAGE]))
    return ImageTensors(images=images, labels=label_tensor(ds))


def label_tensor(ds: datasets.Dataset) -> torch.Tensor:
    """The ``label`` column as int64 (read as one numpy column: see :func:`~lsml_hub.data.columns.label_array`).

    Example:
        >>> label_tensor(datasets.Dataset.from_dict({"label": [2, 0]}))
        tensor([2, 0])
    """
    return torch.tensor(label_array(ds), dtype=torch.int64)  # a copy: numpy views of Arrow memory are read-only
