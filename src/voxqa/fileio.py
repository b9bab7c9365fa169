"""Writing files: every file voxqa writes into a dataset, run or export folder goes through here.

A file is written whole or not at all: its bytes go to a temp file beside it, created with
``O_CREAT | O_EXCL | O_NOFOLLOW`` under a fresh random name (``<name>.<hex>.part``, so a symlink
or file planted there is never followed or reused), then ``os.replace`` swaps it in. The swap
replaces a symlink at the target itself, never the file it points to; a failure removes the temp
and leaves the old file as it was. Like the writers this module replaces, atomic writes are not
fsynced (a killed process never leaves a half file; a power cut may lose the newest ones);
``JsonlAppender`` fsyncs in batches when asked (run predictions).

JSON is encoded with orjson. voxqa's own documents (manifest, audit, render, results, run) are
``dumps``: keys sorted, two-space indent. JSONL lines are ``dumps_line``: compact, keys as
given. Reading stays with the callers (``orjson.loads``).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, TypeVar

import orjson

from voxqa.errors import VoxqaError

TEMP_SUFFIX = ".part"  # every temp file ends so; an interrupted writer's leftovers match "*.part"
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)

T = TypeVar("T")


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
def atomic_write(path: Path | str) -> Iterator[BinaryIO]:
    """A binary file handle whose bytes become ``path`` when the block ends without an error;
    on an error (Ctrl-C included) the temp file is removed and ``path`` is untouched."""
    path = Path(path)
    fd, temp = _temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


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
    with os.fdopen(os.open(path, _APPEND, 0o666), "ab") as fh:
        fh.write(data)


class JsonlAppender:
    """Appends JSONL lines to ``path``, each handed to the OS in one ``write`` at once, so a
    killed process loses nothing appended and leaves at most a torn last line (readers cut it
    off). With ``sync_every``, fsynced every that many lines or ``sync_seconds`` (a power cut
    loses little). A symlink at ``path`` is refused, not followed."""

    def __init__(self, path: Path | str, *, sync_every: int | None = None, sync_seconds: float = 2.0):
        self._fh = os.fdopen(os.open(path, _APPEND, 0o666), "ab")
        self._sync_every, self._sync_seconds = sync_every, sync_seconds
        self._pending, self._last = 0, time.monotonic()

    def write(self, record: Any) -> None:
        self._fh.write(dumps_line(record))
        self._fh.flush()
        if self._sync_every is None:
            return
        self._pending += 1
        if self._pending >= self._sync_every or time.monotonic() - self._last > self._sync_seconds:
            self.sync()

    def sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._pending, self._last = 0, time.monotonic()

    @property
    def closed(self) -> bool:
        return self._fh.closed

    def close(self) -> None:
        """Fsync (when syncing) and close; closing twice is harmless."""
        if self._fh.closed:
            return
        try:
            if self._sync_every is not None:
                self.sync()
        finally:
            self._fh.close()

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
