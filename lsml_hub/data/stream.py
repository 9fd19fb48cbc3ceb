"""Endless, shuffled, augmented batch streams over decoded tensors; resumable by position.

Everything random about sample ``i`` of epoch ``e`` (its place in the order, its crop offset, its
flip) is drawn from a generator seeded by ``(seed, e)``, so the stream is a pure function of
``(seed, position)``: a resumed run that restores ``position`` sees the same batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from lsml_hub._seed import derive_seed
from lsml_hub.data.tensors import ImageTensors


@dataclass
class Batch:
    """Normalized float images ``[B, 3, S, S]`` and int64 labels ``[B]`` on the stream's device."""

    images: torch.Tensor
    labels: torch.Tensor


class Normalizer:
    """uint8 → float, then ``(x / 255 - mean) / std`` per channel, on the device (as timm's prefetcher).

    With ``channels_last`` the batch comes out in NHWC layout, as channels-last models want it.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device | str = "cpu",
                 channels_last: bool = False):
        std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * std_t)
        self.shift = -torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1) / std_t
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = to_device(images, self.device).contiguous(memory_format=self.memory_format)
        return torch.addcmul(self.shift, images.float(), self.scale)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device`` without a host synchronisation: host tensors go through pinned memory to CUDA.

    Example:
        >>> to_device(torch.ones(2), torch.device("cpu")).device
        device(type='cpu')
    """
    if tensor.device == device:
        return tensor
    if device.type == "cuda" and tensor.device.type == "cpu":
        # A non-blocking copy from pageable memory would wait for the GPU; from pinned memory it does not.
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


#: ``Augment`` kinds: the CIFAR recipe (pad, then crop) and timm's random resized crop.
AUGMENTS = ("crop", "resized_crop")
#: Images at least this large get the random resized crop unless a task says otherwise.
RESIZED_CROP_MIN_SIZE = 128


