"""Opening a CSV input: one place for the "not found" and "missing columns" errors."""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from voxqa.errors import BuildError


@contextmanager
def csv_reader(path: Path, columns: Sequence[str], what: str) -> Iterator[csv.DictReader]:
    """A DictReader over ``path`` that is known to have ``columns``; ``what`` names the file
    kind in errors ("fastMRI+ annotation CSV")."""
    path = Path(path)
    if not path.is_file():
        raise BuildError(f"{path}: {what} not found")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise BuildError(f"{path}: not a {what}, missing columns {missing} "
                             f"(expected {','.join(columns)})")
        yield reader
