"""Opening a CSV input: one place for the "not found" and "missing columns" errors, and for
the rows of a studies CSV (ids checked, paths relative to the CSV's folder)."""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from voxqa.dataset.paths import check_study_id
from voxqa.errors import BuildError, not_utf8


@contextmanager
def csv_reader(path: Path, columns: Sequence[str], what: str) -> Iterator[csv.DictReader]:
    """A DictReader over ``path`` that is known to have ``columns``; ``what`` names the file
    kind in errors ("fastMRI+ annotation CSV"). Text that is not UTF-8, and a row the csv
    module refuses (a field over its 131,072-character limit, a NUL byte), are one
    ``BuildError`` naming the file and line, wherever the rows are read."""
    path = Path(path)
    if not path.is_file():
        raise BuildError(f"{path}: {what} not found")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        try:
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise BuildError(f"{path}: not a {what}, missing columns {missing} "
                                 f"(expected {','.join(columns)})")
            yield reader
        except csv.Error as exc:
            raise BuildError(f"{path}:{reader.reader.line_num}: not a readable {what} row ({exc})") from None
        except UnicodeDecodeError as exc:
            raise BuildError(f"{path}: {not_utf8(exc)}") from None


def study_rows(path: Path, columns: Sequence[str], what: str) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(where, study_id, row) of every row of a studies CSV: ids non-empty, unique and
    allowed as folder names; ``where`` is ``file:line`` for errors. No rows is an error."""
    path = Path(path)
    seen: set[str] = set()
    with csv_reader(path, columns, what) as reader:
        for rec in reader:
            where = f"{path}:{reader.line_num}"
            study_id = (rec["study_id"] or "").strip()
            if not study_id or study_id in seen:
                raise BuildError(f"{where}: study_id {study_id!r} is empty or repeated")
            seen.add(study_id)
            yield where, check_study_id(study_id, where), rec
    if not seen:
        raise BuildError(f"{path}: no study rows under the header ({', '.join(columns)}, ...)")


def csv_path(csv_file: Path, value: str | None) -> Path | None:
    """A path cell: as written when absolute, else relative to the CSV's folder; None when empty."""
    value = (value or "").strip()
    return None if not value else (Path(value) if Path(value).is_absolute() else Path(csv_file).parent / value)
