"""Containment: every path taken from dataset or run content stays inside its folder.

Datasets, run folders and model servers come from other people. An item's ``images[].path``,
a study id used as a folder name, an export's image paths and a run's files are all resolved
through ``inside`` (symlinks followed), which refuses anything that leaves the folder; study
ids are checked at build time by ``check_study_id``; an image is opened only after
``check_png`` has seen the PNG signature. A study's ``volume.path`` (the scan render reads)
must lie in the dataset folder or in a folder the manifest records as the build's input
(``VolumeRoots``), so an edited studies.jsonl cannot render any scan on the
machine into the frames.

Nothing is cached for the process: a folder may change between two checks (a symlink swapped,
a frame re-rendered), and each check sees it as it is now. Only within ``resolve_once()`` (one
eval run, one export) does ``inside`` resolve each path once, as the items of a study ask for
the same frames again and again.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxqa.errors import VoxqaError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STUDY_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")  # the whole id (fullmatch: no trailing newline)


class UnsafePath(VoxqaError, ValueError):
    """A path from dataset or run content that leaves its folder, or is not what it claims."""


_RESOLVED: ContextVar[dict[tuple[str, str], Path] | None] = ContextVar("voxqa_resolved_paths", default=None)


@contextmanager
def resolve_once() -> Iterator[None]:
    """Within the block, ``inside`` resolves each (folder, path) once and reuses the answer: an
    eval run or export asks for the same few thousand frames tens of thousands of times, and each
    resolve walks every path component. The answers end with the block (asyncio tasks started in
    it share them)."""
    token = _RESOLVED.set({})
    try:
        yield
    finally:
        _RESOLVED.reset(token)


def inside(folder: Path | str, relative: Path | str, what: str) -> Path:
    """``folder / relative`` resolved (symlinks followed); refused unless it stays inside
    ``folder`` (itself resolved). ``what`` names the item in the one-line error."""
    known = _RESOLVED.get()
    if known is None:
        return _inside(os.fspath(folder), os.fspath(relative), what)
    key = (os.path.abspath(folder), os.fspath(relative))
    if key not in known:
        known[key] = _inside(*key, what)
    return known[key]


def _inside(folder: str, relative: str, what: str) -> Path:
    root = os.path.realpath(folder)
    if relative == "" or "\x00" in relative or os.path.isabs(relative):
        raise UnsafePath(f"{what}: path {relative!r} must be relative to {root}")
    target = os.path.realpath(os.path.join(root, relative))
    if target != root and not target.startswith(root.rstrip(os.sep) + os.sep):
        raise UnsafePath(f"{what}: path {relative!r} leaves {root} (resolves to {target}); refused")
    return Path(target)


def check_png(path: Path | str, what: str) -> Path:
    """``path`` if it is a file starting with the PNG signature, else a one-line error."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(len(PNG_MAGIC))
    except OSError as exc:
        raise UnsafePath(f"{what}: cannot read image {path}: {exc.strerror or exc}") from None
    if head != PNG_MAGIC:
        raise UnsafePath(f"{what}: {path} is not a PNG (no PNG signature); refused")
    return path


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
    if not isinstance(study_id, str) or not STUDY_ID.fullmatch(study_id) or len(study_id) > 200:
        raise UnsafePath(f"{where}: study id {study_id!r} is not allowed (use letters, digits, '.', "
                         "'_', '-', not starting with '.')")
    return study_id


@dataclass(frozen=True)
class VolumeRoots:
    """The folders a dataset's volumes may lie in: the dataset folder, the folders its manifest
    records as the build's inputs (``options.volumes`` or ``options.volumes_root``, the folder
    of each ``source_files`` entry), and those ``render --volumes-root`` adds."""

    dataset: tuple[str, str]  # the dataset folder: absolute, and with links resolved
    written: frozenset[str]  # every root, absolute
    real: frozenset[str]  # every root, links resolved

    @classmethod
    def of(cls, folder: Path | str, manifest: Any, extra: Sequence[Path | str] = ()) -> VolumeRoots:
        manifest = manifest if isinstance(manifest, Mapping) else {}  # a manifest.json that is not an object
        options = manifest.get("options")
        named = [options.get(k) for k in ("volumes", "volumes_root")] if isinstance(options, Mapping) else []
        files = manifest.get("source_files")
        for entry in files if isinstance(files, list) else []:
            if isinstance(entry, Mapping) and isinstance(entry.get("path"), str):
                named.append(os.path.dirname(entry["path"]) or ".")
        named += [os.fspath(folder), *(os.fspath(r) for r in extra)]
        written = frozenset(os.path.abspath(r) for r in named if isinstance(r, str) and r and "\x00" not in r)
        return cls((os.path.abspath(folder), os.path.realpath(folder)), written,
                   frozenset(os.path.realpath(r) for r in written))

    def check(self, path: str, what: str) -> None:
        """Refuse a volume path outside the roots. Its real path (links followed) may lie in any
        root; or the path as written (``..`` resolved) in one, unless it is written inside the
        dataset folder, whose links came with the dataset. In the build's input folders links
        are the user's own (a data folder of links is common)."""
        if "\x00" not in path:
            written = os.path.abspath(path)
            in_dataset = any(_within(written, d) for d in self.dataset)
            if _under(os.path.realpath(path), self.real) or (not in_dataset and _under(written, self.written)):
                return
        roots = sorted(self.written)
        shown = ", ".join(roots[:3]) + (f" and {len(roots) - 3} more" if len(roots) > 3 else "")
        raise UnsafePath(f"{what}: volume {path!r} lies outside the dataset folder and the folders its "
                         f"manifest records as the build's inputs ({shown}); refused (render --volumes-root "
                         "DIR allows another folder)")


def _under(path: str, roots: frozenset[str]) -> bool:
    """Whether ``path`` (absolute, normalised) or a folder above it is one of ``roots``."""
    while True:
        if path in roots:
            return True
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)
