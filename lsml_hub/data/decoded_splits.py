"""A disk cache of decoded splits, so later runs (meta-training, fine-tuning, ``lsml-hub data``) skip decoding.

An entry is one safetensors file under ``cache_root()/decoded`` holding ``images`` (uint8
``[N, 3, S, S]``) and ``labels`` (int64 ``[N]``), named by a hash of the dataset's fingerprint, the
image size and ``DECODE_VERSION``. Only datasets backed by Arrow files are cached: ``datasets`` derives
their fingerprint from the files and the transforms applied since, whereas an in-memory dataset gets a
random one that no later run could find again.

Entries are written atomically (temporary file, fsync, rename), so processes decoding the same split at
once never read half a file; the last writer wins with the same bytes. Entries are read memory-mapped
copy-on-write: processes share the page cache, and writing to a tensor never touches the file.

Set ``LSML_HUB_DECODED_CACHE=0`` to neither read nor write entries.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import mmap
import os
import struct
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import torch
from safetensors import SafetensorError, safe_open

from lsml_hub._io import atomic_write
from lsml_hub.data.cache_folder import DECODED_SUBDIR, cache_root, writable_cache_root
from lsml_hub.data.tensors import ImageTensors, label_tensor
from lsml_hub.output_folder import FolderNotWritableError

logger = logging.getLogger(__name__)

ENV = "LSML_HUB_DECODED_CACHE"
SUBDIR = DECODED_SUBDIR
# Bump whenever to_tensors' output changes (transform, interpolation, colour handling, layout): old
# entries then stop matching instead of feeding stale pixels to training.
DECODE_VERSION = 1
_SAFETENSORS_DTYPES = {torch.uint8: "U8", torch.int64: "I64"}


class CorruptEntryError(ValueError):
    """A cache entry that parses but does not hold what its key promises (another split, other size, stale)."""


@dataclass(frozen=True)
class CacheKey:
    """What a decoded split depends on: the dataset's content, the image size, the decode code."""

    fingerprint: str
    image_size: int
    version: int

    @property
    def filename(self) -> str:
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:24]
        return f"{self.image_size}px-{digest}.safetensors"

    def metadata(self, length: int) -> dict[str, str]:
        return {**{k: str(v) for k, v in asdict(self).items()}, "length": str(length)}


