"""Atomic writes: all or nothing, and ordinary permissions."""

import os
import stat

import pytest

from DiffSegExtension.atomic import atomic_directory, atomic_path, write_text_atomic


def test_file_is_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "card.json"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["card.json"], "no temporary file left behind"


def test_directory_needs_overwrite_and_is_swapped_whole(tmp_path):
    out = tmp_path / "out"
    with atomic_directory(out) as tmp:
        (tmp / "a.txt").write_text("1")
    with pytest.raises(FileExistsError):
        with atomic_directory(out) as tmp:
            (tmp / "b.txt").write_text("2")
    assert sorted(os.listdir(out)) == ["a.txt"]
    with atomic_directory(out, overwrite=True) as tmp:
        (tmp / "b.txt").write_text("2")
    assert sorted(os.listdir(out)) == ["b.txt"]
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_outputs_get_ordinary_permissions_not_private_temp_ones(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "f.txt", "x")
        with atomic_directory(tmp_path / "d") as tmp:
            (tmp / "g.txt").write_text("y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
