"""Writing files: every file voxqa writes into a dataset, run or export folder goes through here.

A file is written whole or not at all: its bytes go to a temp file beside it, created with
``O_CREAT | O_EXCL | O_NOFOLLOW`` under a fresh random name (``<name>.<hex>.part``, so a symlink
or file planted there is never followed or reused), then ``os.replace`` swaps it in. The swap
replaces a symlink at the target itself, never the file it points to; a failure removes the temp
and leaves the old file as it was. Like the writers this module replaces, atomic writes are not
fsynced (a killed process never leaves a half file; a power cut may lose the newest ones);
``JsonlAppender`` fsyncs in batches when asked (run predictions).

A symlink planted where voxqa appends (a journal, predictions) or reads back its own state
(``read_own``: run.json, render.json, journals) is refused with ``LinkRefused``, never followed:
dataset and run folders come from other people. A write the OS refuses (disk full, quota,
permissions) is a ``WriteFailed`` naming the file: an atomic write leaves the old file, an append
takes back the part of its line that got written, so a resumed run or render finds whole lines.

JSON is encoded with orjson. voxqa's own documents (manifest, audit, render, results, run) are
``dumps``: keys sorted, two-space indent. JSONL lines are ``dumps_line``: compact, keys as
given. Reading stays with the callers (``orjson.loads``), through ``read_own`` for voxqa's own
files in a folder that may have come from someone else.
"""

from __future__ import annotations

import errno
import io
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, TypeVar

import orjson

from voxqa.errors import VoxqaError

TEMP_SUFFIX = ".part"  # every temp file ends so; an interrupted writer's leftovers match "*.part"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
_APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND | _NOFOLLOW

T = TypeVar("T")


class LinkRefused(VoxqaError, OSError):
    """A symlink where voxqa appends to or reads back one of its own files."""


class WriteFailed(VoxqaError):
    """The OS refused a write (disk full, quota, permissions); the message names the file."""


