"""Containment: every path taken from dataset or run content stays inside its folder.

Datasets, run folders and model servers come from other people. An item's ``images[].path``,
a study id used as a folder name, an export's image paths and a run's files are all resolved
through ``inside`` (symlinks followed), which refuses anything that leaves the folder; study
ids are checked at build time by ``check_study_id``; an image is opened only after
``check_png`` has seen the PNG signature.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

from voxqa.errors import VoxqaError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STUDY_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")


class UnsafePath(VoxqaError, ValueError):
    """A path from dataset or run content that leaves its folder, or is not what it claims."""


@lru_cache(maxsize=1 << 17)
def _resolved(folder: str, relative: str) -> tuple[Path, Path | None]:
    """(root, target) resolved once per process (target None: not a relative path): an eval
    run asks for the same few thousand frames tens of thousands of times, and each resolve
    walks every path component."""
    root = Path(folder).resolve()
    rel = Path(relative)
    if rel.is_absolute() or relative == "" or "\x00" in relative:
        return root, None
    return root, (root / rel).resolve()


def inside(folder: Path | str, relative: Path | str, what: str) -> Path:
    """``folder / relative`` resolved (symlinks followed); refused unless it stays inside
    ``folder`` (itself resolved). ``what`` names the item in the one-line error."""
    key = os.fspath(folder)
    root, target = _resolved(key if os.path.isabs(key) else os.path.join(os.getcwd(), key), os.fspath(relative))
    if target is None:
        raise UnsafePath(f"{what}: path {str(relative)!r} must be relative to {root}")
    if target != root and not target.is_relative_to(root):
        raise UnsafePath(f"{what}: path {str(relative)!r} leaves {root} (resolves to {target}); refused")
    return target


def check_png(path: Path | str, what: str) -> Path:
    """``path`` if it is a file starting with the PNG signature, else a one-line error. A file
    seen as a PNG is not opened again while its size and modification time stay the same."""
    path = Path(path)
    try:
        st = path.stat()
        key = (os.fspath(path), st.st_mtime_ns, st.st_size)
        if key in _PNGS_SEEN:
            return path
        with path.open("rb") as fh:
            head = fh.read(len(PNG_MAGIC))
    except OSError as exc:
        raise UnsafePath(f"{what}: cannot read image {path}: {exc.strerror or exc}") from None
    if head != PNG_MAGIC:
        raise UnsafePath(f"{what}: {path} is not a PNG (no PNG signature); refused")
    _PNGS_SEEN.add(key)
    return path


_PNGS_SEEN: set[tuple[str, int, int]] = set()


def read_png(path: Path | str, what: str) -> bytes:
    """The bytes of a PNG file, refused unless they start with the PNG signature."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UnsafePath(f"{what}: cannot read image {path}: {exc.strerror or exc}") from None
    if not data.startswith(PNG_MAGIC):
        raise UnsafePath(f"{what}: {path} is not a PNG (no PNG signature); refused")
    return data


def dataset_png(folder: Path | str, relative: Path | str, what: str) -> Path:
    """A rendered image of a dataset: inside the folder and a PNG."""
    return check_png(inside(folder, relative, what), what)


def check_study_id(study_id: str, where: str) -> str:
    """A study id is a folder name under ``frames/``: letters, digits, ``.``, ``_``, ``-``,
    not starting with ``.``; anything else is refused naming the id and where it came from."""
    if not isinstance(study_id, str) or not STUDY_ID.match(study_id) or len(study_id) > 200:
        raise UnsafePath(f"{where}: study id {study_id!r} is not allowed (use letters, digits, '.', "
                         "'_', '-', not starting with '.')")
    return study_id
