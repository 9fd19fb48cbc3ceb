"""``load_task`` on every local source kind ``datasets`` reads, column detection, class subsets, bad input.

All data is written with ``datasets`` / PIL into tmp folders; the Hub is never reached.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import datasets
import huggingface_hub
import numpy as np
import pytest
import torch
from _data_fixtures import (
    class_features,
    labelled_dataset,
    pil_to_uint8_chw,
    random_images,
    write_image_folder,
)
from _isolation import isolated_caches

from lsml_hub._hub_client import CLIENT_HTTP_ERROR
from lsml_hub.data import load_task, sources
from lsml_hub.errors import DataError

NAMES = ["ant", "bee", "cat", "dog"]


@pytest.fixture(scope="module", autouse=True)
def _caches(tmp_path_factory):
    with isolated_caches(tmp_path_factory.mktemp("caches")) as root:
        yield root


@pytest.fixture(scope="module")
def splits() -> datasets.DatasetDict:
    """train: 20 rows, test: 8 rows; columns ``img`` (Image, 12 px RGB) and ``fine`` (ClassLabel)."""
    return datasets.DatasetDict(
        train=labelled_dataset(20, 4, seed=1, image="img", label="fine", names=NAMES),
        test=labelled_dataset(8, 4, seed=2, image="img", label="fine", names=NAMES),
    )


def _digest(img) -> str:
    return hashlib.sha256(np.asarray(img.convert("RGB")).tobytes()).hexdigest()


def _rows(ds: datasets.Dataset, image: str = "image", label: str = "label") -> list[tuple[str, int]]:
    return [(_digest(img), lab) for img, lab in zip(ds[image], list(ds[label]))]


def _assert_same_rows(task_split: datasets.Dataset, original: datasets.Dataset, image: str, label: str) -> None:
    assert task_split.column_names == ["image", "label"]
    assert isinstance(task_split.features["image"], datasets.Image)
    assert isinstance(task_split.features["label"], datasets.ClassLabel)
    assert _rows(task_split) == _rows(original, image, label)


# --- parquet -------------------------------------------------------------------------------------


def test_parquet_folder_with_split_files(tmp_path, splits):
    data = tmp_path / "pq" / "data"
    data.mkdir(parents=True)
    for name, ds in splits.items():
        ds.to_parquet(str(data / f"{name}-00000.parquet"))
    task = load_task(str(tmp_path / "pq"))
    assert task.class_names == NAMES and task.num_classes == 4
    assert task.train.features["label"].names == NAMES
    assert (len(task.train), len(task.eval)) == (20, 8)
    _assert_same_rows(task.train, splits["train"], "img", "fine")
    _assert_same_rows(task.eval, splits["test"], "img", "fine")
    assert task.image_size == 12
    assert task.hflip is True  # local images are taken as natural images
    assert task.name == "pq"
    assert task.summary() == {
        "name": "pq", "source": str(tmp_path / "pq"), "revision": None, "classes": None, "num_classes": 4,
        "image_size": 12, "train_size": 20, "eval_size": 8,
    }


def test_single_parquet_file_holds_out_a_stratified_tenth(tmp_path):
    full = labelled_dataset(40, 4, seed=3, names=NAMES)  # 10 per class
    path = tmp_path / "one.parquet"
    full.to_parquet(str(path))
    task = load_task(str(path))
    assert (len(task.train), len(task.eval)) == (36, 4)
    assert np.bincount(list(task.eval["label"])).tolist() == [1, 1, 1, 1]
    train_rows, eval_rows = _rows(task.train), _rows(task.eval)
    assert sorted(train_rows + eval_rows) == sorted(_rows(full))
    assert not set(train_rows) & set(eval_rows)
    # The held-out rows are a function of the spec's seed.
    assert _rows(load_task(str(path)).eval) == eval_rows
    other = [_rows(load_task(f"{path}?seed={s}").eval) for s in (1, 2, 3)]
    assert any(rows != eval_rows for rows in other)


def test_parquet_with_int_label_column_without_classlabel(tmp_path):
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    labels = [0, 1, 2, 0, 1, 2, 0, 1, 2, 2, 1, 0]
    datasets.Dataset.from_dict({"image": random_images(12, 8, seed=4), "label": labels}, features=features) \
        .to_parquet(str(tmp_path / "ints.parquet"))
    task = load_task({"source": str(tmp_path / "ints.parquet"), "eval_split": None})
    assert task.class_names == ["0", "1", "2"]
    assert task.train.features["label"] == datasets.ClassLabel(names=["0", "1", "2"])
    assert sorted(list(task.train["label"]) + list(task.eval["label"])) == sorted(labels)


def test_int_labels_count_classes_of_both_splits(tmp_path):
    # The test split holds id 3, which train lacks: the task has 4 classes, not 3 with an id out of range.
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    data = tmp_path / "ints" / "data"
    data.mkdir(parents=True)
    for split, labels in (("train", [0, 1, 2, 0, 1, 2]), ("test", [0, 1, 2, 3])):
        datasets.Dataset.from_dict({"image": random_images(len(labels), 8, seed=len(labels)), "label": labels},
                                   features=features).to_parquet(str(data / f"{split}-00000.parquet"))
    task = load_task(str(tmp_path / "ints"))
    assert task.class_names == ["0", "1", "2", "3"]
    assert task.eval.features["label"].num_classes == 4 == task.train.features["label"].num_classes
    assert list(task.eval["label"]) == [0, 1, 2, 3]


def test_splits_with_different_classlabels_are_rejected(tmp_path):
    def split(names, labels, seed):
        return datasets.Dataset.from_dict({"image": random_images(len(labels), 8, seed=seed), "label": labels},
                                          features=class_features(names))

    datasets.DatasetDict(train=split(["x", "y", "z"], [0, 1, 2], 1), test=split(["z", "x"], [0, 1], 2)) \
        .save_to_disk(str(tmp_path / "mixed"))
    with pytest.raises(DataError, match="differently in the eval split.*id 0 is 'z' in eval, 'x' in train"):
        load_task(str(tmp_path / "mixed"))


def test_negative_int_labels_are_rejected(tmp_path):
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int32")})
    datasets.Dataset.from_dict({"image": random_images(4, 8, seed=5), "label": [0, -1, 1, 0]}, features=features) \
        .to_parquet(str(tmp_path / "neg.parquet"))
    with pytest.raises(DataError, match="negative"):
        load_task(str(tmp_path / "neg.parquet"))


# --- image folder --------------------------------------------------------------------------------


def test_image_folder_with_train_and_test(tmp_path):
    root = tmp_path / "imgs"
    write_image_folder(root, {"train": 5, "test": 2}, ["zebra", "ape", "mole"], size=10, seed=6)
    task = load_task(str(root))
    assert task.class_names == ["ape", "mole", "zebra"]  # sorted folder names
    assert (len(task.train), len(task.eval)) == (15, 6)
    assert np.bincount(list(task.train["label"])).tolist() == [5, 5, 5]
    assert np.bincount(list(task.eval["label"])).tolist() == [2, 2, 2]
    assert task.image_size == 10
    # Every image is the PNG of its class folder.
    decode = datasets.Image().decode_example
    on_disk = {
        (_digest(decode({"path": str(p), "bytes": None})), task.class_names.index(p.parent.name))
        for p in (root / "train").rglob("*.png")
    }
    assert set(_rows(task.train)) == on_disk
    # Grey PNGs become 3 identical channels, at the native size unchanged.
    tensors = task.tensors("train")
    assert tensors.images.shape == (15, 3, 10, 10) and tensors.images.dtype == torch.uint8
    assert torch.equal(tensors.images[:, 0], tensors.images[:, 1])
    assert torch.equal(tensors.images[:, 0], tensors.images[:, 2])
    assert torch.equal(tensors.images[3], pil_to_uint8_chw(task.train[3]["image"]))
    assert tensors.labels.tolist() == list(task.train["label"])
    assert task.tensors("train") is tensors  # decoded once


def test_image_size_override_resizes_tensors(tmp_path):
    root = tmp_path / "imgs"
    write_image_folder(root, {"train": 2, "test": 1}, ["a", "b"], size=10, seed=7)
    task = load_task(f"{root}?image_size=24")
    assert task.image_size == 24
    assert task.tensors("eval").images.shape == (2, 3, 24, 24)
    with pytest.raises(ValueError, match="split"):
        task.tensors("test")


# --- save_to_disk --------------------------------------------------------------------------------


def test_save_to_disk_dataset_dict(tmp_path, splits):
    splits.save_to_disk(str(tmp_path / "dd"))
    task = load_task(str(tmp_path / "dd"))
    _assert_same_rows(task.train, splits["train"], "img", "fine")
    _assert_same_rows(task.eval, splits["test"], "img", "fine")


def test_save_to_disk_validation_split_is_found(tmp_path, splits):
    datasets.DatasetDict(train=splits["train"], validation=splits["test"]).save_to_disk(str(tmp_path / "dv"))
    task = load_task(str(tmp_path / "dv"))
    _assert_same_rows(task.eval, splits["test"], "img", "fine")


def test_save_to_disk_plain_dataset_gets_held_out_eval(tmp_path, splits):
    splits["train"].save_to_disk(str(tmp_path / "plain"))
    task = load_task(str(tmp_path / "plain"))
    assert (len(task.train), len(task.eval)) == (16, 4)
    assert np.bincount(list(task.eval["label"])).tolist() == [1, 1, 1, 1]
    assert sorted(_rows(task.train) + _rows(task.eval)) == sorted(_rows(splits["train"], "img", "fine"))


def test_explicit_splits(tmp_path, splits):
    datasets.DatasetDict(a=splits["test"], b=splits["train"]).save_to_disk(str(tmp_path / "ab"))
    task = load_task(f"{tmp_path / 'ab'}?train_split=b&eval_split=a")
    _assert_same_rows(task.train, splits["train"], "img", "fine")
    _assert_same_rows(task.eval, splits["test"], "img", "fine")
    with pytest.raises(DataError, match=r"no split 'train'.*\['a', 'b'\]"):
        load_task(str(tmp_path / "ab"))
    with pytest.raises(DataError, match="no split 'valid'"):
        load_task(f"{tmp_path / 'ab'}?train_split=b&eval_split=valid")


# --- column detection ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_label_columns(tmp_path_factory) -> Path:
    """An image column ``picture`` and two ClassLabel columns, ``coarse`` (2) and ``fine`` (4)."""
    n = 16
    features = datasets.Features({
        "picture": datasets.Image(),
        "coarse": datasets.ClassLabel(names=["animal", "thing"]),
        "fine": datasets.ClassLabel(names=NAMES),
        "caption": datasets.Value("string"),
    })
    ds = datasets.Dataset.from_dict(
        {"picture": random_images(n, 8, seed=8), "coarse": [i % 2 for i in range(n)],
         "fine": [i % 4 for i in range(n)], "caption": [f"c{i}" for i in range(n)]},
        features=features,
    )
    path = tmp_path_factory.mktemp("cols") / "two"
    datasets.DatasetDict(train=ds, test=ds.select(range(8))).save_to_disk(str(path))
    return path


def test_several_label_columns_list_candidates(two_label_columns):
    with pytest.raises(DataError) as err:
        load_task(str(two_label_columns))
    msg = str(err.value)
    assert "'coarse'" in msg and "'fine'" in msg and "label_column=" in msg
    assert str(two_label_columns) in msg


@pytest.mark.parametrize(("column", "names"), [("fine", NAMES), ("coarse", ["animal", "thing"])])
def test_explicit_label_column(two_label_columns, column, names):
    task = load_task({"source": str(two_label_columns), "label_column": column})
    assert task.class_names == names
    assert task.train.column_names == ["image", "label"]
    assert list(task.train["label"]) == [i % len(names) for i in range(16)]


def test_several_image_columns_and_explicit_image_column(tmp_path):
    features = class_features(NAMES, "front", "label")
    features["back"] = datasets.Image()
    front, back = random_images(8, 6, seed=9), random_images(8, 6, seed=10)
    ds = datasets.Dataset.from_dict({"front": front, "back": back, "label": [i % 4 for i in range(8)]},
                                    features=features)
    ds.save_to_disk(str(tmp_path / "imgs2"))
    with pytest.raises(DataError, match=r"several image columns \['front', 'back'\].*image_column="):
        load_task(str(tmp_path / "imgs2"))
    task = load_task(f"{tmp_path / 'imgs2'}?image_column=back")
    assert sorted(_rows(task.train) + _rows(task.eval)) == sorted(_rows(ds, "back"))


def test_missing_explicit_column(two_label_columns):
    with pytest.raises(DataError, match=r"no column 'labels'.*'coarse'"):
        load_task({"source": str(two_label_columns), "label_column": "labels"})
    with pytest.raises(DataError, match="no column 'img'"):
        load_task({"source": str(two_label_columns), "label_column": "fine", "image_column": "img"})


def test_no_label_column(tmp_path):
    features = datasets.Features({"image": datasets.Image(), "target": datasets.Value("int64")})
    ds = datasets.Dataset.from_dict({"image": random_images(10, 6, seed=11), "target": [0, 1] * 5},
                                    features=features)
    ds.to_parquet(str(tmp_path / "target.parquet"))
    with pytest.raises(DataError, match="no label column.*label_column="):
        load_task(str(tmp_path / "target.parquet"))
    # An int column is fine once named.
    task = load_task(f"{tmp_path / 'target.parquet'}?label_column=target")
    assert task.class_names == ["0", "1"]


def test_no_image_column(tmp_path):
    datasets.Dataset.from_dict({"x": [1, 2, 3], "label": [0, 1, 0]}).to_parquet(str(tmp_path / "noimg.parquet"))
    with pytest.raises(DataError, match="no image column.*image_column="):
        load_task(str(tmp_path / "noimg.parquet"))


# --- class subsets -------------------------------------------------------------------------------


def test_class_subset_remaps_in_given_order(tmp_path, splits):
    splits.save_to_disk(str(tmp_path / "dd"))
    task = load_task({"source": str(tmp_path / "dd"), "classes": [3, 1]})
    assert task.class_names == ["dog", "bee"] and task.num_classes == 2
    assert task.train.features["label"].names == ["dog", "bee"]
    for split, original in ((task.train, splits["train"]), (task.eval, splits["test"])):
        kept = original.filter(lambda row: row["fine"] in (3, 1))
        expected = [(d, {3: 0, 1: 1}[lab]) for d, lab in _rows(kept, "img", "fine")]
        assert _rows(split) == expected
    assert task.name == "dd_3-1"
    assert task.summary()["classes"] == [3, 1]


def test_class_subset_out_of_range(tmp_path, splits):
    splits.save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataError) as err:
        load_task(f"{tmp_path / 'dd'}?classes=2-5")
    msg = str(err.value)
    assert "[4, 5]" in msg and "0-3" in msg


# --- bad sources ---------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["./no/such/folder", "/no/such/data.parquet", "~/no-such-lsml-data/x/y"])
def test_missing_path(source):
    with pytest.raises(DataError, match="does not exist") as err:
        load_task(source)
    assert repr(source) in str(err.value)


def test_unreadable_file_and_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"notes\.txt.*\.parquet file"):
        load_task(str(tmp_path / "notes.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="cannot read dataset folder"):
        load_task(str(tmp_path / "empty"))


def test_a_damaged_parquet_file_or_folder_is_a_data_error_naming_it(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"cannot read parquet file '.*bad\.parquet': .*[Pp]arquet"):
        load_task(str(tmp_path / "bad.parquet"))
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "train.parquet").write_bytes(b"not parquet either")
    with pytest.raises(DataError, match=r"cannot read dataset folder '.*folder'"):
        load_task(str(tmp_path / "folder"))


def test_samples_per_class_only_for_generated_sources(tmp_path, splits):
    splits.save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataError, match="samples_per_class"):
        load_task(f"{tmp_path / 'dd'}?samples_per_class=3")


def test_hub_id_while_offline_says_how_to_use_a_local_copy():
    with pytest.raises(DataError) as err:
        load_task("lsml-hub-tests/no-such-dataset?classes=0-9")
    msg = str(err.value)
    assert "'lsml-hub-tests/no-such-dataset'" in msg
    assert "cannot reach the Hugging Face Hub" in msg
    assert "local copy" in msg and "save_to_disk" in msg
    assert "\n" not in msg


# --- Hub revisions ---------------------------------------------------------------------------------
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHubApi:
    """Stands in for HfApi: records dataset_info calls, answers with COMMIT or raises ``error``."""

    calls: list[tuple[str, str | None, str]] = []
    loaded_at: list[str | None] = []  # revisions the (faked) load_hub was asked for
    error: Exception | None = None

    def __init__(self, *, library_name: str, library_version: str) -> None:
        self.library_name = library_name

    def dataset_info(self, repo_id: str, *, revision: str | None = None):
        FakeHubApi.calls.append((repo_id, revision, self.library_name))
        if FakeHubApi.error is not None:
            raise FakeHubApi.error
        return SimpleNamespace(sha=COMMIT)


@pytest.fixture
def online_hub(monkeypatch, splits):
    """The Hub 'online' with a fake dataset_info; load_hub returns the local ``splits``."""
    FakeHubApi.calls, FakeHubApi.error = [], None
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(sources, "HfApi", FakeHubApi)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    FakeHubApi.loaded_at = []

    def load_hub(dataset_id, config, revision):
        FakeHubApi.loaded_at.append(revision)
        return splits

    monkeypatch.setattr(sources, "load_hub", load_hub)
    return FakeHubApi


def test_a_hub_task_records_the_commit_its_revision_resolved_to(online_hub):
    task = load_task("owner/tiny@main?label_column=fine")
    assert task.revision == COMMIT and task.summary()["revision"] == COMMIT
    assert online_hub.calls == [("owner/tiny", "main", "lsml-hub")]
    assert online_hub.loaded_at == [COMMIT]  # the data is read at the commit that is recorded
    assert task.spec.revision == "main"  # the spec (and so a resume's identity) keeps what the user wrote


def test_a_pinned_commit_or_offline_mode_asks_the_hub_nothing(online_hub, monkeypatch):
    assert load_task(f"owner/tiny@{COMMIT}?label_column=fine").revision == COMMIT
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # HF_DATASETS_OFFLINE=1 alone
    assert load_task("owner/tiny@v1?label_column=fine").revision == "v1"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    assert load_task("owner/tiny@v2?label_column=fine").revision == "v2"
    assert online_hub.calls == []


def test_an_unreachable_hub_records_the_revision_as_given_with_a_warning(online_hub, caplog):
    online_hub.error = CLIENT_HTTP_ERROR("connection refused")
    with caplog.at_level("WARNING", logger="lsml_hub.data.sources"):
        task = load_task("owner/tiny?label_column=fine")
    assert task.revision is None
    assert ("cannot resolve dataset owner/tiny@main to a commit (connection refused); using the revision "
            "as given") in caplog.text


def test_local_and_builtin_sources_have_no_revision(tmp_path, splits):
    splits.save_to_disk(str(tmp_path / "saved"))
    assert load_task(f"{tmp_path / 'saved'}?label_column=fine").revision is None
    assert load_task("builtin:digits").summary()["revision"] is None
