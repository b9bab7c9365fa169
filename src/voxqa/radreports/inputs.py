"""Reading ``reports.jsonl`` (or CSV with the same columns): one report per study.

Columns: ``study_id``, ``language`` ("en" | "de"), and ``text``, or ``findings`` and/or
``impression`` instead (read as findings, then impression). Mistakes are BuildErrors that
name the line, so a bad file never yields a silently smaller dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson

from voxqa.errors import BuildError
from voxqa.sources.csvinput import csv_reader

LANGUAGES = ("en", "de")


@dataclass(frozen=True)
class Report:
    study_id: str
    language: str
    text: str  # what claims are read from
    findings: str  # the report-generation target


def read_reports(path: Path) -> dict[str, Report]:
    """study_id -> Report."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".csv":
            with csv_reader(path, ("study_id", "language"), "reports CSV") as rows:
                records = [(n, dict(r)) for n, r in enumerate(rows, 2)]
        else:
            records = [(n, orjson.loads(line)) for n, line in enumerate(path.read_bytes().splitlines(), 1)
                       if line.strip()]
    except (OSError, orjson.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BuildError(f"{path}: cannot read reports ({exc})") from exc
    out: dict[str, Report] = {}
    for line, rec in records:
        where = f"{path}:{line}"
        if not isinstance(rec, dict) or not str(rec.get("study_id") or "").strip():
            raise BuildError(f"{where}: each report needs a study_id")
        sid = str(rec["study_id"]).strip()
        language = str(rec.get("language") or "").strip().lower()
        if language not in LANGUAGES:
            raise BuildError(f"{where}: language must be one of {', '.join(LANGUAGES)}, got {language!r}")
        findings, impression = (str(rec.get(k) or "").strip() for k in ("findings", "impression"))
        text = str(rec.get("text") or "").strip() or " ".join(t for t in (findings, impression) if t)
        if not text:
            raise BuildError(f"{where}: report of {sid} has no text (give text, or findings/impression)")
        if sid in out:
            raise BuildError(f"{where}: a second report for study {sid}")
        out[sid] = Report(sid, language, text, findings or text)
    return out