@dataclass(frozen=True)
class Augment:
    """Training augmentation, run on the batch's device: a random crop, and optional horizontal flips.

    Args:
        padding: Pad-and-crop: zero padding on each side before a random crop back to the image size
            (small images; 4 px at 32 px, as the CIFAR recipe).
        hflip: Flip half of the images horizontally.
        resized_crop: Instead, timm's ``RandomResizedCrop`` for large natural images: a box of a random
            ``scale`` of the area and aspect ``ratio`` (log-uniform), resized back to the image size
            (bilinear, sampling the image through the box, so pixels just outside it blend in at its
            edges as in a resize of the whole image). A box too large for the image is clamped to it,
            where timm would retry ten times and then take a center crop; and the box is cut from the
            decoded image, not from the original file.
        scale, ratio: The resized crop's area fraction and aspect ratio ranges (timm's defaults).

    Example:
        >>> Augment.for_size(32, hflip=False), Augment.for_size(224, hflip=True).resized_crop
        (Augment(padding=4, hflip=False, resized_crop=False, scale=(0.08, 1.0), ratio=(0.75, 1.3333333333333333)), True)
    """

    padding: int = 0
    hflip: bool = False
    resized_crop: bool = False
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    @classmethod
    def for_size(cls, image_size: int, hflip: bool, kind: str | None = None) -> Augment:
        """``kind`` ("crop" or "resized_crop"), by default chosen by the image size."""
        if kind is None:
            kind = "resized_crop" if image_size >= RESIZED_CROP_MIN_SIZE else "crop"
        if kind == "resized_crop":
            return cls(hflip=hflip, resized_crop=True)
        return cls(padding=max(1, image_size // 8), hflip=hflip)

    def draw(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """Each of ``n`` samples' crop: ``(row, col)`` offsets, or ``(x0, y0, w, h)`` boxes in image fractions."""
        if not self.resized_crop:
            return torch.randint(0, 2 * self.padding + 1, (n, 2), generator=gen)
        area = torch.empty(n).uniform_(*self.scale, generator=gen)
        log_ratio = torch.empty(n).uniform_(math.log(self.ratio[0]), math.log(self.ratio[1]), generator=gen)
        w = (area * log_ratio.exp()).sqrt().clamp(max=1.0)
        h = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
        x0 = torch.rand(n, generator=gen) * (1 - w)
        y0 = torch.rand(n, generator=gen) * (1 - h)
        return torch.stack([x0, y0, w, h], dim=1)

    def apply(self, images: torch.Tensor, crops: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
        """The augmented batch (uint8 for pad-and-crop, float in 0..255 for the resized crop)."""
        if self.resized_crop:
            return _resized_crop_and_flip(images, crops, flips)
        return _crop_and_flip(images, crops, flips, self.padding)


def _resized_crop_and_flip(images: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    # One affine grid per sample maps the output square onto its box (mirrored when flipped); bilinear
    # sampling resizes. Normalized coordinates: -1 and 1 are the outer edges of the border pixels.
    x0, y0, w, h = boxes.to(torch.float32).unbind(1)
    theta = torch.zeros(len(images), 2, 3, device=images.device)
    theta[:, 0, 0] = torch.where(flips, -w, w)
    theta[:, 0, 2] = 2 * x0 + w - 1
    theta[:, 1, 1] = h
    theta[:, 1, 2] = 2 * y0 + h - 1
    grid = torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    return torch.nn.functional.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border",
                                           align_corners=False)


def _crop_and_flip(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, padding: int) -> torch.Tensor:
    # Pure indexing, on whichever device the images are: the same pixels on the CPU and on a GPU.
    b, c, h, w = images.shape
    dev = images.device
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    rows = (offsets[:, 0, None] + torch.arange(h, device=dev))[:, None, :, None]
    cols = offsets[:, 1, None] + torch.arange(w, device=dev)
    cols = torch.where(flips[:, None], cols.flip(-1), cols)[:, None, None, :]
    return padded[torch.arange(b, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
                  rows, cols]


class BatchStream:
    """Endless batches of a split, reshuffled every epoch; batches may run across epoch ends.

    Args:
        data: Decoded split.
        batch_size: Samples per batch.
        seed: Seed of order and augmentation.
        augment: Training augmentation, or None for plain shuffled batches.
        mean, std: Normalization (the init's ``pretrained_cfg`` values).
        device: Where batches are put. ``data`` may already be there (a split held on the GPU: the
            batch is gathered, cropped and flipped there) or on the host (the batch's uint8 pixels
            go over through pinned memory, then are cropped and flipped on the device).
        channels_last: Batches in NHWC layout.

    Example:
        >>> from lsml_hub.data import load_task
        >>> task = load_task("builtin:digits")
        >>> stream = BatchStream(task.tensors("train"), 32, seed=0, augment=Augment.for_size(32, False))
        >>> next(stream).images.shape
        torch.Size([32, 3, 32, 32])
    """

    def __init__(
        self,
        data: ImageTensors,
        batch_size: int,
        *,
        seed: int,
        augment: Augment | None = None,
        mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
        std: Sequence[float] = IMAGENET_DEFAULT_STD,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if len(data) == 0:
            raise ValueError("cannot stream an empty split")
        self.data, self.batch_size, self.seed, self.augment = data, batch_size, seed, augment
        self.normalize = Normalizer(mean, std, device, channels_last)
        self.position = 0
        self._epoch = -1
        self._order = self._offsets = self._flips = torch.empty(0)

    def __iter__(self) -> Iterator[Batch]:
        return self

    def _draw_epoch(self, epoch: int) -> None:
        # Drawn on the CPU (the same numbers on every machine), then kept where the data is, once per epoch.
        gen = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
        n, where = len(self.data), self.data.labels.device
        self._order = to_device(torch.randperm(n, generator=gen), where)
        if self.augment is not None:
            self._offsets = to_device(self.augment.draw(n, gen), where)
            self._flips = to_device((torch.rand(n, generator=gen) < 0.5) & self.augment.hflip, where)
        self._epoch = epoch

    def _take(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Indices, crop offsets and flips of the next batch, drawn from each sample's own epoch."""
        parts, need, n = [], self.batch_size, len(self.data)
        while need:
            epoch, start = divmod(self.position, n)
            if epoch != self._epoch:
                self._draw_epoch(epoch)
            idx = self._order[start:start + min(need, n - start)]
            parts.append((idx, self._offsets[idx], self._flips[idx]) if self.augment else (idx, None, None))
            self.position += len(idx)
            need -= len(idx)
        if len(parts) == 1:
            return parts[0]
        return tuple(torch.cat(p) if p[0] is not None else None for p in zip(*parts))

    def __next__(self) -> Batch:
        idx, offsets, flips = self._take()
        device = self.normalize.device
        images = to_device(self.data.images[idx], device)  # uint8: a quarter of the bytes of float
        if self.augment is not None:
            images = self.augment.apply(images, to_device(offsets, device), to_device(flips, device))
        labels = to_device(self.data.labels[idx], device)
        return Batch(images=self.normalize(images), labels=labels)

    def state_dict(self) -> dict[str, int]:
        return {"position": self.position, "seed": self.seed, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.position = int(state["position"])


def eval_batches(
    data: ImageTensors,
    batch_size: int,
    *,
    mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
    std: Sequence[float] = IMAGENET_DEFAULT_STD,
    device: torch.device | str = "cpu",
    channels_last: bool = False,
) -> Iterator[Batch]:
    """One pass over ``data`` in order, without augmentation."""
    normalize = Normalizer(mean, std, device, channels_last)
    for start in range(0, len(data), batch_size):
        labels = to_device(data.labels[start:start + batch_size], normalize.device)
        yield Batch(images=normalize(data.images[start:start + batch_size]), labels=labels)
