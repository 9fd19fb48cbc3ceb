"""Batch streams: exact normalization, crops and flips, epoch coverage, determinism, resume; eval batches;
stratified subsets.

Most tests stream synthetic uint8 tensors whose pixels are random in 1..255, so every batch image can
be traced back to the sample, crop offset and flip it was made from (zero padding is recognisable).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from _data_fixtures import identifiable_tensors
from _isolation import isolated_caches
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from lsml_hub.data import Augment, BatchStream, ImageTensors, Normalizer, eval_batches, load_task, stratified_subset
from lsml_hub.errors import DataError

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
N, SIZE, CLASSES = 21, 8, 3


@pytest.fixture(scope="module")
def data() -> ImageTensors:
    return identifiable_tensors(N, SIZE, CLASSES, seed=0)


def _expected_normalized(images_uint8: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    m = torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float64).view(1, 3, 1, 1)
    return ((images_uint8.double() / 255.0 - m) / s).float()


def _to_uint8(images: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    """Undo normalization; the result must be whole numbers 0..255 up to float error."""
    m = torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float64).view(1, 3, 1, 1)
    raw = (images.double() * s + m) * 255.0
    rounded = raw.round()
    assert (raw - rounded).abs().max() < 1e-3
    assert rounded.min() >= 0 and rounded.max() <= 255
    return rounded.to(torch.uint8)


def _ids(batch, data: ImageTensors, mean=MEAN, std=STD) -> list[int]:
    """Sample index of every (unaugmented) batch image; also checks its label."""
    lookup = {img.numpy().tobytes(): i for i, img in enumerate(data.images)}
    ids = [lookup[img.numpy().tobytes()] for img in _to_uint8(batch.images, mean, std)]
    assert batch.labels.tolist() == data.labels[ids].tolist()
    return ids


def _crop_table(data: ImageTensors, padding: int) -> dict[bytes, set[tuple[int, int, int, bool]]]:
    """Every crop of every zero-padded sample, flipped or not: bytes -> {(sample, dy, dx, flipped)}."""
    padded = torch.nn.functional.pad(data.images, (padding,) * 4)
    size = data.images.shape[-1]
    table: dict[bytes, set] = {}
    for i, dy, dx in itertools.product(range(len(data)), range(2 * padding + 1), range(2 * padding + 1)):
        crop = padded[i, :, dy:dy + size, dx:dx + size]
        for flipped, img in ((False, crop), (True, crop.flip(-1))):
            table.setdefault(img.contiguous().numpy().tobytes(), set()).add((i, dy, dx, flipped))
    return table


def _collect_ids(stream: BatchStream, batches: int, data: ImageTensors) -> list[int]:
    return [i for _ in range(batches) for i in _ids(next(stream), data)]


# --- normalization and shapes --------------------------------------------------------------------


def test_normalizer_is_exact():
    images = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    out = Normalizer(MEAN, STD)(images)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, _expected_normalized(images), atol=1e-5, rtol=0)
    assert Normalizer(MEAN, STD)(torch.zeros(1, 3, 1, 1, dtype=torch.uint8)).flatten().tolist() == pytest.approx(
        [-m / s for m, s in zip(MEAN, STD)], abs=1e-6)


def test_plain_batches_are_normalized_samples(data):
    stream = BatchStream(data, 4, seed=0, mean=MEAN, std=STD)
    for _ in range(8):
        batch = next(stream)
        assert batch.images.shape == (4, 3, SIZE, SIZE) and batch.images.dtype == torch.float32
        assert batch.labels.shape == (4,) and batch.labels.dtype == torch.int64
        ids = _ids(batch, data)
        torch.testing.assert_close(batch.images, _expected_normalized(data.images[ids]), atol=1e-5, rtol=0)


def test_default_normalization_is_imagenet(data):
    batch = next(BatchStream(data, 5, seed=3))
    ids = _ids(batch, data, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
    expected = _expected_normalized(data.images[ids], IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
    torch.testing.assert_close(batch.images, expected, atol=1e-5, rtol=0)


# --- epochs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [7, 4, 50])
def test_every_epoch_is_a_permutation(data, batch_size):
    # 7 divides 21; 4 makes batches span epoch ends; 50 is larger than the whole split.
    epochs = 4
    batches = -(-epochs * N // batch_size)
    ids = _collect_ids(BatchStream(data, batch_size, seed=1, mean=MEAN, std=STD), batches, data)
    assert len(ids) == batches * batch_size
    orders = [ids[e * N:(e + 1) * N] for e in range(epochs)]
    for order in orders:
        assert sorted(order) == list(range(N))
    assert len({tuple(o) for o in orders}) == epochs  # reshuffled every epoch


def test_batch_larger_than_split_has_right_shape(data):
    batch = next(BatchStream(data, 50, seed=0, augment=Augment(padding=1, hflip=True)))
    assert batch.images.shape == (50, 3, SIZE, SIZE) and batch.labels.shape == (50,)


# --- determinism and resume ----------------------------------------------------------------------


def _batches(stream: BatchStream, k: int) -> list:
    return [next(stream) for _ in range(k)]


def _assert_same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x.images, y.images) and torch.equal(x.labels, y.labels)


@pytest.mark.parametrize("augment", [None, Augment(padding=2, hflip=True)])
def test_same_seed_same_batches_other_seed_differs(data, augment):
    make = lambda seed: BatchStream(data, 4, seed=seed, augment=augment, mean=MEAN, std=STD)  # noqa: E731
    first = _batches(make(7), 12)
    _assert_same(first, _batches(make(7), 12))
    other = _batches(make(8), 12)
    assert any(not torch.equal(x.images, y.images) for x, y in zip(first, other))


def test_streams_in_one_process_do_not_disturb_each_other(data):
    aug = Augment(padding=2, hflip=True)
    alone_a = _batches(BatchStream(data, 4, seed=0, augment=aug), 10)
    alone_b = _batches(BatchStream(data, 3, seed=1, augment=aug), 10)
    a, b = BatchStream(data, 4, seed=0, augment=aug), BatchStream(data, 3, seed=1, augment=aug)
    torch.manual_seed(123)  # the global RNG plays no part
    mixed_a, mixed_b = [], []
    for _ in range(10):
        mixed_a.append(next(a))
        torch.rand(10)
        mixed_b.append(next(b))
    _assert_same(mixed_a, alone_a)
    _assert_same(mixed_b, alone_b)


@pytest.mark.parametrize("k", [0, 3, 5, 6, 11])
def test_resume_from_state_dict_yields_the_next_batches(data, k):
    aug = Augment(padding=2, hflip=True)
    stream = BatchStream(data, 4, seed=5, augment=aug, mean=MEAN, std=STD)
    _batches(stream, k)
    state = stream.state_dict()
    assert state == {"position": 4 * k, "seed": 5, "batch_size": 4}
    expected = _batches(stream, 8)  # runs past epoch ends (21 samples, batches of 4)
    resumed = BatchStream(data, 4, seed=5, augment=aug, mean=MEAN, std=STD)
    resumed.load_state_dict(state)
    _assert_same(_batches(resumed, 8), expected)


def test_stream_is_an_iterator(data):
    stream = BatchStream(data, 4, seed=0)
    assert iter(stream) is stream
    assert len(list(itertools.islice(stream, 30))) == 30  # endless


@pytest.mark.parametrize(("batch_size", "n"), [(0, N), (-1, N), (4, 0)])
def test_bad_stream_arguments(data, batch_size, n):
    subset = ImageTensors(images=data.images[:n], labels=data.labels[:n])
    with pytest.raises(ValueError):
        BatchStream(subset, batch_size, seed=0)


# --- augmentation --------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "padding"), [(32, 4), (28, 3), (64, 8), (8, 1), (4, 1)])
def test_augment_for_size(size, padding):
    assert Augment.for_size(size, hflip=False) == Augment(padding=padding, hflip=False)
    assert Augment.for_size(size, hflip=True).hflip is True


def _trace_augmented(stream: BatchStream, batches: int, data: ImageTensors, padding: int) -> list[set]:
    """For every image of ``batches`` batches, the set of (sample, dy, dx, flipped) it is an exact crop of."""
    table = _crop_table(data, padding)
    found = []
    for _ in range(batches):
        batch = next(stream)
        for img, label in zip(_to_uint8(batch.images), batch.labels):
            matches = table.get(img.numpy().tobytes())
            assert matches, "batch image is not a crop of any zero-padded sample"
            assert {data.labels[m[0]].item() for m in matches} == {label.item()}
            found.append(matches)
    return found


def test_augmented_batches_are_exact_crops_without_flips(data):
    stream = BatchStream(data, 7, seed=2, augment=Augment(padding=2, hflip=False), mean=MEAN, std=STD)
    found = _trace_augmented(stream, 3 * 6, data, padding=2)  # six epochs
    assert all(len(m) == 1 for m in found)  # random pixels: the source is unambiguous
    matches = [next(iter(m)) for m in found]
    assert not any(flipped for *_, flipped in matches)
    for e in range(6):  # each epoch still sees every sample once
        assert sorted(m[0] for m in matches[e * N:(e + 1) * N]) == list(range(N))
    offsets = {(dy, dx) for _, dy, dx, _ in matches}
    assert len(offsets) > 10 and {(0, 0), (4, 4)} & offsets  # offsets spread over the 5x5 range


def test_hflip_flips_about_half(data):
    stream = BatchStream(data, 7, seed=2, augment=Augment(padding=1, hflip=True), mean=MEAN, std=STD)
    flips = [next(iter(m))[3] for m in _trace_augmented(stream, 30, data, padding=1)]
    assert 0.3 < sum(flips) / len(flips) < 0.7


def test_glyph_task_batches_are_never_flipped(monkeypatch, tmp_path):
    with isolated_caches(tmp_path):
        task = load_task("builtin:latin_upper?samples_per_class=2")
    assert task.hflip is False
    augment = Augment.for_size(task.image_size, task.hflip)
    assert augment == Augment(padding=4, hflip=False)
    data = task.tensors("train")
    assert data.images.shape == (52, 3, 32, 32)
    stream = BatchStream(data, 16, seed=0, augment=augment, mean=MEAN, std=STD)
    table = _crop_table(data, augment.padding)
    for _ in range(2 * len(data) // 16):
        batch = next(stream)
        for img, label in zip(_to_uint8(batch.images), batch.labels):
            matches = table[img.numpy().tobytes()]
            assert any(not flipped and data.labels[i] == label for i, _, _, flipped in matches)


# --- eval batches --------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [5, 21, 64])
def test_eval_batches_cover_every_sample_once_in_order(data, batch_size):
    batches = list(eval_batches(data, batch_size, mean=MEAN, std=STD))
    assert len(batches) == -(-N // batch_size)
    assert [len(b.labels) for b in batches[:-1]] == [batch_size] * (len(batches) - 1)
    images = torch.cat([b.images for b in batches])
    assert torch.equal(torch.cat([b.labels for b in batches]), data.labels)
    torch.testing.assert_close(images, _expected_normalized(data.images), atol=1e-5, rtol=0)


# --- stratified subsets --------------------------------------------------------------------------


def test_stratified_subset_keeps_class_proportions():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    idx = stratified_subset(labels, 10, seed=0)
    assert idx.dtype.kind == "i" and np.all(np.diff(idx) > 0)
    assert np.bincount(labels[idx]).tolist() == [5, 3, 2]
    assert np.bincount(labels[stratified_subset(labels, 50, seed=0)]).tolist() == [25, 15, 10]
    assert stratified_subset(labels, 100, seed=0).tolist() == list(range(100))


def test_stratified_subset_rounds_by_largest_remainder_and_keeps_every_class():
    labels = np.repeat([0, 1, 2], [97, 2, 1])
    assert np.bincount(labels[stratified_subset(labels, 10, seed=0)]).tolist() == [8, 1, 1]
    labels = np.repeat([0, 1, 2], [4, 4, 4])
    assert sorted(np.bincount(labels[stratified_subset(labels, 4, seed=0)]).tolist()) == [1, 1, 2]
    assert np.bincount(labels[stratified_subset(labels, 4, seed=0)]).tolist() == [2, 1, 1]  # ties by class id


def test_stratified_subset_is_deterministic_in_seed():
    labels = np.tile(np.arange(5), 40)
    first = stratified_subset(labels, 25, seed=3)
    assert np.array_equal(first, stratified_subset(labels, 25, seed=3))
    assert not np.array_equal(first, stratified_subset(labels, 25, seed=4))
    assert len(np.unique(first)) == 25


@pytest.mark.parametrize("n", [0, -1, 201])
def test_stratified_subset_out_of_range(n):
    with pytest.raises(DataError, match=f"asked for {n} .* 200 .*1-200"):
        stratified_subset(np.tile(np.arange(5), 40), n, seed=0)


# -- the random resized crop of large natural images ---------------------------------------------------
def test_large_images_get_the_random_resized_crop_and_a_task_may_choose():
    assert Augment.for_size(224, hflip=True).resized_crop and not Augment.for_size(64, hflip=True).resized_crop
    assert not Augment.for_size(224, hflip=True, kind="crop").resized_crop
    assert Augment.for_size(32, hflip=False, kind="resized_crop").resized_crop


def test_a_whole_image_box_is_the_image_and_a_flip_mirrors_it():
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    whole = torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 2)
    out = Augment(hflip=True, resized_crop=True).apply(images, whole, torch.tensor([False, True]))
    torch.testing.assert_close(out[0], images[0].float(), rtol=0, atol=1e-3)
    torch.testing.assert_close(out[1], images[1].float().flip(-1), rtol=0, atol=1e-3)


def test_a_half_box_is_that_half_resized():
    images = torch.arange(4.0).repeat_interleave(4).view(1, 1, 4, 4).expand(1, 3, 4, 4).contiguous()  # rows 0..3
    top_half = torch.tensor([[0.0, 0.0, 1.0, 0.5]])
    out = Augment(resized_crop=True).apply(images, top_half, torch.tensor([False]))
    assert out.shape == images.shape
    # Output rows sample the box at rows -0.25, 0.25, 0.75, 1.25 of the image (bilinear, pixel centres):
    # the top half, stretched; the image's border row repeats above it.
    assert out[0, 0, :, 0].tolist() == [0.0, 0.25, 0.75, 1.25]


def test_resized_crop_boxes_respect_timms_ranges_and_fit_the_image():
    boxes = Augment(resized_crop=True).draw(2000, torch.Generator().manual_seed(0))
    x0, y0, w, h = boxes.unbind(1)
    assert bool(((x0 >= 0) & (y0 >= 0) & (x0 + w <= 1 + 1e-6) & (y0 + h <= 1 + 1e-6)).all())
    area, ratio = w * h, w / h
    unclamped = (w < 1) & (h < 1)
    assert float(area[unclamped].min()) >= 0.08 - 1e-6 and float(area.max()) <= 1 + 1e-6
    assert float(ratio[unclamped].min()) >= 0.75 - 1e-6 and float(ratio[unclamped].max()) <= 4 / 3 + 1e-6


def test_resized_crop_batches_are_a_pure_function_of_seed_and_position():
    data = ImageTensors(torch.randint(0, 256, (20, 3, 24, 24), dtype=torch.uint8), torch.arange(20))
    augment = Augment(hflip=True, resized_crop=True)
    first = BatchStream(data, 6, seed=4, augment=augment)
    batches = [next(first) for _ in range(5)]
    again = BatchStream(data, 6, seed=4, augment=augment)
    again.load_state_dict({"position": 18})
    assert torch.equal(next(again).images, batches[3].images)
    assert batches[0].images.dtype == torch.float32 and batches[0].images.shape == (6, 3, 24, 24)


def test_a_task_spec_names_its_augmentation():
    from lsml_hub.data import TaskSpec
    from lsml_hub.errors import ConfigError

    assert TaskSpec.parse("owner/name?augment=resized_crop").augment == "resized_crop"
    with pytest.raises(ConfigError, match="task spec key 'augment' must be one of crop, resized_crop, got 'flip'"):
        TaskSpec.parse("owner/name?augment=flip")