def _open_own(path: Path | str, flags: int, doing: str) -> int:
    """``os.open`` that never follows a symlink at ``path``: a link there is ``LinkRefused``."""
    try:
        return os.open(path, flags, 0o666)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK) or os.path.islink(path):
            raise LinkRefused(f"{path}: is a symbolic link; voxqa does not {doing} its own files "
                              "through a link (remove it and run again)") from None
        if flags & os.O_WRONLY:
            raise WriteFailed(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise


def _os_write(fd: int, data: bytes | memoryview) -> int:
    """The one call that hands bytes to the OS (tests inject a full disk here)."""
    return os.write(fd, data)


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data``; an OSError carries how many bytes went out before it (``written``)."""
    view, done = memoryview(data), 0
    try:
        while done < len(view):
            done += _os_write(fd, view[done:])
    except OSError as exc:
        exc.written = done  # type: ignore[attr-defined]
        raise


class _File(io.FileIO):
    """A file whose writes go through ``_os_write``."""

    def write(self, data: Any) -> int:
        return _os_write(self.fileno(), data)


def dumps(obj: Any, *, sort_keys: bool = True, newline: bool = True) -> bytes:
    """An indented JSON document (two spaces). Keys sorted unless ``sort_keys`` is False (export
    files keep the order their format documents); ``newline`` ends it with ``\\n`` (run.json and
    results.json have always been written without one)."""
    option = orjson.OPT_INDENT_2 | (orjson.OPT_SORT_KEYS if sort_keys else 0)
    return orjson.dumps(obj, option=option) + (b"\n" if newline else b"")


def dumps_line(obj: Any) -> bytes:
    """One JSONL line: compact JSON, keys as given, ending in ``\\n``."""
    return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)


def _temp_beside(path: Path) -> tuple[int, Path]:
    """A new temp file next to ``path``, opened for writing: (fd, its path)."""
    while True:
        temp = path.with_name(f"{path.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}")
        try:
            return os.open(temp, _CREATE, 0o666), temp
        except FileExistsError:  # 48 random bits taken: someone else's temp or a planted name
            continue


@contextmanager
def _replacing(path: Path) -> Iterator[tuple[int, Path]]:
    """(fd, name) of a new temp file beside ``path`` that replaces ``path`` when the block ends
    without an error; on an error it is removed, and an ``OSError`` becomes ``WriteFailed``."""
    try:
        fd, temp = _temp_beside(path)
    except OSError as exc:
        raise WriteFailed(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        yield fd, temp
        os.replace(temp, path)
    except BaseException as exc:
        temp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise WriteFailed(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise


@contextmanager
def atomic_write(path: Path | str) -> Iterator[BinaryIO]:
    """A binary file handle whose bytes become ``path`` when the block ends without an error;
    on an error (Ctrl-C included) the temp file is removed and ``path`` is untouched. An
    ``OSError`` (disk full, no permission) becomes ``WriteFailed`` naming ``path``."""
    with _replacing(Path(path)) as (fd, _), io.BufferedWriter(_File(fd, "wb")) as fh:
        yield fh


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """For a writer that wants a file name (ffmpeg): a temp file beside ``path``, created
    empty and exclusively here, which becomes ``path`` when the block ends without an error
    (removed otherwise). Its name ends in ``.part``: tell the writer the format."""
    with _replacing(Path(path)) as (fd, temp):
        os.close(fd)
        yield temp


@contextmanager
def staged_folder(out: Path | str) -> Iterator[Path]:
    """For a writer that fills a folder itself (``datasets.save_to_disk``): a fresh, empty
    folder inside ``out`` (nothing planted in it to follow); when the block ends without an
    error each entry it holds replaces the one of its name in ``out`` (a link there is
    replaced, never followed). The stage is removed either way."""
    out = Path(out)
    stage = Path(tempfile.mkdtemp(prefix=".stage.", suffix=TEMP_SUFFIX, dir=out))
    try:
        yield stage
        for entry in sorted(stage.iterdir()):
            target = out / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.is_symlink() or target.exists():
                target.unlink()
            os.replace(entry, target)
    except OSError as exc:
        raise WriteFailed(f"cannot write {out}: {exc.strerror or exc}") from exc
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_bytes(path: Path | str, data: bytes) -> None:
    with atomic_write(path) as fh:
        fh.write(data)


def write_text(path: Path | str, text: str) -> None:
    """``text`` as UTF-8 (newlines as given: the file is the same on every platform)."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path | str, obj: Any, *, sort_keys: bool = True, newline: bool = True) -> None:
    """``dumps(obj)`` written atomically."""
    write_bytes(path, dumps(obj, sort_keys=sort_keys, newline=newline))


def write_jsonl(path: Path | str, rows: Iterable[T], encode: Callable[[T], bytes] = dumps_line) -> None:
    """One line per row, written atomically; ``encode`` gives a row's line, ``\\n`` included."""
    with atomic_write(path) as fh:
        fh.writelines(map(encode, rows))


def append_bytes(path: Path | str, data: bytes) -> None:
    """``data`` appended to ``path`` in one ``write`` (a symlink at ``path`` is refused)."""
    fd = _open_own(path, _APPEND, "append to")
    try:
        _append(fd, path, data)
    finally:
        os.close(fd)


def _append(fd: int, path: Path | str, data: bytes) -> None:
    """Append ``data``; on an OS error the part that got written is cut off again (the file
    ends where it ended) and ``WriteFailed`` names ``path``."""
    try:
        _write_all(fd, data)
    except OSError as exc:
        written = getattr(exc, "written", 0)
        if written:
            try:
                os.ftruncate(fd, os.fstat(fd).st_size - written)
            except OSError:
                pass  # a torn last line: readers cut it off
        raise WriteFailed(f"cannot write {path}: {exc.strerror or exc}") from exc


def read_own(path: Path | str) -> bytes:
    """The bytes of a file voxqa wrote into a dataset or run folder (run.json, render.json, a
    journal), read without following a symlink: a link at ``path`` is ``LinkRefused``."""
    fd = _open_own(path, os.O_RDONLY | _NOFOLLOW, "read back")
    with open(fd, "rb") as fh:
        return fh.read()


def truncate_own(path: Path | str, size: int) -> None:
    """Cut one of voxqa's own files to ``size`` bytes (a torn last line), never through a link."""
    fd = _open_own(path, os.O_WRONLY | _NOFOLLOW, "truncate")
    try:
        os.ftruncate(fd, size)
    except OSError as exc:
        raise WriteFailed(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


class JsonlAppender:
    """Appends JSONL lines to ``path``, each handed to the OS in one ``write`` at once, so a
    killed process loses nothing appended and leaves at most a torn last line (readers cut it
    off). With ``sync_every``, fsynced every that many lines or ``sync_seconds`` (a power cut
    loses little). A symlink at ``path`` is refused, not followed; a line the OS refuses (disk
    full) is taken back whole and raised as ``WriteFailed``."""

    def __init__(self, path: Path | str, *, sync_every: int | None = None, sync_seconds: float = 2.0):
        self.path = path
        self._fd: int | None = _open_own(path, _APPEND, "append to")
        self._sync_every, self._sync_seconds = sync_every, sync_seconds
        self._pending, self._last = 0, time.monotonic()

    def write(self, record: Any) -> None:
        if self._fd is None:
            raise ValueError(f"{self.path}: appender is closed")
        _append(self._fd, self.path, dumps_line(record))
        if self._sync_every is None:
            return
        self._pending += 1
        if self._pending >= self._sync_every or time.monotonic() - self._last > self._sync_seconds:
            self.sync()

    def sync(self) -> None:
        if self._fd is None:
            return
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise WriteFailed(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        self._pending, self._last = 0, time.monotonic()

    @property
    def closed(self) -> bool:
        return self._fd is None

    def close(self) -> None:
        """Fsync (when syncing) and close; closing twice is harmless."""
        if self._fd is None:
            return
        try:
            if self._sync_every is not None:
                self.sync()
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class LockHeld(VoxqaError):
    """``held_lock``'s file is locked by another process; ``holder`` is what that one wrote there."""

    def __init__(self, path: Path, holder: str):
        super().__init__(f"{path} is locked by {holder}")
        self.path, self.holder = path, holder


_LOCK = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


@contextmanager
def held_lock(path: Path | str) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` for the block (the file created if missing, a symlink
    refused), holding "pid N on HOST"; ``LockHeld`` at once if another process holds it. The
    kernel releases a lock when its process ends, however it ends (kill -9 included), so a
    crashed holder never blocks a folder; the file is removed on release. Without ``fcntl``
    (Windows) nothing is locked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    import socket

    path = Path(path)
    while True:
        fd = os.open(path, _LOCK, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 256, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            raise LockHeld(path, holder or "a process starting up") from None
        try:  # a holder removes the file as it releases: lock the file now at the path, not that one
            if os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)  # before the lock goes: whoever opened it meanwhile retries
        os.close(fd)
