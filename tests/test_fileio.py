"""voxqa.fileio: atomic writes that never follow a planted symlink, leave the old file on a
failure, and produce the same bytes as the writers they replaced; the progress protocol;
no_gc leaves the caller's collector as it found it."""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path

import orjson
import pytest

from voxqa import fileio
from voxqa.dataset.folder import no_gc, write_jsonl
from voxqa.eval.score import RESULTS, write_results
from voxqa.export.base import write_json as export_json
from voxqa.export.base import write_jsonl as export_jsonl
from voxqa.fileio import JsonlAppender, atomic_write, write_bytes, write_json
from voxqa.progress import SILENT, rich_progress, tracking
from voxqa.schema import Study

# keys out of order, unicode, escapes, empty containers, nesting: what manifests, results and exports hold
SAMPLE = {
    "zeta": [1, 2, {"b": None, "a": True}], "alpha": "Kniegelenk – ödem “quoted” \"q\" \\ \t\n\x01",
    "nested": {"empty_list": [], "empty_dict": {}, "numbers": [0, -3, 12345678901], "half": 0.5,
               "rate": 0.8125, "neg": -2.25},
    "messages": [{"role": "user", "content": "<image>Frame 3: is there a lesion? [10, 20, 30, 40]"}],
}


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    f = tmp_path / "outside" / "secret.txt"
    f.parent.mkdir()
    f.write_bytes(b"OUTSIDE")
    return f


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "run"
    d.mkdir()
    return d


def _temps(folder: Path) -> list[Path]:
    return sorted(folder.glob("*" + fileio.TEMP_SUFFIX))


# ---------------------------------------------------------------- symlinks


def test_a_symlink_at_the_target_is_replaced_not_followed(folder, outside) -> None:
    target = folder / "results.json"
    target.symlink_to(outside)
    write_json(target, SAMPLE)
    assert outside.read_bytes() == b"OUTSIDE"
    assert not target.is_symlink() and orjson.loads(target.read_bytes()) == SAMPLE


def test_a_symlink_planted_at_the_temp_name_is_not_followed(folder, outside, monkeypatch) -> None:
    """The old writers used a fixed temp name (target.tmp / target.part); a link planted there
    received the file's bytes. Now the name is random and created exclusively: a planted link
    (at the old names, or at the very name drawn) is skipped, never written through."""
    target = folder / "manifest.json"
    for old in ("manifest.json.tmp", "manifest.json.part"):
        (folder / old).symlink_to(outside)
    draws = iter(["aaaaaaaaaaaa", "bbbbbbbbbbbb"])
    monkeypatch.setattr(fileio.secrets, "token_hex", lambda n: next(draws))
    planted = folder / f"manifest.json.aaaaaaaaaaaa{fileio.TEMP_SUFFIX}"
    planted.symlink_to(outside)
    write_bytes(target, b"new")
    assert outside.read_bytes() == b"OUTSIDE"
    assert target.read_bytes() == b"new" and not target.is_symlink()
    assert planted.is_symlink()  # left alone: not ours to remove
    assert {p.name for p in _temps(folder)} == {"manifest.json.part", planted.name}  # ours is gone


def test_appending_through_a_symlink_is_refused(folder, outside) -> None:
    (folder / "predictions.jsonl").symlink_to(outside)
    (folder / "predictions.corrupt.jsonl").symlink_to(outside)
    with pytest.raises(OSError):
        JsonlAppender(folder / "predictions.jsonl")
    with pytest.raises(OSError):
        fileio.append_bytes(folder / "predictions.corrupt.jsonl", b"torn line\n")
    assert outside.read_bytes() == b"OUTSIDE"


# ---------------------------------------------------------------- failures


def test_a_failure_mid_write_keeps_the_old_file_and_no_temp(folder) -> None:
    target = folder / "items.jsonl"
    target.write_bytes(b"OLD\n")

    def rows():
        yield {"id": 1}
        yield {"id": 2}
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        fileio.write_jsonl(target, rows())
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(target) as fh:
            fh.write(b"half a fi")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"OLD\n"
    assert _temps(folder) == []


