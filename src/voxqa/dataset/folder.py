"""The on-disk dataset folder: manifest.json, studies.jsonl, items.jsonl, build_report.json.

JSONL lines are the pydantic models' own JSON (fields in schema order), items in a fixed
order, and nothing carries timestamps or output paths, so two builds with the same inputs
and seed are byte-identical. Items and studies are validated again when read back.
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel

from voxqa.errors import InputError, MissingFileError
from voxqa import fileio
from voxqa.schema import Item, Study

M = TypeVar("M", bound=BaseModel)

MANIFEST = "manifest.json"
STUDIES = "studies.jsonl"
ITEMS = "items.jsonl"
REPORT = "build_report.json"


@contextmanager
def no_gc() -> Iterator[None]:
    """Cyclic GC paused for the block: builds and reads allocate many small acyclic objects,
    and GC passes over them only cost time. The collector is process-wide, so this is for short
    blocks of library work only; on leaving (an error included) it is re-enabled if, and only
    if, it was enabled on entering, so nested blocks and a caller that turned it off itself
    keep their state."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_line(row: BaseModel) -> bytes:
    """A model's JSONL line: pydantic's own JSON, fields in schema order."""
    return row.__pydantic_serializer__.to_json(row) + b"\n"


def write_jsonl(path: Path, rows: Iterable[BaseModel]) -> None:
    """Models as JSONL (``model_line``), written atomically."""
    fileio.write_jsonl(path, rows, model_line)


def check_out_folder(out: Path) -> None:
    """A build may write to a missing or empty folder, or replace a voxqa dataset; a file, or
    a folder holding anything else, is refused (its files would be mixed into the dataset)."""
    from voxqa.errors import BuildError

    if out.exists() and not out.is_dir():
        raise BuildError(f"--out {out}: is a file, not a folder")
    if out.is_dir() and not (out / MANIFEST).is_file():
        others = sorted(p.name for p in out.iterdir())
        if others:
            shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
            raise BuildError(f"--out {out}: a folder that is not a voxqa dataset and is not empty "
                             f"({shown}); give a new or empty folder")


def write_dataset(
    out: Path,
    manifest: dict[str, Any],
    studies: list[Study],
    items: list[Item],
    report: dict[str, Any],
) -> None:
    """Write the four files into a fresh folder next to ``out`` and swap it into place: a
    rebuild replaces the whole dataset (old frames, render.json and runs' inputs go with it),
    never mixing new items with old files."""
    import shutil

    check_out_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".{out.name}.building"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    write_jsonl(stage / STUDIES, studies)
    write_jsonl(stage / ITEMS, items)
    for name, obj in ((REPORT, report), (MANIFEST, manifest)):
        fileio.write_json(stage / name, obj)
    if out.exists():
        old = out.parent / f".{out.name}.replaced"
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        stage.rename(out)
        shutil.rmtree(old)
    else:
        stage.rename(out)


def _read_models(path: Path, model: type[M]) -> list[M]:
    """Models validated straight from their JSON lines (pydantic's parser: fastest)."""
    if not path.is_file():
        raise MissingFileError(f"{path}: not found (is {path.parent} a voxqa dataset folder?)")
    rows: list[M] = []
    with no_gc(), path.open("rb") as fh:
        for n, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    rows.append(model.model_validate_json(line))
                except ValueError as exc:
                    raise InputError(f"{path}:{n}: not a valid {model.__name__} ({exc})") from None
    return rows


def read_items(folder: Path) -> list[Item]:
    return _read_models(folder / ITEMS, Item)


def read_studies(folder: Path) -> list[Study]:
    """The studies of a dataset; an id that could not be a folder name is refused (ids name
    the folders render writes, ``voxqa.dataset.paths.check_study_id``)."""
    from voxqa.dataset.paths import check_study_id

    studies = _read_models(folder / STUDIES, Study)
    for n, s in enumerate(studies, start=1):
        check_study_id(s.id, f"{folder / STUDIES}:{n}")
    return studies


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise MissingFileError(f"{path}: not found")
    try:
        return orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise InputError(f"{path}: not JSON ({exc})") from None
