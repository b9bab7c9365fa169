"""What every export format shares: the format protocol and the layout of its JSON files.

The conversation itself (user turn, JSON target, box styles) is ``voxqa.conversation``,
shared with evaluation so that models are trained and tested on the same text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from voxqa import fileio
from voxqa.boxes.profiles import Profile
from voxqa.conversation import BoxStyle, Sample

if TYPE_CHECKING:
    from voxqa.export.tuners import TunerSetup


class ExportFormat(Protocol):
    """One output format: how its boxes are written, and how its files are laid out."""

    name: str

    def box_style(self, profile: Profile) -> BoxStyle:
        """A fresh style for one item (styles may collect per-item state)."""
        ...

    def write(self, samples: dict[str, list[Sample]], out: Path, profile: Profile) -> list[str]:
        """Write samples grouped by split under ``out`` (and the settings the trainer needs for
        ``profile``'s boxes to stay true); returns the paths written."""
        ...


@runtime_checkable
class TunerConfigFormat(Protocol):
    """A format read by a fine-tuning tool that also takes a config (LLaMA-Factory, ms-swift)."""

    def tuner_config(self, samples: dict[str, list[Sample]], out: Path, profile: Profile,
                     setup: TunerSetup) -> tuple[list[str], dict[str, Any]]:
        """Write the tool's complete, runnable config for ``samples`` as written; returns the
        files written and what the export summary records of them (``voxqa.export.tuners``)."""
        ...


def write_json(path: Path, obj: Any) -> None:
    """Pretty JSON with keys in the order the format documents (not sorted), written atomically."""
    fileio.write_json(path, obj, sort_keys=False)


def export_line(row: dict[str, Any]) -> bytes:
    """An export's JSONL line: the ``json`` module's layout (``", "`` and ``": "`` separators,
    which orjson cannot write), kept so that exported files stay byte for byte as they were."""
    return json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n"


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """One JSON object per line (``export_line``), written atomically."""
    fileio.write_jsonl(path, rows, export_line)


def write_split_jsonl(samples: dict[str, list[Sample]], out: Path,
                      record: Callable[[Sample], dict[str, Any]]) -> list[str]:
    """One ``<split>.jsonl`` per split, one ``record(sample)`` per line; the names written."""
    written = []
    for split, rows in samples.items():
        write_jsonl(out / f"{split}.jsonl", [record(s) for s in rows])
        written.append(f"{split}.jsonl")
    return written