def test_a_new_file_gets_the_usual_permissions(folder) -> None:
    write_bytes(folder / "a.json", b"{}")
    (folder / "b.json").write_bytes(b"{}")
    assert (folder / "a.json").stat().st_mode == (folder / "b.json").stat().st_mode


# ---------------------------------------------------------------- same bytes as the old writers


def test_documents_are_the_bytes_the_old_writers_wrote(folder) -> None:
    # manifest.json, audit.json, render.json, recipe.json: orjson, sorted, indented, newline
    write_json(folder / "manifest.json", SAMPLE)
    assert (folder / "manifest.json").read_bytes() == orjson.dumps(
        SAMPLE, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n"
    # results.json and run.json: the same without the newline
    write_results(folder, SAMPLE)
    assert (folder / RESULTS).read_bytes() == orjson.dumps(SAMPLE, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    # predictions / jury / render journal lines: compact orjson
    with JsonlAppender(folder / "p.jsonl", sync_every=2) as out:
        for row in (SAMPLE, {"b": 1, "a": 2}, SAMPLE):
            out.write(row)
    assert (folder / "p.jsonl").read_bytes() == b"".join(orjson.dumps(r) + b"\n" for r in (SAMPLE, {"b": 1, "a": 2}, SAMPLE))


def test_export_files_are_the_bytes_the_json_module_wrote(folder) -> None:
    """Exports were written with the json module: keys in their order, indent 2 (now orjson),
    and JSONL with ", " separators (still the json module's layout)."""
    export_json(folder / "voxqa_train.json", SAMPLE)
    assert (folder / "voxqa_train.json").read_bytes() == (
        json.dumps(SAMPLE, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    export_jsonl(folder / "train.jsonl", [SAMPLE, SAMPLE["nested"]])
    assert (folder / "train.jsonl").read_bytes() == "".join(
        json.dumps(r, ensure_ascii=False) + "\n" for r in (SAMPLE, SAMPLE["nested"])).encode("utf-8")


def test_model_jsonl_is_pydantic_json_per_line(folder) -> None:
    studies = [Study(id=f"s{i}", patient_id=f"p{i}", source="phantom", modality="MR", anatomy="knee",
                     view_axis=0, frame_size=(64, 48), frame_size_source="default") for i in range(3)]
    write_jsonl(folder / "studies.jsonl", studies)
    assert (folder / "studies.jsonl").read_bytes() == b"".join(
        s.__pydantic_serializer__.to_json(s) + b"\n" for s in studies)


# ---------------------------------------------------------------- progress and GC


def test_tracking_starts_advances_and_ends_even_on_an_error() -> None:
    calls: list[tuple] = []

    class Recorder:
        def start(self, what: str, total: int) -> None:
            calls.append(("start", what, total))

        def advance(self, steps: int = 1) -> None:
            calls.append(("advance", steps))

        def done(self) -> None:
            calls.append(("done",))

    with pytest.raises(ValueError):
        with tracking(Recorder(), "rendering studies", 3) as advance:
            advance()
            raise ValueError
    assert calls == [("start", "rendering studies", 3), ("advance", 1), ("done",)]
    with tracking(SILENT, "x", 1) as advance:
        advance()


def test_rich_progress_draws_nothing_off_a_terminal(capsys) -> None:
    with tracking(rich_progress(), "rendering studies", 2) as advance:
        advance()
        advance()
    out, err = capsys.readouterr()
    assert out == "" and err == ""


@pytest.mark.parametrize("enabled", [True, False])
def test_no_gc_restores_the_callers_collector(enabled: bool) -> None:
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        with pytest.raises(RuntimeError):
            with no_gc():
                assert not gc.isenabled()
                with no_gc():
                    pass
                assert not gc.isenabled()  # an inner block does not turn it back on early
                raise RuntimeError
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_os_replace_keeps_a_hard_link_elsewhere_intact(folder, tmp_path) -> None:
    """A hard link to the target (another folder's copy) keeps its old bytes: the write swaps
    in a new file instead of writing into the shared one."""
    target = folder / "render.json"
    target.write_bytes(b"OLD")
    other = tmp_path / "copy.json"
    os.link(target, other)
    write_bytes(target, b"NEW")
    assert other.read_bytes() == b"OLD" and target.read_bytes() == b"NEW"
