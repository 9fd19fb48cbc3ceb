"""Task specs: strings with ``?key=value`` and ``@revision``, mappings, class subsets, and their errors."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from lsml_hub.data import TaskSpec, parse_class_subset
from lsml_hub.errors import ConfigError

VALID_KEYS = sorted(f.name for f in dataclasses.fields(TaskSpec))


def test_plain_string_is_source_with_defaults():
    spec = TaskSpec.parse("uoft-cs/cifar100")
    assert spec == TaskSpec(source="uoft-cs/cifar100")
    assert spec.train_split == "train" and spec.eval_split is None and spec.seed == 0
    assert spec.revision is None and spec.classes is None and not spec.is_builtin
    assert spec.display_name == "cifar100"


def test_string_with_query_and_revision():
    spec = TaskSpec.parse(
        "zh-plus/tiny-imagenet@v1.2?classes=0-9,20,30-31&image_size=64&eval_split=valid&hflip=no"
        "&seed=7&config=default&image_column=img&label_column=fine&name=tiny"
    )
    assert spec.source == "zh-plus/tiny-imagenet"
    assert spec.revision == "v1.2"
    assert spec.classes == (*range(10), 20, 30, 31)
    assert spec.image_size == 64 and isinstance(spec.image_size, int)
    assert spec.eval_split == "valid"
    assert spec.hflip is False
    assert spec.seed == 7
    assert (spec.config, spec.image_column, spec.label_column, spec.name) == ("default", "img", "fine", "tiny")
    assert spec.display_name == "tiny"


def test_revision_with_commit_hash_and_query_containing_at():
    spec = TaskSpec.parse("owner/data@0123abcd?name=a@b")
    assert (spec.source, spec.revision, spec.name) == ("owner/data", "0123abcd", "a@b")


@pytest.mark.parametrize(("word", "value"), [("true", True), ("1", True), ("Yes", True), ("false", False),
                                              ("0", False), ("NO", False)])
def test_hflip_words(word, value):
    assert TaskSpec.parse(f"x?hflip={word}").hflip is value


def test_builtin_string():
    spec = TaskSpec.parse("builtin:latin_upper?samples_per_class=20&seed=3&classes=0-4")
    assert spec.is_builtin and spec.builtin_name == "latin_upper"
    assert spec.samples_per_class == 20 and spec.seed == 3
    assert spec.revision is None
    assert spec.display_name == "latin_upper_0-4"


def test_hub_revision_may_hold_slashes():
    spec = TaskSpec.parse("owner/data@refs/pr/3?classes=1")
    assert (spec.source, spec.revision, spec.classes) == ("owner/data", "refs/pr/3", (1,))


@pytest.mark.parametrize("path", ["/data/me@host/set", "./shots@2x", "~/a@b", "some/deep/dir@v1"])
def test_local_paths_keep_their_at_sign(path):
    spec = TaskSpec.parse(f"{path}?seed=2")
    assert (spec.source, spec.revision, spec.seed) == (path, None, 2)


def test_existing_relative_path_with_at_sign(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pics@v2").mkdir()
    assert TaskSpec.parse("pics@v2").source == "pics@v2"
    assert TaskSpec.parse("pics@v3").revision == "v3"  # no such folder: a Hub id with a revision


def test_builtin_with_at_sign_keeps_it_in_the_source():
    # Builtins have no revision: "@" is not split off (the source then names no builtin).
    spec = TaskSpec.parse("builtin:digits@v1")
    assert spec.source == "builtin:digits@v1" and spec.revision is None


def test_mapping_from_yaml():
    values = yaml.safe_load(
        """
        source: uoft-cs/cifar100
        revision: main
        classes: [5, 3, 4]
        image_size: 32
        hflip: false
        eval_split: test
        """
    )
    spec = TaskSpec.parse(values)
    assert spec.classes == (5, 3, 4)
    assert spec.image_size == 32 and spec.hflip is False
    assert spec.revision == "main" and spec.eval_split == "test"


def test_mapping_with_range_string_and_int_class():
    assert TaskSpec.parse({"source": "a/b", "classes": "0-2"}).classes == (0, 1, 2)
    assert TaskSpec.parse({"source": "a/b", "classes": 4}).classes == (4,)


def test_parse_is_identity_on_specs_and_to_dict_round_trips():
    spec = TaskSpec.parse("owner/data@rev?classes=3,1&image_size=48&hflip=true")
    assert TaskSpec.parse(spec) is spec
    d = spec.to_dict()
    assert d == {"source": "owner/data", "revision": "rev", "classes": [3, 1], "image_size": 48, "hflip": True}
    assert TaskSpec.parse(d) == spec
    assert TaskSpec.parse(yaml.safe_load(yaml.safe_dump(d))) == spec


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as err:
        TaskSpec.parse("builtin:digits?clases=0-3")
    msg = str(err.value)
    assert "clases" in msg
    for key in VALID_KEYS:
        assert key in msg
    with pytest.raises(ConfigError, match="colour"):
        TaskSpec.parse({"source": "x", "colour": "red"})


def test_mapping_without_source():
    with pytest.raises(ConfigError, match="source"):
        TaskSpec.parse({"classes": "0-3"})


@pytest.mark.parametrize("bad", [None, 3, ["builtin:digits"]])
def test_spec_of_wrong_type(bad):
    with pytest.raises(ConfigError):
        TaskSpec.parse(bad)


@pytest.mark.parametrize(
    ("text", "key"),
    [("x?image_size=big", "image_size"), ("x?seed=1.5", "seed"), ("x?samples_per_class=", "samples_per_class"),
     ("x?hflip=maybe", "hflip")],
)
def test_bad_values_name_the_key(text, key):
    with pytest.raises(ConfigError, match=key):
        TaskSpec.parse(text)


@pytest.mark.parametrize("size", ["0", "-32"])
def test_non_positive_image_size(size):
    with pytest.raises(ConfigError, match="image_size"):
        TaskSpec.parse(f"x?image_size={size}")


def test_question_mark_without_pairs():
    with pytest.raises(ConfigError, match="key=value"):
        TaskSpec.parse("builtin:digits?")


def test_empty_source():
    with pytest.raises(ConfigError, match="source"):
        TaskSpec(source="")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0-2,7", (0, 1, 2, 7)), ("5", (5,)), (" 3 - 4 , 0 ", (3, 4, 0)), ([2, 0, 1], (2, 0, 1)), ((9,), (9,)),
     (0, (0,)), (None, None), ("0-99", tuple(range(100)))],
)
def test_parse_class_subset(value, expected):
    assert parse_class_subset(value) == expected


@pytest.mark.parametrize("bad", ["a-b", "1-", "-3", "0-2,2", "5-3", "", "1,,2", [], [1, 1], [-1]])
def test_bad_class_subsets(bad):
    with pytest.raises(ConfigError) as err:
        parse_class_subset(bad)
    assert repr(bad) in str(err.value)


def test_bad_class_subset_in_spec_string():
    with pytest.raises(ConfigError, match="'0-x'"):
        TaskSpec.parse("builtin:digits?classes=0-x")
