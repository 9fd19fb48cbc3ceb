"""``lsml-hub cache``: list and remove materialized builtins and decoded splits; what is removed comes back."""

from __future__ import annotations

import pytest
import torch
from _isolation import isolated_caches

from lsml_hub.cli import main
from lsml_hub.data import load_task
from lsml_hub.data.cache_folder import clear_cache, scan_cache
from lsml_hub.errors import DataError


@pytest.fixture
def cache(tmp_path):
    with isolated_caches(tmp_path) as root:
        yield root / "lsml_hub"


def fill(spec: str = "builtin:printed_digits?samples_per_class=3") -> torch.Tensor:
    task = load_task(spec)
    task.tensors("eval")
    return task.tensors("train").images.clone()


def test_an_empty_cache_lists_nothing(cache, capsys):
    assert main(["cache"]) == 0
    assert capsys.readouterr().out.strip() == f"0 entries, 0 B, in {cache}"


def test_ls_lists_each_entry_with_its_kind_and_size(cache, capsys):
    fill()
    entries = scan_cache()
    assert [e.kind for e in entries] == ["builtin", "decoded", "decoded"]  # one dataset, its two splits
    decoded = [e for e in entries if e.kind == "decoded"]
    assert all(e.size == e.path.stat().st_size and e.name.endswith(".safetensors") for e in decoded)
    assert entries[0].size == sum(p.stat().st_size for p in entries[0].path.rglob("*") if p.is_file())

    assert main(["cache", "ls"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["KIND", "SIZE", "MODIFIED", "NAME"]
    assert [line.split()[0] for line in lines[1:-1]] == ["builtin", "decoded", "decoded"]
    assert [line.split()[-1] for line in lines[1:-1]] == [e.name for e in entries]
    assert lines[-1].startswith("3 entries, ") and lines[-1].endswith(f", in {cache}")


def test_rm_decoded_removes_only_decoded_splits_and_the_next_load_decodes_them_again(cache, capsys):
    before = fill()
    builtin = [e.path for e in scan_cache() if e.kind == "builtin"]
    assert main(["cache", "rm", "decoded"]) == 0
    assert capsys.readouterr().out.startswith("removed 2 entries, ")
    assert [e.path for e in scan_cache()] == builtin
    assert torch.equal(fill(), before)
    assert [e.kind for e in scan_cache()] == ["builtin", "decoded", "decoded"]


def test_rm_all_also_removes_leftovers_of_killed_writes(cache, capsys):
    fill()
    entry = next(e.path for e in scan_cache() if e.kind == "decoded")
    leftover = entry.with_name(f".{entry.name}.x1y2_9.tmp")  # as atomic_write names its temporary file
    leftover.write_bytes(b"half a file")
    builtin = next(e.path for e in scan_cache() if e.kind == "builtin")
    moved_aside = builtin.with_name(f".{builtin.name}.old-4242")  # atomic_dir stopped before removing it
    moved_aside.mkdir()
    assert main(["cache", "rm", "all"]) == 0
    assert capsys.readouterr().out.startswith("removed 5 entries, ")
    assert scan_cache() == [] and not leftover.exists() and not moved_aside.exists()
    assert main(["cache"]) == 0
    assert capsys.readouterr().out.startswith("0 entries")


def test_an_unknown_kind_is_refused(cache, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["cache", "rm", "models"])
    assert exit_.value.code == 2 and "invalid choice: 'models'" in capsys.readouterr().err
    with pytest.raises(DataError, match=r"unknown cache kind\(s\) 'models'; valid: builtin, decoded"):
        clear_cache(["models"])


def test_files_lsml_hub_did_not_write_are_neither_listed_nor_removed(cache, capsys):
    fill()
    mine = [cache / "decoded" / "notes.txt", cache / "builtin" / "photos" / "cat.png"]
    for path in mine:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("user data")
    assert all(e.path not in (mine[0], mine[1].parent) for e in scan_cache())
    assert main(["cache", "rm", "all"]) == 0
    assert capsys.readouterr().out.startswith("removed 3 entries, ")
    assert all(path.read_text() == "user data" for path in mine)


def test_a_failed_removal_is_a_one_line_error(cache, capsys, monkeypatch):
    fill()

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("pathlib.Path.unlink", refuse)
    assert main(["cache", "rm", "decoded"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lsml-hub cache: error: cannot remove ") and "Permission denied" in err
    assert len(err.strip().splitlines()) == 1