def enabled() -> bool:
    """False when ``$LSML_HUB_DECODED_CACHE`` is ``0``, ``false``, ``no`` or ``off``."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def cache_key(ds: datasets.Dataset, image_size: int) -> CacheKey | None:
    """The key of ``ds`` decoded at ``image_size``, or None when ``ds`` has no stable fingerprint.

    Example:
        >>> cache_key(datasets.Dataset.from_dict({"label": [0]}), 32) is None  # in memory
        True
    """
    if not ds.cache_files:
        return None
    return CacheKey(fingerprint=ds._fingerprint, image_size=image_size, version=DECODE_VERSION)


def entry_path(key: CacheKey) -> Path:
    """Where the entry of ``key`` lives under the cache root (``$LSML_HUB_CACHE``)."""
    return cache_root() / SUBDIR / key.filename


def load_or_decode(ds: datasets.Dataset, image_size: int, decode: Callable[..., ImageTensors]) -> ImageTensors:
    """``ds`` decoded at ``image_size``: read from the cache, else decoded straight into a new entry.

    ``decode(out=None)`` decodes the split, into ``out`` (a uint8 ``[N, 3, S, S]`` tensor) when given.
    A miss decodes into the entry's file through a memory map, so a split larger than memory (100,000
    images at 224 px: 15 GB) is never held in RAM whole; the entry is then read back memory-mapped.

    A missing, unreadable or mismatching entry never fails the run: it is decoded again (with a
    warning unless simply missing) and rewritten; a read-only cache is read and not written (with a
    warning). A cache folder holding files lsml-hub does not write there is refused (ConfigError)
    before anything is decoded.

    Example:
        >>> from lsml_hub.data import load_task, to_tensors
        >>> train = load_task("builtin:digits").train
        >>> decode = lambda out=None: to_tensors(train, 32, out=out)
        >>> load_or_decode(train, 32, decode).images.shape[1:]
        torch.Size([3, 32, 32])
        >>> entry_path(cache_key(train, 32)).exists()  # the next call reads this entry back
        True
    """
    key = cache_key(ds, image_size) if enabled() else None
    if key is None:
        return decode()
    path = entry_path(key)
    cached = _read_or_none(path, key, ds)
    if cached is not None:
        return cached
    try:
        writable_cache_root()  # before decoding: a cache that is someone else's folder fails now
    except FolderNotWritableError as err:  # a read-only cache (a shared one, say) costs a decode, not the run
        logger.warning("not caching the decoded images: %s", err)
        return decode()
    try:
        data = decode_into_entry(path, key, label_tensor(ds), decode)
    except OSError as err:  # no room for the entry (reserved before decoding): decode into memory instead
        logger.warning("could not write decoded cache entry %s (%s); decoding into memory", path, err)
        return decode()
    logger.info("wrote %d decoded images (%d px) to %s", len(data), key.image_size, path)
    return data


def decode_into_entry(path: Path, key: CacheKey, labels: torch.Tensor,
                      decode: Callable[..., ImageTensors]) -> ImageTensors:
    """Write the entry of ``key`` at ``path`` by decoding straight into its file, then read it back.

    The file's space is reserved first (``posix_fallocate``), so a full disk is an OSError before
    any decoding, never a crash while writing through the memory map. The file appears under ``path``
    only once complete (``atomic_write``).
    """
    shape = (len(labels), 3, key.image_size, key.image_size)
    nbytes = math.prod(shape)
    with atomic_write(path, "wb") as f:
        # int64 labels first: right after the 8-byte-padded header they are 8-byte aligned for any N and S.
        f.write(_safetensors_header({"labels": (labels.dtype, tuple(labels.shape)), "images": (torch.uint8, shape)},
                                    key.metadata(len(labels))))
        f.write(_raw_bytes(labels))
        f.flush()
        start = f.tell()
        os.posix_fallocate(f.fileno(), start, nbytes)
        with mmap.mmap(f.fileno(), start + nbytes) as mapped:
            images = torch.frombuffer(mapped, dtype=torch.uint8, count=nbytes, offset=start).view(shape)
            decode(out=images)
            del images  # the map cannot close while a tensor still points into it
            mapped.flush()
    return read_entry(path, key, labels)


def _read_or_none(path: Path, key: CacheKey, ds: datasets.Dataset) -> ImageTensors | None:
    try:
        data = read_entry(path, key, label_tensor(ds))
    except FileNotFoundError:
        return None
    except (OSError, SafetensorError, CorruptEntryError) as err:
        logger.warning("decoded cache entry %s is unusable (%s: %s); decoding again", path, type(err).__name__, err)
        return None
    # DEBUG, not INFO: a hit is the normal case at every run start, and the CLI's user errors stay one line.
    logger.debug("read %d decoded images (%d px) from %s", len(data), key.image_size, path)
    return data


def read_entry(path: Path, key: CacheKey, labels: torch.Tensor) -> ImageTensors:
    """The entry at ``path``, checked against ``key`` and the dataset's own ``labels``.

    Raises:
        CorruptEntryError: the file parses but its metadata, shapes, dtypes or labels don't match.
        SafetensorError, OSError: the file can't be read or parsed.
    """
    with safe_open(path, framework="pt") as f:
        found = f.metadata() or {}
        expected = key.metadata(len(labels))
        if found != expected:
            raise CorruptEntryError(f"metadata {found} != expected {expected}")
        data = ImageTensors(images=f.get_tensor("images"), labels=f.get_tensor("labels"))
    shape = (len(labels), 3, key.image_size, key.image_size)
    if data.images.dtype != torch.uint8 or tuple(data.images.shape) != shape:
        raise CorruptEntryError(f"images are {data.images.dtype} {tuple(data.images.shape)}, expected uint8 {shape}")
    if data.labels.dtype != torch.int64 or not torch.equal(data.labels, labels):
        raise CorruptEntryError("labels differ from the dataset's")
    return data


def _safetensors_header(tensors: dict[str, tuple[torch.dtype, tuple[int, ...]]], metadata: dict[str, str]) -> bytes:
    """The 8-byte length and the padded JSON header of a file holding ``tensors`` (dtype, shape) in order."""
    header: dict[str, object] = {"__metadata__": metadata}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        end = offset + math.prod(shape) * dtype.itemsize
        header[name] = {"dtype": _SAFETENSORS_DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, end]}
        offset = end
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def _raw_bytes(tensor: torch.Tensor) -> memoryview:
    return memoryview(tensor.detach().cpu().contiguous().numpy()).cast("B")
