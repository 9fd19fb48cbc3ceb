"""Builtin offline sources: scikit-learn digits, matplotlib glyph alphabets, Fashion-MNIST from idx files."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import datasets
import datasets.utils
import numpy as np
import pytest
import torch
from _isolation import isolated_caches

from lsml_hub.data import BUILTINS, cache_root, load_task
from lsml_hub.data.builtin import fashion_mnist, glyphs, load_builtin
from lsml_hub.data.builtin.glyphs import ALPHABETS, fonts_covering
from lsml_hub.errors import DataError


@pytest.fixture(scope="module", autouse=True)
def _caches(tmp_path_factory):
    with isolated_caches(tmp_path_factory.mktemp("caches")) as root:
        yield root


def _digests(ds: datasets.Dataset) -> list[tuple[str, int]]:
    return [(hashlib.sha256(np.asarray(img).tobytes()).hexdigest(), lab) for img, lab in zip(ds["image"], ds["label"])]


def _arrays(ds: datasets.Dataset) -> np.ndarray:
    return np.stack([np.asarray(img) for img in ds["image"]])


def test_registry_lists_every_source():
    assert set(BUILTINS) == {"digits", "fashion_mnist", *ALPHABETS}
    assert set(ALPHABETS) == {"latin_upper", "latin_lower", "printed_digits", "greek", "cyrillic", "symbols"}
    assert BUILTINS["fashion_mnist"].natural_images and not BUILTINS["digits"].natural_images
    assert all(not BUILTINS[a].natural_images and BUILTINS[a].generated for a in ALPHABETS)


def test_cache_root_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LSML_HUB_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("LSML_HUB_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "lsml_hub"


# --- digits --------------------------------------------------------------------------------------


def test_digits_are_sklearn_digits_split_stratified():
    from sklearn.datasets import load_digits

    task = load_task("builtin:digits")
    assert task.class_names == [str(d) for d in range(10)]
    assert (task.num_classes, task.image_size, task.hflip) == (10, 32, False)
    assert (len(task.train), len(task.eval)) == (1438, 359)
    assert task.train[0]["image"].size == (8, 8)
    bunch = load_digits()
    expected = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    want = sorted((hashlib.sha256(img.tobytes()).hexdigest(), int(t)) for img, t in zip(expected, bunch.target))
    assert sorted(_digests(task.train) + _digests(task.eval)) == want
    eval_counts = np.bincount(list(task.eval["label"]))
    assert eval_counts.sum() == 359 and eval_counts.min() >= 35 and eval_counts.max() <= 37
    tensors = task.tensors("eval")
    assert tensors.images.shape == (359, 3, 32, 32) and tensors.images.dtype == torch.uint8
    assert torch.equal(tensors.images[:, 0], tensors.images[:, 2])


def test_digits_split_is_deterministic_by_seed(monkeypatch, tmp_path):
    first = _digests(load_task("builtin:digits").eval)
    monkeypatch.setenv("LSML_HUB_CACHE", str(tmp_path / "fresh"))
    assert _digests(load_task("builtin:digits").eval) == first  # rebuilt from scratch: same split
    assert _digests(load_task("builtin:digits?seed=1").eval) != first


def test_digits_take_no_samples_per_class():
    with pytest.raises(DataError, match="samples_per_class.*builtin:digits"):
        load_task("builtin:digits?samples_per_class=5")


# --- glyphs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ALPHABETS))
def test_glyph_alphabet(name):
    chars = ALPHABETS[name].chars
    k = len(chars)
    assert len(set(chars)) == k
    assert fonts_covering(chars), "no bundled matplotlib font covers the alphabet"
    task = load_task(f"builtin:{name}?samples_per_class=3")
    assert task.class_names == list(chars) and task.num_classes == k
    assert (task.image_size, task.hflip) == (32, False)
    assert (len(task.train), len(task.eval)) == (3 * k, 10 * k)  # test: max(10, spc // 5) per class
    assert np.bincount(list(task.train["label"])).tolist() == [3] * k
    assert np.bincount(list(task.eval["label"])).tolist() == [10] * k
    images = _arrays(task.train)
    assert images.shape == (3 * k, 32, 32) and images.dtype == np.uint8
    assert task.train[0]["image"].mode == "L"
    # Every sample shows a glyph: bright pixels on a black border.
    assert (images.reshape(len(images), -1).max(axis=1) > 200).all()
    assert (images.reshape(len(images), -1) > 100).sum(axis=1).min() >= 3  # a thin minus sign has few
    # Samples differ from one another (random font, size, rotation, offset).
    assert len({img.tobytes() for img in images}) == len(images)
    # Rendering again with the same seed gives the same bytes (and the cache round trip is lossless);
    # another seed gives other images.
    again, labels = glyphs._render_split(ALPHABETS[name], "train", 3, seed=0)
    assert np.array_equal(again, images) and labels.tolist() == list(task.train["label"])
    other, _ = glyphs._render_split(ALPHABETS[name], "train", 3, seed=1)
    assert (other != images).any(axis=(1, 2)).all()


def test_glyphs_train_and_test_sizes_follow_samples_per_class():
    task = load_task("builtin:printed_digits?samples_per_class=60")
    assert (len(task.train), len(task.eval)) == (600, 120)


def test_glyphs_same_seed_same_bytes_other_seed_differs(monkeypatch, tmp_path):
    spec = "builtin:latin_upper?samples_per_class=2"
    first = _arrays(load_task(spec).train)
    monkeypatch.setenv("LSML_HUB_CACHE", str(tmp_path / "fresh"))
    again = load_task(spec)
    assert list((tmp_path / "fresh" / "builtin").iterdir())  # really rebuilt in the new cache
    assert np.array_equal(_arrays(again.train), first)
    other = _arrays(load_task(spec + "&seed=1").train)
    assert other.shape == first.shape
    assert all(not np.array_equal(a, b) for a, b in zip(other, first))


def test_builtin_is_materialized_once(monkeypatch, tmp_path):
    monkeypatch.setenv("LSML_HUB_CACHE", str(tmp_path / "once"))
    load_builtin("printed_digits", samples_per_class=2, seed=5)
    folders = list((tmp_path / "once" / "builtin").iterdir())
    assert [f.name.split("-")[0] for f in folders] == ["printed_digits"]
    assert (folders[0] / "dataset_dict.json").exists()

    def fail(*args, **kwargs):
        raise AssertionError("rebuilt a cached builtin")

    monkeypatch.setattr("lsml_hub.data.builtin.glyphs.build_glyphs", fail)
    again = load_builtin("printed_digits", samples_per_class=2, seed=5)
    assert len(again["train"]) == 20
    assert list((tmp_path / "once" / "builtin").iterdir()) == folders  # no temporary folders left
    with pytest.raises(AssertionError, match="rebuilt"):
        load_builtin("printed_digits", samples_per_class=3, seed=5)  # other parameters: its own folder


@pytest.mark.parametrize("bars_before", ["enabled", "disabled"])
def test_materializing_logs_one_line_and_no_progress_bars(monkeypatch, tmp_path, caplog, capsys, bars_before):
    monkeypatch.setenv("LSML_HUB_CACHE", str(tmp_path / "quiet"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_DISABLE_PROGRESS_BARS", None)  # the user chose nothing
    if bars_before == "disabled":
        datasets.utils.disable_progress_bars()
    try:
        with caplog.at_level("INFO", logger="lsml_hub"):
            load_builtin("greek", samples_per_class=2, seed=7)
        bars_after = datasets.utils.are_progress_bars_disabled()
    finally:
        datasets.utils.enable_progress_bars()
    assert "Saving the dataset" not in capsys.readouterr().err
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("lsml_hub")]
    assert len(lines) == 1 and lines[0].startswith(f"materializing builtin:greek into {tmp_path / 'quiet'}")
    assert bars_after == (bars_before == "disabled")  # the caller's setting is back


def test_bars_forced_on_by_the_environment_are_left_on(monkeypatch, tmp_path, capsys, recwarn):
    # HF_DATASETS_DISABLE_PROGRESS_BARS=0: the user asked for bars (and disabling would only warn).
    monkeypatch.setenv("LSML_HUB_CACHE", str(tmp_path / "loud"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_DISABLE_PROGRESS_BARS", False)
    load_builtin("greek", samples_per_class=2, seed=8)
    assert "Saving the dataset" in capsys.readouterr().err
    assert not datasets.utils.are_progress_bars_disabled()
    assert [str(w.message) for w in recwarn if "progress bars" in str(w.message)] == []


def test_unknown_builtin_suggests_close_names():
    with pytest.raises(DataError) as err:
        load_task("builtin:latin_uper")
    msg = str(err.value)
    assert "'latin_uper'" in msg and "did you mean latin_upper" in msg
    assert "valid: cyrillic, digits, fashion_mnist" in msg
    with pytest.raises(DataError, match="'nope'.*valid: "):
        load_task("builtin:nope")


# --- Fashion-MNIST -------------------------------------------------------------------------------


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def small_fashion_dir(tmp_path, monkeypatch) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Tiny idx files in the official names, pointed at by $LSML_HUB_FASHION_MNIST_DIR."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 30), ("test", 10)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        image_file, label_file = fashion_mnist._FILES[split]
        _write_idx(tmp_path / image_file, images)
        _write_idx(tmp_path / label_file, labels)
        arrays[split] = (images, labels)
    monkeypatch.setenv(fashion_mnist.DIR_ENV, str(tmp_path))
    monkeypatch.setenv("LSML_HUB_CACHE", str(tmp_path / "cache"))
    return tmp_path, arrays


def test_read_idx(small_fashion_dir):
    folder, arrays = small_fashion_dir
    images = fashion_mnist.read_idx(folder / "train-images-idx3-ubyte.gz")
    assert images.shape == (30, 28, 28) and np.array_equal(images, arrays["train"][0])
    assert np.array_equal(fashion_mnist.read_idx(folder / "t10k-labels-idx1-ubyte.gz"), arrays["test"][1])


def test_fashion_mnist_from_local_idx_files(small_fashion_dir):
    folder, arrays = small_fashion_dir
    assert fashion_mnist.local_dir() == folder
    task = load_task("builtin:fashion_mnist")
    assert task.class_names == fashion_mnist.CLASS_NAMES and task.num_classes == 10
    assert (task.image_size, task.hflip) == (28, True)
    assert (len(task.train), len(task.eval)) == (30, 10)
    assert np.array_equal(_arrays(task.train), arrays["train"][0])
    assert list(task.eval["label"]) == arrays["test"][1].tolist()
    assert task.tensors("train").images.shape == (30, 3, 28, 28)


def test_fashion_mnist_without_local_copy_while_offline(monkeypatch, tmp_path):
    monkeypatch.delenv(fashion_mnist.DIR_ENV, raising=False)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "absent")
    with pytest.raises(DataError) as err:
        load_task("builtin:fashion_mnist")
    msg = str(err.value)
    assert "dataset-fashion-mnist" in msg and fashion_mnist.DIR_ENV in msg
    assert "cannot reach the Hugging Face Hub" in msg


@pytest.mark.slow
@pytest.mark.skipif(fashion_mnist.local_dir() is None, reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_debian_copy(monkeypatch):
    monkeypatch.delenv(fashion_mnist.DIR_ENV, raising=False)
    folder = fashion_mnist.local_dir()
    task = load_task("builtin:fashion_mnist")  # decodes and materializes 70,000 images (~15 s)
    assert (len(task.train), len(task.eval)) == (60_000, 10_000)
    assert task.num_classes == 10 and task.class_names[0] == "T-shirt/top" and task.class_names[9] == "Ankle boot"
    assert np.bincount(list(task.train["label"])).tolist() == [6000] * 10
    assert np.bincount(list(task.eval["label"])).tolist() == [1000] * 10
    assert task.image_size == 28 and task.train[0]["image"].size == (28, 28)
    first = fashion_mnist.read_idx(folder / "t10k-images-idx3-ubyte.gz")[:5]
    assert np.array_equal(_arrays(task.eval.select(range(5))), first)
