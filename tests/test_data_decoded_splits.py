"""The disk cache of decoded splits, through ``load_task(...).tensors``: written once, read back without decoding.

Every test gets its own empty ``$LSML_HUB_CACHE``; data is written with ``datasets`` / PIL into tmp folders.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import datasets
import pytest
import torch
from _data_fixtures import labelled_dataset, write_image_folder
from _isolation import isolated_caches
from safetensors.torch import load_file

import lsml_hub.data.task as task_module
from lsml_hub.data import ImageTensors, decoded_splits, load_task, to_tensors
from lsml_hub.errors import ConfigError

LOGGER = "lsml_hub.data.decoded_splits"


@pytest.fixture(scope="module", autouse=True)
def _caches(tmp_path_factory):
    with isolated_caches(tmp_path_factory.mktemp("caches")) as root:
        yield root


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    """This test's own decoded cache, switched on whatever the caller's environment says."""
    monkeypatch.setenv("LSML_HUB_CACHE", str(tmp_path / "lsml_hub"))
    monkeypatch.delenv(decoded_splits.ENV, raising=False)
    return tmp_path / "lsml_hub" / decoded_splits.SUBDIR


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> str:
    """``save_to_disk`` output: train 24 rows, test 8 rows, 4 classes of 12 px RGB images."""
    path = tmp_path_factory.mktemp("data") / "dd"
    datasets.DatasetDict(
        train=labelled_dataset(24, 4, seed=1), test=labelled_dataset(8, 4, seed=2),
    ).save_to_disk(str(path))
    return str(path)


@pytest.fixture
def decodes(monkeypatch) -> list[int]:
    """Counts the decodes ``Task.tensors`` runs (each entry: the split's length)."""
    calls: list[int] = []

    def counting(ds, image_size, desc="decoding", out=None):
        calls.append(len(ds))
        return to_tensors(ds, image_size, desc, out=out)

    monkeypatch.setattr(task_module, "to_tensors", counting)
    return calls


def _no_decoding(monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("decoded although the cache holds the split")

    monkeypatch.setattr(task_module, "to_tensors", fail)


def _entries(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.glob("*.safetensors"))


def _assert_same(a, b) -> None:
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert (b.images.dtype, b.labels.dtype) == (torch.uint8, torch.int64)


def test_first_run_writes_and_a_fresh_load_reads_without_decoding(saved, cache_dir, decodes, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    first = load_task(saved).tensors("train")
    assert decodes == [24]
    [entry] = _entries(cache_dir)
    assert "wrote 24 decoded images" in caplog.text and caplog.records[-1].levelno == logging.INFO

    _no_decoding(monkeypatch)
    caplog.clear()
    again = load_task(saved).tensors("train")
    _assert_same(first, again)
    assert "read 24 decoded images" in caplog.text and str(entry) in caplog.text
    assert caplog.records[-1].levelno == logging.DEBUG  # a hit is the normal case: not shown at INFO


def test_entry_is_a_plain_safetensors_file_with_its_key(saved, cache_dir):
    task = load_task(saved)
    data = task.tensors("eval")
    [entry] = _entries(cache_dir)
    tensors = load_file(entry)
    assert torch.equal(tensors["images"], data.images) and torch.equal(tensors["labels"], data.labels)
    key = decoded_splits.cache_key(task.eval, task.image_size)
    assert entry == decoded_splits.entry_path(key)
    assert key.fingerprint == task.eval._fingerprint and key.version == decoded_splits.DECODE_VERSION


def write_entry(path, key, data):
    """Write ``data`` as the entry of ``key``, through the cache's own writer."""
    decoded_splits.decode_into_entry(path, key, data.labels, lambda out: out.copy_(data.images))


def test_int64_labels_are_stored_8_byte_aligned_for_any_size(tmp_path):
    # 1 image of 3x3x3 bytes: had the images come first, the labels would start at an odd offset.
    data = ImageTensors(images=torch.zeros((1, 3, 3, 3), dtype=torch.uint8), labels=torch.tensor([7]))
    path = tmp_path / "entry.safetensors"
    write_entry(path, decoded_splits.CacheKey("f" * 16, 3, decoded_splits.DECODE_VERSION), data)
    raw = path.read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + header_len])
    assert (8 + header_len) % 8 == 0 and header["labels"]["data_offsets"][0] % 8 == 0
    assert load_file(path)["labels"].tolist() == [7]


def test_read_tensors_are_writable_without_touching_the_entry(saved, monkeypatch):
    expected = load_task(saved).tensors("train").images.clone()
    _no_decoding(monkeypatch)
    load_task(saved).tensors("train").images.zero_()
    assert torch.equal(load_task(saved).tensors("train").images, expected)


def test_image_size_class_subset_and_version_get_their_own_entries(saved, cache_dir, decodes, monkeypatch):
    tasks = [load_task(spec) for spec in (saved, f"{saved}?image_size=16", f"{saved}?classes=2,0")]
    for task in tasks:
        task.tensors("train")
    assert decodes == [24, 24, 12] and len(_entries(cache_dir)) == 3

    subset = load_task(f"{saved}?classes=2,0").tensors("train")
    _assert_same(to_tensors(tasks[2].train, 12), subset)
    assert subset.labels.tolist() == [1, 0] * 6  # remapped labels, not the full dataset's
    assert load_task(f"{saved}?image_size=16").tensors("train").images.shape == (24, 3, 16, 16)
    assert decodes == [24, 24, 12]  # both read from the cache

    monkeypatch.setattr(decoded_splits, "DECODE_VERSION", decoded_splits.DECODE_VERSION + 1)
    load_task(saved).tensors("train")
    assert decodes == [24, 24, 12, 24] and len(_entries(cache_dir)) == 4


def test_held_out_split_and_image_folder_are_cached(tmp_path, saved, cache_dir, decodes, monkeypatch):
    plain = tmp_path / "plain"
    datasets.load_from_disk(saved)["train"].save_to_disk(str(plain))  # no eval split: select() holds one out
    folder = tmp_path / "imgs"
    write_image_folder(folder, {"train": 3, "test": 2}, ["a", "b"], size=10, seed=3)
    first = {spec: load_task(spec) for spec in (str(plain), str(folder))}
    for task in first.values():
        task.tensors("train"), task.tensors("eval")
    assert len(_entries(cache_dir)) == 4

    _no_decoding(monkeypatch)
    for spec, task in first.items():
        fresh = load_task(spec)
        for split in ("train", "eval"):
            _assert_same(task.tensors(split), fresh.tensors(split))


def test_in_memory_dataset_is_decoded_every_time_and_never_written(cache_dir):
    ds = labelled_dataset(6, 2, seed=4)
    assert decoded_splits.cache_key(ds, 12) is None
    calls = []

    def decode(out=None):
        calls.append(1)
        return to_tensors(ds, 12, out=out)

    for _ in range(2):
        assert len(decoded_splits.load_or_decode(ds, 12, decode)) == 6
    assert len(calls) == 2
    assert not cache_dir.exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_entry_is_decoded_again_with_a_warning_and_rewritten(saved, cache_dir, damage, monkeypatch, caplog):
    first = load_task(saved).tensors("train")  # read back from the entry's memory map
    # A copy: the damage below rewrites the file in place, under the map (lsml-hub's writers replace it).
    expected = ImageTensors(first.images.clone(), first.labels.clone())
    del first
    [entry] = _entries(cache_dir)
    raw = entry.read_bytes()
    entry.write_bytes({"truncate": raw[:-100], "garbage": b"\x00not a safetensors file" * 8, "empty": b""}[damage])

    caplog.set_level(logging.INFO, logger=LOGGER)
    _assert_same(expected, load_task(saved).tensors("train"))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(entry) in warnings[0].getMessage()
    assert entry.read_bytes() == raw  # rewritten whole

    _no_decoding(monkeypatch)
    _assert_same(expected, load_task(saved).tensors("train"))


def test_entry_with_other_content_under_the_key_is_not_used(saved, decodes, caplog):
    task = load_task(saved)
    expected = task.tensors("train")
    key = decoded_splits.cache_key(task.train, task.image_size)
    wrong = to_tensors(task.train, task.image_size)
    wrong.labels = wrong.labels.flip(0)  # same shapes and metadata, other rows
    write_entry(decoded_splits.entry_path(key), key, wrong)

    _assert_same(expected, load_task(saved).tensors("train"))
    assert decodes == [24, 24]
    assert "labels differ" in caplog.text


def test_a_cache_path_that_is_a_file_is_refused_before_decoding(saved, tmp_path, monkeypatch, decodes):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("LSML_HUB_CACHE", str(blocker))
    task = load_task(saved)  # the dataset itself is already read; only the decoded cache is blocked
    with pytest.raises(ConfigError, match=r"a-file is a file; .*the cache is \$LSML_HUB_CACHE"):
        task.tensors("eval")
    assert decodes == [] and blocker.read_text() == "not a folder"


def test_a_cache_folder_holding_other_files_is_refused_and_left_alone(saved, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    monkeypatch.setenv("LSML_HUB_CACHE", str(home))
    with pytest.raises(ConfigError, match=r"holds files that lsml-hub's cache does not write: notes\.txt"):
        load_task(saved).tensors("eval")
    assert sorted(p.name for p in home.iterdir()) == ["notes.txt"]


def test_a_new_cache_folder_is_tagged_as_a_cache(saved, cache_dir):
    load_task(saved).tensors("eval")
    assert (cache_dir.parent / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")


@pytest.mark.parametrize("value", ["0", "off"])
def test_opt_out_neither_writes_nor_reads(saved, cache_dir, decodes, monkeypatch, value):
    load_task(saved).tensors("train")
    assert decodes == [24] and len(_entries(cache_dir)) == 1
    monkeypatch.setenv(decoded_splits.ENV, value)
    cache_dir_entries = {p: p.stat().st_mtime_ns for p in _entries(cache_dir)}
    load_task(saved).tensors("train")
    load_task(saved).tensors("eval")
    assert decodes == [24, 24, 8]  # the entry is ignored
    assert {p: p.stat().st_mtime_ns for p in _entries(cache_dir)} == cache_dir_entries  # nothing new written


def test_a_writer_replacing_the_entry_leaves_tensors_already_read_intact(saved, cache_dir):
    expected = load_task(saved).tensors("train")
    task = load_task(saved)
    read = task.tensors("train")  # memory-mapped from the entry
    key = decoded_splits.cache_key(task.train, task.image_size)
    zeros = ImageTensors(images=torch.zeros_like(read.images), labels=read.labels.clone())
    write_entry(decoded_splits.entry_path(key), key, zeros)  # as another rank finishing later
    _assert_same(expected, read)


def test_a_read_only_cache_is_read_and_a_miss_is_decoded_with_a_warning(saved, cache_dir, decodes, monkeypatch,
                                                                         caplog):
    from lsml_hub.output_folder import FolderNotWritableError

    load_task(saved).tensors("train")  # the train entry is written
    assert decodes == [24]

    def read_only(*args, **kwargs):
        raise FolderNotWritableError("output folder /cache cannot be written: Read-only file system")

    monkeypatch.setattr("lsml_hub.data.decoded_splits.writable_cache_root", read_only)
    task = load_task(saved)
    assert len(task.tensors("train")) == 24 and decodes == [24]  # read from the cache
    assert len(task.tensors("eval")) == 8 and decodes == [24, 8]  # a miss: decoded, not written
    assert "not caching the decoded images" in caplog.text


def test_a_cache_from_before_the_tag_is_adopted_and_tagged(saved, tmp_path, monkeypatch):
    old = tmp_path / "old_cache"
    (old / "decoded").mkdir(parents=True)
    monkeypatch.setenv("LSML_HUB_CACHE", str(old))
    load_task(saved).tensors("eval")
    assert (old / "CACHEDIR.TAG").is_file() and any((old / "decoded").iterdir())


def test_a_miss_decodes_straight_into_the_entry_file(saved, cache_dir):
    ds = load_task(saved).train
    outs = []

    def decode(out=None):
        outs.append(out)
        return to_tensors(ds, 16, out=out)

    data = decoded_splits.load_or_decode(ds, 16, decode)
    assert len(outs) == 1 and outs[0] is not None  # no in-memory copy of the split was asked for
    [entry] = [p for p in _entries(cache_dir) if p.name.startswith("16px-")]
    assert torch.equal(load_file(entry)["images"], data.images)
    assert torch.equal(data.images, to_tensors(ds, 16).images)


def test_no_room_for_the_entry_decodes_into_memory_with_a_warning(saved, cache_dir, monkeypatch, caplog):
    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(decoded_splits.os, "posix_fallocate", full)
    ds = load_task(saved).train
    data = decoded_splits.load_or_decode(ds, 16, lambda out=None: to_tensors(ds, 16, out=out))
    assert torch.equal(data.images, to_tensors(ds, 16).images)
    assert "No space left on device" in caplog.text and "decoding into memory" in caplog.text
    assert not [p for p in _entries(cache_dir) if p.name.startswith("16px-")]
