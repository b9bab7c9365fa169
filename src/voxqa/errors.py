"""The root of voxqa's exceptions, and the general ones that have no better home.

Every exception voxqa raises on purpose derives from ``VoxqaError``: the command line shows
exactly these as one line (``error: ...``) and lets anything else, a bug, end in its traceback.
A class keeps a builtin second base where callers catch it by that (``VolumeError`` is also a
``ValueError``), so ``except ValueError`` and ``pytest.raises(ValueError)`` still hold.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class VoxqaError(Exception):
    """A problem the user can fix (input, option, folder state); the message says what and where."""


class BuildError(VoxqaError):
    """Input that cannot be built at all (or any problem under --strict)."""


class InputError(VoxqaError, ValueError):
    """A bad option value or input file content (the message names the option or file)."""


class MissingFileError(VoxqaError, FileNotFoundError):
    """A file the command needs is not there (a dataset's items.jsonl, a run's run.json)."""


class MissingExtra(VoxqaError, ImportError):
    """An optional extra is not installed; the message says what to pip install."""


def not_utf8(exc: UnicodeDecodeError) -> str:
    """A decoding error in words, for a message that names the file: the first byte that is
    not UTF-8 (Python's own message names neither the file nor what to do)."""
    return f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x}: {exc.reason}); save it as UTF-8"


@contextmanager
def needs_extra(extra: str, hint: str | None = None) -> Iterator[None]:
    """Turn the ImportError of an optional extra's imports into ``MissingExtra`` naming the
    install (``hint`` replaces the default "<error>: pip install 'voxqa[extra]'")."""
    try:
        yield
    except MissingExtra:
        raise
    except ImportError as exc:
        raise MissingExtra(hint or f"{exc}: pip install 'voxqa[{extra}]'") from exc
