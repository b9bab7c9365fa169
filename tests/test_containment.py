"""Containment and PNG checks see the folder as it is now: nothing is cached across checks, so
a symlink swapped or a frame replaced after a first check is judged again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from voxqa.dataset.paths import PNG_MAGIC, UnsafePath, check_png, dataset_png, inside
from voxqa.eval.models.openai_chat import _data_url


@pytest.fixture
def ds(tmp_path: Path) -> Path:
    (tmp_path / "ds" / "frames" / "real").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    return tmp_path / "ds"


def test_a_symlink_swapped_after_a_first_check_is_refused_on_the_second(ds) -> None:
    link = ds / "frames" / "s1"
    link.symlink_to(ds / "frames" / "real")
    assert inside(ds, "frames/s1/0001.png", "item a") == (ds / "frames" / "real" / "0001.png").resolve()
    link.unlink()
    link.symlink_to(ds.parent / "outside")
    with pytest.raises(UnsafePath, match="leaves"):
        inside(ds, "frames/s1/0001.png", "item a")


def test_a_relative_folder_is_taken_from_the_working_directory(ds, monkeypatch) -> None:
    monkeypatch.chdir(ds.parent)
    assert inside("ds", "frames/real", "study x") == (ds / "frames" / "real").resolve()
    for bad in ("", "/etc/passwd", "frames/\x00x"):
        with pytest.raises(UnsafePath, match="must be relative"):
            inside("ds", bad, "study x")


def test_a_frame_replaced_by_a_non_png_is_refused_even_with_the_same_size_and_time(ds) -> None:
    """The PNG check used to remember (path, mtime, size) for the whole process."""
    frame = ds / "frames" / "real" / "0001.png"
    frame.write_bytes(PNG_MAGIC + b"x" * 24)
    assert dataset_png(ds, "frames/real/0001.png", "item a") == frame.resolve()
    stamp = frame.stat()
    frame.write_bytes(b"#!/bin/sh\n" + b"x" * 22)  # same length
    os.utime(frame, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    with pytest.raises(UnsafePath, match="not a PNG"):
        check_png(frame, "item a")


def test_a_data_url_carries_the_frame_as_it_is_now(ds) -> None:
    frame = ds / "frames" / "real" / "0001.png"
    frame.write_bytes(PNG_MAGIC + b"first")
    first = _data_url(str(frame))
    frame.write_bytes(PNG_MAGIC + b"second")
    assert _data_url(str(frame)) != first
    frame.write_bytes(b"not a png")
    with pytest.raises(UnsafePath):
        _data_url(str(frame))
